// Passive outlier detection, fed the way the request path feeds it: real requests through
// each endpoint's pool to real upstreams, outcomes reported per try.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ClusterConfig, OutlierConfig } from '../../proxy/config/types.js';
import { Cluster } from '../../proxy/upstream/cluster.js';
import type { Endpoint } from '../../proxy/upstream/endpoint.js';
import type { UpstreamError, UpstreamHandler } from '../../proxy/upstream/types.js';
import { startUpstream, waitFor, freePort } from '../helpers/net.js';

function config(ports: number[], outlier: Partial<OutlierConfig> = {}): ClusterConfig {
  return {
    name: 'out',
    endpoints: ports.map((port) => ({ host: '127.0.0.1', port, weight: 1 })),
    dns_refresh_ms: 30000,
    lb: 'round_robin',
    outlier: { consecutive_5xx: 3, consecutive_connect_failure: 2, base_ejection_ms: 30000, max_ejection_ms: 300000, max_ejection_percent: 50, ...outlier },
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

/** One try, reported to the endpoint exactly as the request path does. */
class Try implements UpstreamHandler {
  status = 0;
  constructor(private readonly ep: Endpoint, private readonly done: (outcome: number | string) => void) {}
  onResponseHeaders(status: number): void {
    this.status = status;
    this.ep.reportStatus(status);
  }
  onResponseData(): boolean {
    return true;
  }
  onResponseEnd(): void {
    this.done(this.status);
  }
  onUpstreamError(err: UpstreamError): void {
    if (this.status === 0) this.ep.reportFailure(err.kind);
    this.done(err.kind);
  }
  onRequestDrain(): void {}
}

function send(ep: Endpoint): Promise<number | string> {
  ep.active++;
  return new Promise<number | string>((resolve) => {
    ep.pool.request({ method: 'GET', path: '/', headers: ['host', 'test'], bodyLength: 0 }, new Try(ep, resolve));
  }).finally(() => ep.active--);
}

async function statusServer(status: number): Promise<number> {
  const up = await startUpstream((_req, res) => {
    res.writeHead(status, { 'content-length': '0' });
    res.end();
  });
  cleanup.push(() => up.close());
  return up.port;
}

function track(c: Cluster): Cluster {
  cleanup.push(() => c.close());
  return c;
}

test('consecutive 5xx eject an endpoint; the others keep serving', async () => {
  const bad = await statusServer(500);
  const good = await statusServer(200);
  const c = track(new Cluster(config([bad, good])));
  const [epBad, epGood] = c.endpoints;
  assert.equal(await send(epBad), 500);
  assert.equal(await send(epBad), 500);
  assert.equal(epBad.ejected(Date.now()), false, 'two 5xx are below the threshold of 3');
  assert.equal(await send(epBad), 500);
  assert.ok(epBad.ejected(Date.now()));
  const left = epBad.ejectedUntil - Date.now();
  assert.ok(left > 29000 && left <= 30000, `ejected for base_ejection_ms (${left} ms left)`);
  assert.equal(c.counters.ejections, 1);
  assert.equal(epBad.ejections, 1);
  for (let i = 0; i < 10; i++) {
    const ep = c.pick('', null)!;
    assert.equal(ep, epGood);
    assert.equal(await send(ep), 200);
  }
  assert.equal(c.stats().endpoints[0].ejected, true);
});

test('a success resets the consecutive 5xx count', async () => {
  let status = 500;
  const up = await startUpstream((_req, res) => {
    res.writeHead(status, { 'content-length': '0' });
    res.end();
  });
  cleanup.push(() => up.close());
  const other = await statusServer(200);
  const c = track(new Cluster(config([up.port, other])));
  const ep = c.endpoints[0];
  await send(ep);
  await send(ep);
  status = 404;
  assert.equal(await send(ep), 404);
  status = 503;
  await send(ep);
  await send(ep);
  assert.equal(ep.ejected(Date.now()), false);
  assert.equal(ep.consecutive5xx, 2);
  await send(ep);
  assert.ok(ep.ejected(Date.now()));
});

test('consecutive connect failures eject an endpoint', async () => {
  const dead = await freePort();
  const good = await statusServer(200);
  const c = track(new Cluster(config([dead, good])));
  const epDead = c.endpoints[0];
  assert.equal(await send(epDead), 'connect');
  assert.equal(epDead.available(Date.now()), true);
  assert.equal(await send(epDead), 'connect');
  assert.equal(epDead.available(Date.now()), false);
  assert.equal(epDead.connectFailures, 2);
  assert.equal(c.pick('', null), c.endpoints[1]);
});

test('max_ejection_percent caps ejections, one is always allowed with ≥ 2 endpoints', async () => {
  const ports = [await statusServer(502), await statusServer(502), await statusServer(502), await statusServer(502)];
  const c = track(new Cluster(config(ports, { consecutive_5xx: 1, max_ejection_percent: 50 })));
  for (const ep of c.endpoints) await send(ep);
  const now = Date.now();
  assert.equal(c.endpoints.filter((ep) => ep.ejected(now)).length, 2, '50% of 4');
  assert.equal(c.counters.ejectionsSkipped, 2);

  const two = track(new Cluster(config(ports.slice(0, 2), { consecutive_5xx: 1, max_ejection_percent: 10 })));
  for (const ep of two.endpoints) await send(ep);
  assert.equal(two.endpoints.filter((ep) => ep.ejected(Date.now())).length, 1, 'at least one, even above 10%');

  const single = track(new Cluster(config(ports.slice(0, 1), { consecutive_5xx: 1, max_ejection_percent: 50 })));
  await send(single.endpoints[0]);
  await send(single.endpoints[0]);
  assert.equal(single.endpoints[0].ejected(Date.now()), false, 'a lone endpoint is not ejected below 100%');
});

test('ejection time grows with each ejection, capped at max_ejection_ms', async () => {
  const bad = await statusServer(500);
  const good = await statusServer(200);
  const c = track(new Cluster(config([bad, good], { consecutive_5xx: 1, base_ejection_ms: 60, max_ejection_ms: 150 })));
  const ep = c.endpoints[0];
  // 60, 120, then 180 capped to 150. The ejection starts while the try's outcome is
  // reported, somewhere between `before` and `afterTry`.
  const expected = [60, 120, 150];
  for (let round = 0; round < 3; round++) {
    // pick() sees the ejection end by itself (lazily): excluding the good endpoint, it
    // returns the bad one again once it is back, and the good one while it is out.
    await waitFor(() => c.pick('', c.endpoints[1]) === ep, 3000, 'ejection over');
    const before = Date.now();
    await send(ep);
    const afterTry = Date.now();
    assert.ok(ep.ejectedUntil > before, `round ${round}: ejected`);
    assert.equal(c.pick('', c.endpoints[1]), c.endpoints[1], `round ${round}: pick skips it`);
    assert.ok(ep.ejectedUntil >= before + expected[round] && ep.ejectedUntil <= afterTry + expected[round],
      `round ${round}: ejected until +${ep.ejectedUntil - before} ms, expected ${expected[round]}`);
  }
  assert.equal(ep.timesEjected, 3);
  assert.equal(c.counters.ejections, 3);
});
