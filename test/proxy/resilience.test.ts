// Retries, retry safety, cluster limits and client aborts through a running Wisp.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type http from 'node:http';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { startUpstream, httpGet, waitFor, type TestUpstream } from '../helpers/net.js';

async function withWisp(upstream: TestUpstream, routes: unknown[], cluster: Record<string, unknown>, fn: (port: number, wisp: Wisp) => Promise<void>): Promise<void> {
  const wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'l', address: '127.0.0.1:0', routes }],
        clusters: [{ name: 'up', endpoints: [`127.0.0.1:${upstream.port}`], ...cluster }],
      },
      'resilience.test',
    ),
  );
  try {
    await fn(wisp.listenerPort('l'), wisp);
  } finally {
    await wisp.stop(0);
    await upstream.close();
  }
}

test('a listed status is retried for GET; the client sees the retry succeed', async () => {
  let n = 0;
  const up = await startUpstream((_req, res) => {
    n++;
    res.writeHead(n === 1 ? 503 : 200);
    res.end(n === 1 ? 'busy' : 'fine');
  });
  await withWisp(up, [{ match: { prefix: '/' }, cluster: 'up', retry: { attempts: 2, on: [503] } }], {}, async (port, wisp) => {
    const r = await httpGet(port, '/r');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'fine');
    assert.equal(up.requests.length, 2);
    const m = await httpGet(wisp.adminPort(), '/metrics');
    assert.match(m.body, /wisp_retries_total\{listener="l",route="[^"]+",cluster="up"\} 1/);
  });
});

test('POST is not retried unless the route allows non-idempotent retries', async () => {
  const up = await startUpstream((_req, res) => {
    res.writeHead(503);
    res.end('busy');
  });
  await withWisp(up, [{ match: { prefix: '/' }, cluster: 'up', retry: { attempts: 2, on: [503] } }], {}, async (port) => {
    const r = await httpGet(port, '/p', { method: 'POST', body: 'payload' });
    assert.equal(r.status, 503);
    assert.equal(up.requests.length, 1);
  });
});

test('POST with non_idempotent retries replays the body', async () => {
  let n = 0;
  const up = await startUpstream((_req, res, body) => {
    n++;
    res.writeHead(n === 1 ? 502 : 200);
    res.end(body);
  });
  await withWisp(up, [{ match: { prefix: '/' }, cluster: 'up', retry: { attempts: 1, on: [502], non_idempotent: true } }], {}, async (port) => {
    const r = await httpGet(port, '/p', { method: 'POST', body: 'payload-123' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'payload-123');
    assert.equal(up.requests.length, 2);
    assert.equal(up.requests[1]!.body.toString(), 'payload-123');
  });
});

test('max_requests overflow answers 503 at once', async () => {
  const held: http.ServerResponse[] = [];
  const up = await startUpstream((_req, res) => {
    held.push(res);
  });
  await withWisp(up, [{ match: { prefix: '/' }, cluster: 'up' }], { limits: { max_requests: 1 } }, async (port) => {
    const first = httpGet(port, '/one');
    await waitFor(() => held.length === 1, 5000, 'first request at upstream');
    const second = await httpGet(port, '/two');
    assert.equal(second.status, 503);
    assert.match(second.body, /overflow/);
    held[0]!.end('done');
    assert.equal((await first).status, 200);
  });
});

test('a client that goes away cancels the upstream request', async () => {
  let upstreamSawClose = false;
  const arrived: http.ServerResponse[] = [];
  const up = await startUpstream((_req, res) => {
    arrived.push(res);
    res.on('close', () => {
      upstreamSawClose = true;
    });
  });
  await withWisp(up, [{ match: { prefix: '/' }, cluster: 'up' }], {}, async (port, wisp) => {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write('GET /abandon HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitFor(() => arrived.length === 1, 5000, 'request at upstream');
    sock.destroy();
    await waitFor(() => upstreamSawClose, 5000, 'upstream connection closed after client abort');
    const m = await httpGet(wisp.adminPort(), '/metrics');
    assert.match(m.body, /wisp_requests_total\{[^}]*status_class="none"\} 1/);
  });
});

test('outlier ejection moves traffic off an endpoint that keeps failing', async () => {
  const bad = await startUpstream((_req, res) => {
    res.writeHead(500);
    res.end('bad');
  });
  const good = await startUpstream();
  const wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'l', address: '127.0.0.1:0', routes: [{ match: { prefix: '/' }, cluster: 'up' }] }],
        clusters: [
          {
            name: 'up',
            endpoints: [`127.0.0.1:${bad.port}`, `127.0.0.1:${good.port}`],
            outlier: { consecutive_5xx: 3, base_ejection: '30s', max_ejection_percent: 50 },
          },
        ],
      },
      'outlier.test',
    ),
  );
  try {
    const port = wisp.listenerPort('l');
    for (let i = 0; i < 10; i++) await httpGet(port, `/warm${i}`);
    const badBefore = bad.requests.length;
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await httpGet(port, `/after${i}`)).status);
    assert.equal(bad.requests.length, badBefore, 'ejected endpoint got traffic');
    assert.ok(statuses.every((s) => s === 200));
  } finally {
    await wisp.stop(0);
    await bad.close();
    await good.close();
  }
});
