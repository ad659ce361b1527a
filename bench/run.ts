// `npm run bench`: the same wrk load against the upstream directly, nginx, haproxy and Wisp
// (plain and with filters), in interleaved rounds, reporting medians and ratios to nginx.
// See bench/README.md for what each field means.
import { mkdtempSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pickLoadTool } from './peers/load.js';
import type { LoadResult, LoadTool } from './peers/load.js';
import { addRatios, formatExtras, formatTable, readmeBlock, readmeMarkers, replaceReadmeBlock, round2, summarise } from './peers/report.js';
import type { Sample } from './peers/report.js';
import { formatStreamTable, streamThrough } from './peers/stream.js';
import type { StreamResult } from './peers/stream.js';
import { ManagedProcess, installCleanup, stopAll, treeUsage, versionOf, findExecutable, waitReady } from './peers/proc.js';
import { formatFixedRateTable, runFixedRate, summariseFixedRate } from './fixed-rate.js';
import type { FixedRateSample } from './fixed-rate.js';
import { directTarget } from './peers/direct.js';
import { nginxTarget } from './peers/nginx.js';
import { haproxyTarget } from './peers/haproxy.js';
import { wispTarget } from './peers/wisp.js';
import type { RunningTarget, Target, TargetContext } from './peers/target.js';
import { freePort } from '../test/helpers/net.js';

/** Repository root: this file runs as dist/bench/run.js. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Issue 5's chain: API-key auth, a rate limit that never triggers, a breaker that stays
 * closed — the built-in filters a gateway route would carry. The load sends the key in the
 * query string (`CHAIN_PATH`). */
const CHAIN = [
  { name: 'auth', wasm: 'filters/build/auth.wasm', config: { keys: ['bench-key'], query_param: 'api_key' } },
  { name: 'ratelimit', wasm: 'filters/build/ratelimit.wasm', config: { key: 'client_ip', rate: 100_000_000, per: '1s', burst: 100_000_000 } },
  { name: 'breaker', wasm: 'filters/build/breaker.wasm', config: { consecutive_failures: 5, cooldown: '10s' } },
];
const CHAIN_PATH = '/?api_key=bench-key';

/** Every run, in report order. Add a variant here; `--only` selects by name. */
export const TARGETS: Target[] = [
  directTarget,
  nginxTarget,
  haproxyTarget,
  wispTarget('wisp'),
  wispTarget('wisp+noop', [{ name: 'noop', wasm: 'filters/build/noop.wasm' }]),
  wispTarget('wisp+header', [{ name: 'add-header', wasm: 'filters/build/add-header.wasm' }]),
  wispTarget('wisp+chain', CHAIN, { path: CHAIN_PATH }),
  // auth + ratelimit alone: both say they have nothing to do in the response phase
  // (wisp.skip_phases), so each request crosses to the worker once instead of twice.
  wispTarget('wisp+auth-rl', CHAIN.slice(0, 2), { path: CHAIN_PATH }),
  // The same chain in two filter workers: the memory a second worker costs (issue 4's
  // "3 filters × 2 workers" case).
  wispTarget('wisp+chain-2w', CHAIN, { workers: 2, path: CHAIN_PATH }),
  // `workers: 0`: the same filters on the event loop thread, no crossing to a worker.
  wispTarget('wisp+noop-inline', [{ name: 'noop', wasm: 'filters/build/noop.wasm' }], { workers: 0 }),
  wispTarget('wisp+chain-inline', CHAIN, { workers: 0, path: CHAIN_PATH }),
  // The noop filter hot-reloaded through the admin API every second under load.
  wispTarget('wisp+hotload', [{ name: 'noop', wasm: 'filters/build/noop.wasm' }], { hotload: { filter: 'noop', everyMs: 1000 } }),
  // The same HTTP load through an L4 (protocol: tcp) listener whose first bytes are sniffed
  // by filters/sniff; wrk keeps connections open, so the sniff is paid once per connection.
  wispTarget('wisp-tcp', [], { l4: { sniff: { name: 'sniff', wasm: 'filters/build/sniff.wasm' } } }),
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
  /** NODE_OPTIONS for the Wisp processes only (memory settings, docs/memory.md). */
  wispNodeOptions: string;
  /** Open-loop runs after each target's saturated run (bench/fixed-rate.ts): requests/s,
   * one run per rate; empty = none. */
  fixedRates: number[];
  fixedConnections: number;
  fixedDurationS: number;
  fixedWarmupS: number;
}

/** The argument after `name`, taken as is: its value is itself made of flags ("--max-semi-space-size=1"). */
function rawValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined) throw new Error(`${name} needs a value`);
  return v;
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
  const durationS = num('--duration', quick ? 3 : 10);
  const fixed = value('--fixed-rate') ?? '1000';
  const fixedRates = fixed === 'off' || fixed === '0' ? [] : fixed.split(',').map((r) => {
    const n = Number(r.trim());
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--fixed-rate takes requests/s (e.g. 1000 or 1000,5000) or off, got ${fixed}`);
    return n;
  });
  if (tool !== undefined && tool !== 'wrk' && tool !== 'autocannon') throw new Error('--tool must be wrk or autocannon');
  return {
    quick,
    // --rounds 0 skips the load runs (with --stream: only the streaming check), and then
    // writes bench/results/stream.json so latest.json keeps the last load numbers.
    rounds,
    durationS,
    warmupS: num('--warmup', quick ? 1 : 2),
    connections: Math.floor(num('--connections', 50)),
    only: only ? only.split(',').map((s) => s.trim()).filter(Boolean) : null,
    out: resolve(value('--out') ?? defaultOut),
    stream: argv.includes('--stream'),
    streamBytes: Math.floor(num('--stream-bytes', 1024 * 1024 * 1024)),
    tool,
    updateReadme: argv.includes('--update-readme'),
    wispNodeOptions: rawValue(argv, '--wisp-node-options') ?? '',
    fixedRates,
    // Istio's published sidecar latency: 1,000 rps over 16 connections.
    fixedConnections: Math.floor(num('--fixed-connections', 16, 1)),
    fixedDurationS: num('--fixed-duration', durationS),
    fixedWarmupS: num('--fixed-warmup', 1, 0),
  };
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
  const url = `http://127.0.0.1:${target.port}${target.path ?? '/'}`;
  const pid = target.proc?.pid;
  // Started and ready, nothing served yet: what the target costs doing nothing.
  const idle = pid !== undefined ? treeUsage(pid) : null;
  // Warm-up: JIT, connection pools, page faults; its numbers are thrown away.
  await tool.run({ url, connections: opts.connections, durationS: opts.warmupS });
  const side = target.duringMeasure?.();
  const before = pid !== undefined ? treeUsage(pid) : null;
  let r: LoadResult;
  try {
    r = await tool.run({ url, connections: opts.connections, durationS: opts.durationS });
  } catch (err) {
    await side?.stop();
    throw err;
  }
  const after = pid !== undefined ? treeUsage(pid) : null;
  const extra = await side?.stop();
  return {
    ...r,
    rss_bytes: after ? after.rssBytes : null,
    rss_idle_bytes: idle ? idle.rssBytes : null,
    rss_peak_bytes: after ? after.peakRssBytes : null,
    // CPU time per request barely moves when other processes share the cores, unlike rps:
    // the number to compare two builds with on a busy machine.
    cpu_us_per_req: before && after && r.requests > 0 ? ((after.cpuSeconds - before.cpuSeconds) * 1e6) / r.requests : null,
    ...(extra ? { extra } : {}),
  };
}

/** The target at each fixed rate, open loop, after its saturated run (so it is warm); the
 * side task (hot reloads) is not run here. */
async function measureFixed(target: RunningTarget, name: string, round: number, opts: BenchOptions): Promise<FixedRateSample[]> {
  const out: FixedRateSample[] = [];
  const pid = target.proc?.pid;
  for (const rate of opts.fixedRates) {
    const runOpts = { port: target.port, path: target.path ?? '/', rate, connections: opts.fixedConnections, durationS: opts.fixedDurationS, warmupS: opts.fixedWarmupS };
    // CPU is sampled around the whole run, warm-up included, and divided by every request sent.
    const before = pid !== undefined ? treeUsage(pid) : null;
    const r = await runFixedRate(runOpts);
    const after = pid !== undefined ? treeUsage(pid) : null;
    const sent = r.requests + Math.round(opts.fixedWarmupS * rate);
    out.push({ ...r, name, round, cpu_us_per_req: before && after && sent > 0 ? ((after.cpuSeconds - before.cpuSeconds) * 1e6) / sent : null });
  }
  return out;
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

/** The line of a multi-line failure (exit notice + the process's output) that says what broke. */
function briefError(error: string): string {
  const lines = error.split('\n').map((l) => l.trim()).filter(Boolean);
  const first = lines[0] ?? '';
  const cause = lines.slice(1).find((l) => l.includes('Error') || l.includes('error') || l.startsWith('wisp:'));
  return cause ? `${first} ${cause}` : first;
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

  // Anything else running on the machine shows up as noise in every column; say so.
  const loadBefore = round2((os.loadavg()[0] as number));
  if (loadBefore > os.cpus().length) log(`warning: 1-min load average ${loadBefore} on ${os.cpus().length} CPUs: the machine is busy, expect noisy numbers`);
  const tmp = mkdtempSync(join(os.tmpdir(), 'wisp-bench-'));
  const samples = new Map<string, Sample[]>(active.map((t) => [t.name, []]));
  const failed: { name: string; round: number; error: string }[] = [];
  const streams: StreamResult[] = [];
  const fixedSamples: FixedRateSample[] = [];
  const upstream = await startUpstreamProcess(opts.streamBytes);
  try {
    log(`${tool.name}: ${opts.connections} connections, ${opts.warmupS} s warm-up + ${opts.durationS} s per run, ${opts.rounds} round(s), upstream :${upstream.port}`);
    if (opts.fixedRates.length > 0) log(`then open loop at ${opts.fixedRates.join(', ')} rps: ${opts.fixedConnections} connections, ${opts.fixedWarmupS} s warm-up + ${opts.fixedDurationS} s per rate`);
    for (let round = 0; round < opts.rounds; round++) {
      // Rotate the order each round so no target always runs first (cold machine) or last.
      const order = active.map((_, i) => active[(i + round) % active.length] as Target);
      for (const t of order) {
        // A target that failed once (crashed, never ready) would most likely fail again and
        // cost its readiness timeout every round.
        if (failed.some((f) => f.name === t.name)) continue;
        const ctx: TargetContext = { upstreamPort: upstream.port, dir: join(tmp, `${t.name}-${round}`), root: ROOT, connections: opts.connections, streaming: false, wispNodeOptions: opts.wispNodeOptions };
        let running: RunningTarget | null = null;
        try {
          running = await t.start(ctx);
          const s = await measure(tool, running, opts);
          samples.get(t.name)?.push(s);
          log(`round ${round + 1}/${opts.rounds} ${t.name.padEnd(12)} ${Math.round(s.rps)} rps  p50 ${s.p50_ms.toFixed(3)} ms  p99 ${s.p99_ms.toFixed(3)} ms  non2xx ${s.non2xx}  errors ${s.errors}`);
          for (const f of await measureFixed(running, t.name, round + 1, opts)) {
            fixedSamples.push(f);
            log(`round ${round + 1}/${opts.rounds} ${t.name.padEnd(12)} @${f.rate} rps: ${f.achieved_rps} rps  p50 ${f.p50_ms.toFixed(3)} ms  p90 ${f.p90_ms.toFixed(3)} ms  p99 ${f.p99_ms.toFixed(3)} ms  errors ${f.errors}  non2xx ${f.non2xx}  unsent ${f.unsent}  send lag p99 ${f.send_lag_p99_ms.toFixed(3)} ms`);
          }
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
        const ctx: TargetContext = { upstreamPort: upstream.port, dir: join(tmp, `${t.name}-stream`), root: ROOT, connections: opts.connections, streaming: true, wispNodeOptions: opts.wispNodeOptions };
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
  const fixedRuns = summariseFixedRate(fixedSamples);
  const fixedTable = fixedRuns.length > 0 ? formatFixedRateTable(fixedRuns) : null;
  const report = {
    date: new Date().toISOString(),
    machine: machine(),
    settings: {
      tool: tool.name,
      connections: opts.connections,
      duration_s: opts.durationS,
      warmup_s: opts.warmupS,
      rounds: opts.rounds,
      ...(opts.wispNodeOptions ? { wisp_node_options: opts.wispNodeOptions } : {}),
      /** 1-minute load average before and after: well above `cpus` means others shared the machine. */
      loadavg: [loadBefore, round2(os.loadavg()[0] as number)],
      versions: peerVersions(),
    },
    runs,
    skipped,
    failed,
    ...(opts.stream ? { stream: streams } : {}),
    ...(fixedRuns.length > 0
      ? {
          fixed_rate: {
            settings: {
              generator: 'bench/fixed-rate.ts (open loop; latency from the due time while every connection is busy, else from the send)',
              rates: opts.fixedRates,
              connections: opts.fixedConnections,
              duration_s: opts.fixedDurationS,
              warmup_s: opts.fixedWarmupS,
            },
            runs: fixedRuns,
          },
        }
      : {}),
  };
  mkdirSync(dirname(opts.out), { recursive: true });
  const tmpOut = `${opts.out}.tmp`;
  writeFileSync(tmpOut, `${JSON.stringify(report, null, 2)}\n`);
  renameSync(tmpOut, opts.out);

  if (runs.length > 0) process.stdout.write(`\n${formatTable(runs)}\n\n`);
  for (const e of formatExtras(runs)) process.stdout.write(`${e}\n`);
  if (fixedTable) process.stdout.write(`\n${fixedRateHeading(opts)}\n\n${fixedTable}\n\n`);
  if (streams.length > 0) process.stdout.write(`\n${formatStreamTable(streams)}\n\n`);
  for (const s of skipped) process.stdout.write(`skipped ${s.name}: ${s.reason}\n`);
  for (const f of failed) process.stdout.write(`failed ${f.name}${f.round ? ` (round ${f.round})` : ''}: ${briefError(f.error)}\n`);
  process.stdout.write(`wrote ${opts.out}\n`);
  if (opts.updateReadme && (runs.length > 0 || streams.length > 0)) {
    // Each results file has its own block: latest.json → bench:latest, c1000.json → bench:c1000.
    const readme = join(ROOT, 'bench', 'README.md');
    const key = basename(opts.out, '.json');
    const saturated = readmeBlock(report.date, report.machine, report.settings, runs, skipped, streams.length > 0 ? formatStreamTable(streams) : undefined);
    const block = fixedTable ? `${saturated}\n\n${fixedRateHeading(opts)}\n\n${fixedTable}` : saturated;
    const { start, end } = readmeMarkers(key);
    if (replaceReadmeBlock(readme, key, block)) process.stdout.write(`updated ${readme} (${start})\n`);
    else process.stdout.write(`${readme} has no ${start} … ${end} block; not updated\n`);
  }
  return failed.length > 0 ? 1 : 0;
}

/** The line above the fixed-rate table: how it was measured. */
function fixedRateHeading(opts: BenchOptions): string {
  return `Open loop (bench/fixed-rate.ts): ${opts.fixedRates.join(', ')} rps over ${opts.fixedConnections} connections, ` +
    `${opts.fixedWarmupS} s warm-up + ${opts.fixedDurationS} s, medians of ${opts.rounds} round(s); "+direct" / "+wisp": ` +
    `ms added over that run in the same round (median of the per-round differences).`;
}

const USAGE = `usage: npm run bench -- [--quick] [--rounds R] [--duration S] [--warmup S] [--connections N]
                        [--only name1,name2] [--out file.json] [--stream [--stream-bytes N]]
                        [--tool wrk|autocannon] [--update-readme] [--wisp-node-options "FLAGS"]
                        [--fixed-rate R[,R2…]|off] [--fixed-connections N] [--fixed-duration S]
                        [--fixed-warmup S]
  after each target's saturated run (wrk, closed loop: throughput), an open-loop run at a fixed
  rate (default 1000 rps, 16 connections, --duration seconds, 1 s warm-up): the latency each
  request sees, and what a target adds over direct and over wisp.
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
