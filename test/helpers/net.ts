// Shared test utilities: real sockets only, conditions instead of sleeps.
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** Poll `check` until it returns a truthy value, or fail after `timeoutMs`. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export interface TestUpstream {
  port: number;
  /** Every request that reached the upstream, complete with its body. */
  requests: RecordedRequest[];
  server: http.Server;
  close(): Promise<void>;
}

/** A real HTTP upstream on 127.0.0.1:0 that records what it receives. The default handler
 * answers 200 with a small JSON echo of method and url. */
export async function startUpstream(
  handler?: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void,
): Promise<TestUpstream> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body });
      if (handler) return handler(req, res, body);
      const out = JSON.stringify({ method: req.method, url: req.url, bytes: body.length });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    requests,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface RawResult {
  /** Everything the server sent, as latin1 text. */
  text: string;
  /** Status code of the first response, or 0 when none came. */
  status: number;
  /** True when the server closed the connection (rather than us timing out). */
  closedByServer: boolean;
}

/** Send raw bytes on a fresh TCP connection and collect the answer until the server closes
 * or `idleMs` pass without data after the first response (then we close). */
export function rawRequest(port: number, data: string | Buffer, opts: { timeoutMs?: number; idleMs?: number; host?: string } = {}): Promise<RawResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const idleMs = opts.idleMs ?? 300;
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, opts.host ?? '127.0.0.1');
    let text = '';
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(overall);
      if (idle) clearTimeout(idle);
      sock.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : 0, closedByServer });
    };
    const overall = setTimeout(() => finish(false), timeoutMs);
    sock.on('data', (d) => {
      text += d.toString('latin1');
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => finish(false), idleMs);
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', (err) => {
      if (!done && text === '') reject(err);
      else finish(true);
    });
    sock.write(data);
  });
}

/** Resolve with a port that was free a moment ago (for tests that must know it in advance). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A small HTTP client over node:http with keep-alive off, returning status, headers, body. */
export function httpGet(port: number, path: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer; host?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: init.host ?? '127.0.0.1', port, path, method: init.method ?? 'GET', headers: init.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

/** The value of the first `metric{...}` line in a /metrics page whose labels include all of
 * `labels`, or undefined when there is none. */
export function metricIn(page: string, metric: string, labels: Record<string, string>): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of page.split('\n')) {
    if (line.startsWith(`${metric}{`) && wanted.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** A filter-defined metric's value in a /metrics page (`wisp_filter_metric{filter,name}`),
 * or undefined when the filter has not defined it. */
export function filterMetricIn(page: string, filter: string, name: string): number | undefined {
  return metricIn(page, 'wisp_filter_metric', { filter, name });
}

/** filterMetricIn on the /metrics page of the admin API at adminPort. */
export async function filterMetric(adminPort: number, filter: string, name: string): Promise<number | undefined> {
  return filterMetricIn((await httpGet(adminPort, '/metrics')).body, filter, name);
}

/** Tracks the server's connections; the returned function destroys those still open, then
 * closes the server (server.close() alone waits for keep-alive clients and idle upstream
 * connections). Call it before the server listens. */
export function closerFor(server: net.Server): () => Promise<void> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}

/** Listen on 127.0.0.1, port 0; resolves to the port. */
export async function listenLocal(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as AddressInfo).port;
}
