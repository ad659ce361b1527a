// State every filter worker must agree on, in one SharedArrayBuffer: the proxy-wasm shared
// data KV (with CAS), shared queues, and metric slots. Writers take one spin lock (critical
// sections are a few memcpy long); metric values are updated with Atomics and read by the
// main thread without the lock for export.

import { MetricType, METRIC_TYPE_NAMES, type MetricTypeName, WasmResult } from './abi.js';
import { copyBytes } from './wire.js';

export interface SharedStateOptions {
  /** Shared data entries (keys) across all filters. */
  kvCapacity: number;
  kvMaxKeyBytes: number;
  kvMaxValueBytes: number;
  queues: number;
  /** Bytes of ring buffer per queue. */
  queueBytes: number;
  metrics: number;
}

export const DEFAULT_SHARED_STATE: SharedStateOptions = {
  kvCapacity: 4096,
  kvMaxKeyBytes: 256,
  kvMaxValueBytes: 1024,
  queues: 64,
  queueBytes: 64 * 1024,
  metrics: 1024,
};

const HEADER_INTS = 16;
const H_LOCK = 0;
const H_CAS = 1;
const H_KV_CAP = 2;
const H_KEY_MAX = 3;
const H_VAL_MAX = 4;
const H_QUEUES = 5;
const H_QUEUE_BYTES = 6;
const H_METRICS = 7;
const H_KV_USED = 8;

const KV_HDR = 16; // state, cas, keyLen, valLen
const SLOT_EMPTY = 0;
const SLOT_USED = 1;

const Q_HDR = 24; // used, head, size(bytes), count, nameLen, pad
const Q_NAME = 256;

const M_HDR = 12; // published, type, nameLen
const M_NAME = 192;

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** The CAS a get of a missing key reports (an extension: Envoy leaves it unset, i.e. 0).
 * Never issued for a stored entry. */
export const ABSENT_CAS = 0xffffffff;

export interface MetricSample {
  filter: string;
  name: string;
  type: MetricTypeName;
  value: number;
  /** Histograms: number of recorded values (value is their sum). */
  count?: number;
}

export class SharedState {
  readonly sab: SharedArrayBuffer;
  private readonly i32: Int32Array;
  private readonly u8: Uint8Array;
  private readonly kvCap: number;
  private readonly keyMax: number;
  private readonly valMax: number;
  private readonly kvBase: number;
  private readonly kvStride: number;
  private readonly qCount: number;
  private readonly qBytes: number;
  private readonly qBase: number;
  private readonly qStride: number;
  private readonly mCap: number;
  private readonly mBase: number;
  private readonly mValues: BigInt64Array;
  /** See readData. */
  readonly readBuf: Uint8Array;
  /** The cas of the value the last readData found. */
  readCas = 0;
  /** Why the last writeData failed, when its result code does not say it all; else null. */
  writeError: string | null = null;

  static create(opts: SharedStateOptions = DEFAULT_SHARED_STATE): SharedState {
    const kvStride = align8(KV_HDR + opts.kvMaxKeyBytes + opts.kvMaxValueBytes);
    const qStride = align8(Q_HDR + Q_NAME + opts.queueBytes);
    const size =
      HEADER_INTS * 4 + opts.kvCapacity * kvStride + opts.queues * qStride + opts.metrics * (M_HDR + M_NAME) + opts.metrics * 16 + 16;
    const sab = new SharedArrayBuffer(align8(size) + 16);
    const i32 = new Int32Array(sab, 0, HEADER_INTS);
    i32[H_KV_CAP] = opts.kvCapacity;
    i32[H_KEY_MAX] = opts.kvMaxKeyBytes;
    i32[H_VAL_MAX] = opts.kvMaxValueBytes;
    i32[H_QUEUES] = opts.queues;
    i32[H_QUEUE_BYTES] = opts.queueBytes;
    i32[H_METRICS] = opts.metrics;
    return new SharedState(sab);
  }

  constructor(sab: SharedArrayBuffer) {
    this.sab = sab;
    this.i32 = new Int32Array(sab);
    this.u8 = new Uint8Array(sab);
    this.kvCap = this.i32[H_KV_CAP];
    this.keyMax = this.i32[H_KEY_MAX];
    this.valMax = this.i32[H_VAL_MAX];
    this.qCount = this.i32[H_QUEUES];
    this.qBytes = this.i32[H_QUEUE_BYTES];
    this.mCap = this.i32[H_METRICS];
    this.kvStride = align8(KV_HDR + this.keyMax + this.valMax);
    this.qStride = align8(Q_HDR + Q_NAME + this.qBytes);
    this.kvBase = HEADER_INTS * 4;
    this.qBase = this.kvBase + this.kvCap * this.kvStride;
    this.mBase = this.qBase + this.qCount * this.qStride;
    const valuesBase = align8(this.mBase + this.mCap * (M_HDR + M_NAME));
    this.mValues = new BigInt64Array(sab, valuesBase, this.mCap * 2);
    this.readBuf = new Uint8Array(this.valMax);
  }

  // --- lock -------------------------------------------------------------------------------

  private lock(): void {
    let spins = 0;
    while (Atomics.compareExchange(this.i32, H_LOCK, 0, 1) !== 0) {
      // A worker terminated mid-critical-section (deadline abort) would hold the lock for
      // ever; past ~100 ms of spinning the lock is taken over.
      if (++spins > 1_000_000) {
        Atomics.store(this.i32, H_LOCK, 1);
        return;
      }
    }
  }

  private unlock(): void {
    Atomics.store(this.i32, H_LOCK, 0);
  }

  // --- shared data ----------------------------------------------------------------------

  // Keys are given as (bytes, offset, length): the host passes guest memory itself, with no
  // view made per call.

  /** The slot a key's probe starts at. Hashed four bytes per step (a multiply per byte was a
   * dependency chain as long as the key), mixed at the end so the high bits depend on every
   * byte, and mapped onto the table by multiply-shift: `hash % cap` with a hash above 2^31
   * was a floating-point modulo. Together they halved a get + set pair. */
  private home(key: Uint8Array, at: number, len: number): number {
    let h = 0x811c9dc5 ^ len;
    let i = 0;
    for (; i + 4 <= len; i += 4) {
      const p = at + i;
      h = Math.imul(h ^ (key[p] | (key[p + 1] << 8) | (key[p + 2] << 16) | (key[p + 3] << 24)), 0x5bd1e995);
      h ^= h >>> 15;
    }
    for (; i < len; i++) h = Math.imul(h ^ key[at + i], 0x01000193);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return Math.floor(((h >>> 0) * this.kvCap) / 4294967296);
  }

  private keyEquals(slotOff: number, key: Uint8Array, at: number, len: number): boolean {
    const base = slotOff + KV_HDR;
    const u8 = this.u8;
    for (let i = 0; i < len; i++) if (u8[base + i] !== key[at + i]) return false;
    return true;
  }

  /** Slot index holding the key, or -1. Caller holds the lock. */
  private findSlot(key: Uint8Array, at: number, len: number): number {
    const cap = this.kvCap;
    let idx = this.home(key, at, len);
    for (let probe = 0; probe < cap; probe++) {
      const off = this.kvBase + idx * this.kvStride;
      const state = this.i32[off >> 2];
      if (state === SLOT_EMPTY) return -1;
      if (state === SLOT_USED && this.i32[(off >> 2) + 2] === len && this.keyEquals(off, key, at, len)) return idx;
      idx = idx + 1 === cap ? 0 : idx + 1;
    }
    return -1;
  }

  /** A copy of a value and its cas, or null when the key is absent (tests, the harness). */
  getData(key: Uint8Array): { value: Uint8Array; cas: number } | null {
    const n = this.read(key, 0, key.length);
    return n < 0 ? null : { value: this.readBuf.slice(0, n), cas: this.readCas };
  }

  /** writeData with its error message, if any, alongside (tests, the harness). */
  setData(key: Uint8Array, value: Uint8Array, cas: number): { result: number; error?: string } {
    const result = this.write(key, 0, key.length, value, 0, value.length, cas);
    return this.writeError === null ? { result } : { result, error: this.writeError };
  }

  // proxy_get/set_shared_data run once or twice per request in a rate limit or breaker: the
  // host reads through readBuf and gets plain numbers back, no allocation per call.

  /** Copies the value of the key key[keyAt, keyAt + keyLen) into readBuf and its cas into
   * readCas; returns its length, or -1 when the key is absent. readBuf is reused: copy out of
   * it before the next read. */
  readData(key: Uint8Array, keyAt: number, keyLen: number): number {
    return this.read(key, keyAt, keyLen);
  }

  /** Stores value[valAt, valAt + valLen) under key[keyAt, keyAt + keyLen). A WasmResult;
   * writeError says why when the result alone does not. */
  writeData(key: Uint8Array, keyAt: number, keyLen: number, value: Uint8Array, valAt: number, valLen: number, cas: number): number {
    return this.write(key, keyAt, keyLen, value, valAt, valLen, cas);
  }

  private read(key: Uint8Array, keyAt: number, keyLen: number): number {
    this.lock();
    try {
      const idx = this.findSlot(key, keyAt, keyLen);
      if (idx < 0) return -1;
      const off = this.kvBase + idx * this.kvStride;
      const w = off >> 2;
      const valLen = this.i32[w + 3];
      const start = off + KV_HDR + this.keyMax;
      copyBytes(this.u8, start, valLen, this.readBuf, 0);
      this.readCas = this.i32[w + 1] >>> 0;
      return valLen;
    } finally {
      this.unlock();
    }
  }

  /** Envoy semantics: cas 0 writes unconditionally; otherwise it must match the entry's.
   * Wisp adds one case: ABSENT_CAS (what a get of a missing key reports) succeeds only while
   * the key is still missing, so two workers creating the same key cannot both win. */
  private write(key: Uint8Array, keyAt: number, keyLen: number, value: Uint8Array, valAt: number, valLen: number, cas: number): number {
    this.writeError = null;
    if (keyLen === 0) return this.refuse(WasmResult.BadArgument, 'empty shared data key');
    if (keyLen > this.keyMax) return this.refuse(WasmResult.BadArgument, `shared data key is ${keyLen} bytes, limit ${this.keyMax}`);
    if (valLen > this.valMax) return this.refuse(WasmResult.BadArgument, `shared data value is ${valLen} bytes, limit ${this.valMax}`);
    this.lock();
    try {
      let idx = this.findSlot(key, keyAt, keyLen);
      if (idx >= 0) {
        const w = (this.kvBase + idx * this.kvStride) >> 2;
        if (cas !== 0 && (cas === ABSENT_CAS || (this.i32[w + 1] >>> 0) !== cas)) return WasmResult.CasMismatch;
      } else {
        if (this.i32[H_KV_USED] >= this.kvCap) {
          return this.refuse(WasmResult.InternalFailure, `shared data is full (${this.kvCap} keys); raise shared_data capacity`);
        }
        idx = this.freeSlot(key, keyAt, keyLen);
        const off = this.kvBase + idx * this.kvStride;
        copyBytes(key, keyAt, keyLen, this.u8, off + KV_HDR);
        this.i32[(off >> 2) + 2] = keyLen;
        this.i32[off >> 2] = SLOT_USED;
        this.i32[H_KV_USED]++;
      }
      const off = this.kvBase + idx * this.kvStride;
      const w = off >> 2;
      copyBytes(value, valAt, valLen, this.u8, off + KV_HDR + this.keyMax);
      this.i32[w + 3] = valLen;
      let next = (this.i32[H_CAS] + 1) | 0;
      if (next === 0 || next === (ABSENT_CAS | 0)) next = 1;
      this.i32[H_CAS] = next;
      this.i32[w + 1] = next;
      return WasmResult.Ok;
    } finally {
      this.unlock();
    }
  }

  private refuse(result: number, why: string): number {
    this.writeError = why;
    return result;
  }

  private freeSlot(key: Uint8Array, at: number, len: number): number {
    const cap = this.kvCap;
    let idx = this.home(key, at, len);
    for (let probe = 0; probe < cap; probe++) {
      const state = this.i32[(this.kvBase + idx * this.kvStride) >> 2];
      if (state !== SLOT_USED) return idx;
      idx = idx + 1 === cap ? 0 : idx + 1;
    }
    throw new Error('shared data table full');
  }

  // --- queues ---------------------------------------------------------------------------

  private qOff(id: number): number {
    return this.qBase + id * this.qStride;
  }

  private findQueue(name: Uint8Array): number {
    for (let q = 0; q < this.qCount; q++) {
      const off = this.qOff(q);
      const w = off >> 2;
      if (this.i32[w] !== 1 || this.i32[w + 4] !== name.length) continue;
      let same = true;
      for (let i = 0; i < name.length; i++) if (this.u8[off + Q_HDR + i] !== name[i]) { same = false; break; }
      if (same) return q;
    }
    return -1;
  }

  /** Queue ids handed to filters are index + 1 so 0 never names a queue. */
  registerQueue(name: Uint8Array): { id: number; error?: string } {
    if (name.length === 0 || name.length > Q_NAME) return { id: 0, error: `queue name must be 1..${Q_NAME} bytes` };
    this.lock();
    try {
      const found = this.findQueue(name);
      if (found >= 0) return { id: found + 1 };
      for (let q = 0; q < this.qCount; q++) {
        const off = this.qOff(q);
        const w = off >> 2;
        if (this.i32[w] !== 0) continue;
        this.u8.set(name, off + Q_HDR);
        this.i32[w + 1] = 0;
        this.i32[w + 2] = 0;
        this.i32[w + 3] = 0;
        this.i32[w + 4] = name.length;
        this.i32[w] = 1;
        return { id: q + 1 };
      }
      return { id: 0, error: `no free shared queue (limit ${this.qCount})` };
    } finally {
      this.unlock();
    }
  }

  resolveQueue(name: Uint8Array): number {
    this.lock();
    try {
      return this.findQueue(name) + 1;
    } finally {
      this.unlock();
    }
  }

  enqueue(id: number, value: Uint8Array): number {
    if (id < 1 || id > this.qCount) return WasmResult.NotFound;
    this.lock();
    try {
      const off = this.qOff(id - 1);
      const w = off >> 2;
      if (this.i32[w] !== 1) return WasmResult.NotFound;
      const cap = this.qBytes;
      const need = 4 + value.length;
      if (this.i32[w + 2] + need > cap) return WasmResult.InternalFailure;
      const data = off + Q_HDR + Q_NAME;
      let pos = (this.i32[w + 1] + this.i32[w + 2]) % cap;
      const len = value.length;
      for (let i = 0; i < 4; i++) {
        this.u8[data + pos] = (len >>> (i * 8)) & 0xff;
        pos = pos + 1 === cap ? 0 : pos + 1;
      }
      for (let i = 0; i < len; i++) {
        this.u8[data + pos] = value[i];
        pos = pos + 1 === cap ? 0 : pos + 1;
      }
      this.i32[w + 2] += need;
      this.i32[w + 3]++;
      return WasmResult.Ok;
    } finally {
      this.unlock();
    }
  }

  /** The oldest message, null when empty, or a WasmResult number for an unknown queue. */
  dequeue(id: number): Uint8Array | null | number {
    if (id < 1 || id > this.qCount) return WasmResult.NotFound;
    this.lock();
    try {
      const off = this.qOff(id - 1);
      const w = off >> 2;
      if (this.i32[w] !== 1) return WasmResult.NotFound;
      if (this.i32[w + 3] === 0) return null;
      const cap = this.qBytes;
      const data = off + Q_HDR + Q_NAME;
      let pos = this.i32[w + 1];
      let len = 0;
      for (let i = 0; i < 4; i++) {
        len |= this.u8[data + pos] << (i * 8);
        pos = pos + 1 === cap ? 0 : pos + 1;
      }
      const out = new Uint8Array(len);
      for (let i = 0; i < len; i++) {
        out[i] = this.u8[data + pos];
        pos = pos + 1 === cap ? 0 : pos + 1;
      }
      this.i32[w + 1] = pos;
      this.i32[w + 2] -= 4 + len;
      this.i32[w + 3]--;
      return out;
    } finally {
      this.unlock();
    }
  }

  // --- metrics --------------------------------------------------------------------------

  private mOff(id: number): number {
    return this.mBase + id * (M_HDR + M_NAME);
  }

  /** The slot for filter + name (the same in every worker and across reloads). Metric ids
   * handed to filters are slot + 1. */
  defineMetric(type: number, filter: string, name: string): { id: number; error?: string } {
    if (type < 0 || type > 2) return { id: 0, error: `unknown metric type ${type}` };
    const full = Buffer.from(`${filter}\0${name}`, 'utf8');
    if (full.length > M_NAME) return { id: 0, error: `metric name too long (${name.length})` };
    this.lock();
    try {
      for (let m = 0; m < this.mCap; m++) {
        const off = this.mOff(m);
        const w = off >> 2;
        if (Atomics.load(this.i32, w) === 0) {
          this.u8.set(full, off + M_HDR);
          this.i32[w + 1] = type;
          this.i32[w + 2] = full.length;
          Atomics.store(this.i32, w, 1);
          return { id: m + 1 };
        }
        if (this.i32[w + 2] !== full.length) continue;
        let same = true;
        for (let i = 0; i < full.length; i++) if (this.u8[off + M_HDR + i] !== full[i]) { same = false; break; }
        if (same) {
          if (this.i32[w + 1] !== type) return { id: 0, error: `metric "${name}" already defined as ${METRIC_TYPE_NAMES[this.i32[w + 1]]}` };
          return { id: m + 1 };
        }
      }
      return { id: 0, error: `metric table full (${this.mCap})` };
    } finally {
      this.unlock();
    }
  }

  private metricType(id: number): number {
    if (id < 1 || id > this.mCap) return -1;
    const w = this.mOff(id - 1) >> 2;
    return Atomics.load(this.i32, w) === 1 ? this.i32[w + 1] : -1;
  }

  incrementMetric(id: number, delta: bigint): number {
    const t = this.metricType(id);
    if (t < 0) return WasmResult.NotFound;
    if (t === MetricType.Histogram) return WasmResult.BadArgument;
    Atomics.add(this.mValues, (id - 1) * 2, delta);
    return WasmResult.Ok;
  }

  recordMetric(id: number, value: bigint): number {
    const t = this.metricType(id);
    if (t < 0) return WasmResult.NotFound;
    if (t === MetricType.Histogram) {
      Atomics.add(this.mValues, (id - 1) * 2, value);
      Atomics.add(this.mValues, (id - 1) * 2 + 1, 1n);
    } else {
      Atomics.store(this.mValues, (id - 1) * 2, value);
    }
    return WasmResult.Ok;
  }

  getMetric(id: number): bigint | null {
    if (this.metricType(id) < 0) return null;
    return Atomics.load(this.mValues, (id - 1) * 2);
  }

  metricsSnapshot(): MetricSample[] {
    const out: MetricSample[] = [];
    for (let m = 0; m < this.mCap; m++) {
      const off = this.mOff(m);
      const w = off >> 2;
      if (Atomics.load(this.i32, w) !== 1) break;
      const full = Buffer.from(this.u8.buffer, off + M_HDR, this.i32[w + 2]).toString('utf8');
      const sep = full.indexOf('\0');
      const type = METRIC_TYPE_NAMES[this.i32[w + 1]];
      const sample: MetricSample = {
        filter: full.slice(0, sep),
        name: full.slice(sep + 1),
        type,
        value: Number(Atomics.load(this.mValues, m * 2)),
      };
      if (type === 'histogram') sample.count = Number(Atomics.load(this.mValues, m * 2 + 1));
      out.push(sample);
    }
    return out;
  }
}
