// The proxy-wasm host functions (module "env") for one filter instance. Each import reads
// the instance's current call state (stream, context) and answers with a WasmResult; guest
// mistakes are refused with a status, never thrown, and logged (refuse) as
// "<call> -> <status name> (<number>): <reason>".

import {
  BufferType,
  deserializeHeaderMap,
  envoyAddress,
  headerNameError,
  headerValueError,
  LogLevel,
  lowerAscii,
  MapType,
  serializeHeaderMap,
  WasmResult,
} from './abi.js';
import type { FilterInstance } from './instance.js';
import { Info, mapValue, type StreamState } from './stream-state.js';
import { ABSENT_CAS } from './shared-state.js';
import { packedLength, parseStatusSet } from './wire.js';

const { Ok, NotFound, BadArgument, InvalidMemoryAccess, Empty, Unimplemented, SerializationFailure, InternalFailure } = WasmResult;

/** WasmResult and MapType names by number, for log lines. */
const RESULT_NAMES: string[] = [];
for (const [name, code] of Object.entries(WasmResult)) RESULT_NAMES[code] = name;
const MAP_TYPE_NAMES: string[] = [];
for (const [name, code] of Object.entries(MapType)) MAP_TYPE_NAMES[code] = name;

/**
 * The filter misused host call `call`: log why, with the status it gets back by name and
 * number, and return that status. Only failure paths call it (the message is built there,
 * never on a call that succeeds). Answers a filter probes with on every request (NotFound
 * for a missing header or property, Empty, CasMismatch) are returned without it.
 */
export function refuse(inst: FilterInstance, call: string, status: number, reason: string): number {
  if (inst.mayLogRefusal()) inst.log(LogLevel.Warn, `${call} -> ${RESULT_NAMES[status] ?? 'status'} (${status}): ${reason}`);
  return status;
}

/** `what` at guest [ptr, ptr + len) is not inside guest memory. */
function outOfBounds(inst: FilterInstance, call: string, what: string, ptr: number, len: number): number {
  return refuse(inst, call, InvalidMemoryAccess, `${what} [${ptr >>> 0}, +${len >>> 0}) is outside guest memory (${inst.memoryBytes} bytes)`);
}

/** A proxy_get_* answer from FilterInstance.return*: its InvalidMemoryAccess logged with why. */
function answered(inst: FilterInstance, call: string, result: number): number {
  return result === InvalidMemoryAccess ? refuse(inst, call, result, inst.returnFailure) : result;
}

/** A header map call named a map it cannot use here: unknown, read-only, or not in this
 * callback (no stream in a root context, response headers before the response). */
function badMap(inst: FilterInstance, call: string, mapType: number, writing: boolean): number {
  const name = MAP_TYPE_NAMES[mapType];
  let why: string;
  if (name === undefined) why = `unknown map type ${mapType}`;
  else if (writing && !isWritableMap(mapType)) why = `map type ${mapType} (${name}) cannot be written`;
  else why = `map type ${mapType} (${name}) is not available ${inst.stream === null ? 'outside a stream' : 'in this callback'}`;
  return refuse(inst, call, BadArgument, why);
}

function unknownBufferType(inst: FilterInstance, call: string, type: number): number {
  return refuse(inst, call, BadArgument, `unknown buffer type ${type}`);
}

/** A metric call SharedState refused: NotFound for an id proxy_define_metric never gave,
 * BadArgument for a histogram incremented. */
function badMetric(inst: FilterInstance, call: string, status: number, id: number): number {
  return refuse(inst, call, status, status === NotFound ? `no metric has id ${id}` : `metric ${id} is a histogram: record values into it`);
}

/** Which header list of the current stream a map type refers to; null when not available. */
function headerList(inst: FilterInstance, mapType: number): string[] | null {
  if (mapType === MapType.HttpCallResponseHeaders) return inst.httpResponse?.headers ?? null;
  if (mapType === MapType.HttpCallResponseTrailers) return inst.httpResponse !== null ? [] : null;
  const s = inst.stream;
  if (s === null) return null;
  if (mapType === MapType.RequestHeaders) return s.requestHeaders;
  if (mapType === MapType.ResponseHeaders) return s.responseStatus > 0 ? s.responseHeaders : null;
  // Trailers exist only once the body ended with some (null before, and when there were none).
  if (mapType === MapType.ResponseTrailers) return s.responseTrailers;
  if (mapType === MapType.RequestTrailers) return s.requestTrailers;
  return null;
}

function markDirty(inst: FilterInstance, mapType: number, appendOnly = false): void {
  const s = inst.stream as StreamState;
  if (mapType === MapType.RequestTrailers || mapType === MapType.ResponseTrailers) {
    s.trailersDirty = true;
  } else if (mapType === MapType.RequestHeaders) {
    s.requestDirty = true;
    if (!appendOnly) s.requestAppendOnly = false;
  } else {
    s.responseDirty = true;
    if (!appendOnly) s.responseAppendOnly = false;
  }
}

const EMPTY_BYTES = new Uint8Array(0);

function isWritableMap(mapType: number): boolean {
  return mapType >= MapType.RequestHeaders && mapType <= MapType.ResponseTrailers; // headers and trailers, both ways
}

/** The serialized header map a filter passed at [ptr, ptr + len) as a [name, value, ...] list,
 * names lower-cased and every pair checked (acceptHeader); the status when it is out of
 * bounds, not a header map, or holds a pair Wisp refuses (each logged). */
function readHeaderMap(inst: FilterInstance, call: string, what: string, ptr: number, len: number): string[] | number {
  const bytes = inst.viewBytes(ptr, len);
  if (bytes === null) return outOfBounds(inst, call, what, ptr, len);
  const pairs = deserializeHeaderMap(bytes);
  if (pairs === null) return refuse(inst, call, SerializationFailure, `${len} header bytes are not a serialized header map`);
  for (let i = 0; i < pairs.length; i += 2) {
    pairs[i] = lowerAscii(pairs[i]);
    if (!acceptHeader(inst, call, pairs[i], pairs[i + 1])) return BadArgument;
  }
  return pairs;
}

/** Validates a header pair a filter wants to write; logs and returns false when refused. */
function acceptHeader(inst: FilterInstance, call: string, name: string, value: string | null): boolean {
  const err = headerNameError(name) ?? (value === null ? null : headerValueError(value));
  if (err === null) return true;
  refuse(inst, call, BadArgument, err);
  return false;
}

function removeKey(list: string[], key: string): void {
  let w = 0;
  for (let r = 0; r < list.length; r += 2) {
    if (list[r] === key) continue;
    list[w++] = list[r];
    list[w++] = list[r + 1];
  }
  list.length = w;
}

/** Wisp's own root property: phases a filter has nothing to do in, set while it configures
 * (comma-separated: response_headers, response_trailers). Wisp then never calls it there, and
 * when every filter of a chain skips a phase the response does not wait for the workers for
 * it. Other hosts answer the set with an error or keep an unused property: a filter stays
 * portable. */
const SKIP_PHASES = 'wisp.skip_phases';

function skipPhases(inst: FilterInstance, value: Uint8Array): number {
  for (const phase of Buffer.from(value).toString('utf8').split(',')) {
    const p = phase.trim();
    if (p === 'response_headers') inst.declaredNoResponseHeaders = true;
    else if (p === 'response_trailers') inst.declaredNoResponseTrailers = true;
    else if (p.length > 0) {
      return refuse(inst, 'proxy_set_property', BadArgument, `${SKIP_PHASES}: unknown phase "${p}" (known: response_headers, response_trailers)`);
    }
  }
  return Ok;
}

/** Wisp's own root property: the response statuses the filter's proxy_on_response_headers is
 * for ("500-599", "429,500-599"), set while it configures. For other statuses Wisp skips it
 * (on_log still runs and can read response.code), and when no filter of a chain wants the
 * status the response does not wait for the workers. A circuit breaker needs failures before
 * the client sees them and successes only eventually. Portable like wisp.skip_phases. */
const RESPONSE_HEADERS_STATUSES = 'wisp.response_headers_statuses';

function responseHeadersStatuses(inst: FilterInstance, value: Uint8Array): number {
  const set = parseStatusSet(Buffer.from(value).toString('utf8'));
  if (typeof set === 'string') return refuse(inst, 'proxy_set_property', BadArgument, `${RESPONSE_HEADERS_STATUSES}: ${set}`);
  inst.responseHeadersStatuses = set;
  return Ok;
}

/** The root properties a filter sets while configuring to tell Wisp what it needs. */
function setConfigureProperty(inst: FilterInstance, path: string, value: Uint8Array): number {
  if (path === SKIP_PHASES) return skipPhases(inst, value);
  if (path === RESPONSE_HEADERS_STATUSES) return responseHeadersStatuses(inst, value);
  return NotFound;
}

/** Paths filters asked for, as they arrived -> dotted: filters ask for the same few each request. */
const dottedPaths = new Map<string, string>();

/** A property path as it arrives (segments NUL-separated, sometimes NUL-terminated), dotted. */
function propertyPath(raw: string): string {
  let path = dottedPaths.get(raw);
  if (path !== undefined) return path;
  path = raw.endsWith('\0') ? raw.slice(0, -1) : raw;
  if (path.includes('\0')) path = path.split('\0').join('.');
  if (dottedPaths.size >= 1024) dottedPaths.clear();
  dottedPaths.set(raw, path);
  return path;
}

/** The Envoy attributes Wisp answers itself; a path's id is its index here. Every other path
 * (request.headers.<name>, properties set by filters) goes by its text (customProperty). */
export const KNOWN_PROPERTIES: readonly string[] = [
  'plugin_name', 'plugin_root_id', 'plugin_vm_id',
  'request.path', 'request.url_path', 'request.query', 'request.method', 'request.scheme', 'request.host',
  'request.id', 'request.headers', 'response.code', 'response.headers',
  'source.address', 'source.ip', 'source.port', 'destination.address', 'destination.port', 'connection.id',
  'route_name', 'xds.route_name', 'cluster_name', 'xds.cluster_name', 'listener_name', 'xds.listener_name',
];
const P_PLUGIN_NAME = 0;
const P_PLUGIN_ROOT_ID = 1;
const P_PLUGIN_VM_ID = 2;
const P_REQUEST_PATH = 3;
const P_REQUEST_URL_PATH = 4;
const P_REQUEST_QUERY = 5;
const P_REQUEST_METHOD = 6;
const P_REQUEST_SCHEME = 7;
const P_REQUEST_HOST = 8;
const P_REQUEST_ID = 9;
const P_REQUEST_HEADERS = 10;
const P_RESPONSE_CODE = 11;
const P_RESPONSE_HEADERS = 12;
const P_SOURCE_ADDRESS = 13;
const P_SOURCE_IP = 14;
const P_SOURCE_PORT = 15;
const P_DESTINATION_ADDRESS = 16;
const P_DESTINATION_PORT = 17;
const P_CONNECTION_ID = 18;
const P_ROUTE_NAME = 19;
const P_XDS_ROUTE_NAME = 20;
const P_CLUSTER_NAME = 21;
const P_XDS_CLUSTER_NAME = 22;
const P_LISTENER_NAME = 23;
const P_XDS_LISTENER_NAME = 24;

/** Known property paths by byte length, each as its dotted ASCII bytes. */
const KNOWN_BY_LENGTH: { ids: number[]; bytes: Uint8Array[] }[] = [];
for (let id = 0; id < KNOWN_PROPERTIES.length; id++) {
  const name = KNOWN_PROPERTIES[id];
  while (KNOWN_BY_LENGTH.length <= name.length) KNOWN_BY_LENGTH.push({ ids: [], bytes: [] });
  KNOWN_BY_LENGTH[name.length].ids.push(id);
  KNOWN_BY_LENGTH[name.length].bytes.push(Buffer.from(name, 'latin1'));
}

/**
 * The KNOWN_PROPERTIES id of the path in mem[ptr, ptr + len), or -1: compared byte by byte,
 * with no string made. Same rules as propertyPath: one trailing NUL is dropped, and a NUL
 * separates segments as a dot does ("request\0path", "request.path" and "request\0path\0"
 * are all request.path).
 */
export function knownPropertyId(mem: Uint8Array, ptr: number, len: number): number {
  if (len > 0 && mem[ptr + len - 1] === 0) len--;
  if (len >= KNOWN_BY_LENGTH.length) return -1;
  const bucket = KNOWN_BY_LENGTH[len];
  const candidates = bucket.bytes;
  for (let c = 0; c < candidates.length; c++) {
    const name = candidates[c];
    let i = 0;
    for (; i < len; i++) {
      const b = mem[ptr + i];
      if ((b === 0 ? 46 : b) !== name[i]) break;
    }
    if (i === len) return bucket.ids[c];
  }
  return -1;
}

/** A request path without its query. */
function urlPath(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

/** A request path's query (after '?'), '' when it has none. */
function urlQuery(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? '' : path.slice(q + 1);
}

/** proxy_get_property's answer for a known attribute, written into the guest's allocation
 * (NotFound when the attribute has no value here). */
function returnKnownProperty(inst: FilterInstance, id: number, retPtrPtr: number, retSizePtr: number): number {
  switch (id) {
    case P_PLUGIN_NAME:
      return inst.returnString(inst.spec.name, retPtrPtr, retSizePtr);
    case P_PLUGIN_ROOT_ID:
      return inst.returnString(inst.spec.rootId, retPtrPtr, retSizePtr);
    case P_PLUGIN_VM_ID:
      return inst.returnString('', retPtrPtr, retSizePtr);
  }
  const s = inst.stream;
  if (s === null) return NotFound;
  switch (id) {
    case P_REQUEST_PATH:
      return returnInfo(inst, s, Info.Path, retPtrPtr, retSizePtr);
    case P_REQUEST_URL_PATH:
      return inst.returnString(urlPath(s.path), retPtrPtr, retSizePtr);
    case P_REQUEST_QUERY:
      return inst.returnString(urlQuery(s.path), retPtrPtr, retSizePtr);
    case P_REQUEST_METHOD:
      return returnInfo(inst, s, Info.Method, retPtrPtr, retSizePtr);
    case P_REQUEST_SCHEME:
      return returnInfo(inst, s, Info.Scheme, retPtrPtr, retSizePtr);
    case P_REQUEST_HOST:
      return returnInfo(inst, s, Info.Authority, retPtrPtr, retSizePtr);
    case P_REQUEST_ID:
      return returnInfo(inst, s, Info.RequestId, retPtrPtr, retSizePtr);
    case P_REQUEST_HEADERS:
      return inst.returnBytes(serializeHeaderMap(s.requestHeaders), retPtrPtr, retSizePtr);
    case P_RESPONSE_CODE:
      return s.responseStatus > 0 ? inst.returnInt64(s.responseStatus, retPtrPtr, retSizePtr) : NotFound;
    case P_RESPONSE_HEADERS:
      return s.responseStatus > 0 ? inst.returnBytes(serializeHeaderMap(s.responseHeaders), retPtrPtr, retSizePtr) : NotFound;
    case P_SOURCE_ADDRESS:
      return returnAddress(inst, s, retPtrPtr, retSizePtr);
    case P_SOURCE_IP:
      return returnInfo(inst, s, Info.ClientAddress, retPtrPtr, retSizePtr);
    case P_SOURCE_PORT:
      return inst.returnInt64(s.clientPort, retPtrPtr, retSizePtr);
    case P_DESTINATION_ADDRESS:
      return s.destinationAddress !== '' ? inst.returnString(s.destinationAddress, retPtrPtr, retSizePtr) : NotFound;
    case P_DESTINATION_PORT: {
      const a = s.destinationAddress;
      const colon = a.lastIndexOf(':');
      return colon > 0 ? inst.returnInt64(Number(a.slice(colon + 1)), retPtrPtr, retSizePtr) : NotFound;
    }
    case P_CONNECTION_ID:
      return s.connectionId > 0 ? inst.returnInt64(s.connectionId, retPtrPtr, retSizePtr) : NotFound;
    case P_ROUTE_NAME:
    case P_XDS_ROUTE_NAME:
      return returnInfo(inst, s, Info.Route, retPtrPtr, retSizePtr);
    case P_CLUSTER_NAME:
    case P_XDS_CLUSTER_NAME:
      return returnInfo(inst, s, Info.Cluster, retPtrPtr, retSizePtr);
    case P_LISTENER_NAME:
    case P_XDS_LISTENER_NAME:
      return returnInfo(inst, s, Info.Listener, retPtrPtr, retSizePtr);
  }
  return NotFound;
}

/** Stream info string `i` (Info) into the guest's allocation: its bytes straight from the
 * batch while the stream still has them packed, else the decoded (or since set) string. */
function returnInfo(inst: FilterInstance, s: StreamState, i: number, retPtrPtr: number, retSizePtr: number): number {
  const at = s.packedInfoOffset(i);
  if (at < 0) return inst.returnString(s.infoAt(i), retPtrPtr, retSizePtr);
  const packed = s.packedInfoText;
  return inst.returnLatin1(packed, at, packedLength(packed, at - 4), retPtrPtr, retSizePtr);
}

/** Envoy's "ip:port" ("[v6]:port") written straight into the guest's allocation, the ip's
 * bytes from the batch when still packed: no string decoded, concatenated and flattened per
 * request. */
function returnAddress(inst: FilterInstance, s: StreamState, retPtrPtr: number, retSizePtr: number): number {
  const port = s.clientPort;
  // No port known (Wisp's HTTP listeners): the bare ip, as envoyAddress gives it.
  if (port === 0) return returnInfo(inst, s, Info.ClientAddress, retPtrPtr, retSizePtr);
  let text: string;
  let start: number;
  let ipLength: number;
  const at = s.packedInfoOffset(Info.ClientAddress);
  if (at >= 0) {
    text = s.packedInfoText;
    start = at;
    ipLength = packedLength(text, at - 4);
  } else {
    text = s.clientAddress;
    start = 0;
    ipLength = text.length;
  }
  let v6 = false;
  let ascii = ipLength <= 64;
  for (let i = 0; i < ipLength && ascii; i++) {
    const c = text.charCodeAt(start + i);
    if (c === 58) v6 = true;
    else if (c >= 0x80) ascii = false;
  }
  if (port > 65535 || !ascii) return inst.returnString(envoyAddress(s.clientAddress, port), retPtrPtr, retSizePtr);
  const digits = port < 10 ? 1 : port < 100 ? 2 : port < 1000 ? 3 : port < 10000 ? 4 : 5;
  const bracket = v6 ? 1 : 0;
  const len = bracket + ipLength + bracket + 1 + digits;
  const ptr = inst.reserveReturn(len, retPtrPtr, retSizePtr);
  if (ptr < 0) return InvalidMemoryAccess; // logged by proxy_get_property (answered)
  const mem = inst.memoryAt(ptr, len)!;
  if (v6) mem[ptr] = 91; // [
  for (let i = 0; i < ipLength; i++) mem[ptr + bracket + i] = text.charCodeAt(start + i);
  let end = ptr + bracket + ipLength;
  if (v6) mem[end++] = 93; // ]
  mem[end] = 58; // :
  for (let i = ptr + len - 1, p = port; i > end; i--, p = (p / 10) | 0) mem[i] = 48 + (p % 10);
  return Ok;
}

/** A property that is not a known attribute, by its dotted path: a request or response
 * header, or one a filter set on the stream. */
function customProperty(inst: FilterInstance, path: string): Uint8Array | string | null {
  const s = inst.stream;
  if (s === null) return null;
  if (path.startsWith('request.headers.')) return s.requestHeaderValue(lowerAscii(path.slice(16)));
  if (path.startsWith('response.headers.') && s.responseStatus > 0) return s.responseHeaderValue(lowerAscii(path.slice(17)));
  const custom = s.properties?.get(path);
  return custom !== undefined ? custom : null;
}

/** Date.now() in nanoseconds written as a little-endian u64, without BigInts (an allocation
 * each, and ratelimit and breaker ask every request). ms * 1e6 is past 2^53, so the product
 * is split: ms = a * 2^16 + b, ns = (a * 1e6) * 2^16 + b * 1e6, every part exact in a double. */
function writeWallClockNs(inst: FilterInstance, retPtr: number): boolean {
  if (!inst.inBounds(retPtr, 8)) return false;
  const ms = Date.now();
  const a = Math.floor(ms / 65536);
  const x = a * 1_000_000;
  const xHigh = Math.floor(x / 65536);
  const z = (x - xHigh * 65536) * 65536 + (ms - a * 65536) * 1_000_000;
  const zHigh = Math.floor(z / 4294967296);
  return inst.writeU32(retPtr, z - zHigh * 4294967296) && inst.writeU32(retPtr + 4, xHigh + zHigh);
}

export function createEnvImports(inst: FilterInstance): Record<string, (...args: any[]) => unknown> {
  const shared = inst.deps.shared;
  const nowNs = inst.deps.nowNs;

  const unimplemented = (name: string, why: string) => (): number => {
    inst.warnOnce(name, `${name} is not implemented by this host (${why})`);
    return Unimplemented;
  };
  const closeHttpStream = unimplemented('proxy_close_stream', 'use proxy_send_local_response');

  const env: Record<string, (...args: any[]) => unknown> = {
    // --- logging, time ------------------------------------------------------------------
    proxy_log(level: number, ptr: number, len: number): number {
      const msg = inst.readString(ptr, len);
      if (msg === null) return outOfBounds(inst, 'proxy_log', 'message', ptr, len);
      if (level < 0 || level > 5) return refuse(inst, 'proxy_log', BadArgument, `log level ${level} is not 0-5 (trace-critical)`);
      inst.log(level, msg);
      return Ok;
    },
    proxy_get_log_level(retPtr: number): number {
      return inst.writeU32(retPtr, inst.deps.log.level) ? Ok : outOfBounds(inst, 'proxy_get_log_level', 'return slot', retPtr, 4);
    },
    proxy_get_current_time_nanoseconds(retPtr: number): number {
      if (nowNs === undefined ? writeWallClockNs(inst, retPtr) : inst.writeU64(retPtr, nowNs())) return Ok;
      return outOfBounds(inst, 'proxy_get_current_time_nanoseconds', 'return slot', retPtr, 8);
    },
    proxy_set_tick_period_milliseconds(period: number): number {
      const ms = period >>> 0;
      if (ms !== inst.tickPeriodMs) {
        inst.tickPeriodMs = ms;
        inst.tickChanged = true;
        inst.deps.onTickPeriod(inst);
      }
      return Ok;
    },

    // --- buffers --------------------------------------------------------------------------
    proxy_get_buffer_bytes(type: number, start: number, maxSize: number, retPtrPtr: number, retSizePtr: number): number {
      let buf: Uint8Array;
      if (type === BufferType.PluginConfiguration) buf = inst.pluginConfig;
      else if (type === BufferType.VmConfiguration) buf = inst.vmConfig;
      else if (type === BufferType.HttpCallResponseBody && inst.httpResponse !== null) buf = inst.httpResponse.body;
      else if (inst.stream !== null && inst.stream.body !== null && type === inst.stream.bodyType) buf = inst.stream.body;
      else if (type >= 0 && type <= 5) return NotFound;
      else return unknownBufferType(inst, 'proxy_get_buffer_bytes', type);
      start >>>= 0;
      if (start > buf.length) return refuse(inst, 'proxy_get_buffer_bytes', BadArgument, `start ${start} is past the end of the buffer (${buf.length} bytes)`);
      const end = Math.min(buf.length, start + (maxSize >>> 0));
      return answered(inst, 'proxy_get_buffer_bytes', inst.returnBytes(buf.subarray(start, end), retPtrPtr, retSizePtr));
    },
    proxy_get_buffer_status(type: number, retSizePtr: number, retFlagsPtr: number): number {
      let n: number;
      if (type === BufferType.PluginConfiguration) n = inst.pluginConfig.length;
      else if (type === BufferType.VmConfiguration) n = inst.vmConfig.length;
      else if (type === BufferType.HttpCallResponseBody && inst.httpResponse !== null) n = inst.httpResponse.body.length;
      else if (inst.stream !== null && inst.stream.body !== null && type === inst.stream.bodyType) n = inst.stream.body.length;
      else if (type >= 0 && type <= 5) return NotFound;
      else return unknownBufferType(inst, 'proxy_get_buffer_status', type);
      if (!inst.writeU32(retSizePtr, n)) return outOfBounds(inst, 'proxy_get_buffer_status', 'return slot', retSizePtr, 4);
      return inst.writeU32(retFlagsPtr, 0) ? Ok : outOfBounds(inst, 'proxy_get_buffer_status', 'return slot', retFlagsPtr, 4);
    },
    /** Replace `size` bytes at `start` of the body being filtered with the given bytes
     * (start 0 and size >= length replaces it all; start at the end appends). */
    proxy_set_buffer_bytes(type: number, start: number, size: number, dataPtr: number, dataLen: number): number {
      const s = inst.stream;
      if (s === null || s.body === null || type !== s.bodyType) return type >= 0 && type <= 7 ? NotFound : unknownBufferType(inst, 'proxy_set_buffer_bytes', type);
      const data = inst.readBytes(dataPtr, dataLen);
      if (data === null) return outOfBounds(inst, 'proxy_set_buffer_bytes', 'data', dataPtr, dataLen);
      const body = s.body;
      start >>>= 0;
      if (start > body.length) return refuse(inst, 'proxy_set_buffer_bytes', BadArgument, `start ${start} is past the end of the body (${body.length} bytes)`);
      const cut = Math.min(body.length, start + (size >>> 0));
      if (start === 0 && cut === body.length) {
        s.body = data;
        return Ok;
      }
      const next = new Uint8Array(start + data.length + (body.length - cut));
      next.set(body.subarray(0, start));
      next.set(data, start);
      next.set(body.subarray(cut), start + data.length);
      s.body = next;
      return Ok;
    },
    proxy_get_configuration(retPtrPtr: number, retSizePtr: number): number {
      const buf = inst.configPhase === BufferType.VmConfiguration ? inst.vmConfig : inst.pluginConfig;
      return answered(inst, 'proxy_get_configuration', inst.returnBytes(buf, retPtrPtr, retSizePtr));
    },

    // --- header maps --------------------------------------------------------------------
    proxy_get_header_map_size(mapType: number, retSizePtr: number): number {
      const list = headerList(inst, mapType);
      if (list === null) return mapType >= 0 && mapType <= 7 ? NotFound : badMap(inst, 'proxy_get_header_map_size', mapType, false);
      let size = 4;
      for (let i = 0; i < list.length; i++) size += 4 + Buffer.byteLength(list[i], 'utf8') + 1;
      return inst.writeU32(retSizePtr, size) ? Ok : outOfBounds(inst, 'proxy_get_header_map_size', 'return slot', retSizePtr, 4);
    },
    proxy_get_header_map_pairs(mapType: number, retPtrPtr: number, retSizePtr: number): number {
      const list = headerList(inst, mapType);
      if (list === null) return mapType >= 0 && mapType <= 7 ? NotFound : badMap(inst, 'proxy_get_header_map_pairs', mapType, false);
      return answered(inst, 'proxy_get_header_map_pairs', inst.returnBytes(serializeHeaderMap(list), retPtrPtr, retSizePtr));
    },
    proxy_set_header_map_pairs(mapType: number, ptr: number, len: number): number {
      const list = headerList(inst, mapType);
      if (list === null || !isWritableMap(mapType)) return badMap(inst, 'proxy_set_header_map_pairs', mapType, true);
      const pairs = readHeaderMap(inst, 'proxy_set_header_map_pairs', 'header map', ptr, len);
      if (typeof pairs === 'number') return pairs;
      list.length = 0;
      for (let i = 0; i < pairs.length; i++) list.push(pairs[i]);
      markDirty(inst, mapType);
      return Ok;
    },
    proxy_get_header_map_value(mapType: number, keyPtr: number, keyLen: number, retPtrPtr: number, retSizePtr: number): number {
      const s = inst.stream;
      if (s !== null && (mapType === MapType.RequestHeaders || (mapType === MapType.ResponseHeaders && s.responseStatus > 0))) {
        // Straight from the heads as the batch carried them: no decoding of the whole list.
        const lower = inst.headerName(keyPtr, keyLen);
        if (lower === null) return outOfBounds(inst, 'proxy_get_header_map_value', 'key', keyPtr, keyLen);
        if (mapType === MapType.RequestHeaders) {
          const info = s.packedRequestPseudoInfo(lower);
          if (info >= 0) return answered(inst, 'proxy_get_header_map_value', returnInfo(inst, s, info, retPtrPtr, retSizePtr));
        }
        const value = mapType === MapType.RequestHeaders ? s.requestHeaderValue(lower) : s.responseHeaderValue(lower);
        return value === null ? NotFound : answered(inst, 'proxy_get_header_map_value', inst.returnString(value, retPtrPtr, retSizePtr));
      }
      const list = headerList(inst, mapType);
      if (list === null) return mapType >= 0 && mapType <= 7 ? NotFound : badMap(inst, 'proxy_get_header_map_value', mapType, false);
      const key = inst.headerName(keyPtr, keyLen);
      if (key === null) return outOfBounds(inst, 'proxy_get_header_map_value', 'key', keyPtr, keyLen);
      const value = mapValue(list, key);
      if (value === null) return NotFound;
      return answered(inst, 'proxy_get_header_map_value', inst.returnString(value, retPtrPtr, retSizePtr));
    },
    proxy_add_header_map_value(mapType: number, keyPtr: number, keyLen: number, valPtr: number, valLen: number): number {
      const list = headerList(inst, mapType);
      if (list === null || !isWritableMap(mapType)) return badMap(inst, 'proxy_add_header_map_value', mapType, true);
      const key = inst.readString(keyPtr, keyLen);
      if (key === null) return outOfBounds(inst, 'proxy_add_header_map_value', 'key', keyPtr, keyLen);
      const value = inst.readString(valPtr, valLen);
      if (value === null) return outOfBounds(inst, 'proxy_add_header_map_value', 'value', valPtr, valLen);
      const name = lowerAscii(key);
      if (!acceptHeader(inst, 'proxy_add_header_map_value', name, value)) return BadArgument;
      list.push(name, value);
      // Appended pseudo-headers need the full list (the request path sees no pseudo-headers).
      markDirty(inst, mapType, name.charCodeAt(0) !== 58);
      return Ok;
    },
    proxy_replace_header_map_value(mapType: number, keyPtr: number, keyLen: number, valPtr: number, valLen: number): number {
      const list = headerList(inst, mapType);
      if (list === null || !isWritableMap(mapType)) return badMap(inst, 'proxy_replace_header_map_value', mapType, true);
      const key = inst.readString(keyPtr, keyLen);
      if (key === null) return outOfBounds(inst, 'proxy_replace_header_map_value', 'key', keyPtr, keyLen);
      const value = inst.readString(valPtr, valLen);
      if (value === null) return outOfBounds(inst, 'proxy_replace_header_map_value', 'value', valPtr, valLen);
      const name = lowerAscii(key);
      if (!acceptHeader(inst, 'proxy_replace_header_map_value', name, value)) return BadArgument;
      let found = -1;
      for (let i = 0; i < list.length; i += 2) {
        if (list[i] === name) {
          found = i;
          break;
        }
      }
      if (found < 0) {
        list.push(name, value);
        markDirty(inst, mapType, name.charCodeAt(0) !== 58);
        return Ok;
      } else {
        list[found + 1] = value;
        // Later duplicates go: replace means "exactly this one value".
        for (let i = found + 2; i < list.length; i += 2) {
          if (list[i] === name) {
            list.splice(i, 2);
            i -= 2;
          }
        }
      }
      markDirty(inst, mapType);
      return Ok;
    },
    proxy_remove_header_map_value(mapType: number, keyPtr: number, keyLen: number): number {
      const list = headerList(inst, mapType);
      if (list === null || !isWritableMap(mapType)) return badMap(inst, 'proxy_remove_header_map_value', mapType, true);
      const key = inst.readString(keyPtr, keyLen);
      if (key === null) return outOfBounds(inst, 'proxy_remove_header_map_value', 'key', keyPtr, keyLen);
      const name = lowerAscii(key);
      if (name.charCodeAt(0) === 58 /* : */) {
        return refuse(inst, 'proxy_remove_header_map_value', BadArgument, `pseudo-header ${name} cannot be removed`);
      }
      removeKey(list, name);
      markDirty(inst, mapType);
      return Ok;
    },

    // --- properties ---------------------------------------------------------------------
    proxy_get_property(pathPtr: number, pathLen: number, retPtrPtr: number, retSizePtr: number): number {
      const mem = inst.memoryAt(pathPtr, pathLen);
      if (mem === null) return outOfBounds(inst, 'proxy_get_property', 'path', pathPtr, pathLen);
      const id = knownPropertyId(mem, pathPtr, pathLen);
      if (id >= 0) return answered(inst, 'proxy_get_property', returnKnownProperty(inst, id, retPtrPtr, retSizePtr));
      const raw = inst.readString(pathPtr, pathLen)!; // in bounds: checked above
      const value = customProperty(inst, propertyPath(raw));
      if (value === null) return NotFound;
      const r = typeof value === 'string' ? inst.returnString(value, retPtrPtr, retSizePtr) : inst.returnBytes(value, retPtrPtr, retSizePtr);
      return answered(inst, 'proxy_get_property', r);
    },
    proxy_set_property(pathPtr: number, pathLen: number, valPtr: number, valLen: number): number {
      const raw = inst.readString(pathPtr, pathLen);
      if (raw === null) return outOfBounds(inst, 'proxy_set_property', 'path', pathPtr, pathLen);
      const value = inst.readBytes(valPtr, valLen);
      if (value === null) return outOfBounds(inst, 'proxy_set_property', 'value', valPtr, valLen);
      const s = inst.stream;
      const path = raw.split('\0').filter((p) => p.length > 0).join('.');
      if (s === null) return inst.configuring ? setConfigureProperty(inst, path, value) : NotFound;
      if (s.properties === null) s.properties = new Map();
      s.properties.set(path, value);
      return Ok;
    },

    // --- stream control -----------------------------------------------------------------
    proxy_send_local_response(
      status: number,
      detailsPtr: number,
      detailsLen: number,
      bodyPtr: number,
      bodyLen: number,
      headersPtr: number,
      headersLen: number,
      _grpcStatus: number,
    ): number {
      const s = inst.stream;
      if (s === null) return refuse(inst, 'proxy_send_local_response', BadArgument, 'no stream to answer outside a stream callback');
      if (status < 200 || status > 599) return refuse(inst, 'proxy_send_local_response', BadArgument, `status ${status} is outside 200-599`);
      const details = inst.readString(detailsPtr, detailsLen);
      if (details === null) return outOfBounds(inst, 'proxy_send_local_response', 'details', detailsPtr, detailsLen);
      const body = inst.readBytes(bodyPtr, bodyLen);
      if (body === null) return outOfBounds(inst, 'proxy_send_local_response', 'body', bodyPtr, bodyLen);
      const headers = readHeaderMap(inst, 'proxy_send_local_response', 'headers', headersPtr, headersLen);
      if (typeof headers === 'number') return headers;
      s.local = { status, headers, body, details };
      return Ok;
    },
    proxy_continue_stream(): number {
      if (inst.stream !== null) inst.stream.resumeRequested = true;
      return Ok;
    },
    proxy_continue_request(): number {
      if (inst.stream !== null) inst.stream.resumeRequested = true;
      return Ok;
    },
    proxy_continue_response(): number {
      if (inst.stream !== null) inst.stream.resumeRequested = true;
      return Ok;
    },
    /** On a network connection: close it (both sides, whichever stream type is named). */
    proxy_close_stream(streamType: number): number {
      const s = inst.stream;
      if (s === null || !s.network) return closeHttpStream();
      if (streamType < 0 || streamType > 3) return refuse(inst, 'proxy_close_stream', BadArgument, `unknown stream type ${streamType}`);
      s.local = { status: 503, headers: [], body: EMPTY_BYTES, details: `closed_by_filter:${inst.spec.name}` };
      return Ok;
    },
    proxy_clear_route_cache(): number {
      return Ok;
    },
    proxy_get_status(retCodePtr: number, retMsgPtrPtr: number, retMsgSizePtr: number): number {
      const r = inst.httpResponse;
      if (r === null) return NotFound;
      if (!inst.writeU32(retCodePtr, r.status)) return outOfBounds(inst, 'proxy_get_status', 'return slot', retCodePtr, 4);
      return answered(inst, 'proxy_get_status', inst.returnBytes(EMPTY_BYTES, retMsgPtrPtr, retMsgSizePtr));
    },
    proxy_set_effective_context(ctx: number): number {
      if (ctx === 1 || ctx === inst.contextId) return Ok;
      for (const [, id] of inst.contexts.entries()) if (id === ctx) return Ok;
      return refuse(inst, 'proxy_set_effective_context', BadArgument, `context ${ctx} does not exist`);
    },
    proxy_done(): number {
      return NotFound;
    },

    // --- shared data and queues ---------------------------------------------------------
    proxy_get_shared_data(keyPtr: number, keyLen: number, retPtrPtr: number, retSizePtr: number, retCasPtr: number): number {
      const mem = inst.memoryAt(keyPtr, keyLen);
      if (mem === null) return outOfBounds(inst, 'proxy_get_shared_data', 'key', keyPtr, keyLen);
      const length = shared.readData(mem, keyPtr, keyLen);
      if (length < 0) {
        // Hand out the create-if-absent CAS (see SharedState.writeData); SDKs that ignore the
        // cas of a NotFound behave as on Envoy.
        inst.writeU32(retCasPtr, ABSENT_CAS);
        return NotFound;
      }
      const cas = shared.readCas;
      const r = inst.returnBytes(shared.readBuf, retPtrPtr, retSizePtr, length);
      if (r !== Ok) return answered(inst, 'proxy_get_shared_data', r);
      return inst.writeU32(retCasPtr, cas) ? Ok : outOfBounds(inst, 'proxy_get_shared_data', 'cas return slot', retCasPtr, 4);
    },
    proxy_set_shared_data(keyPtr: number, keyLen: number, valPtr: number, valLen: number, cas: number): number {
      const mem = inst.memoryAt(keyPtr, keyLen);
      if (mem === null) return outOfBounds(inst, 'proxy_set_shared_data', 'key', keyPtr, keyLen);
      if (inst.memoryAt(valPtr, valLen) === null) return outOfBounds(inst, 'proxy_set_shared_data', 'value', valPtr, valLen);
      const r = shared.writeData(mem, keyPtr, keyLen, mem, valPtr, valLen, cas >>> 0);
      // CasMismatch (a lost race, retried by the filter) comes without a writeError.
      return shared.writeError === null ? r : refuse(inst, 'proxy_set_shared_data', r, shared.writeError);
    },
    proxy_register_shared_queue(namePtr: number, nameLen: number, retIdPtr: number): number {
      const name = inst.viewBytes(namePtr, nameLen);
      if (name === null) return outOfBounds(inst, 'proxy_register_shared_queue', 'name', namePtr, nameLen);
      const r = shared.registerQueue(name);
      if (r.error !== undefined) return refuse(inst, 'proxy_register_shared_queue', BadArgument, r.error);
      inst.deps.onQueueRegistered(inst, r.id);
      return inst.writeU32(retIdPtr, r.id) ? Ok : outOfBounds(inst, 'proxy_register_shared_queue', 'return slot', retIdPtr, 4);
    },
    proxy_resolve_shared_queue(_vmPtr: number, _vmLen: number, namePtr: number, nameLen: number, retIdPtr: number): number {
      const name = inst.viewBytes(namePtr, nameLen);
      if (name === null) return outOfBounds(inst, 'proxy_resolve_shared_queue', 'name', namePtr, nameLen);
      const id = shared.resolveQueue(name);
      if (id === 0) return NotFound;
      return inst.writeU32(retIdPtr, id) ? Ok : outOfBounds(inst, 'proxy_resolve_shared_queue', 'return slot', retIdPtr, 4);
    },
    proxy_enqueue_shared_queue(id: number, valPtr: number, valLen: number): number {
      const value = inst.viewBytes(valPtr, valLen);
      if (value === null) return outOfBounds(inst, 'proxy_enqueue_shared_queue', 'value', valPtr, valLen);
      const r = shared.enqueue(id, value);
      if (r === Ok) inst.deps.onEnqueue(id);
      else if (r === InternalFailure) return refuse(inst, 'proxy_enqueue_shared_queue', r, `queue ${id} is full`);
      else if (r === NotFound) return refuse(inst, 'proxy_enqueue_shared_queue', r, `no queue has id ${id}`);
      return r;
    },
    proxy_dequeue_shared_queue(id: number, retPtrPtr: number, retSizePtr: number): number {
      const r = shared.dequeue(id);
      if (typeof r === 'number') return r === NotFound ? refuse(inst, 'proxy_dequeue_shared_queue', r, `no queue has id ${id}`) : r;
      if (r === null) return Empty;
      return answered(inst, 'proxy_dequeue_shared_queue', inst.returnBytes(r, retPtrPtr, retSizePtr));
    },

    // --- metrics -----------------------------------------------------------------------
    proxy_define_metric(type: number, namePtr: number, nameLen: number, retIdPtr: number): number {
      const name = inst.readString(namePtr, nameLen);
      if (name === null) return outOfBounds(inst, 'proxy_define_metric', 'name', namePtr, nameLen);
      const r = shared.defineMetric(type, inst.spec.name, name);
      if (r.error !== undefined) return refuse(inst, 'proxy_define_metric', BadArgument, r.error);
      return inst.writeU32(retIdPtr, r.id) ? Ok : outOfBounds(inst, 'proxy_define_metric', 'return slot', retIdPtr, 4);
    },
    proxy_increment_metric(id: number, delta: bigint): number {
      const r = shared.incrementMetric(id, BigInt.asIntN(64, BigInt(delta)));
      return r === Ok ? Ok : badMetric(inst, 'proxy_increment_metric', r, id);
    },
    proxy_record_metric(id: number, value: bigint): number {
      const r = shared.recordMetric(id, BigInt.asIntN(64, BigInt(value)));
      return r === Ok ? Ok : badMetric(inst, 'proxy_record_metric', r, id);
    },
    proxy_get_metric(id: number, retPtr: number): number {
      const v = shared.getMetric(id);
      if (v === null) return badMetric(inst, 'proxy_get_metric', NotFound, id);
      return inst.writeU64(retPtr, BigInt.asUintN(64, v)) ? Ok : outOfBounds(inst, 'proxy_get_metric', 'return slot', retPtr, 8);
    },

    // --- not (yet) supported -----------------------------------------------------------
    proxy_http_call(
      upPtr: number,
      upLen: number,
      hPtr: number,
      hLen: number,
      bPtr: number,
      bLen: number,
      tPtr: number,
      tLen: number,
      timeoutMs: number,
      retTokenPtr: number,
    ): number {
      const sink = inst.deps.httpCalls;
      if (sink === null) {
        inst.warnOnce('proxy_http_call', 'proxy_http_call is not available: the runtime was started without an httpCall handler');
        return Unimplemented;
      }
      const cluster = inst.readString(upPtr, upLen);
      if (cluster === null) return outOfBounds(inst, 'proxy_http_call', 'cluster', upPtr, upLen);
      if (sink.knowsCluster !== undefined && !sink.knowsCluster(cluster)) return refuse(inst, 'proxy_http_call', BadArgument, `unknown cluster "${cluster}"`);
      const body = inst.readBytes(bPtr, bLen);
      if (body === null) return outOfBounds(inst, 'proxy_http_call', 'body', bPtr, bLen);
      if (!inst.inBounds(tPtr, tLen)) return outOfBounds(inst, 'proxy_http_call', 'trailers', tPtr, tLen);
      if (!inst.inBounds(retTokenPtr, 4)) return outOfBounds(inst, 'proxy_http_call', 'token return slot', retTokenPtr, 4);
      const headers = readHeaderMap(inst, 'proxy_http_call', 'headers', hPtr, hLen);
      if (typeof headers === 'number') return headers;
      if (mapValue(headers, ':method') === null || mapValue(headers, ':path') === null) return refuse(inst, 'proxy_http_call', BadArgument, 'headers need :method and :path');
      const token = sink.issue(inst, cluster, headers, body, timeoutMs >>> 0);
      inst.writeU32(retTokenPtr, token);
      return Ok;
    },
    proxy_grpc_call: unimplemented('proxy_grpc_call', 'gRPC calls are not supported'),
    proxy_grpc_stream: unimplemented('proxy_grpc_stream', 'gRPC calls are not supported'),
    proxy_grpc_send: unimplemented('proxy_grpc_send', 'gRPC calls are not supported'),
    proxy_grpc_cancel: unimplemented('proxy_grpc_cancel', 'gRPC calls are not supported'),
    proxy_grpc_close: unimplemented('proxy_grpc_close', 'gRPC calls are not supported'),
    proxy_call_foreign_function: unimplemented('proxy_call_foreign_function', 'no foreign functions are registered'),

    // --- AssemblyScript runtime helpers -------------------------------------------------
    abort(msgPtr: number, filePtr: number, line: number, col: number): never {
      throw new Error(`abort: ${readAsString(inst, msgPtr)} at ${readAsString(inst, filePtr)}:${line}:${col}`);
    },
    trace(msgPtr: number, n: number, ...args: number[]): void {
      inst.log(LogLevel.Trace, `trace: ${readAsString(inst, msgPtr)} ${args.slice(0, n).join(', ')}`);
    },
    seed(): number {
      return Date.now() * Math.random();
    },
  };
  return env;
}

/** AssemblyScript strings: UTF-16LE, byte length in the u32 before the pointer. */
function readAsString(inst: FilterInstance, ptr: number): string {
  if (ptr === 0 || !inst.inBounds(ptr - 4, 4)) return '';
  const len = inst.readU32(ptr - 4);
  const bytes = inst.viewBytes(ptr, Math.min(len, 4096));
  return bytes === null ? '' : Buffer.from(bytes).toString('utf16le');
}
