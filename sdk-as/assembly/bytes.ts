// A reusable byte buffer for the per-request path. The hostcalls' `*Into` variants fill one
// in place (growing it only when a value is larger than any before), so a filter that keeps
// its Bytes on the root context reads headers, properties and shared data without a
// managed allocation per request: allocations are what the GC later pays for.

export class Bytes {
  /** Backing store; only the first `length` bytes are meaningful. */
  buffer: ArrayBuffer;
  length: i32 = 0;

  constructor(capacity: i32 = 64) {
    this.buffer = new ArrayBuffer(max(capacity, 8));
  }

  /** Bytes holding a copy of `buf` (e.g. a name encoded once at configure time). */
  static of(buf: ArrayBuffer): Bytes {
    const b = new Bytes(buf.byteLength);
    b.setFrom(changetype<usize>(buf), buf.byteLength);
    return b;
  }

  /** Bytes holding the UTF-8 encoding of `s`. */
  static fromString(s: string): Bytes {
    return Bytes.of(String.UTF8.encode(s));
  }

  /** Address of the first byte; valid until the next call that may grow the buffer. */
  @inline get ptr(): usize {
    return changetype<usize>(this.buffer);
  }

  /** Makes room for `capacity` bytes, keeping the first `length`. */
  reserve(capacity: i32): void {
    const have = this.buffer.byteLength;
    if (capacity <= have) return;
    const next = new ArrayBuffer(max(capacity, have << 1));
    memory.copy(changetype<usize>(next), changetype<usize>(this.buffer), <usize>this.length);
    this.buffer = next;
  }

  clear(): void {
    this.length = 0;
  }

  setFrom(src: usize, len: i32): void {
    this.length = 0;
    this.append(src, len);
  }

  append(src: usize, len: i32): void {
    if (len <= 0) return;
    this.reserve(this.length + len);
    memory.copy(this.ptr + <usize>this.length, src, <usize>len);
    this.length += len;
  }

  appendBuffer(buf: ArrayBuffer): void {
    this.append(changetype<usize>(buf), buf.byteLength);
  }

  appendBytes(other: Bytes): void {
    this.append(other.ptr, other.length);
  }

  appendByte(b: u8): void {
    this.reserve(this.length + 1);
    store<u8>(this.ptr + <usize>this.length, b);
    this.length += 1;
  }

  /** Byte at `i` (no bounds check beyond the backing store's). */
  @inline at(i: i32): u8 {
    return load<u8>(this.ptr + <usize>i);
  }

  /** Same bytes as [src, src+len)? Not constant-time: never use it on secrets. */
  equals(src: usize, len: i32): bool {
    if (len != this.length) return false;
    return memory.compare(this.ptr, src, <usize>len) == 0;
  }

  equalsBytes(other: Bytes): bool {
    return this.equals(other.ptr, other.length);
  }

  /** First index of `b` at or after `from`, or -1. */
  indexOf(b: u8, from: i32 = 0): i32 {
    const p = this.ptr;
    for (let i = max(from, 0); i < this.length; i++) {
      if (load<u8>(p + <usize>i) == b) return i;
    }
    return -1;
  }

  /** The bytes decoded as UTF-8 (allocates: for logs and the rare path). */
  toString(): string {
    return this.length > 0 ? String.UTF8.decodeUnsafe(this.ptr, <usize>this.length) : "";
  }

  /** A copy of the bytes as a fresh ArrayBuffer (allocates). */
  toArrayBuffer(): ArrayBuffer {
    const out = new ArrayBuffer(this.length);
    memory.copy(changetype<usize>(out), this.ptr, <usize>this.length);
    return out;
  }
}

/** Appends an address without its port: stripPort on bytes ("1.2.3.4:5678" → "1.2.3.4",
 * "[::1]:80" → "::1"; a bare address, IPv6 included, as it is). */
export function appendAddressHost(out: Bytes, address: Bytes): void {
  const n = address.length;
  if (n > 0 && address.at(0) == 0x5b) { // '['
    const end = address.indexOf(0x5d); // ']'
    if (end > 0) out.append(address.ptr + 1, end - 1);
    else out.appendBytes(address);
    return;
  }
  let colon = -1;
  let colons = 0;
  for (let i = 0; i < n; i++) {
    if (address.at(i) == 0x3a) { // ':'
      colon = i;
      colons++;
    }
  }
  // More than one colon without brackets is a bare IPv6 address.
  if (colon > 0 && colons == 1) out.append(address.ptr, colon);
  else out.appendBytes(address);
}
