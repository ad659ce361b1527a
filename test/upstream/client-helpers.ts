// Helpers for the upstream client tests: a recording handler and a raw TCP upstream that
// answers with whatever bytes a test scripts (for upstreams that misbehave).
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { UpstreamError, UpstreamHandler, UpstreamRequestHead } from '../../proxy/upstream/types.js';
import type { EndpointPool } from '../../proxy/upstream/pool.js';
import type { EndpointPoolOptions } from '../../proxy/upstream/types.js';

export const POOL_OPTS: EndpointPoolOptions = {
  connectTimeoutMs: 2000,
  idleTimeoutMs: 30_000,
  maxIdle: 16,
  maxConnections: 16,
  maxPending: 64,
};

/** Records every callback; `done` settles on end or error. */
export class RecordingHandler implements UpstreamHandler {
  status = 0;
  reason = '';
  headers: string[] = [];
  contentLength = -2;
  chunks: Buffer[] = [];
  bytes = 0;
  ended = false;
  error: UpstreamError | null = null;
  drains = 0;
  /** Callbacks that arrived after end/error (must stay 0). */
  lateCalls = 0;
  /** Keep copies of body chunks (off for big bodies). */
  keepChunks = true;
  readonly done: Promise<void>;
  private settle!: () => void;

  constructor() {
    this.done = new Promise((r) => (this.settle = r));
  }

  get finished(): boolean {
    return this.ended || this.error !== null;
  }

  onResponseHeaders(status: number, reason: string, headers: string[], contentLength: number): void {
    if (this.finished) this.lateCalls++;
    this.status = status;
    this.reason = reason;
    this.headers = headers;
    this.contentLength = contentLength;
  }

  onResponseData(chunk: Buffer): boolean {
    if (this.finished) this.lateCalls++;
    this.bytes += chunk.length;
    if (this.keepChunks) this.chunks.push(Buffer.from(chunk));
    return true;
  }

  onResponseEnd(): void {
    if (this.finished) this.lateCalls++;
    this.ended = true;
    this.settle();
  }

  onUpstreamError(err: UpstreamError): void {
    if (this.finished) this.lateCalls++;
    this.error = err;
    this.settle();
  }

  onRequestDrain(): void {
    this.drains++;
  }

  body(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }

  header(name: string): string | undefined {
    for (let i = 0; i < this.headers.length; i += 2) if (this.headers[i] === name) return this.headers[i + 1];
    return undefined;
  }
}

export function head(method: string, path: string, headers: string[] = [], bodyLength = 0): UpstreamRequestHead {
  return { method, path, headers: ['host', 'upstream.test', ...headers], bodyLength };
}

/** Send a body-less request and wait for the outcome. */
export async function send(pool: EndpointPool, method: string, path: string, headers: string[] = []): Promise<RecordingHandler> {
  const h = new RecordingHandler();
  pool.request(head(method, path, headers), h);
  await h.done;
  return h;
}

export interface RawUpstream {
  port: number;
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Sockets currently open on the server side. */
  readonly open: number;
  close(): Promise<void>;
}

/** A TCP server that calls `onRequest` with each complete request head (bodies are not
 * framed: tests that use this send body-less requests or read the body themselves). */
export async function startRawUpstream(onRequest: (sock: net.Socket, request: string, connectionNo: number) => void): Promise<RawUpstream> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((sock) => {
    const no = ++connections;
    sockets.add(sock);
    let buf = '';
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let end = buf.indexOf('\r\n\r\n');
      while (end !== -1) {
        const req = buf.slice(0, end + 4);
        buf = buf.slice(end + 4);
        onRequest(sock, req, no);
        end = buf.indexOf('\r\n\r\n');
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    get connections() {
      return connections;
    },
    get open() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
