// WebSocket upgrades proxied end to end through a running Wisp. Upstreams are uWS WebSocket
// servers (a real, widely used implementation); clients are Wisp's own RFC 6455 client
// (proxy/upstream/ws-client.ts) and, once, a hand-written handshake on a raw TCP socket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import uWS from 'uWebSockets.js';
import type { TemplatedApp, WebSocket, us_listen_socket } from 'uWebSockets.js';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { connectWebSocket, acceptKeyFor, type WsConnection, type WsHandler, type WsConnectOptions } from '../../proxy/upstream/ws-client.js';
import { closeWebSockets, openWebSocketCount, wsIdleTimeoutSeconds } from '../../proxy/listener/websocket.js';
import { freePort, waitFor } from '../helpers/net.js';

// ── the upstream: a uWS app that records what it sees ──

interface UpstreamData {
  url: string;
}
interface SeenUpgrade {
  url: string;
  query: string;
  headers: Record<string, string>;
}
interface SeenClose {
  url: string;
  code: number;
  reason: string;
}

class WsUpstream {
  port = 0;
  readonly upgrades: SeenUpgrade[] = [];
  readonly closes: SeenClose[] = [];
  readonly received: string[] = [];
  readonly sockets = new Set<WebSocket<UpstreamData>>();
  /** The socket that got "flood", for the backpressure test. */
  flooding: WebSocket<UpstreamData> | null = null;
  private listenSocket: us_listen_socket | null = null;
  /** Held for the server's lifetime: an App the GC collects takes its sockets with it. */
  private app: TemplatedApp | null = null;

  constructor(private readonly tag: string) {}

  start(): Promise<void> {
    const app = uWS.App().ws<UpstreamData>('/*', {
      maxPayloadLength: 32 * 1024 * 1024,
      maxBackpressure: 256 * 1024 * 1024,
      idleTimeout: 0,
      upgrade: (res, req, context) => {
        const headers: Record<string, string> = {};
        req.forEach((k, v) => void (headers[k] = v));
        const url = req.getUrl();
        this.upgrades.push({ url, query: req.getQuery() ?? '', headers });
        if (url.endsWith('/deny')) {
          res.writeStatus('403 Forbidden').writeHeader('content-type', 'text/plain').writeHeader('x-denied-by', 'upstream').end('nope');
          return;
        }
        const offered = (headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
        const chosen = offered.includes('chat.v2') ? 'chat.v2' : '';
        if (url.endsWith('/cookie')) res.writeStatus('101 Switching Protocols').writeHeader('set-cookie', 'session=abc; HttpOnly');
        res.upgrade<UpstreamData>({ url }, headers['sec-websocket-key']!, chosen, headers['sec-websocket-extensions'] ?? '', context);
      },
      open: (ws) => {
        this.sockets.add(ws);
        if (ws.getUserData().url.endsWith('/greet')) ws.send(`hello from ${this.tag}`);
      },
      message: (ws, msg, isBinary) => {
        const text = isBinary ? '' : Buffer.from(msg).toString();
        if (!isBinary) this.received.push(text);
        if (text.startsWith('close:')) {
          const [, code, reason] = text.split(':');
          ws.end(Number(code), reason);
          return;
        }
        if (text === 'close-no-status') return ws.end();
        if (text === 'drop') return ws.close();
        if (text.startsWith('flood:')) {
          // n messages of 1 MiB each, numbered in their first 4 bytes.
          this.flooding = ws;
          const n = Number(text.slice(6));
          for (let i = 0; i < n; i++) {
            const m = Buffer.alloc(1024 * 1024, i & 0xff);
            m.writeUInt32BE(i, 0);
            ws.send(m, true);
          }
          return;
        }
        if (text === 'whoami') return void ws.send(this.tag);
        if (text.startsWith('big:')) return void ws.send(Buffer.alloc(Number(text.slice(4)), 7), true);
        ws.send(msg, isBinary);
      },
      close: (ws, code, message) => {
        this.sockets.delete(ws);
        if (this.flooding === ws) this.flooding = null;
        this.closes.push({ url: ws.getUserData().url, code, reason: Buffer.from(message).toString() });
      },
    });
    this.app = app;
    return new Promise((resolve, reject) => {
      app.listen('127.0.0.1', 0, (ls) => {
        if (!ls) return reject(new Error('upstream cannot listen'));
        this.listenSocket = ls;
        this.port = uWS.us_socket_local_port(ls);
        resolve();
      });
    });
  }

  close(): void {
    if (this.listenSocket !== null) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
    this.app = null;
    for (const ws of this.sockets) ws.close();
    this.sockets.clear();
  }
}

// ── the client side ──

class TestClient implements WsHandler {
  readonly messages: { data: Buffer; binary: boolean }[] = [];
  closeCode = 0;
  closeReason = '';
  closeClean = false;
  constructor(readonly conn: WsConnection) {
    conn.start(this);
  }
  onMessage(data: Buffer, isBinary: boolean): void {
    this.messages.push({ data, binary: isBinary });
  }
  onClose(code: number, reason: string, clean: boolean): void {
    this.closeCode = code;
    this.closeReason = reason;
    this.closeClean = clean;
  }
  onDrain(): void {}
  texts(): string[] {
    return this.messages.map((m) => m.data.toString());
  }
}

let a: WsUpstream;
let b: WsUpstream;
let wisp: Wisp;
let port: number;
/** Completes the WebSocket handshake by hand, then never reads again. */
let stall: net.Server;
/** Accepts TCP and never answers: the handshake must time out. */
let silent: net.Server;
const silentSockets = new Set<net.Socket>();
const clients: TestClient[] = [];
const rawSockets: net.Socket[] = [];

async function open(path: string, opts: Partial<WsConnectOptions> = {}): Promise<TestClient> {
  const r = await connectWebSocket({ host: '127.0.0.1', port, path, handshakeTimeoutMs: 5000, ...opts });
  if (!r.upgraded) throw new Error(`expected 101, got ${r.status}: ${r.body.toString()}`);
  const c = new TestClient(r.connection);
  clients.push(c);
  return c;
}

before(async () => {
  a = new WsUpstream('a');
  b = new WsUpstream('b');
  await a.start();
  await b.start();
  const deadPort = await freePort();
  silent = net.createServer((sock) => {
    silentSockets.add(sock);
    sock.on('close', () => silentSockets.delete(sock));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const silentPort = (silent.address() as net.AddressInfo).port;
  stall = net.createServer((sock) => {
    silentSockets.add(sock);
    sock.on('close', () => silentSockets.delete(sock));
    let head = '';
    const onHead = (d: Buffer): void => {
      head += d.toString('latin1');
      const m = /sec-websocket-key: *(\S+)/i.exec(head);
      if (!head.includes('\r\n\r\n') || m === null) return;
      sock.off('data', onHead);
      sock.pause();
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKeyFor(m[1]!)}\r\n\r\n`);
    };
    sock.on('data', onHead);
  });
  await new Promise<void>((resolve) => stall.listen(0, '127.0.0.1', resolve));
  const stallPort = (stall.address() as net.AddressInfo).port;
  wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [
          {
            name: 'main',
            address: '127.0.0.1:0',
            routes: [
              { match: { path: '/static' }, direct_response: { status: 200, body: 'static' } },
              { match: { prefix: '/a/' }, cluster: 'a' },
              { match: { prefix: '/b/' }, cluster: 'b', rewrite: { prefix: '/bee/' } },
              { match: { prefix: '/dead/' }, cluster: 'dead' },
              { match: { prefix: '/silent/' }, cluster: 'silent', timeout: '300ms' },
              { match: { prefix: '/stall/' }, cluster: 'stall' },
            ],
          },
        ],
        clusters: [
          { name: 'a', endpoints: [`127.0.0.1:${a.port}`] },
          { name: 'b', endpoints: [`127.0.0.1:${b.port}`] },
          { name: 'dead', endpoints: [`127.0.0.1:${deadPort}`] },
          { name: 'silent', endpoints: [`127.0.0.1:${silentPort}`] },
          { name: 'stall', endpoints: [`127.0.0.1:${stallPort}`] },
        ],
      },
      'websocket.test',
    ),
  );
  port = wisp.listenerPort('main');
});

after(async () => {
  for (const c of clients) c.conn.destroy();
  for (const s of rawSockets) s.destroy();
  await wisp.stop(0);
  a.close();
  b.close();
  for (const sock of silentSockets) sock.destroy();
  await new Promise((resolve) => silent.close(resolve));
  await new Promise((resolve) => stall.close(resolve));
});

test('echo: text and binary keep their type in both directions', async () => {
  const c = await open('/a/echo');
  c.conn.send('hello', false);
  const bin = Buffer.from([0, 1, 2, 250, 255]);
  c.conn.send(bin, true);
  await waitFor(() => c.messages.length === 2, 5000, 'two echoes');
  assert.equal(c.messages[0]!.binary, false);
  assert.equal(c.messages[0]!.data.toString(), 'hello');
  assert.equal(c.messages[1]!.binary, true);
  assert.deepEqual(c.messages[1]!.data, bin);
  c.conn.close(1000, '');
});

test('the upstream sees the request path, query and forwarding headers, and no extensions', async () => {
  const before = a.upgrades.length;
  const c = await open('/a/greet?x=1', { headers: ['host', 'ws.example', 'sec-websocket-extensions', 'permessage-deflate', 'x-custom', 'yes'] });
  await waitFor(() => c.messages.length === 1, 5000, 'greeting');
  assert.equal(c.messages[0]!.data.toString(), 'hello from a');
  const seen = a.upgrades[before]!;
  assert.equal(seen.url, '/a/greet');
  assert.equal(seen.query, 'x=1');
  assert.equal(seen.headers['host'], 'ws.example');
  assert.equal(seen.headers['x-custom'], 'yes');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.ok(seen.headers['x-request-id']);
  assert.equal(seen.headers['sec-websocket-extensions'], undefined, 'permessage-deflate is not offered upstream');
  c.conn.close(1000, '');
});

test('a 1 MB binary message passes intact both ways', async () => {
  const c = await open('/a/echo');
  const big = randomBytes(1024 * 1024);
  c.conn.send(big, true);
  await waitFor(() => c.messages.length === 1, 10000, '1 MB echo');
  assert.equal(c.messages[0]!.binary, true);
  assert.ok(c.messages[0]!.data.equals(big));
  c.conn.close(1000, '');
});

test('1,000 small messages arrive in order, there and back', async () => {
  const c = await open('/a/echo');
  const before = a.received.length;
  for (let i = 0; i < 1000; i++) c.conn.send(`m${i}`, false);
  await waitFor(() => c.messages.length === 1000, 10000, '1000 echoes');
  const expected = Array.from({ length: 1000 }, (_, i) => `m${i}`);
  assert.deepEqual(a.received.slice(before, before + 1000), expected);
  assert.deepEqual(c.texts(), expected);
  c.conn.close(1000, '');
});

test('client close code and reason reach the upstream', async () => {
  const c = await open('/a/client-closes');
  c.conn.close(4001, 'client bye');
  await waitFor(() => a.closes.some((x) => x.url === '/a/client-closes'), 5000, 'upstream close');
  const seen = a.closes.find((x) => x.url === '/a/client-closes')!;
  assert.equal(seen.code, 4001);
  assert.equal(seen.reason, 'client bye');
  await waitFor(() => c.closeCode !== 0, 5000, 'client sees the close answered');
  assert.equal(c.closeCode, 4001);
});

test('upstream close code and reason reach the client', async () => {
  const c = await open('/a/upstream-closes');
  c.conn.send('close:4002:server bye', false);
  await waitFor(() => c.closeCode !== 0, 5000, 'client close');
  assert.equal(c.closeCode, 4002);
  assert.equal(c.closeReason, 'server bye');
  assert.equal(c.closeClean, true);
});

test('a close without status (1005) passes as a close without status', async () => {
  const c = await open('/a/no-status');
  c.conn.send('close-no-status', false);
  await waitFor(() => c.closeCode !== 0, 5000, 'client close');
  assert.equal(c.closeCode, 1005);
  assert.equal(c.closeClean, true);
});

test('an upstream that drops its connection makes the client see an abnormal close (1006)', async () => {
  const c = await open('/a/drop');
  c.conn.send('drop', false);
  await waitFor(() => c.closeCode !== 0, 5000, 'client close');
  assert.equal(c.closeCode, 1006);
  assert.equal(c.closeClean, false);
});

test('a client that drops its connection makes the upstream see an abnormal close (1006)', async () => {
  const c = await open('/a/client-drops');
  c.conn.send('ping-before-drop', false);
  await waitFor(() => c.messages.length === 1, 5000, 'echo');
  c.conn.destroy();
  await waitFor(() => a.closes.some((x) => x.url === '/a/client-drops'), 5000, 'upstream close');
  assert.equal(a.closes.find((x) => x.url === '/a/client-drops')!.code, 1006);
});

test('messages over 16 MiB end the connection on both sides', async () => {
  // Client → upstream: uWS (maxPayloadLength) drops the client's TCP connection at once, so
  // the client sees 1006 and Wisp drops the upstream connection too.
  const c = await open('/a/too-big-up');
  c.conn.send(Buffer.alloc(16 * 1024 * 1024 + 1), true);
  await waitFor(() => c.closeCode !== 0, 10000, 'client close');
  assert.equal(c.closeCode, 1006);
  await waitFor(() => a.closes.some((x) => x.url === '/a/too-big-up'), 5000, 'upstream close');
  assert.equal(a.closes.find((x) => x.url === '/a/too-big-up')!.code, 1006);

  // Upstream → client: Wisp's upstream connection refuses it with 1009 (message too big),
  // and the client gets a clean close with that code.

  const d = await open('/a/too-big-down');
  d.conn.send(`big:${16 * 1024 * 1024 + 1}`, false);
  await waitFor(() => d.closeCode !== 0, 10000, 'client close');
  assert.equal(d.closeCode, 1009);
  assert.equal(d.messages.length, 0);
  await waitFor(() => a.closes.some((x) => x.url === '/a/too-big-down'), 5000, 'upstream close');
  assert.equal(a.closes.find((x) => x.url === '/a/too-big-down')!.code, 1009);
});

test('an upstream refusing the upgrade with 403 gives the client that 403', async () => {
  const r = await connectWebSocket({ host: '127.0.0.1', port, path: '/a/deny', handshakeTimeoutMs: 5000 });
  assert.equal(r.upgraded, false);
  assert.equal(r.status, 403);
  assert.equal(r.body.toString(), 'nope');
  assert.ok(r.headers.includes('x-denied-by'));
});

test('an upstream that is down answers 502', async () => {
  const r = await connectWebSocket({ host: '127.0.0.1', port, path: '/dead/x', handshakeTimeoutMs: 5000 });
  assert.equal(r.upgraded, false);
  assert.equal(r.status, 502);
});

test('an upstream that accepts but never answers the handshake gives 504 after the route timeout', async () => {
  const r = await connectWebSocket({ host: '127.0.0.1', port, path: '/silent/x', handshakeTimeoutMs: 5000 });
  assert.equal(r.upgraded, false);
  assert.equal(r.status, 504);
});

test('the upgrade head gets the same checks as any request: two Host headers answer 400', async () => {
  const before = a.upgrades.length;
  const r = await connectWebSocket({ host: '127.0.0.1', port, path: '/a/echo', headers: ['host', 'one.test', 'host', 'two.test'], handshakeTimeoutMs: 5000 });
  assert.equal(r.upgraded, false);
  assert.equal(r.status, 400);
  assert.equal(a.upgrades.length, before);
});

test('no route answers 404, a direct_response route answers as HTTP', async () => {
  const none = await connectWebSocket({ host: '127.0.0.1', port, path: '/nowhere', handshakeTimeoutMs: 5000 });
  assert.equal(none.status, 404);
  const direct = await connectWebSocket({ host: '127.0.0.1', port, path: '/static', handshakeTimeoutMs: 5000 });
  assert.equal(direct.status, 200);
  assert.equal(direct.upgraded ? '' : direct.body.toString(), 'static');
});

test('the subprotocol the upstream chooses is the one the client gets', async () => {
  const before = a.upgrades.length;
  const c = await open('/a/echo', { protocols: 'chat.v1, chat.v2' });
  assert.equal(c.conn.protocol, 'chat.v2');
  assert.equal(a.upgrades[before]!.headers['sec-websocket-protocol'], 'chat.v1, chat.v2');
  const none = await open('/a/echo', { protocols: 'chat.v1' });
  assert.equal(none.conn.protocol, '');
  c.conn.close(1000, '');
  none.conn.close(1000, '');
});

test("extra headers of the upstream's 101 (Set-Cookie) reach the client", async () => {
  const r = await connectWebSocket({ host: '127.0.0.1', port, path: '/a/cookie', handshakeTimeoutMs: 5000 });
  assert.ok(r.upgraded);
  const c = new TestClient(r.connection);
  clients.push(c);
  const i = r.headers.indexOf('set-cookie');
  assert.ok(i >= 0, `headers: ${r.headers.join(' | ')}`);
  assert.equal(r.headers[i + 1], 'session=abc; HttpOnly');
  c.conn.send('after cookie', false);
  await waitFor(() => c.messages.length === 1, 5000, 'echo');
  c.conn.close(1000, '');
});

test('routes by path to different clusters (with prefix rewrite)', async () => {
  const ca = await open('/a/who');
  const cb = await open('/b/who');
  ca.conn.send('whoami', false);
  cb.conn.send('whoami', false);
  await waitFor(() => ca.messages.length === 1 && cb.messages.length === 1, 5000, 'answers');
  assert.equal(ca.messages[0]!.data.toString(), 'a');
  assert.equal(cb.messages[0]!.data.toString(), 'b');
  assert.equal(b.upgrades[b.upgrades.length - 1]!.url, '/bee/who');
  ca.conn.close(1000, '');
  cb.conn.close(1000, '');
});

test('a slow client pushes back on the upstream instead of Wisp buffering everything', async () => {
  const c = await open('/a/flood');
  c.conn.pause(); // stop reading: kernel buffers fill, then uWS's, then Wisp must stop reading upstream
  const n = 48;
  c.conn.send(`flood:${n}`, false);
  // 48 MiB sent by the upstream. Wait until its send queue stops moving (30 polls, ~0.3 s, in
  // a row with the same value): had Wisp kept reading, it would have drained to 0 into Wisp's
  // memory; with Wisp paused, most of it must still be queued at the upstream.
  let last = -1;
  let same = 0;
  const settled = await waitFor(() => {
    const now = a.flooding === null ? -1 : a.flooding.getBufferedAmount();
    same = now === last ? same + 1 : 0;
    last = now;
    return same >= 30 ? now + 1 : 0;
  }, 15000, 'upstream send queue to settle');
  assert.ok(settled - 1 > 16 * 1024 * 1024, `upstream still holds ${settled - 1} bytes`);
  c.conn.resume();
  await waitFor(() => c.messages.length === n, 30000, 'every flood message');
  for (let i = 0; i < n; i++) {
    const m = c.messages[i]!.data;
    assert.equal(m.length, 1024 * 1024);
    assert.equal(m.readUInt32BE(0), i, `message ${i} in order`);
    assert.equal(m[m.length - 1], i & 0xff);
  }
  c.conn.close(1000, '');
});

test('an upstream that stops reading: the client is cut off with 1013 once 64 MiB are queued', async () => {
  // uWS 20.30 cannot pause reading a client WebSocket, so Wisp bounds what it queues instead.
  const c = await open('/stall/x');
  const chunk = Buffer.alloc(8 * 1024 * 1024, 3);
  for (let i = 0; i < 12 && c.closeCode === 0; i++) {
    c.conn.send(chunk, true);
    // Let Wisp read what was sent before queueing more here.
    await waitFor(() => c.closeCode !== 0 || c.conn.bufferedAmount < 1024 * 1024, 10000, 'client socket drained');
  }
  await waitFor(() => c.closeCode !== 0, 10000, 'client close');
  assert.equal(c.closeCode, 1013);
  assert.equal(c.closeReason, 'upstream is not reading');
});

test('raw TCP client: hand-written handshake and frames interoperate', async () => {
  const s = net.connect({ host: '127.0.0.1', port });
  rawSockets.push(s);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  const key = randomBytes(16).toString('base64');
  s.write(`GET /a/echo HTTP/1.1\r\nHost: raw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let buf = Buffer.alloc(0);
  s.on('data', (d: Buffer) => void (buf = Buffer.concat([buf, d])));
  await waitFor(() => buf.indexOf('\r\n\r\n') !== -1, 5000, 'handshake answer');
  const headEnd = buf.indexOf('\r\n\r\n');
  const head = buf.toString('latin1', 0, headEnd);
  assert.match(head, /^HTTP\/1\.1 101 /);
  assert.match(head.toLowerCase(), new RegExp(`sec-websocket-accept: ${acceptKeyFor(key).toLowerCase().replace(/[+/=]/g, '\\$&')}`));
  buf = buf.subarray(headEnd + 4);
  // One masked text frame "raw!" (FIN, opcode 1, mask bit, length 4).
  const mask = [0x11, 0x22, 0x33, 0x44];
  const payload = Buffer.from('raw!');
  const frame = Buffer.from([0x81, 0x80 | payload.length, ...mask, ...payload.map((byte, i) => byte ^ mask[i % 4]!)]);
  s.write(frame);
  await waitFor(() => buf.length >= 6, 5000, 'echo frame');
  assert.equal(buf[0], 0x81, 'FIN + text');
  assert.equal(buf[1], 4, 'unmasked, length 4');
  assert.equal(buf.toString('utf8', 2, 6), 'raw!');
  // Close 1000 (masked), expect a close frame back.
  const close = Buffer.from([0x03, 0xe8]);
  s.write(Buffer.from([0x88, 0x82, ...mask, ...close.map((byte, i) => byte ^ mask[i]!)]));
  await waitFor(() => buf.length >= 10 && buf[6] === 0x88, 5000, 'close frame back');
  assert.equal(buf.readUInt16BE(8), 1000);
  s.destroy();
});

test('idle timeout in seconds, clamped to the range uWS accepts', () => {
  assert.equal(wsIdleTimeoutSeconds(0), 0);
  assert.equal(wsIdleTimeoutSeconds(1000), 8);
  assert.equal(wsIdleTimeoutSeconds(60000), 60);
  assert.equal(wsIdleTimeoutSeconds(60400), 60);
  assert.equal(wsIdleTimeoutSeconds(3_600_000), 960);
});

test('wasm filters run on the upgrade: auth refuses without a key, a header filter reaches the upstream', async () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const wasm = (name: string) => path.join(root, 'filters', 'build', `${name}.wasm`);
  const filtered = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        workers: 1,
        listeners: [{ name: 'f', address: '127.0.0.1:0', routes: [{ match: { prefix: '/a/' }, cluster: 'a', filters: ['auth', 'tag'] }] }],
        clusters: [{ name: 'a', endpoints: [`127.0.0.1:${a.port}`] }],
        filters: [
          { name: 'auth', wasm: wasm('auth'), config: { keys: ['sesame'] } },
          { name: 'tag', wasm: wasm('add-header'), config: 'tagged' },
        ],
      },
      'websocket-filters.test',
    ),
  );
  try {
    const fport = filtered.listenerPort('f');
    const before = a.upgrades.length;
    const refused = await connectWebSocket({ host: '127.0.0.1', port: fport, path: '/a/echo', handshakeTimeoutMs: 5000 });
    assert.equal(refused.status, 401);
    assert.equal(a.upgrades.length, before, 'nothing reached the upstream');
    const ok = await connectWebSocket({ host: '127.0.0.1', port: fport, path: '/a/echo', headers: ['x-api-key', 'sesame'], handshakeTimeoutMs: 5000 });
    assert.equal(ok.status, 101);
    assert.ok(ok.upgraded);
    const c = new TestClient(ok.connection);
    clients.push(c);
    assert.equal(a.upgrades[before]!.headers['x-wisp-filter'], 'tagged');
    assert.equal(a.upgrades[before]!.url, '/a/echo');
    c.conn.send('through filters', false);
    await waitFor(() => c.messages.length === 1, 5000, 'echo');
    assert.equal(c.messages[0]!.data.toString(), 'through filters');
    c.conn.close(1000, '');
    await waitFor(() => c.closeCode !== 0, 5000, 'closed');
  } finally {
    await filtered.stop(0);
  }
});

test('a config reload routes new upgrades by the new config; open WebSockets stay where they are', async () => {
  const cfg = (cluster: string) =>
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'r', address: '127.0.0.1:0', routes: [{ match: { prefix: '/r/' }, cluster }] }],
        clusters: [
          { name: 'a', endpoints: [`127.0.0.1:${a.port}`] },
          { name: 'b', endpoints: [`127.0.0.1:${b.port}`] },
        ],
      },
      'websocket-reload.test',
    );
  const w = await Wisp.start(cfg('a'));
  try {
    const rport = w.listenerPort('r');
    const first = await open('/r/one', { port: rport });
    await w.apply(cfg('b'));
    assert.equal(w.listenerPort('r'), rport, 'same listener');
    const second = await open('/r/two', { port: rport });
    first.conn.send('whoami', false);
    second.conn.send('whoami', false);
    await waitFor(() => first.messages.length === 1 && second.messages.length === 1, 5000, 'answers');
    assert.equal(first.messages[0]!.data.toString(), 'a');
    assert.equal(second.messages[0]!.data.toString(), 'b');
    first.conn.close(1000, '');
    second.conn.close(1000, '');
    await waitFor(() => first.closeCode !== 0 && second.closeCode !== 0, 5000, 'closed');
  } finally {
    await w.stop(0);
  }
});

test('closeWebSockets (shutdown) closes both sides with 1001', async () => {
  const c = await open('/a/shutdown');
  c.conn.send('still here', false);
  await waitFor(() => c.messages.length === 1, 5000, 'echo');
  assert.ok(openWebSocketCount() >= 1);
  assert.ok(closeWebSockets() >= 1);
  await waitFor(() => c.closeCode !== 0, 5000, 'client close');
  assert.equal(c.closeCode, 1001);
  await waitFor(() => a.closes.some((x) => x.url === '/a/shutdown'), 5000, 'upstream close');
  assert.equal(a.closes.find((x) => x.url === '/a/shutdown')!.code, 1001);
  await waitFor(() => openWebSocketCount() === 0, 5000, 'no open WebSockets left');
  // Every upgrade of this file released its cluster slot and endpoint count.
  await waitFor(() => {
    const st = wisp.clusters.get('a')!.stats();
    return st.inFlight === 0 && st.endpoints.every((e) => e.active === 0);
  }, 5000, 'cluster a: nothing in flight, no active endpoint');
});
