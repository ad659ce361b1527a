// Load balancer policies, driven through Cluster.pick as the request path does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterConfig, LbPolicy } from '../../proxy/config/types.js';
import { Cluster } from '../../proxy/upstream/cluster.js';
import type { Endpoint } from '../../proxy/upstream/endpoint.js';
import { hash32 } from '../../proxy/upstream/lb/ring-hash.js';

function config(lb: LbPolicy, weights: number[], name = 'c'): ClusterConfig {
  return {
    name,
    endpoints: weights.map((weight, i) => ({ host: '127.0.0.1', port: 20001 + i, weight })),
    dns_refresh_ms: 30000,
    lb,
    outlier: { consecutive_5xx: 5, consecutive_connect_failure: 3, base_ejection_ms: 30000, max_ejection_ms: 300000, max_ejection_percent: 50 },
    limits: { max_connections: 1024, max_pending: 1024, max_requests: 4096 },
    connect_timeout_ms: 2000,
    idle_timeout_ms: 60000,
    max_idle_per_endpoint: 64,
  };
}

const clusters: Cluster[] = [];
function cluster(lb: LbPolicy, weights: number[]): Cluster {
  const c = new Cluster(config(lb, weights));
  clusters.push(c);
  return c;
}
after(() => {
  for (const c of clusters) c.close();
});

function counts(c: Cluster, n: number, key: (i: number) => string = () => ''): number[] {
  const out = c.endpoints.map(() => 0);
  for (let i = 0; i < n; i++) {
    const ep = c.pick(key(i), null);
    assert.ok(ep);
    out[ep.index]++;
  }
  return out;
}

function assertShares(actual: number[], weights: number[], total: number, tolerance: number): void {
  const sum = weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) {
    const expected = (total * weights[i]) / sum;
    assert.ok(Math.abs(actual[i] - expected) <= total * tolerance, `endpoint ${i}: ${actual[i]} picks, expected ~${expected} (${actual.join(',')})`);
  }
}

test('round_robin is smooth and exact for weights 5,1,1', () => {
  const c = cluster('round_robin', [5, 1, 1]);
  const seq = [];
  for (let i = 0; i < 7; i++) seq.push(c.pick('', null)!.index);
  assert.deepEqual(seq, [0, 0, 1, 0, 2, 0, 0]);
  assert.deepEqual(counts(c, 7000), [5000, 1000, 1000]);
});

test('round_robin skips unavailable endpoints and honours exclude', () => {
  const c = cluster('round_robin', [1, 1, 1]);
  c.endpoints[1].healthy = false;
  assert.deepEqual(counts(c, 100), [50, 0, 50]);
  const first = c.endpoints[0];
  for (let i = 0; i < 20; i++) assert.notEqual(c.pick('', first), first);
  assert.ok(c.outlier.eject(c.endpoints[2], Date.now()));
  // The excluded endpoint is the only one left: a retry goes back to it rather than failing.
  assert.equal(c.pick('', first), first);
  c.endpoints[0].healthy = false;
  assert.equal(c.pick('', null), null);
});

test('random follows weights 3:1 over 10k picks', () => {
  const c = cluster('random', [3, 1]);
  assertShares(counts(c, 10000), [3, 1], 10000, 0.03);
});

test('random never picks an ejected endpoint', () => {
  const c = cluster('random', [1, 1, 1]);
  assert.ok(c.outlier.eject(c.endpoints[0], Date.now()));
  const got = counts(c, 3000);
  assert.equal(got[0], 0);
  assertShares([got[1], got[2]], [1, 1], 3000, 0.05);
});

test('least_request with equal weights avoids the busiest endpoint (P2C)', () => {
  const c = cluster('least_request', [1, 1, 1]);
  c.endpoints[2].active = 10;
  const got = counts(c, 3000);
  assert.equal(got[2], 0, 'two distinct candidates: the busy one always loses');
  assertShares([got[0], got[1]], [1, 1], 3000, 0.05);
});

test('least_request with unequal weights uses weight/(active+1)', () => {
  const c = cluster('least_request', [3, 1]);
  assertShares(counts(c, 10000), [3, 1], 10000, 0.03);
  // weight 3 with 5 in flight: 0.5 against 1 → one third of the picks.
  c.endpoints[0].active = 5;
  assertShares(counts(c, 10000), [1, 2], 10000, 0.03);
});

test('ring_hash is sticky, spread, and weight-proportional', () => {
  const c = cluster('ring_hash', [1, 1, 1, 1]);
  const ep = c.pick('user-42', null);
  for (let i = 0; i < 50; i++) assert.equal(c.pick('user-42', null), ep);
  const got = counts(c, 10000, (i) => `key-${i}`);
  for (const n of got) assert.ok(n > 1500 && n < 3500, `share ${got.join(',')}`);
  const w = cluster('ring_hash', [3, 1]);
  assertShares(counts(w, 10000, (i) => `k${i}`), [3, 1], 10000, 0.08);
});

test('ring_hash remaps only the keys of a removed or failed endpoint', () => {
  const full = cluster('ring_hash', [1, 1, 1, 1]);
  const cfg = config('ring_hash', [1, 1, 1, 1]);
  cfg.endpoints.splice(2, 1); // remove 127.0.0.1:20003
  const reduced = new Cluster(cfg);
  clusters.push(reduced);
  const before = new Map<string, string>();
  let movedAway = 0;
  for (let i = 0; i < 10000; i++) {
    const key = `session-${i}`;
    const a = full.pick(key, null)!;
    const b = reduced.pick(key, null)!;
    before.set(key, a.key);
    if (a.key === '127.0.0.1:20003') movedAway++;
    else assert.equal(b.key, a.key, `key ${key} moved from ${a.key} to ${b.key}`);
  }
  assert.ok(movedAway > 1000, 'the removed endpoint had its share');
  // Failing an endpoint (unhealthy) moves its keys to the next points only.
  full.endpoints[0].healthy = false;
  for (const [key, was] of before) {
    const now = full.pick(key, null)!;
    if (was !== full.endpoints[0].key) assert.equal(now.key, was);
    else assert.notEqual(now, full.endpoints[0]);
  }
});

test('ring_hash: exclude walks to another endpoint; empty key still picks', () => {
  const c = cluster('ring_hash', [1, 1, 1]);
  const first = c.pick('abc', null)!;
  const second = c.pick('abc', first);
  assert.ok(second);
  assert.notEqual(second, first);
  assert.ok(c.pick('', null));
});

test('every policy returns null when nothing is available', () => {
  for (const lb of ['round_robin', 'least_request', 'random', 'ring_hash'] as const) {
    const c = cluster(lb, [1, 2]);
    for (const ep of c.endpoints) ep.healthy = false;
    assert.equal(c.pick('k', null), null, lb);
    const only: Endpoint = c.endpoints[1];
    only.healthy = true;
    assert.equal(c.pick('k', only), only, `${lb}: retry falls back to the excluded endpoint`);
  }
});

test('hash32 is stable and spreads nearby keys', () => {
  assert.equal(hash32('a'), hash32('a'));
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) seen.add(hash32(`x#${i}`) >>> 24);
  assert.ok(seen.size > 200, `top bytes of 1000 nearby keys cover ${seen.size} of 256 buckets`);
});
