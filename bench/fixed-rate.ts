// An open-loop HTTP/1.1 load generator: requests at a fixed rate, latency per request — the
// measurement behind "the sidecar adds X ms at p50" (Istio's figures: fortio, 1,000 rps,
// 16 connections). wrk, autocannon and undici are closed loop: each connection sends its next
// request when the previous one answers, so at saturation p50 is connections / throughput and
// says nothing about what one request costs.
//
//   node dist/bench/fixed-rate.js --port N [--host 127.0.0.1] [--path /] [--rate 1000]
//                                 [--connections 16] [--duration 10] [--warmup 1]
//
// The schedule: request k is due at t0 + warmup-relative k / rate, over `connections`
// keep-alive connections with at most one request in flight each (no pipelining). A due
// request goes to the connection that has been idle longest; when every connection is busy it
// waits, and that wait counts in its latency (coordinated omission, as in wrk2). What does not
// count is this process's own lateness: Node's timers fire with millisecond granularity, so a
// request is often sent up to ~1 ms after it was due while a connection sat idle. That delay
// is the generator's, not the server's; it is recorded separately (`send_lag_*`) and so is the
// latency that includes it (`intended_*`, wrk2's definition), so both can be checked.
import net from 'node:net';
import { createHistogram, performance } from 'node:perf_hooks';
import type { RecordableHistogram } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { PARSE_COMPLETE, PARSE_NEED_MORE, ResponseParser as HttpResponseParser, type ResponseSink } from '../proxy/upstream/response-parser.js';
import { median, round2, round3 } from './peers/report.js';

export interface FixedRateOptions {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Path and query of every request; default "/". */
  path?: string;
  /** Requests per second over all connections. */
  rate: number;
  connections: number;
  /** Seconds of measured schedule (after the warm-up). */
  durationS: number;
  /** Seconds of schedule sent first and not recorded (JIT, pools); default 0. */
  warmupS?: number;
  /** A request unanswered for this long is an error and its connection is replaced; default 5000. */
  timeoutMs?: number;
}

/** Latency percentiles, ms: from when the request was due (or, when a connection was idle
 * then, from when it was sent) to the last byte of the response. */
export interface LatencyPercentiles {
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
}

export interface FixedRateResult extends LatencyPercentiles {
  rate: number;
  connections: number;
  duration_s: number;
  /** Responses recorded (requests due in the measured window that completed). */
  requests: number;
  /** Recorded responses per second of measured window. */
  achieved_rps: number;
  mean_ms: number;
  /** wrk2's definition: from the due time, the generator's own lateness included. */
  intended_p50_ms: number;
  intended_p99_ms: number;
  /** How late this process sent requests after they could have gone (its timer granularity). */
  send_lag_p50_ms: number;
  send_lag_p99_ms: number;
  /** Socket errors, timeouts, malformed responses and failed connects, warm-up included. */
  errors: number;
  /** Responses outside 200–399, warm-up included. */
  non2xx: number;
  /** Requests due in the measured window never sent: every connection stayed busy to the end. */
  unsent: number;
  /** This process's CPU time (user + system) per request sent, µs: what the generator costs. */
  client_cpu_us_per_req: number;
}

// ---- response parsing -------------------------------------------------------------------

const NEED_MORE = 0;
const DONE = 1;
const MALFORMED = -1;

/** One HTTP/1.1 response at a time (the generator never pipelines), read with Wisp's own
 * upstream parser (proxy/upstream/response-parser.ts: content-length, chunked, 1xx,
 * close-delimited, strict framing); only the status and where the response ends matter here. */
export class ResponseReader implements ResponseSink {
  status = 0;
  private readonly parser = new HttpResponseParser(this, 64 * 1024);

  reset(): void {
    this.status = 0;
    this.parser.reset(false);
  }

  /** NEED_MORE, DONE (the response ended exactly at the end of `data`) or MALFORMED (bytes
   * that are not a response, or bytes after it: this client sent only one request). */
  feed(data: Buffer): number {
    const r = this.parser.execute(data, 0);
    if (r === PARSE_NEED_MORE) return NEED_MORE;
    if (r === PARSE_COMPLETE) return this.parser.offset === data.length ? DONE : MALFORMED;
    return MALFORMED;
  }

  /** False once the response says Connection: close (or has no length): reconnect after it. */
  get keepAlive(): boolean {
    return this.parser.keepAlive;
  }

  /** The connection closed: true when that ends the response (a close-delimited body). */
  endsOnClose(): boolean {
    return this.parser.finishEof() === PARSE_COMPLETE;
  }

  onParsedHead(status: number): boolean {
    this.status = status;
    return true;
  }

  onParsedBody(): boolean {
    return true;
  }
}

// ---- the generator ----------------------------------------------------------------------

/** One keep-alive connection with at most one request in flight. */
class LoadConnection {
  socket: net.Socket | null = null;
  connected = false;
  inFlight = false;
  /** In the idle queue (possibly a stale entry after a reconnect; see IdleQueue). */
  queued = false;
  /** When it last became free (connected, or its last response ended). */
  freeSinceMs = 0;
  /** The request in flight: when it was due, when it was sent, the wait it is charged. */
  dueMs = 0;
  sentMs = 0;
  waitedMs = 0;
  measured = false;
  /** No reconnect before this time after a failed connect. */
  retryAtMs = 0;
  readonly parser = new ResponseReader();

  constructor(readonly id: number) {}
}

/** Idle connections, longest idle first: the next request takes the head. A ring buffer of
 * at most one entry per connection, so dispatch is O(1) at any connection count. */
class IdleQueue {
  private readonly ring: (LoadConnection | null)[];
  private head = 0;
  private size = 0;

  constructor(capacity: number) {
    this.ring = new Array<LoadConnection | null>(capacity).fill(null);
  }

  push(c: LoadConnection): void {
    if (c.queued) return;
    c.queued = true;
    this.ring[(this.head + this.size) % this.ring.length] = c;
    this.size++;
  }

  /** The longest-idle connection that is still connected and free, or null. */
  take(): LoadConnection | null {
    while (this.size > 0) {
      const c = this.ring[this.head] as LoadConnection;
      this.ring[this.head] = null;
      this.head = (this.head + 1) % this.ring.length;
      this.size--;
      c.queued = false;
      if (c.connected && !c.inFlight) return c;
    }
    return null;
  }
}

const NS_PER_MS = 1e6;
const RECONNECT_BACKOFF_MS = 50;
/** Longest sleep between timer ticks while nothing is due (timeouts, reconnects, the end). */
const MAX_TICK_MS = 20;

function newHistogram(): RecordableHistogram {
  return createHistogram({ lowest: 1, highest: 3_600_000 * NS_PER_MS, figures: 3 });
}

/** One run of the schedule. Create, `await run()`, read the result; every socket is closed
 * when run() resolves. */
export class FixedRateRun {
  private readonly host: string;
  private readonly request: Buffer;
  private readonly intervalMs: number;
  private readonly warmupCount: number;
  private readonly total: number;
  private readonly timeoutMs: number;
  private readonly conns: LoadConnection[] = [];
  private readonly idle: IdleQueue;
  private readonly latency = newHistogram();
  private readonly fromDue = newHistogram();
  private readonly sendLag = newHistogram();
  private t0 = 0;
  private next = 0;
  private errors = 0;
  private non2xx = 0;
  private stopping = false;
  private timer: NodeJS.Timeout | null = null;
  private finish: (() => void) | null = null;
  private readonly tick = (): void => this.onTick();

  constructor(private readonly opts: FixedRateOptions) {
    if (!(opts.rate > 0) || !(opts.durationS > 0) || !(opts.connections >= 1)) {
      throw new Error(`fixed-rate needs rate > 0, duration > 0 and connections ≥ 1 (got ${opts.rate}, ${opts.durationS}, ${opts.connections})`);
    }
    this.host = opts.host ?? '127.0.0.1';
    const path = opts.path ?? '/';
    this.request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${this.host}:${opts.port}\r\nUser-Agent: wisp-fixed-rate\r\n\r\n`, 'latin1');
    this.intervalMs = 1000 / opts.rate;
    this.warmupCount = Math.round((opts.warmupS ?? 0) * opts.rate);
    this.total = this.warmupCount + Math.round(opts.durationS * opts.rate);
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.idle = new IdleQueue(opts.connections);
    for (let i = 0; i < opts.connections; i++) this.conns.push(new LoadConnection(i));
  }

  async run(): Promise<FixedRateResult> {
    await this.connectAll();
    const cpu = process.cpuUsage();
    this.t0 = performance.now();
    await new Promise<void>((resolve) => {
      this.finish = resolve;
      this.onTick();
    });
    await this.closeAll();
    const used = process.cpuUsage(cpu);
    return this.result(used.user + used.system);
  }

  /** Open every connection before the clock starts, so connecting is not in any latency. */
  private async connectAll(): Promise<void> {
    await Promise.all(
      this.conns.map(
        (c) =>
          new Promise<void>((resolve, reject) => {
            const s = this.open(c);
            const onError = (err: Error) => reject(new Error(`fixed-rate: cannot connect to ${this.host}:${this.opts.port}: ${err.message}`));
            s.once('error', onError);
            s.once('connect', () => {
              s.off('error', onError);
              resolve();
            });
          }),
      ),
    ).catch(async (err: unknown) => {
      this.stopping = true;
      await this.closeAll();
      throw err;
    });
  }

  private open(c: LoadConnection): net.Socket {
    const s = net.connect({ host: this.host, port: this.opts.port, noDelay: true });
    c.socket = s;
    c.connected = false;
    c.inFlight = false;
    s.on('connect', () => {
      c.connected = true;
      c.freeSinceMs = performance.now();
      this.idle.push(c);
      if (this.t0 > 0) this.dispatch(c.freeSinceMs);
    });
    s.on('data', (chunk: Buffer) => this.onData(c, chunk));
    // 'close' follows every error; the accounting happens there.
    s.on('error', () => {});
    s.on('close', () => this.onClose(c, s));
    return s;
  }

  private onData(c: LoadConnection, chunk: Buffer): void {
    if (!c.inFlight) {
      // Bytes nobody asked for: the connection's framing can no longer be trusted.
      this.errors++;
      c.socket?.destroy();
      return;
    }
    const r = c.parser.feed(chunk);
    if (r === NEED_MORE) return;
    if (r === MALFORMED) {
      this.errors++;
      c.inFlight = false;
      c.socket?.destroy();
      return;
    }
    this.complete(c, performance.now());
  }

  private complete(c: LoadConnection, now: number): void {
    c.inFlight = false;
    const status = c.parser.status;
    if (status < 200 || status > 399) this.non2xx++;
    if (c.measured) {
      this.latency.record(Math.max(1, Math.round((now - c.sentMs + c.waitedMs) * NS_PER_MS)));
      this.fromDue.record(Math.max(1, Math.round((now - c.dueMs) * NS_PER_MS)));
    }
    if (!c.parser.keepAlive) {
      c.socket?.destroy();
      return;
    }
    c.freeSinceMs = now;
    this.idle.push(c);
    this.dispatch(now);
  }

  private onClose(c: LoadConnection, s: net.Socket): void {
    if (c.socket !== s) return;
    const wasConnected = c.connected;
    c.socket = null;
    c.connected = false;
    if (c.inFlight) {
      if (c.parser.endsOnClose()) this.complete(c, performance.now());
      else this.errors++;
      c.inFlight = false;
    } else if (!wasConnected && !this.stopping) {
      this.errors++; // a reconnect that failed
      c.retryAtMs = performance.now() + RECONNECT_BACKOFF_MS;
    }
  }

  /** Send every request that is due, each on the longest-idle connection. */
  private dispatch(now: number): void {
    while (this.next < this.total && !this.stopping) {
      const due = this.t0 + this.next * this.intervalMs;
      if (due > now) return;
      const c = this.idle.take();
      if (c === null) return;
      // Waiting for a connection is the server's doing and counts; if a connection was free
      // before the request was due, the time since it was due is this process's lateness.
      const couldSendAt = Math.max(due, c.freeSinceMs);
      c.dueMs = due;
      c.sentMs = now;
      c.waitedMs = couldSendAt - due;
      c.measured = this.next >= this.warmupCount;
      if (c.measured) this.sendLag.record(Math.max(1, Math.round((now - couldSendAt) * NS_PER_MS)));
      c.inFlight = true;
      c.parser.reset();
      (c.socket as net.Socket).write(this.request);
      this.next++;
    }
  }

  private onTick(): void {
    this.timer = null;
    const now = performance.now();
    for (const c of this.conns) {
      if (c.inFlight && now - c.sentMs > this.timeoutMs) {
        this.errors++;
        c.inFlight = false;
        c.socket?.destroy();
      } else if (c.socket === null && !this.stopping && now >= c.retryAtMs) {
        this.open(c);
      }
    }
    this.dispatch(now);
    const endMs = this.t0 + this.total * this.intervalMs;
    if (now >= endMs) {
      // The schedule is over: send nothing more, wait for what is in flight.
      this.stopping = true;
      if (!this.conns.some((c) => c.inFlight)) {
        this.finish?.();
        return;
      }
    }
    const wait = this.next < this.total && !this.stopping ? this.t0 + this.next * this.intervalMs - now : MAX_TICK_MS;
    this.timer = setTimeout(this.tick, Math.min(MAX_TICK_MS, Math.max(1, wait)));
  }

  private async closeAll(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const closing: Promise<void>[] = [];
    for (const c of this.conns) {
      const s = c.socket;
      if (s === null) continue;
      if (!s.closed) closing.push(new Promise((resolve) => s.once('close', () => resolve())));
      s.destroy();
    }
    await Promise.all(closing);
  }

  private result(cpuMicros: number): FixedRateResult {
    const ms = (h: RecordableHistogram, p: number) => (h.count > 0 ? round3(h.percentile(p) / NS_PER_MS) : 0);
    const measuredDue = this.total - this.warmupCount;
    const measuredSent = Math.max(0, this.next - this.warmupCount);
    return {
      rate: this.opts.rate,
      connections: this.opts.connections,
      duration_s: this.opts.durationS,
      requests: this.latency.count,
      achieved_rps: Math.round(this.latency.count / this.opts.durationS),
      p50_ms: ms(this.latency, 50),
      p90_ms: ms(this.latency, 90),
      p99_ms: ms(this.latency, 99),
      p999_ms: ms(this.latency, 99.9),
      max_ms: this.latency.count > 0 ? round3(this.latency.max / NS_PER_MS) : 0,
      mean_ms: this.latency.count > 0 ? round3(this.latency.mean / NS_PER_MS) : 0,
      intended_p50_ms: ms(this.fromDue, 50),
      intended_p99_ms: ms(this.fromDue, 99),
      send_lag_p50_ms: ms(this.sendLag, 50),
      send_lag_p99_ms: ms(this.sendLag, 99),
      errors: this.errors,
      non2xx: this.non2xx,
      unsent: measuredDue - measuredSent,
      client_cpu_us_per_req: this.next > 0 ? round2(cpuMicros / this.next) : 0,
    };
  }
}

/** Run the schedule once against host:port. */
export function runFixedRate(opts: FixedRateOptions): Promise<FixedRateResult> {
  return new FixedRateRun(opts).run();
}

// ---- report: medians over rounds, latency added against a baseline -------------------

/** One target's run at one rate in one round, as bench/run.ts records it. */
export interface FixedRateSample extends FixedRateResult {
  name: string;
  round: number;
  /** CPU time of the target's process tree per answered request, µs; null for `direct`. */
  cpu_us_per_req: number | null;
}

/** What a target adds over a baseline, ms: the median over rounds of (target − baseline)
 * within each round, so a slow round moves both sides. */
export interface AddedLatency {
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
}

/** Percentiles and rates are medians over rounds. */
export interface FixedRateSummary extends LatencyPercentiles {
  name: string;
  rate: number;
  connections: number;
  achieved_rps: number;
  /** Latency from the due time, the generator's lateness included (wrk2's definition). */
  intended_p50_ms: number;
  intended_p99_ms: number;
  send_lag_p99_ms: number;
  cpu_us_per_req: number | null;
  /** Totals over rounds. */
  errors: number;
  non2xx: number;
  unsent: number;
  p50_rounds: number[];
  p99_rounds: number[];
  added_vs_direct: AddedLatency | null;
  added_vs_wisp: AddedLatency | null;
}

function addedOver(own: FixedRateSample[], base: FixedRateSample[]): AddedLatency | null {
  const d50: number[] = [];
  const d90: number[] = [];
  const d99: number[] = [];
  for (const s of own) {
    const b = base.find((x) => x.round === s.round);
    if (!b || s.requests === 0 || b.requests === 0) continue;
    d50.push(s.p50_ms - b.p50_ms);
    d90.push(s.p90_ms - b.p90_ms);
    d99.push(s.p99_ms - b.p99_ms);
  }
  if (d50.length === 0) return null;
  return { p50_ms: round3(median(d50)), p90_ms: round3(median(d90)), p99_ms: round3(median(d99)) };
}

/** One summary per (target, rate), in the order the samples first appear. */
export function summariseFixedRate(samples: FixedRateSample[]): FixedRateSummary[] {
  const groups = new Map<string, FixedRateSample[]>();
  for (const s of samples) {
    const key = `${s.name}@${s.rate}`;
    const g = groups.get(key);
    if (g) g.push(s);
    else groups.set(key, [s]);
  }
  const out: FixedRateSummary[] = [];
  for (const g of groups.values()) {
    const first = g[0] as FixedRateSample;
    const med = (pick: (s: FixedRateSample) => number) => round3(median(g.map(pick)));
    const cpu = g.map((s) => s.cpu_us_per_req).filter((v): v is number => typeof v === 'number');
    const direct = groups.get(`direct@${first.rate}`);
    const wisp = groups.get(`wisp@${first.rate}`);
    out.push({
      name: first.name,
      rate: first.rate,
      connections: first.connections,
      achieved_rps: Math.round(median(g.map((s) => s.achieved_rps))),
      p50_ms: med((s) => s.p50_ms),
      p90_ms: med((s) => s.p90_ms),
      p99_ms: med((s) => s.p99_ms),
      p999_ms: med((s) => s.p999_ms),
      max_ms: med((s) => s.max_ms),
      intended_p50_ms: med((s) => s.intended_p50_ms),
      intended_p99_ms: med((s) => s.intended_p99_ms),
      send_lag_p99_ms: med((s) => s.send_lag_p99_ms),
      cpu_us_per_req: cpu.length > 0 ? round2(median(cpu)) : null,
      errors: g.reduce((a, s) => a + s.errors, 0),
      non2xx: g.reduce((a, s) => a + s.non2xx, 0),
      unsent: g.reduce((a, s) => a + s.unsent, 0),
      p50_rounds: g.map((s) => s.p50_ms),
      p99_rounds: g.map((s) => s.p99_ms),
      added_vs_direct: direct && first.name !== 'direct' ? addedOver(g, direct) : null,
      added_vs_wisp: wisp && first.name !== 'wisp' ? addedOver(g, wisp) : null,
    });
  }
  return out;
}

/** The markdown table printed after the saturated one (and kept in bench/README.md). */
export function formatFixedRateTable(runs: FixedRateSummary[]): string {
  const fmt = (n: number | null | undefined, digits = 2) => (n === null || n === undefined || Number.isNaN(n) ? '-' : n.toFixed(digits));
  const signed = (n: number | undefined) => (n === undefined ? '-' : `${n >= 0 ? '+' : ''}${n.toFixed(2)}`);
  const head = ['run', 'rate', 'rps', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'errors', 'unsent', 'cpu µs/req',
    'p50 +direct', 'p99 +direct', 'p50 +wisp', 'p90 +wisp', 'p99 +wisp'];
  const rows = runs.map((r) => [
    r.name, String(r.rate), String(r.achieved_rps), fmt(r.p50_ms, 3), fmt(r.p90_ms, 3), fmt(r.p99_ms, 3), fmt(r.p999_ms, 3),
    String(r.errors + r.non2xx), String(r.unsent), fmt(r.cpu_us_per_req, 1),
    signed(r.added_vs_direct?.p50_ms), signed(r.added_vs_direct?.p99_ms),
    signed(r.added_vs_wisp?.p50_ms), signed(r.added_vs_wisp?.p90_ms), signed(r.added_vs_wisp?.p99_ms),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(' | ') + ' |';
  const sep = '|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|';
  return [line(head), sep, ...rows.map(line)].join('\n');
}

// ---- CLI --------------------------------------------------------------------------------

const USAGE = `usage: node dist/bench/fixed-rate.js --port N [--host 127.0.0.1] [--path /] [--rate 1000]
                                    [--connections 16] [--duration 10] [--warmup 1] [--timeout-ms 5000]
prints one JSON result; e.g. against the bench upstream (node dist/bench/upstream.js --port N) it
shows this generator's own floor.`;

export function parseFixedRateArgs(argv: string[]): FixedRateOptions {
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (name: string, dflt: number): number => {
    const v = value(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${v}`);
    return n;
  };
  const port = num('--port', 0);
  if (port <= 0) throw new Error('--port is required');
  return {
    port,
    host: value('--host') ?? '127.0.0.1',
    path: value('--path') ?? '/',
    rate: num('--rate', 1000),
    connections: Math.floor(num('--connections', 16)),
    durationS: num('--duration', 10),
    warmupS: num('--warmup', 1),
    timeoutMs: num('--timeout-ms', 5000),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
  } else {
    let opts: FixedRateOptions | null = null;
    try {
      opts = parseFixedRateArgs(argv);
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
      process.exitCode = 2;
    }
    if (opts) {
      runFixedRate(opts).then(
        (r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`),
        (err: Error) => {
          process.stderr.write(`${err.message}\n`);
          process.exitCode = 1;
        },
      );
    }
  }
}

