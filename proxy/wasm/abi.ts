// proxy-wasm ABI constants (0.2.1, with the 0.1.0 differences) and the header-map wire
// format shared by the host and filters: u32 count, then (u32 key_len, u32 value_len) per
// pair, then each key and value followed by a NUL byte. All integers little-endian.

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

/** Host functions a filter may import from module "env" (every ABI version we speak). The
 * AssemblyScript runtime helpers (abort, trace, seed) are accepted so AS filters built with
 * default options load too. */
export const KNOWN_ENV_IMPORTS: ReadonlySet<string> = new Set([
  'proxy_log', 'proxy_get_log_level', 'proxy_get_current_time_nanoseconds',
  'proxy_set_tick_period_milliseconds', 'proxy_get_buffer_bytes', 'proxy_set_buffer_bytes',
  'proxy_get_buffer_status', 'proxy_get_header_map_pairs', 'proxy_set_header_map_pairs',
  'proxy_get_header_map_value', 'proxy_add_header_map_value', 'proxy_replace_header_map_value',
  'proxy_remove_header_map_value', 'proxy_get_header_map_size', 'proxy_get_property',
  'proxy_set_property', 'proxy_send_local_response', 'proxy_continue_stream',
  'proxy_close_stream', 'proxy_get_shared_data', 'proxy_set_shared_data',
  'proxy_register_shared_queue', 'proxy_resolve_shared_queue', 'proxy_enqueue_shared_queue',
  'proxy_dequeue_shared_queue', 'proxy_http_call', 'proxy_grpc_call', 'proxy_grpc_stream',
  'proxy_grpc_send', 'proxy_grpc_cancel', 'proxy_grpc_close', 'proxy_define_metric',
  'proxy_increment_metric', 'proxy_record_metric', 'proxy_get_metric',
  'proxy_set_effective_context', 'proxy_done', 'proxy_call_foreign_function',
  // 0.1.0 names
  'proxy_continue_request', 'proxy_continue_response', 'proxy_get_configuration',
  'proxy_clear_route_cache', 'proxy_get_status',
  // AssemblyScript runtime
  'abort', 'trace', 'seed',
]);

export const KNOWN_WASI_MODULES: ReadonlySet<string> = new Set(['wasi_snapshot_preview1', 'wasi_unstable']);
export const KNOWN_WASI_IMPORTS: ReadonlySet<string> = new Set([
  'fd_write', 'fd_read', 'fd_close', 'fd_seek', 'fd_fdstat_get', 'fd_prestat_get',
  'fd_prestat_dir_name', 'clock_time_get', 'clock_res_get', 'random_get', 'environ_sizes_get',
  'environ_get', 'args_sizes_get', 'args_get', 'proc_exit', 'sched_yield', 'poll_oneoff',
]);

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
