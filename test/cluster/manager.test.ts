// ClusterManager hot reload (object identity of clusters and pools) and cluster limits.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterConfig } from '../../proxy/config/types.js';
import { ClusterManager } from '../../proxy/upstream/cluster-manager.js';
import { Cluster, poolOptionsFor } from '../../proxy/upstream/cluster.js';

function config(name: string, ports: number[], patch: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    name,
    endpoints: ports.map((port) => ({ host: '127.0.0.1', port, weight: 1 })),
    dns_refresh_ms: 30000,
    lb: 'round_robin',
    outlier: { consecutive_5xx: 5, consecutive_connect_failure: 3, base_ejection_ms: 30000, max_ejection_ms: 300000, max_ejection_percent: 50 },
    limits: { max_connections: 10, max_pending: 8, max_requests: 2 },
    connect_timeout_ms: 1000,
    idle_timeout_ms: 60000,
    max_idle_per_endpoint: 4,
    ...patch,
  };
}

const managers: ClusterManager[] = [];
after(() => {
  for (const m of managers) m.close();
});
function manager(): ClusterManager {
  const m = new ClusterManager();
  managers.push(m);
  return m;
}

test('apply keeps unchanged clusters and their pools, rebuilds changed ones', () => {
  const m = manager();
  m.apply([config('a', [30001, 30002]), config('b', [30003])]);
  const a = m.get('a')!;
  const b = m.get('b')!;
  const poolsA = a.endpoints.map((ep) => ep.pool);
  const poolB = b.endpoints[0].pool;
  assert.equal(m.all().length, 2);

  // Deep-equal configs (fresh objects, as a reload produces) keep everything.
  m.apply([config('a', [30001, 30002]), config('b', [30003])]);
  assert.equal(m.get('a'), a);
  assert.equal(m.get('b'), b);
  assert.deepEqual(m.get('a')!.endpoints.map((ep) => ep.pool), poolsA);

  // a: LB change → new Cluster, same pools (host:port and pool settings unchanged);
  // endpoint 30002 removed, 30004 added. b: connect timeout change → new pool.
  assert.ok(a.outlier.eject(a.endpoints[0], Date.now()));
  a.endpoints[0].requests = 7;
  m.apply([config('a', [30001, 30004], { lb: 'random', limits: { max_connections: 10, max_pending: 8, max_requests: 2 } }), config('b', [30003], { connect_timeout_ms: 50 })]);
  const a2 = m.get('a')!;
  const b2 = m.get('b')!;
  assert.notEqual(a2, a);
  assert.notEqual(b2, b);
  assert.equal(a2.config.lb, 'random');
  assert.equal(a2.endpoints[0].pool, poolsA[0], '30001 kept its pool');
  assert.ok(a2.endpoints[0].ejected(Date.now()), 'and its ejection');
  assert.equal(a2.pick('', null), a2.endpoints[1], 'which pick() honours');
  assert.equal(a2.endpoints[0].requests, 7, 'and its counters');
  assert.notEqual(a2.endpoints[1].pool, poolsA[1]);
  assert.notEqual(b2.endpoints[0].pool, poolB, 'pool settings changed → new pool');
  assert.equal(a2.counters, a.counters, 'cluster counters carry over');

  // Removing a cluster closes it; totals keep its counters.
  b2.counters.overflows = 3;
  m.apply([config('a', [30001, 30004], { lb: 'random' })]);
  assert.equal(m.get('b'), undefined);
  assert.equal(m.all().length, 1);
  assert.equal(m.totals().overflows, 3);
});

test('apply refuses duplicate names and changes nothing', () => {
  const m = manager();
  m.apply([config('x', [30010])]);
  const x = m.get('x');
  assert.throws(() => m.apply([config('y', [1]), config('y', [2])]), /duplicate cluster name "y"/);
  assert.equal(m.get('x'), x);
  assert.equal(m.get('y'), undefined);
});

test('acquire/release enforce max_requests, shared across a rebuild', () => {
  const m = manager();
  m.apply([config('lim', [30020])]);
  const c = m.get('lim')!;
  assert.equal(c.acquire(), true);
  assert.equal(c.acquire(), true);
  assert.equal(c.acquire(), false, 'third request overflows max_requests=2');
  assert.equal(c.stats().overflows, 1);
  c.release();
  assert.equal(c.acquire(), true);
  // A rebuilt cluster still counts the requests in flight on the old one.
  m.apply([config('lim', [30020], { lb: 'random' })]);
  const c2 = m.get('lim')!;
  assert.notEqual(c2, c);
  assert.equal(c2.acquire(), false);
  c.release();
  assert.equal(c2.acquire(), true);
  assert.equal(m.totals().overflows, 2);
});

test('per-cluster max_connections is split across endpoint pools', () => {
  const opts = poolOptionsFor(config('p', [1, 2, 3]));
  assert.equal(opts.maxConnections, 4, 'ceil(10 / 3)');
  assert.equal(opts.maxPending, 8);
  assert.equal(opts.connectTimeoutMs, 1000);
  const c = new Cluster(config('p', [1, 2, 3]));
  try {
    assert.deepEqual(c.endpoints[2].poolOptions, opts);
    const s = c.stats();
    assert.equal(s.endpoints.length, 3);
    assert.equal(s.endpoints[0].key, '127.0.0.1:1');
    assert.ok(s.endpoints[0].pool, 'pool stats are reported');
  } finally {
    c.close();
  }
});
