// Filters written against another proxy-wasm SDK — Solo.io's AssemblyScript SDK
// (@solo-io/proxy-runtime 0.1.8, the one WebAssembly Hub and Istio users wrote AS filters
// with), compiled by the AssemblyScript it was made for (0.14) — running in a real Wisp: real
// client, real upstream, config and answers checked byte for byte. Sources and build script:
// test/fixtures/solo/ (README: test/fixtures/third-party/README.md).
import assert from 'node:assert/strict';
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

const buildScript = pathToFileURL(fixture('solo/build.mjs'));

let up: TestUpstream;
let authz: TestUpstream;
let wisp: Wisp;
let port: number;
let stop: (() => Promise<void>) | undefined;

before(async () => {
  // Compiled here, from the npm-installed SDK and compiler (cached across runs by a stamp).
  const { buildSoloFilters } = (await import(buildScript.href)) as { buildSoloFilters: () => Promise<BuiltModule[]> };
  const built = await buildSoloFilters();
  const wasm = (name: string): string => {
    const m = built.find((b) => b.name === name);
    assert.ok(m, `test/fixtures/solo/${name}.ts was not built`);
    return m.wasm;
  };

  authz = await startUpstream((req, res) => {
    const user = req.headers.authorization === 'Bearer alice-token' ? 'alice' : null;
    res.writeHead(user !== null ? 200 : 403, { 'content-type': 'text/plain' });
    res.end(user ?? 'no');
  });
  const route = (prefix: string, filter: string) => ({ match: { prefix }, filters: [filter] });
  ({ wisp, port, upstream: up, stop } = await startWispWithFilters({
    file: 'solo-sdk.test',
    upstream: (req, res, body) => {
      // Sends its own x-served-by, which the response-header filter must replace.
      const out = JSON.stringify({ url: req.url, bytes: body.length });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out), 'x-served-by': 'upstream' });
      res.end(out);
    },
    routes: [
      route('/header', 'solo-response-header'),
      route('/key', 'solo-api-key'),
      route('/meter', 'solo-body-meter'),
      route('/authz', 'solo-authz-call'),
      route('/tick', 'solo-heartbeat'),
    ],
    clusters: { authz: authz.port },
    // root_id is the name each module registers its root context under (registerRootContext):
    // the SDK looks its factory up by the plugin_root_id property.
    filters: [
      { name: 'solo-response-header', wasm: wasm('response-header'), root_id: 'response-header', config: 'x-served-by: wisp-edge-7' },
      { name: 'solo-api-key', wasm: wasm('api-key'), root_id: 'api-key', config: 'k-3f9a' },
      { name: 'solo-body-meter', wasm: wasm('body-meter'), root_id: 'body-meter', config: 'uploads' },
      { name: 'solo-authz-call', wasm: wasm('authz-call'), root_id: 'authz-call', config: 'authz' },
      { name: 'solo-heartbeat', wasm: wasm('heartbeat'), root_id: 'heartbeat', config: '20' },
    ],
  }));
});

after(async () => {
  await stop?.();
  await authz?.close();
});

/** The requests the upstream saw since `from`, by url. */
function seenSince(u: TestUpstream, from: number): string[] {
  return u.requests.slice(from).map((r) => r.url);
}

test('the Solo SDK modules load as proxy-wasm ABI 0.2.0 (GET /filters)', async () => {
  const res = await httpGet(wisp.adminPort(), '/filters');
  assert.equal(res.status, 200);
  const list = JSON.parse(res.body) as { name: string; abi: string; wasm?: string }[];
  for (const name of ['solo-response-header', 'solo-api-key', 'solo-body-meter', 'solo-authz-call', 'solo-heartbeat']) {
    const f = list.find((x) => x.name === name);
    assert.ok(f, `${name} listed: ${res.body}`);
    assert.equal(f.abi, '0.2.0', name);
  }
});

test('response header from the plugin configuration (RootContext.getConfiguration, replace)', async () => {
  const res = await httpGet(port, '/header/a?x=1');
  assert.equal(res.status, 200);
  // The upstream's own value is replaced, not joined: exactly one value.
  assert.equal(res.headers['x-served-by'], 'wisp-edge-7');
  assert.equal(res.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(res.body), { url: '/header/a?x=1', bytes: 0 });
});

test('api key: 403 local response without the key or with a wrong one, forwarded without it with the right one', async () => {
  const from = up.requests.length;
  for (const headers of [{}, { 'x-api-key': 'k-wrong' }] as Record<string, string>[]) {
    const res = await httpGet(port, '/key/data', { headers });
    assert.equal(res.status, 403, JSON.stringify(headers));
    assert.equal(res.body, 'forbidden: missing or wrong x-api-key\n');
    assert.equal(res.headers['content-type'], 'text/plain');
    assert.equal(res.headers['www-authenticate'], 'ApiKey header="x-api-key"');
  }
  assert.deepEqual(seenSince(up, from), [], 'refused requests never reach the upstream');

  const ok = await httpGet(port, '/key/data', { headers: { 'x-api-key': 'k-3f9a', 'x-trace': 't1' } });
  assert.equal(ok.status, 200);
  assert.deepEqual(JSON.parse(ok.body), { url: '/key/data', bytes: 0 });
  const seen = up.requests[up.requests.length - 1];
  assert.equal(seen.url, '/key/data');
  assert.equal(seen.headers['x-api-key'], undefined, 'the credential is removed before the upstream');
  assert.equal(seen.headers['x-trace'], 't1');
});

test('body meter: counters the filter defines (named from its configuration) count requests and the request-body bytes it read', async () => {
  const body = Buffer.alloc(100_000, 'b');
  const post = await httpGet(port, '/meter/upload', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(post.status, 200);
  assert.deepEqual(JSON.parse(post.body), { url: '/meter/upload', bytes: 100_000 }, 'the body reached the upstream whole');
  const get = await httpGet(port, '/meter/again');
  assert.equal(get.status, 200);

  const text = (await httpGet(wisp.adminPort(), '/metrics')).body;
  assert.equal(filterMetricIn(text, 'solo-body-meter', 'uploads_requests'), 2, text);
  assert.equal(filterMetricIn(text, 'solo-body-meter', 'uploads_request_body_bytes'), 100_000, text);
});

test('timer: ticks set from the configuration run in the root context, counted and visible to streams', async () => {
  const ticks = await waitFor(async () => {
    const n = (await filterMetric(wisp.adminPort(), 'solo-heartbeat', 'heartbeat_ticks')) ?? 0;
    return n >= 3 ? n : 0;
  }, 10_000, 'three heartbeat ticks (20 ms period)');
  const res = await httpGet(port, '/tick/now');
  assert.equal(res.status, 200);
  // The response is answered after the scrape above: at least as many ticks were seen.
  assert.ok(Number(res.headers['x-heartbeat-ticks']) >= ticks, `x-heartbeat-ticks ${res.headers['x-heartbeat-ticks']} < ${ticks}`);
  // proxy_get_current_time_nanoseconds is wall-clock time (generous: the suite shares 2 cores).
  const last = Number(res.headers['x-heartbeat-last-ms']);
  assert.ok(Math.abs(Date.now() - last) < 60_000, `x-heartbeat-last-ms ${last} vs now ${Date.now()}`);
});

// proxy-wasm-cpp-host (Envoy, Istio) issues every proxy_http_call on the caller's root context
// and answers it with the root's id; the Solo SDK looks the callback up on that root context
// (with a stream's id it aborts: "unexpected upcast" -> proc_exit(255) -> 503). Wisp does the
// same since this test was written.

test('external authorization: no credential is a 401 local response, with no call made', async () => {
  const from = up.requests.length;
  const checks = authz.requests.length;
  const anonymous = await httpGet(port, '/authz/profile');
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.body, 'unauthorized\n');
  assert.equal(anonymous.headers['content-type'], 'text/plain');
  assert.equal(authz.requests.length, checks, 'refused before any call');
  assert.deepEqual(seenSince(up, from), []);
});

test('external authorization through proxy_http_call to a cluster: user passed upstream, or 401', async () => {
  const from = up.requests.length;
  const checks = authz.requests.length;
  const ok = await httpGet(port, '/authz/profile', { headers: { authorization: 'Bearer alice-token' } });
  assert.equal(ok.status, 200, ok.body);
  const seen = up.requests[up.requests.length - 1];
  assert.equal(seen.url, '/authz/profile');
  assert.equal(seen.headers['x-auth-user'], 'alice');
  const check = authz.requests[checks];
  assert.equal(check.method, 'GET');
  assert.equal(check.url, '/check');
  assert.equal(check.headers.authorization, 'Bearer alice-token');

  const denied = await httpGet(port, '/authz/profile', { headers: { authorization: 'Bearer mallory' } });
  assert.equal(denied.status, 401);
  assert.equal(denied.body, 'unauthorized\n');
  assert.equal(denied.headers['content-type'], 'text/plain');
  assert.equal(authz.requests.length, checks + 2, 'one check per credentialed request');
  assert.deepEqual(seenSince(up, from), ['/authz/profile'], 'only the authorized request reached the upstream');
});
