// Piscina worker entry. Holds an instance of every live filter generation and the per-stream
// state, and serves batches of encoded calls from the main thread (wasm/channel.ts).
// A request's whole chain for a phase runs here in one go (filter 1, then filter 2 on the
// mutated headers, ...), stopping at the first local response.

import { workerData } from 'node:worker_threads';
import { IdTable } from '../id-table.js';
import { type BatchHandler, type ServeTask, serveChannel } from './channel.js';
import { BufferType, LogLevel } from './abi.js';
import { describeError, FilterInstance, type HttpCallSink, RetiredInstanceCollector, ROOT_CONTEXT_ID, WorkerLog, type InstanceDeps } from './instance.js';
import { SharedState } from './shared-state.js';
import { BodyBuffer, StreamState } from './stream-state.js';
import {
  BinReader,
  BinWriter,
  BodyFlag,
  CallFlag,
  type ControlOp,
  type ControlResult,
  FaultKind,
  type GenerationSpec,
  NetOp,
  Op,
  Phase,
  ResultKind,
  STREAM_INFO_STRINGS,
  startCall,
  statusWanted,
  Watch,
} from './wire.js';

export interface WorkerBootData {
  shared: SharedArrayBuffer;
  watch: SharedArrayBuffer;
  logLevel: number;
  /** Whether the main thread answers proxy_http_call. */
  httpCalls: boolean;
}

interface PendingCall {
  inst: FilterInstance;
  genId: number;
  contextId: number;
  streamId: number;
}

const RECREATE_BACKOFF_MIN_MS = 100;
const RECREATE_BACKOFF_MAX_MS = 5000;

class Generation {
  inst: FilterInstance | null = null;
  retryAt = 0;
  backoffMs = RECREATE_BACKOFF_MIN_MS;
  constructor(readonly spec: GenerationSpec, readonly module: WebAssembly.Module) {}
}

const EMPTY_SET: ReadonlySet<number> = new Set();

type ExportFn = (...args: number[]) => number;

/** What differs between the data phases runBody serves: HTTP bodies and a connection's bytes
 * each way. `request`: chain order first to last, answers as Phase.Request, held bytes in
 * StreamState.requestBodyHeld (a connection has no HTTP body, so its downstream bytes use it). */
interface DataPhase {
  readonly request: boolean;
  readonly network: boolean;
  readonly bufferType: number;
  readonly name: string;
  callback(inst: FilterInstance): ExportFn | null;
}

const REQUEST_BODY: DataPhase = { request: true, network: false, bufferType: BufferType.HttpRequestBody, name: 'proxy_on_request_body', callback: (i) => i.onRequestBody };
const RESPONSE_BODY: DataPhase = { request: false, network: false, bufferType: BufferType.HttpResponseBody, name: 'proxy_on_response_body', callback: (i) => i.onResponseBody };
const DOWNSTREAM_DATA: DataPhase = { request: true, network: true, bufferType: BufferType.DownstreamData, name: 'proxy_on_downstream_data', callback: (i) => i.onDownstreamData };
const UPSTREAM_DATA: DataPhase = { request: false, network: true, bufferType: BufferType.UpstreamData, name: 'proxy_on_upstream_data', callback: (i) => i.onUpstreamData };
const SNIFF_DECODER = new TextDecoder();

/** What differs between the phases runPhase serves: request and response headers, response
 * trailers. `request`: chain order first to last; `trailers`: no end-of-stream argument and
 * no header mutations to report (changed trailers go nowhere: the client side cannot write
 * them). `pauseWarning` keys the once-per-instance warning for a Pause nothing can resume. */
interface HeadersPhase {
  readonly request: boolean;
  readonly trailers: boolean;
  readonly name: string;
  readonly pauseWarning: string;
  callback(inst: FilterInstance, s: StreamState): ExportFn | null;
  /** Pairs in the phase's map. */
  size(s: StreamState): number;
}

const REQUEST_HEADERS: HeadersPhase = {
  request: true,
  trailers: false,
  name: 'proxy_on_request_headers',
  pauseWarning: 'pause',
  callback: (i) => i.onRequestHeaders,
  size: (s) => s.requestPairs,
};
const RESPONSE_HEADERS: HeadersPhase = {
  request: false,
  trailers: false,
  name: 'proxy_on_response_headers',
  pauseWarning: 'pause',
  callback: (i, s) => (i.declaredNoResponseHeaders || !statusWanted(i.responseHeadersStatuses, s.responseStatus) ? null : i.onResponseHeaders),
  size: (s) => s.responsePairs,
};
const RESPONSE_TRAILERS: HeadersPhase = {
  request: false,
  trailers: true,
  name: 'proxy_on_response_trailers',
  pauseWarning: 'trailers-pause',
  callback: (i) => (i.declaredNoResponseTrailers ? null : i.onResponseTrailers),
  size: (s) => (s.responseTrailers !== null ? s.responseTrailers.length >> 1 : 0),
};

export class FilterWorker implements HttpCallSink {
  private readonly gens = new Map<number, Generation>();
  private readonly streams = new IdTable<StreamState>(); // not a Map: see id-table.ts
  private readonly deps: InstanceDeps;
  private quarantined: ReadonlySet<number> = EMPTY_SET;
  private readonly callGens: number[] = [];
  private readonly faultGens: number[] = [];
  private readonly faultKinds: number[] = [];
  private readonly faultReasons: string[] = [];
  /** Out-of-band calls by token (increasing ids, one per call: an IdTable, see id-table.ts). */
  private readonly calls = new IdTable<PendingCall>();
  private nextToken = 1;
  /** What proxy_http_call may name; null until the runtime says (then any name goes out). */
  private clusterNames: Set<string> | null = null;
  /** Sniff contexts use negative stream ids, apart from the main thread's request streams. */
  private nextSniffStream = -1;
  private readonly outTokens: number[] = [];
  private readonly outStreams: number[] = [];
  private readonly outClusters: string[] = [];
  private readonly outHeaders: string[][] = [];
  private readonly outBodies: Uint8Array[] = [];
  private readonly outTimeouts: number[] = [];
  private readonly tickChanges: FilterInstance[] = [];
  /** Instances in this worker that registered each shared queue. */
  private readonly queueOwners = new Map<number, FilterInstance[]>();
  private readonly readyQueues = new Set<number>();
  /** Results written for deferred body calls (more than one result for one call). */
  private extraResults = 0;
  private readonly collector: RetiredInstanceCollector;

  constructor(boot: WorkerBootData) {
    const log = new WorkerLog();
    log.level = boot.logLevel;
    this.deps = {
      shared: new SharedState(boot.shared),
      log,
      watch: new Float64Array(boot.watch),
      httpCalls: boot.httpCalls ? this : null,
      onTickPeriod: (inst) => this.tickChanges.push(inst),
      onQueueRegistered: (inst, id) => {
        const owners = this.queueOwners.get(id);
        if (owners === undefined) this.queueOwners.set(id, [inst]);
        else if (!owners.includes(inst)) owners.push(inst);
      },
      onEnqueue: (id) => this.readyQueues.add(id),
    };
    this.collector = new RetiredInstanceCollector(this.deps.watch);
  }

  /** One batch: control ops first (loads before the calls that use them), then the calls.
   * The payload starts with the quarantined generation ids (usually none). */
  handle(ctl: ControlOp[] | null, reader: BinReader | null, out: BinWriter): ControlResult[] | null {
    let results: ControlResult[] | null = null;
    if (ctl !== null) {
      results = new Array(ctl.length);
      for (let i = 0; i < ctl.length; i++) results[i] = this.control(ctl[i]);
    }
    out.u32(0); // total length, patched below
    out.u32(0); // result count, patched below
    let answered = 0;
    if (reader !== null) {
      const quarantined = reader.u32();
      if (quarantined === 0) {
        this.quarantined = EMPTY_SET;
      } else {
        const ids = new Set<number>();
        for (let i = 0; i < quarantined; i++) ids.add(reader.u32());
        this.quarantined = ids;
      }
      const calls = reader.u32();
      for (let i = 0; i < calls; i++) if (this.runCall(reader, i, out)) answered++;
      answered += this.extraResults;
      this.extraResults = 0;
    }
    out.patchU32(4, answered);
    this.writeLogsAndFaults(out);
    out.patchU32(0, out.pos);
    return results;
  }

  // --- http calls -----------------------------------------------------------------------

  knowsCluster(cluster: string): boolean {
    return this.clusterNames === null || this.clusterNames.has(cluster);
  }

  issue(inst: FilterInstance, cluster: string, headers: string[], body: Uint8Array, timeoutMs: number): number {
    const token = this.nextToken;
    this.nextToken = this.nextToken >= 0x7fffffff ? 1 : this.nextToken + 1;
    const s = inst.stream;
    this.calls.set(token, { inst, genId: inst.spec.id, contextId: inst.contextId, streamId: s !== null ? s.id : -1 });
    if (s !== null) s.pendingCalls++;
    this.outTokens.push(token);
    this.outStreams.push(s !== null ? s.id : -1);
    this.outClusters.push(cluster);
    this.outHeaders.push(headers);
    this.outBodies.push(body);
    this.outTimeouts.push(timeoutMs);
    return token;
  }

  /** proxy_on_http_call_response, then resume the paused chain when the filter lets it. */
  private httpCallResponse(r: BinReader, index: number, id: number, gens: number[], out: BinWriter): boolean {
    const token = r.u32();
    const status = r.u32();
    const headers = r.strList();
    const body = r.bytes();
    const call = this.calls.get(token);
    if (call !== undefined) this.calls.delete(token);
    const s = id >= 0 ? this.streams.get(id) : undefined;
    if (s !== undefined && call !== undefined && call.streamId === s.id) s.pendingCalls--;
    if (call === undefined) {
      // The worker that made the call was replaced, or the stream is gone.
      if (id < 0) return false;
      out.u32(index);
      out.u8(ResultKind.Lost);
      out.u8(0);
      return true;
    }
    const gen = this.gens.get(call.genId);
    const inst = call.inst;
    if (gen === undefined || gen.inst !== inst || inst.onHttpCallResponse === null) {
      if (s === undefined || s.pausedStep < 0) return false;
      out.u32(index);
      out.u8(ResultKind.Lost);
      out.u8(0);
      return true;
    }
    const h: string[] = status > 0 ? [':status', String(status)] : [];
    for (let i = 0; i < headers.length; i++) h.push(headers[i]);
    inst.httpResponse = { status, headers: h, body };
    inst.stream = s ?? null;
    inst.contextId = call.contextId;
    if (s !== undefined) {
      s.resumeRequested = false;
      s.local = null;
    }
    const watch = this.deps.watch;
    armWatch(watch, gen.spec);
    let trapped = false;
    try {
      // To the root context, as Envoy does (it makes every call on the root): SDKs map the
      // token back to the calling context, and the Go and C++ SDKs look the id up as a root.
      inst.onHttpCallResponse(ROOT_CONTEXT_ID, token, h.length >> 1, body.length, 0);
    } catch (err) {
      trapped = true;
      this.fault(gen, gen.spec.id, FaultKind.Trap, `trap in proxy_on_http_call_response: ${errorMessage(err)}`);
    } finally {
      watch[Watch.Call] = 0;
      inst.httpResponse = null;
      inst.stream = null;
    }
    if (s === undefined || s.pausedStep < 0) return false;
    const request = s.pausedRequest;
    const trailers = s.pausedTrailers;
    let kind: number;
    if (trapped) {
      const next = s.pausedStep + 1;
      s.pausedStep = -1;
      kind = applyPolicy(s, gen.spec) ? ResultKind.LocalResponse : this.resumePhase(s, gens, request, trailers, next);
    } else if (s.local !== null) {
      s.pausedStep = -1;
      kind = ResultKind.LocalResponse;
    } else if (s.resumeRequested || s.pendingCalls === 0) {
      if (!s.resumeRequested) inst.warnOnce('no-resume', 'proxy_on_http_call_response neither resumed the stream nor answered it; resuming');
      const next = s.pausedStep + 1;
      s.pausedStep = -1;
      kind = this.resumePhase(s, gens, request, trailers, next);
    } else {
      return false; // still waiting for another call
    }
    this.writeResult(out, index, kind, s, request);
    if (kind !== ResultKind.Paused) this.runDeferredBody(s, gens, kind === ResultKind.LocalResponse, index, out);
    return true;
  }

  /** Body calls that came while the stream's response headers were paused on an http call
   * run now that the phase is over, answered with this batch (in their order). */
  private runDeferredBody(s: StreamState, gens: number[], answered: boolean, index: number, out: BinWriter): void {
    const deferred = s.deferredBody;
    if (deferred === null) return;
    s.deferredBody = null;
    if (answered) return; // the stream got a local response: its body calls are moot
    for (let i = 0; i < deferred.length; i++) {
      const d = deferred[i];
      if (this.runBody(s, gens, d.request, d.data, d.endOfStream, index, out)) this.extraResults++;
      if (s.pausedStep >= 0) break; // cannot happen (body calls never pause); keep the order safe
    }
  }

  private tick(genId: number): void {
    const gen = this.gens.get(genId);
    if (gen === undefined || this.quarantined.has(genId)) return;
    const inst = this.ready(gen);
    if (inst === null || inst.onTick === null) return;
    const watch = this.deps.watch;
    armWatch(watch, gen.spec);
    inst.stream = null;
    inst.contextId = 1;
    try {
      inst.onTick(1);
    } catch (err) {
      watch[Watch.Call] = 0;
      this.fault(gen, genId, FaultKind.Trap, `trap in proxy_on_tick: ${errorMessage(err)}`);
      return;
    }
    watch[Watch.Call] = 0;
    if (inst.memoryBytes > gen.spec.maxMemoryBytes) {
      this.fault(gen, genId, FaultKind.Memory, `memory ${inst.memoryBytes} bytes exceeds max_memory_bytes ${gen.spec.maxMemoryBytes}; instance recycled`);
    }
  }

  /** proxy_on_queue_ready for every current instance here that registered the queue. */
  private queueReady(id: number): void {
    const owners = this.queueOwners.get(id);
    if (owners === undefined) return;
    const watch = this.deps.watch;
    let w = 0;
    for (let i = 0; i < owners.length; i++) {
      const inst = owners[i];
      const gen = this.gens.get(inst.spec.id);
      if (gen === undefined || gen.inst !== inst) continue; // dropped or recycled: forget it
      owners[w++] = inst;
      if (inst.onQueueReady === null || this.quarantined.has(gen.spec.id)) continue;
      armWatch(watch, gen.spec);
      inst.stream = null;
      inst.contextId = 1;
      try {
        inst.onQueueReady(1, id);
      } catch (err) {
        this.fault(gen, gen.spec.id, FaultKind.Trap, `trap in proxy_on_queue_ready: ${errorMessage(err)}`);
      } finally {
        watch[Watch.Call] = 0;
      }
    }
    owners.length = w;
  }

  private writeResult(out: BinWriter, index: number, kind: number, s: StreamState, request: boolean): void {
    out.u32(index);
    out.u8(kind);
    out.u8(request ? Phase.Request : Phase.Response);
    if (kind === ResultKind.ContinueMutated) {
      out.strList(request ? s.requestHeaders : s.responseHeaders);
    } else if (kind === ResultKind.ContinueAppended) {
      const list = request ? s.requestHeaders : s.responseHeaders;
      const base = request ? s.requestBaseLength : s.responseBaseLength;
      out.u32(list.length - base);
      for (let i = base; i < list.length; i++) out.str(list[i]);
      // The request path will hold these too: the next phase's base includes them.
    } else if (kind === ResultKind.LocalResponse) {
      writeLocal(out, s);
    }
  }

  // --- control ------------------------------------------------------------------------

  private control(op: ControlOp): ControlResult {
    if (op.op === 'drop') {
      const gen = this.gens.get(op.genId);
      if (gen !== undefined) this.forget(gen);
      return { ok: true };
    }
    if (op.op === 'sniff') return this.sniff(op.genId, op.data, op.end);
    if (op.op === 'clusters') {
      this.clusterNames = op.names === null ? null : new Set(op.names);
      return { ok: true };
    }
    const gen = new Generation(op.spec, op.module);
    try {
      const inst = new FilterInstance(op.spec, op.module, this.deps);
      inst.start();
      gen.inst = inst;
      this.gens.set(op.spec.id, gen);
      const result: ControlResult = { ok: true, skipsResponseHeaders: inst.skipsResponseHeaders, skipsResponseTrailers: inst.skipsResponseTrailers };
      if (inst.responseHeadersStatuses !== null) result.responseHeadersStatuses = inst.responseHeadersStatuses;
      return result;
    } catch (err) {
      return { ok: false, error: errorMessage(err) };
    }
  }

  /** One sniff of a TCP connection's first bytes: a fresh context per call (the host sends
   * everything held so far each time), under the same deadline watch as any call. */
  private sniff(genId: number, data: Uint8Array, end: boolean): ControlResult {
    const gen = this.gens.get(genId);
    if (gen === undefined) return { ok: false, error: 'generation not loaded in this worker' };
    if (this.quarantined.has(genId)) return { ok: false, error: 'filter quarantined' };
    const inst = this.ready(gen);
    if (inst === null) return { ok: false, error: 'filter instance not available' };
    if (inst.onDownstreamData === null) return { ok: false, error: 'the filter does not export proxy_on_downstream_data' };
    const stream = new StreamState(this.nextSniffStream--);
    stream.body = data;
    stream.bodyType = BufferType.DownstreamData;
    const watch = this.deps.watch;
    armWatch(watch, gen.spec);
    try {
      const ctx = inst.contextFor(stream);
      inst.stream = stream;
      inst.contextId = ctx;
      if (inst.onNewConnection !== null) inst.onNewConnection(ctx);
      inst.onDownstreamData(ctx, data.length, end ? 1 : 0);
      if (inst.onDone !== null) inst.onDone(ctx);
      if (inst.onDelete !== null) inst.onDelete(ctx);
      inst.contexts.delete(stream.id);
    } catch (err) {
      watch[Watch.Call] = 0;
      this.fault(gen, genId, FaultKind.Trap, `trap in proxy_on_downstream_data: ${errorMessage(err)}`);
      return { ok: false, error: errorMessage(err) };
    } finally {
      inst.stream = null;
    }
    watch[Watch.Call] = 0;
    const props: [string, string][] = [];
    if (stream.properties !== null) for (const [k, v] of stream.properties) props.push([k, SNIFF_DECODER.decode(v)]);
    return { ok: true, props };
  }

  /** The generation's instance, recreating it (with backoff) after a fault. */
  private ready(gen: Generation): FilterInstance | null {
    if (gen.inst !== null) return gen.inst;
    const now = Date.now();
    if (now < gen.retryAt) return null;
    try {
      const inst = new FilterInstance(gen.spec, gen.module, this.deps);
      inst.start();
      gen.inst = inst;
      gen.backoffMs = RECREATE_BACKOFF_MIN_MS;
      return inst;
    } catch (err) {
      gen.retryAt = now + gen.backoffMs;
      gen.backoffMs = Math.min(gen.backoffMs * 2, RECREATE_BACKOFF_MAX_MS);
      this.deps.log.push(gen.spec.id, LogLevel.Error, `re-instantiation failed (retry in ${gen.backoffMs} ms): ${errorMessage(err)}`);
      return null;
    }
  }

  /** Drop a retired generation and every reference this worker still has to its instance
   * (queue owner lists are otherwise pruned only when the queue fires; root-context http
   * calls only when answered), then have its memory collected. */
  private forget(gen: Generation): void {
    this.gens.delete(gen.spec.id);
    const id = gen.spec.id;
    for (const [queue, owners] of this.queueOwners) {
      const kept = owners.filter((inst) => inst.spec.id !== id);
      if (kept.length === 0) this.queueOwners.delete(queue);
      else if (kept.length !== owners.length) this.queueOwners.set(queue, kept);
    }
    for (const [token, call] of this.calls.entries()) if (call.genId === id) this.calls.delete(token);
    if (gen.inst !== null) this.collector.retire(gen.inst);
    gen.inst = null;
  }

  private fault(gen: Generation | undefined, genId: number, kind: number, reason: string): void {
    this.faultGens.push(genId);
    this.faultKinds.push(kind);
    this.faultReasons.push(reason);
    if (gen !== undefined && (kind === FaultKind.Trap || kind === FaultKind.Memory)) {
      // Contexts of the old instance are gone with it; streams get fresh ones lazily.
      if (gen.inst !== null) this.collector.retire(gen.inst);
      gen.inst = null;
      this.ready(gen);
    }
  }

  // --- calls --------------------------------------------------------------------------

  /** Decode and run one call; returns true when it wrote a result. */
  private runCall(r: BinReader, index: number, out: BinWriter): boolean {
    const op = r.u8();
    const id = r.f64();
    const flags = r.u8();
    const ng = r.u8();
    const gens = this.callGens;
    // Setting an array's length is a call into the runtime: only when the chain length changes.
    if (gens.length !== ng) gens.length = ng;
    for (let k = 0; k < ng; k++) gens[k] = r.u32();
    // Done carries the final status (Wisp's own 502/503/504 included) for on_log's response.code.
    const doneStatus = op === Op.Done ? r.u32() : 0;
    if (op === Op.HttpCallResponse) return this.httpCallResponse(r, index, id, gens, out);
    if (op === Op.Tick) {
      this.tick(gens[0]);
      return false;
    }
    if (op === Op.QueueReady) {
      this.queueReady(r.u32());
      return false;
    }
    let s = this.streams.get(id);
    if (s === undefined) {
      if (op === Op.Done) return false;
      s = new StreamState(id);
      this.streams.set(id, s);
    }
    if ((flags & CallFlag.StreamInfo) !== 0) {
      s.clientPort = r.u32();
      s.connectionId = r.f64();
      s.setPackedInfo(r.packed(STREAM_INFO_STRINGS));
    }
    const eos = (flags & CallFlag.EndOfStream) !== 0 ? 1 : 0;
    if (op === NetOp.DownstreamData || op === NetOp.UpstreamData) {
      s.network = true;
      const downstream = op === NetOp.DownstreamData;
      return this.runBody(s, gens, downstream, r.bytesView(), eos === 1, index, out, downstream ? DOWNSTREAM_DATA : UPSTREAM_DATA);
    }
    if (op === Op.RequestHeaders) {
      readRequestHeaders(r, s);
      this.writeResult(out, index, this.runPhase(s, gens, REQUEST_HEADERS, eos, 0), s, true);
      return true;
    }
    if (op === Op.ResponseHeaders) {
      if ((flags & CallFlag.StreamInfo) !== 0) readRequestHeaders(r, s);
      readResponseHeaders(r, s);
      this.writeResult(out, index, this.runPhase(s, gens, RESPONSE_HEADERS, eos, 0), s, false);
      return true;
    }
    if (op === Op.ResponseTrailers) {
      if ((flags & CallFlag.StreamInfo) !== 0) {
        readRequestHeaders(r, s);
        readResponseHeaders(r, s);
      }
      s.responseTrailers = r.strList();
      s.trailersDirty = false;
      this.writeResult(out, index, this.runPhase(s, gens, RESPONSE_TRAILERS, 0, 0), s, false);
      return true;
    }
    if (op === Op.RequestBody || op === Op.ResponseBody) {
      const request = op === Op.RequestBody;
      if ((flags & CallFlag.StreamInfo) !== 0) {
        // This worker never saw the stream (it replaced one that did): give filters the heads.
        readRequestHeaders(r, s);
        if (!request) readResponseHeaders(r, s);
      }
      return this.runBody(s, gens, request, r.bytesView(), eos === 1, index, out);
    }
    if (s.network) this.closeConnection(s, gens, doneStatus & 0xff, (doneStatus >> 8) & 0xff);
    else if (doneStatus > 0 && s.responseStatus === 0) s.setResponseHeaders(doneStatus, []);
    this.finish(s, gens);
    return false;
  }

  /** The generation to call next in a stream's chain, with a live instance; null when the
   * filter is skipped: not loaded in this worker (the main thread applies its policy when it
   * sees the fault), quarantined, or its instance is being recreated — then its failure
   * policy is applied here, and `s.local` is set when that policy answers. */
  private callable(s: StreamState, genId: number): Generation | null {
    const gen = this.gens.get(genId);
    if (gen === undefined) {
      this.fault(undefined, genId, FaultKind.NotLoaded, 'generation not loaded in this worker');
      return null;
    }
    if (this.quarantined.has(genId) || this.ready(gen) === null) {
      applyPolicy(s, gen.spec);
      return null;
    }
    return gen;
  }

  /** A stream's filter call trapped: the watch stops, the instance is recreated (fault), and
   * the filter's failure policy decides; true when it answers (fail-closed). */
  private trappedCall(s: StreamState, gen: Generation, inst: FilterInstance, callback: string, err: unknown): boolean {
    this.deps.watch[Watch.Call] = 0;
    inst.stream = null;
    this.fault(gen, gen.spec.id, FaultKind.Trap, `trap in ${callback}: ${errorMessage(err)}`);
    return applyPolicy(s, gen.spec);
  }

  /** After a call: an instance that grew past max_memory is recycled, and like a trap what
   * the call did is not trusted: the stream gets the failure policy (`s.local` when it answers). */
  private checkMemory(s: StreamState, gen: Generation, inst: FilterInstance): void {
    if (inst.memoryBytes <= gen.spec.maxMemoryBytes) return;
    this.fault(gen, gen.spec.id, FaultKind.Memory, `memory ${inst.memoryBytes} bytes exceeds max_memory_bytes ${gen.spec.maxMemoryBytes}; instance recycled`);
    applyPolicy(s, gen.spec);
  }

  /** Go on with a paused phase from the filter after the one that paused. */
  private resumePhase(s: StreamState, gens: number[], request: boolean, trailers: boolean, next: number): number {
    s.pausedTrailers = false;
    return this.runPhase(s, gens, trailers ? RESPONSE_TRAILERS : request ? REQUEST_HEADERS : RESPONSE_HEADERS, 0, next);
  }

  /** Run the phase's filters from `start` (0, or after the filter that paused), request
   * phases in chain order, response ones in reverse. Answers Continue (ContinueAppended /
   * ContinueMutated when a headers phase changed the map), LocalResponse (a filter's answer
   * or fail-closed; in the trailers phase the request path resets the client stream, the head
   * being out), or Paused while a filter waits on its http call (the call's answer resumes
   * the chain after that filter; a paused trailers phase holds the response's end). */
  private runPhase(s: StreamState, gens: number[], phase: HeadersPhase, eos: number, start: number): number {
    s.local = null;
    const watch = this.deps.watch;
    const request = phase.request;
    const n = gens.length;
    for (let step = start; step < n; step++) {
      const genId = request ? gens[step] : gens[n - 1 - step];
      const gen = this.callable(s, genId);
      if (gen === null) {
        if (s.local !== null) return ResultKind.LocalResponse;
        continue;
      }
      const inst = gen.inst!;
      const fn = phase.callback(inst, s);
      if (fn === null) continue;
      let action = 0;
      armWatch(watch, gen.spec);
      try {
        const ctx = inst.contextFor(s);
        inst.stream = s;
        inst.contextId = ctx;
        // proxy_on_response_trailers takes no end-of-stream flag: the extra argument is ignored.
        action = fn(ctx, phase.size(s), eos);
      } catch (err) {
        if (this.trappedCall(s, gen, inst, phase.name, err)) return ResultKind.LocalResponse;
        continue;
      }
      watch[Watch.Call] = 0;
      inst.stream = null;
      this.checkMemory(s, gen, inst);
      if (s.local !== null) return ResultKind.LocalResponse;
      if (action === 1) {
        if (s.pendingCalls > 0) {
          s.pausedRequest = request;
          s.pausedTrailers = phase.trailers;
          s.pausedStep = step;
          return ResultKind.Paused;
        }
        inst.warnOnce(phase.pauseWarning, `${phase.name} returned Pause with no http call to wait for; nothing could resume it, so the chain continues`);
      }
    }
    if (!phase.trailers && (request ? s.requestDirty : s.responseDirty)) {
      return (request ? s.requestAppendOnly : s.responseAppendOnly) ? ResultKind.ContinueAppended : ResultKind.ContinueMutated;
    }
    return ResultKind.Continue;
  }

  /** One body chunk through the phase's filters (Envoy's decodeData / encodeData, simplified):
   * a filter that returns anything but Continue before the end of the stream has the bytes
   * buffered at its place in the chain, and is called again with everything buffered so far
   * when the next chunk (or the end) arrives; Continue releases them to the filters after
   * it. Writes exactly one result, Body (bytes to forward) or LocalResponse, and returns
   * true; or, while the stream's headers wait on an http call (the request path sends
   * response body calls right behind the response headers call), keeps the chunk for
   * later and returns false. */
  private runBody(
    s: StreamState,
    gens: number[],
    request: boolean,
    input: Uint8Array,
    eos: boolean,
    index: number,
    out: BinWriter,
    phase: DataPhase = request ? REQUEST_BODY : RESPONSE_BODY,
  ): boolean {
    if (s.pausedStep >= 0) {
      (s.deferredBody ??= []).push({ request, data: input.slice(), endOfStream: eos });
      return false;
    }
    s.local = null;
    const watch = this.deps.watch;
    const n = gens.length;
    const held = request ? s.requestBodyHeld : s.responseBodyHeld;
    const bufferType = phase.bufferType;
    const phaseName = phase.name;
    let data = input; // may alias the batch buffer: copied only when a filter keeps it
    for (let step = 0; step < n; step++) {
      const genId = request ? gens[step] : gens[n - 1 - step];
      const buffered = held !== null ? held[step] : null;
      if (buffered != null) {
        buffered.append(data);
        data = buffered.view();
        held![step] = null; // re-stored below if the filter keeps buffering
      }
      const gen = this.callable(s, genId);
      if (gen === null) {
        if (s.local !== null) {
          this.writeResult(out, index, ResultKind.LocalResponse, s, request);
          return true;
        }
        continue;
      }
      const inst = gen.inst!;
      const fn = phase.callback(inst);
      // A connection's filters all get proxy_on_new_connection (and later the close
      // callbacks), whichever data callbacks they export.
      if (fn === null && !phase.network) continue;
      let action = 0;
      armWatch(watch, gen.spec);
      try {
        const fresh = phase.network && !inst.contexts.has(s.id);
        const ctx = inst.contextFor(s);
        inst.stream = s;
        inst.contextId = ctx;
        if (fresh && inst.onNewConnection !== null) inst.onNewConnection(ctx);
        s.body = data;
        s.bodyType = bufferType;
        if (fn !== null) action = fn(ctx, data.length, eos ? 1 : 0);
        data = s.body;
      } catch (err) {
        // The filter's replacement (if any) is dropped with it: the bytes go on as they came.
        s.body = null;
        s.bodyType = -1;
        if (this.trappedCall(s, gen, inst, phaseName, err)) {
          this.writeResult(out, index, ResultKind.LocalResponse, s, request);
          return true;
        }
        continue;
      }
      watch[Watch.Call] = 0;
      inst.stream = null;
      s.body = null;
      s.bodyType = -1;
      this.checkMemory(s, gen, inst);
      if (s.local !== null) {
        this.writeResult(out, index, ResultKind.LocalResponse, s, request);
        return true;
      }
      if (action === 0) continue;
      if (eos) {
        // Nothing more will come to resume it (Envoy would wait for a timeout instead).
        inst.warnOnce('body-stop-at-end', `${phaseName} stopped iteration at the end of the body; the chain continues`);
        continue;
      }
      const max = gen.spec.maxBodyBytes;
      if (max > 0 && data.length > max) {
        s.local = phase.network
          ? { status: 503, headers: [], body: new Uint8Array(0), details: `held_bytes_over_max:${gen.spec.name}` }
          : request
          ? { status: 413, headers: ['content-type', 'text/plain'], body: Buffer.from('413 request body too large for filter ' + gen.spec.name + '\n'), details: 'request_payload_too_large' }
          : { status: 500, headers: ['content-type', 'text/plain'], body: Buffer.from('500 response body too large for filter ' + gen.spec.name + '\n'), details: 'response_payload_too_large' };
        this.writeResult(out, index, ResultKind.LocalResponse, s, request);
        return true;
      }
      let list = held;
      if (list === null) {
        list = new Array<BodyBuffer | null>(n).fill(null);
        if (request) s.requestBodyHeld = list;
        else s.responseBodyHeld = list;
      }
      // A buffer the filter left alone keeps its spare capacity; anything else is copied.
      if (buffered != null && data.buffer === buffered.view().buffer && data.length === buffered.length) list[step] = buffered;
      else list[step] = new BodyBuffer(data);
      out.u32(index);
      out.u8(ResultKind.Body);
      out.u8(request ? Phase.Request : Phase.Response);
      out.u32(0);
      out.u8(BodyFlag.Held);
      return true;
    }
    out.u32(index);
    out.u8(ResultKind.Body);
    out.u8(request ? Phase.Request : Phase.Response);
    out.bytes(data);
    out.u8(eos ? BodyFlag.End : 0);
    return true;
  }

  /** proxy_on_downstream_connection_close and proxy_on_upstream_connection_close for every
   * filter context of the connection (finish() then runs on_done, on_log, on_delete). A
   * trap here is reported, with no policy to apply: the connection is over. */
  private closeConnection(s: StreamState, gens: number[], downstreamPeer: number, upstreamPeer: number): void {
    const watch = this.deps.watch;
    for (let k = 0; k < gens.length; k++) {
      const gen = this.gens.get(gens[k]);
      const inst = gen?.inst;
      if (gen === undefined || inst == null) continue;
      const ctx = inst.contexts.get(s.id);
      if (ctx === undefined || (inst.onDownstreamConnectionClose === null && inst.onUpstreamConnectionClose === null)) continue;
      armWatch(watch, gen.spec);
      try {
        inst.stream = s;
        inst.contextId = ctx;
        if (inst.onDownstreamConnectionClose !== null) inst.onDownstreamConnectionClose(ctx, downstreamPeer);
        if (inst.onUpstreamConnectionClose !== null) inst.onUpstreamConnectionClose(ctx, upstreamPeer);
      } catch (err) {
        this.fault(gen, gen.spec.id, FaultKind.Trap, `trap in proxy_on_*_connection_close: ${errorMessage(err)}`);
      } finally {
        watch[Watch.Call] = 0;
        inst.stream = null;
      }
    }
  }

  /** on_done, on_log, on_delete for every filter context of the stream, then forget it. */
  private finish(s: StreamState, gens: number[]): void {
    const watch = this.deps.watch;
    for (let k = 0; k < gens.length; k++) {
      const gen = this.gens.get(gens[k]);
      const inst = gen?.inst;
      if (gen === undefined || inst == null) continue;
      const ctx = inst.contexts.get(s.id);
      if (ctx === undefined) continue;
      inst.contexts.delete(s.id);
      armWatch(watch, gen.spec);
      try {
        inst.stream = s;
        inst.contextId = ctx;
        if (inst.onDone !== null) inst.onDone(ctx);
        if (inst.onLog !== null) inst.onLog(ctx);
        if (inst.onDelete !== null) inst.onDelete(ctx);
      } catch (err) {
        watch[Watch.Call] = 0;
        inst.stream = null;
        this.fault(gen, gen.spec.id, FaultKind.Trap, `trap in proxy_on_done/log/delete: ${errorMessage(err)}`);
        continue;
      }
      watch[Watch.Call] = 0;
      inst.stream = null;
    }
    if (s.pendingCalls > 0) {
      for (const [token, call] of this.calls.entries()) if (call.streamId === s.id) this.calls.delete(token);
    }
    this.streams.delete(s.id);
  }

  private writeLogsAndFaults(out: BinWriter): void {
    // Tick periods, last value per generation (only instances still current count).
    let ticks = 0;
    const tickAt = out.pos;
    out.u32(0);
    for (const inst of this.tickChanges) {
      if (!inst.tickChanged || this.gens.get(inst.spec.id)?.inst !== inst) continue;
      inst.tickChanged = false;
      out.u32(inst.spec.id);
      out.u32(inst.tickPeriodMs);
      ticks++;
    }
    out.patchU32(tickAt, ticks);
    if (this.tickChanges.length !== 0) this.tickChanges.length = 0;
    out.u32(this.readyQueues.size);
    for (const id of this.readyQueues) out.u32(id);
    this.readyQueues.clear();
    out.u32(this.outTokens.length);
    for (let i = 0; i < this.outTokens.length; i++) {
      out.u32(this.outTokens[i]);
      out.f64(this.outStreams[i]);
      out.str(this.outClusters[i]);
      out.strList(this.outHeaders[i]);
      out.bytes(this.outBodies[i]);
      out.u32(this.outTimeouts[i]);
    }
    // Each array's length set only when there was something (a length store is a runtime call).
    if (this.outTokens.length !== 0) {
      this.outTokens.length = 0;
      this.outStreams.length = 0;
      this.outClusters.length = 0;
      this.outHeaders.length = 0;
      this.outBodies.length = 0;
      this.outTimeouts.length = 0;
    }
    const log = this.deps.log;
    const dropped = log.droppedCount;
    out.u32(log.messages.length + (dropped > 0 ? 1 : 0));
    for (let i = 0; i < log.messages.length; i++) {
      out.u32(log.gens[i]);
      out.u8(log.levels[i]);
      out.str(log.messages[i]);
    }
    if (dropped > 0) {
      out.u32(0);
      out.u8(LogLevel.Warn);
      out.str(`${dropped} filter log lines dropped in one batch`);
    }
    log.clear();
    out.u32(this.faultGens.length);
    for (let i = 0; i < this.faultGens.length; i++) {
      out.u32(this.faultGens[i]);
      out.u8(this.faultKinds[i]);
      out.str(this.faultReasons[i]);
    }
    if (this.faultGens.length !== 0) {
      this.faultGens.length = 0;
      this.faultKinds.length = 0;
      this.faultReasons.length = 0;
    }
    this.collector.collectIfDue();
  }
}

/** A call's request header list, kept packed until a filter reads it. */
function readRequestHeaders(r: BinReader, s: StreamState): void {
  const n = r.u32();
  s.setPackedRequestHeaders(r.packed(n), n);
}

/** A call's response status and header list, kept packed until a filter reads it. */
function readResponseHeaders(r: BinReader, s: StreamState): void {
  const status = r.u32();
  const n = r.u32();
  s.setPackedResponseHeaders(status, r.packed(n), n);
}

/** Start the deadline watch for a call into `spec`'s filter (the main thread's watchdog reads it). */
function armWatch(watch: Float64Array, spec: GenerationSpec): void {
  startCall(watch, spec.deadlineMs, spec.id);
}

/** Apply a faulted filter's failure policy; true when it answers (fail-closed). */
function applyPolicy(s: StreamState, spec: GenerationSpec): boolean {
  if (spec.failure === 'open') return false;
  s.local = {
    status: 503,
    headers: ['content-type', 'text/plain'],
    body: Buffer.from(`filter ${spec.name} failed\n`),
    details: `filter_failed:${spec.name}`,
  };
  return true;
}

function writeLocal(out: BinWriter, s: StreamState): void {
  const l = s.local!;
  out.u32(l.status);
  out.strList(l.headers);
  out.bytes(l.body);
  out.str(l.details);
}

/** The message, with the wasm stack for a trap (mapped to source lines on the main thread). */
function errorMessage(err: unknown): string {
  return describeError(err);
}

let worker: FilterWorker | null = null;
let handleBatch: BatchHandler | null = null;

/** The piscina task: serve the batch channel until the main thread stops it (or the thread is
 * terminated for a deadline). The FilterWorker outlives serve tasks: it is the thread's state. */
export default function run(task: ServeTask): void {
  if (worker === null) {
    const w = new FilterWorker(workerData as WorkerBootData);
    worker = w;
    handleBatch = (ctl, reader, out) => w.handle(ctl, reader, out);
  }
  try {
    serveChannel(task, handleBatch!);
  } catch (err) {
    // A bug in the host, not a filter fault (those are caught per call): this thread's state
    // can't be trusted any more. Ending it makes piscina start a clean one, which the main
    // thread brings up to date as after a deadline kill.
    process.emitWarning(`filter worker: batch failed, restarting the thread: ${err instanceof Error ? err.stack : String(err)}`);
    process.exit(1);
  }
}
