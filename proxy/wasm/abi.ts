// proxy-wasm ABI constants (0.2.1, with the 0.1.0 differences) and the header-map wire
// format shared by the host and filters: u32 count, then (u32 key_len, u32 value_len) per
// pair, then each key and value followed by a NUL byte. All integers little-endian.

import type { FunctionSignature, ValueType } from './wasm-binary.js';

export const WasmResult = {
  Ok: 0,
  NotFound: 1,
  BadArgument: 2,
  SerializationFailure: 3,
  ParseFailure: 4,
  BadExpression: 5,
  InvalidMemoryAccess: 6,
  Empty: 7,
  CasMismatch: 8,
  ResultMismatch: 9,
  InternalFailure: 10,
  BrokenConnection: 11,
  Unimplemented: 12,
} as const;

export const Action = { Continue: 0, Pause: 1 } as const;

export const MapType = {
  RequestHeaders: 0,
  RequestTrailers: 1,
  ResponseHeaders: 2,
  ResponseTrailers: 3,
  GrpcReceiveInitialMetadata: 4,
  GrpcReceiveTrailingMetadata: 5,
  HttpCallResponseHeaders: 6,
  HttpCallResponseTrailers: 7,
} as const;

export const BufferType = {
  HttpRequestBody: 0,
  HttpResponseBody: 1,
  DownstreamData: 2,
  UpstreamData: 3,
  HttpCallResponseBody: 4,
  GrpcReceiveBuffer: 5,
  VmConfiguration: 6,
  PluginConfiguration: 7,
} as const;

export const LogLevel = { Trace: 0, Debug: 1, Info: 2, Warn: 3, Error: 4, Critical: 5 } as const;
export const LOG_LEVEL_NAMES = ['trace', 'debug', 'info', 'warn', 'error', 'critical'] as const;
export type LogLevelName = (typeof LOG_LEVEL_NAMES)[number];

export const MetricType = { Counter: 0, Gauge: 1, Histogram: 2 } as const;
export const METRIC_TYPE_NAMES = ['counter', 'gauge', 'histogram'] as const;
export type MetricTypeName = (typeof METRIC_TYPE_NAMES)[number];

export type AbiVersion = '0.2.1' | '0.2.0' | '0.1.0';

/** The ABI a module speaks, from the marker function it exports (newest wins). */
export function detectAbi(exportNames: ReadonlySet<string>): AbiVersion | null {
  if (exportNames.has('proxy_abi_version_0_2_1')) return '0.2.1';
  if (exportNames.has('proxy_abi_version_0_2_0')) return '0.2.0';
  if (exportNames.has('proxy_abi_version_0_1_0')) return '0.1.0';
  return null;
}

/** Shorthand for the table below: `n` i32 parameters returning one i32 (or `results`) — the shape of nearly
 * every proxy-wasm host function (pointers, sizes, enums, u32s, bools are all i32 on wasm32,
 * and each returns proxy_status_t) and of most WASI preview1 functions (returning errno). */
function i32s(n: number, results: readonly ValueType[] = ['i32']): FunctionSignature {
  return { params: new Array<ValueType>(n).fill('i32'), results };
}
function sig(params: readonly ValueType[], results: readonly ValueType[]): FunctionSignature {
  return { params, results };
}

/**
 * The wasm signature of every host function a filter may import from module "env", for every
 * ABI version we speak (0.2.1, 0.2.0 and the 0.1.0 names), as the proxy-wasm spec
 * (abi-versions/v0.2.1 and v0.1.0) and the SDKs declare them. A JS host function accepts any
 * signature, so checkModule compares each import against this list: a module asking for
 * env.proxy_log as (i64, f64) -> f32 is refused instead of handing the host garbage. Where
 * the spec and real SDKs disagree on a function's shape and every shape works against this
 * host (the arguments or result that differ are ones it does not use), each is listed.
 * The AssemblyScript runtime helpers (abort, trace, seed) are here so AS filters built with
 * default options load too.
 */
export const ENV_IMPORT_SIGNATURES: ReadonlyMap<string, readonly FunctionSignature[]> = new Map<string, readonly FunctionSignature[]>([
  // logging, time
  ['proxy_log', [i32s(3)]],
  ['proxy_get_log_level', [i32s(1)]],
  ['proxy_get_current_time_nanoseconds', [i32s(1)]], // writes a u64 through the pointer
  ['proxy_set_tick_period_milliseconds', [i32s(1)]],
  // buffers
  ['proxy_get_buffer_bytes', [i32s(5)]],
  ['proxy_set_buffer_bytes', [i32s(5)]],
  ['proxy_get_buffer_status', [i32s(3)]],
  // header maps
  ['proxy_get_header_map_pairs', [i32s(3)]],
  ['proxy_set_header_map_pairs', [i32s(3)]],
  ['proxy_get_header_map_value', [i32s(5)]],
  ['proxy_add_header_map_value', [i32s(5)]],
  ['proxy_replace_header_map_value', [i32s(5)]],
  ['proxy_remove_header_map_value', [i32s(3)]],
  ['proxy_get_header_map_size', [i32s(2)]],
  // properties
  ['proxy_get_property', [i32s(4)]],
  ['proxy_set_property', [i32s(4)]],
  // stream control: continue/close take the stream type in 0.2.x
  ['proxy_send_local_response', [i32s(8)]],
  ['proxy_continue_stream', [i32s(1)]],
  ['proxy_close_stream', [i32s(1)]],
  // shared data and queues
  ['proxy_get_shared_data', [i32s(5)]],
  ['proxy_set_shared_data', [i32s(5)]],
  ['proxy_register_shared_queue', [i32s(3)]],
  ['proxy_resolve_shared_queue', [i32s(5)]],
  ['proxy_enqueue_shared_queue', [i32s(3)]],
  ['proxy_dequeue_shared_queue', [i32s(3)]],
  // callouts. gRPC: the spec and the Rust/C++ SDKs pass initial metadata (12 and 9 params);
  // Solo's and G-Core's AssemblyScript SDKs leave it out (10 and 7). Wisp answers both with
  // Unimplemented without reading an argument, so both shapes are accepted.
  ['proxy_http_call', [i32s(10)]],
  ['proxy_grpc_call', [i32s(12), i32s(10)]],
  ['proxy_grpc_stream', [i32s(9), i32s(7)]],
  ['proxy_grpc_send', [i32s(4)]],
  ['proxy_grpc_cancel', [i32s(1)]],
  ['proxy_grpc_close', [i32s(1)]],
  // metrics: the value of increment/record is a 64-bit integer (host.ts takes a bigint)
  ['proxy_define_metric', [i32s(4)]],
  ['proxy_increment_metric', [sig(['i32', 'i64'], ['i32'])]],
  ['proxy_record_metric', [sig(['i32', 'i64'], ['i32'])]],
  ['proxy_get_metric', [i32s(2)]],
  // contexts, foreign functions
  ['proxy_set_effective_context', [i32s(1)]],
  ['proxy_done', [i32s(0)]],
  ['proxy_call_foreign_function', [i32s(6)]],
  // 0.1.0 names. The v0.1.0 spec gives continue_request/continue_response no result, while
  // the Go SDK of that ABI declares them returning a status; the
  // host returns a status either way, which a void import drops. clear_route_cache is not in
  // the spec; the C++, Go and AssemblyScript SDKs declare it () -> status.
  ['proxy_continue_request', [i32s(0), i32s(0, [])]],
  ['proxy_continue_response', [i32s(0), i32s(0, [])]],
  ['proxy_get_configuration', [i32s(2)]],
  ['proxy_clear_route_cache', [i32s(0)]],
  ['proxy_get_status', [i32s(3)]],
  // AssemblyScript runtime (std/assembly/builtins.ts, the same in AS 0.14 and 0.28)
  ['abort', [i32s(4, [])]],
  ['trace', [sig(['i32', 'i32', 'f64', 'f64', 'f64', 'f64', 'f64'], [])]],
  ['seed', [sig([], ['f64'])]],
]);

/** WASI preview1 functions a filter may import, as wasi_snapshot_preview1.witx lowers them to
 * wasm (the first result is the errno; further results become out-pointers; 64-bit integers
 * such as timestamps and file offsets stay i64). wasi_unstable (snapshot 0) declares these
 * seventeen with the same wasm shapes. */
export const WASI_IMPORT_SIGNATURES: ReadonlyMap<string, readonly FunctionSignature[]> = new Map<string, readonly FunctionSignature[]>([
  ['fd_write', [i32s(4)]],
  ['fd_read', [i32s(4)]],
  ['fd_close', [i32s(1)]],
  ['fd_seek', [sig(['i32', 'i64', 'i32', 'i32'], ['i32'])]],
  ['fd_fdstat_get', [i32s(2)]],
  ['fd_prestat_get', [i32s(2)]],
  ['fd_prestat_dir_name', [i32s(3)]],
  ['clock_time_get', [sig(['i32', 'i64', 'i32'], ['i32'])]],
  ['clock_res_get', [i32s(2)]],
  ['random_get', [i32s(2)]],
  ['environ_sizes_get', [i32s(2)]],
  ['environ_get', [i32s(2)]],
  ['args_sizes_get', [i32s(2)]],
  ['args_get', [i32s(2)]],
  ['proc_exit', [i32s(1, [])]],
  ['sched_yield', [i32s(0)]],
  ['poll_oneoff', [i32s(4)]],
]);

const KNOWN_WASI_MODULES: ReadonlySet<string> = new Set(['wasi_snapshot_preview1', 'wasi_unstable']);

/** The signatures Wisp accepts for a function import, or null when it provides no such function. */
export function hostFunctionSignatures(module: string, name: string): readonly FunctionSignature[] | null {
  if (module === 'env') return ENV_IMPORT_SIGNATURES.get(name) ?? null;
  if (KNOWN_WASI_MODULES.has(module)) return WASI_IMPORT_SIGNATURES.get(name) ?? null;
  return null;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** Serialise flat [name, value, ...] pairs into the proxy-wasm map format. */
export function serializeHeaderMap(pairs: readonly string[]): Uint8Array {
  const n = pairs.length >> 1;
  const encoded: Uint8Array[] = new Array(pairs.length);
  let size = 4 + n * 8;
  for (let i = 0; i < pairs.length; i++) {
    const b = encoder.encode(pairs[i]);
    encoded[i] = b;
    size += b.length + 1;
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, n, true);
  let p = 4;
  for (let i = 0; i < pairs.length; i++) {
    view.setUint32(p, encoded[i].length, true);
    p += 4;
  }
  for (let i = 0; i < pairs.length; i++) {
    out.set(encoded[i], p);
    p += encoded[i].length + 1; // NUL already zero
  }
  return out;
}

/** Parse the proxy-wasm map format; null when the bytes do not describe a map. */
export function deserializeHeaderMap(bytes: Uint8Array): string[] | null {
  if (bytes.length < 4) return bytes.length === 0 ? [] : null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(0, true);
  if (n > (bytes.length - 4) / 8) return null;
  const out: string[] = new Array(n * 2);
  let p = 4 + n * 8;
  for (let i = 0; i < n * 2; i++) {
    const len = view.getUint32(4 + i * 4, true);
    if (p + len + 1 > bytes.length) return null;
    out[i] = decoder.decode(bytes.subarray(p, p + len));
    p += len + 1;
  }
  return out;
}

// RFC 9110 token characters, as a lookup table (no regex on the hot path).
const TOKEN = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TOKEN[c] = 1;
for (let c = 65; c <= 90; c++) TOKEN[c] = 1;
for (let c = 97; c <= 122; c++) TOKEN[c] = 1;

/** Why a header name is refused, or null when it is valid. Pseudo-headers (":path") pass. */
export function headerNameError(name: string): string | null {
  if (name.length === 0) return 'empty header name';
  const start = name.charCodeAt(0) === 58 /* : */ ? 1 : 0;
  if (start === 1 && name.length === 1) return 'empty pseudo-header name';
  for (let i = start; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || TOKEN[c] === 0) return `invalid character 0x${c.toString(16)} in header name "${printable(name)}"`;
  }
  return null;
}

/** Why a header value is refused (CR, LF or NUL would split or truncate the message). */
export function headerValueError(value: string): string | null {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 13 || c === 10 || c === 0) return `header value contains ${c === 13 ? 'CR' : c === 10 ? 'LF' : 'NUL'}`;
  }
  return null;
}

function printable(s: string): string {
  let out = '';
  for (let i = 0; i < s.length && i < 64; i++) {
    const c = s.charCodeAt(i);
    out += c < 32 || c === 127 ? `\\x${c.toString(16).padStart(2, '0')}` : s[i];
  }
  return out;
}

/** Names of pairs that are pseudo-headers are compared case-sensitively; proxy-wasm filters
 * address regular headers in lower case, so lookups lower-case the key once. */
export function lowerAscii(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.toLowerCase();
  }
  return s;
}

/** An address in Envoy's attribute form ("10.0.0.1:80", "[::1]:80"); the bare ip when port is 0. */
export function envoyAddress(ip: string, port: number): string {
  if (port === 0) return ip;
  return ip.indexOf(':') >= 0 ? `[${ip}]:${port}` : `${ip}:${port}`;
}
