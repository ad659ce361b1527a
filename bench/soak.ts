// Soak run: Wisp (child process, a filter chain on the route) in front of the uWS bench
// upstream (child process), loaded by autocannon at ~70% of a quick max measured first, while
// the config file is rewritten every 5 s (hot reload) and a filter is hot-loaded over the
// admin API every 15 s. Every 5 s a sample: requests, errors, non-2xx, p99 of the interval,
// RSS and open fds of the Wisp process. Writes bench/results/soak.json and soak.svg.
//
//   npm run soak -- [--minutes N] [--rate RPS] [--connections N] [--out DIR]
import { createRequire } from 'node:module';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagedProcess, installCleanup, rssBytes, stopAll, waitReady } from './peers/proc.js';
import { freePort } from '../test/helpers/net.js';
import { chainConfigYaml } from './chain-config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SAMPLE_MS = 5000;
const RELOAD_MS = 5000;
const HOTLOAD_MS = 15_000;
const LOAD_SHARE = 0.7;

interface Options {
  minutes: number;
  rate: number;
  connections: number;
  out: string;
}

interface Sample {
  t_s: number;
  requests: number;
  errors: number;
  non2xx: number;
  p99_ms: number;
  rss_mb: number;
  fds: number;
}

/** The part of autocannon's instance this file uses. */
interface AutocannonInstance {
  on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void;
  on(event: 'reqError', fn: (err: Error) => void): void;
  stop(): void;
}
type Autocannon = (opts: Record<string, unknown>, done?: (err: Error | null, result: { requests: { average: number } }) => void) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

function parseArgs(argv: string[]): Options {
  const val = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    minutes: Number(val('--minutes') ?? 10),
    rate: Number(val('--rate') ?? 0),
    connections: Number(val('--connections') ?? 32),
    out: path.resolve(val('--out') ?? path.join(ROOT, 'bench', 'results')),
  };
}

function wispYaml(listenPort: number, adminPort: number, upstreamPort: number, tag: string): string {
  return chainConfigYaml({ listenerName: 'soak', listenPort, adminPort, upstreamPort, workers: 1, tag: `soak-${tag}`, drainTimeout: '2s', via: `1.1 wisp-${tag}` });
}

function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

function request(port: number, method: string, urlPath: string, body?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, method, agent: false, timeout: 15_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end(body);
  });
}

function p99(values: number[]): number {
  if (values.length === 0) return 0;
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.floor(values.length * 0.99))]!;
}

/** Sum of a Prometheus counter's series whose labels contain `match`. */
function metric(text: string, name: string, match = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || !line.includes(match)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return sum;
}

function quickMax(url: string, connections: number): Promise<number> {
  return new Promise((resolve, reject) => {
    autocannon({ url, connections, duration: 10 }, (err, result) => (err ? reject(err) : resolve(result.requests.average)));
  });
}

/** One panel per series, stacked, sharing the time axis. Plain SVG, no dependency. */
export function soakSvg(samples: Sample[], title: string): string {
  const series: Array<[keyof Sample, string, string]> = [
    ['rss_mb', 'RSS (MB)', '#1f77b4'],
    ['fds', 'open fds', '#2ca02c'],
    ['p99_ms', 'p99 of interval (ms)', '#d62728'],
  ];
  const W = 800;
  const panelH = 160;
  const left = 70;
  const right = 20;
  const top = 40;
  const gap = 40;
  const H = top + series.length * (panelH + gap) + 10;
  const tMax = Math.max(1, ...samples.map((s) => s.t_s));
  const x = (t: number) => left + ((W - left - right) * t) / tMax;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`,
  ];
  series.forEach(([key, label, color], i) => {
    const y0 = top + i * (panelH + gap);
    const values = samples.map((s) => Number(s[key]));
    const vMax = Math.max(1e-9, ...values) * 1.1;
    const y = (v: number) => y0 + panelH - (panelH * v) / vMax;
    out.push(`<rect x="${left}" y="${y0}" width="${W - left - right}" height="${panelH}" fill="none" stroke="#999"/>`);
    out.push(`<text x="${left}" y="${y0 - 6}" fill="${color}">${escapeXml(label)}</text>`);
    for (const f of [0, 0.5, 1]) {
      const v = vMax * f;
      out.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v >= 100 ? Math.round(v) : v.toFixed(1)}</text>`);
      out.push(`<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`);
    }
    const pts = samples.map((s) => `${x(s.t_s).toFixed(1)},${y(Number(s[key])).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
  });
  const yAxis = top + series.length * (panelH + gap) - gap + 16;
  for (let k = 0; k <= 4; k++) {
    const t = (tMax * k) / 4;
    out.push(`<text x="${x(t)}" y="${yAxis}" text-anchor="middle">${Math.round(t)} s</text>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  installCleanup();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wisp-soak-'));
  const [upstreamPort, listenPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const upstream = new ManagedProcess('upstream', process.execPath, [path.join(ROOT, 'dist', 'bench', 'upstream.js'), '--port', String(upstreamPort)]);
  await waitReady(upstream, upstreamPort);
  const conf = path.join(dir, 'wisp.yaml');
  writeFileSync(conf, wispYaml(listenPort, adminPort, upstreamPort, 'a'));
  const wisp = new ManagedProcess('wisp', process.execPath, [path.join(ROOT, 'bin', 'wisp.js'), '--config', conf], {
    env: { ...process.env, WISP_LOG_LEVEL: 'warn' },
  });
  await waitReady(wisp, listenPort);
  const url = `http://127.0.0.1:${listenPort}/soak`;

  const max = await quickMax(url, opts.connections);
  const rate = opts.rate > 0 ? opts.rate : Math.round(max * LOAD_SHARE);
  process.stdout.write(`quick max ${Math.round(max)} req/s; soaking at ${rate} req/s for ${opts.minutes} min\n`);

  // Counters of the current interval, reset at each sample.
  let requests = 0;
  let errors = 0;
  let non2xx = 0;
  let latencies: number[] = [];
  const totals = { requests: 0, errors: 0, non2xx: 0 };
  const samples: Sample[] = [];
  const durationS = Math.round(opts.minutes * 60);
  let loadDone!: () => void;
  const finished = new Promise<void>((r) => (loadDone = r));
  const load = autocannon({ url, connections: opts.connections, duration: durationS, overallRate: rate, timeout: 10 }, () => loadDone());
  load.on('response', (_c, status, _b, ms) => {
    requests++;
    if (status < 200 || status > 299) non2xx++;
    latencies.push(ms);
  });
  load.on('reqError', () => errors++);

  const t0 = Date.now();
  const sampler = setInterval(() => {
    samples.push({
      t_s: Math.round((Date.now() - t0) / 1000),
      requests,
      errors,
      non2xx,
      p99_ms: Math.round(p99(latencies) * 100) / 100,
      rss_mb: Math.round((rssBytes(wisp.pid) / 1048576) * 10) / 10,
      fds: openFds(wisp.pid),
    });
    totals.requests += requests;
    totals.errors += errors;
    totals.non2xx += non2xx;
    requests = errors = non2xx = 0;
    latencies = [];
    const s = samples[samples.length - 1]!;
    process.stdout.write(`${s.t_s}s req=${s.requests} err=${s.errors} non2xx=${s.non2xx} p99=${s.p99_ms}ms rss=${s.rss_mb}MB fds=${s.fds}\n`);
  }, SAMPLE_MS);

  // Config reloads: alternate two valid files (the tag filter's config and `via` change, so
  // every reload builds a new filter generation and new listener state).
  let flip = false;
  const reloader = setInterval(() => {
    flip = !flip;
    writeFileSync(conf, wispYaml(listenPort, adminPort, upstreamPort, flip ? 'b' : 'a'));
  }, RELOAD_MS);
  // Filter hot-loads over the admin API.
  const noopBytes = readFileSync(path.join(ROOT, 'filters', 'build', 'noop.wasm'));
  const hotloads = { ok: 0, failed: 0 };
  let hotloadBusy = false;
  const hotloader = setInterval(() => {
    if (hotloadBusy) return;
    hotloadBusy = true;
    void request(adminPort, 'PUT', '/filters/noop', noopBytes).then((r) => {
      if (r.status === 200) hotloads.ok++;
      else hotloads.failed++;
      hotloadBusy = false;
    });
  }, HOTLOAD_MS);

  await finished;
  clearInterval(sampler);
  clearInterval(reloader);
  clearInterval(hotloader);
  const metrics = (await request(adminPort, 'GET', '/metrics')).body;
  const alive = wisp.hasExited ? 'exited' : 'running';
  await wisp.stop(5000);
  await upstream.stop();
  await stopAll();
  rmSync(dir, { recursive: true, force: true });

  // The first samples include start-up growth (JIT, pools, buffers); growth is judged after it.
  const settled = samples.slice(Math.min(2, samples.length - 1));
  const summary = {
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, node: process.version },
    minutes: opts.minutes,
    connections: opts.connections,
    quick_max_rps: Math.round(max),
    target_rps: rate,
    achieved_rps: Math.round(totals.requests / Math.max(1, samples.length * (SAMPLE_MS / 1000))),
    totals,
    config_reloads: { ok: metric(metrics, 'wisp_config_reloads_total', 'result="ok"'), failed: metric(metrics, 'wisp_config_reloads_total', 'result="failed"') },
    filter_hotloads: hotloads,
    wisp_at_end: alive,
    rss_mb: { first: settled[0]?.rss_mb ?? 0, last: samples[samples.length - 1]?.rss_mb ?? 0, max: Math.max(...samples.map((s) => s.rss_mb)) },
    fds: { first: settled[0]?.fds ?? 0, last: samples[samples.length - 1]?.fds ?? 0, max: Math.max(...samples.map((s) => s.fds)) },
    p99_ms: { median: median(samples.map((s) => s.p99_ms)), max: Math.max(...samples.map((s) => s.p99_ms)) },
    samples,
  };
  mkdirSync(opts.out, { recursive: true });
  writeFileSync(path.join(opts.out, 'soak.json'), JSON.stringify(summary, null, 2) + '\n');
  const title = `Wisp soak: ${opts.minutes} min at ${rate} req/s, reload every 5 s, filter hot-load every 15 s`;
  writeFileSync(path.join(opts.out, 'soak.svg'), soakSvg(samples, title));
  const { samples: _omit, ...brief } = summary;
  process.stdout.write(`${JSON.stringify(brief, null, 2)}\n`);
}

function median(values: number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

main().catch(async (err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await stopAll();
  process.exit(1);
});
