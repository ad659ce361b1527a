// `npm run bench`: the same wrk load against the upstream directly, nginx, haproxy and Wisp
// (plain and with filters), in interleaved rounds, reporting medians and ratios to nginx.
// See bench/README.md for what each field means.
import { mkdtempSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pickLoadTool } from './peers/load.js';
import type { LoadResult, LoadTool } from './peers/load.js';
import { ManagedProcess, installCleanup, stopAll, treeRssBytes, versionOf, findExecutable, waitReady } from './peers/proc.js';
import { directTarget } from './peers/direct.js';
import { nginxTarget } from './peers/nginx.js';
import { haproxyTarget } from './peers/haproxy.js';
import { wispTarget } from './peers/wisp.js';
import type { RunningTarget, Target, TargetContext } from './peers/target.js';
import { freePort } from '../test/helpers/net.js';

/** Repository root: this file runs as dist/bench/run.js. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Every run, in report order. Add a variant here; `--only` selects by name. */
export const TARGETS: Target[] = [
  directTarget,
  nginxTarget,
  haproxyTarget,
  wispTarget('wisp'),
  wispTarget('wisp+noop', [{ name: 'noop', wasm: 'filters/build/noop.wasm' }]),
  wispTarget('wisp+header', [{ name: 'add-header', wasm: 'filters/build/add-header.wasm' }]),
];

export interface BenchOptions {
  quick: boolean;
  rounds: number;
  durationS: number;
  warmupS: number;
  connections: number;
  only: string[] | null;
  out: string;
  stream: boolean;
  streamBytes: number;
  tool?: 'wrk' | 'autocannon';
  /** Rewrite the results block of bench/README.md with this run's table. */
  updateReadme: boolean;
}

export function parseArgs(argv: string[]): BenchOptions {
  const quick = argv.includes('--quick');
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
    return v;
  };
  const num = (name: string, dflt: number, min = Number.MIN_VALUE): number => {
    const v = value(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a ${min === 0 ? 'non-negative' : 'positive'} number, got ${v}`);
    return n;
  };
  const only = value('--only');
  const rounds = Math.floor(num('--rounds', quick ? 1 : 2, 0));
  const defaultOut = join(ROOT, 'bench', 'results', rounds === 0 ? 'stream.json' : 'latest.json');
  const tool = value('--tool');
  if (tool !== undefined && tool !== 'wrk' && tool !== 'autocannon') throw new Error('--tool must be wrk or autocannon');
  return {
    quick,
    // --rounds 0 skips the load runs (with --stream: only the streaming check), and then
    // writes bench/results/stream.json so latest.json keeps the last load numbers.
    rounds,
    durationS: num('--duration', quick ? 3 : 10),
    warmupS: num('--warmup', quick ? 1 : 2),
    connections: Math.floor(num('--connections', 50)),
    only: only ? only.split(',').map((s) => s.trim()).filter(Boolean) : null,
    out: resolve(value('--out') ?? defaultOut),
    stream: argv.includes('--stream'),
    streamBytes: Math.floor(num('--stream-bytes', 1024 * 1024 * 1024)),
    tool,
    updateReadme: argv.includes('--update-readme'),
  };
}

export interface RunSummary {
  name: string;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  non2xx: number;
  errors: number;
  rss_mb: number | null;
  /** Each round's rps, in round order (the medians above come from these). */
  rps_rounds: number[];
  rps_ratio_nginx: number | null;
  p99_ratio_nginx: number | null;
  rps_ratio_direct: number | null;
}

interface Sample extends LoadResult {
  rss_bytes: number | null;
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const round2 = (n: number) => Math.round(n * 100) / 100;
const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** Medians per target (rps, latencies, RSS); errors and non-2xx are totals over all rounds. */
export function summarise(name: string, samples: Sample[]): Omit<RunSummary, 'rps_ratio_nginx' | 'p99_ratio_nginx' | 'rps_ratio_direct'> {
  const rss = samples.map((s) => s.rss_bytes).filter((v): v is number => v !== null);
  return {
    name,
    rps: Math.round(median(samples.map((s) => s.rps))),
    p50_ms: round3(median(samples.map((s) => s.p50_ms))),
    p99_ms: round3(median(samples.map((s) => s.p99_ms))),
    non2xx: samples.reduce((a, s) => a + s.non2xx, 0),
    errors: samples.reduce((a, s) => a + s.errors, 0),
    rss_mb: rss.length > 0 ? round2(median(rss) / (1024 * 1024)) : null,
    rps_rounds: samples.map((s) => Math.round(s.rps)),
  };
}

export function addRatios(runs: Omit<RunSummary, 'rps_ratio_nginx' | 'p99_ratio_nginx' | 'rps_ratio_direct'>[]): RunSummary[] {
  const nginx = runs.find((r) => r.name === 'nginx');
  const direct = runs.find((r) => r.name === 'direct');
  return runs.map((r) => ({
    ...r,
    rps_ratio_nginx: nginx && nginx.rps > 0 ? round3(r.rps / nginx.rps) : null,
    p99_ratio_nginx: nginx && nginx.p99_ms > 0 ? round3(r.p99_ms / nginx.p99_ms) : null,
    rps_ratio_direct: direct && direct.rps > 0 ? round3(r.rps / direct.rps) : null,
  }));
}

export function formatTable(runs: RunSummary[]): string {
  const hasNginx = runs.some((r) => r.name === 'nginx');
  const head = ['run', 'rps', 'p50 ms', 'p99 ms', 'non2xx', 'errors', 'rss MB'];
  if (hasNginx) head.push('rps/nginx', 'p99/nginx');
  head.push('rps/direct');
  const fmt = (n: number | null, digits = 2) => (n === null || Number.isNaN(n) ? '-' : n.toFixed(digits));
  const rows = runs.map((r) => {
    const row = [r.name, String(r.rps), fmt(r.p50_ms), fmt(r.p99_ms), String(r.non2xx), String(r.errors), fmt(r.rss_mb, 1)];
    if (hasNginx) row.push(fmt(r.rps_ratio_nginx), fmt(r.p99_ratio_nginx));
    row.push(fmt(r.rps_ratio_direct));
    return row;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(' | ') + ' |';
  const sep = '|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 1) + '-' : '-'.repeat(w + 1) + ':')).join('|') + '|';
  return [line(head), sep, ...rows.map(line)].join('\n');
}

async function startUpstreamProcess(streamBytes: number): Promise<{ proc: ManagedProcess; port: number }> {
  const port = await freePort();
  const proc = new ManagedProcess('upstream', process.execPath, [
    join(ROOT, 'dist', 'bench', 'upstream.js'),
    '--port',
    String(port),
    '--stream-bytes',
    String(streamBytes),
  ]);
  await waitReady(proc, port, 15_000);
  return { proc, port };
}

async function measure(tool: LoadTool, target: RunningTarget, opts: BenchOptions): Promise<Sample> {
  const url = `http://127.0.0.1:${target.port}/`;
  // Warm-up: JIT, connection pools, page faults; its numbers are thrown away.
  await tool.run({ url, connections: opts.connections, durationS: opts.warmupS });
  const r = await tool.run({ url, connections: opts.connections, durationS: opts.durationS });
  return { ...r, rss_bytes: target.proc ? treeRssBytes(target.proc.pid) : null };
}

export interface StreamResult {
  name: string;
  bytes: number;
  expected_bytes: number;
  complete: boolean;
  seconds: number;
  mb_per_s: number;
  rss_before_mb: number;
  rss_peak_mb: number;
  rss_growth_mb: number;
  error?: string;
}

const STREAM_STALL_MS = 10_000;
const STREAM_DEADLINE_MS = 300_000;

/** Download GET /stream through the target, sampling the target's RSS every 100 ms. */
function streamThrough(target: RunningTarget, name: string, expected: number): Promise<StreamResult> {
  const pid = target.proc?.pid ?? -1;
  const before = treeRssBytes(pid);
  let peak = before;
  const started = process.hrtime.bigint();
  let bytes = 0;
  let lastDataAt = Date.now();
  return new Promise((resolveResult) => {
    let settled = false;
    const sampler = setInterval(() => {
      peak = Math.max(peak, treeRssBytes(pid));
      if (Date.now() - lastDataAt > STREAM_STALL_MS) {
        req.destroy();
        finish(`stalled: no data for ${STREAM_STALL_MS / 1000} s`);
      }
    }, 100);
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearInterval(sampler);
      clearTimeout(deadline);
      peak = Math.max(peak, treeRssBytes(pid));
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const mb = 1024 * 1024;
      resolveResult({
        name,
        bytes,
        expected_bytes: expected,
        complete: bytes === expected,
        seconds: round3(seconds),
        mb_per_s: round2(bytes / mb / seconds),
        rss_before_mb: round2(before / mb),
        rss_peak_mb: round2(peak / mb),
        rss_growth_mb: round2((peak - before) / mb),
        ...(error ? { error } : {}),
      });
    };
    const req = http.get({ host: '127.0.0.1', port: target.port, path: '/stream', agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        finish(`status ${res.statusCode}`);
        return;
      }
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        lastDataAt = Date.now();
      });
      res.on('end', () => finish());
      res.on('error', (err) => finish(err.message));
      res.on('close', () => finish(bytes === expected ? undefined : 'connection closed early'));
    });
    req.on('error', (err) => finish(err.message));
    const deadline = setTimeout(() => {
      req.destroy();
      finish(`timed out after ${STREAM_DEADLINE_MS / 1000} s`);
    }, STREAM_DEADLINE_MS);
  });
}

function machine(): { cpus: number; model: string; node: string; os: string } {
  const cpus = os.cpus();
  return { cpus: cpus.length, model: cpus[0]?.model ?? 'unknown', node: process.version, os: `${os.type()} ${os.release()}` };
}

function peerVersions(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['nginx', 'haproxy', 'wrk']) {
    const exe = findExecutable(name);
    if (exe) out[name] = versionOf(exe);
  }
  return out;
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

export async function runBench(opts: BenchOptions): Promise<number> {
  installCleanup();
  const tool = pickLoadTool(opts.tool);
  if (typeof tool === 'string') {
    log(tool);
    return 1;
  }
  const unknown = (opts.only ?? []).filter((n) => !TARGETS.some((t) => t.name === n));
  if (unknown.length > 0) {
    log(`unknown run name(s): ${unknown.join(', ')}; known: ${TARGETS.map((t) => t.name).join(', ')}`);
    return 1;
  }
  const selected = TARGETS.filter((t) => !opts.only || opts.only.includes(t.name));
  const skipped: { name: string; reason: string }[] = [];
  const active: Target[] = [];
  for (const t of selected) {
    const reason = t.unavailable({ root: ROOT });
    if (reason) skipped.push({ name: t.name, reason });
    else active.push(t);
  }
  for (const s of skipped) log(`skip ${s.name}: ${s.reason}`);

  const tmp = mkdtempSync(join(os.tmpdir(), 'wisp-bench-'));
  const samples = new Map<string, Sample[]>(active.map((t) => [t.name, []]));
  const failed: { name: string; round: number; error: string }[] = [];
  const streams: StreamResult[] = [];
  const upstream = await startUpstreamProcess(opts.streamBytes);
  try {
    log(`${tool.name}: ${opts.connections} connections, ${opts.warmupS} s warm-up + ${opts.durationS} s per run, ${opts.rounds} round(s), upstream :${upstream.port}`);
    for (let round = 0; round < opts.rounds; round++) {
      // Rotate the order each round so no target always runs first (cold machine) or last.
      const order = active.map((_, i) => active[(i + round) % active.length] as Target);
      for (const t of order) {
        // A target that failed once (crashed, never ready) would most likely fail again and
        // cost its readiness timeout every round.
        if (failed.some((f) => f.name === t.name)) continue;
        const ctx: TargetContext = { upstreamPort: upstream.port, dir: join(tmp, `${t.name}-${round}`), root: ROOT, connections: opts.connections, streaming: false };
        let running: RunningTarget | null = null;
        try {
          running = await t.start(ctx);
          const s = await measure(tool, running, opts);
          samples.get(t.name)?.push(s);
          log(`round ${round + 1}/${opts.rounds} ${t.name.padEnd(12)} ${Math.round(s.rps)} rps  p50 ${s.p50_ms.toFixed(3)} ms  p99 ${s.p99_ms.toFixed(3)} ms  non2xx ${s.non2xx}  errors ${s.errors}`);
        } catch (err) {
          const msg = (err as Error).message;
          failed.push({ name: t.name, round: round + 1, error: msg });
          log(`round ${round + 1} ${t.name} FAILED: ${msg}`);
        } finally {
          await running?.stop();
        }
      }
    }
    if (opts.stream) {
      for (const t of active) {
        if (t.name === 'direct') continue;
        const ctx: TargetContext = { upstreamPort: upstream.port, dir: join(tmp, `${t.name}-stream`), root: ROOT, connections: opts.connections, streaming: true };
        let running: RunningTarget | null = null;
        try {
          running = await t.start(ctx);
          const r = await streamThrough(running, t.name, opts.streamBytes);
          streams.push(r);
          log(`stream ${t.name}: ${r.bytes} B in ${r.seconds} s (${r.mb_per_s} MB/s), RSS ${r.rss_before_mb} → peak ${r.rss_peak_mb} MB (+${r.rss_growth_mb})${r.error ? ` error: ${r.error}` : ''}`);
        } catch (err) {
          failed.push({ name: `${t.name} (stream)`, round: 0, error: (err as Error).message });
          log(`stream ${t.name} FAILED: ${(err as Error).message}`);
        } finally {
          await running?.stop();
        }
      }
    }
  } finally {
    await upstream.proc.stop();
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }

  const runs = addRatios(active.filter((t) => (samples.get(t.name)?.length ?? 0) > 0).map((t) => summarise(t.name, samples.get(t.name) as Sample[])));
  const report = {
    date: new Date().toISOString(),
    machine: machine(),
    settings: {
      tool: tool.name,
      connections: opts.connections,
      duration_s: opts.durationS,
      warmup_s: opts.warmupS,
      rounds: opts.rounds,
      versions: peerVersions(),
    },
    runs,
    skipped,
    failed,
    ...(opts.stream ? { stream: streams } : {}),
  };
  mkdirSync(dirname(opts.out), { recursive: true });
  const tmpOut = `${opts.out}.tmp`;
  writeFileSync(tmpOut, `${JSON.stringify(report, null, 2)}\n`);
  renameSync(tmpOut, opts.out);

  if (runs.length > 0) process.stdout.write(`\n${formatTable(runs)}\n\n`);
  if (streams.length > 0) process.stdout.write(`\n${formatStreamTable(streams)}\n\n`);
  for (const s of skipped) process.stdout.write(`skipped ${s.name}: ${s.reason}\n`);
  for (const f of failed) process.stdout.write(`failed ${f.name}${f.round ? ` (round ${f.round})` : ''}: ${f.error.split('\n')[0]}\n`);
  process.stdout.write(`wrote ${opts.out}\n`);
  if (opts.updateReadme && runs.length > 0) {
    const readme = join(ROOT, 'bench', 'README.md');
    const block = readmeBlock(report.date, report.machine, report.settings, runs, skipped);
    if (replaceReadmeBlock(readme, block)) process.stdout.write(`updated ${readme}\n`);
    else process.stdout.write(`${readme} has no ${README_START} … ${README_END} block; not updated\n`);
  }
  return failed.length > 0 ? 1 : 0;
}

export function formatStreamTable(streams: StreamResult[]): string {
  const lines = ['| stream | bytes | complete | s | MB/s | RSS before MB | RSS peak MB | growth MB | error |', '|---|--:|---|--:|--:|--:|--:|--:|---|'];
  for (const r of streams) {
    lines.push(`| ${r.name} | ${r.bytes} | ${r.complete ? 'yes' : 'no'} | ${r.seconds} | ${r.mb_per_s} | ${r.rss_before_mb} | ${r.rss_peak_mb} | ${r.rss_growth_mb} | ${r.error ?? ''} |`);
  }
  return lines.join('\n');
}

export const README_START = '<!-- bench:latest:start -->';
export const README_END = '<!-- bench:latest:end -->';

export function readmeBlock(
  date: string,
  m: { cpus: number; model: string; node: string },
  settings: { tool: string; connections: number; duration_s: number; warmup_s: number; rounds: number; versions: Record<string, string> },
  runs: RunSummary[],
  skipped: { name: string; reason: string }[],
): string {
  const versions = Object.values(settings.versions).map((v) => v.replace(/ - https?:\S+/, '')).join('; ');
  const lines = [
    `${date.slice(0, 16).replace('T', ' ')} UTC, ${m.cpus} × ${m.model}, Node ${m.node}; ${settings.tool} -c${settings.connections}, ` +
      `${settings.warmup_s} s warm-up + ${settings.duration_s} s, median of ${settings.rounds} round(s). ${versions}.`,
    '',
    formatTable(runs),
  ];
  for (const s of skipped) lines.push('', `Skipped ${s.name}: ${s.reason}.`);
  return lines.join('\n');
}

/** Put `block` between the README's markers; false when the markers are missing. */
export function replaceReadmeBlock(file: string, block: string): boolean {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return false;
  }
  const a = text.indexOf(README_START);
  const b = text.indexOf(README_END);
  if (a < 0 || b < a) return false;
  writeFileSync(file, `${text.slice(0, a + README_START.length)}\n${block}\n${text.slice(b)}`);
  return true;
}

const USAGE = `usage: npm run bench -- [--quick] [--rounds R] [--duration S] [--warmup S] [--connections N]
                        [--only name1,name2] [--out file.json] [--stream [--stream-bytes N]]
                        [--tool wrk|autocannon] [--update-readme]
runs: ${TARGETS.map((t) => t.name).join(', ')}`;

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
  } else {
    let opts: BenchOptions | null = null;
    try {
      opts = parseArgs(argv);
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
      process.exitCode = 2;
    }
    if (opts) {
      runBench(opts).then(
        (code) => {
          process.exitCode = code;
        },
        async (err) => {
          process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
          await stopAll();
          process.exitCode = 1;
        },
      );
    }
  }
}
