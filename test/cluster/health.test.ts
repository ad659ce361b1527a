// Active health checks against real node:http upstreams.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { ClusterConfig, HealthCheckConfig } from '../../proxy/config/types.js';
import { Cluster } from '../../proxy/upstream/cluster.js';
import { startUpstream, waitFor, freePort, type TestUpstream, closerFor, listenLocal } from '../helpers/net.js';

function config(ports: number[], hc: Partial<HealthCheckConfig> = {}): ClusterConfig {
  return {
    name: 'hc',
    endpoints: ports.map((port) => ({ host: '127.0.0.1', port, weight: 1 })),
    dns_refresh_ms: 30000,
    lb: 'round_robin',
    health_check: {
      path: '/healthz',
      interval_ms: 30,
      timeout_ms: 200,
      healthy_threshold: 2,
      unhealthy_threshold: 2,
      expected_statuses: [],
      ...hc,
    },
    outlier: { consecutive_5xx: 0, consecutive_connect_failure: 0, base_ejection_ms: 30000, max_ejection_ms: 300000, max_ejection_percent: 50 },
    limits: { max_connections: 16, max_pending: 16, max_requests: 100 },
    connect_timeout_ms: 500,
    idle_timeout_ms: 60000,
    max_idle_per_endpoint: 4,
  };
}

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

async function upstreamWithStatus(): Promise<{ up: TestUpstream; setStatus(s: number): void }> {
  let status = 200;
  const up = await startUpstream((_req, res) => {
    res.writeHead(status, { 'content-length': '2' });
    res.end('ok');
  });
  cleanup.push(() => up.close());
  return { up, setStatus: (s) => (status = s) };
}

test('503 makes an endpoint unhealthy, 200 makes it healthy again', async () => {
  const a = await upstreamWithStatus();
  const b = await upstreamWithStatus();
  const c = new Cluster(config([a.up.port, b.up.port]));
  cleanup.push(() => c.close());
  const [epA, epB] = c.endpoints;
  assert.equal(epA.healthy, true, 'endpoints start healthy');
  await waitFor(() => c.health!.checksOf(epA) >= 2, 3000, 'first checks');
  assert.equal(epA.healthy, true);

  a.setStatus(503);
  await waitFor(() => !epA.healthy, 3000, 'A unhealthy');
  assert.equal(epB.healthy, true);
  assert.equal(c.counters.unhealthyTransitions, 1);
  for (let i = 0; i < 20; i++) assert.equal(c.pick('', null), epB, 'picks skip the unhealthy endpoint');

  a.setStatus(200);
  await waitFor(() => epA.healthy, 3000, 'A healthy again');
  assert.equal(c.counters.healthyTransitions, 1);

  const probe = a.up.requests.find((r) => r.url === '/healthz');
  assert.ok(probe, 'the check requested the configured path');
  assert.equal(probe.method, 'GET');
  assert.equal(probe.headers.host, `127.0.0.1:${a.up.port}`);
});

test('an endpoint whose server stops is marked unhealthy, and healthy when it is back', async () => {
  const port = await freePort();
  const c = new Cluster(config([port], { host: 'health.example' }));
  cleanup.push(() => c.close());
  const ep = c.endpoints[0];
  await waitFor(() => !ep.healthy, 3000, 'refused connections → unhealthy');

  const hosts: string[] = [];
  const { default: http } = await import('node:http');
  const server = http.createServer((req, res) => {
    hosts.push(req.headers.host ?? '');
    res.end('up');
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  await waitFor(() => ep.healthy, 3000, 'back up → healthy');
  assert.equal(hosts[0], 'health.example', 'health_check.host is sent as Host');
});

test('expected_statuses and timeouts decide the verdict', async () => {
  const a = await upstreamWithStatus();
  a.setStatus(204);
  // A server that accepts and never answers.
  const silent = net.createServer(() => {});
  cleanup.push(closerFor(silent));
  const silentPort = await listenLocal(silent);

  const c = new Cluster(config([a.up.port, silentPort], { expected_statuses: [200], timeout_ms: 60 }));
  cleanup.push(() => c.close());
  const [epA, epSilent] = c.endpoints;
  await waitFor(() => !epA.healthy && !epSilent.healthy, 3000, '204 not expected; silent times out');
  a.setStatus(200);
  await waitFor(() => epA.healthy, 3000, '200 expected');
  assert.equal(epSilent.healthy, false);
});
