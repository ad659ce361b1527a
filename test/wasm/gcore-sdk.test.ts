// Filters written against a second third-party proxy-wasm SDK — G-Core's AssemblyScript SDK
// (@gcoredev/proxy-wasm-sdk-as 1.2.3, the maintained fork FastEdge CDN users write filters
// with), compiled by the project's AssemblyScript 0.28 with @assemblyscript/wasi-shim, as the
// SDK asks — running in a real Wisp with two workers: real client, real upstreams, answers
// checked byte for byte. Sources and build script: test/fixtures/gcore/ (README:
// test/fixtures/third-party/README.md).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { Wisp } from '../../proxy/server.js';
import { filterMetric, filterMetricIn, httpGet, startUpstream, type TestUpstream, waitFor } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';
import { fixture } from './helpers.js';

interface BuiltModule {
  name: string;
  wasm: string;
  rebuilt: boolean;
}

const FILTERS = ['gcore-request-rewrite', 'gcore-path-guard', 'gcore-client-quota', 'gcore-body-rewrite', 'gcore-geo-gate', 'gcore-status-tally'];
const INTERNAL = 'http://10.1.2.3:8080';
const PUBLIC = 'https://cdn.example.com';

let built: BuiltModule[];
let up: TestUpstream;
let geo: TestUpstream;
let wisp: Wisp;
let port: number;
let stop: (() => Promise<void>) | undefined;

/** What the origin answers on /pages/*: text that names its internal address, in pieces. */
function servePage(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.url === '/pages/logo.png') {
    const png = Buffer.from(`PNG ${INTERNAL}/logo.png`);
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length });
    res.end(png);
    return;
  }
  // Written in three writes, the address split across the first two: the filter must hold
  // the whole body to find it.
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'transfer-encoding': 'chunked' });
  res.write(`<a href="${INTERNAL}/a">a</a> <a href="http://10.1.`);
  res.write(`2.3:8080/b">b</a>`);
  res.end(` <img src="${INTERNAL}/logo.png">\n`);
}

before(async () => {
  // Compiled here, from the npm-installed SDK and compiler (cached across runs by a stamp).
  const { buildGcoreFilters } = (await import(pathToFileURL(fixture('gcore/build.mjs')).href)) as { buildGcoreFilters: () => Promise<BuiltModule[]> };
  built = await buildGcoreFilters();
  const wasm = (name: string): string => {
    const m = built.find((b) => b.name === name);
    assert.ok(m, `test/fixtures/gcore/${name}.ts was not built`);
    return m.wasm;
  };

  geo = await startUpstream((req, res) => {
    const ip = new URL(req.url ?? '/', 'http://geo').searchParams.get('ip');
    const country = ip === '203.0.113.7' ? 'nl' : ip === '198.51.100.9' ? 'KP' : null;
    res.writeHead(country !== null ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(country ?? 'unknown ip');
  });
  const route = (prefix: string, filter: string) => ({ match: { prefix }, filters: [filter] });
  ({ wisp, port, upstream: up, stop } = await startWispWithFilters({
    file: 'gcore-sdk.test',
    // Two workers, two VMs per filter: the quota's shared data is what they agree on.
    workers: 2,
    upstream: (req, res, body) => {
      if (req.url?.startsWith('/pages/')) return servePage(req, res);
      if (req.url?.startsWith('/tally/status/')) {
        const code = Number(req.url.slice('/tally/status/'.length));
        res.writeHead(code, { 'content-type': 'text/plain', ...(code === 302 ? { location: '/tally/elsewhere' } : {}) });
        res.end(`status ${code}`);
        return;
      }
      const out = JSON.stringify({ url: req.url, bytes: body.length });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    },
    routes: [
      route('/v1', 'gcore-request-rewrite'),
      route('/guard', 'gcore-path-guard'),
      route('/quota', 'gcore-client-quota'),
      route('/pages', 'gcore-body-rewrite'),
      route('/geo', 'gcore-geo-gate'),
      route('/tally', 'gcore-status-tally'),
    ],
    clusters: { geo: geo.port },
    // The SDK keeps one root context per VM whatever its id, so no root_id is needed.
    filters: [
      { name: 'gcore-request-rewrite', wasm: wasm('request-rewrite'), config: 'set x-tenant: acme\nremove x-debug-token\nprefix /v1/ /api/v1/\n' },
      { name: 'gcore-path-guard', wasm: wasm('path-guard'), config: '/guard/admin, /guard/internal/' },
      { name: 'gcore-client-quota', wasm: wasm('client-quota'), config: '3' },
      { name: 'gcore-body-rewrite', wasm: wasm('body-rewrite'), config: `${INTERNAL} => ${PUBLIC}` },
      { name: 'gcore-geo-gate', wasm: wasm('geo-gate'), config: 'geo KP IR' },
      { name: 'gcore-status-tally', wasm: wasm('status-tally'), config: 'edge' },
    ],
  }));
});

after(async () => {
  await stop?.();
  await geo?.close();
});

function metric(filter: string, name: string): Promise<number | undefined> {
  return filterMetric(wisp.adminPort(), filter, name);
}

/** Lines this process writes to stderr (Wisp's log) until stop() is called. */
function captureStderr(): { lines: string[]; stop: () => void } {
  const lines: string[] = [];
  const original = process.stderr.write;
  process.stderr.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
    lines.push(String(chunk));
    return (original as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof process.stderr.write;
  return { lines, stop: () => void (process.stderr.write = original) };
}

/** The requests the upstream saw since `from`, by url. */
function seenSince(u: TestUpstream, from: number): string[] {
  return u.requests.slice(from).map((r) => r.url);
}

test('the G-Core SDK modules load as proxy-wasm ABI 0.2.1 (GET /filters)', async () => {
  const res = await httpGet(wisp.adminPort(), '/filters');
  assert.equal(res.status, 200);
  const list = JSON.parse(res.body) as { name: string; abi: string }[];
  for (const name of FILTERS) {
    const f = list.find((x) => x.name === name);
    assert.ok(f, `${name} listed: ${res.body}`);
    assert.equal(f.abi, '0.2.1', name);
  }
});

test('request rewrite from the plugin configuration: header set (replaced or added), header removed, path prefix rewritten', async () => {
  const from = up.requests.length;
  const res = await httpGet(port, '/v1/users?id=3', { headers: { 'x-tenant': 'someone-else', 'x-debug-token': 'secret', 'x-trace': 't1' } });
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.body), { url: '/api/v1/users?id=3', bytes: 0 });
  assert.equal(res.headers['x-rewritten-from'], '/v1/users?id=3', 'the stream context kept the original path for the response');
  const seen = up.requests[from];
  assert.equal(seen.url, '/api/v1/users?id=3');
  assert.equal(seen.headers['x-tenant'], 'acme', 'replaced: one value, the configured one');
  assert.equal(seen.headers['x-debug-token'], undefined);
  assert.equal(seen.headers['x-trace'], 't1');

  // Without the header the client sent: replace adds it (Envoy's setCopy); a path outside the prefix is left alone.
  const bare = await httpGet(port, '/v1');
  assert.equal(bare.status, 200);
  assert.equal(bare.headers['x-rewritten-from'], undefined);
  const seenBare = up.requests[from + 1];
  assert.equal(seenBare.url, '/v1');
  assert.equal(seenBare.headers['x-tenant'], 'acme');
  assert.equal(up.requests.length, from + 2);
});

test('a filter that never reads bodies still gets them (the SDK exports proxy_on_request_body): a 300 KB POST arrives whole', async () => {
  const body = Buffer.alloc(300_000);
  for (let i = 0; i < body.length; i++) body[i] = i % 251;
  const from = up.requests.length;
  const res = await httpGet(port, '/v1/upload', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.body), { url: '/api/v1/upload', bytes: 300_000 });
  assert.ok(up.requests[from].body.equals(body), 'the same bytes, in order');
});

test('path guard: 403 JSON local response for denied prefixes (query ignored), logged through WASI stdout; other paths forwarded', async () => {
  const from = up.requests.length;
  const stderr = captureStderr();
  let denied;
  try {
    denied = await httpGet(port, '/guard/admin/users?as=root');
    // The SDK's log() writes "[WARN]: ..." to stdout (fd_write); Wisp logs a filter's stdout at info, under its name.
    const line = await waitFor(() => stderr.lines.find((l) => l.includes('path guard denied')) ?? '', 5000, 'the refusal in the log');
    assert.ok(line.includes('[WARN]: path guard denied /guard/admin/users by rule /guard/admin') && line.includes('gcore-path-guard'), line);
  } finally {
    stderr.stop();
  }
  assert.equal(denied.status, 403);
  assert.equal(denied.headers['content-type'], 'application/json');
  assert.equal(denied.headers['cache-control'], 'no-store');
  assert.equal(denied.body, '{"error":"forbidden","path":"/guard/admin/users","rule":"/guard/admin"}\n');
  const internal = await httpGet(port, '/guard/internal/metrics');
  assert.equal(internal.status, 403);
  assert.equal(internal.body, '{"error":"forbidden","path":"/guard/internal/metrics","rule":"/guard/internal/"}\n');
  assert.deepEqual(seenSince(up, from), [], 'denied requests never reach the upstream');

  const allowed = await httpGet(port, '/guard/public?q=/guard/admin');
  assert.equal(allowed.status, 200);
  assert.deepEqual(JSON.parse(allowed.body), { url: '/guard/public?q=/guard/admin', bytes: 0 });
  assert.deepEqual(seenSince(up, from), ['/guard/public?q=/guard/admin']);
});

test('client quota in shared data (CAS) across two workers: exactly the quota admitted, then 429; clients counted apart', async () => {
  const before = { admitted: (await metric('gcore-client-quota', 'quota_admitted')) ?? 0, rejected: (await metric('gcore-client-quota', 'quota_rejected')) ?? 0 };
  const from = up.requests.length;
  // The first request creates the key (the ABI has no insert-if-absent: see the filter).
  const first = await httpGet(port, '/quota/a', { headers: { 'x-client-id': 'team-a' } });
  assert.equal(first.status, 200);
  assert.equal(first.headers['x-quota-remaining'], '2');
  // Then eight at once, spread over both workers: the compare-and-swap admits exactly two more.
  const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => httpGet(port, `/quota/b${i}`, { headers: { 'x-client-id': 'team-a' } })));
  const admitted = burst.filter((r) => r.status === 200);
  const refused = burst.filter((r) => r.status === 429);
  assert.equal(admitted.length, 2, burst.map((r) => `${r.status} ${r.body}`).join(' | '));
  assert.equal(refused.length, 6);
  assert.deepEqual(admitted.map((r) => r.headers['x-quota-remaining']).sort(), ['0', '1']);
  for (const r of refused) {
    assert.equal(r.body, 'quota of 3 requests used up for team-a\n');
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.headers['retry-after'], '3600');
    assert.equal(r.headers['grpc-status'], undefined, 'the gRPC status the filter passed applies to gRPC requests only');
  }
  assert.equal(up.requests.length, from + 3, 'only admitted requests reached the upstream');

  const other = await httpGet(port, '/quota/c', { headers: { 'x-client-id': 'team-b' } });
  assert.equal(other.status, 200);
  assert.equal(other.headers['x-quota-remaining'], '2');

  assert.equal(await metric('gcore-client-quota', 'quota_admitted'), before.admitted + 4);
  assert.equal(await metric('gcore-client-quota', 'quota_rejected'), before.rejected + 6);
});

test('response body rewrite: the whole text body held, every occurrence replaced (one split across writes), length recomputed', async () => {
  const before = (await metric('gcore-body-rewrite', 'body_rewrites')) ?? 0;
  const res = await httpGet(port, '/pages/index.html');
  assert.equal(res.status, 200);
  assert.equal(res.body, `<a href="${PUBLIC}/a">a</a> <a href="${PUBLIC}/b">b</a> <img src="${PUBLIC}/logo.png">\n`);
  assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
  if (res.headers['content-length'] !== undefined) assert.equal(Number(res.headers['content-length']), Buffer.byteLength(res.body));
  assert.equal(await metric('gcore-body-rewrite', 'body_rewrites'), before + 3);

  // Not text: passed as the origin sent it, content-length kept.
  const png = await httpGet(port, '/pages/logo.png');
  assert.equal(png.status, 200);
  assert.equal(png.body, `PNG ${INTERNAL}/logo.png`);
  assert.equal(png.headers['content-length'], String(Buffer.byteLength(png.body)));
  assert.equal(await metric('gcore-body-rewrite', 'body_rewrites'), before + 3);
});

test('geo gate through proxy_http_call to a cluster: country passed upstream, blocked country 451, failed lookup fails open', async () => {
  const from = up.requests.length;
  const lookups = geo.requests.length;

  const nl = await httpGet(port, '/geo/page', { headers: { 'x-forwarded-for': '203.0.113.7, 10.0.0.1' } });
  assert.equal(nl.status, 200, nl.body);
  assert.equal(up.requests[from].headers['x-client-country'], 'NL');
  const lookup = geo.requests[lookups];
  assert.equal(lookup.method, 'GET');
  assert.equal(lookup.url, '/country?ip=203.0.113.7');

  const kp = await httpGet(port, '/geo/page', { headers: { 'x-forwarded-for': '198.51.100.9' } });
  assert.equal(kp.status, 451);
  assert.equal(kp.body, 'not available in KP\n');
  assert.equal(kp.headers['content-type'], 'text/plain');

  // No x-forwarded-for: the source.ip property; the lookup service does not know it (404).
  const local = await httpGet(port, '/geo/other');
  assert.equal(local.status, 200, local.body);
  assert.equal(geo.requests[lookups + 2].url, '/country?ip=127.0.0.1');
  assert.equal(up.requests[from + 1].headers['x-client-country'], 'ZZ');

  assert.equal(geo.requests.length, lookups + 3, 'one lookup per request');
  assert.deepEqual(seenSince(up, from), ['/geo/page', '/geo/other'], 'the blocked request never reached the upstream');
});

test('status tally: proxy_on_log enqueues each response code, the root drains the shared queue on proxy_on_queue_ready into counters', async () => {
  const classes = ['2xx', '3xx', '4xx', '5xx'];
  const tally = async () => {
    const text = (await httpGet(wisp.adminPort(), '/metrics')).body;
    return classes.map((c) => filterMetricIn(text, 'gcore-status-tally', `edge_${c}`) ?? -1);
  };
  const before = await tally();
  assert.ok(before.every((n) => n >= 0), `counters defined at configure: ${before}`);
  const codes = [200, 201, 302, 404, 404, 503];
  for (const code of codes) {
    const res = await httpGet(port, `/tally/status/${code}`);
    assert.equal(res.status, code);
    assert.equal(res.body, `status ${code}`);
  }
  const want = [before[0] + 2, before[1] + 1, before[2] + 2, before[3] + 1];
  // proxy_on_log runs after the response is sent, and the drain after that: wait for it.
  await waitFor(async () => (await tally()).every((n, i) => n === want[i]), 5000, `tally ${want}`);
  assert.deepEqual(await tally(), want);
});

// FastEdge extends the ABI with its own host functions (secrets, dictionary, KV store). A module
// that uses one cannot run on a plain proxy-wasm host: Envoy refuses to load it ("Failed to load
// Wasm module due to a missing import: env.proxy_get_secret"), and so does Wisp, naming it.
test('a FastEdge-only module (getSecret -> env.proxy_get_secret) is refused on hot load; the running generation keeps serving', async () => {
  const token = built.find((b) => b.name === 'origin-token');
  assert.ok(token, 'test/fixtures/gcore/origin-token.ts was not built');
  const put = await httpGet(wisp.adminPort(), '/filters/gcore-request-rewrite', { method: 'PUT', body: readFileSync(token.wasm) });
  assert.equal(put.status, 400, put.body);
  assert.match(put.body, /unknown import env\.proxy_get_secret/);

  const res = await httpGet(port, '/v1/still');
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-rewritten-from'], '/v1/still', 'the request rewrite still answers');
  assert.equal(up.requests[up.requests.length - 1].headers.authorization, undefined);
});
