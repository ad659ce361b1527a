// Binary batch encoding between the main thread and a filter worker (carried by
// wasm/channel.ts in shared memory); strings are UTF-8 with a u32 length.

export const Op = { RequestHeaders: 1, ResponseHeaders: 2, Done: 3, HttpCallResponse: 4, Tick: 5, QueueReady: 6, RequestBody: 7, ResponseBody: 8, ResponseTrailers: 9 } as const;
export const Phase = { Request: 1, Response: 2 } as const;
/** Calls of a network (L4) connection's filters, numbered apart from Op (same call layout:
 * the chunk as bytes, CallFlag.EndOfStream; StreamInfo on a worker's first call). Answered
 * like body calls (ResultKind.Body, Phase.Request = downstream) or LocalResponse (close the
 * connection). The connection ends with Op.Done, whose u32 carries the close peers
 * (closePeers below) instead of an HTTP status. */
export const NetOp = { DownstreamData: 20, UpstreamData: 21 } as const;
/** proxy-wasm PeerType, for proxy_on_downstream/upstream_connection_close. */
export const PeerType = { Unknown: 0, Local: 1, Remote: 2 } as const;
/** Op.Done's u32 for a connection: who closed each side. */
export function closePeers(downstream: number, upstream: number): number {
  return (downstream & 0xff) | ((upstream & 0xff) << 8);
}
export const CallFlag = { StreamInfo: 1, EndOfStream: 2 } as const;
/** CallFlag.StreamInfo's payload: the client port (u32), the connection id (f64), then this
 * many strings: method, scheme, authority, path, client address, listener, route, cluster,
 * request id, destination address. */
export const STREAM_INFO_STRINGS = 10;
/** ContinueAppended: the filters only added headers; the result carries just the new pairs.
 * Body: the answer to a body call, the bytes to forward (maybe none) and BodyFlag bits. */
export const ResultKind = { Continue: 0, ContinueMutated: 1, LocalResponse: 2, Paused: 3, Lost: 4, ContinueAppended: 5, Body: 6 } as const;
/** End: the forwarded bytes end the body. Held: a filter still buffers bytes of this body. */
export const BodyFlag = { End: 1, Held: 2 } as const;
export const FaultKind = { Trap: 1, Memory: 2, Deadline: 3, NotLoaded: 4, Quarantined: 5 } as const;

export class BinWriter {
  buf: Buffer;
  view: DataView;
  pos = 0;

  /** A SharedArrayBuffer is written in place until a batch outgrows it (see `arrayBuffer`). */
  constructor(initial: ArrayBufferLike | number = 4096) {
    const ab = typeof initial === 'number' ? new ArrayBuffer(initial) : initial;
    this.buf = Buffer.from(ab);
    this.view = new DataView(ab);
  }

  reset(ab: ArrayBufferLike | null, minSize: number): void {
    if (ab !== null && ab === this.buf.buffer && ab.byteLength >= minSize) {
      // The same region batch after batch (the channel's): keep the views.
      this.pos = 0;
      return;
    }
    if (ab === null || ab.byteLength < minSize) ab = new ArrayBuffer(Math.max(minSize, 4096));
    this.buf = Buffer.from(ab);
    this.view = new DataView(ab);
    this.pos = 0;
  }

  private grow(need: number): void {
    let size = this.buf.length * 2;
    while (size < this.pos + need) size *= 2;
    const ab = new ArrayBuffer(size);
    const next = Buffer.from(ab);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
    this.view = new DataView(ab);
  }

  ensure(n: number): void {
    if (this.pos + n > this.buf.length) this.grow(n);
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }

  f64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  str(s: string): void {
    // Worst case 3 bytes per UTF-16 unit; write first, then patch the length.
    const len = s.length;
    this.ensure(4 + len * 3);
    const buf = this.buf;
    const at = this.pos + 4;
    // Header names and values are short and ASCII: a plain loop beats the native call.
    if (len <= 64) {
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[at + i] = c;
      }
      if (i === len) {
        this.view.setUint32(this.pos, len, true);
        this.pos = at + len;
        return;
      }
    }
    const n = buf.write(s, at, 'utf8');
    this.view.setUint32(this.pos, n, true);
    this.pos = at + n;
  }

  bytes(b: Uint8Array): void {
    this.ensure(4 + b.length);
    this.view.setUint32(this.pos, b.length, true);
    this.buf.set(b, this.pos + 4);
    this.pos += 4 + b.length;
  }

  /** Flat [name, value, ...] list. */
  strList(list: readonly string[]): void {
    this.u32(list.length);
    for (let i = 0; i < list.length; i++) this.str(list[i]);
  }

  /** Patch a u32 written earlier (counts known only at the end). */
  patchU32(at: number, v: number): void {
    this.view.setUint32(at, v, true);
  }

  /** The buffer written so far: the one given to reset(), or a private copy once it grew. */
  get arrayBuffer(): ArrayBufferLike {
    return this.buf.buffer;
  }
}

/** Buffer's own decoders, without toString's argument handling (not in the typings). */
export type Utf8SliceBuffer = Buffer & { utf8Slice(start: number, end: number): string };
type Latin1SliceBuffer = Buffer & { latin1Slice(start: number, end: number): string };

export class BinReader {
  buf: Buffer;
  view: DataView;
  pos = 0;
  end: number;

  constructor(ab: ArrayBufferLike, end: number) {
    this.buf = Buffer.from(ab, 0, end);
    this.view = new DataView(ab, 0, end);
    this.end = end;
  }

  /** Read another `end` bytes from the start of `ab`, reusing the views when it is the same buffer. */
  reset(ab: ArrayBufferLike, end: number): void {
    if (ab !== this.buf.buffer || end > this.buf.length) {
      this.buf = Buffer.from(ab, 0, end);
      this.view = new DataView(ab, 0, end);
    }
    this.end = end;
    this.pos = 0;
  }

  u8(): number {
    return this.buf[this.pos++];
  }

  u16(): number {
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }

  u32(): number {
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  f64(): number {
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  str(): string {
    const n = this.u32();
    const s = (this.buf as Utf8SliceBuffer).utf8Slice(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  /** A view into the batch buffer, valid only while the batch is being read. */
  bytesView(): Uint8Array {
    const n = this.u32();
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A copy, so the (reused) batch buffer can be handed back. */
  bytes(): Uint8Array {
    const n = this.u32();
    const out = new Uint8Array(n);
    out.set(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }

  strList(): string[] {
    const n = this.u32();
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.str();
    return out;
  }

  /** The next `n` strings as they are encoded, kept as one latin1 string (one char per byte)
   * for unpackStrings() later: a filter worker keeps a stream's heads this way and decodes
   * them only if a filter reads them. A string, not a Uint8Array: V8 allocates a short
   * string in a few ns, a typed array's backing store costs ~0.5 µs. */
  packed(n: number): string {
    const start = this.pos;
    let p = start;
    for (let i = 0; i < n; i++) p += 4 + this.view.getUint32(p, true);
    this.pos = p;
    return (this.buf as Latin1SliceBuffer).latin1Slice(start, p);
  }
}

/** Decode strings packed by BinReader.packed() into out[at...]. */
export function unpackStrings(packed: string, out: string[], at: number): void {
  const end = packed.length;
  let p = 0;
  while (p < end) {
    const n = packedLength(packed, p);
    p += 4;
    out[at++] = decodePacked(packed, p, n);
    p += n;
  }
}

/** The values of `key` in a packed [name, value, ...] list, joined with ',' (null: none),
 * like stream-state.ts mapValue over the decoded list, but decoding only the values that match. */
export function packedValue(packed: string, key: string): string | null {
  let out: string | null = null;
  const end = packed.length;
  let p = 0;
  while (p < end) {
    const n = packedLength(packed, p);
    const name = p + 4;
    const at = name + n;
    const v = packedLength(packed, at);
    if (n === key.length && packed.startsWith(key, name)) {
      const value = decodePacked(packed, at + 4, v);
      out = out === null ? value : `${out},${value}`;
    }
    p = at + 4 + v;
  }
  return out;
}

/** The u32 length that starts a packed string's entry at `p`. */
export function packedLength(packed: string, p: number): number {
  return (packed.charCodeAt(p) | (packed.charCodeAt(p + 1) << 8) | (packed.charCodeAt(p + 2) << 16) | (packed.charCodeAt(p + 3) << 24)) >>> 0;
}

/** The `n` bytes at `p` of a packed string (one latin1 char per byte) as the UTF-8 text they are. */
export function decodePacked(packed: string, p: number, n: number): string {
  const raw = packed.slice(p, p + n);
  return isAscii(raw) ? raw : Buffer.from(raw, 'latin1').toString('utf8');
}

/** The statuses of Wisp's root property wisp.response_headers_statuses ("500-599",
 * "429,500-599"): index = status, 1 = the filter's proxy_on_response_headers wants it. A
 * string is the reason the text is not such a list. */
export function parseStatusSet(text: string): Uint8Array | string {
  const set = new Uint8Array(600);
  const parts = text.split(',');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i].trim();
    const m = /^(\d{3})(?:-(\d{3}))?$/.exec(part);
    const from = m === null ? NaN : Number(m[1]);
    const to = m === null ? NaN : m[2] === undefined ? from : Number(m[2]);
    if (!(from >= 100 && to <= 599 && from <= to)) return `"${part}" is not a status (100-599) or a range of them like 500-599`;
    set.fill(1, from, to + 1);
  }
  return set;
}

/** Whether a status set (parseStatusSet; null = every status) includes `status`. */
export function statusWanted(set: Uint8Array | null, status: number): boolean {
  return set === null || set[status] === 1;
}

/** from[at, at + len) to to[dest...]. Host values and shared-data keys are a few bytes (a
 * token bucket, a breaker record): those go by a loop, since set() of a part needs a
 * subarray, a new typed array per call. */
export function copyBytes(from: Uint8Array, at: number, len: number, to: Uint8Array, dest: number): void {
  if (len <= 64) for (let i = 0; i < len; i++) to[dest + i] = from[at + i];
  else if (at === 0 && len === from.length) to.set(from, dest);
  else to.set(from.subarray(at, at + len), dest);
}

/** Every char below 0x80 (then UTF-8 and latin1 bytes are the chars themselves). */
export function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** Generation as the worker needs it: everything to instantiate and run one filter. */
export interface GenerationSpec {
  id: number;
  name: string;
  rootId: string;
  config: string;
  vmConfig: string;
  failure: 'open' | 'closed' | 'reload';
  deadlineMs: number;
  maxMemoryBytes: number;
  /** Most body bytes the filter may hold buffered (StopIterationAndBuffer); 0 = no limit. */
  maxBodyBytes: number;
}

export type ControlOp =
  | { op: 'load'; spec: GenerationSpec; module: WebAssembly.Module }
  | { op: 'drop'; genId: number }
  /** Run a network filter over a TCP connection's first bytes (proxy_on_new_connection +
   * proxy_on_downstream_data with them as the DownstreamData buffer); the answer's `props`
   * are what it set with proxy_set_property. */
  | { op: 'sniff'; genId: number; data: Uint8Array; end: boolean }
  /** The clusters proxy_http_call may name (the config's); null: any (no config, e.g. tests). */
  | { op: 'clusters'; names: string[] | null };

export interface ControlResult {
  ok: boolean;
  error?: string;
  /** load: the instance may be skipped in the response headers phase (see
   * FilterInstance.skipsResponseHeaders). */
  skipsResponseHeaders?: boolean;
  skipsResponseTrailers?: boolean;
  /** load: the statuses the instance's response headers phase is limited to
   * (wisp.response_headers_statuses, parseStatusSet), if it set them. */
  responseHeadersStatuses?: Uint8Array;
  /** sniff: the properties set, as [path, value] pairs. */
  props?: [string, string][];
}

/** The answer to a filter's proxy_http_call, sent back to the worker that made it. status 0
 * means the call failed (no response). */
export interface HttpCallAnswer {
  token: number;
  status: number;
  headers: string[];
  body: Uint8Array;
}

/** One body chunk on its way to the filters. */
export interface BodyChunk {
  data: Uint8Array;
  endOfStream: boolean;
}

/** Extra data of a call: an http call answer, a queue id (QueueReady), a body chunk. */
export type CallPayload = HttpCallAnswer | BodyChunk | number | null;

/** Layout of the per-worker watchdog SharedArrayBuffer (Float64 slots). Call: the number of
 * the filter call running now (0: none); the main thread's watchdog times it from when it
 * first sees that number, so the worker never reads a clock per call. */
export const Watch = { Call: 0, DeadlineMs: 1, GenId: 2, Slots: 3 } as const;

/** This thread's last call number (the worker's; exact in a Float64 up to 2^53). */
let lastCall = 0;

/** Mark a call into generation `genId` as running under `deadlineMs`. */
export function startCall(watch: Float64Array, deadlineMs: number, genId: number): void {
  watch[Watch.DeadlineMs] = deadlineMs;
  watch[Watch.GenId] = genId;
  lastCall = lastCall >= Number.MAX_SAFE_INTEGER ? 1 : lastCall + 1;
  watch[Watch.Call] = lastCall;
}
