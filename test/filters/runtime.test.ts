// The built-in filters through Wisp's real filter runtime (proxy/filters/runtime.ts): real
// .wasm modules in real piscina workers, shared state across two workers.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { filterConfig, header, TestStream } from '../wasm/helpers.js';
import { wasmPath } from './harness.js';

const logs: string[] = [];
let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 2, log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
  await rt.load(filterConfig('noop', wasmPath('noop')));
  await rt.load(filterConfig('add-header', wasmPath('add-header'), { config: '' }));
  await rt.load(filterConfig('headers', wasmPath('headers'), {
    config: JSON.stringify({
      request: { set: { 'x-client': '%CLIENT_IP%', 'x-route': '%ROUTE%' }, remove: ['x-secret'] },
      response: { set: { 'x-cluster': '%PROPERTY(cluster_name)%' } },
    }),
  }));
  await rt.load(filterConfig('ratelimit', wasmPath('ratelimit'), { config: JSON.stringify({ rate: 1, per: '1h', burst: 3 }) }));
  await rt.load(filterConfig('auth', wasmPath('auth'), {
    config: JSON.stringify({ keys: ['k-1'], jwt: { secret: 'shh', forward_claims: { sub: 'x-user' } } }),
  }));
  await rt.load(filterConfig('breaker', wasmPath('breaker'), { config: JSON.stringify({ consecutive_failures: 2, cooldown: '1h' }) }));
});

after(async () => {
  await rt.close();
});

test('noop and add-header continue; add-header adds x-wisp-filter: 1', async () => {
  const s = new TestStream();
  const chain = rt.chain(['noop', 'add-header']);
  chain.requestHeaders(s);
  assert.deepEqual(await s.next(), { kind: 'continue', phase: 'request_headers' });
  assert.equal(s.header('x-wisp-filter'), '1');
  chain.done(s);
});

test('headers renders placeholders from the host properties', async () => {
  const s = new TestStream(['host', 'example.test', 'x-secret', 'x']);
  const chain = rt.chain(['headers']);
  chain.requestHeaders(s);
  assert.equal((await s.next()).kind, 'continue');
  assert.equal(s.header('x-client'), '127.0.0.1');
  assert.equal(s.header('x-route'), 'route-a');
  assert.equal(s.header('x-secret'), undefined);
  s.responseStatus = 200;
  s.responseHeaders = ['content-type', 'text/plain'];
  chain.responseHeaders(s);
  assert.equal((await s.next()).kind, 'continue');
  assert.equal(s.responseHeader('x-cluster'), 'cluster-a');
  chain.done(s);
});

test('ratelimit enforces one limit across both workers', async () => {
  const chain = rt.chain(['ratelimit']);
  const streams = Array.from({ length: 8 }, () => new TestStream());
  for (const s of streams) chain.requestHeaders(s);
  const outcomes = await Promise.all(streams.map((s) => s.next()));
  const passed = outcomes.filter((o) => o.kind === 'continue').length;
  const limited = outcomes.filter((o) => o.kind === 'local' && o.status === 429);
  assert.equal(passed, 3);
  assert.equal(limited.length, 5);
  const first = limited[0];
  if (first.kind === 'local') assert.equal(header(first.headers, 'ratelimit-policy'), '3;w=3600');
  for (const s of streams) chain.done(s);
});

test('auth: API key and JWT pass, nothing gets 401', async () => {
  const chain = rt.chain(['auth']);
  const withKey = new TestStream(['x-api-key', 'k-1']);
  chain.requestHeaders(withKey);
  assert.equal((await withKey.next()).kind, 'continue');

  const head = Buffer.from('{"alg":"HS256"}').toString('base64url');
  const body = Buffer.from('{"sub":"ada"}').toString('base64url');
  const sig = createHmac('sha256', 'shh').update(`${head}.${body}`).digest('base64url');
  const withJwt = new TestStream(['authorization', `Bearer ${head}.${body}.${sig}`]);
  chain.requestHeaders(withJwt);
  assert.equal((await withJwt.next()).kind, 'continue');
  assert.equal(withJwt.header('x-user'), 'ada');

  const none = new TestStream();
  chain.requestHeaders(none);
  const o = await none.next();
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') {
    assert.equal(o.status, 401);
    assert.ok(header(o.headers, 'www-authenticate'));
  }
  for (const s of [withKey, withJwt, none]) chain.done(s);
});

test('breaker opens after consecutive 5xx responses, whichever worker saw them', async () => {
  const chain = rt.chain(['breaker']);
  for (let i = 0; i < 2; i++) {
    const s = new TestStream();
    chain.requestHeaders(s);
    assert.equal((await s.next()).kind, 'continue');
    s.responseStatus = 503;
    s.responseHeaders = [];
    chain.responseHeaders(s);
    assert.equal((await s.next()).kind, 'continue');
    chain.done(s);
  }
  const s = new TestStream();
  chain.requestHeaders(s);
  const o = await s.next();
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') {
    assert.equal(o.status, 503);
    assert.equal(header(o.headers, 'x-wisp-breaker'), 'open');
  }
  chain.done(s);
  assert.deepEqual(logs.filter((l) => /^(error|critical)/i.test(l)), []);
});
