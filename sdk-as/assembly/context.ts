// The classes a filter author extends. RootContext lives as long as the plugin (config,
// timers, shared state, metrics); one HttpContext per request/response pair. Every callback
// has a default that does nothing and lets the request through.

import * as host from "./hostcalls";
import {
  BufferType, FilterDataStatus, FilterHeadersStatus, FilterStatus, FilterTrailersStatus, HeaderPair, LogLevel,
  MapType, PeerType, StreamType, WasmResult,
} from "./types";

// Envoy makes every http call on the caller's root context and answers it there, so
// proxy_on_http_call_response carries the root's id: the SDK remembers which context made
// each call (as the Rust and Go SDKs do) to hand the answer to it.
const callers = new Map<u32, BaseContext>();

/** The context whose httpCall got `token`, forgotten once asked for; null when the call was
 * made through hostcalls.httpCall directly. */
export function takeCaller(token: u32): BaseContext | null {
  if (!callers.has(token)) return null;
  const ctx = callers.get(token);
  callers.delete(token);
  return ctx;
}

export class BaseContext {
  constructor(public readonly id: u32) {}

  /** The host is done with this context. Return false to keep it alive, then call done(). */
  onDone(): bool { return true; }
  /** Final callback before the host releases the context: read anything for access logs. */
  onLog(): void {}
  /** The host forgot the context; drop any state kept for it. */
  onDelete(): void {}
  /** Answer to an httpCall made by this context. numHeaders == 0 means the call failed. */
  onHttpCallResponse(token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {}

  /** Tells the host a context that returned false from onDone is finished. */
  done(): WasmResult { return host.done(); }

  getProperty(path: string[]): ArrayBuffer | null { return host.getProperty(path); }
  getPropertyString(path: string[]): string | null { return host.getPropertyString(path); }
  /** Integer property (8-byte little-endian, as Envoy encodes them) or `fallback`. */
  getPropertyInt64(path: string[], fallback: i64 = -1): i64 { return host.getPropertyInt64(path, fallback); }
  setProperty(path: string[], value: ArrayBuffer): WasmResult { return host.setProperty(path, value); }

  getSharedData(key: string): host.SharedData { return host.getSharedData(key); }
  setSharedData(key: string, value: ArrayBuffer, cas: u32 = 0): WasmResult { return host.setSharedData(key, value, cas); }

  /** Sends an out-of-band request; the answer arrives in this context's onHttpCallResponse.
   * 0 = failed. */
  httpCall(cluster: string, headers: HeaderPair[], body: ArrayBuffer | null, trailers: HeaderPair[], timeoutMs: u32): u32 {
    const token = host.httpCall(cluster, headers, body, trailers, timeoutMs);
    if (token != 0) callers.set(token, this);
    return token;
  }
  getHttpCallResponseHeaders(): HeaderPair[] { return host.getHeaderMapPairs(MapType.HttpCallResponseHeaders); }
  getHttpCallResponseHeader(name: string): string | null { return host.getHeaderMapValue(MapType.HttpCallResponseHeaders, name); }
  getHttpCallResponseBody(start: u32, maxSize: u32): ArrayBuffer | null {
    return host.getBufferBytes(BufferType.HttpCallResponseBody, start, maxSize);
  }
}

export class RootContext extends BaseContext {
  /** Sizes the host announced in proxy_on_configure / proxy_on_vm_start (set by exports.ts). */
  pluginConfigSize: u32 = 0;
  vmConfigSize: u32 = 0;

  constructor(id: u32) { super(id); }

  /** Once per VM. Read the VM configuration with getVmConfig(). */
  onVmStart(vmConfigSize: u32): bool { return true; }
  /** Plugin (re)configuration. Validate getPluginConfig() here; false refuses the load. */
  onConfigure(configSize: u32): bool { return true; }
  /** Every tick period (see setTickPeriod). */
  onTick(): void {}
  /** An item was enqueued on a queue this VM registered. */
  onQueueReady(queueId: u32): void {}

  /** Override to give every request its own context; the default lets all requests pass. */
  createHttpContext(id: u32): HttpContext { return new HttpContext(id, this); }
  /** Override to give every TCP connection its own context (a network filter; its entry file
   * also re-exports "@wisp/sdk-as/assembly/exports-network"). The default passes all bytes. */
  createNetworkContext(id: u32): NetworkContext { return new NetworkContext(id, this); }

  /** The plugin configuration as text (valid in onConfigure). */
  getPluginConfig(): string {
    if (this.pluginConfigSize == 0) return "";
    const buf = host.getBufferBytes(BufferType.PluginConfiguration, 0, this.pluginConfigSize);
    return buf === null ? "" : String.UTF8.decode(buf);
  }
  /** The VM configuration as text (valid in onVmStart). */
  getVmConfig(): string {
    if (this.vmConfigSize == 0) return "";
    const buf = host.getBufferBytes(BufferType.VmConfiguration, 0, this.vmConfigSize);
    return buf === null ? "" : String.UTF8.decode(buf);
  }
  setTickPeriod(periodMs: u32): WasmResult { return host.setTickPeriodMilliseconds(periodMs); }
  /** Call in onConfigure when this filter's HttpContext has nothing to do in the response
   * headers and trailers phases: Wisp then never calls its onResponseHeaders /
   * onResponseTrailers, and a chain whose filters all say so sends the response without
   * waiting for the filter workers (one round trip per request instead of two). Harmless on
   * other hosts. */
  skipResponsePhases(): void { host.declareSkippedPhases("response_headers,response_trailers"); }
  /** The same for the response trailers phase only (a filter that reads response headers). */
  skipResponseTrailers(): void { host.declareSkippedPhases("response_trailers"); }

  /** Call from onConfigure: this filter's onResponseHeaders is only for these response
   * statuses ("500-599", "429,500-599"). Wisp skips it for the others (onLog still runs and
   * can read the property response.code), and a response no filter of the chain wants goes to
   * the client without waiting for the filter workers. For a filter that must act on some
   * responses before the client sees them and may learn of the rest later. Harmless on other
   * hosts (they call onResponseHeaders for every response). */
  responseHeadersOnlyFor(statuses: string): void { host.declareResponseHeadersStatuses(statuses); }
}

export class HttpContext extends BaseContext {
  constructor(id: u32, public readonly root: RootContext) { super(id); }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus { return FilterHeadersStatus.Continue; }
  onRequestBody(bodySize: u32, endOfStream: bool): FilterDataStatus { return FilterDataStatus.Continue; }
  onRequestTrailers(numTrailers: u32): FilterTrailersStatus { return FilterTrailersStatus.Continue; }
  onResponseHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus { return FilterHeadersStatus.Continue; }
  onResponseBody(bodySize: u32, endOfStream: bool): FilterDataStatus { return FilterDataStatus.Continue; }
  onResponseTrailers(numTrailers: u32): FilterTrailersStatus { return FilterTrailersStatus.Continue; }

  // -- request headers (valid in onRequestHeaders, or while the request is paused; read-only in onLog)
  getRequestHeader(name: string): string | null { return host.getHeaderMapValue(MapType.HttpRequestHeaders, name); }
  getRequestHeaders(): HeaderPair[] { return host.getHeaderMapPairs(MapType.HttpRequestHeaders); }
  setRequestHeaders(headers: HeaderPair[]): WasmResult { return host.setHeaderMapPairs(MapType.HttpRequestHeaders, headers); }
  /** Adds or replaces. */
  setRequestHeader(name: string, value: string): WasmResult { return host.replaceHeaderMapValue(MapType.HttpRequestHeaders, name, value); }
  /** Adds another value, keeping existing ones. */
  addRequestHeader(name: string, value: string): WasmResult { return host.addHeaderMapValue(MapType.HttpRequestHeaders, name, value); }
  removeRequestHeader(name: string): WasmResult { return host.removeHeaderMapValue(MapType.HttpRequestHeaders, name); }

  // -- response headers
  getResponseHeader(name: string): string | null { return host.getHeaderMapValue(MapType.HttpResponseHeaders, name); }
  getResponseHeaders(): HeaderPair[] { return host.getHeaderMapPairs(MapType.HttpResponseHeaders); }
  setResponseHeaders(headers: HeaderPair[]): WasmResult { return host.setHeaderMapPairs(MapType.HttpResponseHeaders, headers); }
  setResponseHeader(name: string, value: string): WasmResult { return host.replaceHeaderMapValue(MapType.HttpResponseHeaders, name, value); }
  addResponseHeader(name: string, value: string): WasmResult { return host.addHeaderMapValue(MapType.HttpResponseHeaders, name, value); }
  removeResponseHeader(name: string): WasmResult { return host.removeHeaderMapValue(MapType.HttpResponseHeaders, name); }

  // -- trailers
  getRequestTrailer(name: string): string | null { return host.getHeaderMapValue(MapType.HttpRequestTrailers, name); }
  getResponseTrailer(name: string): string | null { return host.getHeaderMapValue(MapType.HttpResponseTrailers, name); }

  // -- bodies (valid in the matching body callback)
  getRequestBody(start: u32, maxSize: u32): ArrayBuffer | null { return host.getBufferBytes(BufferType.HttpRequestBody, start, maxSize); }
  getResponseBody(start: u32, maxSize: u32): ArrayBuffer | null { return host.getBufferBytes(BufferType.HttpResponseBody, start, maxSize); }

  /** Answers the request locally; the upstream is not called. Return StopIteration after it. */
  sendLocalResponse(status: u32, body: string, headers: HeaderPair[], details: string = ""): WasmResult {
    return host.sendLocalResponse(status, details, body, headers);
  }

  resumeRequest(): WasmResult { return host.continueStream(StreamType.HttpRequest); }
  resumeResponse(): WasmResult { return host.continueStream(StreamType.HttpResponse); }
  resetRequest(): WasmResult { return host.closeStream(StreamType.HttpRequest); }
  resetResponse(): WasmResult { return host.closeStream(StreamType.HttpResponse); }
}

/** One TCP connection through a tcp listener's network filters. Downstream = client to
 * upstream; upstream = the answer. Data callbacks get the size of the bytes on offer (with
 * any the filter held before) and whether that direction ends with them. */
export class NetworkContext extends BaseContext {
  constructor(id: u32, public readonly root: RootContext) { super(id); }

  onNewConnection(): FilterStatus { return FilterStatus.Continue; }
  onDownstreamData(size: u32, endOfStream: bool): FilterStatus { return FilterStatus.Continue; }
  onUpstreamData(size: u32, endOfStream: bool): FilterStatus { return FilterStatus.Continue; }
  onDownstreamClose(peer: PeerType): void {}
  onUpstreamClose(peer: PeerType): void {}

  // -- the bytes on offer (valid in the matching data callback)
  getDownstreamData(start: u32 = 0, maxSize: u32 = u32.MAX_VALUE): ArrayBuffer | null {
    return host.getBufferBytes(BufferType.DownstreamData, start, maxSize);
  }
  getUpstreamData(start: u32 = 0, maxSize: u32 = u32.MAX_VALUE): ArrayBuffer | null {
    return host.getBufferBytes(BufferType.UpstreamData, start, maxSize);
  }
  /** Replaces all the bytes on offer: these are what the next filter (or the peer) gets. */
  setDownstreamData(data: ArrayBuffer): WasmResult {
    return host.setBufferBytes(BufferType.DownstreamData, 0, u32.MAX_VALUE, data);
  }
  setUpstreamData(data: ArrayBuffer): WasmResult {
    return host.setBufferBytes(BufferType.UpstreamData, 0, u32.MAX_VALUE, data);
  }
  /** Inserts bytes at `at` (0 = in front of the bytes on offer). */
  insertDownstreamData(at: u32, data: ArrayBuffer): WasmResult { return host.setBufferBytes(BufferType.DownstreamData, at, 0, data); }
  insertUpstreamData(at: u32, data: ArrayBuffer): WasmResult { return host.setBufferBytes(BufferType.UpstreamData, at, 0, data); }
  /** Closes the connection (both sides); return StopIteration after it. */
  closeConnection(): WasmResult { return host.closeStream(StreamType.Downstream); }
}

// ---- logging helpers --------------------------------------------------------------------

export function log(level: LogLevel, message: string): void { host.log(level, message); }
export function logTrace(message: string): void { host.log(LogLevel.Trace, message); }
export function logDebug(message: string): void { host.log(LogLevel.Debug, message); }
export function logInfo(message: string): void { host.log(LogLevel.Info, message); }
export function logWarn(message: string): void { host.log(LogLevel.Warn, message); }
export function logError(message: string): void { host.log(LogLevel.Error, message); }
export function logCritical(message: string): void { host.log(LogLevel.Critical, message); }

/** Wall clock in milliseconds (hosts may freeze time within one callback). */
export function nowMs(): u64 { return host.getCurrentTimeNanoseconds() / 1000000; }
export function nowNanos(): u64 { return host.getCurrentTimeNanoseconds(); }
