// breaker on Wisp's host (wisp/testing): trip on consecutive 5xx, fast 503 while open,
// half-open probes, growing cooldown, state shared between workers and separate per cluster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type FilterHarness, HarnessSharedState, load, type HeaderPairs } from './harness.js';

const SECOND = 1_000_000_000n;
const REQ: HeaderPairs = [[':method', 'GET'], [':path', '/'], [':authority', 'a']];
const req = { headers: REQ };
const st = (status: number) => ({ status });

function host(config: object, sharedState = new HarnessSharedState(), cluster = 'api'): Promise<FilterHarness> {
  return load('breaker', { config, sharedState, properties: { cluster_name: cluster } });
}

test('opens after N consecutive failures and answers 503 at once', async () => {
  const h = await host({ consecutive_failures: 3, cooldown: '10s' });
  h.exchange(req, st(500));
  h.exchange(req, st(502));
  h.exchange(req, st(200)); // a success resets the count
  h.exchange(req, st(503));
  h.exchange(req, st(504));
  assert.equal(h.exchange(req, st(200)).local, null, 'still closed: only 2 consecutive failures');
  for (let i = 0; i < 3; i++) assert.equal(h.exchange(req, st(500)).local, null);
  const { action, local } = h.exchange(req, st(200));
  assert.notEqual(action, 'continue');
  assert.equal(local?.status, 503);
  assert.equal(local!.headers.find(([k]) => k === 'x-wisp-breaker')?.[1], 'open');
  assert.equal(local!.headers.find(([k]) => k === 'retry-after')?.[1], '10');
  assert.equal(h.metrics().breaker_opened, 1);
  assert.equal(h.metrics().breaker_rejected, 1);
});

test('half-open admits K probes; their success closes the breaker', async () => {
  const h = await host({ consecutive_failures: 1, cooldown: '5s', half_open_requests: 2 });
  h.exchange(req, st(500));
  assert.equal(h.exchange(req).status, 503);
  h.nowNs += 5n * SECOND;
  const p1 = h.request(req);
  assert.equal(p1.action, 'continue');
  const p2 = h.request(req);
  assert.equal(p2.action, 'continue');
  const third = h.exchange(req).local;
  assert.equal(third?.status, 503, 'only two probes in flight');
  assert.equal(third!.headers.find(([k]) => k === 'x-wisp-breaker')?.[1], 'half-open');
  h.response(st(200), p1.stream);
  h.done(p1.stream);
  assert.equal(h.exchange(req).status, 503, 'one success of two is not enough');
  h.response(st(204), p2.stream);
  h.done(p2.stream);
  for (let i = 0; i < 5; i++) assert.equal(h.exchange(req, st(200)).local, null, 'closed again');
});

test('a failed probe re-opens with a doubled cooldown, capped by max_cooldown', async () => {
  const h = await host({ consecutive_failures: 1, cooldown: '1s', max_cooldown: '3s' });
  h.exchange(req, st(500));
  const expectCooldown = (seconds: bigint) => {
    h.nowNs += seconds * SECOND - 1n;
    assert.equal(h.exchange(req).status, 503, `still open just before ${seconds}s`);
    h.nowNs += 1n;
    assert.equal(h.exchange(req, st(500)).local, null, `probe admitted after ${seconds}s`);
  };
  expectCooldown(1n);
  expectCooldown(2n);
  expectCooldown(3n);
  expectCooldown(3n);
  h.nowNs += 3n * SECOND;
  assert.equal(h.exchange(req, st(200)).local, null);
  h.exchange(req, st(500));
  h.nowNs += 1n * SECOND;
  assert.equal(h.exchange(req, st(200)).local, null, 'after a successful close the cooldown starts over');
});

test('workers share one breaker per cluster', async () => {
  const shared = new HarnessSharedState();
  const a = await host({ consecutive_failures: 2 }, shared, 'api');
  const b = await host({ consecutive_failures: 2 }, shared, 'api');
  const other = await host({ consecutive_failures: 2 }, shared, 'billing');
  b.nowNs = a.nowNs;
  other.nowNs = a.nowNs;
  a.exchange(req, st(500));
  b.exchange(req, st(500));
  assert.equal(a.exchange(req).status, 503);
  assert.equal(b.exchange(req).status, 503);
  assert.equal(other.exchange(req).local, null, 'another cluster is unaffected');
});

test('a request without a response phase counts through the response.code property', async () => {
  const h = await host({ consecutive_failures: 2 });
  // The host encodes response.code as 8 little-endian bytes (as Envoy does).
  for (const code of [502, 503]) {
    const r = h.request(req);
    assert.equal(r.action, 'continue');
    h.done(r.stream, { responseCode: code });
  }
  assert.equal(h.exchange(req).status, 503);
});

test('the aliases used in examples/demo.yaml are accepted', async () => {
  const h = await host({ max_failures: 1, open_for: '10s' });
  h.exchange(req, st(500));
  assert.equal(h.exchange(req).status, 503);
  h.nowNs += 10n * SECOND;
  assert.equal(h.exchange(req, st(200)).local, null);
});

test('custom failure statuses', async () => {
  const h = await host({ consecutive_failures: 1, failure_statuses: [429] });
  assert.equal(h.exchange(req, st(500)).local, null);
  assert.equal(h.exchange(req, st(500)).local, null, '500 is not a failure here');
  h.exchange(req, st(429));
  assert.equal(h.exchange(req).status, 503);
});

test('invalid configs are refused with a reason', async () => {
  const cases: [string, RegExp][] = [
    ['{"consecutive_failures": 0}', /consecutive_failures must be/],
    ['{"cooldown": "forever"}', /cooldown must be a duration/],
    ['{"half_open_requests": "2"}', /half_open_requests must be/],
    ['{"failure_statuses": [700]}', /must be a status code/],
    ['{"threshold": 3}', /unknown key "threshold"/],
    ['[1]', /must be an object/],
  ];
  for (const [config, message] of cases) {
    await assert.rejects(load('breaker', { config }), message, `accepted ${config}`);
  }
});

test('one instance keeps a breaker per cluster while requests to several clusters interleave', async () => {
  const shared = new HarnessSharedState();
  const h = await host({ consecutive_failures: 2 }, shared, 'api');
  const to = (cluster: string) => ({ headers: REQ, cluster });
  // Two requests to api in flight while billing is asked in between: each response counts
  // for the cluster its request went to.
  const a1 = h.request(to('api'));
  const b1 = h.request(to('billing'));
  const a2 = h.request(to('api'));
  h.response(st(500), a1.stream);
  h.done(a1.stream);
  h.response(st(200), b1.stream);
  h.done(b1.stream);
  h.response(st(500), a2.stream);
  h.done(a2.stream);
  assert.equal(h.exchange(to('api')).status, 503, 'api tripped by its two failures');
  assert.equal(h.exchange(to('billing'), st(500)).local, null, 'billing saw one success, one failure');
  assert.equal(h.exchange(to('')).local, null, 'no cluster: the "default" breaker');
  assert.ok(shared.peek('wisp.breaker.api') !== null);
  assert.ok(shared.peek('wisp.breaker.billing') !== null);
  assert.ok(shared.peek('wisp.breaker.default') === null, 'a success on a closed breaker writes nothing');
  h.exchange(to(''), st(500));
  assert.ok(shared.peek('wisp.breaker.default') !== null);
});
