// Slow and idle clients against a running Wisp: slowloris heads, slow bodies, and a crowd of
// idle connections while normal clients keep being served. Timing is measured and printed
// (docs/reliability.md), never asserted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { httpGet, rawRequest, startUpstream, waitFor, type TestUpstream } from '../helpers/net.js';

const BIG = 64 * 1024 * 1024;
/** Bytes the /big handler of the upstream has handed to its socket so far. */
let bigWritten = 0;
let up: TestUpstream;
let wisp: Wisp;
let port: number;

before(async () => {
  up = await startUpstream((req, res) => {
    if (req.url !== '/big') {
      res.end('ok');
      return;
    }
    // 64 MiB, written only as fast as the socket takes it.
    res.writeHead(200, { 'content-length': BIG });
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (bigWritten < BIG) {
        bigWritten += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    bigWritten = 0;
    pump();
  });
  wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'l', address: '127.0.0.1:0', limits: { body_timeout: '300ms' }, routes: [{ match: { prefix: '/' }, cluster: 'up' }] }],
        clusters: [{ name: 'up', endpoints: [`127.0.0.1:${up.port}`] }],
      },
      'slow-clients.test',
    ),
  );
  port = wisp.listenerPort('l');
});

after(async () => {
  await wisp.stop(0);
  await up.close();
});

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** p99 (ms) of `n` sequential normal requests, each on its own connection. */
async function normalP99(n: number): Promise<{ p99: number; failures: number }> {
  const times: number[] = [];
  let failures = 0;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = await httpGet(port, `/normal${i}`);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 200) failures++;
  }
  times.sort((a, b) => a - b);
  return { p99: times[Math.min(times.length - 1, Math.floor(times.length * 0.99))]!, failures };
}

test('slow body: silence between body chunks past body_timeout → 408, nothing half-forwarded as complete', async () => {
  const r = await rawRequest(port, 'POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nfirst-part', { timeoutMs: 5000, idleMs: 500 });
  assert.equal(r.status, 408);
  // The upstream never received a complete 100-byte body.
  assert.ok(up.requests.every((q) => q.url !== '/upload' || q.body.length !== 100));
});

test('slowloris head, 1,000 idle connections: normal clients keep being served; uWS cuts every idle socket', async () => {
  await normalP99(100); // warm-up (JIT, pools), so "alone" is not measured cold
  const before = await normalP99(200);
  // Slowloris: a request head trickled one byte every 500 ms, never finished.
  const loris = await connect();
  let lorisClosedAt = 0;
  const t0 = Date.now();
  loris.on('close', () => (lorisClosedAt = Date.now()));
  loris.on('error', () => {});
  const head = 'GET /slow HTTP/1.1\r\nHost: a\r\nX-A: ' + 'b'.repeat(200);
  let i = 0;
  const drip = setInterval(() => {
    if (!loris.destroyed && i < head.length) loris.write(head[i++]!);
  }, 500);
  // A keep-alive connection that made one request and then goes quiet.
  const ka = await connect();
  let kaClosedAt = 0;
  let kaText = '';
  ka.on('data', (d: Buffer) => (kaText += d.toString('latin1')));
  ka.on('close', () => (kaClosedAt = Date.now()));
  ka.on('error', () => {});
  ka.write('GET /keepalive HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => kaText.includes('\r\n\r\nok'), 5000, 'keep-alive response');
  const kaIdleFrom = Date.now();
  // The idle crowd: 1,000 connections that connect and send nothing.
  const idle: net.Socket[] = [];
  const closedAt: number[] = [];
  try {
    for (let k = 0; k < 1000; k++) {
      const s = await connect();
      s.on('error', () => {});
      s.on('close', () => closedAt.push(Date.now() - t0));
      idle.push(s);
    }
    const during = await normalP99(200);
    assert.equal(during.failures, 0, 'normal clients failed while 1,000 idle connections were open');
    assert.equal(before.failures, 0);
    // uWS's own idle timeout (not configurable in this build) closes every silent socket.
    await waitFor(() => closedAt.length === 1000, 30_000, `idle sockets cut (${closedAt.length}/1000)`);
    await waitFor(() => lorisClosedAt > 0, 30_000, 'slowloris cut');
    await waitFor(() => kaClosedAt > 0, 30_000, 'idle keep-alive connection cut');
    closedAt.sort((a, b) => a - b);
    const report = {
      normal_p99_ms_alone: Math.round(before.p99 * 100) / 100,
      normal_p99_ms_with_1000_idle: Math.round(during.p99 * 100) / 100,
      ratio: Math.round((during.p99 / before.p99) * 100) / 100,
      idle_cut_first_ms: closedAt[0],
      idle_cut_last_ms: closedAt[closedAt.length - 1],
      slowloris_cut_ms: lorisClosedAt - t0,
      slowloris_bytes_sent: i,
      idle_keepalive_cut_ms: kaClosedAt - kaIdleFrom,
    };
    process.stdout.write(`# slow-clients ${JSON.stringify(report)}\n`);
    assert.ok(report.slowloris_bytes_sent < head.length, 'slowloris was cut before finishing its head');
    // Nothing of the slowloris request reached the upstream.
    assert.ok(up.requests.every((q) => q.url !== '/slow'));
  } finally {
    clearInterval(drip);
    loris.destroy();
    ka.destroy();
    for (const s of idle) s.destroy();
  }
});

test('a client that stops reading a 64 MiB response: backpressure reaches the upstream, then the whole body arrives', async () => {
  const sock = await connect();
  let received = 0;
  sock.on('data', (d: Buffer) => (received += d.length));
  sock.write('GET /big HTTP/1.1\r\nHost: a\r\n\r\n');
  await waitFor(() => received > 0, 5000, 'response started');
  sock.pause();
  // Wait until the upstream's writes stall: the same count on several polls in a row.
  let last = -1;
  let still = 0;
  await waitFor(() => {
    if (bigWritten === last) still++;
    else still = 0;
    last = bigWritten;
    return still >= 25; // 25 polls of 10 ms with no progress
  }, 20_000, 'upstream writes stalled');
  const buffered = bigWritten - received;
  process.stdout.write(`# slow-reader ${JSON.stringify({ upstream_written_mb: +(bigWritten / 1048576).toFixed(1), client_read_mb: +(received / 1048576).toFixed(1), in_between_mb: +(buffered / 1048576).toFixed(1) })}\n`);
  assert.ok(bigWritten < BIG, `the upstream wrote all ${BIG} bytes to a client that reads nothing`);
  sock.resume();
  await waitFor(() => received >= BIG, 20_000, `whole body (${received})`);
  sock.destroy();
});
