// Enumerations of proxy-wasm ABI 0.2.1, with the spec's numeric values.

export enum WasmResult {
  Ok = 0,
  NotFound = 1,
  BadArgument = 2,
  SerializationFailure = 3,
  ParseFailure = 4,
  BadExpression = 5,
  InvalidMemoryAccess = 6,
  Empty = 7,
  CasMismatch = 8,
  ResultMismatch = 9,
  InternalFailure = 10,
  BrokenConnection = 11,
  Unimplemented = 12,
}

export function wasmResultName(result: u32): string {
  switch (result) {
    case WasmResult.Ok: return "OK";
    case WasmResult.NotFound: return "NOT_FOUND";
    case WasmResult.BadArgument: return "BAD_ARGUMENT";
    case WasmResult.SerializationFailure: return "SERIALIZATION_FAILURE";
    case WasmResult.ParseFailure: return "PARSE_FAILURE";
    case WasmResult.BadExpression: return "BAD_EXPRESSION";
    case WasmResult.InvalidMemoryAccess: return "INVALID_MEMORY_ACCESS";
    case WasmResult.Empty: return "EMPTY";
    case WasmResult.CasMismatch: return "CAS_MISMATCH";
    case WasmResult.ResultMismatch: return "RESULT_MISMATCH";
    case WasmResult.InternalFailure: return "INTERNAL_FAILURE";
    case WasmResult.BrokenConnection: return "BROKEN_CONNECTION";
    case WasmResult.Unimplemented: return "UNIMPLEMENTED";
    default: return "UNKNOWN(" + result.toString() + ")";
  }
}

export enum LogLevel {
  Trace = 0,
  Debug = 1,
  Info = 2,
  Warn = 3,
  Error = 4,
  Critical = 5,
}

/** Returned from on_request_headers / on_response_headers (proxy_action_t). */
export enum FilterHeadersStatus {
  Continue = 0,
  StopIteration = 1,
}

/** Returned from on_request_body / on_response_body (proxy_action_t). */
export enum FilterDataStatus {
  Continue = 0,
  StopIterationAndBuffer = 1,
}

/** Returned from on_request_trailers / on_response_trailers (proxy_action_t). */
export enum FilterTrailersStatus {
  Continue = 0,
  StopIteration = 1,
}

/** Returned from the network callbacks (proxy_on_new_connection, on_*_data): StopIteration
 * holds the bytes, and the next chunk arrives appended to them. */
export enum FilterStatus {
  Continue = 0,
  StopIteration = 1,
}

/** Who closed a side of a connection (proxy_on_*_connection_close). */
export enum PeerType {
  Unknown = 0,
  Local = 1,
  Remote = 2,
}

export enum BufferType {
  HttpRequestBody = 0,
  HttpResponseBody = 1,
  DownstreamData = 2,
  UpstreamData = 3,
  HttpCallResponseBody = 4,
  GrpcReceiveBuffer = 5,
  VmConfiguration = 6,
  PluginConfiguration = 7,
}

export enum MapType {
  HttpRequestHeaders = 0,
  HttpRequestTrailers = 1,
  HttpResponseHeaders = 2,
  HttpResponseTrailers = 3,
  GrpcReceiveInitialMetadata = 4,
  GrpcReceiveTrailingMetadata = 5,
  HttpCallResponseHeaders = 6,
  HttpCallResponseTrailers = 7,
}

export enum StreamType {
  HttpRequest = 0,
  HttpResponse = 1,
  Downstream = 2,
  Upstream = 3,
}

export enum MetricType {
  Counter = 0,
  Gauge = 1,
  Histogram = 2,
}

/** One header (or trailer / metadata entry). Names are lower-case on Wisp and Envoy. */
export class HeaderPair {
  constructor(public key: string, public value: string) {}
}
