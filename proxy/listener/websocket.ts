// WebSocket upgrades, proxied end to end. uWS terminates the client's WebSocket; Wisp opens
// a second one to the upstream endpoint (upstream/ws-client.ts) and relays messages and
// close frames between the two. The upgrade is routed like any HTTP request (same router,
// same filter chain request_headers phase); a refusal by the upstream is passed back as the
// plain HTTP answer it was.
//
//   upgrade   read the head, route, filters, pick an endpoint, WebSocket handshake upstream
//   open      101 from upstream → res.upgrade(): the client's WebSocket opens
//   relay     client message → masked upstream frame; upstream message → ws.send()
//   close     either side's close (code + reason) is passed to the other side
//
// Not supported, on purpose: permessage-deflate (Sec-WebSocket-Extensions is not forwarded
// and uWS compression is off), so frames pass without being re-compressed per hop. Other
// headers of the upstream's 101 are passed on, except those uWS writes itself.
import uWS from 'uWebSockets.js';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from 'uWebSockets.js';
import { forwardRequestHeaders, isDroppedResponseHeader } from '../http/headers.js';
import { statusLine } from '../http/status.js';
import { checkRequest, rejectRequest } from '../http/request-validation.js';
import { headerValue, hostWithoutPort, type CompiledRoute } from '../router/match.js';
import type { Cluster } from '../upstream/cluster.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { FilterChain, FilterPhase, FilterStream } from '../filters/types.js';
import {
  connectWebSocket,
  isValidCloseCode,
  WsConnectError,
  type WsConnection,
  type WsHandler,
  type WsRefused,
  type WsUpgraded,
} from '../upstream/ws-client.js';
import { inflight, type ListenerState } from './state.js';
import { clientAddressOf, readHeaders, requestIdFrom } from './client.js';

/** Largest message either side may send (uWS closes the client with 1009 above it; the
 * upstream connection does the same). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Client-bound bytes waiting in uWS above which reading the upstream pauses... */
const PAUSE_UPSTREAM_AT = 1024 * 1024;
/** ...and below which it resumes. */
const RESUME_UPSTREAM_BELOW = 256 * 1024;
/** uWS drops a send (returns 2) only above this; we pause long before, so it takes one
 * maximum-size message on top of a paused buffer to get near it. */
const MAX_CLIENT_BACKPRESSURE = PAUSE_UPSTREAM_AT + 2 * MAX_MESSAGE_BYTES;
/** uWS 20.30 has no way to stop reading a client's WebSocket, so a client that sends faster
 * than the upstream reads can only be cut off: above this many queued upstream-bound bytes
 * the client is closed with 1013 (try again later). */
const MAX_UPSTREAM_QUEUE = 4 * MAX_MESSAGE_BYTES;
/** Longest wait for the upstream's 101 when the route sets no timeout. */
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 15000;

/** Request headers that describe the client's hop of the WebSocket and are never forwarded
 * (the upstream handshake writes its own). */
const WS_HOP_HEADERS = new Set(['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-accept']);

/** Headers of the upstream's 101 that uWS writes itself (or that describe the upstream hop). */
const UWS_WRITES_ON_101 = new Set([
  'upgrade', 'connection', 'sec-websocket-accept', 'sec-websocket-protocol', 'sec-websocket-extensions',
  'date', 'content-length', 'transfer-encoding', 'keep-alive', 'uwebsockets',
]);

interface WsUserData {
  bridge: WsBridge;
}

/** Every proxied WebSocket that is open, across listeners, so a shutdown can close them. */
const live = new Set<WsBridge>();

/** Close every open proxied WebSocket: the client gets `code` (1001 "going away" by default),
 * the upstream the same. For Wisp.stop(): uWS keeps upgraded sockets open after the listen
 * socket is closed. Returns how many were open. */
export function closeWebSockets(code = 1001, reason = 'going away'): number {
  const n = live.size;
  for (const bridge of [...live]) bridge.shutdown(code, reason);
  return n;
}

/** Open proxied WebSockets (for metrics). */
export function openWebSocketCount(): number {
  return live.size;
}

/** uWS idleTimeout: whole seconds, 0 = off, otherwise 8..960 (uWS aborts the process
 * outside that range, so it is clamped here). */
export function wsIdleTimeoutSeconds(idleMs: number): number {
  if (idleMs <= 0) return 0;
  return Math.min(960, Math.max(8, Math.round(idleMs / 1000)));
}

/** Register the WebSocket route on `app` (or on an SNI domain's router). The listener's
 * state is read at each upgrade, so a reload applies to new upgrades; idleTimeout is fixed
 * when this is called (uWS takes it per route). */
export function attachWebSocket(app: TemplatedApp, listener: { readonly state: ListenerState }): void {
  app.ws<WsUserData>('/*', {
    compression: uWS.DISABLED,
    maxPayloadLength: MAX_MESSAGE_BYTES,
    maxBackpressure: MAX_CLIENT_BACKPRESSURE,
    closeOnBackpressureLimit: 0,
    idleTimeout: wsIdleTimeoutSeconds(listener.state.config.limits.idle_timeout_ms),
    // Pings keep a quiet but live client from hitting the idle timeout.
    sendPingsAutomatically: true,
    upgrade: (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
      new WsUpgrade(res, listener.state, context).start(req);
    },
    open: onOpen,
    message: onMessage,
    drain: onDrain,
    close: onClose,
  });
}

function onOpen(ws: WebSocket<WsUserData>): void {
  ws.getUserData().bridge.onClientOpen(ws);
}
function onMessage(ws: WebSocket<WsUserData>, message: ArrayBuffer, isBinary: boolean): void {
  ws.getUserData().bridge.onClientMessage(message, isBinary);
}
function onDrain(ws: WebSocket<WsUserData>): void {
  ws.getUserData().bridge.onClientDrain();
}
function onClose(ws: WebSocket<WsUserData>, code: number, message: ArrayBuffer): void {
  ws.getUserData().bridge.onClientClose(code, message);
}

/** One upgrade request, from the client's head to the upstream's answer; then the bridge's
 * bookkeeping (endpoint, cluster slot, filter contexts) until both sides closed. */
class WsUpgrade implements FilterStream {
  // FilterStream / access log
  readonly streamId = nextStreamId++;
  readonly method = 'GET';
  readonly scheme: 'http' | 'https';
  authority = '';
  path = '';
  clientAddress = '';
  readonly clientPort = 0;
  readonly listenerName: string;
  routeName = '';
  clusterName = '';
  requestId = '';
  requestHeaders: string[] = [];
  responseStatus = 0;
  responseHeaders: string[] = [];

  private readonly startedAt = performance.now();
  private route: CompiledRoute | null = null;
  private cluster: Cluster | null = null;
  private chain: FilterChain | null = null;
  private endpoint: Endpoint | null = null;
  private key = '';
  private protocols = '';
  private acquired = false;
  private counted = false; // in inflight.count while the handshake runs
  private aborted = false;
  private answered = false;
  private tries = 0;
  private released = false;
  private res101Started = false;

  constructor(
    private readonly res: HttpResponse,
    private readonly state: ListenerState,
    private readonly context: us_socket_context_t,
  ) {
    this.scheme = state.scheme;
    this.listenerName = state.config.name;
  }

  /** Everything is read from `req` here: it is invalid once this returns. */
  start(req: HttpRequest): void {
    const st = this.state;
    const headers = readHeaders(req);
    const url = req.getUrl();
    const query = req.getQuery() ?? '';
    this.key = req.getHeader('sec-websocket-key');
    this.protocols = req.getHeader('sec-websocket-protocol');
    this.requestId = requestIdFrom(headers);
    this.path = url;
    // The same head checks as every HTTP request (duplicate Host, bad bytes, sizes...).
    const check = st.check;
    if (!checkRequest('GET', url, query, headers, st.config.limits, check)) {
      this.answered = true;
      return rejectRequest(this.res, check.status, check.reason, this.requestId);
    }
    // Bytes after the head would be read as WebSocket frames once upgraded.
    if (check.contentLength > 0 || check.chunked) {
      this.answered = true;
      return rejectRequest(this.res, 400, 'WebSocket upgrade with a request body', this.requestId);
    }
    this.clientAddress = clientAddressOf(this.res, st.config.proxy_protocol);
    const host = check.host;
    this.authority = host;

    const route = st.router.match('GET', hostWithoutPort(host), url, query, headers);
    if (route === null) return this.answerPlain(404, 'no route matched');
    this.route = route;
    this.routeName = route.name;
    const rc = route.config;
    if (rc.direct_response !== undefined) {
      const d = rc.direct_response;
      return this.answer(d.status, ['content-type', d.content_type], Buffer.from(d.body));
    }
    if (rc.redirect !== undefined) return this.answerRedirect(route, host, url, query);

    this.clusterName = rc.cluster ?? '';
    this.cluster = rc.cluster === undefined ? null : st.clusters.get(rc.cluster) ?? null;
    if (this.cluster === null) return this.answerPlain(503, `cluster "${this.clusterName}" is not available`);
    if (!this.cluster.acquire()) return this.answerPlain(503, 'upstream overflow: cluster max_requests reached');
    this.acquired = true;

    const fwd = forwardRequestHeaders(headers, headerValue(headers, 'connection') ?? '', {
      host: rc.rewrite?.host ?? host,
      originalHost: host,
      clientAddress: this.clientAddress,
      proto: st.scheme,
      requestId: this.requestId,
      via: st.config.via,
    });
    // The upstream handshake writes its own key/version, and extensions are not proxied.
    for (let i = fwd.length - 2; i >= 0; i -= 2) if (WS_HOP_HEADERS.has(fwd[i]!)) fwd.splice(i, 2);
    this.requestHeaders = fwd;
    this.path = query === '' ? route.rewritePath(url) : `${route.rewritePath(url)}?${query}`;

    this.res.onAborted(() => this.onClientAborted());
    inflight.count++;
    this.counted = true;
    this.chain = st.chainFor(route);
    if (this.chain !== null) {
      const h = this.requestHeaders;
      h.unshift(':method', 'GET', ':path', this.path, ':authority', h[1]!, ':scheme', this.scheme);
      this.chain.requestHeaders(this);
      return;
    }
    this.connect();
  }

  // ── filters (request_headers only: a WebSocket has no response-headers phase to filter) ──
  onFilterContinue(phase: FilterPhase): void {
    if (phase !== 'request_headers' || this.answered) return;
    if (this.aborted) return this.release();
    const h = this.requestHeaders;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (name.charCodeAt(0) !== 58 /* ':' */) continue;
      if (name === ':path') this.path = h[i + 1]!;
      else if (name === ':authority') setHeader(h, 'host', h[i + 1]!);
      h.splice(i, 2);
      i -= 2;
    }
    this.connect();
  }

  onFilterLocalResponse(status: number, headers: string[], body: Uint8Array): void {
    if (this.answered) return;
    this.answer(status, headers, body);
  }

  // ── upstream_peer + handshake ──
  private connect(): void {
    const cluster = this.cluster!;
    const hashKey = cluster.config.lb === 'ring_hash' ? this.hashKey(cluster) : '';
    const ep = cluster.pick(hashKey, this.endpoint);
    if (ep === null) return this.answerPlain(503, 'no healthy upstream');
    if (this.endpoint !== null) this.endpoint.active--;
    this.endpoint = ep;
    ep.active++;
    this.tries++;
    const timeout = this.route!.config.timeout_ms;
    connectWebSocket({
      host: ep.address,
      port: ep.port,
      path: this.path,
      headers: this.requestHeaders,
      protocols: this.protocols,
      connectTimeoutMs: cluster.config.connect_timeout_ms,
      handshakeTimeoutMs: timeout > 0 ? timeout : DEFAULT_HANDSHAKE_TIMEOUT_MS,
      maxMessageBytes: MAX_MESSAGE_BYTES,
    }).then(
      (r) => this.onUpstreamAnswer(r),
      (err: unknown) => this.onUpstreamError(err),
    );
  }

  private hashKey(cluster: Cluster): string {
    const name = cluster.config.hash_header;
    if (name !== undefined) {
      const v = headerValue(this.requestHeaders, name);
      if (v !== undefined) return v;
    }
    return this.clientAddress;
  }

  private onUpstreamAnswer(r: WsUpgraded | WsRefused): void {
    this.endpoint!.reportStatus(r.status);
    if (this.aborted) {
      if (r.upgraded) r.connection.destroy();
      return this.release();
    }
    if (!r.upgraded) {
      // The upstream said no (403, 404, 426...): the client gets that answer as it was.
      const out: string[] = [];
      const h = r.headers;
      for (let i = 0; i < h.length; i += 2) {
        const name = h[i]!;
        if (isDroppedResponseHeader(name) || name === 'upgrade' || name === 'sec-websocket-accept' || name === 'sec-websocket-extensions') continue;
        out.push(name, h[i + 1]!);
      }
      return this.answer(r.status, out, r.body);
    }
    const conn = r.connection;
    const bridge = new WsBridge(this, conn);
    this.answered = true;
    this.responseStatus = 101;
    this.logHandshake(101);
    // Not inside res.cork: in uWS 20.30, cork() around an asynchronous upgrade reads the
    // reallocated socket as if it were still HTTP and can close the new WebSocket at once
    // (uNetworking/uWebSockets#1928, fixed upstream by #1929). The price is one uWS warning
    // on stderr per upgrade (and per extra header below).
    const h = r.headers;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (UWS_WRITES_ON_101.has(name)) continue;
      // Headers written before upgrade() go out in its 101 (Set-Cookie on a login socket, say).
      if (!this.res101Started) {
        this.res101Started = true;
        this.res.writeStatus('101 Switching Protocols');
      }
      this.res.writeHeader(name, h[i + 1]!);
    }
    this.res.upgrade<WsUserData>({ bridge }, this.key, conn.protocol, '', this.context);
    this.handshakeOver();
    // uWS opens the socket inside upgrade(); if it did not (client gone in between), the
    // upstream must not wait for an open that will never come.
    if (!bridge.opened) return bridge.abandon();
    // Upstream frames flow only now, outside upgrade(), so nothing is sent from inside open.
    bridge.startUpstream();
  }

  private onUpstreamError(err: unknown): void {
    const e = err instanceof WsConnectError ? err : new WsConnectError('reset', String(err));
    this.endpoint!.reportFailure(e.kind === 'timeout' ? 'reset' : e.kind);
    if (this.aborted) return this.release();
    const retry = this.route!.config.retry;
    if (e.kind === 'connect' && retry.on.includes('connect-failure') && this.tries <= retry.attempts) {
      this.state.statsFor(this.route!).retries++;
      return this.connect();
    }
    if (e.kind === 'connect-timeout' || e.kind === 'timeout') return this.answerPlain(504, `upstream WebSocket handshake timed out: ${e.message}`);
    this.answerPlain(502, `upstream WebSocket handshake failed: ${e.message}`);
  }

  private onClientAborted(): void {
    this.aborted = true;
    // The pending handshake (or filter call) finishes and sees the flag; it releases then.
  }

  // ── answers that are not an upgrade ──
  private answerPlain(status: number, reason: string): void {
    this.answer(status, ['content-type', 'text/plain; charset=utf-8'], Buffer.from(`${status} ${reason}\n`));
  }

  private answerRedirect(route: CompiledRoute, host: string, url: string, query: string): void {
    const r = route.config.redirect!;
    const path = r.path ?? (r.prefix !== undefined ? r.prefix + url.slice((route.config.match.prefix ?? '').length) : url);
    const location = `${r.scheme ?? this.scheme}://${r.host ?? host}${path}${query === '' ? '' : '?' + query}`;
    this.answer(r.status, ['location', location], Buffer.alloc(0));
  }

  private pendingAnswer: { status: number; headers: readonly string[]; body: Uint8Array } | null = null;

  /** An HTTP answer instead of an upgrade. Connection closes: the client asked to switch
   * protocols and its connection is in no state to be reused. */
  private answer(status: number, headers: readonly string[], body: Uint8Array): void {
    if (this.answered) return;
    this.answered = true;
    this.responseStatus = status;
    if (!this.aborted) {
      this.pendingAnswer = { status, headers, body };
      corkingUpgrade = this;
      this.res.cork(corkedAnswer);
      corkingUpgrade = null;
    }
    this.logHandshake(status);
    this.handshakeOver();
    this.release();
  }

  answerCorked(): void {
    const a = this.pendingAnswer!;
    this.pendingAnswer = null;
    const res = this.res;
    res.writeStatus(statusLine(a.status));
    const h = a.headers;
    for (let i = 0; i < h.length; i += 2) res.writeHeader(h[i]!, h[i + 1]!);
    res.writeHeader('x-request-id', this.requestId);
    res.end(a.body, true);
  }

  private logHandshake(status: number): void {
    const seconds = (performance.now() - this.startedAt) / 1000;
    if (this.route !== null) this.state.statsFor(this.route).record(this.aborted ? 0 : status, seconds);
    if (this.state.accessLog !== null) this.state.accessLog.write(this, status, seconds, this.endpoint?.key ?? '', this.aborted);
  }

  private handshakeOver(): void {
    if (this.counted) {
      this.counted = false;
      inflight.count--;
    }
  }

  /** The exchange is over (refused, failed, or both halves of the WebSocket closed). */
  release(): void {
    this.handshakeOver();
    if (this.released) return;
    this.released = true;
    if (this.endpoint !== null) this.endpoint.active--;
    if (this.acquired) this.cluster!.release();
    if (this.chain !== null) this.chain.done(this);
  }
}

let nextStreamId = 1_000_000_000; // apart from request-path's ids: both feed the same chain

// res.cork runs its callback synchronously; module-level slots spare a closure per upgrade.
let corkingUpgrade: WsUpgrade | null = null;
function corkedAnswer(): void {
  corkingUpgrade!.answerCorked();
}

/** The two open WebSockets of one proxied connection, relaying between them. */
class WsBridge implements WsHandler {
  ws: WebSocket<WsUserData> | null = null;
  opened = false;
  private clientClosed = false;
  private upstreamClosed = false;
  private upstreamPaused = false;
  private upstreamStarted = false;

  constructor(
    private readonly exchange: WsUpgrade,
    readonly upstream: WsConnection,
  ) {}

  // ── client side (uWS callbacks) ──
  onClientOpen(ws: WebSocket<WsUserData>): void {
    this.ws = ws;
    this.opened = true;
    live.add(this);
  }

  /** Close both sides with the same code (server shutdown). */
  shutdown(code: number, reason: string): void {
    const ws = this.ws;
    if (!this.upstreamClosed) this.upstream.close(code, reason);
    if (ws !== null) ws.end(code, reason);
  }

  /** Let upstream frames flow (called once upgrade() has returned). */
  startUpstream(): void {
    this.upstreamStarted = true;
    if (!this.upstreamClosed) this.upstream.start(this);
  }

  onClientMessage(message: ArrayBuffer, isBinary: boolean): void {
    const up = this.upstream;
    if (this.upstreamClosed) return;
    // encodeFrame copies (and masks) the bytes, so uWS may reuse `message` after we return.
    up.send(new Uint8Array(message), isBinary);
    if (up.bufferedAmount > MAX_UPSTREAM_QUEUE) {
      // No way to pause the client in this uWS build: cut it off rather than grow without bound.
      this.upstreamClosed = true;
      up.destroy();
      this.ws!.end(1013, 'upstream is not reading');
    }
  }

  onClientDrain(): void {
    if (this.upstreamPaused && this.ws !== null && this.ws.getBufferedAmount() < RESUME_UPSTREAM_BELOW) {
      this.upstreamPaused = false;
      this.upstream.resume();
    }
  }

  onClientClose(code: number, message: ArrayBuffer): void {
    this.ws = null;
    this.clientClosed = true;
    if (!this.upstreamStarted) {
      // Closed inside upgrade(): the upstream never started, so no close event will come from it.
      this.upstreamClosed = true;
      this.upstream.destroy();
    } else if (!this.upstreamClosed) {
      if (code === 1005) this.upstream.close(1005, '');
      else if (isValidCloseCode(code)) this.upstream.close(code, Buffer.from(message).toString('utf8'));
      else this.upstream.destroy(); // 1006 (abnormal) and friends cannot be sent in a frame
    }
    this.maybeDone();
  }

  // ── upstream side (WsHandler) ──
  onMessage(data: Buffer, isBinary: boolean): void {
    const ws = this.ws;
    if (ws === null) return;
    const sent = ws.send(data, isBinary);
    if (sent === 2) {
      // Dropped by uWS (over maxBackpressure): the stream is no longer whole, so end it.
      this.upstreamClosed = true;
      this.upstream.destroy();
      ws.end(1011, 'client too slow');
      return;
    }
    if (sent === 0 || ws.getBufferedAmount() > PAUSE_UPSTREAM_AT) {
      if (!this.upstreamPaused) {
        this.upstreamPaused = true;
        this.upstream.pause();
      }
    }
  }

  onClose(code: number, reason: string, _clean: boolean): void {
    this.upstreamClosed = true;
    const ws = this.ws;
    if (ws !== null && !this.clientClosed) {
      if (code === 1006) ws.close(); // abnormal: the client sees an abnormal closure too
      else if (code === 1005) ws.end();
      else ws.end(code, reason);
    }
    this.maybeDone();
  }

  /** Every message of one upstream chunk goes out in one corked write. */
  batch(deliver: () => void): void {
    const ws = this.ws;
    if (ws !== null) ws.cork(deliver);
    else deliver();
  }

  onDrain(): void {
    // Nothing to resume: uWS cannot pause reading a client WebSocket (see MAX_UPSTREAM_QUEUE).
  }

  /** The client never opened (it went away during the upgrade). */
  abandon(): void {
    this.clientClosed = true;
    this.upstreamClosed = true;
    this.upstream.destroy();
    this.maybeDone();
  }

  private maybeDone(): void {
    if (this.clientClosed) live.delete(this);
    if (this.clientClosed && this.upstreamClosed) this.exchange.release();
  }
}


function setHeader(h: string[], name: string, value: string): void {
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === name) {
      h[i + 1] = value;
      return;
    }
  }
  h.push(name, value);
}
