// Protocol sniffing on an L4 listener with the built-in filters/sniff wasm filter, driven by
// real clients: node:tls (SNI + ALPN, passed through to TLS upstreams), node:http2 prior
// knowledge, node:http, raw RESP, garbage, a byte-at-a-time ClientHello, silent clients and
// clients that vanish mid-detection.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import http2 from 'node:http2';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { SniffFilter } from '../../proxy/wasm/sniff.js';
import { freePort, waitFor, closerFor, listenLocal } from '../helpers/net.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SNIFF_WASM = path.resolve(here, '..', '..', '..', 'filters', 'build', 'sniff.wasm');
const certDir = path.resolve(here, '..', '..', '..', 'test', 'fixtures', 'certs');
const localhostCert = fs.readFileSync(path.join(certDir, 'localhost.crt'));
const localhostKey = fs.readFileSync(path.join(certDir, 'localhost.key'));
const otherCert = fs.readFileSync(path.join(certDir, 'other.test.crt'));
const otherKey = fs.readFileSync(path.join(certDir, 'other.test.key'));

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

function track<T extends net.Server | tls.Server | http.Server | http2.Http2Server>(server: T): T {
  closers.push(closerFor(server as net.Server));
  return server;
}

const listen = listenLocal;

/** A TLS server that answers each chunk with `tag:` + chunk; ALPN http/1.1 only. */
function tlsEcho(tag: string, cert: Buffer, key: string | Buffer): tls.Server {
  return track(tls.createServer({ cert, key, ALPNProtocols: ['http/1.1'] }, (s) => {
    s.on('error', () => {});
    s.on('data', (d) => s.write(`${tag}:${d.toString()}`));
  }));
}

const tlsA = tlsEcho('A', localhostCert, localhostKey);
const tlsB = tlsEcho('B', otherCert, otherKey);
let tlsAConnections = 0;
tlsA.on('connection', () => tlsAConnections++);
const h2 = track(http2.createServer((req, res) => res.end(`h2 ${req.url}`)));
const h1 = track(http.createServer((req, res) => res.end(`h1 ${req.url}`)));
const redis = track(net.createServer((s) => {
  s.on('error', () => {});
  s.on('data', () => s.write('+PONG\r\n'));
}));
const fallback = track(net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.write('fallback:');
  s.on('data', (d) => s.write(d));
  s.on('end', () => s.end());
}));
const ports = {
  tlsA: await listen(tlsA), tlsB: await listen(tlsB), h2: await listen(h2), h1: await listen(h1),
  redis: await listen(redis), fallback: await listen(fallback),
};

const routes = [
  { match: { protocol: 'tls', sni: ['localhost'] }, cluster: 'tlsA' },
  { match: { protocol: ['tls'], sni: ['*.test'] }, cluster: 'tlsB' },
  { match: { protocol: 'http2' }, cluster: 'h2' },
  { match: { protocol: 'http1' }, cluster: 'h1' },
  { match: { protocol: 'redis' }, cluster: 'redis' },
];
const sniffConfig = (tcpRoutes: typeof routes): ReturnType<typeof normalizeConfig> => normalizeConfig({
  admin: { address: '127.0.0.1:0' },
  workers: 1,
  filters: [{ name: 'sniff', wasm: SNIFF_WASM }],
  listeners: [
    { name: 'l4', address: `127.0.0.1:${l4Port}`, protocol: 'tcp', tcp: { cluster: 'fallback', sniff: 'sniff', first_bytes_timeout: '3s', routes: tcpRoutes } },
    { name: 'quick', address: `127.0.0.1:${quickPort}`, protocol: 'tcp', tcp: { cluster: 'fallback', sniff: 'sniff', first_bytes_timeout: '100ms', routes: tcpRoutes } },
  ],
  clusters: Object.entries(ports).map(([name, port]) => ({ name, endpoints: [`127.0.0.1:${port}`] })),
}, path.join(here, 'tcp-sniff.yaml'));
const l4Port = await freePort();
const quickPort = await freePort();
const wisp = await Wisp.start(sniffConfig(routes));
closers.unshift(() => wisp.stop(0));
const port = wisp.listenerPort('l4');

function tlsTalk(servername: string, ca: Buffer): Promise<{ reply: string; alpn: string | false; cn: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername, ca, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      s.write('hi');
    });
    s.on('error', reject);
    s.once('data', (d) => {
      const cn = String(s.getPeerCertificate().subject.CN);
      resolve({ reply: d.toString(), alpn: s.alpnProtocol ?? false, cn });
      s.destroy();
    });
  });
}

function rawTalk(p: number, data: Buffer | string, until: (got: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const c = net.connect(p, '127.0.0.1', () => {
      if (data.length > 0) c.write(data);
    });
    c.on('error', reject);
    c.on('data', (d) => {
      got += d.toString('latin1');
      if (until(got)) {
        c.destroy();
        resolve(got);
      }
    });
    c.on('close', () => resolve(got));
  });
}

/** The ClientHello a real node:tls client sends (captured by a plain TCP server). */
async function captureClientHello(servername: string): Promise<Buffer> {
  const server = net.createServer();
  const got = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (d) => {
    resolve(d);
    s.destroy();
  })));
  const p = await listen(server);
  const client = tls.connect({ port: p, host: '127.0.0.1', servername, ALPNProtocols: ['h2', 'http/1.1'], rejectUnauthorized: false });
  client.on('error', () => {});
  const hello = await got;
  client.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return hello;
}

test('sniff: TLS is routed by SNI and passed through (the upstream terminates, ALPN negotiated end to end)', async () => {
  const a = await tlsTalk('localhost', localhostCert);
  assert.equal(a.reply, 'A:hi');
  assert.equal(a.cn, 'localhost');
  assert.equal(a.alpn, 'http/1.1');
  const b = await tlsTalk('api.other.test', otherCert).catch((err: Error) => ({ reply: err.message, alpn: false, cn: '' }));
  // other.test's certificate does not name api.other.test; what matters is that tlsB answered.
  assert.ok(b.reply === 'B:hi' || /other\.test|altname|Hostname/i.test(b.reply), b.reply);
  const b2 = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'x.test', rejectUnauthorized: false }, () => s.write('yo'));
    s.on('error', reject);
    s.once('data', (d) => {
      resolve(`${d.toString()} ${String(s.getPeerCertificate().subject.CN)}`);
      s.destroy();
    });
  });
  assert.equal(b2, 'B:yo other.test');
  const text = await wisp.metrics.render();
  assert.match(text, /wisp_tcp_connections_total\{listener="l4",cluster="tlsA",protocol="tls"\} [1-9]/);
});

test('sniff: HTTP/2 prior knowledge from node:http2 → http2 route', async () => {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const body = await new Promise<string>((resolve, reject) => {
      const req = session.request({ ':path': '/two' });
      let data = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (data += d));
      req.on('end', () => resolve(data));
      req.on('error', reject);
      req.end();
    });
    assert.equal(body, 'h2 /two');
  } finally {
    session.destroy();
  }
});

test('sniff: plain http.get → http1 route (proxied as TCP)', async () => {
  const body = await new Promise<string>((resolve, reject) => {
    http.get({ port, host: '127.0.0.1', path: '/one', agent: false }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (data += d));
      res.on('end', () => resolve(data));
    }).on('error', reject);
  });
  assert.equal(body, 'h1 /one');
});

test('sniff: RESP bytes → redis; garbage → the default cluster', async () => {
  assert.equal(await rawTalk(port, '*1\r\n$4\r\nPING\r\n', (g) => g.endsWith('\r\n')), '+PONG\r\n');
  assert.equal(await rawTalk(port, Buffer.from([0x00, 0x01, 0x7f, 0x68, 0x69]), (g) => g.length >= 14), 'fallback:\x00\x01\x7fhi');
});

test('sniff: a ClientHello sent one byte at a time is still recognised and routed by SNI', async () => {
  const hello = await captureClientHello('localhost');
  assert.equal(hello[0], 0x16);
  const before = tlsAConnections;
  const reply = await new Promise<Buffer>((resolve, reject) => {
    const c = net.connect({ port, host: '127.0.0.1', noDelay: true }, async () => {
      for (let i = 0; i < hello.length; i++) {
        c.write(hello.subarray(i, i + 1));
        await new Promise((r) => setImmediate(r));
      }
    });
    c.on('error', reject);
    c.once('data', (d) => {
      resolve(d);
      c.destroy();
    });
  });
  assert.equal(reply[0], 0x16, 'the TLS upstream answered with a handshake record');
  assert.equal(tlsAConnections, before + 1);
});

test('sniff: a client that sends nothing goes to the default cluster after first_bytes_timeout', async () => {
  assert.equal(await rawTalk(wisp.listenerPort('quick'), '', (g) => g.length >= 9), 'fallback:');
});

test('sniff: clients that close mid-detection do no harm; the listener keeps accepting', async () => {
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.write(i % 2 === 0 ? '*1\r' : Buffer.from([0x16, 0x03, 0x01]));
        setImmediate(() => c.destroy());
      });
      c.on('close', () => resolve());
      c.on('error', () => {});
    });
  }
  // Half-close mid-detection: end of stream forces a verdict (unknown → default).
  const got = await new Promise<string>((resolve, reject) => {
    let data = '';
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => c.end('*1\r'));
    c.on('data', (d) => (data += d.toString()));
    c.on('error', reject);
    c.on('close', () => resolve(data));
  });
  assert.equal(got, 'fallback:*1\r');
  assert.equal(await rawTalk(port, '*1\r\n$4\r\nPING\r\n', (g) => g.endsWith('\r\n')), '+PONG\r\n');
  await waitFor(async () => /wisp_tcp_connections_active\{listener="l4",cluster="fallback",protocol="unknown"\} 0/.test(await wisp.metrics.render()), 5000, 'connections closed');
});

test('sniff: a reload swaps the tcp routes for new connections without rebinding', async () => {
  await wisp.apply(sniffConfig(routes.filter((r) => r.cluster !== 'redis')));
  try {
    assert.equal(wisp.listenerPort('l4'), port);
    assert.equal(await rawTalk(port, '*1\r\n$4\r\nPING\r\n', (g) => g.length >= 23), 'fallback:*1\r\n$4\r\nPING\r\n');
  } finally {
    await wisp.apply(sniffConfig(routes));
  }
  assert.equal(await rawTalk(port, '*1\r\n$4\r\nPING\r\n', (g) => g.endsWith('\r\n')), '+PONG\r\n');
});

test('sniff filter, in-process on real bytes: SNI and ALPN, and the protocols no client above speaks', async () => {
  const f = await SniffFilter.load(normalizeConfig({
    listeners: [{ name: 'x', port: 0, routes: [{ match: { prefix: '/' }, direct_response: { status: 200 } }] }],
    filters: [{ name: 'sniff', wasm: SNIFF_WASM }],
  }, path.join(here, 'x.yaml')).filters[0]!);
  const sniff = (bytes: Buffer | string, end = false): Record<string, string> => {
    const m = f.sniff(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes, end);
    assert.ok(m !== null);
    return Object.fromEntries(m);
  };
  const hello = await captureClientHello('Api.Example.COM');
  assert.deepEqual(sniff(hello), { protocol: 'tls', 'tls.sni': 'api.example.com', 'tls.alpn': 'h2,http/1.1' });
  assert.deepEqual(sniff(hello.subarray(0, 40)), {}, 'a partial ClientHello waits for more');
  assert.deepEqual(sniff(hello.subarray(0, 40), true), { protocol: 'tls' }, 'end of stream decides');
  assert.deepEqual(sniff('GE'), {});
  assert.deepEqual(sniff('GET / HTTP/1.1\r\n'), { protocol: 'http1' });
  assert.deepEqual(sniff('PRI * HTTP/2.0\r\n'), {}, 'a prefix of the h2 preface waits');
  assert.deepEqual(sniff('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), { protocol: 'http2' });
  assert.deepEqual(sniff('+OK\r\n'), { protocol: 'redis' });
  assert.deepEqual(sniff(':12'), {});
  assert.deepEqual(sniff('*x\r\n'), { protocol: 'unknown' });
  assert.deepEqual(sniff(Buffer.from([0xda, 0xbb, 0xc2, 0x00])), { protocol: 'dubbo' });
  assert.deepEqual(sniff(Buffer.from([0x01, 0x01, 0x00, 0x01, 0x01])), { protocol: 'bolt' });
  assert.deepEqual(sniff(Buffer.from([0x02, 0x01, 0x01, 0x00, 0x01, 0x01])), { protocol: 'bolt' });
  assert.deepEqual(sniff(Buffer.from([0x01, 0x07, 0x00, 0x01])), { protocol: 'unknown' });
  assert.deepEqual(sniff('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), { protocol: 'proxy' });
  assert.deepEqual(sniff(Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21])), { protocol: 'proxy' });
  assert.deepEqual(sniff(''), {});
  assert.deepEqual(sniff('', true), { protocol: 'unknown' });
  assert.deepEqual(sniff('hello world'), { protocol: 'unknown' });
});

// A misbehaving sniff filter, compiled from source here: 'L' loops forever (deadline), 'T'
// traps, anything else is "redis".
const BAD_SNIFF = `
@external("env", "proxy_set_property")
declare function proxy_set_property(pp: usize, pl: usize, vp: usize, vl: usize): i32;
@external("env", "proxy_get_buffer_bytes")
declare function proxy_get_buffer_bytes(t: i32, start: usize, max: usize, retPtr: usize, retLen: usize): i32;
const RET: usize = memory.data(16);
let spins: u64 = 0;
export function proxy_abi_version_0_2_1(): void {}
export function proxy_on_memory_allocate(size: usize): usize { return heap.alloc(size); }
export function proxy_on_downstream_data(ctx: u32, size: u32, eos: u32): u32 {
  if (size == 0) return 0;
  proxy_get_buffer_bytes(2, 0, 1, RET, RET + 4);
  const c = load<u8>(load<u32>(RET));
  if (c == 0x4c) { while (c != 0) spins++; }
  if (c == 0x54) unreachable();
  const k = String.UTF8.encode("protocol");
  const v = String.UTF8.encode("redis");
  proxy_set_property(changetype<usize>(k), k.byteLength, changetype<usize>(v), v.byteLength);
  return 0;
}
`;

test('sniff: a filter that traps or runs past its deadline sends the connection to the default cluster; the listener lives on', async () => {
  const asc = await import('assemblyscript/asc');
  const built = await asc.compileString(BAD_SNIFF, { runtime: 'incremental', optimizeLevel: 2, noAssert: true, use: ['abort='] });
  assert.equal(built.error, null, String(built.stderr));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-bad-sniff-'));
  const wasm = path.join(dir, 'bad.wasm');
  fs.writeFileSync(wasm, built.binary!);
  const bad = await Wisp.start(normalizeConfig({
    admin: { address: '127.0.0.1:0' },
    workers: 1,
    filters: [{ name: 'bad', wasm, deadline_ms: 50 }],
    listeners: [{ name: 'l4', address: '127.0.0.1:0', protocol: 'tcp', tcp: { cluster: 'fallback', sniff: 'bad', routes: [{ match: { protocol: 'redis' }, cluster: 'redis' }] } }],
    clusters: [
      { name: 'fallback', endpoints: [`127.0.0.1:${ports.fallback}`] },
      { name: 'redis', endpoints: [`127.0.0.1:${ports.redis}`] },
    ],
  }, path.join(dir, 'wisp.yaml')));
  try {
    const p = bad.listenerPort('l4');
    assert.equal(await rawTalk(p, 'x', (g) => g.endsWith('\r\n')), '+PONG\r\n');
    assert.equal(await rawTalk(p, 'Loop', (g) => g.length >= 13), 'fallback:Loop');
    assert.equal(await rawTalk(p, 'Trap', (g) => g.length >= 13), 'fallback:Trap');
    // Still accepting, and still sniffing once the instance is back (or falling back if the
    // runtime quarantined the filter after its faults).
    const again = await rawTalk(p, 'y', (g) => g.endsWith('\r\n') || g.length >= 10);
    assert.ok(again === '+PONG\r\n' || again === 'fallback:y', again);
  } finally {
    await bad.stop(0);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
