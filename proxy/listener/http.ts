// An HTTP/1.1 (or HTTPS) listener on uWebSockets.js. It owns the uWS app and listen
// socket; the per-request work is in http/request-path.ts. The active ListenerState is
// read once at the start of each request, so a reload swaps it without touching requests
// already running.
import uWS from 'uWebSockets.js';
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { ListenerConfig } from '../config/types.js';
import { checkRequest, rejectRequest } from '../http/request-validation.js';
import { ProxyRequest } from '../http/request-path.js';
import { forwardRequestHeaders } from '../http/headers.js';
import { statusLine } from '../http/status.js';
import { headerValue, hostWithoutPort, type CompiledRoute } from '../router/match.js';
import { inflight, type ListenerState } from './state.js';
import { clientAddressOf, readHeaders, requestIdFrom } from './client.js';
import { attachWebSocket } from './websocket.js';
import { envoyAddress } from '../wasm/abi.js';
import { literalIp } from '../upstream/endpoint.js';

const METHODS: Record<string, string> = {
  get: 'GET', post: 'POST', put: 'PUT', delete: 'DELETE', head: 'HEAD', options: 'OPTIONS', patch: 'PATCH', trace: 'TRACE', connect: 'CONNECT',
};
function upperMethod(m: string): string {
  return METHODS[m] ?? m.toUpperCase();
}

export class HttpListener {
  private app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;
  port = 0;
  private current: ListenerState;

  constructor(state: ListenerState) {
    this.current = state;
    const cfg = state.config;
    this.app = cfg.tls ? makeTlsApp(cfg) : uWS.App();
    const handler = (res: HttpResponse, req: HttpRequest) => this.handle(res, req);
    this.app.any('/*', handler);
    attachWebSocket(this.app, this);
    for (const sni of cfg.tls?.sni ?? []) {
      // uWS keeps a router per server name: the handlers must be attached to each.
      this.app
        .addServerName(sni.hostname, { cert_file_name: sni.cert, key_file_name: sni.key, passphrase: sni.passphrase })
        .domain(sni.hostname)
        .any('/*', handler);
      attachWebSocket(this.app, this);
    }
  }

  get config(): ListenerConfig {
    return this.current.config;
  }

  get state(): ListenerState {
    return this.current;
  }

  /** A reload's state: requests started from now on use it. */
  set state(next: ListenerState) {
    next.localAddress = this.current.localAddress;
    this.current = next;
  }

  listen(): Promise<number> {
    const { host, port, name } = this.state.config;
    return new Promise((resolve, reject) => {
      this.app.listen(host, port, (ls) => {
        if (!ls) return reject(new Error(`listener "${name}": cannot listen on ${host}:${port} (address in use or not available)`));
        this.listenSocket = ls;
        this.port = uWS.us_socket_local_port(ls);
        this.current.localAddress = envoyAddress(literalIp(host) ?? host, this.port);
        resolve(this.port);
      });
    });
  }

  /** Stop accepting; established connections finish what they are doing. */
  close(): void {
    if (this.listenSocket !== null) {
      uWS.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
  }

  private handle(res: HttpResponse, req: HttpRequest): void {
    const st = this.state;
    const headers = readHeaders(req);
    const method = upperMethod(req.getMethod());
    const url = req.getUrl();
    const query = req.getQuery() ?? '';
    const check = st.check;
    if (!checkRequest(method, url, query, headers, st.config.limits, check)) {
      return rejectRequest(res, check.status, check.reason, requestIdFrom(headers));
    }
    const requestId = requestIdFrom(headers);
    const host = hostWithoutPort(check.host);
    const route = st.router.match(method, host, url, query, headers);
    const unreadBody = check.contentLength > 0 || check.chunked;
    if (route === null) return plainResponse(res, 404, 'no route matched', requestId, check.connectionClose || unreadBody);
    const rc = route.config;
    if (rc.direct_response !== undefined) {
      const d = rc.direct_response;
      return directResponse(res, d.status, d.content_type, d.body, requestId, check.connectionClose || unreadBody);
    }
    if (rc.redirect !== undefined) return redirect(res, route, st.scheme, check.host, url, query, requestId);

    const clientAddress = clientAddressOf(res, st.config.proxy_protocol);
    const upstreamHost = rc.rewrite?.host ?? check.host;
    const fwd = forwardRequestHeaders(headers, headerValue(headers, 'connection') ?? '', {
      host: upstreamHost,
      originalHost: check.host,
      clientAddress,
      proto: st.scheme,
      requestId,
      via: st.config.via,
    });
    const path = query === '' ? route.rewritePath(url) : `${route.rewritePath(url)}?${query}`;
    inflight.count++;
    const bodyLength = check.chunked ? -1 : check.contentLength > 0 ? check.contentLength : 0;
    const pr = new ProxyRequest(res, st, route, method, clientAddress, requestId, fwd, check.host, bodyLength);
    pr.start(path);
  }
}

function makeTlsApp(cfg: ListenerConfig): TemplatedApp {
  const tls = cfg.tls!;
  return uWS.SSLApp({ cert_file_name: tls.cert, key_file_name: tls.key, passphrase: tls.passphrase });
}

/** Wisp's own short answers (errors, 404). Closing is for requests whose body we did not read. */
function plainResponse(res: HttpResponse, status: number, reason: string, requestId: string, close: boolean): void {
  res
    .writeStatus(statusLine(status))
    .writeHeader('content-type', 'text/plain; charset=utf-8')
    .writeHeader('x-request-id', requestId)
    .end(`${status} ${reason}\n`, close);
}

function directResponse(res: HttpResponse, status: number, contentType: string, body: string, requestId: string, close: boolean): void {
  res.writeStatus(statusLine(status)).writeHeader('content-type', contentType).writeHeader('x-request-id', requestId).end(body, close);
}

function redirect(res: HttpResponse, route: CompiledRoute, scheme: string, host: string, url: string, query: string, requestId: string): void {
  const r = route.config.redirect!;
  const path = r.path ?? (r.prefix !== undefined ? r.prefix + url.slice((route.config.match.prefix ?? '').length) : url);
  const location = `${r.scheme ?? scheme}://${r.host ?? host}${path}${query === '' ? '' : '?' + query}`;
  res.writeStatus(statusLine(r.status)).writeHeader('location', location).writeHeader('x-request-id', requestId).end();
}
