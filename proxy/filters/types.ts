// Contract between the request path and the filter chain (filters/chain.ts), which runs
// proxy-wasm filters in worker threads (wasm/). Calls are asynchronous: the chain batches
// every pending call of an event-loop turn into one task per worker and answers through the
// stream's methods. The request path owns the stream object; the chain never holds a
// closure per request.

export type FilterPhase = 'request_headers' | 'response_headers';

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
  /** Flat [name, value, ...], names lower-case. The chain replaces the array when a filter
   * mutates headers; the request path reads it again after onFilterContinue. Pseudo-headers
   * (:method, :path, :authority, :scheme) are offered to filters like Envoy does, and a
   * changed :path / :authority is written back to `path` / the host header. */
  requestHeaders: string[];
  responseStatus: number;
  responseHeaders: string[];

  /** The phase finished: continue the request (headers may have been replaced). */
  onFilterContinue(phase: FilterPhase): void;
  /** A filter answered locally (proxy_send_local_response), or the failure policy answered
   * (503 for fail-closed). headers: flat pairs. The chain stops at the first local response. */
  onFilterLocalResponse(status: number, headers: string[], body: Uint8Array): void;
}

/** A route's ordered list of filters, resolved when a config is applied. */
export interface FilterChain {
  /** Filter names, for logs and metrics. */
  readonly names: readonly string[];
  /** Run the request-headers phase of every filter in order; answers via the stream. */
  requestHeaders(stream: FilterStream): void;
  /** Run the response-headers phase (filters in reverse order, like Envoy). */
  responseHeaders(stream: FilterStream): void;
  /** The request is over (completed, failed or aborted): on_log, on_done, on_delete, and the
   * contexts are released. Fire-and-forget; never delays the response. */
  done(stream: FilterStream): void;
}

export interface FilterRuntime {
  /** Build the chain for a route; throws with a clear message when a name is unknown. */
  chain(names: readonly string[]): FilterChain;
}
