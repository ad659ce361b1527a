// End-to-end forwarding through a running Wisp: real upstreams, real clients.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { startUpstream, httpGet, rawRequest, waitFor, freePort, type TestUpstream } from '../helpers/net.js';

let api: TestUpstream;
let web: TestUpstream;
let wisp: Wisp;
let port: number;
let deadPort: number;

before(async () => {
  api = await startUpstream();
  web = await startUpstream((req, res, body) => {
    if (req.url === '/web/slow') {
      setTimeout(() => res.end('late'), 2000).unref();
      return;
    }
    if (req.url?.startsWith('/web/status/')) {
      res.writeHead(Number(req.url.slice(12)));
      res.end('status');
      return;
    }
    if (req.url === '/web/chunked') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part1-');
      setImmediate(() => res.end('part2'));
      return;
    }
    if (req.url === '/web/echo') {
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'x-from': 'web' });
    res.end('web:' + req.url);
  });
  deadPort = await freePort();
  wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [
          {
            name: 'main',
            address: '127.0.0.1:0',
            routes: [
              { match: { path: '/healthz' }, direct_response: { status: 200, body: 'ok' } },
              { match: { prefix: '/old/' }, redirect: { status: 301, prefix: '/new/' } },
              { match: { prefix: '/api/', headers: [{ name: 'x-version', exact: 'v2' }] }, cluster: 'web', rewrite: { prefix: '/web/v2/' } },
              { match: { prefix: '/api/' }, cluster: 'api' },
              { match: { prefix: '/web/' }, cluster: 'web', timeout: '500ms' },
              { match: { prefix: '/dead/' }, cluster: 'dead', retry: { attempts: 1, on: ['connect-failure'] } },
              { match: { host: '*.example.com', prefix: '/' }, cluster: 'web', rewrite: { prefix: '/web/host/' } },
            ],
          },
        ],
        clusters: [
          { name: 'api', endpoints: [`127.0.0.1:${api.port}`] },
          { name: 'web', endpoints: [`127.0.0.1:${web.port}`] },
          { name: 'dead', endpoints: [`127.0.0.1:${deadPort}`] },
        ],
      },
      'forwarding.test',
    ),
  );
  port = wisp.listenerPort('main');
});

after(async () => {
  await wisp.stop(0);
  await api.close();
  await web.close();
});

test('proxies GET to the matched cluster with forwarding headers', async () => {
  const before = api.requests.length;
  const r = await httpGet(port, '/api/users?id=7', { headers: { 'x-request-id': 'req-123', 'x-forwarded-for': '10.9.9.9' } });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { method: 'GET', url: '/api/users?id=7', bytes: 0 });
  const seen = api.requests[before]!;
  assert.equal(seen.headers['x-request-id'], 'req-123');
  assert.equal(seen.headers['x-forwarded-for'], '10.9.9.9, 127.0.0.1');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-forwarded-host'], `127.0.0.1:${port}`);
  assert.equal(seen.headers.host, `127.0.0.1:${port}`);
  assert.match(String(seen.headers.via), /wisp/);
});

test('generates x-request-id when absent and strips hop-by-hop headers', async () => {
  const before = api.requests.length;
  const r = await httpGet(port, '/api/x', { headers: { connection: 'x-secret-hop', 'x-secret-hop': '1', 'keep-alive': 'timeout=5', te: 'trailers' } });
  assert.equal(r.status, 200);
  const seen = api.requests[before]!;
  assert.match(String(seen.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.equal(seen.headers['x-secret-hop'], undefined);
  assert.equal(seen.headers['keep-alive'], undefined);
  assert.equal(seen.headers.te, undefined);
});

test('route order, header match and prefix rewrite', async () => {
  const v2 = await httpGet(port, '/api/things', { headers: { 'x-version': 'v2' } });
  assert.equal(v2.status, 200);
  assert.equal(v2.body, 'web:/web/v2/things');
  assert.equal(v2.headers['x-from'], 'web');
  const v1 = await httpGet(port, '/api/things');
  assert.equal(JSON.parse(v1.body).url, '/api/things');
});

test('wildcard host match', async () => {
  const r = await httpGet(port, '/page', { headers: { host: 'shop.example.com' } });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'web:/web/host/page');
  const miss = await httpGet(port, '/page', { headers: { host: 'example.com' } });
  assert.equal(miss.status, 404);
});

test('direct response, redirect and 404 come from Wisp itself', async () => {
  const h = await httpGet(port, '/healthz');
  assert.equal(h.status, 200);
  assert.equal(h.body, 'ok');
  const rd = await httpGet(port, '/old/a/b?q=1');
  assert.equal(rd.status, 301);
  assert.equal(rd.headers.location, `http://127.0.0.1:${port}/new/a/b?q=1`);
  const nf = await httpGet(port, '/nothing-here');
  assert.equal(nf.status, 404);
  assert.ok(nf.headers['x-request-id']);
});

test('POST body with content-length is streamed to the upstream', async () => {
  const body = Buffer.alloc(300_000, 'x');
  const r = await httpGet(port, '/web/echo', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(r.status, 200);
  assert.equal(r.body.length, body.length);
});

test('chunked request body (1 MB, in many writes) is re-framed and arrives whole', async () => {
  const part = Buffer.alloc(16 * 1024, 'c');
  const status = await new Promise<{ status: number; bytes: number }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/web/echo', method: 'POST', agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
    });
    req.on('error', reject);
    let i = 0;
    const pump = (): void => {
      while (i < 64) {
        i++;
        if (!req.write(part)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  assert.equal(status.status, 200);
  assert.equal(status.bytes, 64 * part.length);
  const seen = web.requests.at(-1)!;
  assert.equal(seen.headers['transfer-encoding'], 'chunked');
  assert.equal(seen.body.length, 64 * part.length);
});

test('chunked upstream response is streamed back complete', async () => {
  const r = await httpGet(port, '/web/chunked');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'part1-part2');
});

test('upstream status codes pass through', async () => {
  for (const s of [201, 204, 404, 500, 503]) {
    const r = await httpGet(port, `/web/status/${s}`);
    assert.equal(r.status, s);
  }
});

test('HEAD gets headers and no body', async () => {
  const r = await httpGet(port, '/api/head', { method: 'HEAD' });
  assert.equal(r.status, 200);
  assert.equal(r.body, '');
  // The upstream's length of the resource is kept (node:http answers HEAD like GET).
  assert.equal(r.headers['content-length'], String(JSON.stringify({ method: 'HEAD', url: '/api/head', bytes: 0 }).length));
});

test('connect failure answers 502 with x-request-id after the retry', async () => {
  const r = await httpGet(port, '/dead/x');
  assert.equal(r.status, 502);
  assert.ok(r.headers['x-request-id']);
  assert.match(r.body, /connect/);
});

test('route timeout answers 504', async () => {
  const r = await httpGet(port, '/web/slow');
  assert.equal(r.status, 504);
});

test('keep-alive: many requests over one client connection', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 20; i++) {
      const r = await new Promise<number>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: `/api/k${i}`, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      });
      assert.equal(r, 200);
    }
  } finally {
    agent.destroy();
  }
});

test('upstream dying mid-response resets the client instead of faking a complete body', async () => {
  const liar = net.createServer((s) => {
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly-a-part');
      setImmediate(() => s.destroy());
    });
  });
  await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
  const liarPort = (liar.address() as net.AddressInfo).port;
  const w = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'l', address: '127.0.0.1:0', routes: [{ match: { prefix: '/' }, cluster: 'liar' }] }],
        clusters: [{ name: 'liar', endpoints: [`127.0.0.1:${liarPort}`] }],
      },
      'liar.test',
    ),
  );
  try {
    const res = await rawRequest(w.listenerPort('l'), 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 3000 });
    assert.equal(res.closedByServer, true);
    // Whatever was sent, the client never received 100 body bytes.
    const bodyStart = res.text.indexOf('\r\n\r\n');
    if (bodyStart !== -1) assert.ok(res.text.length - bodyStart - 4 < 100);
  } finally {
    await w.stop(0);
    liar.close();
  }
});

test('upstream connections are kept alive and reused', async () => {
  const pool = wisp.clusters.get('api')!.endpoints[0]!.pool;
  const before = pool.stats().created;
  for (let i = 0; i < 30; i++) assert.equal((await httpGet(port, `/api/reuse${i}`)).status, 200);
  assert.ok(pool.stats().created - before <= 1, `created ${pool.stats().created - before} connections for 30 sequential requests`);
});

test('PROXY protocol v2: the client address it carries is used only when the listener trusts it', async () => {
  // v2 header: PROXY command, TCP over IPv4, 10.1.2.3:12345 → 127.0.0.1:8080.
  const header = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 10, 1, 2, 3, 127, 0, 0, 1, 0x30, 0x39, 0x1f, 0x90]);
  const request = Buffer.concat([header, Buffer.from('GET /api/pp HTTP/1.1\r\nHost: a\r\n\r\n')]);
  const trusting = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'pp', address: '127.0.0.1:0', proxy_protocol: true, routes: [{ match: { prefix: '/' }, cluster: 'api' }] }],
        clusters: [{ name: 'api', endpoints: [`127.0.0.1:${api.port}`] }],
      },
      'pp.test',
    ),
  );
  try {
    const before = api.requests.length;
    const r = await rawRequest(trusting.listenerPort('pp'), request);
    assert.equal(r.status, 200);
    assert.equal(api.requests[before]!.headers['x-forwarded-for'], '10.1.2.3');
  } finally {
    await trusting.stop(0);
  }
  const before = api.requests.length;
  const r = await rawRequest(port, request);
  assert.equal(r.status, 200);
  assert.equal(api.requests[before]!.headers['x-forwarded-for'], '127.0.0.1');
});

test('admin: live, ready, metrics, config, clusters', async () => {
  const admin = wisp.adminPort();
  assert.equal((await httpGet(admin, '/live')).status, 200);
  assert.equal((await httpGet(admin, '/ready')).status, 200);
  const m = await httpGet(admin, '/metrics');
  assert.equal(m.status, 200);
  assert.match(m.body, /wisp_requests_total\{listener="main",route="[^"]+",cluster="api",status_class="2xx"\} \d+/);
  assert.match(m.body, /wisp_request_duration_seconds_bucket/);
  assert.match(m.body, /wisp_upstream_connections/);
  const c = await httpGet(admin, '/clusters');
  const clusters = JSON.parse(c.body) as { name: string }[];
  assert.deepEqual(clusters.map((x) => x.name).sort(), ['api', 'dead', 'web']);
  const cfg = await httpGet(admin, '/config');
  assert.equal(cfg.status, 200);
  await waitFor(() => true);
});
