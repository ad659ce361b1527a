// The open-loop generator of bench/fixed-rate.ts against real servers on 127.0.0.1: it keeps
// its schedule, parses what servers send, counts waiting for a busy connection as latency,
// and ends on time when the server never answers. Speed is not asserted: the bounds below
// follow from the schedule's arithmetic, not from how fast this machine is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ResponseReader, formatFixedRateTable, runFixedRate, summariseFixedRate } from '../../bench/fixed-rate.js';
import type { FixedRateResult, FixedRateSample } from '../../bench/fixed-rate.js';
import { parseArgs } from '../../bench/run.js';
import { startBenchUpstream } from '../../bench/upstream.js';
import { closerFor, listenLocal, startUpstream } from '../helpers/net.js';

function assertOrdered(r: FixedRateResult): void {
  assert.ok(r.p50_ms > 0, `p50 ${r.p50_ms}`);
  assert.ok(r.p50_ms <= r.p90_ms && r.p90_ms <= r.p99_ms && r.p99_ms <= r.p999_ms && r.p999_ms <= r.max_ms, JSON.stringify(r));
  assert.ok(r.intended_p50_ms >= r.p50_ms && r.intended_p99_ms >= r.p99_ms, 'latency from the due time includes the send lag');
}

test('200 rps over 4 connections to the bench upstream: the whole schedule answered, no errors', async () => {
  const up = await startBenchUpstream();
  try {
    const r = await runFixedRate({ port: up.port, rate: 200, connections: 4, durationS: 1, warmupS: 0.2 });
    // 200 requests are due in the measured second; every one is either answered or unsent.
    assert.equal(r.requests + r.unsent, 200);
    assert.ok(r.requests >= 160, `only ${r.requests} of 200 answered`);
    assert.equal(r.errors, 0);
    assert.equal(r.non2xx, 0);
    assert.equal(r.achieved_rps, r.requests);
    assertOrdered(r);
  } finally {
    up.close();
  }
});

test('a server slower than the schedule: latency counts from when each request was due', async () => {
  const delayMs = 50;
  const up = await startUpstream((_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    }, delayMs);
  });
  try {
    // 2 connections × (1000 / 50) = at most 40 rps against 100 due per second: the queue of
    // due requests grows all second, so late requests waited hundreds of ms for a connection.
    const r = await runFixedRate({ port: up.port, rate: 100, connections: 2, durationS: 1 });
    assert.equal(r.errors, 0);
    assert.ok(r.requests > 0 && r.requests < 100, `requests ${r.requests}`);
    assert.equal(r.requests + r.unsent, 100);
    assert.ok(r.p50_ms >= delayMs, `p50 ${r.p50_ms}`);
    // A closed-loop client would report ~50 ms for every request.
    assert.ok(r.p99_ms > 3 * delayMs, `p99 ${r.p99_ms} should include the wait for a connection`);
    assertOrdered(r);
  } finally {
    await up.close();
  }
});

test('chunked bodies, Connection: close and 204 over real sockets', async () => {
  let n = 0;
  const up = await startUpstream((_req, res) => {
    const kind = n++ % 3;
    if (kind === 0) {
      // No content-length: node:http sends it chunked, in two chunks.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('hello ');
      setImmediate(() => res.end('world'));
    } else if (kind === 1) {
      res.writeHead(200, { 'content-length': '3', connection: 'close' });
      res.end('bye');
    } else {
      res.writeHead(204);
      res.end();
    }
  });
  try {
    const r = await runFixedRate({ port: up.port, rate: 100, connections: 2, durationS: 0.5 });
    assert.equal(r.errors, 0);
    assert.equal(r.non2xx, 0);
    assert.equal(r.requests + r.unsent, 50);
    assert.ok(r.requests >= 40, `requests ${r.requests}`);
    assert.ok(up.requests.length >= r.requests);
    assertOrdered(r);
  } finally {
    await up.close();
  }
});

test('a server that never answers: timeouts are errors and the run still ends', async () => {
  const server = net.createServer(() => {
    // accept and say nothing
  });
  const close = closerFor(server);
  const port = await listenLocal(server);
  try {
    const r = await runFixedRate({ port, rate: 20, connections: 2, durationS: 0.5, timeoutMs: 150 });
    assert.ok(r.errors >= 1, `errors ${r.errors}`);
    assert.equal(r.requests, 0);
    assert.equal(r.p50_ms, 0);
  } finally {
    await close();
  }
});

test('nothing listening: the run rejects before its schedule starts', async () => {
  const server = net.createServer();
  const port = await listenLocal(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await assert.rejects(runFixedRate({ port, rate: 10, connections: 2, durationS: 0.1 }), /cannot connect/);
});

test('ResponseReader: content-length, chunked split at every byte, 1xx, close-delimited, garbage', () => {
  const p = new ResponseReader();
  const feedAll = (text: string, step: number): number[] => {
    p.reset();
    const b = Buffer.from(text, 'latin1');
    const out: number[] = [];
    for (let i = 0; i < b.length; i += step) out.push(p.feed(b.subarray(i, i + step)));
    return out;
  };
  const hello = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n';
  assert.deepEqual(feedAll(hello, hello.length), [1]);
  assert.equal(p.status, 200);
  assert.equal(p.keepAlive, true);
  const chunked = 'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n6;x=y\r\nhello \r\n5\r\nworld\r\n0\r\nx-trailer: 1\r\n\r\n';
  for (const step of [1, 2, 7, chunked.length]) {
    const r = feedAll(chunked, step);
    assert.equal(r[r.length - 1], 1, `step ${step}`);
    assert.ok(r.slice(0, -1).every((x) => x === 0), `step ${step}: ${r.join(',')}`);
    assert.equal(p.status, 201);
  }
  assert.deepEqual(feedAll('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n', 1000), [1]);
  assert.equal(p.status, 404);
  assert.equal(p.keepAlive, false);
  assert.deepEqual(feedAll('HTTP/1.0 200 OK\r\n\r\nbody until close', 1000), [0]);
  assert.equal(p.endsOnClose(), true);
  assert.equal(p.keepAlive, false);
  assert.deepEqual(feedAll('SSH-2.0-OpenSSH\r\n\r\n', 1000), [-1]);
  assert.deepEqual(feedAll('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA', 1000), [-1]);
  assert.deepEqual(feedAll('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok', 1000), [-1]);
  assert.deepEqual(feedAll('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n', 1000), [-1]);
});

test('run.ts flags: fixed rate on by default at 1000 rps / 16 connections, off, lists, validation', () => {
  const d = parseArgs([]);
  assert.deepEqual(d.fixedRates, [1000]);
  assert.equal(d.fixedConnections, 16);
  assert.equal(d.fixedDurationS, d.durationS);
  assert.equal(d.fixedWarmupS, 1);
  const q = parseArgs(['--quick']);
  assert.equal(q.fixedDurationS, 3);
  const c = parseArgs(['--fixed-rate', '1000,5000', '--fixed-connections', '32', '--fixed-duration', '4', '--fixed-warmup', '0']);
  assert.deepEqual(c.fixedRates, [1000, 5000]);
  assert.equal(c.fixedConnections, 32);
  assert.equal(c.fixedDurationS, 4);
  assert.equal(c.fixedWarmupS, 0);
  assert.deepEqual(parseArgs(['--fixed-rate', 'off']).fixedRates, []);
  assert.throws(() => parseArgs(['--fixed-rate', 'fast']), /--fixed-rate/);
});

test('summariseFixedRate: medians per target, added ms as the median of per-round differences', () => {
  const sample = (name: string, round: number, p50: number, p99: number): FixedRateSample => ({
    name, round, rate: 1000, connections: 16, duration_s: 10, requests: 10_000, achieved_rps: 1000,
    p50_ms: p50, p90_ms: p50 * 2, p99_ms: p99, p999_ms: p99 * 2, max_ms: p99 * 3, mean_ms: p50,
    intended_p50_ms: p50 + 0.5, intended_p99_ms: p99 + 1, send_lag_p50_ms: 0.5, send_lag_p99_ms: 1,
    errors: 0, non2xx: round === 2 ? 1 : 0, unsent: 0, client_cpu_us_per_req: 5, cpu_us_per_req: name === 'direct' ? null : 30,
  });
  const runs = summariseFixedRate([
    sample('direct', 1, 0.1, 0.4), sample('wisp', 1, 0.3, 1.0), sample('wisp+noop', 1, 0.5, 1.5),
    sample('direct', 2, 0.2, 0.5), sample('wisp', 2, 0.35, 1.2), sample('wisp+noop', 2, 0.45, 1.3),
  ]);
  assert.deepEqual(runs.map((r) => r.name), ['direct', 'wisp', 'wisp+noop']);
  const noop = runs[2] as (typeof runs)[number];
  assert.equal(noop.p50_ms, 0.475);
  assert.deepEqual(noop.p50_rounds, [0.5, 0.45]);
  assert.equal(noop.non2xx, 1);
  // Per round +0.2 and +0.1 over wisp → 0.15; +0.4 and +0.25 over direct → 0.325.
  assert.equal(noop.added_vs_wisp?.p50_ms, 0.15);
  assert.equal(noop.added_vs_direct?.p50_ms, 0.325);
  assert.equal(noop.added_vs_wisp?.p99_ms, 0.3);
  assert.equal(runs[0]?.added_vs_direct, null);
  assert.equal(runs[1]?.added_vs_wisp, null);
  assert.equal(runs[0]?.cpu_us_per_req, null);
  const table = formatFixedRateTable(runs);
  assert.match(table, /^\| run +\| rate \|/);
  assert.match(table, /\| wisp\+noop +\| +1000 \|.*\| +\+0\.15 \|/);
  assert.equal(table.split('\n').length, 5);
});
