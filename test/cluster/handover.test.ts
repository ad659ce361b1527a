// Pool handover with real traffic: an address change (what DNS does) and a hot reload
// must let in-flight exchanges on the old pool finish, and send new ones to the new pool.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClusterConfig } from '../../proxy/config/types.js';
import { Cluster } from '../../proxy/upstream/cluster.js';
import { ClusterManager } from '../../proxy/upstream/cluster-manager.js';
import type { Endpoint } from '../../proxy/upstream/endpoint.js';
import type { UpstreamError, UpstreamHandler } from '../../proxy/upstream/types.js';
import { waitFor } from '../helpers/net.js';

function config(port: number, patch: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    name: 'h',
    endpoints: [{ host: '127.0.0.1', port, weight: 1 }],
    dns_refresh_ms: 30000,
    lb: 'round_robin',
    outlier: { consecutive_5xx: 5, consecutive_connect_failure: 3, base_ejection_ms: 30000, max_ejection_ms: 300000, max_ejection_percent: 50 },
    limits: { max_connections: 4, max_pending: 4, max_requests: 100 },
    connect_timeout_ms: 1000,
    idle_timeout_ms: 60000,
    max_idle_per_endpoint: 4,
    ...patch,
  };
}

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

/** A server that holds /slow until release() and answers everything else at once, with
 * the local address it was reached on. */
async function server(host: string, port = 0): Promise<{ port: number; release(): void; held(): number }> {
  const waiting: http.ServerResponse[] = [];
  const srv = http.createServer((req, res) => {
    const body = `${req.socket.localAddress} ${req.url}`;
    const answer = () => res.end(body);
    if (req.url === '/slow') waiting.push(Object.assign(res, { answer }));
    else answer();
  });
  srv.keepAliveTimeout = 60000;
  await new Promise<void>((r) => srv.listen(port, host, r));
  cleanup.push(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
  return {
    port: (srv.address() as AddressInfo).port,
    release: () => { for (const res of waiting.splice(0)) (res as unknown as { answer(): void }).answer(); },
    held: () => waiting.length,
  };
}

class Collect implements UpstreamHandler {
  status = 0;
  body = '';
  constructor(private readonly done: (r: { status: number; body: string } | Error) => void) {}
  onResponseHeaders(status: number): void { this.status = status; }
  onResponseData(chunk: Buffer): boolean { this.body += chunk.toString(); return true; }
  onResponseEnd(): void { this.done({ status: this.status, body: this.body }); }
  onUpstreamError(err: UpstreamError): void { this.done(err); }
  onRequestDrain(): void {}
}

function send(ep: Endpoint, path: string): Promise<{ status: number; body: string } | Error> {
  return new Promise((resolve) => {
    ep.pool.request({ method: 'GET', path, headers: ['host', 'h'], bodyLength: 0 }, new Collect(resolve));
  });
}

test('an address change moves new requests to a new pool; the old one drains and closes', async () => {
  const v4 = await server('127.0.0.1');
  await server('::1', v4.port); // same port on ::1, so only the address differs
  const c = new Cluster(config(v4.port));
  cleanup.push(() => c.close());
  const ep = c.endpoints[0];
  const oldPool = ep.pool;
  const slow = send(ep, '/slow');
  await waitFor(() => v4.held() === 1, 3000, 'slow request held');

  assert.equal(ep.setAddress('::1'), true);
  assert.notEqual(ep.pool, oldPool);
  assert.equal(ep.address, '::1');
  const fresh = await send(ep, '/fresh');
  assert.ok(!(fresh instanceof Error), String(fresh));
  assert.equal(fresh.body, '::1 /fresh');

  v4.release();
  const done = await slow;
  assert.ok(!(done instanceof Error), String(done));
  assert.equal(done.body, '127.0.0.1 /slow', 'the in-flight exchange finished on the old pool');
  await waitFor(() => oldPool.stats().open === 0, 3000, 'old pool closed its connection');
  assert.equal(ep.setAddress('::1'), false, 'same address: no new pool');
});

test('a reload that removes a cluster lets its in-flight request finish', async () => {
  const up = await server('127.0.0.1');
  const m = new ClusterManager();
  cleanup.push(() => m.close());
  m.apply([config(up.port)]);
  const ep = m.get('h')!.endpoints[0];
  const slow = send(ep, '/slow');
  await waitFor(() => up.held() === 1, 3000, 'slow request held');
  m.apply([]);
  assert.equal(m.get('h'), undefined);
  up.release();
  const done = await slow;
  assert.ok(!(done instanceof Error), String(done));
  assert.equal(done.status, 200);
  await waitFor(() => ep.pool.stats().open === 0, 3000, 'pool closed after the exchange');
});

test('a rebuilt cluster reuses the open keep-alive connection of an unchanged endpoint', async () => {
  const up = await server('127.0.0.1');
  const m = new ClusterManager();
  cleanup.push(() => m.close());
  m.apply([config(up.port)]);
  const first = m.get('h')!;
  assert.ok(!((await send(first.endpoints[0], '/a')) instanceof Error));
  assert.equal(first.endpoints[0].pool.stats().idle, 1);
  m.apply([config(up.port, { lb: 'least_request' })]);
  const second = m.get('h')!;
  assert.notEqual(second, first);
  const ep = second.pick('', null)!;
  assert.ok(!((await send(ep, '/b')) instanceof Error));
  assert.equal(ep.pool.stats().created, 1, 'no new connection was needed');
});
