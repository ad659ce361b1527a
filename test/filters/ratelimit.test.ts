// ratelimit on Wisp's host (wisp/testing): token bucket maths, shared state across "workers"
// (two instances on one shared state), CAS retries, keys, shadow mode, metrics, config errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FilterHarness, HarnessSharedState, load, type HeaderPairs } from './harness.js';

const SECOND = 1_000_000_000n;
const REQ: HeaderPairs = [[':method', 'GET'], [':path', '/'], [':authority', 'a']];

function host(config: object, sharedState = new HarnessSharedState()): Promise<FilterHarness> {
  return load('ratelimit', { config, sharedState, properties: { 'source.address': '10.0.0.1:1234', route_name: 'r1' } });
}
const req = (headers: HeaderPairs = REQ) => ({ headers });

test('allows burst, then answers 429 with retry-after and RateLimit headers, then refills', async () => {
  const h = await host({ rate: 1, per: '1s', burst: 3 });
  for (let i = 0; i < 3; i++) assert.equal(h.exchange(req()).local, null, `request ${i} limited`);
  const { action, local } = h.exchange(req());
  assert.notEqual(action, 'continue');
  assert.ok(local);
  assert.equal(local.status, 429);
  const hdr = (n: string) => local.headers.find(([k]) => k === n)?.[1];
  assert.equal(hdr('retry-after'), '1');
  assert.equal(hdr('ratelimit-policy'), '3;w=1');
  assert.equal(hdr('ratelimit'), 'limit=3, remaining=0, reset=1');

  h.nowNs += SECOND / 2n;
  assert.equal(h.exchange(req()).status, 429, 'half a token is not a token');
  h.nowNs += SECOND / 2n;
  assert.equal(h.exchange(req()).local, null, 'one token after one second');
  assert.equal(h.exchange(req()).status, 429);

  h.nowNs += 100n * SECOND;
  for (let i = 0; i < 3; i++) assert.equal(h.exchange(req()).local, null);
  assert.equal(h.exchange(req()).status, 429, 'refill is capped at burst');
  assert.equal(h.metrics()['ratelimit_allowed.client_ip'], 7, 'the default key class');
  assert.equal(h.metrics()['ratelimit_limited.client_ip'], 4);
});

test('metrics per key class: the key in canonical form (aliases resolved, header names lower-cased)', async () => {
  const shared = new HarnessSharedState();
  const byIp = await load('ratelimit', { name: 'rl', sharedState: shared, config: { rate: 1, per: '1h', burst: 1, key: 'remote_address' } });
  const byKey = await load('ratelimit', { name: 'rl', sharedState: shared, config: { rate: 1, per: '1h', burst: 2, key: [' client_ip', 'header:X-Api-Key'] } });
  const byProperty = await load('ratelimit', { name: 'rl', sharedState: shared, config: { rate: 1, per: '1h', burst: 1, key: 'route+property:node.id' } });
  byIp.exchange(req());
  byIp.exchange(req());
  for (let i = 0; i < 3; i++) byKey.exchange(req([...REQ, ['x-api-key', 'k1']]));
  byProperty.exchange(req());
  const m = byIp.metrics();
  assert.equal(m['ratelimit_allowed.client_ip'], 1);
  assert.equal(m['ratelimit_limited.client_ip'], 1);
  assert.equal(m['ratelimit_allowed.client_ip+header:x-api-key'], 2);
  assert.equal(m['ratelimit_limited.client_ip+header:x-api-key'], 1);
  assert.equal(m['ratelimit_allowed.route+property:node.id'], 1);
  assert.equal(m['ratelimit_limited.route+property:node.id'], 0);
  assert.equal(m.ratelimit_allowed, undefined, 'no totals beside the classes');
});

test('two workers on one shared state enforce one limit', async () => {
  const shared = new HarnessSharedState();
  const a = await host({ rate: 10, per: '1m', burst: 4 }, shared);
  const b = await host({ rate: 10, per: '1m', burst: 4 }, shared);
  b.nowNs = a.nowNs;
  assert.equal(a.exchange(req()).local, null);
  assert.equal(b.exchange(req()).local, null);
  assert.equal(a.exchange(req()).local, null);
  assert.equal(b.exchange(req()).local, null);
  assert.equal(a.exchange(req()).status, 429);
  assert.equal(b.exchange(req()).status, 429);
});

test('a concurrent writer causes CAS retries, and every take is still counted once', async () => {
  const shared = new HarnessSharedState();
  const h = await host({ rate: 1, per: '1h', burst: 5 }, shared);
  assert.equal(h.exchange(req()).local, null); // creates the bucket
  let interfere = 3;
  shared.onGet = (key) => { if (interfere-- > 0) shared.touch(key); };
  assert.equal(h.exchange(req()).local, null);
  assert.equal(shared.casMismatches, 3, 'three lost races, then success');
  shared.onGet = null;
  assert.equal(h.exchange(req()).local, null);
  assert.equal(h.exchange(req()).local, null);
  assert.equal(h.exchange(req()).local, null);
  assert.equal(h.exchange(req()).status, 429, 'exactly burst requests passed');
});

test('endless contention is bounded: the request is allowed and a warning logged', async () => {
  const shared = new HarnessSharedState();
  const h = await host({ rate: 1, per: '1h', burst: 5 }, shared);
  h.exchange(req());
  shared.onGet = (key) => shared.touch(key);
  assert.equal(h.exchange(req()).local, null);
  assert.ok(shared.casMismatches >= 8 && shared.casMismatches <= 64, `${shared.casMismatches} attempts`);
  assert.match(h.logs.map((l) => l.message).join('\n'), /did not settle/);
});

test('header and combined keys give separate buckets', async () => {
  const h = await host({ rate: 1, per: '1h', burst: 1, key: 'client_ip+header:x-api-key' });
  const withKey = (k: string) => req([...REQ, ['x-api-key', k]]);
  assert.equal(h.exchange(withKey('a')).local, null);
  assert.equal(h.exchange(withKey('a')).status, 429);
  assert.equal(h.exchange(withKey('b')).local, null);
  assert.equal(h.exchange(req()).local, null, 'no header: its own shared bucket');
  assert.equal(h.exchange(req()).status, 429);
  h.properties.set('source.address', '10.0.0.2:99');
  assert.equal(h.exchange(withKey('a')).local, null, 'another client IP');
});

test('route key shares one bucket across clients', async () => {
  const h = await host({ rate: 1, per: 3600000, burst: 1, key: ['route'] });
  assert.equal(h.exchange(req()).local, null);
  h.properties.set('source.address', '10.9.9.9:1');
  assert.equal(h.exchange(req()).status, 429);
});

test('shadow mode lets limited requests through and marks them', async () => {
  const h = await host({ rate: 1, per: '1h', burst: 1, shadow: true });
  assert.equal(h.exchange(req()).local, null);
  const r = h.request(req());
  assert.equal(r.action, 'continue');
  assert.equal(r.local, null);
  assert.equal(r.header('x-ratelimit-shadow'), 'limited');
  const res = h.response({ status: 200 });
  assert.equal(res.action, 'continue');
  assert.equal(res.header('x-ratelimit-shadow'), 'limited');
  h.done();
  assert.equal(h.metrics()['ratelimit_limited.client_ip'], 1);
});

test('invalid configs are refused with a reason', async () => {
  const cases: [string, RegExp][] = [
    ['{}', /rate must be a number > 0/],
    ['{"rate": 0}', /rate must be/],
    ['{"rate": 5, "per": "soon"}', /per must be a duration/],
    ['{"rate": 5, "burst": 0}', /burst must be/],
    ['{"rate": 5, "key": "ip"}', /key part "ip"/],
    ['{"rate": 5, "shadow": "yes"}', /shadow must be/],
    ['{"rate": 5, "rps": 3}', /unknown key "rps"/],
    ['rate=5', /not valid JSON/],
  ];
  for (const [config, message] of cases) {
    await assert.rejects(load('ratelimit', { config }), message, `accepted ${config}`);
  }
});

test('bucket keys: namespace, then the parts joined with | (port stripped, IPv6 unbracketed, "-" for a missing part)', async () => {
  const shared = new HarnessSharedState();
  const h = await host({ rate: 5, per: '1s', key: 'client_ip+header:x-tenant+route', name: 'zoné' }, shared);
  const ns = 'wisp.ratelimit.zoné.';
  h.exchange({ headers: [...REQ, ['x-tenant', 'acme ü']] });
  assert.equal(shared.peek(`${ns}10.0.0.1|acme ü|r1`)?.length, 16);
  h.exchange({ headers: REQ, clientAddress: '[::1]:8080' });
  assert.equal(shared.peek(`${ns}::1|-|r1`)?.length, 16);
  h.exchange({ headers: [...REQ, ['x-tenant', '']], clientAddress: 'fe80::2' });
  assert.equal(shared.peek(`${ns}fe80::2||r1`)?.length, 16);
});
