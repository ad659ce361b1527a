// Wasm filters on the request path of a running Wisp: the built-in AssemblyScript filters
// built by `npm install`, real upstream, real client, real worker threads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createHmac } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { startUpstream, httpGet, freePort, waitFor, type TestUpstream } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const wasm = (name: string) => path.join(ROOT, 'filters', 'build', `${name}.wasm`);

const FIXTURES = path.join(ROOT, 'test', 'fixtures');

let up: TestUpstream;
let authz: TestUpstream;
let wisp: Wisp;
let port: number;
let stop: (() => Promise<void>) | undefined;

before(async () => {
  authz = await startUpstream((req, res) => {
    if (req.url === '/check') res.end('ok-by-authz');
    else {
      res.writeHead(403);
      res.end('no');
    }
  });
  ({ wisp, port, upstream: up, stop } = await startWispWithFilters({
    file: 'filters.test',
    workers: 2,
    routes: [
      { match: { prefix: '/noop/' }, filters: ['noop'] },
      { match: { prefix: '/tag/' }, filters: ['tag'] },
      { match: { prefix: '/secure/' }, filters: ['auth', 'limit', 'tag'] },
      { match: { prefix: '/plain/' } },
      { match: { prefix: '/probe-closed/' }, filters: ['probe-closed'] },
      { match: { prefix: '/probe-open/' }, filters: ['probe-open'] },
      { match: { prefix: '/skip/' }, filters: ['probe-skip', 'probe-skip-2'] },
      { match: { prefix: '/skip-mixed/' }, filters: ['probe-skip', 'probe-open'] },
    ],
    clusters: { authz: authz.port },
    filters: [
      { name: 'noop', wasm: wasm('noop') },
      { name: 'tag', wasm: wasm('add-header'), config: 'tagged' },
      { name: 'auth', wasm: wasm('auth'), config: { keys: ['sesame'] } },
      { name: 'limit', wasm: wasm('ratelimit'), config: { rate: 1, per: '1h', burst: 5, key: 'header:x-api-key' } },
      { name: 'probe-closed', wasm: path.join(FIXTURES, 'probe.wasm'), config: 'closed', failure: 'closed', deadline: '200ms' },
      { name: 'probe-open', wasm: path.join(FIXTURES, 'probe.wasm'), config: 'open', failure: 'open', deadline: '200ms' },
      { name: 'probe-skip', wasm: path.join(FIXTURES, 'probe.wasm'), config: 'skip-response-1' },
      { name: 'probe-skip-2', wasm: path.join(FIXTURES, 'probe.wasm'), config: 'skip-response-2' },
    ],
  }));
});

after(async () => {
  await stop?.();
  await authz?.close();
});

test('noop filter: the request passes untouched', async () => {
  const r = await httpGet(port, '/noop/a');
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).url, '/noop/a');
});

test('add-header filter: the upstream sees the header the filter added', async () => {
  const before = up.requests.length;
  const r = await httpGet(port, '/tag/a');
  assert.equal(r.status, 200);
  assert.equal(up.requests[before]!.headers['x-wisp-filter'], 'tagged');
});

test('chain: auth answers 401 locally and nothing reaches the upstream', async () => {
  const before = up.requests.length;
  const r = await httpGet(port, '/secure/a');
  assert.equal(r.status, 401);
  assert.ok(r.headers['www-authenticate']);
  assert.equal(up.requests.length, before);
});

test('chain: auth passes, ratelimit allows the burst then answers 429, tag runs after both', async () => {
  const before = up.requests.length;
  const statuses: number[] = [];
  // Concurrent, across two worker threads: the bucket is shared, so exactly the burst passes.
  const results = await Promise.all(Array.from({ length: 12 }, () => httpGet(port, '/secure/b', { headers: { 'x-api-key': 'sesame' } })));
  for (const r of results) statuses.push(r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 5, `statuses: ${statuses.join(',')}`);
  assert.equal(statuses.filter((s) => s === 429).length, 7);
  const limited = results.find((r) => r.status === 429)!;
  assert.ok(limited.headers['retry-after']);
  assert.equal(up.requests.length - before, 5);
  for (const req of up.requests.slice(before)) assert.equal(req.headers['x-wisp-filter'], 'tagged');
});

test('routes without filters are unaffected', async () => {
  const r = await httpGet(port, '/plain/x');
  assert.equal(r.status, 200);
});

test('admin: hot-load a filter by PUT; a corrupt module is refused and the old one keeps serving', async () => {
  const admin = wisp.adminPort();
  const list1 = JSON.parse((await httpGet(admin, '/filters')).body) as { name: string }[];
  assert.ok(list1.some((f) => f.name === 'tag'));

  const bad = await httpGet(admin, '/filters/tag', { method: 'PUT', body: Buffer.from('not wasm at all') });
  assert.ok(bad.status >= 400, `status ${bad.status}`);
  assert.match(bad.body, /wasm/i);
  const stillTagged = up.requests.length;
  assert.equal((await httpGet(port, '/tag/after-bad')).status, 200);
  assert.equal(up.requests[stillTagged]!.headers['x-wisp-filter'], 'tagged');

  // Replace "tag" (add-header) with noop's bytes: the header disappears for new requests.
  const put = await httpGet(admin, '/filters/tag', { method: 'PUT', body: fs.readFileSync(wasm('noop')) });
  assert.equal(put.status, 200, put.body);
  const idx = up.requests.length;
  assert.equal((await httpGet(port, '/tag/after-put')).status, 200);
  assert.equal(up.requests[idx]!.headers['x-wisp-filter'], undefined);

  // And reload from disk brings the configured module back.
  const rl = await httpGet(admin, '/filters/tag/reload', { method: 'POST' });
  assert.equal(rl.status, 200, rl.body);
  const idx2 = up.requests.length;
  await httpGet(port, '/tag/after-reload');
  assert.equal(up.requests[idx2]!.headers['x-wisp-filter'], 'tagged');
});

test('filter metrics are exported on /metrics', async () => {
  const m = await httpGet(wisp.adminPort(), '/metrics');
  assert.match(m.body, /wisp_filter_metric\{filter="limit"/);
});

test('proxy_http_call goes to a configured cluster; its answer decides the request', async () => {
  const before = up.requests.length;
  const ok = await httpGet(port, '/probe-open/call', { headers: { 'x-action': 'callout' } });
  assert.equal(ok.status, 200);
  assert.equal(up.requests[before]!.headers['x-callout'], 'ok-by-authz');
  const denied = await httpGet(port, '/probe-open/call', { headers: { 'x-action': 'callout', 'x-callout-path': '/deny' } });
  assert.equal(denied.status, 403);
  assert.equal(denied.headers['x-callout-status'], '403');
  assert.equal(up.requests.length, before + 1);
});

test('properties: destination.address / destination.port are the listener\'s; connection.id is not known on HTTP', async () => {
  const prop = async (name: string, int = false): Promise<string | undefined> => {
    const before = up.requests.length;
    const headers: Record<string, string> = { 'x-action': 'prop', 'x-prop': name };
    if (int) headers['x-prop-int'] = '1';
    const r = await httpGet(port, '/probe-open/prop', { headers });
    assert.equal(r.status, 200);
    return up.requests[before]!.headers['x-prop-value'] as string | undefined;
  };
  assert.equal(await prop('destination.address'), `127.0.0.1:${port}`);
  assert.equal(await prop('destination.port', true), String(port));
  assert.equal(await prop('source.ip'), '127.0.0.1');
  assert.equal(await prop('connection.id', true), '(none)');
});

test('proxy_http_call to a cluster the config does not define gets BadArgument (2) at the call', async () => {
  // probe's callout asks cluster "authz"; this Wisp has only "up".
  const w = await startWispWithFilters({
    file: 'filters.test (no authz)',
    filters: [{ name: 'gate', wasm: path.join(FIXTURES, 'probe.wasm'), config: 'gate' }],
    chain: ['gate'],
  });
  try {
    const r = await httpGet(w.port, '/call', { headers: { 'x-action': 'callout' } });
    assert.equal(r.status, 200);
    const seen = w.upstream.requests.find((q) => q.url === '/call')!;
    assert.equal(seen.headers['x-callout-error'], '2', 'BadArgument went back to the filter at the call');
  } finally {
    await w.stop();
  }
});

test('properties: the request, the filter, the route, the cluster and the listener as Envoy names them', async () => {
  const prop = async (name: string, extra: Record<string, string> = {}): Promise<string | undefined> => {
    const before = up.requests.length;
    const r = await httpGet(port, '/probe-open/prop?q=1', { headers: { 'x-action': 'prop', 'x-prop': name, ...extra } });
    assert.equal(r.status, 200);
    return up.requests[before]!.headers['x-prop-value'] as string | undefined;
  };
  assert.equal(await prop('request.path'), '/probe-open/prop?q=1');
  assert.equal(await prop('request.url_path'), '/probe-open/prop');
  assert.equal(await prop('request.query'), 'q=1');
  assert.equal(await prop('request.method'), 'GET');
  assert.equal(await prop('request.scheme'), 'http');
  assert.equal(await prop('request.host'), `127.0.0.1:${port}`);
  assert.equal(await prop('request.id', { 'x-request-id': 'req-42' }), 'req-42');
  assert.equal(await prop('request.headers.x-marker', { 'x-marker': 'm-1' }), 'm-1');
  assert.equal(await prop('plugin_name'), 'probe-open');
  assert.equal(await prop('route_name'), 'l#5');
  assert.equal(await prop('cluster_name'), 'up');
  assert.equal(await prop('listener_name'), 'l');
  assert.equal(await prop('no.such.property'), '(none)');
});

test('wisp.skip_phases: a chain whose filters all skip the response headers phase answers without it', async () => {
  const before = up.requests.length;
  const r = await httpGet(port, '/skip/a');
  assert.equal(r.status, 200);
  // The request phase ran (both filters), the response phase did not.
  assert.equal(up.requests[before]!.headers['x-probe'], 'skip-response-1,skip-response-2');
  assert.equal(r.headers['x-probe-response'], undefined);
  // One filter of the chain that does not skip: the phase runs, without the ones that skip.
  const mixed = await httpGet(port, '/skip-mixed/a');
  assert.equal(mixed.headers['x-probe-response'], 'open');
});

test('a trapping filter gets its failure policy; the next request works', async () => {
  const closed = await httpGet(port, '/probe-closed/t', { headers: { 'x-action': 'trap' } });
  assert.equal(closed.status, 503);
  assert.match(closed.body, /probe-closed/);
  const open = await httpGet(port, '/probe-open/t', { headers: { 'x-action': 'trap' } });
  assert.equal(open.status, 200);
  assert.equal((await httpGet(port, '/probe-closed/after')).status, 200);
});

test('a looping filter is stopped by its deadline; other routes keep serving', async () => {
  const pending = httpGet(port, '/probe-closed/loop', { headers: { 'x-action': 'loop' } });
  const plain = await httpGet(port, '/plain/during-loop');
  assert.equal(plain.status, 200);
  const looped = await pending;
  assert.equal(looped.status, 503);
  assert.equal((await httpGet(port, '/probe-closed/after-loop')).status, 200);
  const list = JSON.parse((await httpGet(wisp.adminPort(), '/filters')).body) as { name: string; faults: number }[];
  assert.ok(list.find((f) => f.name === 'probe-closed')!.faults >= 2);
});

test('breaker opens on Wisp\'s own 502s (connect failures reach on_log as response.code) and fails fast', async () => {
  const dead = await freePort();
  const w = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'b', address: '127.0.0.1:0', routes: [{ match: { prefix: '/' }, cluster: 'gone', filters: ['breaker'], retry: { attempts: 0 } }] }],
        clusters: [{ name: 'gone', endpoints: [`127.0.0.1:${dead}`], outlier: { consecutive_connect_failure: 0 } }],
        filters: [{ name: 'breaker', wasm: wasm('breaker'), config: { consecutive_failures: 3, cooldown: '30s' } }],
      },
      'breaker.test',
    ),
  );
  try {
    const p = w.listenerPort('b');
    for (let i = 0; i < 3; i++) assert.equal((await httpGet(p, `/x${i}`)).status, 502);
    // on_log runs after the answer went out: wait until the breaker has seen the third failure.
    const open = await waitFor(async () => {
      const r = await httpGet(p, '/after');
      return r.status === 503 ? r : null;
    }, 5000, 'breaker open');
    assert.equal(open!.headers['x-wisp-breaker'], 'open');
  } finally {
    await w.stop(0);
  }
});

test('breaker: opens on upstream 5xx, fails fast, then a half-open probe closes it again', async () => {
  let failing = true;
  const { upstream: flaky, port: p, stop: stopFlaky } = await startWispWithFilters({
    file: 'breaker-recovery.test',
    upstream: (_req, res) => {
      res.writeHead(failing ? 500 : 200);
      res.end(failing ? 'down' : 'up');
    },
    chain: ['breaker'],
    cluster: { name: 'flaky', outlier: { consecutive_5xx: 0 } },
    filters: [{ name: 'breaker', wasm: wasm('breaker'), config: { consecutive_failures: 3, cooldown: '300ms', half_open_requests: 1 } }],
  });
  try {
    for (let i = 0; i < 3; i++) assert.equal((await httpGet(p, `/f${i}`)).status, 500);
    // Open: answered by the filter at once, the upstream is not asked.
    const open = await waitFor(async () => {
      const r = await httpGet(p, '/while-open');
      return r.status === 503 && r.headers['x-wisp-breaker'] === 'open' ? r : null;
    }, 5000, 'breaker open');
    assert.ok(open);
    const asked = flaky.requests.length;
    assert.equal((await httpGet(p, '/still-open')).status, 503);
    assert.equal(flaky.requests.length, asked);
    // The upstream recovers; after the cool-down a probe goes through and closes the breaker.
    failing = false;
    await waitFor(async () => (await httpGet(p, '/probe')).status === 200, 5000, 'half-open probe succeeds');
    for (let i = 0; i < 5; i++) assert.equal((await httpGet(p, `/closed${i}`)).status, 200);
  } finally {
    await stopFlaky();
  }
});

function jwt(claims: Record<string, unknown>, secret: string): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

test('auth JWT through a running Wisp: valid, expired, bad signature, wrong audience', async () => {
  const secret = 'test-only-secret-0123456789';
  const { port: p, adminPort, stop: stopJwt } = await startWispWithFilters({
    file: 'jwt.test',
    upstream: up,
    chain: ['jwt'],
    filters: [{ name: 'jwt', wasm: wasm('auth'), config: { jwt: { secret, issuer: 'wisp-test', audiences: ['api'], forward_claims: { sub: 'x-user' } } } }],
  });
  try {
    const now = Math.floor(Date.now() / 1000);
    const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
    const before = up.requests.length;
    const ok = await httpGet(p, '/me', { headers: bearer(jwt({ sub: 'alice', iss: 'wisp-test', aud: 'api', exp: now + 60 }, secret)) });
    assert.equal(ok.status, 200);
    assert.equal(up.requests[before]!.headers['x-user'], 'alice');
    const expired = await httpGet(p, '/me', { headers: bearer(jwt({ sub: 'a', iss: 'wisp-test', aud: 'api', exp: now - 3600 }, secret)) });
    assert.equal(expired.status, 401);
    assert.match(String(expired.headers['www-authenticate']), /invalid_token/);
    const forged = await httpGet(p, '/me', { headers: bearer(jwt({ sub: 'a', iss: 'wisp-test', aud: 'api', exp: now + 60 }, 'another-secret')) });
    assert.equal(forged.status, 401);
    const wrongAud = await httpGet(p, '/me', { headers: bearer(jwt({ sub: 'a', iss: 'wisp-test', aud: 'billing', exp: now + 60 }, secret)) });
    assert.equal(wrongAud.status, 403);
    assert.equal(up.requests.length, before + 1, 'only the valid token reached the upstream');
    // The JWT secret never shows in /config.
    assert.ok(!(await httpGet(adminPort, '/config')).body.includes(secret));
  } finally {
    await stopJwt();
  }
});
