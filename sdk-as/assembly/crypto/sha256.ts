// SHA-256 (FIPS 180-4). Round constants and initial hash values are the fractional bits
// of cube / square roots of the first primes, generated, not transcribed.

const K: StaticArray<u32> = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
  0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
  0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
  0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
];

const IV: StaticArray<u32> = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
];

/** Incremental SHA-256: update() any number of times, then digest() once; reset() makes
 * the object reusable, and updateRaw/digestInto hash without allocating (a filter that
 * hashes per request keeps one Sha256 and one 32-byte output). */
export class Sha256 {
  private h: StaticArray<u32> = new StaticArray<u32>(8);
  private w: StaticArray<u32> = new StaticArray<u32>(64);
  private block: StaticArray<u8> = new StaticArray<u8>(64);
  private blockLen: i32 = 0;
  private total: u64 = 0;

  constructor() {
    this.reset();
  }

  reset(): void {
    for (let i = 0; i < 8; i++) unchecked(this.h[i] = IV[i]);
    this.blockLen = 0;
    this.total = 0;
  }

  update(data: Uint8Array): Sha256 {
    this.updateRaw(data.dataStart, <usize>data.length);
    return this;
  }

  /** Hashes the `len` bytes at `ptr`. */
  updateRaw(ptr: usize, len: usize): void {
    this.total += <u64>len;
    const block = changetype<usize>(this.block);
    let i: usize = 0;
    while (i < len) {
      const take = min(<usize>(64 - this.blockLen), len - i);
      memory.copy(block + <usize>this.blockLen, ptr + i, take);
      this.blockLen += <i32>take;
      i += take;
      if (this.blockLen == 64) {
        this.compress();
        this.blockLen = 0;
      }
    }
  }

  digest(): Uint8Array {
    const out = new Uint8Array(32);
    this.digestInto(out.dataStart);
    return out;
  }

  /** Finishes the hash and writes the 32-byte digest at `out`. Call reset() to reuse. */
  digestInto(out: usize): void {
    const bits = this.total * 8;
    const block = changetype<usize>(this.block);
    let n = this.blockLen;
    store<u8>(block + <usize>n, 0x80);
    n++;
    if (n > 56) {
      memory.fill(block + <usize>n, 0, <usize>(64 - n));
      this.compress();
      n = 0;
    }
    memory.fill(block + <usize>n, 0, <usize>(56 - n));
    store<u64>(block + 56, bswap<u64>(bits));
    this.compress();
    this.blockLen = 0;
    for (let i = 0; i < 8; i++) store<u32>(out + <usize>(4 * i), bswap<u32>(unchecked(this.h[i])));
  }

  private compress(): void {
    const w = this.w;
    const b = changetype<usize>(this.block);
    for (let t = 0; t < 16; t++) {
      unchecked(w[t] = bswap<u32>(load<u32>(b + <usize>(4 * t))));
    }
    for (let t = 16; t < 64; t++) {
      const w15 = unchecked(w[t - 15]);
      const w2 = unchecked(w[t - 2]);
      const s0 = rotr<u32>(w15, 7) ^ rotr<u32>(w15, 18) ^ (w15 >> 3);
      const s1 = rotr<u32>(w2, 17) ^ rotr<u32>(w2, 19) ^ (w2 >> 10);
      unchecked(w[t] = unchecked(w[t - 16]) + s0 + unchecked(w[t - 7]) + s1);
    }
    const h = this.h;
    let a = unchecked(h[0]), bb = unchecked(h[1]), c = unchecked(h[2]), d = unchecked(h[3]);
    let e = unchecked(h[4]), f = unchecked(h[5]), g = unchecked(h[6]), hh = unchecked(h[7]);
    for (let t = 0; t < 64; t++) {
      const S1 = rotr<u32>(e, 6) ^ rotr<u32>(e, 11) ^ rotr<u32>(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = hh + S1 + ch + unchecked(K[t]) + unchecked(w[t]);
      const S0 = rotr<u32>(a, 2) ^ rotr<u32>(a, 13) ^ rotr<u32>(a, 22);
      const maj = (a & bb) ^ (a & c) ^ (bb & c);
      const t2 = S0 + maj;
      hh = g; g = f; f = e; e = d + t1;
      d = c; c = bb; bb = a; a = t1 + t2;
    }
    unchecked(h[0] += a); unchecked(h[1] += bb); unchecked(h[2] += c); unchecked(h[3] += d);
    unchecked(h[4] += e); unchecked(h[5] += f); unchecked(h[6] += g); unchecked(h[7] += hh);
  }
}

export function sha256(data: Uint8Array): Uint8Array {
  return new Sha256().update(data).digest();
}
