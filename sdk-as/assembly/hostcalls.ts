// Typed wrappers over imports.ts: strings and ArrayBuffers in, typed values out. The host
// returns data by calling proxy_on_memory_allocate and writing the pointer into a return
// slot; every wrapper copies that block into a managed object (or a caller's Bytes, the
// `*Into` variants) and releases it at once, so a filter author never sees a pointer. A
// call that fails for a reason other than the expected one (NOT_FOUND on a lookup) logs the
// WasmResult name.

import * as abi from "./imports";
import { Bytes } from "./bytes";
import {
  BufferType, HeaderPair, LogLevel, MapType, MetricType, StreamType, WasmResult, wasmResultName,
} from "./types";

// Return slots in static memory: no allocation per call. Callbacks never nest inside a
// hostcall's return, so one set of slots is enough.
const RET_PTR: usize = memory.data(8, 8);
const RET_LEN: usize = memory.data(8, 8);
const RET_U64: usize = memory.data(8, 8);
const RET_U32: usize = memory.data(8, 8);

// Where small host-returned values land. A hostcall's returned block is copied out before
// the next hostcall, so one static block serves them all and the common case (a header, a
// property, a shared-data value) costs no heap.alloc/heap.free pair. `scratchLent` covers a
// host that allocates twice before the guest takes the first: the second gets the heap.
const SCRATCH_BYTES: usize = 1024;
const SCRATCH: usize = memory.data(<i32>SCRATCH_BYTES, 16);
let scratchLent = false;

/** proxy_on_memory_allocate (exports.ts): the scratch block when it fits and is free. */
export function hostAllocate(size: usize): usize {
  if (size <= SCRATCH_BYTES && !scratchLent) {
    scratchLent = true;
    return SCRATCH;
  }
  return heap.alloc(size);
}

/** Gives a host-returned block back: the scratch is lent again, a heap block is freed. */
function release(ptr: usize): void {
  if (ptr == SCRATCH) scratchLent = false;
  else if (ptr != 0) heap.free(ptr);
}

function resetReturn(): void {
  store<usize>(RET_PTR, 0);
  store<usize>(RET_LEN, 0);
}

/** Releases whatever a failed call may have left in the return slot. */
function dropReturn(): void {
  release(load<usize>(RET_PTR));
  store<usize>(RET_PTR, 0);
}

/** Copies the host-returned block into a managed ArrayBuffer and releases the block. */
function takeBuffer(): ArrayBuffer {
  const ptr = load<usize>(RET_PTR);
  const len = load<usize>(RET_LEN);
  const buf = new ArrayBuffer(<i32>len);
  if (len > 0) memory.copy(changetype<usize>(buf), ptr, len);
  release(ptr);
  return buf;
}

/** Copies the host-returned block into `out` (no allocation once `out` is big enough). */
function takeInto(out: Bytes): void {
  const ptr = load<usize>(RET_PTR);
  out.setFrom(ptr, <i32>load<usize>(RET_LEN));
  release(ptr);
}

/** Decodes the host-returned block as UTF-8 and releases the block. */
function takeString(): string {
  const ptr = load<usize>(RET_PTR);
  const len = load<usize>(RET_LEN);
  const str = len > 0 ? String.UTF8.decodeUnsafe(ptr, len) : "";
  release(ptr);
  return str;
}

function bufPtr(buf: ArrayBuffer | null): usize {
  return buf === null ? 0 : changetype<usize>(buf);
}

function bufLen(buf: ArrayBuffer | null): usize {
  return buf === null ? 0 : <usize>buf.byteLength;
}

function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

/** Logs a failed hostcall with the result's name; returns the result unchanged. */
export function reportFailure(call: string, result: u32): u32 {
  if (result != WasmResult.Ok) {
    rawLog(LogLevel.Warn, call + " failed: " + wasmResultName(result));
  }
  return result;
}

// ---- logging --------------------------------------------------------------------------

function rawLog(level: LogLevel, message: string): void {
  const buf = utf8(message);
  abi.proxy_log(level, changetype<usize>(buf), buf.byteLength);
}

export function log(level: LogLevel, message: string): void {
  rawLog(level, message);
}

export function getLogLevel(): LogLevel {
  store<u32>(RET_U32, <u32>LogLevel.Info);
  abi.proxy_get_log_level(RET_U32);
  return <LogLevel>load<u32>(RET_U32);
}

// ---- clock and timer ------------------------------------------------------------------

/** Wall-clock time in nanoseconds since the epoch (hosts may freeze it per callback). */
export function getCurrentTimeNanoseconds(): u64 {
  store<u64>(RET_U64, 0);
  reportFailure("proxy_get_current_time_nanoseconds", abi.proxy_get_current_time_nanoseconds(RET_U64));
  return load<u64>(RET_U64);
}

export function setTickPeriodMilliseconds(periodMs: u32): WasmResult {
  return <WasmResult>reportFailure("proxy_set_tick_period_milliseconds", abi.proxy_set_tick_period_milliseconds(periodMs));
}

// ---- buffers ---------------------------------------------------------------------------

/** Bytes [start, start+maxSize) of a buffer, or null when the buffer is unavailable. */
export function getBufferBytes(bufferType: BufferType, start: u32, maxSize: u32): ArrayBuffer | null {
  resetReturn();
  const r = abi.proxy_get_buffer_bytes(bufferType, start, maxSize, RET_PTR, RET_LEN);
  if (r == WasmResult.Ok) return takeBuffer();
  dropReturn();
  if (r != WasmResult.NotFound) reportFailure("proxy_get_buffer_bytes", r);
  return null;
}

export function setBufferBytes(bufferType: BufferType, start: u32, size: u32, value: ArrayBuffer): WasmResult {
  return <WasmResult>reportFailure("proxy_set_buffer_bytes",
    abi.proxy_set_buffer_bytes(bufferType, start, size, changetype<usize>(value), value.byteLength));
}

// ---- header maps -----------------------------------------------------------------------

/** Serializes pairs in the spec's map format: u32 count, (u32 key_len, u32 val_len)*,
 * then key \0 value \0 for each pair, little-endian. */
export function serializeHeaders(pairs: HeaderPair[]): ArrayBuffer {
  const n = pairs.length;
  const keys = new Array<ArrayBuffer>(n);
  const values = new Array<ArrayBuffer>(n);
  let size = 4 + 8 * n;
  for (let i = 0; i < n; i++) {
    const k = utf8(pairs[i].key);
    const v = utf8(pairs[i].value);
    keys[i] = k;
    values[i] = v;
    size += k.byteLength + v.byteLength + 2;
  }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, n);
  let lens = base + 4;
  let data = base + 4 + 8 * n;
  for (let i = 0; i < n; i++) {
    const k = keys[i];
    const v = values[i];
    store<u32>(lens, k.byteLength);
    store<u32>(lens + 4, v.byteLength);
    lens += 8;
    memory.copy(data, changetype<usize>(k), k.byteLength);
    data += k.byteLength;
    store<u8>(data, 0);
    data += 1;
    memory.copy(data, changetype<usize>(v), v.byteLength);
    data += v.byteLength;
    store<u8>(data, 0);
    data += 1;
  }
  return out;
}

/** Parses the spec's map format; an empty or malformed map gives an empty array. */
export function deserializeHeaders(buf: ArrayBuffer): HeaderPair[] {
  const out = new Array<HeaderPair>();
  const size = <usize>buf.byteLength;
  if (size < 4) return out;
  const base = changetype<usize>(buf);
  const n = <usize>load<u32>(base);
  const headerBytes: usize = <usize>4 + (n << 3);
  if (headerBytes > size) return out;
  let lens: usize = base + 4;
  let data: usize = base + headerBytes;
  const end = base + size;
  for (let i: usize = 0; i < n; i++) {
    const kl = <usize>load<u32>(lens);
    const vl = <usize>load<u32>(lens + 4);
    lens += 8;
    if (data + kl + vl + 2 > end) break;
    const key = String.UTF8.decodeUnsafe(data, kl);
    data += kl + 1;
    const value = String.UTF8.decodeUnsafe(data, vl);
    data += vl + 1;
    out.push(new HeaderPair(key, value));
  }
  return out;
}

export function getHeaderMapPairs(mapType: MapType): HeaderPair[] {
  resetReturn();
  const r = abi.proxy_get_header_map_pairs(mapType, RET_PTR, RET_LEN);
  if (r != WasmResult.Ok) {
    dropReturn();
    reportFailure("proxy_get_header_map_pairs", r);
    return new Array<HeaderPair>();
  }
  return deserializeHeaders(takeBuffer());
}

export function setHeaderMapPairs(mapType: MapType, pairs: HeaderPair[]): WasmResult {
  const buf = serializeHeaders(pairs);
  return <WasmResult>reportFailure("proxy_set_header_map_pairs",
    abi.proxy_set_header_map_pairs(mapType, changetype<usize>(buf), buf.byteLength));
}

/** Value of a header, or null when absent. `key` is UTF-8 bytes (see utf8Bytes). */
export function getHeaderMapValueBytes(mapType: MapType, key: ArrayBuffer): string | null {
  resetReturn();
  const r = abi.proxy_get_header_map_value(mapType, changetype<usize>(key), key.byteLength, RET_PTR, RET_LEN);
  if (r == WasmResult.Ok) return takeString();
  dropReturn();
  if (r != WasmResult.NotFound) reportFailure("proxy_get_header_map_value", r);
  return null;
}

/** Value of a header copied into `out`; false (and `out` emptied) when absent. `key` is
 * UTF-8 bytes encoded once (utf8Bytes). Allocation-free once `out` has grown. */
export function getHeaderMapValueInto(mapType: MapType, key: ArrayBuffer, out: Bytes): bool {
  resetReturn();
  const r = abi.proxy_get_header_map_value(mapType, changetype<usize>(key), key.byteLength, RET_PTR, RET_LEN);
  if (r == WasmResult.Ok) {
    takeInto(out);
    return true;
  }
  dropReturn();
  out.clear();
  if (r != WasmResult.NotFound) reportFailure("proxy_get_header_map_value", r);
  return false;
}

export function getHeaderMapValue(mapType: MapType, key: string): string | null {
  return getHeaderMapValueBytes(mapType, utf8(key));
}

/** Pre-encoded variants let a filter encode constant names/values once at configure time. */
export function addHeaderMapValueBytes(mapType: MapType, key: ArrayBuffer, value: ArrayBuffer): WasmResult {
  return <WasmResult>reportFailure("proxy_add_header_map_value", abi.proxy_add_header_map_value(
    mapType, changetype<usize>(key), key.byteLength, changetype<usize>(value), value.byteLength));
}

export function addHeaderMapValue(mapType: MapType, key: string, value: string): WasmResult {
  return addHeaderMapValueBytes(mapType, utf8(key), utf8(value));
}

export function replaceHeaderMapValueBytes(mapType: MapType, key: ArrayBuffer, value: ArrayBuffer): WasmResult {
  return <WasmResult>reportFailure("proxy_replace_header_map_value", abi.proxy_replace_header_map_value(
    mapType, changetype<usize>(key), key.byteLength, changetype<usize>(value), value.byteLength));
}

/** Add / replace with a value built in a Bytes (e.g. a template rendered per request). */
export function addHeaderMapValueOf(mapType: MapType, key: ArrayBuffer, value: Bytes): WasmResult {
  return <WasmResult>reportFailure("proxy_add_header_map_value", abi.proxy_add_header_map_value(
    mapType, changetype<usize>(key), key.byteLength, value.ptr, <usize>value.length));
}

export function replaceHeaderMapValueOf(mapType: MapType, key: ArrayBuffer, value: Bytes): WasmResult {
  return <WasmResult>reportFailure("proxy_replace_header_map_value", abi.proxy_replace_header_map_value(
    mapType, changetype<usize>(key), key.byteLength, value.ptr, <usize>value.length));
}

export function replaceHeaderMapValue(mapType: MapType, key: string, value: string): WasmResult {
  return replaceHeaderMapValueBytes(mapType, utf8(key), utf8(value));
}

export function removeHeaderMapValueBytes(mapType: MapType, key: ArrayBuffer): WasmResult {
  return <WasmResult>reportFailure("proxy_remove_header_map_value",
    abi.proxy_remove_header_map_value(mapType, changetype<usize>(key), key.byteLength));
}

export function removeHeaderMapValue(mapType: MapType, key: string): WasmResult {
  return removeHeaderMapValueBytes(mapType, utf8(key));
}

/** Serialized size of the map in bytes (as the spec defines it), 0 on failure. */
export function getHeaderMapSize(mapType: MapType): u32 {
  store<u32>(RET_U32, 0);
  reportFailure("proxy_get_header_map_size", abi.proxy_get_header_map_size(mapType, RET_U32));
  return load<u32>(RET_U32);
}

// ---- properties ------------------------------------------------------------------------

/** Path segments joined with \0, no trailing \0 (what Envoy and the Rust SDK send). */
export function serializePropertyPath(path: string[]): ArrayBuffer {
  const parts = new Array<ArrayBuffer>(path.length);
  let size = 0;
  for (let i = 0; i < path.length; i++) {
    const p = utf8(path[i]);
    parts[i] = p;
    size += p.byteLength + (i > 0 ? 1 : 0);
  }
  const out = new ArrayBuffer(size);
  let at = changetype<usize>(out);
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) {
      store<u8>(at, 0);
      at += 1;
    }
    const p = parts[i];
    memory.copy(at, changetype<usize>(p), p.byteLength);
    at += p.byteLength;
  }
  return out;
}

export function getPropertyBytes(serializedPath: ArrayBuffer): ArrayBuffer | null {
  resetReturn();
  const r = abi.proxy_get_property(changetype<usize>(serializedPath), serializedPath.byteLength, RET_PTR, RET_LEN);
  if (r == WasmResult.Ok) return takeBuffer();
  dropReturn();
  if (r != WasmResult.NotFound) reportFailure("proxy_get_property", r);
  return null;
}

/** A property copied into `out`; false (and `out` emptied) when absent. `serializedPath`
 * comes from serializePropertyPath, once at configure time. */
export function getPropertyInto(serializedPath: ArrayBuffer, out: Bytes): bool {
  resetReturn();
  const r = abi.proxy_get_property(changetype<usize>(serializedPath), serializedPath.byteLength, RET_PTR, RET_LEN);
  if (r == WasmResult.Ok) {
    takeInto(out);
    return true;
  }
  dropReturn();
  out.clear();
  if (r != WasmResult.NotFound) reportFailure("proxy_get_property", r);
  return false;
}

export function getProperty(path: string[]): ArrayBuffer | null {
  return getPropertyBytes(serializePropertyPath(path));
}

/** A property decoded as UTF-8 (string-valued properties: addresses, names, ids). */
export function getPropertyString(path: string[]): string | null {
  const v = getProperty(path);
  return v === null ? null : String.UTF8.decode(v);
}

/** An integer property. Envoy and Wisp encode integers (response.code, source.port …) as
 * 8 little-endian bytes; a decimal string is accepted too. `fallback` when absent. */
export function getPropertyInt64(path: string[], fallback: i64 = -1): i64 {
  const v = getProperty(path);
  return v === null ? fallback : int64Value(changetype<usize>(v), v.byteLength, fallback);
}

/** getPropertyInt64 without allocating: the property is read into `scratch` (reused by the
 * caller), the path comes from serializePropertyPath. */
export function getPropertyInt64Into(serializedPath: ArrayBuffer, scratch: Bytes, fallback: i64 = -1): i64 {
  return getPropertyInto(serializedPath, scratch) ? int64Value(scratch.ptr, scratch.length, fallback) : fallback;
}

/** An integer property's bytes: 8 little-endian bytes, or decimal digits; else `fallback`. */
function int64Value(ptr: usize, len: i32, fallback: i64): i64 {
  if (len == 8) return load<i64>(ptr);
  if (len == 0) return fallback;
  let v: i64 = 0;
  for (let i = 0; i < len; i++) {
    const c = <i32>load<u8>(ptr + <usize>i) - 0x30;
    if (c < 0 || c > 9) return fallback;
    v = v * 10 + c;
  }
  return v;
}

export function setProperty(path: string[], value: ArrayBuffer): WasmResult {
  const p = serializePropertyPath(path);
  return <WasmResult>reportFailure("proxy_set_property",
    abi.proxy_set_property(changetype<usize>(p), p.byteLength, changetype<usize>(value), value.byteLength));
}

/** Wisp's root property wisp.skip_phases (set while configuring): phases this filter has
 * nothing to do in, comma-separated ("response_headers"). Other hosts refuse or ignore the
 * property: the result is not reported, so the filter logs nothing there. */
export function declareSkippedPhases(phases: string): void {
  setWispRootProperty("skip_phases", phases);
}

/** Wisp's root property wisp.response_headers_statuses (see RootContext). */
export function declareResponseHeadersStatuses(statuses: string): void {
  setWispRootProperty("response_headers_statuses", statuses);
}

// Hints to Wisp, set while configuring; other hosts refuse or ignore them, so the result is
// not checked (and not reported: a failure here is not the filter's).
function setWispRootProperty(name: string, value: string): void {
  const p = serializePropertyPath(["wisp", name]);
  const v = String.UTF8.encode(value);
  abi.proxy_set_property(changetype<usize>(p), p.byteLength, changetype<usize>(v), v.byteLength);
}

// ---- stream control --------------------------------------------------------------------

export function sendLocalResponseBytes(status: u32, details: string, body: ArrayBuffer | null, headers: HeaderPair[], grpcStatus: i32 = -1): WasmResult {
  const d = utf8(details);
  const h = serializeHeaders(headers);
  return <WasmResult>reportFailure("proxy_send_local_response", abi.proxy_send_local_response(
    status, changetype<usize>(d), d.byteLength, bufPtr(body), bufLen(body),
    changetype<usize>(h), h.byteLength, grpcStatus));
}

export function sendLocalResponse(status: u32, details: string, body: string, headers: HeaderPair[], grpcStatus: i32 = -1): WasmResult {
  return sendLocalResponseBytes(status, details, utf8(body), headers, grpcStatus);
}

export function continueStream(streamType: StreamType): WasmResult {
  return <WasmResult>reportFailure("proxy_continue_stream", abi.proxy_continue_stream(streamType));
}

export function closeStream(streamType: StreamType): WasmResult {
  return <WasmResult>reportFailure("proxy_close_stream", abi.proxy_close_stream(streamType));
}

// ---- shared data -----------------------------------------------------------------------

/** A shared-data read: value is null when the key does not exist (cas is then 0). */
export class SharedData {
  constructor(public value: ArrayBuffer | null, public cas: u32, public result: WasmResult) {}
}

export function getSharedData(key: string): SharedData {
  resetReturn();
  store<u32>(RET_U32, 0);
  const k = utf8(key);
  const r = abi.proxy_get_shared_data(changetype<usize>(k), k.byteLength, RET_PTR, RET_LEN, RET_U32);
  if (r == WasmResult.Ok) {
    const cas = load<u32>(RET_U32);
    return new SharedData(takeBuffer(), cas, WasmResult.Ok);
  }
  dropReturn();
  if (r != WasmResult.NotFound) {
    reportFailure("proxy_get_shared_data", r);
    return new SharedData(null, 0, <WasmResult>r);
  }
  // Wisp reports a create-if-absent cas for a missing key (Envoy leaves it 0: an
  // unconditional write). Passing it back to setSharedData makes creation race-free.
  return new SharedData(null, load<u32>(RET_U32), WasmResult.NotFound);
}

/** A shared-data read that lands in a reused buffer: keep one per root context and pass it
 * to readSharedData for every request. */
export class SharedSlot {
  readonly value: Bytes;
  /** CAS of the read (Wisp reports a create-if-absent cas for a missing key). */
  cas: u32 = 0;
  result: WasmResult = WasmResult.NotFound;
  constructor(capacity: i32 = 32) { this.value = new Bytes(capacity); }
  /** The key existed (value holds its bytes). */
  @inline get found(): bool { return this.result == WasmResult.Ok; }
}

/** getSharedData without allocating: the value goes into `into.value` (emptied when the key
 * is missing), the cas and result into `into`. */
export function readSharedData(key: Bytes, into: SharedSlot): WasmResult {
  resetReturn();
  store<u32>(RET_U32, 0);
  const r = abi.proxy_get_shared_data(key.ptr, <usize>key.length, RET_PTR, RET_LEN, RET_U32);
  into.result = <WasmResult>r;
  into.cas = load<u32>(RET_U32);
  if (r == WasmResult.Ok) {
    takeInto(into.value);
    return WasmResult.Ok;
  }
  dropReturn();
  into.value.clear();
  if (r != WasmResult.NotFound) {
    into.cas = 0;
    reportFailure("proxy_get_shared_data", r);
  }
  return <WasmResult>r;
}

/** setSharedData with a key and value in Bytes (no encoding, no allocation). */
export function writeSharedData(key: Bytes, value: Bytes, cas: u32 = 0): WasmResult {
  const r = abi.proxy_set_shared_data(key.ptr, <usize>key.length, value.ptr, <usize>value.length, cas);
  if (r != WasmResult.Ok && r != WasmResult.CasMismatch) reportFailure("proxy_set_shared_data", r);
  return <WasmResult>r;
}

/** Stores value; with cas != 0 the write only succeeds if nobody wrote since the read that
 * returned cas. CAS_MISMATCH is returned (not logged): the caller retries. */
export function setSharedData(key: string, value: ArrayBuffer, cas: u32 = 0): WasmResult {
  const k = utf8(key);
  const r = abi.proxy_set_shared_data(changetype<usize>(k), k.byteLength, changetype<usize>(value), value.byteLength, cas);
  if (r != WasmResult.Ok && r != WasmResult.CasMismatch) reportFailure("proxy_set_shared_data", r);
  return <WasmResult>r;
}

// ---- shared queues ---------------------------------------------------------------------

/** Registers (or opens) a queue; returns its id, or 0 on failure. */
export function registerSharedQueue(name: string): u32 {
  store<u32>(RET_U32, 0);
  const n = utf8(name);
  const r = abi.proxy_register_shared_queue(changetype<usize>(n), n.byteLength, RET_U32);
  if (r != WasmResult.Ok) {
    reportFailure("proxy_register_shared_queue", r);
    return 0;
  }
  return load<u32>(RET_U32);
}

/** Resolves a queue registered by another VM; returns its id, or 0 when not found. */
export function resolveSharedQueue(vmId: string, name: string): u32 {
  store<u32>(RET_U32, 0);
  const v = utf8(vmId);
  const n = utf8(name);
  const r = abi.proxy_resolve_shared_queue(changetype<usize>(v), v.byteLength, changetype<usize>(n), n.byteLength, RET_U32);
  if (r != WasmResult.Ok) {
    if (r != WasmResult.NotFound) reportFailure("proxy_resolve_shared_queue", r);
    return 0;
  }
  return load<u32>(RET_U32);
}

export function enqueueSharedQueue(queueId: u32, value: ArrayBuffer): WasmResult {
  return <WasmResult>reportFailure("proxy_enqueue_shared_queue",
    abi.proxy_enqueue_shared_queue(queueId, changetype<usize>(value), value.byteLength));
}

/** Next item, or null when the queue is empty (or unknown). */
export function dequeueSharedQueue(queueId: u32): ArrayBuffer | null {
  resetReturn();
  const r = abi.proxy_dequeue_shared_queue(queueId, RET_PTR, RET_LEN);
  if (r == WasmResult.Ok) return takeBuffer();
  dropReturn();
  if (r != WasmResult.Empty) reportFailure("proxy_dequeue_shared_queue", r);
  return null;
}

// ---- http calls ------------------------------------------------------------------------

/** Starts an out-of-band call; returns the call id (token), or 0 on failure. headers must
 * include :method, :path and :authority. */
export function httpCall(cluster: string, headers: HeaderPair[], body: ArrayBuffer | null, trailers: HeaderPair[], timeoutMs: u32): u32 {
  store<u32>(RET_U32, 0);
  const c = utf8(cluster);
  const h = serializeHeaders(headers);
  const t = serializeHeaders(trailers);
  const r = abi.proxy_http_call(changetype<usize>(c), c.byteLength, changetype<usize>(h), h.byteLength,
    bufPtr(body), bufLen(body), changetype<usize>(t), t.byteLength, timeoutMs, RET_U32);
  if (r != WasmResult.Ok) {
    reportFailure("proxy_http_call", r);
    return 0;
  }
  return load<u32>(RET_U32);
}

// ---- metrics ---------------------------------------------------------------------------

/** Defines a metric; returns its id, or u32.MAX_VALUE on failure (ids may legally be 0). */
export function defineMetric(metricType: MetricType, name: string): u32 {
  store<u32>(RET_U32, 0);
  const n = utf8(name);
  const r = abi.proxy_define_metric(metricType, changetype<usize>(n), n.byteLength, RET_U32);
  if (r != WasmResult.Ok) {
    reportFailure("proxy_define_metric", r);
    return u32.MAX_VALUE;
  }
  return load<u32>(RET_U32);
}

export function incrementMetric(metricId: u32, delta: i64): WasmResult {
  return <WasmResult>reportFailure("proxy_increment_metric", abi.proxy_increment_metric(metricId, delta));
}

export function recordMetric(metricId: u32, value: u64): WasmResult {
  return <WasmResult>reportFailure("proxy_record_metric", abi.proxy_record_metric(metricId, value));
}

export function getMetric(metricId: u32): u64 {
  store<u64>(RET_U64, 0);
  reportFailure("proxy_get_metric", abi.proxy_get_metric(metricId, RET_U64));
  return load<u64>(RET_U64);
}

// ---- context lifecycle -----------------------------------------------------------------

export function setEffectiveContext(contextId: u32): WasmResult {
  return <WasmResult>reportFailure("proxy_set_effective_context", abi.proxy_set_effective_context(contextId));
}

export function done(): WasmResult {
  return <WasmResult>reportFailure("proxy_done", abi.proxy_done());
}

/** UTF-8 bytes of a string, for the *Bytes variants above. */
export function utf8Bytes(s: string): ArrayBuffer {
  return utf8(s);
}
