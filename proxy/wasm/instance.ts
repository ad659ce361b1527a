// One instantiated filter (one generation in one worker): its WebAssembly.Instance, its root
// context, the stream contexts it created, and the memory helpers the host calls use.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { IdTable } from '../id-table.js';
import { BufferType, detectAbi, type AbiVersion, LogLevel, lowerAscii, WasmResult } from './abi.js';
import { createEnvImports } from './host.js';
import type { SharedState } from './shared-state.js';
import type { StreamState } from './stream-state.js';
import { createWasiImports, ProcExit } from './wasi.js';
import { copyBytes, isAscii, startCall, Watch, type GenerationSpec, type Utf8SliceBuffer } from './wire.js';

/** Log lines and faults gathered during a batch, returned to the main thread with it. */
export class WorkerLog {
  level: number = LogLevel.Info;
  readonly gens: number[] = [];
  readonly levels: number[] = [];
  readonly messages: string[] = [];
  private dropped = 0;

  push(genId: number, level: number, message: string): void {
    if (level < this.level) return;
    if (this.messages.length >= 1000) {
      this.dropped++;
      return;
    }
    this.gens.push(genId);
    this.levels.push(level);
    this.messages.push(message);
  }

  clear(): void {
    if (this.messages.length !== 0) {
      this.gens.length = 0;
      this.levels.length = 0;
      this.messages.length = 0;
    }
    this.dropped = 0;
  }

  get droppedCount(): number {
    return this.dropped;
  }
}

/** Where proxy_http_call requests go (the worker collects them for the main thread). */
export interface HttpCallSink {
  /** Returns the call's token. */
  issue(inst: FilterInstance, cluster: string, headers: string[], body: Uint8Array, timeoutMs: number): number;
  /** Whether a call may name `cluster` (the config defines it); absent: any name goes out.
   * proxy_http_call refuses other names with BadArgument, logged, at the call. */
  knowsCluster?(cluster: string): boolean;
}

/** The response an http call callback may read. */
export interface HttpCallResponseView {
  status: number;
  /** With :status first. */
  headers: string[];
  body: Uint8Array;
}

export interface InstanceDeps {
  shared: SharedState;
  log: WorkerLog;
  /** null when the runtime has no way to make http calls (proxy_http_call is Unimplemented). */
  httpCalls: HttpCallSink | null;
  /** The instance registered shared queue `id` (it gets proxy_on_queue_ready for it). */
  onQueueRegistered(inst: FilterInstance, id: number): void;
  /** Something was enqueued to shared queue `id`. */
  onEnqueue(id: number): void;
  /** An instance changed its tick period (reported with the batch). */
  onTickPeriod(inst: FilterInstance): void;
  /** Per-worker watchdog slots read by the main thread (deadline enforcement). */
  watch: Float64Array;
  /** Wall clock for proxy_get_current_time_nanoseconds and WASI's realtime clock; absent =
   * Date.now(). The in-process test harness (proxy/testing) injects a clock tests move. */
  nowNs?: () => bigint;
}

type ExportFn = (...args: number[]) => number;

/** Header names a filter asked for, found again by their bytes: filters ask for the same few
 * on every request, and comparing a few cached byte strings is cheaper than decoding a new
 * string (a call into C++) and lower-casing it each time. A small ring: a filter asking for
 * many names only costs the scan. */
export class GuestNameCache {
  private readonly bytes: Uint8Array[] = [];
  private readonly names: string[] = [];
  private next = 0;

  constructor(private readonly capacity = 16) {}

  /** The name cached for mem[ptr, ptr + len), or null. */
  find(mem: Uint8Array, ptr: number, len: number): string | null {
    const bytes = this.bytes;
    for (let c = 0; c < bytes.length; c++) {
      const b = bytes[c];
      if (b.length !== len) continue;
      let i = 0;
      while (i < len && mem[ptr + i] === b[i]) i++;
      if (i === len) return this.names[c];
    }
    return null;
  }

  add(mem: Uint8Array, ptr: number, len: number, name: string): void {
    const copy = Uint8Array.prototype.slice.call(mem, ptr, ptr + len);
    if (this.bytes.length < this.capacity) {
      this.bytes.push(copy);
      this.names.push(name);
      return;
    }
    this.bytes[this.next] = copy;
    this.names[this.next] = name;
    this.next = this.next + 1 === this.capacity ? 0 : this.next + 1;
  }
}

/** Longest header name GuestNameCache keeps. */
const CACHED_NAME_MAX = 64;

/** Host-call refusal lines an instance may log per second (see mayLogRefusal). */
const REFUSALS_PER_SECOND = 10;

export const ROOT_CONTEXT_ID = 1;
/** Instantiation, _initialize and configure may legitimately take longer than a request call. */
const START_DEADLINE_FLOOR_MS = 2000;
/** The step of FilterInstance.start before any export runs: linking, and the module's own
 * start section (which runs inside new WebAssembly.Instance). */
const STEP_INSTANTIATE = 'instantiation (start section)';

/** A step of FilterInstance.start threw: its message names the step ("trapped in
 * proxy_on_configure: ..." for a wasm trap, "failed in _start: ..." for anything else, such
 * as an AssemblyScript abort or a non-zero proc_exit) before the reason describeError gives,
 * wasm stack included (the main thread maps it to source lines when it can). */
export class StartStepError extends Error {
  constructor(
    readonly step: string,
    reason: unknown,
  ) {
    super(`${reason instanceof WebAssembly.RuntimeError ? 'trapped' : 'failed'} in ${step}: ${describeError(reason)}`, { cause: reason });
    this.name = 'StartStepError';
  }
}

export class FilterInstance {
  readonly spec: GenerationSpec;
  readonly abi: AbiVersion;
  readonly deps: InstanceDeps;
  readonly vmConfig: Uint8Array;
  readonly pluginConfig: Uint8Array;
  memory!: WebAssembly.Memory;
  private memAb: ArrayBuffer | null = null;
  private memBuf: Buffer = Buffer.alloc(0);
  private memView: DataView = new DataView(new ArrayBuffer(0));
  private allocFn!: ExportFn;

  onContextCreate!: ExportFn;
  onRequestHeaders: ExportFn | null = null;
  onResponseHeaders: ExportFn | null = null;
  onRequestBody: ExportFn | null = null;
  onResponseBody: ExportFn | null = null;
  onRequestTrailers: ExportFn | null = null;
  onResponseTrailers: ExportFn | null = null;
  onDone: ExportFn | null = null;
  onLog: ExportFn | null = null;
  onDelete: ExportFn | null = null;
  onHttpCallResponse: ExportFn | null = null;
  onTick: ExportFn | null = null;
  onQueueReady: ExportFn | null = null;
  /** Network (L4) callbacks: connections through a tcp listener's filters (worker.ts), and
   * the sniffers (the 'sniff' control op, wasm/sniff.ts). */
  onNewConnection: ExportFn | null = null;
  onDownstreamData: ExportFn | null = null;
  onUpstreamData: ExportFn | null = null;
  onDownstreamConnectionClose: ExportFn | null = null;
  onUpstreamConnectionClose: ExportFn | null = null;
  /** proxy_set_tick_period_milliseconds; reported to the main thread, which sends ticks. */
  tickPeriodMs = 0;
  tickChanged = false;
  /** Set during proxy_on_http_call_response. */
  httpResponse: HttpCallResponseView | null = null;

  /** Current call: the stream it belongs to (null for root callbacks) and its context id. */
  stream: StreamState | null = null;
  contextId = ROOT_CONTEXT_ID;
  /** Which configuration proxy_get_configuration (0.1.0) returns in the current callback. */
  configPhase: number = BufferType.VmConfiguration;
  /** proxy_on_vm_start / proxy_on_configure is running (root-only settings are taken). */
  configuring = false;
  /** The filter said, while configuring, that it has nothing to do in the response headers
   * phase (property wisp.skip_phases); see FilterInstance.skipsResponseHeaders. */
  declaredNoResponseHeaders = false;
  declaredNoResponseTrailers = false;
  /** wisp.response_headers_statuses while configuring: the statuses it names
   * (parseStatusSet); null = every status. */
  responseHeadersStatuses: Uint8Array | null = null;
  /** Stream id → this instance's context id (an IdTable, not a Map: see id-table.ts). */
  readonly contexts = new IdTable<number>();
  private nextContextId = ROOT_CONTEXT_ID + 1;
  private warnedOnce = new Set<string>();
  /** mayLogRefusal's window: when it started, lines logged in it, refusals left out. */
  private refusalWindowStart = 0;
  private refusalsLogged = 0;
  private refusalsSuppressed = 0;
  private readonly headerNames = new GuestNameCache();

  constructor(spec: GenerationSpec, module: WebAssembly.Module, deps: InstanceDeps) {
    this.spec = spec;
    this.deps = deps;
    const names = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
    this.abi = detectAbi(names) ?? '0.2.1';
    this.vmConfig = Buffer.from(spec.vmConfig, 'utf8');
    this.pluginConfig = Buffer.from(spec.config, 'utf8');
    this.module = module;
  }

  private readonly module: WebAssembly.Module;

  /** Instantiate, run the module's start function, create the root context, vm_start and
   * configure. Throws with the reason when any step fails; a step that traps or throws is
   * named in the message ("trapped in proxy_on_vm_start: unreachable [wasm stack: ...]"):
   * the same trap text is otherwise all a hot load's 400 says, whichever step it came from. */
  start(): void {
    const wasi = createWasiImports(this);
    const imports: WebAssembly.Imports = { env: createEnvImports(this), wasi_snapshot_preview1: wasi, wasi_unstable: wasi };
    const watch = this.deps.watch;
    // Armed before instantiating: a start section runs inside new WebAssembly.Instance, and a
    // loop there is under the deadline like any other step.
    startCall(watch, Math.max(START_DEADLINE_FLOOR_MS, this.spec.deadlineMs), this.spec.id);
    let step = STEP_INSTANTIATE;
    let refusal: string | null = null;
    try {
      const instance = new WebAssembly.Instance(this.module, imports);
      const ex = instance.exports as Record<string, unknown>;
      this.bindExports(ex);
      if (typeof ex._initialize === 'function') {
        step = '_initialize';
        (ex._initialize as () => void)();
        step = 'main';
        if (typeof ex.main === 'function') (ex.main as ExportFn)(0, 0);
      } else if (typeof ex._start === 'function') {
        step = '_start';
        try {
          (ex._start as () => void)();
        } catch (err) {
          if (!(err instanceof ProcExit && err.code === 0)) throw err;
        }
      }
      this.stream = null;
      this.contextId = ROOT_CONTEXT_ID;
      step = 'proxy_on_context_create';
      this.onContextCreate(ROOT_CONTEXT_ID, 0);
      const vmStart = ex.proxy_on_vm_start as ExportFn | undefined;
      this.configuring = true;
      this.configPhase = BufferType.VmConfiguration;
      step = 'proxy_on_vm_start';
      if (vmStart && vmStart(ROOT_CONTEXT_ID, this.vmConfig.length) === 0) {
        refusal = 'proxy_on_vm_start returned false';
      } else {
        const configure = ex.proxy_on_configure as ExportFn | undefined;
        this.configPhase = BufferType.PluginConfiguration;
        step = 'proxy_on_configure';
        if (configure && configure(ROOT_CONTEXT_ID, this.pluginConfig.length) === 0) refusal = 'proxy_on_configure returned false';
      }
    } catch (err) {
      throw new StartStepError(step, err);
    } finally {
      this.configuring = false;
      watch[Watch.Call] = 0;
    }
    if (refusal !== null) throw new Error(refusal);
  }

  private bindExports(ex: Record<string, unknown>): void {
    this.memory = ex.memory as WebAssembly.Memory;
    this.allocFn = (ex.proxy_on_memory_allocate ?? ex.malloc) as ExportFn;
    this.onContextCreate = (ex.proxy_on_context_create as ExportFn) ?? (() => 0);
    this.onRequestHeaders = (ex.proxy_on_request_headers as ExportFn) ?? null;
    this.onResponseHeaders = (ex.proxy_on_response_headers as ExportFn) ?? null;
    this.onRequestBody = (ex.proxy_on_request_body as ExportFn) ?? null;
    this.onResponseBody = (ex.proxy_on_response_body as ExportFn) ?? null;
    this.onRequestTrailers = (ex.proxy_on_request_trailers as ExportFn) ?? null;
    this.onResponseTrailers = (ex.proxy_on_response_trailers as ExportFn) ?? null;
    this.onDone = (ex.proxy_on_done as ExportFn) ?? null;
    this.onLog = (ex.proxy_on_log as ExportFn) ?? null;
    this.onDelete = (ex.proxy_on_delete as ExportFn) ?? null;
    this.onHttpCallResponse = (ex.proxy_on_http_call_response as ExportFn) ?? null;
    this.onTick = (ex.proxy_on_tick as ExportFn) ?? null;
    this.onQueueReady = (ex.proxy_on_queue_ready as ExportFn) ?? null;
    this.onNewConnection = (ex.proxy_on_new_connection as ExportFn) ?? null;
    this.onDownstreamData = (ex.proxy_on_downstream_data as ExportFn) ?? null;
    this.onUpstreamData = (ex.proxy_on_upstream_data as ExportFn) ?? null;
    this.onDownstreamConnectionClose = (ex.proxy_on_downstream_connection_close as ExportFn) ?? null;
    this.onUpstreamConnectionClose = (ex.proxy_on_upstream_connection_close as ExportFn) ?? null;
  }

  /** A chain may skip this filter's response headers phase: the module does not export the
   * callback, or its configuration said it has nothing to do there. */
  get skipsResponseHeaders(): boolean {
    return this.onResponseHeaders === null || this.declaredNoResponseHeaders;
  }

  /** Likewise for the response trailers phase. */
  get skipsResponseTrailers(): boolean {
    return this.onResponseTrailers === null || this.declaredNoResponseTrailers;
  }

  /** The stream's context id in this instance, creating the context on first use. */
  contextFor(stream: StreamState): number {
    let ctx = this.contexts.get(stream.id);
    if (ctx === undefined) {
      ctx = this.nextContextId++;
      this.contexts.set(stream.id, ctx);
      this.stream = stream;
      this.contextId = ctx;
      this.onContextCreate(ctx, ROOT_CONTEXT_ID);
    }
    return ctx;
  }

  /** Checked after every call (max_memory): through the cached ArrayBuffer, whose length reads
   * 0 once growing memory detached it (memory.buffer is a call into C++). */
  get memoryBytes(): number {
    const ab = this.memAb;
    if (ab !== null && ab.byteLength > 0) return ab.byteLength;
    this.refresh();
    return this.memAb!.byteLength;
  }

  /** Whether a host-call refusal may be logged now: at most REFUSALS_PER_SECOND a second per
   * instance, so a filter that misuses a call on every request does not flood the log; the
   * first line of the next second says how many were left out. Only on the failure path. */
  mayLogRefusal(): boolean {
    const now = Date.now();
    if (now - this.refusalWindowStart >= 1000) {
      if (this.refusalsSuppressed > 0) this.log(LogLevel.Warn, `${this.refusalsSuppressed} more host-call refusals in the last second were not logged`);
      this.refusalWindowStart = now;
      this.refusalsLogged = 0;
      this.refusalsSuppressed = 0;
    }
    if (this.refusalsLogged < REFUSALS_PER_SECOND) {
      this.refusalsLogged++;
      return true;
    }
    this.refusalsSuppressed++;
    return false;
  }

  warnOnce(key: string, message: string): void {
    if (this.warnedOnce.has(key)) return;
    this.warnedOnce.add(key);
    this.log(LogLevel.Warn, message);
  }

  log(level: number, message: string): void {
    this.deps.log.push(this.spec.id, level, message);
  }

  // --- memory helpers (views are refreshed when memory grows) ------------------------------

  private refresh(): void {
    const ab = this.memory.buffer as ArrayBuffer;
    if (ab !== this.memAb) {
      this.memAb = ab;
      this.memBuf = Buffer.from(ab);
      this.memView = new DataView(ab);
    }
  }

  inBounds(ptr: number, len: number): boolean {
    // Fast path without memory.buffer (a getter into C++): the views stay valid until memory
    // grows, and growing detaches the old buffer, whose length then reads 0.
    if (ptr >= 0 && len > 0 && ptr + len <= this.memBuf.length) return true;
    this.refresh();
    return ptr >= 0 && len >= 0 && ptr + len <= this.memBuf.length;
  }

  readString(ptr: number, len: number): string | null {
    if (!this.inBounds(ptr, len)) return null;
    return len === 0 ? '' : (this.memBuf as Utf8SliceBuffer).utf8Slice(ptr, ptr + len);
  }

  /** A header name a filter passed, lower-cased (the map keys are); null when out of bounds. */
  headerName(ptr: number, len: number): string | null {
    if (!this.inBounds(ptr, len)) return null;
    const mem = this.memBuf;
    const cached = this.headerNames.find(mem, ptr, len);
    if (cached !== null) return cached;
    const name = lowerAscii(len === 0 ? '' : (mem as Utf8SliceBuffer).utf8Slice(ptr, ptr + len));
    if (len <= CACHED_NAME_MAX) this.headerNames.add(mem, ptr, len, name);
    return name;
  }

  /** A copy of guest bytes (the guest may reuse the memory after the call). */
  readBytes(ptr: number, len: number): Uint8Array | null {
    if (!this.inBounds(ptr, len)) return null;
    return Uint8Array.prototype.slice.call(this.memBuf, ptr, ptr + len);
  }

  /** A view of guest bytes, valid only until the next guest call. */
  viewBytes(ptr: number, len: number): Uint8Array | null {
    if (!this.inBounds(ptr, len)) return null;
    // A plain view over the cached ArrayBuffer (inBounds leaves memAb current): Buffer's
    // subarray goes through its species constructor, and memBuf.buffer is a call into C++.
    return new Uint8Array(this.memAb!, ptr, len);
  }

  /** All of guest memory when [ptr, ptr + len) lies inside it, else null: host functions
   * compare and copy guest bytes through it by index, with no view made per call. Valid
   * until the next guest call (a call may grow memory, which detaches it). */
  memoryAt(ptr: number, len: number): Uint8Array | null {
    return this.inBounds(ptr, len) ? this.memBuf : null;
  }

  writeU32(ptr: number, v: number): boolean {
    if (!this.inBounds(ptr, 4)) return false;
    this.memView.setUint32(ptr, v, true);
    return true;
  }

  writeU64(ptr: number, v: bigint): boolean {
    if (!this.inBounds(ptr, 8)) return false;
    this.memView.setBigUint64(ptr, v, true);
    return true;
  }

  writeBytesAt(ptr: number, bytes: Uint8Array): boolean {
    if (!this.inBounds(ptr, bytes.length)) return false;
    this.memBuf.set(bytes, ptr);
    return true;
  }

  readU32(ptr: number): number {
    if (ptr + 4 > this.memBuf.length) this.refresh();
    return this.memView.getUint32(ptr, true);
  }

  /** Why the last reserveReturn failed (set only when it does): the host logs it with the
   * InvalidMemoryAccess the call returns. */
  returnFailure = '';

  /** The first step of every proxy_get_* answer: `length` bytes allocated by the guest, their
   * (ptr, size) written to the return slots. Returns the guest pointer (0 for length 0), or -1
   * when a slot or the allocation is out of bounds. Write the bytes through memoryAt(ptr,
   * length) right after (the allocation may have grown memory: views from before are stale). */
  reserveReturn(length: number, retPtrPtr: number, retSizePtr: number): number {
    if (!this.inBounds(retPtrPtr, 4) || !this.inBounds(retSizePtr, 4)) {
      this.returnFailure = `return slots ${retPtrPtr >>> 0}, ${retSizePtr >>> 0} are outside guest memory (${this.memBuf.length} bytes)`;
      return -1;
    }
    let ptr = 0;
    if (length > 0) {
      ptr = this.allocFn(length) >>> 0;
      // Refreshes the views when the allocation grew memory (the old buffer reads length 0).
      if (ptr === 0 || !this.inBounds(ptr, length)) {
        this.returnFailure =
          ptr === 0
            ? `the guest's allocator returned 0 for ${length} bytes`
            : `the guest's allocator returned ${ptr} for ${length} bytes, outside guest memory (${this.memBuf.length} bytes)`;
        return -1;
      }
    }
    this.memView.setUint32(retPtrPtr, ptr, true);
    this.memView.setUint32(retSizePtr, length, true);
    return ptr;
  }

  /** Copy the first `length` bytes of `bytes` (all of them by default) into guest memory
   * allocated by the guest, and write (ptr, size) to the return slots, as every proxy_get_*
   * call does. */
  returnBytes(bytes: Uint8Array, retPtrPtr: number, retSizePtr: number, length = bytes.length): number {
    const ptr = this.reserveReturn(length, retPtrPtr, retSizePtr);
    if (ptr < 0) return WasmResult.InvalidMemoryAccess;
    copyBytes(bytes, 0, length, this.memBuf, ptr);
    return WasmResult.Ok;
  }

  returnString(s: string, retPtrPtr: number, retSizePtr: number): number {
    // Values are mostly short ASCII (addresses, paths, header values): sized and copied in JS
    // rather than through Buffer.byteLength and write, two calls into C++.
    if (s.length <= 128 && isAscii(s)) return this.returnLatin1(s, 0, s.length, retPtrPtr, retSizePtr);
    const len = Buffer.byteLength(s, 'utf8');
    const ptr = this.reserveReturn(len, retPtrPtr, retSizePtr);
    if (ptr < 0) return WasmResult.InvalidMemoryAccess;
    if (len > 0) this.memBuf.write(s, ptr, len, 'utf8');
    return WasmResult.Ok;
  }

  /** `len` bytes carried as a latin1 string (one char per byte: BinReader.packed, or any
   * ASCII string), from `start`, into the guest's allocation: a value goes from the batch to
   * the guest with no string decoded in between. */
  returnLatin1(text: string, start: number, len: number, retPtrPtr: number, retSizePtr: number): number {
    const ptr = this.reserveReturn(len, retPtrPtr, retSizePtr);
    if (ptr < 0) return WasmResult.InvalidMemoryAccess;
    const mem = this.memBuf;
    for (let i = 0; i < len; i++) mem[ptr + i] = text.charCodeAt(start + i);
    return WasmResult.Ok;
  }

  /** An integer property (a status, a port) as the 8 little-endian bytes of an i64, written
   * straight into the guest's allocation. `v` is a non-negative safe integer. */
  returnInt64(v: number, retPtrPtr: number, retSizePtr: number): number {
    const ptr = this.reserveReturn(8, retPtrPtr, retSizePtr);
    if (ptr < 0) return WasmResult.InvalidMemoryAccess;
    this.memView.setUint32(ptr, v >>> 0, true);
    this.memView.setUint32(ptr + 4, Math.floor(v / 4294967296) >>> 0, true);
    return WasmResult.Ok;
  }
}

/** An error's message; for a wasm trap, followed by the wasm frames of its stack (innermost
 * first, the function name where the module has a name section), which the main thread maps
 * to source lines when the filter has a source map (module-registry WasmSourceMap). */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (!(err instanceof WebAssembly.RuntimeError) || typeof err.stack !== 'string') return err.message;
  const frames: string[] = [];
  for (const line of err.stack.split('\n')) {
    const at = line.indexOf('wasm-function[');
    if (at < 0) continue;
    // "    at name (wasm://wasm/<hash>:wasm-function[N]:0xOFF)", or without "name (" and ")"
    const text = line.trim().slice(3);
    const paren = text.indexOf(' (wasm://');
    const end = line.indexOf(')', at);
    const frame = line.slice(at, end < 0 ? undefined : end);
    frames.push(paren > 0 ? `${text.slice(0, paren)} ${frame}` : frame);
    if (frames.length === 8) break;
  }
  return frames.length === 0 ? err.message : `${err.message} [wasm stack: ${frames.join(' < ')}]`;
}

/** Retired guest memory a worker lets pile up before it collects. */
const COLLECT_AFTER_BYTES = 4 * 1024 * 1024;

type GcFn = () => void;

/**
 * Gives retired instances' linear memory back. V8 frees a wasm Memory only when a GC finds
 * it unreachable, and a filter worker allocates so little on its own JS heap that it hardly
 * ever collects: measured here, retired instances kept their memory until about 60 MB of
 * them had piled up per worker (1,000 reloads in a row grew RSS by 57 MB with 2 workers),
 * and a max_memory recycle did not free the memory it was meant to free. So the worker
 * counts the memory of the instances it drops and runs full GCs (a few ms on a worker's
 * small heap) at the end of the batch in which that reaches COLLECT_AFTER_BYTES. Not on a
 * timer: a piscina worker waiting for its next task is blocked in Atomics.wait, and its
 * timers do not run.
 */
export class RetiredInstanceCollector {
  private gc: GcFn | null | undefined = undefined;
  private pendingBytes = 0;
  /** Collections run so far (tests and diagnostics). */
  collections = 0;

  constructor(private readonly watch: Float64Array) {}

  /** `inst` was dropped (its generation retired, or it trapped or outgrew max_memory and was
   * replaced): count its memory towards the next collection. */
  retire(inst: FilterInstance): void {
    const memory = inst.memory as WebAssembly.Memory | undefined;
    this.pendingBytes += memory !== undefined ? memory.buffer.byteLength : 0;
  }

  /** Collect when enough retired memory piled up. Called once a batch is done: no call is
   * being timed (a collection would count against a filter's deadline), and no caller's
   * local still refers to an instance retired during the batch. */
  collectIfDue(): void {
    if (this.pendingBytes < COLLECT_AFTER_BYTES || this.watch[Watch.Call] !== 0) return;
    const gc = this.gcFunction();
    if (gc === null) return;
    this.pendingBytes = 0;
    // Plain gc() (a forced full GC), twice: measured on Node 20, the first only finalizes
    // the dropped instances and their memories go in the second; gc({ type: 'major' })
    // freed none of them.
    gc();
    gc();
    this.collections++;
  }

  /** V8's gc(), exposed to a fresh context of this thread: the process may not run with
   * --expose-gc, and the flag only reaches contexts created after it is set. */
  private gcFunction(): GcFn | null {
    if (this.gc !== undefined) return this.gc;
    const existing = (globalThis as { gc?: GcFn }).gc;
    if (typeof existing === 'function') return (this.gc = existing);
    try {
      setFlagsFromString('--expose-gc');
      const fn = runInNewContext('gc') as unknown;
      this.gc = typeof fn === 'function' ? (fn as GcFn) : null;
    } catch {
      this.gc = null;
    }
    return this.gc;
  }
}
