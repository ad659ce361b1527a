// Contract between the request path and the filter chain (filters/chain.ts), which runs
// proxy-wasm filters in worker threads (wasm/). Calls are asynchronous: the chain batches
// every pending call of an event-loop turn into one task per worker and answers through the
// stream's methods. The request path owns the stream object; the chain never holds a
// closure per request.

/** response_trailers: the upstream response's trailers went through the filters (its answer
 * comes after the response headers phase and every response body call were answered). */
export type FilterPhase = 'request_headers' | 'response_headers' | 'response_trailers';
export type BodyFilterPhase = 'request_body' | 'response_body';

/** Bits of FilterChain.bodyPhases: which bodies the stream's filters want to see. */
export const BodyPhase = { Request: 1, Response: 2 } as const;

/** One HTTP request as the filter chain sees it. Implemented by the request path. */
export interface FilterStream {
  /** Unique per process; the chain maps it to a proxy-wasm context id. */
  readonly streamId: number;
  readonly method: string;
  readonly scheme: string;
  readonly authority: string;
  path: string;
  readonly clientAddress: string;
  readonly clientPort: number;
  readonly listenerName: string;
  readonly routeName: string;
  readonly clusterName: string;
  readonly requestId: string;
  /** The address the client connected to, "ip:port" (IPv6 bracketed): Envoy's
   * destination.address. An HTTP listener knows only the address it bound (uWS 20.30 gives
   * no per-connection local address), so a wildcard listener reports "0.0.0.0:port". Absent
   * or '' when unknown. */
  readonly destinationAddress?: string;
  /** Envoy's connection.id: an id unique per downstream connection in this process; absent
   * or 0 when unknown (uWS 20.30 exposes no connection identity to HTTP handlers). */
  readonly connectionId?: number;
  /** Flat [name, value, ...], names lower-case. The chain replaces the array when a filter
   * mutates headers; the request path reads it again after onFilterContinue. Pseudo-headers
   * (:method, :path, :authority, :scheme) are offered to filters like Envoy does, and a
   * changed :path / :authority is written back to `path` / the host header. */
  requestHeaders: string[];
  responseStatus: number;
  responseHeaders: string[];
  /** The upstream response's trailer fields (flat pairs, names lower-case) for a
   * responseTrailers call; null or absent otherwise. Filters may read and change them, but
   * changes go nowhere: uWS cannot write trailers to the client (docs/http-limits.md). */
  responseTrailers?: string[] | null;

  /** The phase finished: continue the request (headers may have been replaced). */
  onFilterContinue(phase: FilterPhase): void;
  /** A filter answered locally (proxy_send_local_response), or the failure policy answered
   * (503 for fail-closed). headers: flat pairs. The chain stops at the first local response. */
  onFilterLocalResponse(status: number, headers: string[], body: Uint8Array): void;
  /** The answer to one requestBody/responseBody call, in call order: the bytes to forward
   * now (empty while a filter buffers) and whether they end the body. Optional: a stream
   * that never sends body calls (bodyPhases 0, WebSocket upgrades) need not implement it.
   * A body phase can also end in onFilterLocalResponse (413 over max_body_bytes, a filter's
   * own answer, or 503 from the failure policy). */
  onFilterBody?(phase: BodyFilterPhase, data: Uint8Array, endOfStream: boolean): void;
}

/** A route's ordered list of filters, resolved when a config is applied. */
export interface FilterChain {
  /** Filter names, for logs and metrics. */
  readonly names: readonly string[];
  /** Run the request-headers phase of every filter in order; answers via the stream. */
  requestHeaders(stream: FilterStream): void;
  /** Run the response-headers phase (filters in reverse order, like Envoy). */
  responseHeaders(stream: FilterStream): void;
  /** BodyPhase bits of the generations this stream is pinned to (ask after the request
   * headers phase): 0 means no filter exports proxy_on_*_body and bodies stream untouched. */
  bodyPhases(stream: FilterStream): number;
  /** One request body chunk through the filters in order (proxy_on_request_body). Calls are
   * answered in order via onFilterBody; send them only after the request headers phase
   * continued. The chunk must not be modified afterwards (it may be encoded later in the turn). */
  requestBody(stream: FilterStream, chunk: Uint8Array, endOfStream: boolean): void;
  /** One response body chunk through the filters in reverse order (proxy_on_response_body).
   * May be sent right behind responseHeaders, before it is answered: the worker runs body
   * calls after the headers phase (also after an http call it waits on), and the answers
   * come after onFilterContinue('response_headers'), or not at all after a local response. */
  responseBody(stream: FilterStream, chunk: Uint8Array, endOfStream: boolean): void;
  /** Whether a generation the stream is pinned to exports proxy_on_response_trailers (ask
   * after the request headers phase). False: the request path need not wait for the chain
   * before it ends a response that had trailers. */
  handlesResponseTrailers(stream: FilterStream): boolean;
  /** Whether the response headers phase has anything to run for this stream (ask after the
   * request headers phase): false when every filter it is pinned to skips it (does not export
   * proxy_on_response_headers, or said so with wisp.skip_phases) and none takes the response
   * body or trailers. Then the response goes on without the chain; on_log still sees
   * response.code. */
  handlesResponseHeaders(stream: FilterStream): boolean;
  /** stream.responseTrailers through the filters in reverse order (proxy_on_response_trailers).
   * Send it only after the response headers phase and every response body call were answered,
   * and before the response is ended. Answers onFilterContinue('response_trailers'), or
   * onFilterLocalResponse when a filter answers locally or fail-closed applies; the head is
   * out by then, so the request path resets the client stream, as Envoy does for a local
   * reply after response headers were sent. */
  responseTrailers(stream: FilterStream): void;
  /** The request is over (completed, failed or aborted): on_log, on_done, on_delete, and the
   * contexts are released. Fire-and-forget; never delays the response. */
  done(stream: FilterStream): void;
}

export interface FilterRuntime {
  /** Build the chain for a route; throws with a clear message when a name is unknown. */
  chain(names: readonly string[]): FilterChain;
}

/** A TCP connection as its network filters see it. Implemented by the L4 listener; answers
 * come through its methods (no closure per chunk). */
export interface NetworkConnection {
  readonly clientAddress: string;
  readonly clientPort: number;
  /** The local end the client connected to, "ip:port" (IPv6 bracketed); '' if unknown. */
  readonly localAddress: string;
  readonly listenerName: string;
  readonly clusterName: string;
  /** The chain's record of this connection: starts null, set and read by the chain only. */
  networkFilterState: object | null;
  /** The answer to one data() call, in call order per direction: the bytes to write to the
   * other side now (empty while a filter holds them: StopIteration) and whether they end
   * that direction (then half-close the other side). */
  onNetworkData(downstream: boolean, data: Uint8Array, endOfStream: boolean): void;
  /** A filter closed the connection (proxy_close_stream, bytes held past max_body_bytes) or
   * its failure policy did (`closed`). No more answers follow. */
  onNetworkClose(reason: string): void;
}

/** A tcp listener's ordered network filters (proxy_on_new_connection,
 * proxy_on_downstream_data / proxy_on_upstream_data, the close callbacks). A connection is
 * pinned to one worker and to the generations current at its first data() call. */
export interface NetworkFilterChain {
  readonly names: readonly string[];
  /** One chunk through the filters: downstream (client → upstream) first to last, upstream
   * (upstream → client) last to first, stopping at the first StopIteration. The chunk must
   * not be modified afterwards; the answer comes via conn.onNetworkData. */
  data(conn: NetworkConnection, downstream: boolean, bytes: Uint8Array, endOfStream: boolean): void;
  /** The connection is over: the close callbacks with each side's PeerType (wire.ts: 1
   * Wisp closed it, 2 the peer did, 0 unknown), then on_done/on_log/on_delete. */
  close(conn: NetworkConnection, downstreamPeer: number, upstreamPeer: number): void;
}
