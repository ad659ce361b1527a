// Contract between the request path (http/request-path.ts) and the upstream HTTP/1.1
// client (upstream/connection.ts, upstream/pool.ts). Handlers are long-lived objects with
// methods, in undici's style, so the hot path allocates no closures per request.

/** Why an upstream exchange failed. The request path maps these to 502/503/504 and retries. */
export type UpstreamErrorKind =
  | 'connect'          // refused / unreachable / DNS: nothing was sent, always safe to retry
  | 'connect-timeout'  // connect took longer than connect_timeout_ms
  | 'reset'            // socket closed or errored after the request was (partly) sent
  | 'protocol'         // the upstream sent something that is not valid HTTP/1.1
  | 'overflow';        // pool limits (max connections + max pending) reached

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    /** True once any byte of the response head was received: the exchange must not be retried. */
    readonly responseStarted: boolean,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export interface UpstreamRequestHead {
  method: string;           // upper-case token as received
  path: string;             // origin-form, with query
  /** Flat [name, value, name, value, ...]; hop-by-hop already removed, host included. */
  headers: string[];
  /** 0: no body; > 0: exact Content-Length; -1: chunked, streamed with writeBody/endBody. */
  bodyLength: number;
}

export interface UpstreamHandler {
  /** The response head. headers: flat [name, value, ...] with names lower-cased; hop-by-hop
   * headers (connection, keep-alive, transfer-encoding, ...) already removed.
   * contentLength: exact body length, or -1 when chunked/close-delimited, 0 when no body
   * (HEAD, 204, 304). 1xx interim responses are not reported. */
  onResponseHeaders(status: number, reason: string, headers: string[], contentLength: number): void;
  /** A body chunk. The Buffer is only valid during the call unless copied. Return false to
   * apply backpressure: the exchange stops reading until resume() is called. */
  onResponseData(chunk: Buffer): boolean;
  /** The trailer fields of a chunked response: flat [name, value, ...], names lower-case,
   * fields a trailer must not carry (framing, routing, connection) left out. Called once,
   * only when there were any, right before onResponseEnd; the array is the handler's to keep.
   * Optional: a handler without it never sees trailers. */
  onResponseTrailers?(trailers: string[]): void;
  /** The body is complete (and the connection went back to the pool if reusable). */
  onResponseEnd(): void;
  /** The exchange failed; no further callbacks follow. */
  onUpstreamError(err: UpstreamError): void;
  /** The request body writer may write again after writeBody returned false. */
  onRequestDrain(): void;
}

export interface UpstreamExchange {
  /** Write a request body chunk (framing added for chunked). False: wait for onRequestDrain. */
  writeBody(chunk: Uint8Array): boolean;
  /** Finish the request body (writes the last chunk for chunked). */
  endBody(): void;
  /** Response backpressure. */
  pause(): void;
  resume(): void;
  /** Cancel: the connection is destroyed, never reused; no further handler callbacks. */
  abort(): void;
}

export interface EndpointPoolOptions {
  connectTimeoutMs: number;
  /** Idle keep-alive connections are closed after this long. */
  idleTimeoutMs: number;
  /** Idle connections kept per endpoint. */
  maxIdle: number;
  /** Open connections (busy + idle) at most; further requests wait in a queue of maxPending. */
  maxConnections: number;
  maxPending: number;
  /** Longest response head accepted from the upstream (→ 'protocol' error). Default 64 KiB. */
  maxResponseHeaderBytes?: number;
}

export interface PoolStats {
  open: number;     // busy + idle connections
  idle: number;
  busy: number;
  pending: number;  // requests waiting for a connection
  created: number;  // connections ever opened
}
