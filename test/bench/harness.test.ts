// Smoke tests of the benchmark harness pieces: the wrk parser, the upstream, the peer configs
// (started for real when nginx/haproxy are installed) and the report arithmetic. Speed is never
// asserted here; that is what `npm run bench` is for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { httpGet, waitFor } from '../helpers/net.js';
import { parseWrkOutput, parseWrkDuration, pickLoadTool } from '../../bench/peers/load.js';
import { HELLO_BODY, startBenchUpstream } from '../../bench/upstream.js';
import { findExecutable, treeRssBytes } from '../../bench/peers/proc.js';
import { nginxTarget } from '../../bench/peers/nginx.js';
import { haproxyTarget } from '../../bench/peers/haproxy.js';
import { FilterReloader, wispConfig, wispTarget } from '../../bench/peers/wisp.js';
import { streamThrough } from '../../bench/peers/stream.js';
import { parseArgs } from '../../bench/run.js';
import { addRatios, formatTable, median, readmeBlock, readmeMarkers, replaceReadmeBlock, shortVersion, summarise } from '../../bench/peers/report.js';

const WRK_SAMPLE = `Running 3s test @ http://127.0.0.1:39999/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   531.87us    2.32ms  27.55ms   97.68%
    Req/Sec    42.27k    11.48k   67.31k    81.82%
  Latency Distribution
     50%  124.00us
     75%  243.00us
     90%  573.00us
     99%    1.02s
  46180 requests in 1.10s, 5.77MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:  42005.00
Transfer/sec:      5.25MB
`;

test('parseWrkOutput reads rps, percentiles in any unit, non-2xx and socket errors', () => {
  const r = parseWrkOutput(WRK_SAMPLE);
  assert.equal(r.rps, 42005);
  assert.equal(r.p50_ms, 0.124);
  assert.equal(r.p99_ms, 1020);
  assert.equal(r.non2xx, 17);
  assert.equal(r.errors, 10);
  assert.equal(r.requests, 46180);
  const clean = parseWrkOutput(WRK_SAMPLE.replace(/  Socket errors.*\n/, '').replace(/  Non-2xx.*\n/, ''));
  assert.equal(clean.non2xx, 0);
  assert.equal(clean.errors, 0);
  assert.equal(parseWrkDuration('2.50ms'), 2.5);
  assert.ok(Number.isNaN(parseWrkDuration('fast')));
  assert.throws(() => parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused'), /unrecognised wrk output/);
});

test('bench upstream answers hello world and streams a body of the exact size', async () => {
  const up = await startBenchUpstream({ streamBytes: 3 * 1024 * 1024 + 7 });
  try {
    const r = await httpGet(up.port, '/any/path?x=1');
    assert.equal(r.status, 200);
    assert.equal(r.body, HELLO_BODY);
    assert.equal(r.body.length, 12);
    assert.equal(r.headers['content-type'], 'text/plain');
    // Read the stream slowly at first so the upstream has to wait for the socket to drain.
    const bytes = await new Promise<number>((resolveBytes, reject) => {
      http.get({ host: '127.0.0.1', port: up.port, path: '/stream', agent: false }, (res) => {
        let n = 0;
        res.pause();
        setImmediate(() => res.resume());
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => resolveBytes(n));
        res.on('error', reject);
      }).on('error', reject);
    });
    assert.equal(bytes, 3 * 1024 * 1024 + 7);
  } finally {
    up.close();
  }
});

// Wisp through the harness's own config: catches a config format the bench writes but Wisp
// no longer accepts, which would otherwise only show as a failed run in `npm run bench`.
for (const target of [nginxTarget, haproxyTarget, wispTarget('wisp')]) {
  const missing = target.unavailable({ root: resolve('.') });
  test(`${target.name} peer starts on 127.0.0.1, proxies to the upstream and stops`, { skip: missing ?? false }, async () => {
    const up = await startBenchUpstream();
    const dir = mkdtempSync(join(os.tmpdir(), 'wisp-bench-test-'));
    const running = await target.start({ upstreamPort: up.port, dir, root: resolve('.'), connections: 50, streaming: false });
    try {
      const r = await httpGet(running.port, '/hello');
      assert.equal(r.status, 200);
      assert.equal(r.body, HELLO_BODY);
      assert.ok(running.proc);
      assert.ok(treeRssBytes(running.proc.pid) > 0, 'RSS of a live process is positive');
    } finally {
      await running.stop();
      up.close();
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(running.proc?.hasExited, true);
    assert.equal(treeRssBytes(running.proc.pid), 0);
  });
}

test('the load tool measures the upstream', { skip: findExecutable('wrk') ? false : 'wrk not installed' }, async () => {
  const tool = pickLoadTool('wrk');
  assert.notEqual(typeof tool, 'string');
  if (typeof tool === 'string') return;
  const up = await startBenchUpstream();
  try {
    const r = await tool.run({ url: `http://127.0.0.1:${up.port}/`, connections: 4, durationS: 1 });
    assert.ok(r.requests > 0);
    assert.ok(r.rps > 0);
    assert.ok(r.p99_ms >= r.p50_ms);
    assert.equal(r.non2xx, 0);
  } finally {
    up.close();
  }
});

test('wispConfig writes the listener, cluster and filter chain Wisp expects', () => {
  const doc = parse(wispConfig({ root: '/repo', adminPort: 1, listenPort: 2, upstreamPort: 3, filters: [{ name: 'noop', wasm: 'filters/build/noop.wasm' }] }));
  assert.deepEqual(doc, {
    admin: { address: '127.0.0.1:1' },
    drain_timeout: '2s',
    listeners: [{ name: 'bench', address: '127.0.0.1:2', routes: [{ match: { prefix: '/' }, cluster: 'up', filters: ['noop'] }] }],
    clusters: [{ name: 'up', endpoints: ['127.0.0.1:3'] }],
    filters: [{ name: 'noop', wasm: '/repo/filters/build/noop.wasm' }],
  });
  const plain = parse(wispConfig({ root: '/repo', adminPort: 1, listenPort: 2, upstreamPort: 3, filters: [] }));
  assert.equal(plain.filters, undefined);
  assert.equal(plain.listeners[0].routes[0].filters, undefined);
});

test('report: medians, totals and ratios to nginx and direct', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  const s = (rps: number, p99: number) => ({ rps, p50_ms: 1, p99_ms: p99, non2xx: 1, errors: 0, requests: rps, rss_bytes: 10 * 1024 * 1024 });
  const runs = addRatios([
    summarise('direct', [s(100, 1), s(120, 1)]),
    summarise('nginx', [s(50, 2), s(50, 4)]),
    summarise('wisp', [s(40, 6), s(30, 6), s(45, 6)]),
  ]);
  const wisp = runs[2];
  assert.ok(wisp);
  assert.equal(wisp.rps, 40);
  assert.equal(wisp.rps_ratio_nginx, 0.8);
  assert.equal(wisp.p99_ratio_nginx, 2);
  assert.equal(wisp.rps_ratio_direct, 0.364);
  assert.equal(wisp.non2xx, 3);
  assert.equal(wisp.rss_mb, 10);
  assert.deepEqual(wisp.rps_rounds, [40, 30, 45]);
  const table = formatTable(runs);
  assert.match(table, /\| wisp +\| +40 \|/);
  assert.match(table, /rps\/nginx/);
});

test('parseArgs: quick defaults, overrides and validation', () => {
  const q = parseArgs(['--quick']);
  assert.equal(q.durationS, 3);
  assert.equal(q.rounds, 1);
  const d = parseArgs(['--connections', '1000', '--only', 'nginx,wisp', '--rounds', '3']);
  assert.equal(d.durationS, 10);
  assert.equal(d.rounds, 3);
  assert.equal(d.connections, 1000);
  assert.deepEqual(d.only, ['nginx', 'wisp']);
  assert.throws(() => parseArgs(['--connections', 'many']), /positive number/);
  assert.throws(() => parseArgs(['--only']), /needs a value/);
});

test('readme block: the results table goes between the markers, the rest stays', () => {
  const dir = mkdtempSync(join(os.tmpdir(), 'wisp-bench-test-'));
  try {
    const file = join(dir, 'README.md');
    const { start, end } = readmeMarkers('latest');
    writeFileSync(file, `# title\n\n${start}\nold\n${end}\n\ntail\n`);
    const runs = addRatios([summarise('nginx', [{ rps: 10, p50_ms: 1, p99_ms: 2, non2xx: 0, errors: 0, requests: 10, rss_bytes: null }])]);
    const block = readmeBlock('2026-01-02T03:04:05.000Z', { cpus: 2, model: 'cpu', node: 'v20' }, { tool: 'wrk', connections: 50, duration_s: 10, warmup_s: 2, rounds: 2, versions: {} }, runs, [{ name: 'wisp', reason: 'not built' }]);
    assert.equal(replaceReadmeBlock(file, 'c1000', block), false, 'no block for another results file');
    assert.equal(replaceReadmeBlock(file, 'latest', block), true);
    const text = readFileSync(file, 'utf8');
    assert.match(text, /^# title\n/);
    assert.match(text, /tail\n$/);
    assert.doesNotMatch(text, /\nold\n/);
    assert.match(text, /2026-01-02 03:04 UTC, 2 × cpu/);
    assert.match(text, /Skipped wisp: not built\./);
    assert.equal(replaceReadmeBlock(join(dir, 'missing.md'), 'latest', block), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('streamThrough downloads the whole body and reports it complete', async () => {
  const size = 2 * 1024 * 1024 + 1;
  const up = await startBenchUpstream({ streamBytes: size });
  try {
    const r = await streamThrough({ port: up.port, proc: null, stop: async () => {} }, 'direct', size);
    assert.equal(r.bytes, size);
    assert.equal(r.complete, true);
    assert.equal(r.error, undefined);
  } finally {
    up.close();
  }
});

test('FilterReloader posts reloads to the admin API and counts outcomes', async () => {
  const seen: string[] = [];
  const admin = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(seen.length === 2 ? 500 : 200).end('{}');
  });
  await new Promise<void>((r) => admin.listen(0, '127.0.0.1', r));
  const port = (admin.address() as { port: number }).port;
  try {
    const reloader = new FilterReloader(port, 'noop', 10);
    await waitFor(() => seen.length >= 3, 5000, 'three reloads');
    const counts = await reloader.stop();
    assert.equal(seen[0], 'POST /filters/noop/reload');
    assert.equal(counts.reload_failures, 1);
    assert.equal(counts.reloads, seen.length - 1);
    const after = seen.length;
    await new Promise((r) => setImmediate(r));
    assert.equal(seen.length, after, 'no reload after stop');
  } finally {
    admin.closeAllConnections();
    await new Promise<void>((r) => admin.close(() => r()));
  }
});

test('side-task counters are summed over rounds', () => {
  const s = (reloads: number) => ({ rps: 1, p50_ms: 1, p99_ms: 1, non2xx: 0, errors: 0, requests: 1, rss_bytes: null, extra: { reloads, reload_failures: 0 } });
  const r = summarise('wisp+hotload', [s(3), s(4)]);
  assert.deepEqual(r.extra, { reloads: 7, reload_failures: 0 });
  assert.equal(summarise('wisp', [{ ...s(1), extra: undefined }]).extra, undefined);
});

test('shortVersion keeps the product and version only', () => {
  assert.equal(shortVersion('nginx version: nginx/1.22.1'), 'nginx/1.22.1');
  assert.equal(shortVersion('HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/'), 'HAProxy 2.6.12-1+deb12u4');
  assert.equal(shortVersion('wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer'), 'wrk debian/4.1.0-3+b2');
});
