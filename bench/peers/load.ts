// The load generator: wrk when installed (C, one thread, so it takes one core and leaves the
// rest to the target), autocannon as a fallback. Both report the same LoadResult.
import { createRequire } from 'node:module';
import { ManagedProcess, findExecutable } from './proc.js';

export interface LoadResult {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  /** Responses with a status outside 200–399. */
  non2xx: number;
  /** Socket errors: connect + read + write + timeout. */
  errors: number;
  requests: number;
}

export interface LoadOptions {
  url: string;
  connections: number;
  durationS: number;
  /** Per-request timeout, seconds. */
  timeoutS?: number;
}

export interface LoadTool {
  name: 'wrk' | 'autocannon';
  run(opts: LoadOptions): Promise<LoadResult>;
}

const UNIT_TO_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "578.00us" / "1.10ms" / "2.00s" → milliseconds (NaN when it is not a wrk duration). */
export function parseWrkDuration(text: string): number {
  const m = /^([0-9.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) return Number.NaN;
  return Number(m[1]) * (UNIT_TO_MS[m[2] as string] as number);
}

/** Parse the text wrk prints with --latency. Throws when the essential lines are missing. */
export function parseWrkOutput(text: string): LoadResult {
  const rps = /Requests\/sec:\s+([0-9.]+)/.exec(text);
  const p50 = /^\s*50(?:\.000)?%\s+(\S+)/m.exec(text);
  const p99 = /^\s*99(?:\.000)?%\s+(\S+)/m.exec(text);
  if (!rps || !p50 || !p99) throw new Error(`unrecognised wrk output:\n${text}`);
  const requests = /(\d+) requests in/.exec(text);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = sock ? Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]) : 0;
  return {
    rps: Number(rps[1]),
    p50_ms: parseWrkDuration(p50[1] as string),
    p99_ms: parseWrkDuration(p99[1] as string),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    errors,
    requests: requests ? Number(requests[1]) : 0,
  };
}

/** Run a command to completion and return what it printed. It is a ManagedProcess so that
 * Ctrl-C or an error in the harness stops it too. */
async function runCapture(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  const proc = new ManagedProcess(cmd, cmd, args);
  const timer = setTimeout(() => void proc.stop(0), timeoutMs);
  await proc.exited;
  clearTimeout(timer);
  if (proc.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${proc.describeExit()}`);
  return proc.tail();
}

export class WrkTool implements LoadTool {
  readonly name = 'wrk' as const;
  constructor(private readonly exe: string) {}

  async run(opts: LoadOptions): Promise<LoadResult> {
    const args = [
      '-t1',
      `-c${opts.connections}`,
      `-d${opts.durationS}s`,
      `--timeout`,
      `${opts.timeoutS ?? 5}s`,
      '--latency',
      opts.url,
    ];
    const text = await runCapture(this.exe, args, (opts.durationS + 30) * 1000);
    return parseWrkOutput(text);
  }
}

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult>;

export class AutocannonTool implements LoadTool {
  readonly name = 'autocannon' as const;
  constructor(private readonly autocannon: Autocannon) {}

  async run(opts: LoadOptions): Promise<LoadResult> {
    // autocannon runs inside this process: it costs the target a share of the CPU that wrk
    // would not, so its absolute numbers are lower; the ratios still compare like with like.
    const r = await this.autocannon({
      url: opts.url,
      connections: opts.connections,
      duration: opts.durationS,
      timeout: opts.timeoutS ?? 5,
      pipelining: 1,
    });
    return {
      rps: r.requests.average,
      p50_ms: r.latency.p50,
      p99_ms: r.latency.p99,
      non2xx: r.non2xx,
      errors: r.errors + r.timeouts,
      requests: r.requests.total,
    };
  }
}

/** wrk if it is on PATH, else autocannon if it is installed, else null with the reason. */
export function pickLoadTool(preferred?: 'wrk' | 'autocannon'): LoadTool | string {
  const wrk = preferred === 'autocannon' ? null : findExecutable('wrk');
  if (wrk) return new WrkTool(wrk);
  try {
    const require = createRequire(import.meta.url);
    const mod = require('autocannon') as Autocannon;
    return new AutocannonTool(mod);
  } catch {
    return 'no load generator: install wrk (apt-get install wrk) or autocannon (npm install --save-dev autocannon)';
  }
}
