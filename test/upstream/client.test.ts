// The upstream HTTP/1.1 client over real sockets: node:http upstreams for the well-behaved
// cases, raw net servers for the ones that misbehave.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { EndpointPool } from '../../proxy/upstream/pool.js';
import { UpstreamError } from '../../proxy/upstream/types.js';
import type { EndpointPoolOptions, UpstreamHandler, UpstreamRequestHead } from '../../proxy/upstream/types.js';
import { startUpstream, waitFor, freePort } from '../helpers/net.js';

const POOL_OPTS: EndpointPoolOptions = {
  connectTimeoutMs: 2000,
  idleTimeoutMs: 30_000,
  maxIdle: 16,
  maxConnections: 16,
  maxPending: 64,
};

/** Records every callback; `done` settles on end or error. */
class RecordingHandler implements UpstreamHandler {
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

function head(method: string, path: string, headers: string[] = [], bodyLength = 0): UpstreamRequestHead {
  return { method, path, headers: ['host', 'upstream.test', ...headers], bodyLength };
}

/** Send a body-less request and wait for the outcome. */
async function send(pool: EndpointPool, method: string, path: string, headers: string[] = []): Promise<RecordingHandler> {
  const h = new RecordingHandler();
  pool.request(head(method, path, headers), h);
  await h.done;
  return h;
}

interface RawUpstream {
  port: number;
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Sockets currently open on the server side. */
  readonly open: number;
  close(): Promise<void>;
}

/** A TCP server that calls `onRequest` with each complete request head (bodies are not
 * framed: tests that use this send body-less requests or read the body themselves). */
async function startRawUpstream(onRequest: (sock: net.Socket, request: string, connectionNo: number) => void): Promise<RawUpstream> {
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

test('GET with a content-length response', async () => {
  const up = await startUpstream();
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  try {
    const h = await send(pool, 'GET', '/hello?x=1', ['x-trace', 'abc']);
    assert.equal(h.error, null);
    assert.equal(h.status, 200);
    assert.equal(h.reason, 'OK');
    assert.deepEqual(JSON.parse(h.body()), { method: 'GET', url: '/hello?x=1', bytes: 0 });
    assert.equal(h.contentLength, h.bytes);
    assert.equal(h.header('content-type'), 'application/json');
    assert.equal(h.header('content-length'), undefined, 'content-length travels as the contentLength argument');
    assert.equal(h.header('connection'), undefined);
    assert.equal(h.header('keep-alive'), undefined);
    assert.equal(up.requests[0]!.headers['x-trace'], 'abc');
    assert.equal(up.requests[0]!.headers['host'], 'upstream.test');
    assert.equal(h.lateCalls, 0);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('POST with a content-length body, in several writes', async () => {
  const up = await startUpstream();
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  try {
    const h = new RecordingHandler();
    const ex = pool.request(head('POST', '/upload', ['content-type', 'text/plain', 'content-length', '999'], 11), h);
    ex.writeBody(Buffer.from('hello '));
    ex.writeBody(Buffer.from('world'));
    ex.endBody();
    await h.done;
    assert.equal(h.status, 200);
    const rec = up.requests[0]!;
    assert.equal(rec.body.toString(), 'hello world');
    assert.equal(rec.headers['content-length'], '11', 'the caller-supplied content-length is replaced');
    assert.equal(rec.rawHeaders.filter((n) => n.toLowerCase() === 'content-length').length, 1);
    // empty POST announces content-length: 0
    const e = await send(pool, 'POST', '/empty');
    assert.equal(e.status, 200);
    assert.equal(up.requests[1]!.headers['content-length'], '0');
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('chunked request body (bodyLength -1) streams with chunk framing', async () => {
  const up = await startUpstream();
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  try {
    const h = new RecordingHandler();
    const ex = pool.request(head('PUT', '/stream', [], -1), h);
    ex.writeBody(Buffer.from('part1-'));
    ex.writeBody(new Uint8Array(0)); // must not end the body
    await new Promise((r) => setImmediate(r));
    ex.writeBody(Buffer.from('part2-'));
    ex.writeBody(Buffer.alloc(70_000, 0x61));
    ex.endBody();
    await h.done;
    assert.equal(h.status, 200);
    const rec = up.requests[0]!;
    assert.equal(rec.headers['transfer-encoding'], 'chunked');
    assert.equal(rec.body.length, 12 + 70_000);
    assert.equal(rec.body.subarray(0, 12).toString(), 'part1-part2-');
    // body-less chunked request: only the terminator
    const h2 = new RecordingHandler();
    pool.request(head('POST', '/nothing', [], -1), h2).endBody();
    await h2.done;
    assert.equal(h2.status, 200);
    assert.equal(up.requests[1]!.body.length, 0);
    assert.equal(pool.stats().created, 1, 'both requests used one connection');
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('chunked response with extensions and trailers; the connection is reused after it', async () => {
  const raw = await startRawUpstream((sock) => {
    sock.write(
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nX-A: 1\r\n\r\n' +
        '5;name=value;flag\r\nhello\r\n' +
        '1 ; ext="q"\r\n \r\n' +
        'A\r\n0123456789\r\n' +
        '0\r\nX-Sum: 42\r\nX-Other: y\r\n\r\n',
    );
  });
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    for (let i = 0; i < 3; i++) {
      const h = await send(pool, 'GET', '/c');
      assert.equal(h.error, null);
      assert.equal(h.contentLength, -1);
      assert.equal(h.body(), 'hello 0123456789');
      assert.equal(h.header('x-a'), '1');
      assert.equal(h.header('transfer-encoding'), undefined);
      assert.equal(h.header('trailer'), undefined);
      assert.equal(h.header('x-sum'), undefined, 'trailers are not headers');
    }
    assert.equal(raw.connections, 1);
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('HEAD, 204 and 304 have no body; HEAD and 304 keep their content-length header', async () => {
  const up = await startUpstream((req, res) => {
    if (req.url === '/204') {
      res.writeHead(204);
      return res.end();
    }
    if (req.url === '/304') {
      res.writeHead(304, { etag: '"x"', 'content-length': '5' });
      return res.end();
    }
    res.writeHead(200, { 'content-length': '11', 'content-type': 'text/plain' });
    res.end(req.method === 'HEAD' ? undefined : 'hello world');
  });
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  try {
    const h = await send(pool, 'HEAD', '/');
    assert.equal(h.status, 200);
    assert.equal(h.contentLength, 0);
    assert.equal(h.bytes, 0);
    assert.equal(h.header('content-length'), '11');
    const n = await send(pool, 'GET', '/204');
    assert.equal(n.status, 204);
    assert.equal(n.contentLength, 0);
    assert.equal(n.ended, true);
    const m = await send(pool, 'GET', '/304');
    assert.equal(m.status, 304);
    assert.equal(m.contentLength, 0);
    assert.equal(m.header('etag'), '"x"');
    const g = await send(pool, 'GET', '/');
    assert.equal(g.body(), 'hello world');
    assert.equal(pool.stats().created, 1, 'no-body responses keep the connection usable');
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('1xx interim responses (100 Continue, 103) are skipped', async () => {
  const raw = await startRawUpstream((sock) => {
    sock.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n');
    setImmediate(() => sock.write('HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok'));
  });
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    const h = await send(pool, 'POST', '/x', ['expect', '100-continue']);
    assert.equal(h.status, 201);
    assert.equal(h.body(), 'ok');
    assert.equal(h.header('link'), undefined);
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('keep-alive: N sequential requests share one upstream connection', async () => {
  const up = await startUpstream();
  let connections = 0;
  up.server.on('connection', () => connections++);
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  try {
    for (let i = 0; i < 20; i++) {
      const h = await send(pool, 'GET', `/n/${i}`);
      assert.equal(h.status, 200);
    }
    assert.equal(connections, 1);
    assert.deepEqual(pool.stats(), { open: 1, idle: 1, busy: 0, pending: 0, created: 1 });
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('idle connections are closed after idleTimeoutMs', async () => {
  const up = await startUpstream();
  let serverOpen = 0;
  up.server.on('connection', (s: net.Socket) => {
    serverOpen++;
    s.on('close', () => serverOpen--);
  });
  const pool = new EndpointPool('127.0.0.1', up.port, { ...POOL_OPTS, idleTimeoutMs: 60 });
  try {
    await send(pool, 'GET', '/');
    assert.equal(pool.stats().idle, 1);
    await waitFor(() => pool.stats().open === 0, 3000, 'idle connection to close');
    await waitFor(() => serverOpen === 0, 3000, 'upstream to see the close');
    const h = await send(pool, 'GET', '/again');
    assert.equal(h.status, 200);
    assert.equal(pool.stats().created, 2);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('an idle connection closed by the upstream is dropped; the next request succeeds', async () => {
  const up = await startUpstream();
  up.server.keepAliveTimeout = 50;
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  try {
    await send(pool, 'GET', '/1');
    await waitFor(() => pool.stats().open === 0, 3000, 'pool to notice the upstream close');
    const h = await send(pool, 'GET', '/2');
    assert.equal(h.status, 200);
    assert.equal(pool.stats().created, 2);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('a reused connection that dies before answering is retried once on a fresh one', async () => {
  // The upstream answers the first request on each connection, then drops the connection
  // when a second request arrives on it: the race of reusing a socket the upstream closes.
  const served = new Map<number, number>();
  const raw = await startRawUpstream((sock, _req, no) => {
    const n = (served.get(no) ?? 0) + 1;
    served.set(no, n);
    if (n === 1) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    else sock.destroy();
  });
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    const a = await send(pool, 'GET', '/a');
    assert.equal(a.status, 200);
    const b = await send(pool, 'GET', '/b');
    assert.equal(b.error, null, 'the failure was hidden by the retry');
    assert.equal(b.status, 200);
    assert.equal(raw.connections, 2);
    // A request whose body already went out is not replayed.
    const c = new RecordingHandler();
    const ex = pool.request(head('POST', '/c', [], 4), c);
    ex.writeBody(Buffer.from('data'));
    ex.endBody();
    await c.done;
    assert.ok(c.error instanceof UpstreamError);
    assert.equal(c.error.kind, 'reset');
    assert.equal(c.error.responseStarted, false);
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('connection refused → connect error, not started', async () => {
  const port = await freePort();
  const pool = new EndpointPool('127.0.0.1', port, POOL_OPTS);
  try {
    const h = await send(pool, 'GET', '/');
    assert.ok(h.error instanceof UpstreamError);
    assert.equal(h.error.kind, 'connect');
    assert.equal(h.error.responseStarted, false);
    assert.match(h.error.message, /ECONNREFUSED/);
    assert.equal(pool.stats().open, 0);
  } finally {
    pool.destroy();
  }
});

test('response cut mid-body → reset with responseStarted', async () => {
  const raw = await startRawUpstream((sock, req) => {
    if (req.startsWith('GET /cl')) sock.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
    else sock.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
  });
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    for (const path of ['/cl', '/chunked']) {
      const h = await send(pool, 'GET', path);
      assert.equal(h.status, 200);
      assert.ok(h.bytes > 0);
      assert.equal(h.ended, false, `${path}: a truncated body must never look complete`);
      assert.ok(h.error instanceof UpstreamError);
      assert.equal(h.error.kind, 'reset');
      assert.equal(h.error.responseStarted, true);
    }
    // A request the upstream never answers at all: reset, not started.
    const silent = await startRawUpstream((sock) => sock.destroy());
    const p2 = new EndpointPool('127.0.0.1', silent.port, POOL_OPTS);
    try {
      const h = await send(p2, 'GET', '/');
      assert.equal(h.error?.kind, 'reset');
      assert.equal(h.error?.responseStarted, false);
    } finally {
      p2.destroy();
      await silent.close();
    }
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('a close-delimited body (no length, no chunking) ends at EOF', async () => {
  const raw = await startRawUpstream((sock) => sock.end('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end'));
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    const h = await send(pool, 'GET', '/');
    assert.equal(h.error, null);
    assert.equal(h.contentLength, -1);
    assert.equal(h.body(), 'until the end');
    await waitFor(() => pool.stats().open === 0, 3000, 'connection to close');
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('malformed responses → protocol error', async () => {
  const cases: Record<string, string> = {
    '/garbage': 'garbage garbage\r\n\r\n',
    '/version': 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n',
    '/status': 'HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n',
    '/header-char': 'HTTP/1.1 200 OK\r\nX-Bad\x01: 1\r\nContent-Length: 0\r\n\r\n',
    '/value-char': 'HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 0\r\n\r\n',
    '/space-colon': 'HTTP/1.1 200 OK\r\nX-Bad : 1\r\nContent-Length: 0\r\n\r\n',
    '/obs-fold': 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n',
    '/two-lengths': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
    '/bad-length': 'HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc',
    '/te-and-cl': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    '/chunk-size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
    '/chunk-crlf': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n',
    '/chunk-huge': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n',
    '/101': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n',
  };
  const raw = await startRawUpstream((sock, req) => {
    const path = req.slice(4, req.indexOf(' ', 4));
    sock.write(cases[path] ?? 'HTTP/1.1 500 x\r\n\r\n');
  });
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    for (const path of Object.keys(cases)) {
      const h = await send(pool, 'GET', path);
      assert.ok(h.error instanceof UpstreamError, `${path}: expected an error, got status ${h.status}`);
      assert.equal(h.error.kind, 'protocol', `${path}: ${h.error.message}`);
      assert.equal(h.error.responseStarted, true);
      assert.equal(h.ended, false);
    }
    assert.equal(pool.stats().open, 0, 'no connection survives a protocol error');
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('response head larger than maxResponseHeaderBytes → protocol', async () => {
  const big = 'x'.repeat(4000);
  const raw = await startRawUpstream((sock, req) => {
    if (req.startsWith('GET /split')) {
      // a head that arrives in pieces and stays under the limit is fine
      sock.write('HTTP/1.1 200 OK\r\nX-Long: ' + 'y'.repeat(500));
      setImmediate(() => sock.write('\r\nContent-Length: 2\r\n\r'));
      setImmediate(() => setImmediate(() => sock.write('\nok')));
      return;
    }
    sock.write('HTTP/1.1 200 OK\r\n');
    sock.write(`X-Big: ${big}\r\n`);
    sock.write('Content-Length: 0\r\n\r\n');
  });
  const pool = new EndpointPool('127.0.0.1', raw.port, { ...POOL_OPTS, maxResponseHeaderBytes: 1024 });
  try {
    const h = await send(pool, 'GET', '/big');
    assert.equal(h.error?.kind, 'protocol');
    assert.match(h.error!.message, /too large/);
    const s = await send(pool, 'GET', '/split');
    assert.equal(s.error, null);
    assert.equal(s.header('x-long')!.length, 500);
    assert.equal(s.body(), 'ok');
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('hop-by-hop response headers, including Connection-listed ones, are removed', async () => {
  const raw = await startRawUpstream((sock) =>
    sock.write(
      'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: secret\r\nProxy-Connection: x\r\n' +
        'Upgrade: h2c\r\nTE: trailers\r\nX-Keep: yes\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n',
    ),
  );
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    const h = await send(pool, 'GET', '/');
    assert.deepEqual(h.headers, ['x-keep', 'yes', 'set-cookie', 'a=1', 'set-cookie', 'b=2']);
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('Connection: close and HTTP/1.0 responses are not reused', async () => {
  const raw = await startRawUpstream((sock, req) => {
    if (req.startsWith('GET /close')) sock.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na');
    else if (req.startsWith('GET /10ka')) sock.write('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nb');
    else sock.write('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nc');
  });
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    assert.equal((await send(pool, 'GET', '/close')).body(), 'a');
    assert.equal(pool.stats().open, 0);
    assert.equal((await send(pool, 'GET', '/10')).body(), 'c');
    assert.equal(pool.stats().open, 0);
    assert.equal((await send(pool, 'GET', '/10ka')).body(), 'b');
    assert.equal(pool.stats().idle, 1, 'HTTP/1.0 with keep-alive is reused');
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('overflow: beyond maxConnections + maxPending the handler gets overflow synchronously', async () => {
  const held: http.ServerResponse[] = [];
  const up = await startUpstream((_req, res) => held.push(res));
  const pool = new EndpointPool('127.0.0.1', up.port, { ...POOL_OPTS, maxConnections: 1, maxPending: 1 });
  try {
    const a = new RecordingHandler();
    const b = new RecordingHandler();
    const c = new RecordingHandler();
    pool.request(head('GET', '/a'), a);
    pool.request(head('GET', '/b'), b);
    pool.request(head('GET', '/c'), c);
    assert.equal(c.error?.kind, 'overflow', 'reported before request() returned');
    assert.equal(c.error?.responseStarted, false);
    assert.deepEqual(pool.stats(), { open: 1, idle: 0, busy: 1, pending: 1, created: 1 });
    await waitFor(() => held.length === 1, 3000, 'first request upstream');
    held[0]!.end('A');
    await a.done;
    await waitFor(() => held.length === 2, 3000, 'queued request upstream');
    held[1]!.end('B');
    await b.done;
    assert.equal(a.body(), 'A');
    assert.equal(b.body(), 'B');
    assert.equal(pool.stats().created, 1, 'the queued request reused the connection');
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('a queued request that is aborted never reaches the upstream', async () => {
  const held: http.ServerResponse[] = [];
  const up = await startUpstream((_req, res) => held.push(res));
  const pool = new EndpointPool('127.0.0.1', up.port, { ...POOL_OPTS, maxConnections: 1, maxPending: 4 });
  try {
    const a = new RecordingHandler();
    const b = new RecordingHandler();
    const c = new RecordingHandler();
    pool.request(head('GET', '/a'), a);
    pool.request(head('GET', '/b'), b).abort();
    pool.request(head('GET', '/c'), c);
    assert.equal(pool.stats().pending, 1);
    await waitFor(() => held.length === 1, 3000, 'first request');
    held[0]!.end('A');
    await waitFor(() => held.length === 2, 3000, 'second request');
    held[1]!.end('C');
    await c.done;
    assert.deepEqual(up.requests.map((r) => r.url), ['/a', '/c']);
    assert.equal(b.finished, false, 'an aborted exchange gets no callbacks');
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('abort() destroys the connection and silences the handler', async () => {
  const held: http.ServerResponse[] = [];
  const up = await startUpstream((_req, res) => {
    held.push(res);
    res.writeHead(200, { 'content-length': '10' });
    res.write('01234');
  });
  let serverOpen = 0;
  up.server.on('connection', (s: net.Socket) => {
    serverOpen++;
    s.on('close', () => serverOpen--);
  });
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  try {
    const h = new RecordingHandler();
    const ex = pool.request(head('GET', '/'), h);
    await waitFor(() => h.bytes === 5, 3000, 'first half of the body');
    ex.abort();
    assert.equal(pool.stats().open, 0);
    await waitFor(() => serverOpen === 0, 3000, 'upstream to see the connection close');
    assert.equal(h.finished, false);
    assert.equal(h.lateCalls, 0);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('backpressure: a paused exchange gets no data; a 20 MB body flows with bounded buffering', async () => {
  const TOTAL = 20 * 1024 * 1024;
  let serverBlocked = false;
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-length': String(TOTAL) });
    const piece = Buffer.alloc(256 * 1024, 0x62);
    let sent = 0;
    const pump = () => {
      while (sent < TOTAL) {
        sent += piece.length;
        if (!res.write(piece)) {
          serverBlocked = true;
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);

  class SlowHandler extends RecordingHandler {
    paused = false;
    dataWhilePaused = 0;
    maxAhead = 0;
    override onResponseData(chunk: Buffer): boolean {
      if (this.paused) this.dataWhilePaused++;
      super.onResponseData(chunk);
      return true;
    }
  }
  try {
    const h = new SlowHandler();
    h.keepChunks = false;
    const ex = pool.request(head('GET', '/big'), h);
    await waitFor(() => h.bytes > 0, 3000, 'first bytes');
    ex.pause();
    h.paused = true;
    const atPause = h.bytes;
    await waitFor(() => serverBlocked, 3000, 'the upstream to feel backpressure');
    // Give the socket a moment to deliver anything it (wrongly) would.
    await new Promise((r) => setImmediate(r));
    assert.equal(h.dataWhilePaused, 0);
    assert.equal(h.bytes, atPause);
    // Alternate pause/resume until done; data only ever flows while resumed.
    let rounds = 0;
    while (!h.finished && rounds < 100_000) {
      rounds++;
      h.paused = false;
      ex.resume();
      await new Promise((r) => setImmediate(r));
      ex.pause();
      h.paused = true;
      await new Promise((r) => setImmediate(r));
      if (h.finished) break;
    }
    ex.resume();
    await h.done;
    assert.equal(h.error, null);
    assert.equal(h.bytes, TOTAL);
    assert.equal(h.dataWhilePaused, 0);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('returning false from onResponseData pauses until resume()', async () => {
  const TOTAL = 4 * 1024 * 1024;
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked
    for (let i = 0; i < 16; i++) res.write(Buffer.alloc(TOTAL / 16, 0x63));
    res.end();
  });
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  class FalseHandler extends RecordingHandler {
    ex: { resume(): void } | null = null;
    waiting = false;
    violations = 0;
    override onResponseData(chunk: Buffer): boolean {
      if (this.waiting) this.violations++;
      super.onResponseData(chunk);
      this.waiting = true;
      setImmediate(() => {
        this.waiting = false;
        this.ex!.resume();
      });
      return false;
    }
  }
  try {
    const h = new FalseHandler();
    h.keepChunks = false;
    h.ex = pool.request(head('GET', '/'), h);
    await h.done;
    assert.equal(h.error, null);
    assert.equal(h.bytes, TOTAL);
    assert.equal(h.violations, 0);
    assert.equal(h.contentLength, -1);
    // The connection is reusable afterwards.
    const n = await send(pool, 'GET', '/again');
    assert.equal(n.bytes, TOTAL);
    assert.equal(pool.stats().created, 1);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('request body backpressure: writeBody returns false and onRequestDrain follows', async () => {
  const up = await startUpstream();
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  try {
    const TOTAL = 32 * 1024 * 1024;
    const h = new RecordingHandler();
    const ex = pool.request(head('POST', '/big', [], TOTAL), h);
    const piece = Buffer.alloc(1024 * 1024, 0x64);
    let sent = 0;
    let refusals = 0;
    while (sent < TOTAL) {
      sent += piece.length;
      if (!ex.writeBody(piece)) {
        refusals++;
        const drains = h.drains;
        await waitFor(() => h.drains > drains, 5000, 'onRequestDrain');
      }
    }
    ex.endBody();
    await h.done;
    assert.equal(h.status, 200);
    assert.ok(refusals > 0, 'a 32 MB body must meet backpressure');
    assert.equal(up.requests[0]!.body.length, TOTAL);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('a response that arrives before the request body is done is delivered, then the connection closes', async () => {
  const raw = await startRawUpstream((sock) => sock.write('HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig'));
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    const h = new RecordingHandler();
    const ex = pool.request(head('POST', '/', [], -1), h);
    ex.writeBody(Buffer.from('some'));
    await h.done;
    assert.equal(h.status, 413);
    assert.equal(h.body(), 'big');
    assert.equal(ex.writeBody(Buffer.from('more')), true, 'late body writes are dropped');
    ex.endBody();
    assert.equal(pool.stats().open, 0, 'not reused: the upstream still expects body bytes');
  } finally {
    pool.destroy();
    await raw.close();
  }
});

test('close() lets busy exchanges finish, then closes; destroy() fails them', async () => {
  const held: http.ServerResponse[] = [];
  const up = await startUpstream((req, res) => (req.url === '/warm' ? res.end('w') : held.push(res)));
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  try {
    await send(pool, 'GET', '/warm');
    const busy = new RecordingHandler();
    pool.request(head('GET', '/busy'), busy);
    await waitFor(() => held.length >= 1, 3000, 'busy request upstream');
    await send(pool, 'GET', '/warm'); // a second connection, left idle
    assert.equal(pool.stats().idle, 1);
    pool.close();
    assert.deepEqual(pool.stats(), { open: 1, idle: 0, busy: 1, pending: 0, created: 2 });
    const late = new RecordingHandler();
    pool.request(head('GET', '/late'), late);
    assert.equal(late.error?.kind, 'connect');
    held[held.length - 1]!.end('done');
    await busy.done;
    assert.equal(busy.body(), 'done');
    await waitFor(() => pool.stats().open === 0, 3000, 'pool to empty');

    const pool2 = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
    const inflight = new RecordingHandler();
    pool2.request(head('GET', '/inflight'), inflight);
    const n = held.length;
    await waitFor(() => held.length > n, 3000, 'request upstream');
    pool2.destroy();
    assert.equal(inflight.error?.kind, 'reset');
    assert.equal(pool2.stats().open, 0);
  } finally {
    pool.destroy();
    await up.close();
  }
});

// connectTimeoutMs on loopback. A connect on 127.0.0.1 only hangs when the listener's accept
// queue is full: Linux then drops the SYN and the client keeps retransmitting. A child
// process listens with backlog 1 and is stopped (SIGSTOP) so it never accepts; two filler
// connections fill the queue; our connect then hangs until the pool's timer fires.

const LISTENER = `
const net = require('node:net');
const s = net.createServer(() => {});
s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => process.stdout.write(String(s.address().port) + '\\n'));
`;

test('connect that does not complete within connectTimeoutMs → connect-timeout', { skip: process.platform !== 'linux' ? 'relies on Linux SYN-drop when the accept queue is full' : false }, async () => {
  const child = spawn(process.execPath, ['-e', LISTENER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fillers: net.Socket[] = [];
  let pool: EndpointPool | null = null;
  try {
    const [data] = (await once(child.stdout!, 'data')) as [Buffer];
    const port = Number(data.toString().trim());
    assert.ok(port > 0);
    process.kill(child.pid!, 'SIGSTOP');
    // Fill the accept queue (backlog + 1 established connections).
    let connected = 0;
    for (let i = 0; i < 3; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => connected++);
      s.on('error', () => {});
      fillers.push(s);
    }
    await waitFor(() => connected >= 2, 3000, 'the accept queue to fill');

    pool = new EndpointPool('127.0.0.1', port, { ...POOL_OPTS, connectTimeoutMs: 150 });
    const started = Date.now();
    const h = await send(pool, 'GET', '/');
    assert.equal(h.error?.kind, 'connect-timeout');
    assert.equal(h.error?.responseStarted, false);
    assert.ok(Date.now() - started >= 140, 'the timer, not an error, ended the attempt');
    assert.equal(pool.stats().open, 0);
  } finally {
    pool?.destroy();
    for (const s of fillers) s.destroy();
    child.kill('SIGKILL');
  }
});

test('pause() before the exchange has a connection holds the response until resume()', async () => {
  const held: http.ServerResponse[] = [];
  let secondRes: http.ServerResponse | null = null;
  const up = await startUpstream((req, res) => {
    if (req.url === '/first') held.push(res);
    else {
      secondRes = res;
      res.end('second body');
    }
  });
  const pool = new EndpointPool('127.0.0.1', up.port, { ...POOL_OPTS, maxConnections: 1 });
  try {
    const first = new RecordingHandler();
    pool.request(head('GET', '/first'), first);
    const second = new RecordingHandler();
    const ex = pool.request(head('GET', '/second'), second);
    ex.pause(); // still queued
    await waitFor(() => held.length === 1, 3000, 'first request');
    held[0]!.end('first body');
    await first.done;
    await waitFor(() => secondRes?.writableFinished, 3000, 'second response written by the upstream');
    // The response is on its way (a few loop turns to reach us), but the exchange stays paused.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.equal(second.status, 0, 'nothing delivered while paused');
    ex.resume();
    await second.done;
    assert.equal(second.body(), 'second body');
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('abort() from inside onResponseHeaders stops all further callbacks', async () => {
  const up = await startUpstream((_req, res) => res.end('x'.repeat(1000)));
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  class AbortingHandler extends RecordingHandler {
    ex: { abort(): void } | null = null;
    override onResponseHeaders(status: number, reason: string, headers: string[], contentLength: number): void {
      super.onResponseHeaders(status, reason, headers, contentLength);
      this.ex!.abort();
    }
  }
  try {
    const h = new AbortingHandler();
    h.ex = pool.request(head('GET', '/'), h);
    await waitFor(() => h.status === 200, 3000, 'response head');
    await waitFor(() => pool.stats().open === 0, 3000, 'connection destroyed');
    // A following request proves the pool is still healthy.
    const next = await send(pool, 'GET', '/next');
    assert.equal(next.bytes, 1000);
    assert.equal(h.bytes, 0);
    assert.equal(h.finished, false);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('a request issued from onResponseEnd reuses the connection just released (LIFO)', async () => {
  const up = await startUpstream();
  const pool = new EndpointPool('127.0.0.1', up.port, POOL_OPTS);
  class ChainHandler extends RecordingHandler {
    left = 5;
    idleSeen: number[] = [];
    override onResponseEnd(): void {
      this.idleSeen.push(pool.stats().idle);
      if (--this.left > 0) pool.request(head('GET', `/chain/${this.left}`), this);
      else super.onResponseEnd();
    }
  }
  try {
    const h = new ChainHandler();
    pool.request(head('GET', '/chain/5'), h);
    await h.done;
    assert.deepEqual(h.idleSeen, [1, 1, 1, 1, 1], 'the connection is back in the pool before onResponseEnd');
    assert.equal(pool.stats().created, 1);
    assert.equal(up.requests.length, 5);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test("the upstream's Keep-Alive timeout hint makes us close idle connections before it does", async () => {
  const up = await startUpstream();
  up.server.keepAliveTimeout = 2000; // node sends "Keep-Alive: timeout=2"
  let clientFin = false;
  up.server.on('connection', (s: net.Socket) => s.on('end', () => (clientFin = true)));
  const pool = new EndpointPool('127.0.0.1', up.port, { ...POOL_OPTS, idleTimeoutMs: 60_000 });
  try {
    const h = await send(pool, 'GET', '/');
    assert.equal(h.header('keep-alive'), undefined);
    const closedAt = Date.now();
    await waitFor(() => pool.stats().open === 0, 1900, 'pool to close the idle connection before the upstream (2 s)');
    assert.ok(Date.now() - closedAt >= 900, 'kept for about hint - 1 s');
    await waitFor(() => clientFin, 1000, 'upstream to see our FIN');
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('mixed traffic over a few keep-alive connections: every body arrives intact', async () => {
  // Deterministic body per request id: the upstream writes it chunked or with a length,
  // in one piece or several, and the client checks every byte.
  const bodyFor = (id: number) => {
    const size = (id * 7919) % 150_000;
    const b = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) b[i] = (i * 31 + id) & 0xff;
    return b;
  };
  const up = await startUpstream((req, res, reqBody) => {
    const id = Number(req.url!.slice(1));
    const body = bodyFor(id);
    if (reqBody.length !== (req.method === 'POST' ? id * 10 : 0)) {
      res.writeHead(400);
      return res.end();
    }
    if (id % 3 === 0) res.writeHead(200, { 'content-length': String(body.length) });
    else res.writeHead(200); // chunked
    if (id % 2 === 0) return res.end(body);
    const mid = body.length >> 1;
    res.write(body.subarray(0, mid));
    setImmediate(() => res.end(body.subarray(mid)));
  });
  const pool = new EndpointPool('127.0.0.1', up.port, { ...POOL_OPTS, maxConnections: 4, maxPending: 1000 });
  try {
    const handlers: RecordingHandler[] = [];
    for (let id = 0; id < 120; id++) {
      const h = new RecordingHandler();
      handlers.push(h);
      if (id % 4 === 1) {
        const ex = pool.request(head('POST', `/${id}`, [], id % 8 === 1 ? -1 : id * 10), h);
        ex.writeBody(Buffer.alloc(id * 10, 0x7a));
        ex.endBody();
      } else {
        pool.request(head('GET', `/${id}`), h);
      }
    }
    await Promise.all(handlers.map((h) => h.done));
    for (let id = 0; id < handlers.length; id++) {
      const h = handlers[id]!;
      assert.equal(h.error, null, `request ${id}: ${h.error?.message}`);
      assert.equal(h.status, 200, `request ${id}`);
      assert.ok(Buffer.concat(h.chunks).equals(bodyFor(id)), `request ${id}: body differs`);
      assert.equal(h.lateCalls, 0);
    }
    assert.ok(pool.stats().created <= 4);
  } finally {
    pool.destroy();
    await up.close();
  }
});

test('bytes after a complete response make the connection unusable, not the next response', async () => {
  const raw = await startRawUpstream((sock) => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale'));
  const pool = new EndpointPool('127.0.0.1', raw.port, POOL_OPTS);
  try {
    const a = await send(pool, 'GET', '/a');
    assert.equal(a.body(), 'ok');
    assert.equal(pool.stats().open, 0, 'closed instead of reused');
    const b = await send(pool, 'GET', '/b');
    assert.equal(b.body(), 'ok', 'the stale bytes never became a response');
    assert.equal(raw.connections, 2);
  } finally {
    pool.destroy();
    await raw.close();
  }
});
