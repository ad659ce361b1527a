// The admin API on node:http (off the hot path): health, metrics, config, clusters,
// filters, reload. Binds to 127.0.0.1 unless configured; mutating endpoints require the
// bearer token when one is configured. Bodies are bounded; nothing secret is echoed.
import http from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { AdminConfig } from '../config/types.js';

export interface AdminBackend {
  ready(): boolean;
  metrics(): Promise<string>;
  config(): unknown;
  clusters(): unknown;
  filters(): unknown;
  reloadConfig(): Promise<{ ok: boolean; error?: string }>;
  putFilter(name: string, wasm: Buffer): Promise<unknown>;
  reloadFilter(name: string): Promise<unknown>;
}

/** Largest admin request body (a filter upload). */
const MAX_BODY = 32 * 1024 * 1024;

/** An admin answer with a status of its own; backends throw it for "no such filter" (404). */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** A failed filter load or reload is the caller's input being refused, not an admin fault. */
function refused(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  return new HttpError(400, err instanceof Error ? err.message : String(err));
}

/** How long an over-limit body is read and discarded after the 413, so the client can read
 * the answer before the socket closes (closing on unread data would reset it away). */
const DISCARD_MS = 2000;

export class AdminServer {
  private server: http.Server | null = null;
  private readonly tokenHash: Buffer | null;

  constructor(private readonly cfg: AdminConfig, private readonly backend: AdminBackend) {
    this.tokenHash = cfg.token ? sha256(cfg.token) : null;
  }

  async listen(): Promise<number> {
    const server = http.createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
      this.route(req, res).catch((err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500;
        send(res, status, { error: err instanceof Error ? err.message : String(err) });
      });
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 60_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new Error(`admin: cannot listen on ${this.cfg.host}:${this.cfg.port} (${e.code ?? e.message})`)),
      );
      server.listen(this.cfg.port, this.cfg.host, () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s === null) return Promise.resolve();
    return new Promise((resolve) => {
      s.closeAllConnections();
      s.close(() => resolve());
    });
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://admin').pathname;
    } catch {
      throw new HttpError(400, 'malformed request target');
    }
    const method = req.method ?? 'GET';
    const b = this.backend;
    if (method === 'GET') {
      if (path === '/live') return send(res, 200, { live: true });
      if (path === '/ready') return b.ready() ? send(res, 200, { ready: true }) : send(res, 503, { ready: false });
      if (path === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(await b.metrics());
        return;
      }
      if (path === '/config') return send(res, 200, b.config());
      if (path === '/clusters') return send(res, 200, b.clusters());
      if (path === '/filters') return send(res, 200, b.filters());
      if (path === '/') return send(res, 200, { endpoints: ['/live', '/ready', '/metrics', '/config', '/clusters', '/filters', 'POST /config/reload', 'PUT /filters/NAME', 'POST /filters/NAME/reload'] });
      throw new HttpError(404, `no admin endpoint ${path}`);
    }
    this.authorize(req);
    if (method === 'POST' && path === '/config/reload') {
      await readBody(req, 0);
      const r = await b.reloadConfig();
      return send(res, r.ok ? 200 : 400, r);
    }
    const m = /^\/filters\/([A-Za-z0-9_.-]+)(\/reload)?$/.exec(path);
    if (m) {
      const name = m[1]!;
      if (method === 'PUT' && !m[2]) {
        const body = await readBody(req, MAX_BODY);
        if (body.length === 0) throw new HttpError(400, 'PUT /filters/NAME needs the .wasm bytes as the request body');
        return send(res, 200, await b.putFilter(name, body).catch((e: unknown) => Promise.reject(refused(e))));
      }
      if (method === 'POST' && m[2]) {
        await readBody(req, 0);
        return send(res, 200, await b.reloadFilter(name).catch((e: unknown) => Promise.reject(refused(e))));
      }
    }
    throw new HttpError(405, `${method} ${path} is not an admin operation`);
  }

  private authorize(req: http.IncomingMessage): void {
    if (this.tokenHash === null) return;
    const h = req.headers.authorization ?? '';
    const given = h.startsWith('Bearer ') ? h.slice(7) : '';
    // Compare digests so the comparison is constant-time whatever the lengths.
    if (!timingSafeEqual(sha256(given), this.tokenHash)) throw new HttpError(401, 'admin token required (Authorization: Bearer ...)');
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => new HttpError(413, `admin request body too large (limit ${limit} bytes)`);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      discard(req);
      return reject(tooLarge());
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        discard(req);
        reject(tooLarge());
      } else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => {
      if (size <= limit) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

/** Read and drop the rest of a refused body, for at most DISCARD_MS; then cut the socket. */
function discard(req: http.IncomingMessage): void {
  req.on('data', () => {});
  req.resume();
  const timer = setTimeout(() => {
    if (!req.complete) req.socket.destroy();
  }, DISCARD_MS);
  timer.unref();
  req.once('end', () => clearTimeout(timer));
}
