// breaker's failure-ratio trigger on Wisp's host (wisp/testing): the sliding window's
// arithmetic (exact ratio, minimum volume, buckets leaving the window as the clock moves),
// the breaker_state gauge, and the config it refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type FilterHarness, HarnessSharedState, load, type HeaderPairs } from './harness.js';

const SECOND = 1_000_000_000n;
const REQ: HeaderPairs = [[':method', 'GET'], [':path', '/'], [':authority', 'a']];
const req = { headers: REQ };

function host(config: object, sharedState = new HarnessSharedState(), cluster = 'api'): Promise<FilterHarness> {
  return load('breaker', { config, sharedState, properties: { cluster_name: cluster } });
}

/** A failure as Wisp delivers it: the response headers phase (Wisp holds failures for the
 * breaker), then the log phase. */
function fail(h: FilterHarness, status = 503): void {
  const r = h.request(req);
  assert.equal(r.action, 'continue', 'a failure was sent while the breaker should be closed');
  h.response({ status }, r.stream);
  h.done(r.stream);
}

/** A success as Wisp delivers it: no response headers phase, the status from response.code
 * in the log phase. */
function succeed(h: FilterHarness, status = 200): void {
  const r = h.request(req);
  assert.equal(r.action, 'continue', 'a success was sent while the breaker should be closed');
  h.done(r.stream, { responseCode: status });
}

function isOpen(h: FilterHarness): boolean {
  const r = h.request(req);
  if (r.action === 'continue') {
    h.done(r.stream, { responseCode: 200 });
    return false;
  }
  h.done(r.stream);
  assert.equal(r.local?.status, 503);
  assert.equal(r.local!.headers.find(([k]) => k === 'x-wisp-breaker')?.[1], 'open');
  return true;
}

/** Like isOpen, but counts nothing: peeks at the shared record's state word. */
function state(shared: HarnessSharedState, cluster = 'api'): number {
  const v = shared.peek(`wisp.breaker.${cluster}`);
  return v === null ? 0 : new DataView(v.buffer, v.byteOffset, v.byteLength).getUint32(0, true);
}

test('trips when exactly failure_ratio of min_requests fail, and not one request earlier', async () => {
  const shared = new HarnessSharedState();
  const h = await host({ consecutive_failures: 1000, failure_ratio: 0.5, min_requests: 10, window: '10s' }, shared);
  for (let i = 0; i < 4; i++) {
    succeed(h);
    fail(h);
  }
  succeed(h);
  assert.equal(state(shared), 0, '4 of 9 failed: below the minimum volume anyway');
  fail(h); // 5 of 10
  assert.equal(state(shared), 1);
  assert.equal(isOpen(h), true);
  assert.equal(h.metrics().breaker_opened, 1);
  assert.ok(h.logs.some((l) => l.levelName === 'warn' && l.message.includes('open after 5 of 10 requests failed in 10000ms')), 'the trip says why');
});

test('a ratio just below the threshold keeps it closed; the comparison is exact for decimal ratios', async () => {
  const shared = new HarnessSharedState();
  // 0.3 × 10 in floating point is 3.0000000000000004: 3 failures of 10 must still trip.
  const h = await host({ consecutive_failures: 1000, failure_ratio: 0.3, min_requests: 10 }, shared);
  for (let i = 0; i < 7; i++) succeed(h);
  fail(h);
  fail(h);
  succeed(h);
  assert.equal(state(shared), 0, '2 of 10 is below 0.3');
  fail(h); // 3 of 11
  assert.equal(state(shared), 0, '3 of 11 is below 0.3');
  fail(h); // 4 of 12
  assert.equal(state(shared), 1, '4 of 12 is above 0.3');

  const exact = await host({ consecutive_failures: 1000, failure_ratio: 0.3, min_requests: 10 });
  for (let i = 0; i < 7; i++) succeed(exact);
  for (let i = 0; i < 3; i++) fail(exact);
  assert.equal(isOpen(exact), true, '3 of 10 is exactly 0.3');
});

test('nothing trips below min_requests, however many of them failed', async () => {
  const shared = new HarnessSharedState();
  const h = await host({ consecutive_failures: 1000, failure_ratio: 0.1, min_requests: 10 }, shared);
  for (let i = 0; i < 9; i++) fail(h);
  assert.equal(state(shared), 0, '9 failures of 9: below the minimum volume');
  succeed(h); // the 10th request, a success, completes the volume: 9 of 10 failed
  assert.equal(state(shared), 1, 'the request that completes the volume trips it even when it succeeded');
});

test('buckets leave the window as the clock moves', async () => {
  const shared = new HarnessSharedState();
  // 10 s window in ten 1 s buckets.
  const h = await host({ consecutive_failures: 1000, failure_ratio: 0.5, min_requests: 4, window: '10s' }, shared);
  for (let i = 0; i < 3; i++) fail(h);
  h.nowNs += 9n * SECOND; // the first bucket is still the oldest of the ten
  succeed(h);
  assert.equal(state(shared), 1, '3 of 4 within the window');

  const shared2 = new HarnessSharedState();
  const g = await host({ consecutive_failures: 1000, failure_ratio: 0.5, min_requests: 4, window: '10s' }, shared2);
  for (let i = 0; i < 3; i++) fail(g);
  g.nowNs += 10n * SECOND; // now that bucket has left
  succeed(g);
  fail(g);
  succeed(g);
  assert.equal(state(shared2), 0, 'the three old failures are gone: 1 of 3 in the window');
  g.nowNs += 5n * SECOND;
  fail(g); // 2 of 4: trips
  assert.equal(state(shared2), 1);

  // Only the buckets the clock passed are emptied: failures 4 s apart, then 7 s later.
  const shared3 = new HarnessSharedState();
  const k = await host({ consecutive_failures: 1000, failure_ratio: 0.5, min_requests: 4, window: '10s' }, shared3);
  fail(k);
  fail(k);
  k.nowNs += 4n * SECOND;
  fail(k);
  k.nowNs += 7n * SECOND; // 11 s after the first two, 7 s after the third
  succeed(k);
  succeed(k);
  assert.equal(state(shared3), 0, '1 of 3: the first two dropped out, the third did not');
  succeed(k);
  assert.equal(state(shared3), 0, '1 of 4 is below 0.5');
  fail(k);
  assert.equal(state(shared3), 0, '2 of 5');
  fail(k);
  assert.equal(state(shared3), 1, '3 of 6');
});

test('after a trip and a successful probe the window starts empty', async () => {
  const h = await host({ consecutive_failures: 1000, failure_ratio: 0.5, min_requests: 4, cooldown: '1s' });
  for (let i = 0; i < 4; i++) fail(h);
  assert.equal(isOpen(h), true);
  h.nowNs += 1n * SECOND;
  succeed(h); // the probe
  fail(h);
  fail(h);
  fail(h);
  assert.equal(isOpen(h), false, 'three failures after closing: below the minimum volume again');
});

test('either trigger trips: consecutive failures keep their default beside a ratio, 0 turns them off', async () => {
  const both = await host({ failure_ratio: 0.9, min_requests: 1000 });
  for (let i = 0; i < 5; i++) fail(both);
  assert.equal(isOpen(both), true, '5 consecutive failures (the default) with the ratio far from tripping');

  const ratioOnly = await host({ consecutive_failures: 0, failure_ratio: 0.9, min_requests: 20 });
  for (let i = 0; i < 17; i++) fail(ratioOnly);
  assert.equal(isOpen(ratioOnly), false, '17 failures in a row with consecutive_failures off');
  for (let i = 0; i < 2; i++) fail(ratioOnly);
  assert.equal(isOpen(ratioOnly), true, '19 of 20 requests failed (the closed probe above was the 18th)');
});

test('connect failures and timeouts (no response phase) count through response.code', async () => {
  const shared = new HarnessSharedState();
  const h = await host({ consecutive_failures: 1000, failure_ratio: 0.5, min_requests: 4 }, shared);
  succeed(h);
  succeed(h);
  for (const code of [502, 504]) {
    const r = h.request(req);
    h.done(r.stream, { responseCode: code });
  }
  assert.equal(state(shared), 1);
});

test('workers count into one window', async () => {
  const shared = new HarnessSharedState();
  const config = { consecutive_failures: 1000, failure_ratio: 0.5, min_requests: 6 };
  const a = await host(config, shared);
  const b = await host(config, shared);
  b.nowNs = a.nowNs;
  fail(a);
  succeed(b);
  fail(b);
  succeed(a);
  fail(a);
  assert.equal(state(shared), 0, '3 of 5: below the minimum volume');
  succeed(b); // 3 of 6
  assert.equal(isOpen(a), true);
  assert.equal(isOpen(b), true);
});

test('breaker_state gauge per cluster: 0 closed, 1 open, 2 half-open', async () => {
  const shared = new HarnessSharedState();
  const h = await host({ consecutive_failures: 2, cooldown: '1s' }, shared, 'api');
  succeed(h);
  assert.equal(h.metrics()['breaker_state.api'], 0, 'defined (closed) on the first request');
  fail(h);
  fail(h);
  assert.equal(h.metrics()['breaker_state.api'], 1);
  h.nowNs += 1n * SECOND;
  const probe = h.request(req);
  assert.equal(probe.action, 'continue');
  assert.equal(h.metrics()['breaker_state.api'], 2);
  h.done(probe.stream, { responseCode: 200 });
  assert.equal(h.metrics()['breaker_state.api'], 0);

  h.exchange({ headers: REQ, cluster: '' }, { status: 200 });
  assert.equal(h.metrics()['breaker_state.default'], 0, 'no cluster: the "default" breaker');
  const other = await host({ consecutive_failures: 1 }, shared, 'billing');
  fail(other);
  assert.equal(other.metrics()['breaker_state.billing'], 1);
  assert.equal(other.metrics()['breaker_state.api'], 0, 'one gauge per cluster; workers share them');
});

test('invalid ratio configs are refused with a reason', async () => {
  const cases: [object, RegExp][] = [
    [{ failure_ratio: 0 }, /failure_ratio must be a fraction in \(0, 1\]/],
    [{ failure_ratio: 1.5 }, /failure_ratio must be a fraction/],
    [{ failure_ratio: '50%' }, /failure_ratio must be a fraction/],
    [{ failure_ratio: 0.5, window: '5ms' }, /window must be a duration from "100ms" to "1h"/],
    [{ failure_ratio: 0.5, window: 'soon' }, /window must be a duration/],
    [{ failure_ratio: 0.5, min_requests: 0 }, /min_requests must be a whole number >= 1/],
    [{ failure_ratio: 0.5, min_requests: 2.5 }, /min_requests must be a whole number/],
    [{ window: '10s' }, /window and min_requests only apply with failure_ratio/],
    [{ min_requests: 10 }, /window and min_requests only apply with failure_ratio/],
    [{ consecutive_failures: 0 }, /consecutive_failures must be .*0 turns it off, with failure_ratio only/],
  ];
  for (const [config, message] of cases) {
    await assert.rejects(load('breaker', { config }), message, `accepted ${JSON.stringify(config)}`);
  }
  // The accepted forms.
  await host({ failure_ratio: 1, window: '100ms', min_requests: 1 });
  await host({ failure_ratio: 0.25, window: 60000, consecutive_failures: 0 });
});

test('the ratio mode leaves memory flat over many requests, trips and clusters', async () => {
  const h = await host({ consecutive_failures: 0, failure_ratio: 0.5, min_requests: 10, window: '1s', cooldown: '100ms' });
  let rejected = 0;
  const send = (i: number) => {
    if (i % 40 === 0) h.advance(150);
    const cluster = `c${i % 3}`;
    const r = h.request({ headers: REQ, cluster });
    if (r.action !== 'continue') rejected++;
    else if (i % 3 === 0) {
      h.response({ status: 503 }, r.stream);
    }
    h.done(r.stream, { responseCode: 200 });
    h.logs.length = 0;
  };
  let i = 0;
  for (; i < 2000; i++) send(i);
  const warm = h.memoryBytes;
  for (; i < 20000; i++) send(i);
  assert.equal(h.memoryBytes, warm, `memory grew from ${warm} to ${h.memoryBytes} bytes`);
  assert.ok(rejected > 0, 'c0 (every request failing) tripped');
  assert.ok(h.metrics().breaker_opened > 1);
});
