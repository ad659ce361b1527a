// breaker through the ABI: trip on consecutive 5xx, fast 503 while open, half-open probes,
// growing cooldown, state shared between workers and separate per cluster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ACTION_CONTINUE, FilterHost, SharedStore, loadModule } from './harness.js';

const SECOND = 1_000_000_000n;
const module = loadModule('breaker');
const REQ: [string, string][] = [[':method', 'GET'], [':path', '/'], [':authority', 'a']];

function host(config: object, shared = new SharedStore(), cluster = 'api'): FilterHost {
  const h = new FilterHost(module, shared);
  h.properties.set('cluster_name', cluster);
  assert.equal(h.start(JSON.stringify(config)), true, h.errors().join('\n'));
  return h;
}

test('opens after N consecutive failures and answers 503 at once', () => {
  const h = host({ consecutive_failures: 3, cooldown: '10s' });
  h.request(REQ, 500);
  h.request(REQ, 502);
  h.request(REQ, 200); // a success resets the count
  h.request(REQ, 503);
  h.request(REQ, 504);
  assert.equal(h.request(REQ, 200).local, null, 'still closed: only 2 consecutive failures');
  for (let i = 0; i < 3; i++) assert.equal(h.request(REQ, 500).local, null);
  const { action, local } = h.request(REQ, 200);
  assert.notEqual(action, ACTION_CONTINUE);
  assert.equal(local?.status, 503);
  assert.equal(local!.headers.find(([k]) => k === 'x-wisp-breaker')?.[1], 'open');
  assert.equal(local!.headers.find(([k]) => k === 'retry-after')?.[1], '10');
  assert.equal(h.metrics.get('breaker_opened')?.value, 1n);
  assert.equal(h.metrics.get('breaker_rejected')?.value, 1n);
});

test('half-open admits K probes; their success closes the breaker', () => {
  const h = host({ consecutive_failures: 1, cooldown: '5s', half_open_requests: 2 });
  h.request(REQ, 500);
  assert.equal(h.request(REQ).local?.status, 503);
  h.nowNs += 5n * SECOND;
  const p1 = h.newStream();
  assert.equal(h.onRequestHeaders(p1, REQ), ACTION_CONTINUE);
  const p2 = h.newStream();
  assert.equal(h.onRequestHeaders(p2, REQ), ACTION_CONTINUE);
  const third = h.request(REQ).local;
  assert.equal(third?.status, 503, 'only two probes in flight');
  assert.equal(third!.headers.find(([k]) => k === 'x-wisp-breaker')?.[1], 'half-open');
  h.onResponseHeaders(p1, [[':status', '200']]);
  h.finish(p1);
  assert.equal(h.request(REQ).local?.status, 503, 'one success of two is not enough');
  h.onResponseHeaders(p2, [[':status', '204']]);
  h.finish(p2);
  for (let i = 0; i < 5; i++) assert.equal(h.request(REQ, 200).local, null, 'closed again');
});

test('a failed probe re-opens with a doubled cooldown, capped by max_cooldown', () => {
  const h = host({ consecutive_failures: 1, cooldown: '1s', max_cooldown: '3s' });
  h.request(REQ, 500);
  const expectCooldown = (seconds: bigint) => {
    h.nowNs += seconds * SECOND - 1n;
    assert.equal(h.request(REQ).local?.status, 503, `still open just before ${seconds}s`);
    h.nowNs += 1n;
    assert.equal(h.request(REQ, 500).local, null, `probe admitted after ${seconds}s`);
  };
  expectCooldown(1n);
  expectCooldown(2n);
  expectCooldown(3n);
  expectCooldown(3n);
  h.nowNs += 3n * SECOND;
  assert.equal(h.request(REQ, 200).local, null);
  h.request(REQ, 500);
  h.nowNs += 1n * SECOND;
  assert.equal(h.request(REQ, 200).local, null, 'after a successful close the cooldown starts over');
});

test('workers share one breaker per cluster', () => {
  const shared = new SharedStore();
  const a = host({ consecutive_failures: 2 }, shared, 'api');
  const b = host({ consecutive_failures: 2 }, shared, 'api');
  const other = host({ consecutive_failures: 2 }, shared, 'billing');
  b.nowNs = a.nowNs;
  other.nowNs = a.nowNs;
  a.request(REQ, 500);
  b.request(REQ, 500);
  assert.equal(a.request(REQ).local?.status, 503);
  assert.equal(b.request(REQ).local?.status, 503);
  assert.equal(other.request(REQ).local, null, 'another cluster is unaffected');
});

test('a request without a response phase counts through the response.code property', () => {
  const h = host({ consecutive_failures: 2 });
  // Envoy and Wisp encode integer properties as 8 little-endian bytes; a string works too.
  const int64 = (n: number) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigInt64(0, BigInt(n), true); return b; };
  for (const code of [int64(502), '503']) {
    const id = h.newStream();
    assert.equal(h.onRequestHeaders(id, REQ), ACTION_CONTINUE);
    h.properties.set('response.code', code);
    h.finish(id);
    h.properties.delete('response.code');
  }
  assert.equal(h.request(REQ).local?.status, 503);
});

test('the aliases used in examples/demo.yaml are accepted', () => {
  const h = host({ max_failures: 1, open_for: '10s' });
  h.request(REQ, 500);
  assert.equal(h.request(REQ).local?.status, 503);
  h.nowNs += 10n * SECOND;
  assert.equal(h.request(REQ, 200).local, null);
});

test('custom failure statuses', () => {
  const h = host({ consecutive_failures: 1, failure_statuses: [429] });
  assert.equal(h.request(REQ, 500).local, null);
  assert.equal(h.request(REQ, 500).local, null, '500 is not a failure here');
  h.request(REQ, 429);
  assert.equal(h.request(REQ).local?.status, 503);
});

test('invalid configs are refused with a reason', () => {
  const cases: [string, RegExp][] = [
    ['{"consecutive_failures": 0}', /consecutive_failures must be/],
    ['{"cooldown": "forever"}', /cooldown must be a duration/],
    ['{"half_open_requests": "2"}', /half_open_requests must be/],
    ['{"failure_statuses": [700]}', /must be a status code/],
    ['{"threshold": 3}', /unknown key "threshold"/],
    ['[1]', /must be an object/],
  ];
  for (const [config, message] of cases) {
    const h = new FilterHost(module);
    assert.equal(h.start(config), false, `accepted ${config}`);
    assert.match(h.errors().join('\n'), message);
  }
});
