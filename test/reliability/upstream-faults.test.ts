// Upstream faults through a running Wisp: what status the client gets, which faults are
// retried (counted as arrivals at the upstream), and that no socket is left behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { freePort, httpGet, rawRequest, startUpstream, waitFor, type TestUpstream } from '../helpers/net.js';
import { openFds, ok, startFaultUpstream, type FaultUpstream } from './faults.js';

let fault: FaultUpstream;
let good: TestUpstream;
let wisp: Wisp;
let port: number;
let refusedPort: number;
let baseline = 0;

const RETRY_ALL = { attempts: 2, on: ['connect-failure', 'reset', 'timeout'] };

before(async () => {
  fault = await startFaultUpstream((sock) => sock.end(ok()));
  good = await startUpstream();
  refusedPort = await freePort();
  wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [
          {
            name: 'l',
            address: '127.0.0.1:0',
            routes: [
              { match: { prefix: '/retry/' }, cluster: 'fault', retry: RETRY_ALL, timeout: '3s', per_try_timeout: '300ms' },
              { match: { prefix: '/slow/' }, cluster: 'fault', timeout: '400ms' },
              { match: { prefix: '/mix/' }, cluster: 'fault', timeout: '2s' },
              { match: { prefix: '/refused/' }, cluster: 'refused' },
              { match: { prefix: '/' }, cluster: 'fault', timeout: '3s' },
            ],
          },
        ],
        clusters: [
          { name: 'fault', endpoints: [`127.0.0.1:${fault.port}`] },
          { name: 'refused', endpoints: [`127.0.0.1:${refusedPort}`], connect_timeout: '500ms' },
        ],
      },
      'upstream-faults.test',
    ),
  );
  port = wisp.listenerPort('l');
  // One request through each path so lazily created things (pools, timers) exist before the
  // baseline is taken.
  await httpGet(port, '/warm');
  await httpGet(port, '/refused/warm');
  await waitFor(() => fault.open() === 0, 5000, 'warm-up connections closed');
  baseline = openFds();
});

after(async () => {
  await wisp.stop(0);
  await fault.close();
  await good.close();
});

/** After a case: every socket the case opened is closed again, in Wisp and upstream, except
 * idle keep-alive connections in the pool (each is one fd here and one in the fault upstream,
 * which lives in this process too). */
async function assertNoLeak(what: string): Promise<void> {
  const pool = () => wisp.clusters.get('fault')!.endpoints[0]!.pool.stats();
  await waitFor(() => pool().busy === 0 && fault.open() === pool().idle, 5000, `${what}: upstream sockets closed or idle in the pool (open ${fault.open()}, pool ${JSON.stringify(pool())})`);
  await waitFor(() => openFds() <= baseline + 2 * pool().idle, 5000, `${what}: fds back to ${baseline} + 2 × ${pool().idle} idle (now ${openFds()})`);
}

function setFault(b: FaultUpstream['behaviour']): void {
  fault.behaviour = b;
  fault.arrivals.length = 0;
}

test('connection refused: 502, retried once by default (arrivals cannot be counted: nothing listens)', async () => {
  const r = await httpGet(port, '/refused/x');
  assert.equal(r.status, 502);
  assert.ok(r.headers['x-request-id']);
  const m = await httpGet(wisp.adminPort(), '/metrics');
  assert.match(m.body, /wisp_retries_total\{listener="l",route="[^"]*",cluster="refused"\} [1-9]/);
  await assertNoLeak('refused');
});

test('reset before response headers: 502; GET retried per policy, POST not retried', async () => {
  setFault((sock) => sock.resetAndDestroy());
  const g = await httpGet(port, '/retry/get');
  assert.equal(g.status, 502);
  assert.equal(fault.arrivals.length, 3, 'GET: first try + 2 retries on reset');
  fault.arrivals.length = 0;
  const p = await httpGet(port, '/retry/post', { method: 'POST', body: 'once' });
  assert.equal(p.status, 502);
  assert.equal(fault.arrivals.length, 1, 'POST: never replayed');
  fault.arrivals.length = 0;
  // Default route: a reset after the request was sent is not retried (a byte was sent).
  const d = await httpGet(port, '/plain');
  assert.equal(d.status, 502);
  assert.equal(fault.arrivals.length, 1);
  await assertNoLeak('reset before headers');
});

test('reset after response headers: the client connection is cut, never a complete-looking response', async () => {
  setFault((sock) => {
    sock.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial');
    setImmediate(() => sock.resetAndDestroy());
  });
  const r = await rawRequest(port, 'GET /retry/after HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 5000, idleMs: 3000 });
  assert.equal(r.closedByServer, true);
  const body = r.text.split('\r\n\r\n').slice(1).join('\r\n\r\n');
  assert.ok(body.length < 1000, 'never 1000 body bytes');
  assert.equal(fault.arrivals.length, 1, 'not retried once headers went to the client');
  await assertNoLeak('reset after headers');
});

test('upstream closes mid-body (FIN): client connection cut, body incomplete', async () => {
  setFault((sock) => sock.end('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhalf-a-body'));
  const r = await rawRequest(port, 'GET /midbody HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 5000, idleMs: 3000 });
  assert.equal(r.closedByServer, true);
  const body = r.text.split('\r\n\r\n').slice(1).join('\r\n\r\n');
  assert.ok(body.length < 1000);
  // And through a keep-alive client: the response errors rather than completing.
  await assert.rejects(httpGet(port, '/midbody2'));
  await assertNoLeak('mid-body close');
});

test('wrong Content-Length (short body, then close) is a client reset; a long body is not smuggled into the next response', async () => {
  setFault((sock) => sock.end('HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly-twenty-bytes...'));
  await assert.rejects(httpGet(port, '/short-cl'));
  // Content-Length 2 with 12 bytes sent: the client sees exactly 2 bytes, and the extra
  // bytes never show up as a response on a reused upstream connection.
  setFault((sock) => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 2'));
  const a = await httpGet(port, '/long-cl');
  assert.equal(a.status, 200);
  assert.equal(a.body, 'ok');
  setFault((sock) => sock.end(ok('second')));
  const b = await httpGet(port, '/after-long-cl');
  // The excess must either close that connection (this request then gets a fresh one and
  // 'second') or be rejected as garbage: never a spliced response.
  assert.ok((b.status === 200 && b.body === 'second') || b.status === 502, `got ${b.status} ${b.body}`);
  await assertNoLeak('wrong content-length');
});

test('slow response headers: per-try timeout → retried → 504 at the route timeout budget', async () => {
  const held: net.Socket[] = [];
  setFault((sock) => held.push(sock));
  const r = await httpGet(port, '/retry/slow');
  assert.equal(r.status, 504);
  assert.equal(fault.arrivals.length, 3, 'per_try_timeout 300ms × (1 + 2 retries)');
  for (const s of held) s.destroy();
  await assertNoLeak('slow headers');
});

test('an upstream that never answers: 504 at the route timeout, the upstream socket closed', async () => {
  setFault(() => {});
  const t0 = Date.now();
  const r = await httpGet(port, '/slow/never');
  assert.equal(r.status, 504);
  assert.ok(Date.now() - t0 >= 350, 'not before the 400 ms timeout');
  await assertNoLeak('never answers');
});

test('keep-alive race: the upstream closes a reused connection instead of answering: GETs are replayed on a fresh connection, 0 errors', async () => {
  // Each upstream connection answers one request with keep-alive, then closes (FIN, no bytes)
  // when the next request arrives on it: what a server whose idle timer fired does.
  const served = new WeakSet<net.Socket>();
  setFault((sock, head) => {
    if (served.has(sock)) return void sock.destroy();
    served.add(sock);
    // The last one closes after answering, so no idle connection is left in the pool.
    if (head.startsWith('GET /race19 ')) sock.end(ok('fresh'));
    else sock.write(ok('fresh'));
  });
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push((await httpGet(port, `/race${i}`)).status);
  assert.deepEqual(new Set(statuses), new Set([200]));
  // Each request after the first met a dead connection once, then a fresh one.
  assert.ok(fault.arrivals.length >= 20 && fault.arrivals.length <= 39, `arrivals ${fault.arrivals.length}`);
  // A POST whose body went out on the dead connection is not replayed: 502.
  setFault((sock, head) => {
    if (served.has(sock)) return void sock.destroy();
    served.add(sock);
    if (head.startsWith('POST /race-post-2 ')) sock.end(ok('fresh'));
    else sock.write(ok('fresh'));
  });
  assert.equal((await httpGet(port, '/race-post-1', { method: 'POST', body: 'one' })).status, 200);
  assert.equal((await httpGet(port, '/race-post-2', { method: 'POST', body: 'two' })).status, 502);
  assert.equal(fault.arrivals.length, 2, 'the POST reached the upstream once');
  await assertNoLeak('keep-alive race');
});

test('close-delimited body (no Content-Length, Connection: close) arrives whole; 1xx interim responses are skipped', async () => {
  const body = 'x'.repeat(100_000);
  setFault((sock) => {
    sock.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n');
    sock.end(`HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n${body}`);
  });
  const r = await httpGet(port, '/close-delimited');
  assert.equal(r.status, 200);
  assert.equal(r.body.length, body.length);
  await assertNoLeak('close-delimited');
});

// Bug (proxy/http/request-path.ts, onUpstreamError): the upstream client marks an error
// `responseStarted` once any byte of the upstream's head arrived (meaning "do not retry"),
// and the request path reads that flag as "part of the response went to the client" and
// resets the client connection. So an invalid status line, duplicate Content-Length, or a
// 200 KB head gives the client a reset with no status instead of README's 502.
const GARBAGE: Array<[string, string]> = [
  ['not HTTP at all', 'SSH-2.0-OpenSSH_9.6\r\n\r\n'],
  ['a non-numeric status', 'HTTP/1.1 abc Nope\r\nContent-Length: 0\r\n\r\n'],
  ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'],
  ['a bare-LF head', 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok'],
  ['a 200 KB response head', `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(200 * 1024)}\r\nContent-Length: 2\r\n\r\nok`],
];

for (const [what, bytes] of GARBAGE) {
  test(`garbage response (${what}): never passed on, Wisp keeps serving, no leak`, async () => {
    setFault((sock) => sock.write(bytes));
    const r = await rawRequest(port, 'GET /garbage HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 5000, idleMs: 1000 });
    assert.ok(r.status === 502 || (r.status === 0 && r.closedByServer), `got ${JSON.stringify(r.text.slice(0, 80))}`);
    setFault((sock) => sock.end(ok('alive')));
    assert.equal((await httpGet(port, '/alive')).body, 'alive');
    await assertNoLeak(what);
  });
  test(`garbage response (${what}): 502 as README says`, async () => {
    setFault((sock) => sock.write(bytes));
    const r = await rawRequest(port, 'GET /garbage HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 5000, idleMs: 1000 });
    assert.equal(r.status, 502);
    await assertNoLeak(what);
  });
}

test('300 concurrent requests, mixed faults (reset, silence, garbage, mid-body close, fine): no crash, no leak', async () => {
  setFault((sock, head) => {
    const n = Number(/\/mix\/(\d+) /.exec(head)?.[1] ?? 0) % 5;
    if (n === 0) sock.resetAndDestroy();
    else if (n === 1) return; // silence: the 2 s route timeout answers
    else if (n === 2) sock.write('garbage\r\n\r\n');
    else if (n === 3) sock.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort');
    else sock.write(ok('fine'));
  });
  const results = await Promise.all(
    Array.from({ length: 300 }, (_, i) => httpGet(port, `/mix/${i}`).then((r) => String(r.status), () => 'reset')),
  );
  const counts: Record<string, number> = {};
  for (const r of results) counts[r] = (counts[r] ?? 0) + 1;
  process.stdout.write(`# mixed-faults ${JSON.stringify(counts)}\n`);
  assert.equal(counts['200'], 60, 'every fine request served');
  assert.equal(counts['504'], 60, 'every silent upstream timed out');
  // reset and garbage → 502; mid-body close → client reset.
  assert.equal(counts['502'], 120);
  assert.equal(counts.reset, 60);
  await assertNoLeak('mixed faults');
});

test('a flapping endpoint with health checks and outlier ejection: traffic moves to the good one and comes back', async () => {
  let up = true;
  const flappy = await startFaultUpstream((sock) => {
    if (up) sock.write(ok('flappy'));
    else sock.resetAndDestroy();
  });
  const w = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'l', address: '127.0.0.1:0', routes: [{ match: { prefix: '/' }, cluster: 'c', retry: RETRY_ALL }] }],
        clusters: [
          {
            name: 'c',
            endpoints: [`127.0.0.1:${flappy.port}`, `127.0.0.1:${good.port}`],
            health_check: { path: '/healthz', interval: '100ms', timeout: '100ms', healthy_threshold: 1, unhealthy_threshold: 2 },
            outlier: { consecutive_5xx: 3, consecutive_connect_failure: 2, base_ejection: '300ms', max_ejection_percent: 50 },
          },
        ],
      },
      'flapping.test',
    ),
  );
  try {
    const p = w.listenerPort('l');
    const statuses = new Map<number, number>();
    const count = (s: number) => statuses.set(s, (statuses.get(s) ?? 0) + 1);
    // Three down/up cycles, 40 requests each half.
    for (let cycle = 0; cycle < 3; cycle++) {
      up = false;
      for (let i = 0; i < 40; i++) count((await httpGet(p, `/down${cycle}-${i}`)).status);
      up = true;
      const before = flappy.arrivals.length;
      // Health checks bring it back: it gets traffic again within a few seconds.
      await waitFor(async () => {
        count((await httpGet(p, `/up${cycle}`)).status);
        return flappy.arrivals.filter((h) => !h.startsWith('GET /healthz')).length > before;
      }, 5000, 'flappy endpoint back in rotation');
    }
    // Retries on reset to the other endpoint hide the flapping from clients.
    assert.deepEqual([...statuses.keys()], [200], `statuses: ${JSON.stringify([...statuses])}`);
    const c = await httpGet(w.adminPort(), '/metrics');
    assert.match(c.body, /wisp_outlier_ejections_total\{[^}]*\} [1-9]/);
  } finally {
    await w.stop(0);
    await flappy.close();
  }
});
