// `wisp/testing`: unit-test a proxy-wasm filter on Wisp's own host, in-process. The module is
// instantiated with the same FilterInstance + env imports + WASI code a filter worker uses
// (proxy/wasm/instance.ts, host.ts, wasi.ts), so what passes here behaves the same in a
// running Wisp. What the harness adds is only the driving: a controllable clock, one filter
// instead of a chain, and direct reads of logs, metrics and shared data.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { BufferType, LogLevel, utf8, WasmResult } from '../wasm/abi.js';
import { FilterInstance, type HttpCallSink, type InstanceDeps, ROOT_CONTEXT_ID, WorkerLog } from '../wasm/instance.js';
import { DEFAULT_SHARED_STATE, SharedState, type SharedStateOptions } from '../wasm/shared-state.js';
import { BodyBuffer, StreamState } from '../wasm/stream-state.js';
import { type GenerationSpec, Watch } from '../wasm/wire.js';

export type HeaderPairs = [string, string][];
/** Headers as an object (one value per name) or as pairs (repeats and order kept). */
export type HeaderInput = Record<string, string> | HeaderPairs;
export type Action = 'continue' | 'pause' | 'local';

export interface LogLine {
  level: number;
  /** trace, debug, info, warn, error, critical */
  levelName: string;
  message: string;
}

const LEVEL_NAMES = ['trace', 'debug', 'info', 'warn', 'error', 'critical'];

export interface LoadOptions {
  /** Plugin configuration (proxy_on_configure); an object is sent as JSON. */
  config?: string | object;
  /** VM configuration (proxy_on_vm_start); an object is sent as JSON. */
  vmConfig?: string | object;
  /** plugin_root_id. */
  rootId?: string;
  /** Filter name (plugin_name, metric namespace). Default "filter". */
  name?: string;
  /** Host properties for every request: source.address, route_name, cluster_name,
   * listener_name, request.id map to what Wisp fills in; other paths (dotted) are extra
   * properties. Change them later through `harness.properties`. */
  properties?: Record<string, string>;
  /** Pass one SharedState to several harnesses to play several Wisp workers. */
  sharedState?: HarnessSharedState;
  /** Lowest level the filter's proxy_get_log_level reports and the harness keeps. Default trace. */
  logLevel?: number;
  /** Starting wall clock in ms since the epoch (default: Date.now() at load). */
  nowMs?: number;
  /** Most body bytes the filter may hold buffered (413 / 500 past it, as in Wisp); 0 = no limit. */
  maxBodyBytes?: number;
}

export interface RequestInit {
  method?: string;
  path?: string;
  authority?: string;
  scheme?: string;
  /** Pseudo-headers (:method, :path, :authority, :scheme) given here override the fields above. */
  headers?: HeaderInput;
  /** "ip:port", "[v6]:port" or a bare address. */
  clientAddress?: string;
  route?: string;
  cluster?: string;
  listener?: string;
  requestId?: string;
  /** Default true: the request has no body. */
  endOfStream?: boolean;
}

export interface ResponseInit {
  status: number;
  headers?: HeaderInput;
  endOfStream?: boolean;
}

export interface LocalReply {
  status: number;
  headers: HeaderPairs;
  body: string;
  details: string;
}

export interface HttpCallRecord {
  token: number;
  cluster: string;
  /** Pseudo-headers included, as the filter sent them. */
  headers: HeaderPairs;
  body: Uint8Array;
  timeoutMs: number;
  /** The stream that made the call (null from a root context callback). */
  stream: number | null;
}

/** What one phase did, as Wisp's request path would see it. */
export class PhaseResult {
  constructor(
    readonly stream: number,
    readonly action: Action,
    /** Headers of the phase after the filter (pseudo-headers first). */
    readonly headers: HeaderPairs,
    readonly local: LocalReply | null,
    /** Log lines written during this call. */
    readonly logs: LogLine[],
  ) {}

  /** Status of the local response, if the filter sent one. */
  get status(): number | undefined {
    return this.local?.status;
  }

  /** Body of the local response, if the filter sent one. */
  get body(): string | undefined {
    return this.local?.body;
  }

  /** Value of a header of this phase (several joined with ","), or undefined. */
  header(name: string): string | undefined {
    return headerValue(this.headers, name);
  }
}

/** What one body chunk did: 'continue' forwards `forwarded` (the bytes after the filter,
 * with everything it buffered before), 'buffer' holds them in the filter
 * (StopIterationAndBuffer) until the next chunk, 'local' answers. */
export class BodyResult {
  constructor(
    readonly stream: number,
    readonly action: 'continue' | 'buffer' | 'local',
    readonly forwardedBytes: Uint8Array,
    readonly local: LocalReply | null,
    readonly logs: LogLine[],
  ) {}

  /** The forwarded bytes as UTF-8 text. */
  get forwarded(): string {
    return Buffer.from(this.forwardedBytes).toString('utf8');
  }

  get status(): number | undefined {
    return this.local?.status;
  }
}

/** First value of a header in pairs (names compared lower-case), or undefined. */
export function headerValue(pairs: HeaderPairs, name: string): string | undefined {
  const key = name.toLowerCase();
  let out: string | undefined;
  for (const [k, v] of pairs) if (k === key) out = out === undefined ? v : `${out},${v}`;
  return out;
}

/** Wisp's shared state (the SharedArrayBuffer KV, queues and metric slots the workers share),
 * with hooks for tests that play a concurrent writer. */
export class HarnessSharedState extends SharedState {
  /** Called after every proxy_get_shared_data read, with the key as text (touch(key) in it
   * plays another worker writing between the filter's read and its write). */
  onGet: ((key: string) => void) | null = null;
  /** proxy_set_shared_data calls answered CasMismatch. */
  casMismatches = 0;

  /** Smaller than a proxy's default (tests make many): 1024 keys, 16 queues. */
  constructor(opts: SharedStateOptions = { ...DEFAULT_SHARED_STATE, kvCapacity: 1024, queues: 16 }) {
    super(SharedState.create(opts).sab);
  }

  // The host reads and writes through readData/writeData; getData/setData (peek, touch) don't.
  override readData(key: Uint8Array, keyAt: number, keyLen: number): number {
    const length = super.readData(key, keyAt, keyLen);
    // After the read: a write here makes the filter's next set with this cas a CasMismatch.
    // readBuf and readCas are copied first: touch() reads through them too.
    if (this.onGet === null) return length;
    const value = length < 0 ? null : this.readBuf.slice(0, length);
    const cas = this.readCas;
    this.onGet(Buffer.from(key.buffer, key.byteOffset + keyAt, keyLen).toString('utf8'));
    if (value !== null) this.readBuf.set(value);
    this.readCas = cas;
    return length;
  }

  override writeData(key: Uint8Array, keyAt: number, keyLen: number, value: Uint8Array, valAt: number, valLen: number, cas: number): number {
    const r = super.writeData(key, keyAt, keyLen, value, valAt, valLen, cas);
    if (r === WasmResult.CasMismatch) this.casMismatches++;
    return r;
  }

  /** The value stored under a key (no hook, no counting), or null. */
  peek(key: string): Uint8Array | null {
    return super.getData(utf8(key))?.value ?? null;
  }

  /** Rewrite a key with its own bytes, as another worker's write would: its CAS changes. */
  touch(key: string): void {
    const k = utf8(key);
    const e = super.getData(k);
    if (e !== null) super.setData(k, e.value, e.cas);
  }
}

let nextGenId = 1;

/** One filter, instantiated in-process on Wisp's proxy-wasm host, driven by a test. */
export class FilterHarness implements HttpCallSink {
  readonly name: string;
  readonly shared: HarnessSharedState;
  /** Every log line the filter wrote (also returned per call in PhaseResult.logs). */
  readonly logs: LogLine[] = [];
  /** Host properties applied to every new request (see LoadOptions.properties). */
  readonly properties: Map<string, string>;
  /** proxy_http_call requests made so far. */
  readonly httpCalls: HttpCallRecord[] = [];
  /** Queue ids something was enqueued to (proxy_on_queue_ready is delivered by queueReady). */
  readonly enqueued: number[] = [];
  /** Wall clock the filter sees, in nanoseconds; set it or use advance(). */
  nowNs: bigint;

  private readonly module: WebAssembly.Module;
  private readonly spec: GenerationSpec;
  private readonly deps: InstanceDeps;
  private inst: FilterInstance;
  private readonly streams = new Map<number, StreamState>();
  private readonly calls = new Map<number, { contextId: number; stream: number | null }>();
  private readonly queueOwners = new Set<number>();
  private nextStream = 1;
  private nextToken = 1;
  private lastStream = 0;

  private constructor(module: WebAssembly.Module, opts: LoadOptions) {
    this.module = module;
    this.name = opts.name ?? 'filter';
    this.shared = opts.sharedState ?? new HarnessSharedState();
    this.properties = new Map(Object.entries(opts.properties ?? {}));
    this.nowNs = BigInt(Math.floor(opts.nowMs ?? Date.now())) * 1_000_000n;
    this.spec = {
      id: nextGenId++,
      name: this.name,
      rootId: opts.rootId ?? '',
      config: asText(opts.config),
      vmConfig: asText(opts.vmConfig),
      failure: 'open',
      deadlineMs: 0,
      maxMemoryBytes: Number.MAX_SAFE_INTEGER,
      maxBodyBytes: opts.maxBodyBytes ?? 0,
    };
    const log = new WorkerLog();
    log.level = opts.logLevel ?? LogLevel.Trace;
    this.deps = {
      shared: this.shared,
      log,
      httpCalls: this,
      watch: new Float64Array(Watch.Slots),
      nowNs: () => this.nowNs,
      onTickPeriod: () => {},
      onQueueRegistered: (_inst, id) => this.queueOwners.add(id),
      onEnqueue: (id) => this.enqueued.push(id),
    };
    this.inst = new FilterInstance(this.spec, module, this.deps);
  }

  /** Compile and start a filter: _initialize, root context, proxy_on_vm_start and
   * proxy_on_configure. Rejects when any step fails, with the filter's ERROR lines. */
  static async load(wasm: string | URL | Uint8Array | WebAssembly.Module, opts: LoadOptions = {}): Promise<FilterHarness> {
    let module: WebAssembly.Module;
    if (wasm instanceof WebAssembly.Module) module = wasm;
    else {
      const bytes = wasm instanceof Uint8Array ? wasm : await readFile(typeof wasm === 'string' ? wasm : fileURLToPath(wasm));
      module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
    }
    const h = new FilterHarness(module, opts);
    h.startInstance();
    return h;
  }

  private startInstance(): void {
    try {
      this.inst.start();
    } catch (err) {
      this.drainLogs();
      const reasons = this.errors();
      const why = reasons.length > 0 ? `: ${reasons.join('; ')}` : '';
      throw new Error(`filter ${this.name} failed to start (${errorMessage(err)})${why}`);
    } finally {
      this.drainLogs();
    }
  }

  /** ERROR and CRITICAL log lines so far. */
  errors(): string[] {
    return this.logs.filter((l) => l.level >= LogLevel.Error).map((l) => l.message);
  }

  /** proxy_set_tick_period_milliseconds as last set by the filter (0 = no ticks). */
  get tickPeriodMs(): number {
    return this.inst.tickPeriodMs;
  }

  /** Bytes of linear memory the instance holds now. */
  get memoryBytes(): number {
    return this.inst.memoryBytes;
  }

  /** Move the filter's clock forward. */
  advance(ms: number): void {
    this.nowNs += BigInt(Math.round(ms * 1_000_000));
  }

  /** Start a request: proxy_on_context_create + proxy_on_request_headers. */
  request(init: RequestInit = {}): PhaseResult {
    const s = new StreamState(this.nextStream++);
    this.lastStream = s.id;
    this.streams.set(s.id, s);
    s.method = init.method ?? 'GET';
    s.path = init.path ?? '/';
    s.authority = init.authority ?? 'localhost';
    s.scheme = init.scheme ?? 'http';
    s.clientAddress = '127.0.0.1';
    s.clientPort = 40000;
    for (const [path, value] of this.properties) this.applyProperty(s, path, value);
    if (init.clientAddress !== undefined) setClient(s, init.clientAddress);
    if (init.route !== undefined) s.routeName = init.route;
    if (init.cluster !== undefined) s.clusterName = init.cluster;
    if (init.listener !== undefined) s.listenerName = init.listener;
    if (init.requestId !== undefined) s.requestId = init.requestId;
    const raw: string[] = [];
    for (const [k, v] of pairsOf(init.headers)) {
      const name = k.toLowerCase();
      if (name === ':method') s.method = v;
      else if (name === ':path') s.path = v;
      else if (name === ':authority') s.authority = v;
      else if (name === ':scheme') s.scheme = v;
      else raw.push(name, v);
    }
    s.setRequestHeaders(raw);
    return this.phase(s, true, init.endOfStream ?? true);
  }

  /** proxy_on_response_headers for a request (default: the last one started). */
  response(init: ResponseInit, stream = this.lastStream): PhaseResult {
    const s = this.stream(stream);
    const raw: string[] = [];
    for (const [k, v] of pairsOf(init.headers)) raw.push(k.toLowerCase(), v);
    s.setResponseHeaders(init.status, raw);
    return this.phase(s, false, init.endOfStream ?? true);
  }

  /** A request body chunk: proxy_on_request_body (default: the last request started). */
  requestBody(chunk: string | Uint8Array, endOfStream = true, stream = this.lastStream): BodyResult {
    return this.body(this.stream(stream), true, typeof chunk === 'string' ? utf8(chunk) : chunk, endOfStream);
  }

  /** A response body chunk: proxy_on_response_body (default: the last request started). */
  responseBody(chunk: string | Uint8Array, endOfStream = true, stream = this.lastStream): BodyResult {
    return this.body(this.stream(stream), false, typeof chunk === 'string' ? utf8(chunk) : chunk, endOfStream);
  }

  /** End a request: proxy_on_done, proxy_on_log, proxy_on_delete (as Wisp's worker does).
   * `responseCode` sets the response.code property for a request that never reached the
   * response phase (what Envoy reports for e.g. a connect failure). */
  done(stream = this.lastStream, opts: { responseCode?: number } = {}): LogLine[] {
    const s = this.stream(stream);
    if (opts.responseCode !== undefined && s.responseStatus === 0) s.setResponseHeaders(opts.responseCode, []);
    this.streams.delete(s.id);
    const inst = this.inst;
    const ctx = inst.contexts.get(s.id);
    if (ctx !== undefined) {
      inst.contexts.delete(s.id);
      this.guard('proxy_on_done/log/delete', s, () => {
        inst.stream = s;
        inst.contextId = ctx;
        if (inst.onDone !== null) inst.onDone(ctx);
        if (inst.onLog !== null) inst.onLog(ctx);
        if (inst.onDelete !== null) inst.onDelete(ctx);
      });
    }
    for (const [token, call] of this.calls) if (call.stream === s.id) this.calls.delete(token);
    return this.drainLogs();
  }

  /** request, then response (when the request continued), then done: one whole exchange.
   * Returns the request phase's result, or the response phase's when it ran. */
  exchange(req: RequestInit = {}, res: ResponseInit = { status: 200 }): PhaseResult {
    const r = this.request(req);
    if (r.action !== 'continue') {
      this.done(r.stream);
      return r;
    }
    const out = this.response(res, r.stream);
    this.done(r.stream);
    return out;
  }

  /** proxy_on_tick on the root context. */
  tick(): LogLine[] {
    const inst = this.inst;
    if (inst.onTick !== null) {
      this.guard('proxy_on_tick', null, () => {
        inst.stream = null;
        inst.contextId = 1;
        inst.onTick!(1);
      });
    }
    return this.drainLogs();
  }

  /** proxy_on_queue_ready, when the filter registered the queue. */
  queueReady(queueId: number): LogLine[] {
    const inst = this.inst;
    if (inst.onQueueReady !== null && this.queueOwners.has(queueId)) {
      this.guard('proxy_on_queue_ready', null, () => {
        inst.stream = null;
        inst.contextId = 1;
        inst.onQueueReady!(1, queueId);
      });
    }
    return this.drainLogs();
  }

  /** The next item of a shared queue (as another filter would dequeue it), or null. */
  dequeue(queueId: number): Uint8Array | null {
    const r = this.shared.dequeue(queueId);
    return typeof r === 'number' ? null : r;
  }

  /** Id of a shared queue by name (0 = not registered). */
  queueId(name: string): number {
    return this.shared.resolveQueue(utf8(name));
  }

  /** Answer a proxy_http_call. `null` (or status 0) = the call failed. When the call's
   * request was paused waiting for it, returns how that request goes on. */
  httpCallResponse(token: number, res: { status: number; headers?: HeaderInput; body?: string | Uint8Array } | null): PhaseResult | null {
    const call = this.calls.get(token);
    if (call === undefined) throw new Error(`no pending http call with token ${token}`);
    this.calls.delete(token);
    const s = call.stream !== null ? this.streams.get(call.stream) ?? null : null;
    if (s !== null) s.pendingCalls--;
    const status = res?.status ?? 0;
    const headers: string[] = status > 0 ? [':status', String(status)] : [];
    for (const [k, v] of pairsOf(res?.headers)) headers.push(k.toLowerCase(), v);
    const body = typeof res?.body === 'string' ? utf8(res.body) : res?.body ?? new Uint8Array(0);
    const inst = this.inst;
    if (s !== null) {
      s.resumeRequested = false;
      s.local = null;
    }
    if (inst.onHttpCallResponse !== null) {
      inst.httpResponse = { status, headers, body };
      try {
        this.guard('proxy_on_http_call_response', s, () => {
          inst.stream = s;
          inst.contextId = call.contextId;
          inst.onHttpCallResponse!(ROOT_CONTEXT_ID, token, headers.length >> 1, body.length, 0); // as the host: see worker.ts
        });
      } finally {
        inst.httpResponse = null;
      }
    }
    const logs = this.drainLogs();
    if (s === null || s.pausedStep < 0) return null;
    const request = s.pausedRequest;
    const list = request ? s.requestHeaders : s.responseHeaders;
    if (s.local !== null) {
      s.pausedStep = -1;
      return new PhaseResult(s.id, 'local', toPairs(list), localOf(s), logs);
    }
    if (s.resumeRequested || s.pendingCalls === 0) {
      if (!s.resumeRequested) inst.warnOnce('no-resume', 'proxy_on_http_call_response neither resumed the stream nor answered it; resuming');
      s.pausedStep = -1;
      return new PhaseResult(s.id, 'continue', toPairs(list), null, logs.concat(this.drainLogs()));
    }
    return new PhaseResult(s.id, 'pause', toPairs(list), null, logs);
  }

  /** The filter's metrics by name (histograms: the sum of recorded values). */
  metrics(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const m of this.shared.metricsSnapshot()) if (m.filter === this.name) out[m.name] = m.value;
    return out;
  }

  /** A shared data value as text (null when absent). */
  sharedData(key: string): string | null {
    const v = this.shared.peek(key);
    return v === null ? null : Buffer.from(v).toString('utf8');
  }

  // --- internals ----------------------------------------------------------------------

  issue(inst: FilterInstance, cluster: string, headers: string[], body: Uint8Array, timeoutMs: number): number {
    const token = this.nextToken++;
    const s = inst.stream;
    if (s !== null) s.pendingCalls++;
    this.calls.set(token, { contextId: inst.contextId, stream: s !== null ? s.id : null });
    this.httpCalls.push({ token, cluster, headers: toPairs(headers), body, timeoutMs, stream: s !== null ? s.id : null });
    return token;
  }

  private stream(id: number): StreamState {
    const s = this.streams.get(id);
    if (s === undefined) throw new Error(`no open request ${id} (already done, or never started)`);
    return s;
  }

  /** One header phase, with the same outcome rules as Wisp's worker (worker.ts runPhase). */
  private phase(s: StreamState, request: boolean, eos: boolean): PhaseResult {
    const inst = this.inst;
    s.local = null;
    const fn = request ? inst.onRequestHeaders : inst.onResponseHeaders;
    const phaseName = request ? 'proxy_on_request_headers' : 'proxy_on_response_headers';
    let action = 0;
    if (fn !== null) {
      this.guard(phaseName, s, () => {
        const ctx = inst.contextFor(s);
        inst.stream = s;
        inst.contextId = ctx;
        const pairs = (request ? s.requestHeaders.length : s.responseHeaders.length) >> 1;
        action = fn(ctx, pairs, eos ? 1 : 0);
      });
    }
    let outcome: Action = 'continue';
    if (s.local !== null) outcome = 'local';
    else if (action === 1) {
      if (s.pendingCalls > 0) {
        s.pausedRequest = request;
        s.pausedStep = 0;
        outcome = 'pause';
      } else {
        inst.warnOnce('pause', `${phaseName} returned Pause with no http call to wait for; nothing could resume it, so the chain continues`);
      }
    }
    const list = request ? s.requestHeaders : s.responseHeaders;
    return new PhaseResult(s.id, outcome, toPairs(list), localOf(s), this.drainLogs());
  }

  /** One body chunk, with the same buffering rules as Wisp's worker (worker.ts runBody). */
  private body(s: StreamState, request: boolean, input: Uint8Array, eos: boolean): BodyResult {
    const inst = this.inst;
    s.local = null;
    let held = request ? s.requestBodyHeld : s.responseBodyHeld;
    let data = input;
    const buffered = held !== null ? held[0] : null;
    if (buffered != null) {
      buffered.append(data);
      data = buffered.view();
      held![0] = null;
    }
    const fn = request ? inst.onRequestBody : inst.onResponseBody;
    const phaseName = request ? 'proxy_on_request_body' : 'proxy_on_response_body';
    let action = 0;
    if (fn !== null) {
      this.guard(phaseName, s, () => {
        const ctx = inst.contextFor(s);
        inst.stream = s;
        inst.contextId = ctx;
        s.body = data;
        s.bodyType = request ? BufferType.HttpRequestBody : BufferType.HttpResponseBody;
        try {
          action = fn(ctx, data.length, eos ? 1 : 0);
          data = s.body;
        } finally {
          s.body = null;
          s.bodyType = -1;
        }
      });
    }
    if (s.local !== null) return new BodyResult(s.id, 'local', new Uint8Array(0), localOf(s), this.drainLogs());
    if (action !== 0 && eos) {
      inst.warnOnce('body-stop-at-end', `${phaseName} stopped iteration at the end of the body; the chain continues`);
    } else if (action !== 0) {
      const max = this.spec.maxBodyBytes;
      if (max > 0 && data.length > max) {
        s.local = request
          ? { status: 413, headers: ['content-type', 'text/plain'], body: utf8(`413 request body too large for filter ${this.name}\n`), details: 'request_payload_too_large' }
          : { status: 500, headers: ['content-type', 'text/plain'], body: utf8(`500 response body too large for filter ${this.name}\n`), details: 'response_payload_too_large' };
        return new BodyResult(s.id, 'local', new Uint8Array(0), localOf(s), this.drainLogs());
      }
      if (held === null) {
        held = [null];
        if (request) s.requestBodyHeld = held;
        else s.responseBodyHeld = held;
      }
      held[0] = new BodyBuffer(data);
      return new BodyResult(s.id, 'buffer', new Uint8Array(0), null, this.drainLogs());
    }
    return new BodyResult(s.id, 'continue', Uint8Array.prototype.slice.call(data), null, this.drainLogs());
  }

  /** Runs a guest call; a trap is thrown to the test, after the instance is replaced by a
   * fresh one as Wisp replaces it (the filter's contexts are gone with it). */
  private guard(what: string, s: StreamState | null, call: () => void): void {
    try {
      call();
    } catch (err) {
      this.inst.stream = null;
      this.drainLogs();
      this.inst = new FilterInstance(this.spec, this.module, this.deps);
      this.streams.clear();
      this.calls.clear();
      this.startInstance();
      throw new Error(`trap in ${what}${s !== null ? ` (request ${s.id})` : ''}: ${errorMessage(err)}`);
    }
    this.inst.stream = null;
  }

  private applyProperty(s: StreamState, path: string, value: string): void {
    switch (path) {
      case 'source.address':
        setClient(s, value);
        return;
      case 'route_name':
        s.routeName = value;
        return;
      case 'cluster_name':
        s.clusterName = value;
        return;
      case 'listener_name':
        s.listenerName = value;
        return;
      case 'request.id':
        s.requestId = value;
        return;
    }
    if (s.properties === null) s.properties = new Map();
    s.properties.set(path, utf8(value));
  }

  private drainLogs(): LogLine[] {
    const log = this.deps.log;
    const out: LogLine[] = [];
    for (let i = 0; i < log.messages.length; i++) {
      out.push({ level: log.levels[i], levelName: LEVEL_NAMES[log.levels[i]] ?? String(log.levels[i]), message: log.messages[i] });
    }
    log.clear();
    for (const l of out) this.logs.push(l);
    return out;
  }
}

function asText(v: string | object | undefined): string {
  if (v === undefined) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function pairsOf(h: HeaderInput | undefined): HeaderPairs {
  if (h === undefined) return [];
  return Array.isArray(h) ? h : Object.entries(h);
}

function toPairs(flat: string[]): HeaderPairs {
  const out: HeaderPairs = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
  return out;
}

function localOf(s: StreamState): LocalReply | null {
  const l = s.local;
  if (l === null) return null;
  return { status: l.status, headers: toPairs(l.headers), body: Buffer.from(l.body).toString('utf8'), details: l.details };
}

/** "1.2.3.4:5", "[::1]:80", "::1" or "1.2.3.4" into the stream's address and port. */
function setClient(s: StreamState, address: string): void {
  let host = address;
  let port = 0;
  if (address.startsWith('[')) {
    const end = address.indexOf(']');
    host = address.slice(1, end);
    const rest = address.slice(end + 1);
    if (rest.startsWith(':')) port = Number(rest.slice(1));
  } else {
    const colon = address.lastIndexOf(':');
    if (colon > 0 && address.indexOf(':') === colon) {
      host = address.slice(0, colon);
      port = Number(address.slice(colon + 1));
    }
  }
  s.clientAddress = host;
  s.clientPort = Number.isFinite(port) ? port : 0;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
