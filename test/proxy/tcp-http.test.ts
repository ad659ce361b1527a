// HTTP/1 found on a sniffing tcp listener is handed to an HTTP listener of the same config
// (tcp route `http_listener`): its routes and HTTP filters serve it, the upstream sees the
// real client address (PROXY v2 over the private loopback port), keep-alive works, and TLS
// or RESP on the same port still go to their tcp routes. Real clients and servers only.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import uWS from 'uWebSockets.js';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { writeIPv6 } from '../../proxy/listener/handoff.js';
import { rawRequest, startUpstream, waitFor, closerFor, listenLocal } from '../helpers/net.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const BUILD = path.resolve(here, '..', '..', '..', 'filters', 'build');
const certDir = path.resolve(here, '..', '..', '..', 'test', 'fixtures', 'certs');
const cert = fs.readFileSync(path.join(certDir, 'localhost.crt'));
const key = fs.readFileSync(path.join(certDir, 'localhost.key'));

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

async function listen(server: net.Server): Promise<number> {
  closers.push(closerFor(server));
  return listenLocal(server);
}

const api = await startUpstream();
closers.push(() => api.close());
const redisPort = await listen(net.createServer((s) => {
  s.on('error', () => {});
  s.on('data', () => s.write('+PONG\r\n'));
}));
const tlsPort = await listen(tls.createServer({ cert, key }, (s) => {
  s.on('error', () => {});
  s.on('data', (d) => s.write(`tls:${d.toString()}`));
}));

// A uWS WebSocket echo upstream that records the x-forwarded-for of each upgrade.
const wsForwardedFor: string[] = [];
const wsApp: TemplatedApp = uWS.App().ws('/*', {
  upgrade: (res, req, context) => {
    wsForwardedFor.push(req.getHeader('x-forwarded-for'));
    res.upgrade({}, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
  },
  message: (ws, message, isBinary) => void ws.send(message, isBinary),
});
const wsPort = await new Promise<number>((resolve, reject) => wsApp.listen('127.0.0.1', 0, (ls: us_listen_socket | false) => {
  if (!ls) return reject(new Error('ws upstream cannot listen'));
  closers.push(async () => uWS.us_listen_socket_close(ls));
  resolve(uWS.us_socket_local_port(ls));
}));

function config(handOff: boolean): ReturnType<typeof normalizeConfig> {
  return normalizeConfig({
    admin: { address: '127.0.0.1:0' },
    workers: 1,
    filters: [
      { name: 'sniff', wasm: path.join(BUILD, 'sniff.wasm') },
      { name: 'tag', wasm: path.join(BUILD, 'add-header.wasm'), config: 'through-web' },
    ],
    listeners: [
      {
        name: 'web',
        address: '127.0.0.1:0',
        routes: [
          { match: { path: '/hello' }, direct_response: { status: 200, body: 'hello from web' } },
          { match: { prefix: '/api' }, cluster: 'api', filters: ['tag'] },
          { match: { prefix: '/ws' }, cluster: 'ws' },
        ],
      },
      {
        name: 'l4',
        address: '127.0.0.1:0',
        protocol: 'tcp',
        tcp: {
          sniff: 'sniff',
          routes: [
            handOff ? { match: { protocol: 'http1' }, http_listener: 'web' } : { match: { protocol: 'http1' }, cluster: 'api' },
            { match: { protocol: 'redis' }, cluster: 'redis' },
            { match: { protocol: 'tls' }, cluster: 'tls' },
          ],
        },
      },
    ],
    clusters: [
      { name: 'api', endpoints: [`127.0.0.1:${api.port}`] },
      { name: 'redis', endpoints: [`127.0.0.1:${redisPort}`] },
      { name: 'tls', endpoints: [`127.0.0.1:${tlsPort}`] },
      { name: 'ws', endpoints: [`127.0.0.1:${wsPort}`] },
    ],
  }, path.join(here, 'tcp-http.yaml'));
}

const wisp = await Wisp.start(config(true));
closers.unshift(() => wisp.stop(0));
const l4 = wisp.listenerPort('l4');

interface Reply {
  status: number;
  body: string;
  socket: net.Socket;
}

/** One request from `localAddress` (any 127.x address is loopback on Linux, so the client's
 * address differs from the 127.0.0.1 the hand-off itself comes from). */
function get(agent: http.Agent, urlPath: string, localAddress = '127.0.0.2'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: l4, path: urlPath, agent, localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, socket: req.socket! }));
    });
    req.on('error', reject);
  });
}

test('HTTP/1 on the sniffing port is served by the HTTP listener: routes, filters, client address, keep-alive', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const before = api.requests.length;
    const hello = await get(agent, '/hello');
    assert.equal(hello.status, 200);
    assert.equal(hello.body, 'hello from web', 'the direct_response route of listener web answered');
    const sockets = new Set<net.Socket>([hello.socket]);
    for (let i = 0; i < 4; i++) {
      const r = await get(agent, `/api/item/${i}`);
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { method: 'GET', url: `/api/item/${i}`, bytes: 0 });
      sockets.add(r.socket);
    }
    assert.equal(sockets.size, 1, 'all five requests went over one client connection');
    const seen = api.requests.slice(before);
    assert.equal(seen.length, 4);
    for (const r of seen) {
      assert.equal(r.headers['x-wisp-filter'], 'through-web', 'the route\'s HTTP filter ran');
      assert.equal(r.headers['x-forwarded-for'], '127.0.0.2', 'the upstream sees the real client address');
    }
    const text = await wisp.metrics.render();
    assert.match(text, /wisp_tcp_connections_total\{listener="l4",cluster="http_listener:web",protocol="http1"\} 1\b/);
    assert.match(text, /wisp_requests_total\{listener="web",[^}]*cluster="api"[^}]*\} 4\b/);
  } finally {
    agent.destroy();
  }
  await waitFor(async () => /wisp_tcp_connections_active\{listener="l4",cluster="http_listener:web",protocol="http1"\} 0/.test(await wisp.metrics.render()), 5000, 'hand-off connection closed');
});

test('a WebSocket upgrade on the sniffing port is proxied by the HTTP listener (101, echo, client address)', async () => {
  const key = randomBytes(16).toString('base64');
  const mask = randomBytes(4);
  const payload = Buffer.from('ping through l4');
  const frame = Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]);
  const got = await new Promise<Buffer>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const c = net.connect({ port: l4, host: '127.0.0.1', localAddress: '127.0.0.2' }, () => {
      c.write(`GET /ws/echo HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\n\r\n`);
    });
    c.on('error', reject);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        if (!head.startsWith('HTTP/1.1 101 ')) {
          c.destroy();
          return reject(new Error(`no upgrade: ${head}`));
        }
        buf = buf.subarray(end + 4);
        upgraded = true;
        c.write(frame);
      }
      if (buf.length >= 2 + payload.length) {
        c.destroy();
        resolve(buf);
      }
    });
  });
  assert.equal(got[0], 0x81);
  assert.equal(got.subarray(2, 2 + payload.length).toString(), 'ping through l4');
  assert.equal(wsForwardedFor.at(-1), '127.0.0.2');
});

test('a request body and a no-route 404 also go through the HTTP listener', async () => {
  const before = api.requests.length;
  const body = 'x'.repeat(5000);
  const r = await rawRequest(l4, `POST /api/upload HTTP/1.1\r\nhost: a\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
  assert.equal(r.status, 200);
  assert.equal(api.requests[before]!.body.length, 5000);
  const miss = await rawRequest(l4, 'GET /nowhere HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
  assert.equal(miss.status, 404, 'listener web has no route for /nowhere');
});

test('TLS and RESP on the same sniffing port still go to their tcp routes', async () => {
  const reply = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ port: l4, host: '127.0.0.1', servername: 'localhost', ca: cert }, () => s.write('hi'));
    s.on('error', reject);
    s.once('data', (d) => {
      resolve(d.toString());
      s.destroy();
    });
  });
  assert.equal(reply, 'tls:hi');
  const pong = await new Promise<string>((resolve, reject) => {
    let got = '';
    const c = net.connect(l4, '127.0.0.1', () => c.write('*1\r\n$4\r\nPING\r\n'));
    c.on('error', reject);
    c.on('data', (d) => {
      got += d.toString();
      if (got.endsWith('\r\n')) {
        c.destroy();
        resolve(got);
      }
    });
  });
  assert.equal(pong, '+PONG\r\n');
});

test('connections that are not HTTP/1 leave no loopback connection behind (the hand-off is dialled at accept)', async () => {
  const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
  const baseline = sockets();
  for (let i = 0; i < 10; i++) {
    const pong = await new Promise<string>((resolve, reject) => {
      let got = '';
      const c = net.connect(l4, '127.0.0.1', () => c.write('*1\r\n$4\r\nPING\r\n'));
      c.on('error', reject);
      c.on('data', (d) => {
        got += d.toString();
        if (got.endsWith('\r\n')) {
          c.destroy();
          resolve(got);
        }
      });
    });
    assert.equal(pong, '+PONG\r\n');
  }
  await waitFor(() => sockets() <= baseline, 5000, `TCP sockets back to ${baseline}`);
  await waitFor(async () => /wisp_tcp_connections_active\{listener="l4",cluster="redis",protocol="redis"\} 0/.test(await wisp.metrics.render()), 5000, 'redis connections closed');
});

test('a PROXY header from a client is not believed: not on the HTTP listener\'s own port, not through the tcp listener', async () => {
  // v2 header claiming 10.1.2.3:12345 → 127.0.0.1:8080.
  const spoof = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 10, 1, 2, 3, 127, 0, 0, 1, 0x30, 0x39, 0x1f, 0x90]);
  const request = Buffer.concat([spoof, Buffer.from('GET /api/spoof HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n')]);
  const before = api.requests.length;
  const direct = await rawRequest(wisp.listenerPort('web'), request);
  assert.equal(direct.status, 200);
  assert.equal(api.requests[before]!.headers['x-forwarded-for'], '127.0.0.1', 'listener web keeps proxy_protocol: false on its own port');
  // Through l4 the sniff names it `proxy`, which no route takes and there is no default cluster.
  const viaL4 = await rawRequest(l4, request);
  assert.equal(viaL4.status, 0);
  assert.ok(viaL4.closedByServer);
  assert.equal(api.requests.length, before + 1, 'the spoofed request never reached the upstream through l4');
});

test('a reload can drop the hand-off (http1 piped instead) and restore it', async () => {
  await wisp.apply(config(false));
  try {
    const raw = await rawRequest(l4, 'GET /hello HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n');
    // Now http1 is piped to the api upstream, which answers /hello itself.
    assert.equal(raw.status, 200);
    assert.match(raw.text, /"url":"\/hello"/);
  } finally {
    await wisp.apply(config(true));
  }
  const agent = new http.Agent({ keepAlive: false });
  try {
    const r = await get(agent, '/hello');
    assert.equal(r.body, 'hello from web');
  } finally {
    agent.destroy();
  }
});

test('PROXY v2 addresses: IPv6 text forms are written as 16 bytes', () => {
  const b = Buffer.alloc(16);
  assert.ok(writeIPv6(b, 0, '::1'));
  assert.equal(b.toString('hex'), '00000000000000000000000000000001');
  assert.ok(writeIPv6(b, 0, '2001:db8::8:800:200c:417a'));
  assert.equal(b.toString('hex'), '20010db8000000000008080020 0c417a'.replace(' ', ''));
  assert.ok(writeIPv6(b, 0, 'fe80::1%lo'));
  assert.equal(b.toString('hex'), 'fe800000000000000000000000000001');
  assert.ok(writeIPv6(b, 0, '::ffff:10.1.2.3'));
  assert.equal(b.toString('hex'), '00000000000000000000ffff0a010203');
  assert.equal(writeIPv6(b, 0, 'not an address'), false);
});
