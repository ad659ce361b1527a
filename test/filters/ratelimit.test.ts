// ratelimit through the ABI: token bucket maths, shared state across "workers" (two
// instances on one shared store), CAS retries, keys, shadow mode, metrics, config errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ACTION_CONTINUE, FilterHost, SharedStore, loadModule } from './harness.js';

const SECOND = 1_000_000_000n;
const module = loadModule('ratelimit');
const REQ: [string, string][] = [[':method', 'GET'], [':path', '/'], [':authority', 'a']];

function host(config: object, shared = new SharedStore()): FilterHost {
  const h = new FilterHost(module, shared);
  h.properties.set('source.address', '10.0.0.1:1234');
  h.properties.set('route_name', 'r1');
  assert.equal(h.start(JSON.stringify(config)), true, h.errors().join('\n'));
  return h;
}

test('allows burst, then answers 429 with retry-after and RateLimit headers, then refills', () => {
  const h = host({ rate: 1, per: '1s', burst: 3 });
  for (let i = 0; i < 3; i++) assert.equal(h.request(REQ).local, null, `request ${i} limited`);
  const { action, local } = h.request(REQ);
  assert.notEqual(action, ACTION_CONTINUE);
  assert.ok(local);
  assert.equal(local.status, 429);
  const hdr = (n: string) => local.headers.find(([k]) => k === n)?.[1];
  assert.equal(hdr('retry-after'), '1');
  assert.equal(hdr('ratelimit-policy'), '3;w=1');
  assert.equal(hdr('ratelimit'), 'limit=3, remaining=0, reset=1');

  h.nowNs += SECOND / 2n;
  assert.equal(h.request(REQ).local?.status, 429, 'half a token is not a token');
  h.nowNs += SECOND / 2n;
  assert.equal(h.request(REQ).local, null, 'one token after one second');
  assert.equal(h.request(REQ).local?.status, 429);

  h.nowNs += 100n * SECOND;
  for (let i = 0; i < 3; i++) assert.equal(h.request(REQ).local, null);
  assert.equal(h.request(REQ).local?.status, 429, 'refill is capped at burst');
  assert.equal(h.metrics.get('ratelimit_allowed')?.value, 7n);
  assert.equal(h.metrics.get('ratelimit_limited')?.value, 4n);
});

test('two workers on one shared store enforce one limit', () => {
  const shared = new SharedStore();
  const a = host({ rate: 10, per: '1m', burst: 4 }, shared);
  const b = host({ rate: 10, per: '1m', burst: 4 }, shared);
  b.nowNs = a.nowNs;
  assert.equal(a.request(REQ).local, null);
  assert.equal(b.request(REQ).local, null);
  assert.equal(a.request(REQ).local, null);
  assert.equal(b.request(REQ).local, null);
  assert.equal(a.request(REQ).local?.status, 429);
  assert.equal(b.request(REQ).local?.status, 429);
});

test('a concurrent writer causes CAS retries, and every take is still counted once', () => {
  const shared = new SharedStore();
  const h = host({ rate: 1, per: '1h', burst: 5 }, shared);
  assert.equal(h.request(REQ).local, null); // creates the bucket
  let interfere = 3;
  shared.onGet = (key) => { if (interfere-- > 0) shared.touch(key); };
  assert.equal(h.request(REQ).local, null);
  assert.equal(shared.casMismatches, 3, 'three lost races, then success');
  shared.onGet = null;
  assert.equal(h.request(REQ).local, null);
  assert.equal(h.request(REQ).local, null);
  assert.equal(h.request(REQ).local, null);
  assert.equal(h.request(REQ).local?.status, 429, 'exactly burst requests passed');
});

test('endless contention is bounded: the request is allowed and a warning logged', () => {
  const shared = new SharedStore();
  const h = host({ rate: 1, per: '1h', burst: 5 }, shared);
  h.request(REQ);
  shared.onGet = (key) => shared.touch(key);
  assert.equal(h.request(REQ).local, null);
  assert.ok(shared.casMismatches >= 8 && shared.casMismatches <= 64, `${shared.casMismatches} attempts`);
  assert.match(h.logs.map((l) => l.message).join('\n'), /did not settle/);
});

test('header and combined keys give separate buckets', () => {
  const h = host({ rate: 1, per: '1h', burst: 1, key: 'client_ip+header:x-api-key' });
  const withKey = (k: string): [string, string][] => [...REQ, ['x-api-key', k]];
  assert.equal(h.request(withKey('a')).local, null);
  assert.equal(h.request(withKey('a')).local?.status, 429);
  assert.equal(h.request(withKey('b')).local, null);
  assert.equal(h.request(REQ).local, null, 'no header: its own shared bucket');
  assert.equal(h.request(REQ).local?.status, 429);
  h.properties.set('source.address', '10.0.0.2:99');
  assert.equal(h.request(withKey('a')).local, null, 'another client IP');
});

test('route key shares one bucket across clients', () => {
  const h = host({ rate: 1, per: 3600000, burst: 1, key: ['route'] });
  assert.equal(h.request(REQ).local, null);
  h.properties.set('source.address', '10.9.9.9:1');
  assert.equal(h.request(REQ).local?.status, 429);
});

test('shadow mode lets limited requests through and marks them', () => {
  const h = host({ rate: 1, per: '1h', burst: 1, shadow: true });
  assert.equal(h.request(REQ).local, null);
  const id = h.newStream();
  assert.equal(h.onRequestHeaders(id, REQ), ACTION_CONTINUE);
  assert.equal(h.localResponse, null);
  assert.equal(h.header(h.requestHeaders, 'x-ratelimit-shadow'), 'limited');
  assert.equal(h.onResponseHeaders(id, [[':status', '200']]), ACTION_CONTINUE);
  assert.equal(h.header(h.responseHeaders, 'x-ratelimit-shadow'), 'limited');
  h.finish(id);
  assert.equal(h.metrics.get('ratelimit_limited')?.value, 1n);
});

test('invalid configs are refused with a reason', () => {
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
    const h = new FilterHost(module);
    assert.equal(h.start(config), false, `accepted ${config}`);
    assert.match(h.errors().join('\n'), message);
  }
});
