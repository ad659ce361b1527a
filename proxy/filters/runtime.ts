// The filter runtime the rest of the proxy talks to: builds chains for routes, pins each
// stream to one worker and to the filter generations current at its first call, batches
// calls per worker per event-loop turn, hot-loads modules, enforces deadlines and applies
// failure policies, quarantines filters that keep faulting, and exposes filter metrics.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { IdTable } from '../id-table.js';
import type { FilterConfig } from '../config/types.js';
import { LOG_LEVEL_NAMES, type LogLevelName } from '../wasm/abi.js';
import {
  checkModule,
  type FilterInfo,
  FilterLoadError,
  type Generation,
  ModuleRegistry,
} from '../wasm/module-registry.js';
import { type BatchSink, StreamEntry, WorkerHandle } from '../wasm/pool.js';
import { DEFAULT_SHARED_STATE, type MetricSample, SharedState, type SharedStateOptions } from '../wasm/shared-state.js';
import { type BinWriter, type BodyChunk, type CallPayload, type ControlOp, FaultKind, type HttpCallAnswer, NetOp, Op, statusWanted, Watch } from '../wasm/wire.js';
import { decodeReply, encodeCalls, type ReplyHandler } from './batch.js';
import { type ChainHost, WasmFilterChain } from './chain.js';
import { type NetworkChainHost, WasmNetworkFilterChain } from './network.js';
import { BodyPhase, type FilterChain, type NetworkFilterChain, type FilterPhase, type FilterRuntime, type FilterStream } from './types.js';

export type { FilterInfo } from '../wasm/module-registry.js';
export type { MetricSample } from '../wasm/shared-state.js';
export { FilterLoadError } from '../wasm/module-registry.js';

/** Where filter log lines (proxy_log, WASI stdout/stderr) and runtime events go. */
export type FilterLogFn = (level: LogLevelName, filter: string, message: string) => void;

/** An outgoing call a filter made with proxy_http_call. headers carry :method, :path and
 * usually :authority (flat pairs, names lower-case); cluster is the name the filter gave. */
export interface FilterHttpCall {
  cluster: string;
  headers: string[];
  body: Uint8Array;
  timeoutMs: number;
}

export interface FilterHttpResponse {
  status: number;
  /** Flat pairs, without :status. */
  headers: string[];
  body: Uint8Array;
}

export interface WasmRuntimeOptions {
  /** Performs filters' proxy_http_call (the server wires it to its clusters). Without it
   * proxy_http_call answers Unimplemented. A rejection or the call's timeout reaches the
   * filter as a failed call (no headers, no body). */
  httpCall?: (call: FilterHttpCall) => Promise<FilterHttpResponse>;
  /** Worker threads; default max(1, cores - 1). */
  workers?: number;
  /** Lowest level filters log at (proxy_get_log_level answers this). Default 'info'. */
  logLevel?: LogLevelName;
  /** Default: warn and above to stderr. */
  log?: FilterLogFn;
  sharedState?: Partial<SharedStateOptions>;
  /** How often the deadline watchdog looks at running calls, ms. Default 5. */
  watchdogIntervalMs?: number;
  /** How long a stream's done call (on_done, on_log, on_delete) waits for other calls to go
   * with when nothing else is waiting, ms. Default 10. */
  doneDelayMs?: number;
  /** How long a filter that faulted 5 times in 10 s is quarantined, ms. Default 30,000. */
  quarantineMs?: number;
}

export interface ApplyResult {
  loaded: string[];
  unchanged: string[];
  removed: string[];
}

const FAIL_HEADERS: readonly string[] = ['content-type', 'text/plain'];
const EMPTY = new Uint8Array(0);
const DEFAULT_HTTP_CALL_TIMEOUT_MS = 5000;
const encoder = new TextEncoder();

function defaultLog(level: LogLevelName, filter: string, message: string): void {
  if (level === 'trace' || level === 'debug' || level === 'info') return;
  process.stderr.write(`${new Date().toISOString()} ${level} filter=${filter} ${message}\n`);
}

function sameConfig(a: FilterConfig, b: FilterConfig): boolean {
  return (
    a.wasm === b.wasm &&
    a.config === b.config &&
    a.root_id === b.root_id &&
    a.vm_config === b.vm_config &&
    a.failure === b.failure &&
    a.deadline_ms === b.deadline_ms &&
    a.max_memory_bytes === b.max_memory_bytes &&
    a.max_body_bytes === b.max_body_bytes
  );
}

export class WasmFilterRuntime implements FilterRuntime, ChainHost, NetworkChainHost, BatchSink, ReplyHandler {
  readonly registry: ModuleRegistry;
  private readonly handles: WorkerHandle[];
  /** Not a Map: see id-table.ts (a Map here promoted every filtered request's objects). */
  private readonly streams = new IdTable<StreamEntry>();
  private readonly shared: SharedState;
  private readonly log: FilterLogFn;
  /** null with `workers: 0`: nothing can be stopped on the thread it blocks. */
  private readonly watchdog: NodeJS.Timeout | null;
  private readonly inline: boolean;
  private nextPick = 0;
  private trivialStreams: FilterStream[] = [];
  private trivialOps: number[] = [];
  private trivialChunks: (BodyChunk | null)[] = [];
  private trivialScheduled = false;
  private readonly flushTrivialBound = (): void => this.flushTrivial();
  /** Loads of the same filter run one after the other. */
  private readonly serial = new Map<string, Promise<unknown>>();
  private closed = false;
  private readonly watchdogIntervalMs: number;
  private readonly httpCall: ((call: FilterHttpCall) => Promise<FilterHttpResponse>) | null;
  /** setHttpCallClusters' names; null until called. */
  private httpCallClusters: string[] | null = null;
  private lastWatchdogTick = Date.now();

  constructor(opts: WasmRuntimeOptions = {}) {
    // 0: no worker threads, the filters run on the event loop (wasm/inline-channel.ts).
    const inline = opts.workers === 0;
    this.inline = inline;
    this.registry = new ModuleRegistry(opts.quarantineMs);
    const workers = inline ? 1 : Math.max(1, opts.workers ?? Math.max(1, os.availableParallelism() - 1));
    const level = LOG_LEVEL_NAMES.indexOf(opts.logLevel ?? 'info');
    this.log = opts.log ?? defaultLog;
    this.httpCall = opts.httpCall ?? null;
    this.shared = SharedState.create({ ...DEFAULT_SHARED_STATE, ...opts.sharedState });
    this.handles = [];
    for (let i = 0; i < workers; i++) this.handles.push(new WorkerHandle(i, this, this.shared.sab, level < 0 ? 2 : level, this.httpCall !== null, inline, opts.doneDelayMs));
    this.watchdogIntervalMs = opts.watchdogIntervalMs ?? 5;
    this.watchdog = inline ? null : setInterval(() => this.checkDeadlines(), this.watchdogIntervalMs);
    this.watchdog?.unref();
  }

  /** Worker threads (0: the filters run on the event loop). */
  get workerCount(): number {
    return this.inline ? 0 : this.handles.length;
  }

  /** Workers whose thread is serving batches now; idle ones have ended their serve task
   * (diagnostics and tests). */
  get servingWorkers(): number {
    let n = 0;
    for (const h of this.handles) if (h.isServing) n++;
    return n;
  }

  /** Batches sent to the workers so far (diagnostics and tests). */
  get batchesSent(): number {
    let n = 0;
    for (const h of this.handles) n += h.batches;
    return n;
  }

  /** waitAsync wake-ups the workers' channels armed so far (diagnostics and tests). */
  get wakeupsArmed(): number {
    let n = 0;
    for (const h of this.handles) n += h.wakeupsArmed;
    return n;
  }

  /** Some worker's answer is in and not applied yet (diagnostics and tests). */
  get answerWaiting(): boolean {
    return this.handles.some((h) => h.answerWaiting);
  }

  /** Which worker a stream's contexts live in (diagnostics and tests); undefined if none. */
  workerOf(streamId: number): number | undefined {
    return this.streams.get(streamId)?.worker.index;
  }

  // --- FilterRuntime ------------------------------------------------------------------

  chain(names: readonly string[]): FilterChain {
    for (const name of names) {
      if (this.registry.current(name) === null) {
        const known = [...this.registry.records.keys()];
        throw new Error(`unknown filter "${name}" (loaded: ${known.length > 0 ? known.join(', ') : 'none'})`);
      }
    }
    return new WasmFilterChain(this, names);
  }

  /** A tcp listener's network filter chain; throws like chain() when a name is unknown. */
  networkChain(names: readonly string[]): NetworkFilterChain {
    this.chain(names);
    return new WasmNetworkFilterChain(this, names);
  }

  /** Run network filter `name` over a TCP connection's first bytes in a worker (round robin)
   * under its deadline. Resolves to the properties it set (empty: it wants more bytes), or
   * null when it is not loaded, trapped, ran past its deadline or is quarantined. */
  async sniff(name: string, data: Uint8Array, endOfStream: boolean): Promise<Map<string, string> | null> {
    const gen = this.registry.current(name);
    if (gen === null || this.closed) return null;
    const handle = this.handles[this.nextPick % this.handles.length]!;
    this.nextPick = (this.nextPick + 1) % this.handles.length;
    const r = await handle.control({ op: 'sniff', genId: gen.id, data, end: endOfStream });
    return r.ok ? new Map(r.props ?? []) : null;
  }

  // --- ChainHost ----------------------------------------------------------------------

  get registryVersion(): number {
    return this.registry.version;
  }

  resolve(names: readonly string[]): Generation[] {
    const out: Generation[] = [];
    for (const name of names) {
      const gen = this.registry.current(name);
      if (gen !== null) out.push(gen);
    }
    return out;
  }

  submit(chain: WasmFilterChain, stream: FilterStream, op: number): void {
    let entry = this.streams.get(stream.streamId);
    if (entry === undefined) {
      const gens = chain.generations();
      if (gens.length === 0 || this.closed) {
        this.passTrivially(stream, op, null);
        return;
      }
      const worker = this.pickWorker();
      entry = new StreamEntry(stream, worker, gens);
      for (let i = 0; i < gens.length; i++) gens[i].streams++;
      worker.streams++;
      this.streams.set(stream.streamId, entry);
    }
    entry.pendingRequestPhase = op === Op.RequestHeaders;
    if (op === Op.ResponseTrailers) entry.awaitingTrailers = true;
    entry.worker.enqueue(entry, op);
  }

  submitNetwork(chain: WasmFilterChain, stream: FilterStream, op: number, data: Uint8Array, endOfStream: boolean): void {
    const chunk: BodyChunk = { data, endOfStream };
    let entry = this.streams.get(stream.streamId);
    if (entry === undefined) {
      const gens = chain.generations();
      if (gens.length === 0 || this.closed) {
        // Answered unchanged, like a body chunk no filter takes (request_body = downstream).
        this.passTrivially(stream, op === NetOp.DownstreamData ? Op.RequestBody : Op.ResponseBody, chunk);
        return;
      }
      const worker = this.pickWorker();
      entry = new StreamEntry(stream, worker, gens);
      for (let i = 0; i < gens.length; i++) gens[i].streams++;
      worker.streams++;
      // Nothing to create the contexts from yet: the first call carries the connection's info.
      entry.epoch = -1;
      this.streams.set(stream.streamId, entry);
    }
    entry.worker.enqueue(entry, op, chunk);
  }

  /** BodyPhase bits of the generations the stream is pinned to (0 before its first call). */
  bodyPhases(stream: FilterStream): number {
    const entry = this.streams.get(stream.streamId);
    return entry === undefined ? 0 : entry.bodyPhases;
  }

  handlesResponseHeaders(stream: FilterStream): boolean {
    const entry = this.streams.get(stream.streamId);
    if (entry === undefined) return false;
    if ((entry.bodyPhases & BodyPhase.Response) !== 0) return true;
    const gens = entry.gens;
    const status = stream.responseStatus;
    for (let i = 0; i < gens.length; i++) {
      if (!gens[i].skipsResponseHeaders && statusWanted(gens[i].responseHeadersStatuses, status)) return true;
    }
    // A trailers phase reads the response heads, which only its headers call carries.
    return wantsTrailers(entry);
  }

  handlesResponseTrailers(stream: FilterStream): boolean {
    const entry = this.streams.get(stream.streamId);
    return entry !== undefined && wantsTrailers(entry);
  }

  submitBody(stream: FilterStream, op: number, data: Uint8Array, endOfStream: boolean): void {
    const entry = this.streams.get(stream.streamId);
    const chunk: BodyChunk = { data, endOfStream };
    const bit = op === Op.RequestBody ? BodyPhase.Request : BodyPhase.Response;
    if (entry === undefined || entry.done || (entry.bodyPhases & bit) === 0) {
      // No filter of the stream takes this body: answered unchanged, still asynchronously,
      // so the caller sees the same order of events either way.
      this.passTrivially(stream, op, chunk);
      return;
    }
    entry.worker.enqueue(entry, op, chunk);
  }

  private passTrivially(stream: FilterStream, op: number, chunk: BodyChunk | null): void {
    this.trivialStreams.push(stream);
    this.trivialOps.push(op);
    this.trivialChunks.push(chunk);
    if (!this.trivialScheduled) {
      this.trivialScheduled = true;
      setImmediate(this.flushTrivialBound);
    }
  }

  finish(stream: FilterStream): void {
    const entry = this.streams.get(stream.streamId);
    if (entry === undefined) return;
    this.streams.delete(stream.streamId);
    entry.awaitingTrailers = false;
    entry.done = true;
    entry.worker.enqueue(entry, Op.Done);
  }

  private pickWorker(): WorkerHandle {
    const hs = this.handles;
    const n = hs.length;
    let best = hs[this.nextPick % n];
    for (let i = 1; i < n; i++) {
      const h = hs[(this.nextPick + i) % n];
      if (h.streams < best.streams) best = h;
    }
    this.nextPick = (this.nextPick + 1) % n;
    return best;
  }

  private flushTrivial(): void {
    this.trivialScheduled = false;
    const streams = this.trivialStreams;
    const ops = this.trivialOps;
    const chunks = this.trivialChunks;
    this.trivialStreams = [];
    this.trivialOps = [];
    this.trivialChunks = [];
    for (let i = 0; i < streams.length; i++) {
      if (ops[i] === Op.Done) continue;
      const chunk = chunks[i];
      if (chunk !== null) {
        const phase = ops[i] === Op.RequestBody ? 'request_body' : 'response_body';
        this.safely(streams[i], () => streams[i].onFilterBody?.(phase, chunk.data, chunk.endOfStream));
        continue;
      }
      const phase: FilterPhase = ops[i] === Op.RequestHeaders ? 'request_headers' : ops[i] === Op.ResponseTrailers ? 'response_trailers' : 'response_headers';
      this.safely(streams[i], () => streams[i].onFilterContinue(phase));
    }
  }

  private safely(stream: FilterStream, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log('error', '(runtime)', `stream ${stream.streamId} callback threw: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    }
  }

  // --- BatchSink ----------------------------------------------------------------------

  encode(handle: WorkerHandle, w: BinWriter, entries: StreamEntry[], ops: number[], answers: CallPayload[]): void {
    encodeCalls(handle, w, entries, ops, answers);
  }

  onReply(handle: WorkerHandle, entries: StreamEntry[], ops: number[], buf: ArrayBufferLike): void {
    decodeReply(handle, buf, entries, ops, this);
  }

  onFailure(_handle: WorkerHandle, entries: StreamEntry[], ops: number[], answers: CallPayload[], culpritGen: number, reason: string): void {
    const culprit = culpritGen !== 0 ? this.registry.generations.get(culpritGen) : undefined;
    if (culprit !== undefined) {
      this.filterFault(culprit.id, FaultKind.Deadline, reason);
    } else {
      this.log('error', '(runtime)', reason);
    }
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i];
      if (ops[i] === Op.Done) {
        this.released(entry);
        continue;
      }
      if (entry.done) continue;
      if (ops[i] === Op.RequestHeaders && culprit !== undefined && !entry.requeued && !entry.gens.includes(culprit)) {
        // A bystander that only shared the batch: nothing of it lived in the lost worker yet,
        // so its first call runs again on the replacement instead of taking a failure policy.
        entry.requeued = true;
        entry.worker.enqueue(entry, Op.RequestHeaders);
        continue;
      }
      if (ops[i] === NetOp.DownstreamData || ops[i] === NetOp.UpstreamData) this.applyBodyPolicy(entry, ops[i] === NetOp.DownstreamData, answers[i] as BodyChunk, true);
      else if (ops[i] === Op.RequestBody || ops[i] === Op.ResponseBody) this.applyBodyPolicy(entry, ops[i] === Op.RequestBody, answers[i] as BodyChunk);
      else this.applyPolicy(entry, ops[i] === Op.HttpCallResponse ? entry.pendingRequestPhase : ops[i] === Op.RequestHeaders);
    }
  }

  /** A body call was lost with its worker. Fail-open filters let the chunk through as it
   * came, unless a filter was holding earlier bytes of the body (those are gone: forwarding
   * the rest would send a body with a hole in it), which answers like fail-closed. */
  private applyBodyPolicy(entry: StreamEntry, request: boolean, chunk: BodyChunk, network = false): void {
    const gens = entry.gens;
    const bit = request ? BodyPhase.Request : BodyPhase.Response;
    let closedBy: Generation | null = null;
    for (let k = 0; k < gens.length; k++) {
      const g = request ? gens[k] : gens[gens.length - 1 - k];
      // A connection's filters all see its bytes (and its lost state).
      if ((network || (g.bodyPhases & bit) !== 0) && g.cfg.failure !== 'open') {
        closedBy = g;
        break;
      }
    }
    const held = request ? entry.requestBodyHeld : entry.responseBodyHeld;
    if (closedBy === null && !held) {
      this.body(entry, request, chunk.data, chunk.endOfStream);
      return;
    }
    const name = closedBy !== null ? closedBy.name : 'body';
    this.localResponse(entry, 503, [...FAIL_HEADERS], encoder.encode(`filter ${name} failed\n`));
  }

  /** The answer for a stream's phase is lost: the first fail-closed filter of the phase
   * answers 503; with only fail-open filters the stream continues unfiltered. */
  private applyPolicy(entry: StreamEntry, request: boolean): void {
    const gens = entry.gens;
    let closedBy: Generation | null = null;
    for (let k = 0; k < gens.length; k++) {
      const g = request ? gens[k] : gens[gens.length - 1 - k];
      if (g.cfg.failure !== 'open') {
        closedBy = g;
        break;
      }
    }
    if (closedBy !== null) this.localResponse(entry, 503, [...FAIL_HEADERS], encoder.encode(`filter ${closedBy.name} failed\n`));
    else this.continueStream(entry, request ? 'request_headers' : 'response_headers');
  }

  /** The clusters a filter's proxy_http_call may name (the config's): any other name is
   * refused at the call with BadArgument, as Envoy does, instead of failing later. */
  setHttpCallClusters(names: readonly string[]): void {
    this.httpCallClusters = [...names];
    for (const h of this.handles) h.post({ op: 'clusters', names: this.httpCallClusters });
  }

  resyncOps(): ControlOp[] {
    const ops: ControlOp[] = [];
    // A replacement worker starts knowing no clusters (any name goes out) until told.
    if (this.httpCallClusters !== null) ops.push({ op: 'clusters', names: this.httpCallClusters });
    for (const gen of this.registry.generations.values()) ops.push({ op: 'load', spec: gen.spec, module: gen.module });
    return ops;
  }

  quarantined(): number[] {
    return this.registry.quarantinedGenIds();
  }

  /** Every watchdogIntervalMs: a call (Watch.Call) still running after its deadline, timed
   * from the tick that first saw it, gets its worker replaced. */
  private checkDeadlines(): void {
    const now = Date.now();
    // When this thread itself was starved (ticks far apart), the machine is overloaded and
    // wall time says little about the filter: start timing again instead of killing.
    const lag = now - this.lastWatchdogTick;
    this.lastWatchdogTick = now;
    const starved = lag > this.watchdogIntervalMs * 4 + 20;
    for (const h of this.handles) {
      const call = h.inFlight ? h.watch[Watch.Call] : 0;
      if (call !== h.timedCall || starved) {
        h.timedCall = call;
        h.timedSince = now;
        continue;
      }
      if (call !== 0 && now - h.timedSince > h.watch[Watch.DeadlineMs]) {
        // The reason is logged under the filter's name (filterFault) or prefixed with it (a load).
        h.abort(h.watch[Watch.GenId], `call ran past its deadline of ${h.watch[Watch.DeadlineMs]} ms; worker ${h.index} replaced`);
      }
    }
  }

  // --- ReplyHandler -------------------------------------------------------------------

  continueStream(entry: StreamEntry, phase: FilterPhase): void {
    if (entry.awaitingTrailers) {
      entry.awaitingTrailers = false;
      phase = 'response_trailers';
    }
    const s = entry.stream;
    try {
      s.onFilterContinue(phase);
    } catch (err) {
      this.log('error', '(runtime)', `stream ${s.streamId} onFilterContinue threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  body(entry: StreamEntry, request: boolean, data: Uint8Array, endOfStream: boolean): void {
    const s = entry.stream;
    try {
      s.onFilterBody?.(request ? 'request_body' : 'response_body', data, endOfStream);
    } catch (err) {
      this.log('error', '(runtime)', `stream ${s.streamId} onFilterBody threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  localResponse(entry: StreamEntry, status: number, headers: string[], body: Uint8Array): void {
    entry.awaitingTrailers = false;
    const s = entry.stream;
    try {
      s.onFilterLocalResponse(status, headers, body);
    } catch (err) {
      this.log('error', '(runtime)', `stream ${s.streamId} onFilterLocalResponse threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  released(entry: StreamEntry): void {
    entry.worker.streams--;
    for (const gen of entry.gens) {
      gen.streams--;
      if (this.registry.collectable(gen)) this.dropEverywhere(gen);
    }
  }

  queueReady(id: number): void {
    // Whoever registered the queue may live in any worker: tell them all.
    for (const h of this.handles) h.enqueue(h.rootEntry, Op.QueueReady, id);
  }

  tickPeriod(handle: WorkerHandle, genId: number, periodMs: number): void {
    const gen = this.registry.generations.get(genId);
    if (gen === undefined) return;
    const entry = new StreamEntry(handle.rootEntry.stream, handle, [gen]);
    entry.done = true;
    handle.setTick(entry, periodMs);
  }

  lost(entry: StreamEntry): void {
    this.log('warn', '(runtime)', `stream ${entry.stream.streamId}: paused filter state was lost (worker replaced); failure policy applied`);
    this.applyPolicy(entry, entry.pendingRequestPhase);
  }

  httpCallIssued(
    handle: WorkerHandle,
    token: number,
    streamId: number,
    cluster: string,
    headers: string[],
    body: Uint8Array,
    timeoutMs: number,
  ): void {
    const entry = streamId >= 0 ? this.streams.get(streamId) : undefined;
    const target = entry !== undefined && entry.worker === handle ? entry : handle.rootEntry;
    const fn = this.httpCall;
    const timeout = timeoutMs > 0 ? timeoutMs : DEFAULT_HTTP_CALL_TIMEOUT_MS;
    let settled = false;
    const finish = (res: FilterHttpResponse | null, error: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error !== null) this.log('warn', '(http_call)', `call to "${cluster}" failed: ${error}`);
      if (this.closed) return;
      const answer: HttpCallAnswer =
        res !== null ? { token, status: res.status, headers: res.headers, body: res.body } : { token, status: 0, headers: [], body: EMPTY };
      handle.enqueue(target, Op.HttpCallResponse, answer);
    };
    const timer = setTimeout(() => finish(null, `timed out after ${timeout} ms`), timeout);
    timer.unref();
    if (fn === null) return finish(null, 'no httpCall handler');
    Promise.resolve()
      .then(() => fn({ cluster, headers, body, timeoutMs: timeout }))
      .then(
        (res) => {
          const ok = Number.isInteger(res?.status) && res.status >= 100 && res.status <= 599 && Array.isArray(res.headers);
          finish(ok ? { status: res.status, headers: res.headers.map(String), body: res.body ?? EMPTY } : null, ok ? null : 'handler returned an invalid response');
        },
        (err: unknown) => finish(null, err instanceof Error ? err.message : String(err)),
      );
  }

  filterLog(genId: number, level: number, message: string): void {
    const name = this.registry.generations.get(genId)?.name ?? '(host)';
    this.log(LOG_LEVEL_NAMES[level] ?? 'info', name, message);
  }

  filterFault(genId: number, kind: number, trapReason: string): void {
    const gen = this.registry.generations.get(genId);
    const name = gen?.name ?? `generation ${genId}`;
    const reason = gen !== undefined ? gen.symbolize(trapReason) : trapReason;
    this.log('warn', name, `fault: ${reason}`);
    const current = this.registry.current(name);
    if (gen === undefined || kind === FaultKind.NotLoaded || current === null) return;
    // A generation still being loaded (neither current nor retired) is refused, not faulted:
    // its failure must not count toward quarantining the one that serves.
    if (!gen.retired && current !== gen) return;
    if (this.registry.recordFault(name, reason)) {
      this.log('error', name, `quarantined: too many faults; its failure policy (${gen.cfg.failure}) applies without calling it`);
    }
  }

  // --- loading ------------------------------------------------------------------------

  /** Read cfg.wasm, check it, load it in every worker, and switch new streams to it. */
  load(cfg: FilterConfig): Promise<FilterInfo> {
    return this.inOrder(cfg.name, async () => {
      const bytes = await this.readModule(cfg);
      const gen = await this.prepare(cfg, bytes);
      this.commit(gen);
      return this.infoOf(cfg.name);
    });
  }

  /** Load the current configuration of a filter again (the file may have changed). */
  reload(name: string): Promise<FilterInfo> {
    const cur = this.registry.current(name);
    if (cur === null) return Promise.reject(new Error(`unknown filter "${name}"`));
    return this.load(cur.cfg);
  }

  /** Hot-load module bytes (admin PUT). Settings come from the filter's current config,
   * overridden by `cfg`; a new filter needs at least the fields FilterConfig requires. */
  loadBytes(name: string, bytes: Uint8Array, cfg?: Partial<FilterConfig>): Promise<FilterInfo> {
    return this.inOrder(name, async () => {
      const base = this.registry.current(name)?.cfg;
      const merged = { ...defaultFilterConfig(name), ...base, ...cfg, name } as FilterConfig;
      const gen = await this.prepare(merged, bytes);
      this.commit(gen);
      return this.infoOf(name);
    });
  }

  /** Config hot reload: load new and changed filters, drop removed ones. All or nothing:
   * when any filter fails to load, none is switched and the error lists every failure. */
  async apply(filters: FilterConfig[]): Promise<ApplyResult> {
    const prepared: Generation[] = [];
    const errors: string[] = [];
    const result: ApplyResult = { loaded: [], unchanged: [], removed: [] };
    for (const cfg of filters) {
      try {
        const bytes = await this.readModule(cfg);
        const cur = this.registry.current(cfg.name);
        if (cur !== null && sameConfig(cur.cfg, cfg) && cur.sha256 === createHash('sha256').update(bytes).digest('hex')) {
          result.unchanged.push(cfg.name);
          continue;
        }
        prepared.push(await this.prepare(cfg, bytes));
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
    if (errors.length > 0) {
      for (const gen of prepared) {
        this.dropEverywhere(gen);
        this.registry.discard(gen);
      }
      throw new Error(errors.join('; '));
    }
    for (const gen of prepared) {
      this.commit(gen);
      result.loaded.push(gen.name);
    }
    const wanted = new Set(filters.map((f) => f.name));
    for (const name of [...this.registry.records.keys()]) {
      if (wanted.has(name)) continue;
      const gen = this.registry.remove(name);
      if (gen !== null && this.registry.collectable(gen)) this.dropEverywhere(gen);
      result.removed.push(name);
    }
    return result;
  }

  list(): FilterInfo[] {
    return this.registry.info();
  }

  metricsSnapshot(): MetricSample[] {
    return this.shared.metricsSnapshot();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.watchdog !== null) clearInterval(this.watchdog);
    await Promise.all(this.handles.map((h) => h.close()));
  }

  private async readModule(cfg: FilterConfig): Promise<Uint8Array> {
    try {
      return await readFile(cfg.wasm);
    } catch (err) {
      throw new FilterLoadError(cfg.name, `cannot read ${cfg.wasm}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async prepare(cfg: FilterConfig, bytes: Uint8Array): Promise<Generation> {
    if (this.closed) throw new FilterLoadError(cfg.name, 'filter runtime closed');
    const checked = await checkModule(cfg.name, bytes);
    const gen = this.registry.newGeneration(cfg, checked);
    const results = await Promise.all(this.handles.map((h) => h.control({ op: 'load', spec: gen.spec, module: gen.module })));
    const bad = results.find((r) => !r.ok);
    if (bad !== undefined) {
      this.dropEverywhere(gen);
      this.registry.discard(gen);
      await gen.sourceMapRead;
      throw new FilterLoadError(cfg.name, gen.symbolize(bad.error ?? 'load failed'));
    }
    gen.skipsResponseHeaders = results.every((r) => r.skipsResponseHeaders === true);
    gen.skipsResponseTrailers = results.every((r) => r.skipsResponseTrailers === true);
    // Every worker configured the same module with the same config, so they agree; if one
    // did not, every status is held for the filters, as without the property.
    const statuses = results[0].responseHeadersStatuses;
    if (statuses !== undefined && results.every((r) => r.responseHeadersStatuses !== undefined && Buffer.compare(r.responseHeadersStatuses, statuses) === 0)) {
      gen.responseHeadersStatuses = statuses;
    }
    return gen;
  }

  private commit(gen: Generation): void {
    const prev = this.registry.activate(gen);
    this.log('info', gen.name, `generation ${gen.id} active (sha256 ${gen.sha256.slice(0, 12)}, abi ${gen.abi})`);
    if (prev !== null && this.registry.collectable(prev)) this.dropEverywhere(prev);
  }

  private dropEverywhere(gen: Generation): void {
    for (const h of this.handles) {
      h.clearTick(gen.id);
      h.post({ op: 'drop', genId: gen.id });
    }
  }

  private infoOf(name: string): FilterInfo {
    const info = this.registry.info().find((i) => i.name === name);
    if (info === undefined) throw new Error(`filter "${name}" vanished while loading`);
    return info;
  }

  private inOrder<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.serial.get(name) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.serial.set(name, tail);
    void tail.then(() => {
      if (this.serial.get(name) === tail) this.serial.delete(name);
    });
    return next;
  }
}

/** A generation the stream is pinned to runs in the response trailers phase. */
function wantsTrailers(entry: StreamEntry): boolean {
  const gens = entry.gens;
  for (let i = 0; i < gens.length; i++) if (!gens[i].skipsResponseTrailers) return true;
  return false;
}

/** Defaults for a filter that arrives only as bytes (admin PUT of a new name). */
function defaultFilterConfig(name: string): FilterConfig {
  return {
    name,
    wasm: `(uploaded:${name})`,
    config: '',
    root_id: name,
    vm_config: '',
    failure: 'closed',
    deadline_ms: 50,
    max_memory_bytes: 64 * 1024 * 1024,
    max_body_bytes: 1024 * 1024,
  };
}
