// Upstream client benchmark: Wisp's EndpointPool against undici 7 (Pool.request and
// Pool.dispatch with a handler object), side by side in one run, same upstream.
//
//   node dist/bench/upstream-client.js [--concurrency 50] [--seconds 5] [--requests 2000000]
//                                      [--rounds 10] [--warmup 1] [--path /] [--only wisp]
//                                      [--body-bytes N]   (GET /stream with N-byte bodies)
//
// The upstream (bench/upstream.ts, uWebSockets.js) runs in a child process so that it does
// not share this event loop. Each client keeps `concurrency` requests in flight (closed loop:
// a request is sent when one completes) over `concurrency` keep-alive connections, for
// `seconds` or `requests`, whichever ends first, measured in `rounds` interleaved slices
// (order alternating) so that background load on a shared machine hits every client alike.
// Reported: requests/s, p50/p99 latency over all slices, ratios against Wisp, and this
// process's CPU time per request (the client's own cost, which the shared machine's load
// and the upstream's speed do not blur).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { EndpointPool } from '../proxy/upstream/pool.js';
import type { UpstreamError, UpstreamHandler, UpstreamRequestHead } from '../proxy/upstream/types.js';

interface Options {
  concurrency: number;
  seconds: number;
  requests: number;
  rounds: number;
  warmup: number;
  path: string;
  /** Run only the clients whose name contains this (for profiling one of them). */
  only: string;
  /** > 0: GET /stream answering this many bytes (the upstream's --stream-bytes). */
  bodyBytes: number;
}

interface RunResult {
  client: string;
  requests: number;
  errors: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  /** This process's CPU time (user + system) per request, in microseconds. */
  cpuUs: number;
}

function parseArgs(argv: string[]): Options {
  const get = (name: string, def: string) => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : def;
  };
  return {
    concurrency: Number(get('--concurrency', '50')),
    seconds: Number(get('--seconds', '5')),
    requests: Number(get('--requests', '2000000')),
    rounds: Number(get('--rounds', '10')),
    warmup: Number(get('--warmup', '1')),
    path: get('--path', '/'),
    only: get('--only', ''),
    bodyBytes: Number(get('--body-bytes', '0')),
  };
}

/** Latencies in microseconds, in a preallocated typed array (no per-sample allocation). */
class Recorder {
  private samples: Float64Array;
  count = 0;
  errors = 0;
  recording = false;
  /** Seconds measured so far (sum of slices). */
  seconds = 0;
  /** CPU microseconds (user + system) spent during the slices. */
  cpuUs = 0;
  constructor(capacity: number, readonly concurrency: number) {
    this.samples = new Float64Array(capacity);
  }
  record(startNs: bigint): void {
    if (!this.recording) return;
    if (this.count < this.samples.length) this.samples[this.count] = Number(process.hrtime.bigint() - startNs) / 1000;
    this.count++;
  }
  percentile(p: number): number {
    const n = Math.min(this.count, this.samples.length);
    if (n === 0) return 0;
    const sorted = this.samples.subarray(0, n).sort();
    return sorted[Math.min(n - 1, Math.floor((p / 100) * n))]!;
  }
}

/** Drives a closed loop: `concurrency` loops, each sends its next request when one ends. */
interface Driver {
  name: string;
  start(loops: number, rec: Recorder, shouldContinue: () => boolean, onIdle: () => void): void;
  close(): Promise<void>;
}

// ── Wisp EndpointPool ──
class WispLoop implements UpstreamHandler {
  startNs = 0n;
  bytes = 0;
  constructor(
    private readonly driver: WispDriver,
    private readonly head: UpstreamRequestHead,
  ) {}
  send(): void {
    this.startNs = process.hrtime.bigint();
    this.driver.pool.request(this.head, this);
  }
  onResponseHeaders(): void {}
  onResponseData(chunk: Buffer): boolean {
    this.bytes += chunk.length;
    return true;
  }
  onResponseEnd(): void {
    this.driver.rec!.record(this.startNs);
    this.driver.next(this);
  }
  onUpstreamError(_err: UpstreamError): void {
    this.driver.rec!.errors++;
    this.driver.next(this);
  }
  onRequestDrain(): void {}
}

class WispDriver implements Driver {
  readonly name = 'wisp EndpointPool';
  readonly pool: EndpointPool;
  rec: Recorder | null = null;
  private shouldContinue: () => boolean = () => false;
  private onIdle: () => void = () => {};
  private active = 0;
  constructor(port: number, connections: number, private readonly path: string) {
    this.pool = new EndpointPool('127.0.0.1', port, {
      connectTimeoutMs: 2000,
      idleTimeoutMs: 60_000,
      maxIdle: connections,
      maxConnections: connections,
      maxPending: 100_000,
    });
  }
  start(loops: number, rec: Recorder, shouldContinue: () => boolean, onIdle: () => void): void {
    this.rec = rec;
    this.shouldContinue = shouldContinue;
    this.onIdle = onIdle;
    const head: UpstreamRequestHead = { method: 'GET', path: this.path, headers: ['host', 'localhost', 'user-agent', 'wisp-bench'], bodyLength: 0 };
    this.active = loops;
    for (let i = 0; i < loops; i++) new WispLoop(this, head).send();
  }
  next(loop: WispLoop): void {
    if (this.shouldContinue()) {
      loop.send();
    } else if (--this.active === 0) {
      this.onIdle();
    }
  }
  async close(): Promise<void> {
    this.pool.close();
  }
}

// ── undici Pool.request (promise API, body consumed with dump) ──
class UndiciRequestDriver implements Driver {
  readonly name = 'undici Pool.request';
  private readonly pool: Pool;
  constructor(port: number, connections: number, private readonly path: string) {
    this.pool = new Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1 });
  }
  start(loops: number, rec: Recorder, shouldContinue: () => boolean, onIdle: () => void): void {
    let active = loops;
    const loop = async () => {
      while (shouldContinue()) {
        const start = process.hrtime.bigint();
        try {
          const res = await this.pool.request({ method: 'GET', path: this.path, headers: { 'user-agent': 'wisp-bench' } });
          await res.body.dump();
          rec.record(start);
        } catch {
          rec.errors++;
        }
      }
      if (--active === 0) onIdle();
    };
    for (let i = 0; i < loops; i++) void loop();
  }
  async close(): Promise<void> {
    await this.pool.close();
  }
}

// ── undici Pool.dispatch (handler object, v7 controller API) ──
class UndiciLoop implements Dispatcher.DispatchHandler {
  startNs = 0n;
  bytes = 0;
  constructor(
    private readonly driver: UndiciDispatchDriver,
    private readonly opts: Dispatcher.DispatchOptions,
  ) {}
  send(): void {
    this.startNs = process.hrtime.bigint();
    this.driver.pool.dispatch(this.opts, this);
  }
  onRequestStart(): void {}
  onResponseStart(): void {}
  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytes += chunk.length;
  }
  onResponseEnd(): void {
    this.driver.rec!.record(this.startNs);
    this.driver.next(this);
  }
  onResponseError(): void {
    this.driver.rec!.errors++;
    this.driver.next(this);
  }
}

class UndiciDispatchDriver implements Driver {
  readonly name = 'undici Pool.dispatch';
  readonly pool: Pool;
  rec: Recorder | null = null;
  private shouldContinue: () => boolean = () => false;
  private onIdle: () => void = () => {};
  private active = 0;
  constructor(port: number, connections: number, private readonly path: string) {
    this.pool = new Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1 });
  }
  start(loops: number, rec: Recorder, shouldContinue: () => boolean, onIdle: () => void): void {
    this.rec = rec;
    this.shouldContinue = shouldContinue;
    this.onIdle = onIdle;
    const opts: Dispatcher.DispatchOptions = { method: 'GET', path: this.path, headers: { 'user-agent': 'wisp-bench' } };
    this.active = loops;
    for (let i = 0; i < loops; i++) new UndiciLoop(this, opts).send();
  }
  next(loop: UndiciLoop): void {
    if (this.shouldContinue()) loop.send();
    else if (--this.active === 0) this.onIdle();
  }
  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** One measured slice of a driver into `rec` (recording only inside the window). */
function runSlice(driver: Driver, rec: Recorder, seconds: number, maxRequests: number): Promise<number> {
  return new Promise((resolve) => {
    let stop = false;
    const startCount = rec.count;
    const shouldContinue = () => !stop && rec.count - startCount < maxRequests;
    const started = process.hrtime.bigint();
    let ended = 0n;
    rec.recording = true;
    driver.start(rec.concurrency, rec, shouldContinue, () => {
      clearTimeout(timer);
      rec.recording = false;
      if (ended === 0n) ended = process.hrtime.bigint();
      resolve(Number(ended - started) / 1e9);
    });
    const timer = setTimeout(() => {
      ended = process.hrtime.bigint();
      stop = true;
      rec.recording = false;
    }, seconds * 1000);
  });
}

async function startUpstreamProcess(bodyBytes: number): Promise<{ port: number; child: ChildProcess }> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const args = [path.join(here, 'upstream.js'), '--port', '0'];
  if (bodyBytes > 0) args.push('--stream-bytes', String(bodyBytes));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening [^:]+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`upstream exited with ${code}`)));
  });
  return { port, child };
}

function fmt(n: number, digits = 0): string {
  return n.toFixed(digits);
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.bodyBytes > 0) opts.path = '/stream';
  const { port, child } = await startUpstreamProcess(opts.bodyBytes);
  const makers: ((p: number) => Driver)[] = [
    (p) => new WispDriver(p, opts.concurrency, opts.path),
    (p) => new UndiciRequestDriver(p, opts.concurrency, opts.path),
    (p) => new UndiciDispatchDriver(p, opts.concurrency, opts.path),
  ];
  const drivers: Driver[] = [];
  for (const make of makers) {
    const d = make(port);
    if (opts.only === '' || d.name.includes(opts.only)) drivers.push(d);
    else await d.close();
  }
  const recs = drivers.map(() => new Recorder(4_000_000, opts.concurrency));
  const sliceSeconds = opts.seconds / opts.rounds;
  const perSlice = Math.ceil(opts.requests / opts.rounds);
  try {
    console.log(
      `upstream-client bench: GET ${opts.path}, ${opts.concurrency} in flight over ${opts.concurrency} connections, ` +
        `${opts.seconds}s per client in ${opts.rounds} interleaved slices (+${opts.warmup}s warmup each), node ${process.version}`,
    );
    for (const d of drivers) {
      // Warmup: connections opened, code optimised; not recorded.
      const warm = new Recorder(1, opts.concurrency);
      await runSlice(d, warm, opts.warmup, Infinity);
      warm.recording = false;
    }
    // Interleaved slices, alternating order: background load hits every client alike.
    const sliceRps: number[][] = drivers.map(() => []);
    for (let round = 0; round < opts.rounds; round++) {
      const order = drivers.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const i of order) {
        const before = recs[i]!.count;
        const cpu = process.cpuUsage();
        const secs = await runSlice(drivers[i]!, recs[i]!, sliceSeconds, perSlice);
        const used = process.cpuUsage(cpu);
        recs[i]!.cpuUs += used.user + used.system;
        recs[i]!.seconds += secs;
        sliceRps[i]!.push((recs[i]!.count - before) / secs);
      }
    }
    const results: RunResult[] = drivers.map((d, i) => {
      const rec = recs[i]!;
      return {
        client: d.name,
        requests: rec.count,
        errors: rec.errors,
        seconds: rec.seconds,
        rps: rec.count / rec.seconds,
        p50: rec.percentile(50),
        p99: rec.percentile(99),
        cpuUs: rec.cpuUs / rec.count,
      };
    });
    const base = results[0]!;
    console.log('client                    req/s   p50 ms   p99 ms  requests errors  rps ratio  p99 ratio  cpu us/req  slice rps min..max');
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      const sl = sliceRps[i]!;
      console.log(
        `${r.client.padEnd(22)} ${fmt(r.rps).padStart(8)} ${fmt(r.p50 / 1000, 3).padStart(8)} ${fmt(r.p99 / 1000, 3).padStart(8)} ` +
          `${String(r.requests).padStart(9)} ${String(r.errors).padStart(6)} ${fmt(r.rps / base.rps, 2).padStart(9)}x ${fmt(r.p99 / base.p99, 2).padStart(9)}x ${fmt(r.cpuUs, 1).padStart(11)}  ` +
          `${fmt(Math.min(...sl))}..${fmt(Math.max(...sl))}`,
      );
    }
    if (drivers.length > 1) console.log(`(ratios against ${base.client})`);
    for (const d of drivers) await d.close();
  } finally {
    child.kill('SIGTERM');
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
