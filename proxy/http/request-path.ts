// The life of one proxied HTTP request, in the order it happens (Pingora's phases):
//
//   1. request        read and check the head (http/request-validation.ts), match a route
//   2. request_filter the route's wasm filter chain sees the request headers
//   3. upstream_peer  choose a cluster endpoint (LB, health, outlier ejection, limits)
//   4. upstream       send the head, stream the body, with per-try/whole timeouts
//   5. response_filter the chain sees the response headers (reverse order)
//   6. response_body  stream the body back with backpressure both ways
//   4b/6b. body filters  only when a filter of the stream exports proxy_on_*_body: each body
//                    chunk goes through the chain first; the filtered bytes go out with an
//                    exact length when they come out whole, else chunked (a filter may
//                    change the size)
//   6c. trailers      a chunked response's trailers go to the filters (when one exports
//                    proxy_on_response_trailers) before the response ends; never to the
//                    client, since uWS cannot write them (docs/http-limits.md)
//   7. logging        stats, access log, filter on_log/on_done
//   errors:           retry (connect failure / reset / timeout / status) or answer 502/503/504
//
// One ProxyRequest object per request carries every callback as a method, so the hot
// path does not allocate closures beyond the three uWS needs per response object.
import type { HttpResponse } from 'uWebSockets.js';
import type { CompiledRoute } from '../router/match.js';
import type { Cluster } from '../upstream/cluster.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { UpstreamError, type UpstreamExchange, type UpstreamHandler, type UpstreamRequestHead } from '../upstream/types.js';
import { BodyPhase, type BodyFilterPhase, type FilterChain, type FilterPhase, type FilterStream } from '../filters/types.js';
import type { RequestStats } from '../admin/metrics.js';
import { isDroppedResponseHeader } from './headers.js';
import { statusLine } from './status.js';
import { inflight, type ListenerState } from '../listener/state.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** Bodies up to this size are kept so that a retry can replay them. */
const REPLAY_LIMIT = 64 * 1024;
/** Body bytes buffered while the head is still in the filter chain before reading pauses. */
const EARLY_BODY_LIMIT = 256 * 1024;
/** Chunked request bodies: bytes that must parse before the head goes upstream. */
const CHUNKED_HOLD = 64 * 1024;
/** Body filter calls (and bytes) in flight per direction before reading pauses; reading
 * resumes at BODY_CALLS_LOW calls. Every byte in flight is held several times over (the
 * batch buffers both ways, the filter's memory), so the byte bound is the one that counts. */
const BODY_CALLS_HIGH = 4;
const BODY_CALLS_LOW = 1;
const BODY_BYTES_HIGH = 128 * 1024;
/** Response bytes read while the response headers are with the filters before reading
 * pauses: a small response that came whole needs no pause/resume of the upstream socket,
 * and a thousand held responses stay within one read chunk each, as with an early pause. */
const HELD_BYTES_HIGH = 16 * 1024;
const NO_BYTES = new Uint8Array(0);

let nextStreamId = 1;

/** Retries in flight per cluster, so retries never more than double the load (Envoy's retry budget). */
class RetryBudget {
  active = 0;
  retries = 0;
  allow(ratio: number): boolean {
    // Envoy keeps a floor of 3 concurrent retries so a quiet cluster can still retry.
    return this.retries < Math.max(3, this.active * ratio);
  }
}
const budgets = new WeakMap<Cluster, RetryBudget>();
function budgetOf(cluster: Cluster): RetryBudget {
  let b = budgets.get(cluster);
  if (b === undefined) {
    b = new RetryBudget();
    budgets.set(cluster, b);
  }
  return b;
}

// res.cork() runs its callback synchronously: a module-level "current request" lets one
// function serve every request instead of a closure each.
let corking: ProxyRequest | null = null;
function corkedResponseStart(): void {
  corking!.writeResponseStart();
}
function corkedChunk(): void {
  corking!.writeCorkedChunk();
}
function corkedEnd(): void {
  corking!.writeCorkedEnd();
}
function corkedFiltered(): void {
  corking!.writeCorkedFiltered();
}
// Response chunks for the body filters wait for the end of the read that brought them, so
// that a response read whole becomes one body call (with endOfStream) instead of two.
let stashed: ProxyRequest[] = [];
let stashFlushQueued = false;
function flushStashed(): void {
  const list = stashed;
  stashed = [];
  stashFlushQueued = false;
  for (let i = 0; i < list.length; i++) list[i]!.sendStashedResponseChunk();
}
function onTryTimeout(r: ProxyRequest): void {
  r.tryTimedOut();
}
function onRequestTimeout(r: ProxyRequest): void {
  r.requestTimedOut();
}
function onBodyTimeout(r: ProxyRequest): void {
  r.bodyTimedOut();
}

export class ProxyRequest implements UpstreamHandler, FilterStream {
  // FilterStream
  readonly streamId = nextStreamId++;
  readonly scheme: 'http' | 'https';
  readonly authority: string;
  path: string;
  readonly clientPort = 0;
  get destinationAddress(): string {
    return this.listener.localAddress;
  }
  readonly listenerName: string;
  readonly routeName: string;
  readonly clusterName: string;
  responseStatus = 0;
  responseHeaders: string[] = [];
  /** Set only when a filter of the stream takes response trailers (6c). */
  responseTrailers: string[] | null = null;

  // request side
  private readonly startedAt = performance.now();
  private readonly chain: FilterChain | null;
  private readonly cluster: Cluster | null;
  private readonly stats: RequestStats;
  private readonly idempotent: boolean;
  private readonly bodyLength: number; // 0 none, >0 Content-Length, -1 chunked
  private bodyReceived = 0;
  private bodyDone: boolean;
  private bodyChunks: Buffer[] | null = null; // buffered before the exchange exists / kept for replay
  private bodyBuffered = 0;
  private replayable: boolean;
  private uwsPaused = false;
  private holdingForBody = false;
  private upstreamWriteBlocked = false; // writeBody said wait for onRequestDrain

  // body filters (only when a filter of the stream handles a body)
  private bodyPhases = 0;
  private filterRequestBody = false;
  private requestBodyCalls = 0;
  private requestBodyBytes = 0; // in flight, with the size of each call in order below
  private requestBodySizes: number[] | null = null;
  private filteredRequestDone = false;
  private filteredRequestLength = -1; // the upstream's body length: -1 chunked, or exact when the filters emitted it whole
  private filterResponseBody = false;
  private responseBodyCalls = 0;
  private responseBodyBytes = 0;
  private responseBodySizes: number[] | null = null;
  private clientBlocked = false; // res.write said the client is slow
  private responseStash: Buffer | null = null; // see flushStashed
  private filteredEnd = false;

  // upstream side
  private endpoint: Endpoint | null = null;
  private exchange: UpstreamExchange | null = null;
  private tries = 0;
  private isRetry = false;
  private tryTimer: NodeJS.Timeout | null = null;
  private requestTimer: NodeJS.Timeout | null = null;
  private bodyTimer: NodeJS.Timeout | null = null;
  private acquired = false;

  // response side
  private state: 0 | 1 | 2 | 3 = 0; // 0 waiting, 1 head written / streaming, 2 finished, 3 aborted
  private responseLength = -1;
  private headPending = false;
  private responseComplete = false; // every body byte was handed to uWS
  private pendingChunk: Buffer | null = null;
  private pendingOffset = 0;
  private chunkToWrite: Buffer | null = null;
  private upstreamPaused = false;
  private inFilter: FilterPhase | null = null;
  private held: Buffer[] | null = null; // response body read while response filters ran
  private heldBytes = 0;
  private heldEnd = false;

  constructor(
    private readonly res: HttpResponse,
    private readonly listener: ListenerState,
    private readonly route: CompiledRoute,
    readonly method: string,
    readonly clientAddress: string,
    readonly requestId: string,
    /** Upstream-bound headers; replaced by the filter chain when it mutates them. */
    public requestHeaders: string[],
    originalHost: string,
    contentLength: number,
  ) {
    this.scheme = listener.scheme;
    this.authority = originalHost;
    this.path = '';
    this.listenerName = listener.config.name;
    this.routeName = route.name;
    this.clusterName = route.config.cluster ?? '';
    this.cluster = route.config.cluster === undefined ? null : listener.clusters.get(route.config.cluster) ?? null;
    this.chain = listener.chainFor(route);
    this.stats = listener.statsFor(route);
    this.idempotent = IDEMPOTENT.has(method);
    this.bodyLength = contentLength;
    this.bodyDone = contentLength === 0;
    // A chunked body has no known size: it is streamed, never kept for a retry.
    this.replayable = contentLength >= 0 && contentLength <= REPLAY_LIMIT;
    res.onAborted(this.onClientAborted.bind(this));
    if (this.bodyLength !== 0) {
      this.bodyChunks = [];
      res.onData(this.onClientData.bind(this));
      const bt = listener.config.limits.body_timeout_ms;
      if (bt > 0) this.bodyTimer = setTimeout(onBodyTimeout, bt, this);
    }
  }

  // ── 1 → 2: the head is checked and routed; run the request filters, or go straight on ──
  start(path: string): void {
    this.path = path;
    const timeout = this.route.config.timeout_ms;
    if (timeout > 0) this.requestTimer = setTimeout(onRequestTimeout, timeout, this);
    if (this.cluster === null) return this.fail(503, `cluster "${this.clusterName}" is not available`);
    if (!this.cluster.acquire()) return this.fail(503, 'upstream overflow: cluster max_requests reached');
    this.acquired = true;
    budgetOf(this.cluster).active++;
    if (this.bodyLength === -1 && !this.bodyDone && this.bodyBuffered < CHUNKED_HOLD) {
      // uWS checks chunk framing as it decodes: hold the head until the body (or its first
      // CHUNKED_HOLD bytes) parsed cleanly, so a bad chunk size never reaches the upstream.
      this.holdingForBody = true;
      return;
    }
    this.requestFilter();
  }

  private requestFilter(): void {
    if (this.chain !== null) {
      // The chain offers filters Envoy's pseudo-headers and folds :path / :authority back
      // into `path` and the host header before it calls onFilterContinue.
      this.inFilter = 'request_headers';
      this.chain.requestHeaders(this);
      return;
    }
    this.upstreamPeer();
  }

  onFilterContinue(phase: FilterPhase): void {
    this.inFilter = null;
    if (this.state >= 2) return;
    if (phase === 'response_trailers') {
      this.responseTrailers = null;
      corking = this;
      this.res.cork(corkedEnd);
      corking = null;
      return;
    }
    if (phase === 'request_headers') {
      this.bodyPhases = this.chain!.bodyPhases(this);
      // With request body filters the upstream is chosen when their first bytes come out.
      if ((this.bodyPhases & BodyPhase.Request) !== 0 && this.bodyLength !== 0) this.startRequestBodyFilter();
      else this.upstreamPeer();
    } else {
      if (this.filterResponseBody) {
        // Filtered bytes go out chunked, the head with the first of them (so a body filter
        // can still answer locally until then); the body calls are already on their way.
        this.responseLength = -1;
        return;
      }
      this.beginResponse();
      const held = this.held;
      this.held = null;
      if (held !== null) for (let i = 0; i < held.length && this.state < 2; i++) this.onResponseData(held[i]!);
      if (this.heldEnd) this.onResponseEnd();
      else this.resumeUpstream();
    }
  }

  onFilterLocalResponse(status: number, headers: string[], body: Uint8Array): void {
    this.inFilter = null;
    if (this.state >= 2) return;
    if (this.exchange !== null) {
      this.exchange.abort();
      this.exchange = null;
    }
    if (this.state === 1) {
      // Head already out: only the trailers phase gets here (header phases answer before the
      // head is written). Like Envoy after response headers went out: reset the stream.
      this.res.close();
      return this.finish(0);
    }
    this.answer(status, headers, body, false);
  }

  // ── 3: choose an endpoint ──
  private upstreamPeer(): void {
    const cluster = this.cluster!;
    const hashKey = cluster.config.lb === 'ring_hash' ? this.hashKey(cluster) : '';
    const ep = cluster.pick(hashKey, this.endpoint);
    if (ep === null) return this.fail(503, 'no healthy upstream');
    this.endpoint = ep;
    this.upstreamRequest();
  }

  private hashKey(cluster: Cluster): string {
    const name = cluster.config.hash_header;
    if (name !== undefined) {
      const h = this.requestHeaders;
      for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1]!;
    }
    return this.clientAddress;
  }

  // ── 4: send the request upstream ──
  private upstreamRequest(): void {
    const ep = this.endpoint!;
    this.tries++;
    ep.active++;
    const head: UpstreamRequestHead = {
      method: this.method,
      path: this.path,
      headers: this.requestHeaders,
      // Body filters may change the size: the length they emitted whole, else chunked.
      bodyLength: this.filterRequestBody ? this.filteredRequestLength : this.bodyLength,
    };
    const perTry = this.route.config.per_try_timeout_ms;
    if (perTry > 0) this.tryTimer = setTimeout(onTryTimeout, perTry, this);
    // The pool may answer synchronously (overflow / connect error): guard against re-entry
    // by assigning the exchange before anything else happens to this object.
    this.endpointHeld = true;
    const tryNo = this.tries;
    const exchange = ep.pool.request(head, this);
    if (this.state >= 2 || this.tries !== tryNo) {
      // Failed synchronously and already handled (retried or answered).
      return;
    }
    this.exchange = exchange;
    this.sendBufferedBody();
  }

  private sendBufferedBody(): void {
    const ex = this.exchange!;
    const chunks = this.bodyChunks;
    if (chunks !== null) {
      let ok = true;
      for (let i = 0; i < chunks.length; i++) ok = ex.writeBody(chunks[i]!);
      if (!this.replayable) {
        this.bodyChunks = null;
        this.bodyBuffered = 0;
      }
      if (!ok) {
        this.upstreamWriteBlocked = true;
        this.pauseClient();
      } else if (this.uwsPaused && this.requestBodyCalls <= BODY_CALLS_LOW && this.requestBodyBytes < BODY_BYTES_HIGH) this.resumeClient();
    }
    if (this.filterRequestBody ? this.filteredRequestDone : this.bodyDone && this.bodyLength !== 0) ex.endBody();
  }

  private onClientData(ab: ArrayBuffer, isLast: boolean): void {
    // uWS neuters the ArrayBuffer when this returns: copy.
    const chunk = Buffer.allocUnsafe(ab.byteLength);
    chunk.set(new Uint8Array(ab));
    this.bodyReceived += chunk.length;
    if (this.bodyTimer !== null) this.bodyTimer.refresh();
    if (isLast) {
      this.bodyDone = true;
      if (this.bodyTimer !== null) {
        clearTimeout(this.bodyTimer);
        this.bodyTimer = null;
      }
    }
    if (this.state >= 2) return;
    if (this.filterRequestBody) return this.requestBodyCall(chunk, isLast);
    const keep = this.bodyChunks !== null && (this.replayable || this.exchange === null);
    if (keep) {
      this.bodyChunks!.push(chunk);
      this.bodyBuffered += chunk.length;
    }
    const ex = this.exchange;
    if (ex !== null) {
      if (chunk.length > 0 && !ex.writeBody(chunk)) {
        this.upstreamWriteBlocked = true;
        this.pauseClient();
      }
      if (isLast) ex.endBody();
    } else if (this.holdingForBody) {
      if (isLast || this.bodyBuffered >= CHUNKED_HOLD) {
        this.holdingForBody = false;
        this.requestFilter();
      }
    } else if (this.bodyBuffered > EARLY_BODY_LIMIT) {
      this.pauseClient();
    }
  }

  private pauseClient(): void {
    if (!this.uwsPaused && this.state < 2) {
      this.uwsPaused = true;
      this.res.pause();
    }
  }

  private resumeClient(): void {
    if (this.uwsPaused && this.state < 2) {
      this.uwsPaused = false;
      this.res.resume();
    }
  }

  onRequestDrain(): void {
    this.upstreamWriteBlocked = false;
    if (this.requestBodyCalls <= BODY_CALLS_LOW && this.requestBodyBytes < BODY_BYTES_HIGH) this.resumeClient();
  }

  // ── 4b: request body filters ──
  // The upstream request starts when the filters emit their first bytes (or the end): a
  // filter that buffers the whole body and rejects it never opens an upstream request, and
  // a body emitted whole at the end goes with its exact Content-Length. Otherwise the
  // upstream gets the filtered bytes chunked, since a filter may change the size. Chunks the
  // client sent while the head was in the filters go first; at most BODY_CALLS_HIGH calls
  // are in flight before reading the client pauses. What the filters emit is kept for a
  // retry as long as the original body was small enough to be replayable.
  private startRequestBodyFilter(): void {
    this.filterRequestBody = true;
    const early = this.bodyChunks;
    this.bodyChunks = this.replayable ? [] : null;
    this.bodyBuffered = 0;
    if (early !== null && early.length > 0) {
      for (let i = 0; i < early.length; i++) this.requestBodyCall(early[i]!, this.bodyDone && i === early.length - 1);
    } else if (this.bodyDone) {
      this.requestBodyCall(Buffer.alloc(0), true);
    }
  }

  private requestBodyCall(chunk: Buffer, isLast: boolean): void {
    this.requestBodyCalls++;
    this.requestBodyBytes += chunk.length;
    (this.requestBodySizes ??= []).push(chunk.length);
    this.chain!.requestBody(this, chunk, isLast);
    if (this.requestBodyCalls >= BODY_CALLS_HIGH || this.requestBodyBytes >= BODY_BYTES_HIGH) this.pauseClient();
  }

  onFilterBody(phase: BodyFilterPhase, data: Uint8Array, endOfStream: boolean): void {
    if (this.state >= 2) return;
    if (phase === 'response_body') return this.filteredResponseBody(data, endOfStream);
    this.requestBodyCalls--;
    this.requestBodyBytes -= this.requestBodySizes!.shift()!;
    if (this.endpoint === null && this.exchange === null) {
      if (data.length === 0 && !endOfStream) return this.resumeRequestBody();
      // The first filtered bytes: now the upstream request can start, with them.
      if (endOfStream) {
        this.filteredRequestDone = true;
        this.filteredRequestLength = data.length;
      }
      if (data.length > 0) {
        this.bodyBuffered = data.length;
        (this.bodyChunks ??= []).push(data as Buffer);
      }
      this.upstreamPeer();
      return this.resumeRequestBody();
    }
    if (data.length > 0) {
      const kept = this.bodyChunks;
      if (kept !== null) {
        this.bodyBuffered += data.length;
        if (this.bodyBuffered > REPLAY_LIMIT) {
          // The filters made it bigger than a retry may hold.
          this.replayable = false;
          this.bodyChunks = null;
        } else kept.push(data as Buffer);
      }
      const ex = this.exchange;
      if (ex !== null && !ex.writeBody(data)) {
        this.upstreamWriteBlocked = true;
        this.pauseClient();
      }
    }
    if (endOfStream) {
      this.filteredRequestDone = true;
      if (this.exchange !== null) this.exchange.endBody();
    } else this.resumeRequestBody();
  }

  private resumeRequestBody(): void {
    if (this.uwsPaused && !this.upstreamWriteBlocked && this.requestBodyCalls <= BODY_CALLS_LOW && this.requestBodyBytes < BODY_BYTES_HIGH) this.resumeClient();
  }

  // ── 6b: response body filters ──
  // Every upstream read is a call (filters in reverse order); the answers, in order, are
  // written chunked, or with an exact length when the first answer is also the last (a
  // response read whole). Reading the upstream pauses while BODY_CALLS_HIGH calls or
  // BODY_BYTES_HIGH bytes are in flight or the client is slow.
  private responseBodyCall(chunk: Uint8Array, isLast: boolean): boolean {
    this.responseBodyCalls++;
    this.responseBodyBytes += chunk.length;
    (this.responseBodySizes ??= []).push(chunk.length);
    this.chain!.responseBody(this, chunk, isLast);
    if (this.responseBodyCalls >= BODY_CALLS_HIGH || this.responseBodyBytes >= BODY_BYTES_HIGH) {
      this.pauseUpstream();
      return false;
    }
    return true;
  }

  private stashResponseChunk(chunk: Buffer): boolean {
    const prev = this.responseStash;
    // The chunk is only valid during onResponseData: the filters get a copy.
    this.responseStash = Buffer.from(chunk);
    if (prev !== null) return this.responseBodyCall(prev, false);
    stashed.push(this);
    if (!stashFlushQueued) {
      stashFlushQueued = true;
      queueMicrotask(flushStashed);
    }
    return true;
  }

  /** The read is over and the end did not come with it: the chunk goes on its own. */
  sendStashedResponseChunk(): void {
    const chunk = this.responseStash;
    if (chunk === null || this.state >= 2) return;
    this.responseStash = null;
    this.responseBodyCall(chunk, false);
  }

  private filteredResponseBody(data: Uint8Array, endOfStream: boolean): void {
    this.responseBodyCalls--;
    this.responseBodyBytes -= this.responseBodySizes!.shift()!;
    // With trailers the end waits for their phase (6c); the filters already saw the end of the body.
    const trailersNext = endOfStream && this.responseTrailers !== null;
    if (data.length > 0 || (endOfStream && !trailersNext)) {
      this.chunkToWrite = data as Buffer;
      this.filteredEnd = endOfStream && !trailersNext;
      corking = this;
      this.res.cork(corkedFiltered);
      corking = null;
      this.chunkToWrite = null;
    }
    if (trailersNext) return this.responseTrailersFilter();
    if (this.state < 2 && !this.clientBlocked && this.responseBodyCalls <= BODY_CALLS_LOW && this.responseBodyBytes < BODY_BYTES_HIGH) this.resumeUpstream();
  }

  /** Runs corked: the head with the first filtered bytes, then chunks, then the end. */
  writeCorkedFiltered(): void {
    const res = this.res;
    const chunk = this.chunkToWrite!;
    if (this.state === 0) this.writeResponseStart();
    if (this.filteredEnd) {
      res.end(chunk);
      this.responseComplete = true;
      this.finish(this.responseStatus);
    } else if (!res.write(chunk)) {
      this.clientBlocked = true;
      this.pauseUpstream();
      this.watchWritable();
    }
  }

  // ── 6c: response trailers ──
  // Kept only when a filter of the stream exports proxy_on_response_trailers; the response
  // ends once the filters answered (or is reset, if one answers locally).
  onResponseTrailers(trailers: string[]): void {
    if (this.state < 2 && this.chain !== null && this.chain.handlesResponseTrailers(this)) this.responseTrailers = trailers;
  }

  private responseTrailersFilter(): void {
    if (this.state >= 2) return;
    this.inFilter = 'response_trailers';
    this.chain!.responseTrailers(this);
  }

  // ── 5: the response head ──
  onResponseHeaders(status: number, _reason: string, headers: string[], contentLength: number): void {
    if (this.state >= 2) return;
    this.clearTryTimer();
    if (this.shouldRetryStatus(status)) {
      this.endpoint!.reportStatus(status);
      this.releaseEndpoint();
      const ex = this.exchange;
      this.exchange = null;
      if (ex !== null) ex.abort();
      this.retry();
      return;
    }
    this.endpoint!.reportStatus(status);
    this.responseStatus = status;
    this.responseHeaders = headers;
    this.responseLength = contentLength;
    if (this.chain !== null && this.chain.handlesResponseHeaders(this)) {
      this.inFilter = 'response_headers';
      if ((this.bodyPhases & BodyPhase.Response) !== 0 && contentLength !== 0) {
        // Body calls follow the headers call into the same batch (the worker runs them after
        // it, or after its http call): a response that came whole costs one round trip.
        this.filterResponseBody = true;
      }
      // The body read meanwhile is held (onResponseData) until the filters answer; reading
      // goes on up to HELD_BYTES_HIGH, so a small response that came whole needs no
      // pause/resume of the upstream socket (two epoll_ctl calls per request).
      this.chain.responseHeaders(this);
      return;
    }
    this.beginResponse();
  }

  private shouldRetryStatus(status: number): boolean {
    if (status < 500) return false;
    const retry = this.route.config.retry;
    if (!retry.on.includes('status') || !retry.statuses.includes(status)) return false;
    return this.canRetry();
  }

  private beginResponse(): void {
    if (this.responseLength > 0) {
      // Most responses arrive whole: write the head together with the first chunk.
      this.headPending = true;
      return;
    }
    corking = this;
    this.res.cork(corkedResponseStart);
    corking = null;
  }

  /** Runs corked: status line and headers, and the end when there is no body. */
  writeResponseStart(): void {
    const res = this.res;
    this.state = 1;
    res.writeStatus(statusLine(this.responseStatus));
    const h = this.responseHeaders;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (!isDroppedResponseHeader(name)) res.writeHeader(name, h[i + 1]!);
    }
    if (this.responseLength === 0) {
      const noBody = this.method === 'HEAD' || this.responseStatus === 204 || this.responseStatus === 304;
      if (noBody) {
        // HEAD keeps the length of the resource it describes (the client passes it through).
        const len = this.method === 'HEAD' ? contentLengthOf(h) : -1;
        if (len >= 0) res.endWithoutBody(len);
        else res.endWithoutBody();
      }
      else res.end();
      this.finish(this.responseStatus);
    }
  }

  // ── 6: the response body ──
  onResponseData(chunk: Buffer): boolean {
    if (this.state >= 2) return true;
    if (this.filterResponseBody) return this.stashResponseChunk(chunk);
    if (this.inFilter !== null) {
      (this.held ??= []).push(Buffer.from(chunk));
      this.heldBytes += chunk.length;
      if (this.heldBytes < HELD_BYTES_HIGH) return true;
      // The exchange pauses itself on false: remember that resume() is owed.
      this.upstreamPaused = true;
      return false;
    }
    this.chunkToWrite = chunk;
    corking = this;
    this.res.cork(corkedChunk);
    corking = null;
    this.chunkToWrite = null;
    if (this.pendingChunk === null) return true;
    // The exchange pauses itself on false: remember that resume() is owed.
    this.upstreamPaused = true;
    if (this.responseLength <= 0) {
      // write() kept the whole chunk: only wait for uWS to drain it (tryEnd's rest is
      // already pending, with onWritable watched, in writeCorkedChunk).
      this.pendingChunk = null;
      this.watchWritable();
    }
    return false;
  }

  /** Runs corked: write one body chunk (with the head first when it was held back). */
  writeCorkedChunk(): void {
    const res = this.res;
    const chunk = this.chunkToWrite!;
    if (this.headPending) {
      this.headPending = false;
      this.writeResponseStart();
    }
    if (this.responseLength > 0) {
      const offset = res.getWriteOffset();
      const [ok, done] = res.tryEnd(chunk, this.responseLength);
      if (done) {
        this.responseComplete = true;
        this.finish(this.responseStatus);
      } else if (!ok) {
        // uWS kept none of what it could not send: remember the rest for onWritable.
        this.pendingChunk = Buffer.from(chunk);
        this.pendingOffset = offset;
        this.watchWritable();
      }
    } else if (!res.write(chunk)) {
      // uWS buffered it all; just stop reading upstream until it drains.
      this.pendingChunk = chunk;
    }
  }

  private watchingWritable = false;
  private watchWritable(): void {
    if (!this.watchingWritable) {
      this.watchingWritable = true;
      this.res.onWritable(this.onClientWritable.bind(this));
    }
  }

  private onClientWritable(offset: number): boolean {
    if (this.state >= 2) return true;
    if (this.filterResponseBody) {
      this.clientBlocked = false;
      if (this.responseBodyCalls < BODY_CALLS_HIGH && this.responseBodyBytes < BODY_BYTES_HIGH) this.resumeUpstream();
      return true;
    }
    const pending = this.pendingChunk;
    if (pending !== null && this.responseLength > 0) {
      const [ok, done] = this.res.tryEnd(pending.subarray(offset - this.pendingOffset), this.responseLength);
      if (done) {
        this.pendingChunk = null;
        this.responseComplete = true;
        this.finish(this.responseStatus);
        return true;
      }
      if (!ok) return false;
      this.pendingChunk = null;
    }
    this.resumeUpstream();
    return true;
  }

  onResponseEnd(): void {
    // The exchange is over either way; its connection went back to the pool.
    this.releaseEndpoint();
    this.exchange = null;
    if (this.state >= 2) return;
    if (this.filterResponseBody) {
      const last = this.responseStash ?? NO_BYTES;
      this.responseStash = null;
      this.responseBodyCall(last, true);
      return;
    }
    if (this.inFilter !== null) {
      this.heldEnd = true;
      return;
    }
    if (this.headPending) {
      // Content-Length said more was coming; the client must not see a short body as whole.
      this.res.close();
      return this.finish(0);
    }
    if (this.responseLength < 0) {
      if (this.responseTrailers !== null) return this.responseTrailersFilter();
      corking = this;
      this.res.cork(corkedEnd);
      corking = null;
      return;
    }
    if (this.state !== 2) {
      // Known length but tryEnd never reported done: the body came up short.
      this.res.close();
      this.finish(0);
    }
  }

  writeCorkedEnd(): void {
    if (this.state === 0) this.writeResponseStart();
    this.res.end();
    this.finish(this.responseStatus);
  }

  private pauseUpstream(): void {
    if (!this.upstreamPaused && this.exchange !== null) {
      this.upstreamPaused = true;
      this.exchange.pause();
    }
  }

  private resumeUpstream(): void {
    if (this.upstreamPaused && this.exchange !== null) {
      this.upstreamPaused = false;
      this.exchange.resume();
    } else {
      this.upstreamPaused = false;
    }
  }

  // ── errors ──
  onUpstreamError(err: UpstreamError): void {
    if (this.state >= 2) return;
    this.clearTryTimer();
    const ep = this.endpoint;
    if (ep !== null) {
      ep.reportFailure(err.kind);
      this.releaseEndpoint();
    }
    this.exchange = null;
    if (this.filterResponseBody && this.state === 0) {
      // The body filters held back everything so far: the client can still get a 502.
      return this.fail(502, 'upstream connection reset');
    }
    if (this.state === 1 || this.headPending) {
      // Part of the response is out (or was promised): the client connection must die.
      // (err.responseStarted only says upstream bytes arrived: a garbage head that never
      // reached the client still gets a clean 502.)
      this.res.close();
      return this.finish(0);
    }
    if (this.shouldRetryError(err)) return this.retry();
    switch (err.kind) {
      case 'overflow':
        return this.fail(503, 'upstream overflow: too many pending requests');
      case 'connect':
      case 'connect-timeout':
        return this.fail(502, `upstream connect failure (${err.message})`);
      case 'protocol':
        return this.fail(502, 'bad response from upstream');
      default:
        return this.fail(502, 'upstream connection reset');
    }
  }

  private shouldRetryError(err: UpstreamError): boolean {
    const on = this.route.config.retry.on;
    const kind = err.kind;
    const listed =
      ((kind === 'connect' || kind === 'connect-timeout') && on.includes('connect-failure')) ||
      (kind === 'reset' && on.includes('reset'));
    // Once the upstream started answering, it may have acted on the request: never again.
    return listed && !err.responseStarted && this.canRetry();
  }

  private canRetry(): boolean {
    const retry = this.route.config.retry;
    if (this.tries > retry.attempts) return false;
    if (!this.idempotent && !retry.non_idempotent) return false;
    // A streamed body that was not kept cannot be sent again.
    if (this.bodyLength !== 0 && !this.replayable) return false;
    return budgetOf(this.cluster!).allow(retry.budget_ratio);
  }

  private retry(): void {
    const budget = budgetOf(this.cluster!);
    if (!this.isRetry) {
      this.isRetry = true;
      budget.retries++;
    }
    this.stats.retries++;
    this.upstreamPeer();
  }

  tryTimedOut(): void {
    this.tryTimer = null;
    if (this.state >= 2 || this.state === 1 || this.headPending) return this.timeoutAfterHead();
    const ex = this.exchange;
    this.exchange = null;
    if (ex !== null) ex.abort();
    if (this.endpoint !== null) {
      this.endpoint.reportFailure('reset');
      this.releaseEndpoint();
    }
    if (this.route.config.retry.on.includes('timeout') && this.canRetry()) return this.retry();
    this.fail(504, 'upstream timed out');
  }

  requestTimedOut(): void {
    this.requestTimer = null;
    if (this.state >= 2) return;
    if (this.state === 1 || this.headPending) return this.timeoutAfterHead();
    const ex = this.exchange;
    this.exchange = null;
    if (ex !== null) ex.abort();
    this.releaseEndpoint();
    this.fail(504, 'upstream request timeout');
  }

  bodyTimedOut(): void {
    this.bodyTimer = null;
    if (this.state >= 2 || this.bodyDone) return;
    const ex = this.exchange;
    this.exchange = null;
    if (ex !== null) ex.abort();
    this.releaseEndpoint();
    if (this.state === 0) this.answer(408, [], Buffer.from('408 request body timeout\n'), true);
    else {
      this.res.close();
      this.finish(0);
    }
  }

  private timeoutAfterHead(): void {
    if (this.state >= 2) return;
    const ex = this.exchange;
    this.exchange = null;
    if (ex !== null) ex.abort();
    this.releaseEndpoint();
    this.res.close();
    this.finish(0);
  }

  private onClientAborted(): void {
    if (this.state >= 2) return;
    this.state = 3;
    const ex = this.exchange;
    this.exchange = null;
    if (ex !== null) ex.abort();
    this.releaseEndpoint();
    this.finish(0);
  }

  /** Answer with Wisp's own error response: short body, x-request-id. */
  fail(status: number, reason: string): void {
    this.answer(status, [], Buffer.from(`${status} ${reason}\n`), false);
  }

  private answer(status: number, headers: string[], body: Uint8Array, close: boolean): void {
    if (this.state >= 2) return;
    if (this.state === 1 || this.headPending) {
      this.res.close();
      return this.finish(0);
    }
    // What on_log's response.code reports, for Wisp's own answers too (breakers count them).
    this.responseStatus = status;
    const res = this.res;
    const requestId = this.requestId;
    res.cork(() => {
      res.writeStatus(statusLine(status));
      let hasType = false;
      for (let i = 0; i < headers.length; i += 2) {
        if (headers[i] === 'content-type') hasType = true;
        if (!isDroppedResponseHeader(headers[i]!)) res.writeHeader(headers[i]!, headers[i + 1]!);
      }
      if (!hasType) res.writeHeader('content-type', 'text/plain; charset=utf-8');
      res.writeHeader('x-request-id', requestId);
      res.end(body, close || (this.bodyLength !== 0 && !this.bodyDone));
    });
    this.finish(status);
  }

  /** Undo the per-try `active++` of upstreamRequest, exactly once per try. */
  private releaseEndpoint(): void {
    if (this.endpointHeld) {
      this.endpointHeld = false;
      this.endpoint!.active--;
    }
  }
  private endpointHeld = false;

  private clearTryTimer(): void {
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
      this.tryTimer = null;
    }
  }

  // ── 7: logging ──
  private finish(status: number): void {
    if (this.state === 2) return;
    const aborted = this.state === 3;
    this.state = 2;
    this.clearTryTimer();
    if (this.requestTimer !== null) clearTimeout(this.requestTimer);
    if (this.bodyTimer !== null) clearTimeout(this.bodyTimer);
    this.requestTimer = this.bodyTimer = null;
    this.bodyChunks = null;
    // A response relayed whole leaves the exchange to end by itself (keep-alive reuse);
    // anything else must not leave an upstream request running.
    if (this.exchange !== null && !this.responseComplete) {
      this.exchange.abort();
      this.exchange = null;
    }
    this.releaseEndpoint();
    if (this.acquired) {
      this.acquired = false;
      this.cluster!.release();
      const budget = budgetOf(this.cluster!);
      budget.active--;
      if (this.isRetry) budget.retries--;
    }
    const seconds = (performance.now() - this.startedAt) / 1000;
    this.stats.record(aborted ? 0 : status, seconds);
    inflight.count--;
    if (this.chain !== null) this.chain.done(this);
    if (this.listener.accessLog !== null) this.listener.accessLog.write(this, status, seconds, this.endpoint?.key ?? '', aborted);
  }
}

/** The content-length header of a flat list as a number, -1 when absent or not a number. */
function contentLengthOf(h: readonly string[]): number {
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === 'content-length') {
      const n = Number(h[i + 1]);
      return Number.isSafeInteger(n) && n >= 0 ? n : -1;
    }
  }
  return -1;
}
