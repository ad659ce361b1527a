// Measures what filter hot-loads cost in memory: a Wisp process (child, three filters on a
// route) takes N `POST /filters/NAME/reload` in a row over the admin API, with a request
// through the route every few reloads (so retired generations have streams to drain), and
// its RSS is printed every 100 reloads. Run once per worker count. A measurement, not a test:
// the bound the issue sets (1,000 reloads grow RSS by < 50 MB) is checked in
// test/wasm/loading.test.ts at a smaller count.
//
//   node dist/bench/reload-rss.js [--reloads 1000] [--workers 1,2] [--filter noop] [--every 100] [--warmup 20]
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagedProcess, installCleanup, rssBytes, stopAll, waitReady } from './peers/proc.js';
import { freePort } from '../test/helpers/net.js';
import { chainConfigYaml } from './chain-config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MB = 1048576;

interface Options {
  reloads: number;
  workers: number[];
  filter: string;
  every: number;
  warmup: number;
}

function parseArgs(argv: string[]): Options {
  const val = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    reloads: Number(val('--reloads') ?? 1000),
    workers: (val('--workers') ?? '1,2').split(',').map(Number),
    filter: val('--filter') ?? 'noop',
    every: Number(val('--every') ?? 100),
    warmup: Number(val('--warmup') ?? 20),
  };
}

function request(port: number, method: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, method, agent: false, timeout: 15_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
}

/** RSS after it stops moving: the child collects garbage on its own schedule, so a sample
 * right after a burst of reloads reads high; wait (bounded) until two reads agree. */
async function settledRss(pid: number): Promise<number> {
  let last = rssBytes(pid);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = rssBytes(pid);
    if (Math.abs(now - last) < MB / 2) return now;
    last = now;
  }
  return last;
}

interface RunResult {
  workers: number;
  reloads: number;
  rss_mb: { before: number; samples: number[]; after: number; settled: number; growth: number };
  failed: number;
}

async function runOnce(workers: number, opts: Options, upstreamPort: number): Promise<RunResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wisp-reload-rss-'));
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  const conf = path.join(dir, 'wisp.yaml');
  writeFileSync(conf, chainConfigYaml({ listenerName: 'main', listenPort, adminPort, upstreamPort, workers, tag: 'reload-rss' }));
  const wisp = new ManagedProcess('wisp', process.execPath, [path.join(ROOT, 'bin', 'wisp.js'), '--config', conf], {
    env: { ...process.env, WISP_LOG_LEVEL: 'warn' },
  });
  try {
    await waitReady(wisp, listenPort);
    // Warm-up: reloads and requests so JIT, pools and first-time allocations are in.
    for (let i = 0; i < opts.warmup; i++) {
      await request(adminPort, 'POST', `/filters/${opts.filter}/reload`);
      await request(listenPort, 'GET', '/warm');
    }
    const before = await settledRss(wisp.pid);
    process.stdout.write(`workers=${workers} before: ${(before / MB).toFixed(1)} MB\n`);
    const samples: number[] = [];
    let failed = 0;
    const t0 = Date.now();
    for (let i = 1; i <= opts.reloads; i++) {
      const r = await request(adminPort, 'POST', `/filters/${opts.filter}/reload`);
      if (r.status !== 200) {
        failed++;
        if (failed <= 3) process.stdout.write(`reload ${i}: ${r.status} ${r.body.trim()}\n`);
      }
      if (i % 10 === 0 && (await request(listenPort, 'GET', `/r${i}`)).status !== 200) failed++;
      if (i % opts.every === 0) {
        const rss = rssBytes(wisp.pid);
        samples.push(Math.round((rss / MB) * 10) / 10);
        process.stdout.write(
          `workers=${workers} reloads=${String(i).padStart(5)} rss=${(rss / MB).toFixed(1)} MB (+${((rss - before) / MB).toFixed(1)}) ${((Date.now() - t0) / i).toFixed(1)} ms/reload\n`,
        );
      }
    }
    const after = rssBytes(wisp.pid);
    const settled = await settledRss(wisp.pid);
    const filters = JSON.parse((await request(adminPort, 'GET', '/filters')).body) as { name: string; generation: number }[];
    process.stdout.write(
      `workers=${workers} settled: ${(settled / MB).toFixed(1)} MB, growth ${((settled - before) / MB).toFixed(1)} MB over ${opts.reloads} reloads; ` +
        `${opts.filter} is at generation ${filters.find((f) => f.name === opts.filter)?.generation}; failures ${failed}\n`,
    );
    const r1 = (n: number) => Math.round((n / MB) * 10) / 10;
    return {
      workers,
      reloads: opts.reloads,
      rss_mb: { before: r1(before), samples, after: r1(after), settled: r1(settled), growth: r1(settled - before) },
      failed,
    };
  } finally {
    await wisp.stop(5000);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  installCleanup();
  const upstreamPort = await freePort();
  const upstream = new ManagedProcess('upstream', process.execPath, [path.join(ROOT, 'dist', 'bench', 'upstream.js'), '--port', String(upstreamPort)]);
  await waitReady(upstream, upstreamPort);
  const results: RunResult[] = [];
  try {
    for (const w of opts.workers) results.push(await runOnce(w, opts, upstreamPort));
  } finally {
    await upstream.stop();
    await stopAll();
  }
  process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), node: process.version, results }, null, 2)}\n`);
}

main().catch(async (err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await stopAll();
  process.exit(1);
});
