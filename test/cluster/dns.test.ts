// DNS-named endpoints: `localhost` resolves (via getaddrinfo when the DNS server does not
// know it) and serves real requests; names that do not resolve stay unavailable.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterConfig } from '../../proxy/config/types.js';
import { Cluster } from '../../proxy/upstream/cluster.js';
import { resolveHost, chooseAddress } from '../../proxy/upstream/dns.js';
import type { UpstreamError, UpstreamHandler } from '../../proxy/upstream/types.js';
import { startUpstream, waitFor } from '../helpers/net.js';

function config(host: string, port: number): ClusterConfig {
  return {
    name: 'dns',
    endpoints: [{ host, port, weight: 1 }],
    dns_refresh_ms: 30000,
    lb: 'round_robin',
    outlier: { consecutive_5xx: 5, consecutive_connect_failure: 3, base_ejection_ms: 30000, max_ejection_ms: 300000, max_ejection_percent: 50 },
    limits: { max_connections: 4, max_pending: 4, max_requests: 100 },
    connect_timeout_ms: 1000,
    idle_timeout_ms: 60000,
    max_idle_per_endpoint: 4,
  };
}

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

class Collect implements UpstreamHandler {
  status = 0;
  body = '';
  constructor(private readonly done: (r: { status: number; body: string } | Error) => void) {}
  onResponseHeaders(status: number): void {
    this.status = status;
  }
  onResponseData(chunk: Buffer): boolean {
    this.body += chunk.toString();
    return true;
  }
  onResponseEnd(): void {
    this.done({ status: this.status, body: this.body });
  }
  onUpstreamError(err: UpstreamError): void {
    this.done(err);
  }
  onRequestDrain(): void {}
}

test('resolveHost finds localhost', async () => {
  const r = await resolveHost('localhost');
  assert.ok(r.addresses.length > 0);
  assert.ok(r.addresses.some((a) => a === '127.0.0.1' || a === '::1'), r.addresses.join(','));
});

test('chooseAddress keeps the current address, else prefers IPv4', () => {
  assert.equal(chooseAddress(['::1', '127.0.0.1'], ''), '127.0.0.1');
  assert.equal(chooseAddress(['10.0.0.2', '10.0.0.1'], '10.0.0.1'), '10.0.0.1');
  assert.equal(chooseAddress(['10.0.0.2', '10.0.0.3'], '10.0.0.1'), '10.0.0.2');
  assert.equal(chooseAddress(['::1'], ''), '::1');
});

test('a localhost endpoint is unavailable until resolved, then serves requests', async () => {
  const up = await startUpstream();
  cleanup.push(() => up.close());
  const c = new Cluster(config('localhost', up.port));
  cleanup.push(() => c.close());
  const ep = c.endpoints[0];
  assert.equal(ep.key, `localhost:${up.port}`);
  assert.equal(ep.resolved, false, 'resolution is asynchronous');
  assert.equal(c.pick('', null), null, 'no endpoint before the first answer');
  const placeholder = ep.pool;
  assert.ok(placeholder, 'a pool exists before resolution (stats never see undefined)');
  assert.ok(c.stats().endpoints[0].pool);
  await waitFor(() => ep.resolved, 5000, 'localhost resolved');
  assert.equal(c.counters.dnsChanges, 1);
  assert.notEqual(ep.pool, placeholder, 'the resolved address got its own pool');
  // IPv4 preferred, and the test upstream listens on 127.0.0.1.
  assert.equal(ep.address, '127.0.0.1');
  const picked = c.pick('', null);
  assert.equal(picked, ep);
  const res = await new Promise<{ status: number; body: string } | Error>((resolve) => {
    ep.pool.request({ method: 'GET', path: '/via-dns', headers: ['host', 'localhost'], bodyLength: 0 }, new Collect(resolve));
  });
  assert.ok(!(res instanceof Error), String(res));
  assert.equal(res.status, 200);
  assert.equal(JSON.parse(res.body).url, '/via-dns');

  // A refresh that returns the same address keeps the same pool.
  const pool = ep.pool;
  await c.dns.refresh(ep);
  assert.equal(ep.pool, pool);
  assert.equal(c.counters.dnsChanges, 1);
  assert.ok(c.counters.dnsResolutions >= 2);
});

test('a name that does not resolve stays unavailable and counts failures', async () => {
  const c = new Cluster(config('no-such-host.invalid', 80));
  cleanup.push(() => c.close());
  await waitFor(() => c.counters.dnsFailures >= 1, 10000, 'resolution failure');
  assert.equal(c.endpoints[0].resolved, false);
  assert.equal(c.pick('', null), null);
});

test('an IP endpoint needs no DNS', () => {
  const c = new Cluster(config('127.0.0.1', 9));
  cleanup.push(() => c.close());
  assert.equal(c.endpoints[0].resolved, true);
  assert.equal(c.dns.size, 0);
  assert.equal(c.pick('', null), c.endpoints[0]);
});
