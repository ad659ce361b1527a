// The filter workers. Each worker is its own Piscina (one thread) so a request's contexts
// stay in the worker that created them. Calls queue up during an event-loop turn and go out
// as ONE batch per worker (setImmediate flush) over the worker's BatchChannel; while a batch
// is in flight the next one accumulates, so under load batches grow instead of multiplying.
// The thread runs one long piscina task that serves the channel; it is stopped after a quiet
// spell so an idle runtime does not keep the process alive.

import { Piscina } from 'piscina';
import type { FilterStream } from '../filters/types.js';
import type { Generation } from './module-registry.js';
import { BatchChannel, type ServeTask } from './channel.js';
import { type BinWriter, type ControlOp, type ControlResult, type CallPayload, Op, Watch } from './wire.js';
import type { WorkerBootData } from './worker.js';

/** Main-thread record of one stream that reached the filters. */
export class StreamEntry {
  done = false;
  /** The phase whose answer is outstanding (a paused stream may lose it to a worker crash). */
  pendingRequestPhase = true;
  /** Worker epoch the stream's contexts were created in (a replaced worker lost them). */
  epoch: number;
  /** BodyPhase bits: which body phases any of the pinned generations handles. */
  readonly bodyPhases: number;
  /** The last body answer said a filter in the worker still buffers bytes of that body:
   * losing the worker then loses body bytes, whatever the failure policy. */
  requestBodyHeld = false;
  responseBodyHeld = false;
  /** Its request-headers call was sent again after a worker loss it had no part in. */
  requeued = false;
  constructor(
    readonly stream: FilterStream,
    readonly worker: WorkerHandle,
    readonly gens: Generation[],
  ) {
    this.epoch = worker.epoch;
    let phases = 0;
    for (let i = 0; i < gens.length; i++) phases |= gens[i].bodyPhases;
    this.bodyPhases = phases;
  }
}

export interface BatchSink {
  /** Encode the calls of one batch (the writer is positioned at the start). */
  encode(handle: WorkerHandle, w: BinWriter, entries: StreamEntry[], ops: number[], answers: CallPayload[]): void;
  /** A batch came back: dispatch results, logs and faults. */
  onReply(handle: WorkerHandle, entries: StreamEntry[], ops: number[], buf: ArrayBufferLike): void;
  /** A batch was lost (deadline abort or worker crash): apply failure policies. */
  onFailure(handle: WorkerHandle, entries: StreamEntry[], ops: number[], answers: CallPayload[], culpritGen: number, reason: string): void;
  /** Load ops for every live generation, to bring a replacement worker up to date. */
  resyncOps(): ControlOp[];
  quarantined(): number[];
}

interface PendingControl {
  op: ControlOp;
  resolve: ((r: ControlResult) => void) | null;
}

const WORKER_URL = new URL('./worker.js', import.meta.url).href;

/** A worker with no batch for this long ends its serve task (checked once a second). */
const IDLE_STOP_MS = 2000;

/** Stands in for "no stream" (http call answers to a root context): never called back. */
const NO_STREAM: FilterStream = {
  streamId: -1,
  method: '',
  scheme: '',
  authority: '',
  path: '',
  clientAddress: '',
  clientPort: 0,
  listenerName: '',
  routeName: '',
  clusterName: '',
  requestId: '',
  requestHeaders: [],
  responseStatus: 0,
  responseHeaders: [],
  onFilterContinue() {},
  onFilterLocalResponse() {},
};

export class WorkerHandle {
  readonly watch: Float64Array;
  /** Streams currently assigned to this worker (least-loaded pick). */
  streams = 0;
  /** Bumped each time the worker thread is replaced. */
  epoch = 0;
  private readonly piscina: Piscina;
  /** A batch is in flight (its answer not read yet). */
  private busy = false;
  private scheduled = false;
  private closed = false;
  private needsResync = false;
  /** The channel to the current thread; a replaced thread gets a new one. */
  private channel: BatchChannel | null = null;
  /** The channel's init (its port) has been handed to a thread. */
  private channelGiven = false;
  /** A serve task is running (or queued) that will take the next batch. */
  private serving = false;
  /** Identifies the current serve task: a superseded task's end is ignored. */
  private serveGen = 0;
  private batches = 0;
  private batchesAtLastCheck = 0;
  private readonly idleCheck: NodeJS.Timeout;
  private entries: StreamEntry[] = [];
  private ops: number[] = [];
  private answers: CallPayload[] = [];
  private flyEntries: StreamEntry[] = [];
  private flyOps: number[] = [];
  private flyAnswers: CallPayload[] = [];
  /** Entry for calls that belong to no stream (root-context http call answers). */
  readonly rootEntry: StreamEntry;
  private ctl: PendingControl[] = [];
  private flyCtl: PendingControl[] = [];
  /** Shared by the serve tasks until it fires (a deadline abort); then replaced. */
  private controller = new AbortController();
  private abortGen = 0;
  private abortReason = '';
  /** Consecutive lost serve tasks; a worker that cannot even start must not be retried in a hot loop. */
  private failures = 0;
  private readonly ticks = new Map<number, NodeJS.Timeout>();
  private readonly flushBound = (): void => this.flush();
  private readonly onWakeBound = (): void => this.onWake();

  constructor(
    readonly index: number,
    private readonly sink: BatchSink,
    shared: SharedArrayBuffer,
    logLevel: number,
    httpCalls: boolean,
  ) {
    const watchSab = new SharedArrayBuffer(Watch.Slots * 8);
    this.watch = new Float64Array(watchSab);
    this.rootEntry = new StreamEntry(NO_STREAM, this, []);
    this.rootEntry.done = true;
    const boot: WorkerBootData = { shared, watch: watchSab, logLevel, httpCalls };
    this.piscina = new Piscina({
      filename: WORKER_URL,
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity, // piscina skips its idle timer entirely
      workerData: boot,
      // A worker keeps little alive (~6 MB) but V8 grows its young generation to ~8 MB under
      // load like the main thread's; 3 MB (1 MB semi-spaces) keeps each worker's heap at
      // ~9 MB instead of ~15 for a few more sub-millisecond scavenges (docs/memory.md).
      resourceLimits: { maxYoungGenerationSizeMb: 3 },
    });
    // A terminated worker is replaced by piscina; its 'error' must not crash the process.
    this.piscina.on('error', () => {});
    this.idleCheck = setInterval(() => this.stopIfIdle(), IDLE_STOP_MS / 2);
    this.idleCheck.unref();
  }

  get inFlight(): boolean {
    return this.busy;
  }

  /** A serve task holds the thread (it ends after IDLE_STOP_MS without batches). */
  get isServing(): boolean {
    return this.serving;
  }

  enqueue(entry: StreamEntry, op: number, answer: CallPayload = null): void {
    this.entries.push(entry);
    this.ops.push(op);
    this.answers.push(answer);
    this.schedule();
  }

  control(op: ControlOp): Promise<ControlResult> {
    if (this.closed) return Promise.resolve({ ok: false, error: 'filter runtime closed' });
    return new Promise((resolve) => {
      this.ctl.push({ op, resolve });
      this.schedule();
    });
  }

  /** Fire-and-forget control (drop a generation). */
  post(op: ControlOp): void {
    if (this.closed) return;
    this.ctl.push({ op, resolve: null });
    this.schedule();
  }

  /** Flush at the end of this event-loop turn, unless a batch is in flight (its answer
   * flushes what piled up meanwhile). */
  private schedule(): void {
    if (this.scheduled || this.busy) return;
    this.scheduled = true;
    setImmediate(this.flushBound);
  }

  /** Called by the runtime's watchdog: the current call ran past its deadline. */
  abort(genId: number, reason: string): void {
    if (!this.busy || this.abortGen !== 0) return;
    this.abortGen = genId;
    this.abortReason = reason;
    this.controller.abort();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.busy || this.closed) return;
    if (this.entries.length === 0 && this.ctl.length === 0 && !this.needsResync) return;

    let ctlOps: ControlOp[] | null = null;
    if (this.needsResync) {
      this.needsResync = false;
      const pendingLoads = new Set<number>();
      for (const c of this.ctl) if (c.op.op === 'load') pendingLoads.add(c.op.spec.id);
      const resync: PendingControl[] = [];
      for (const op of this.sink.resyncOps()) if (op.op !== 'load' || !pendingLoads.has(op.spec.id)) resync.push({ op, resolve: null });
      this.ctl = resync.concat(this.ctl);
    }
    if (this.ctl.length > 0) {
      ctlOps = new Array(this.ctl.length);
      for (let i = 0; i < this.ctl.length; i++) ctlOps[i] = this.ctl[i].op;
    }
    const swapCtl = this.flyCtl;
    this.flyCtl = this.ctl;
    this.ctl = swapCtl;

    const swapE = this.flyEntries;
    this.flyEntries = this.entries;
    this.entries = swapE;
    const swapO = this.flyOps;
    this.flyOps = this.ops;
    this.ops = swapO;
    const swapA = this.flyAnswers;
    this.flyAnswers = this.answers;
    this.answers = swapA;

    const channel = this.channel ?? (this.channel = new BatchChannel());
    this.batches++;
    this.startServing(channel);
    this.dispatch(channel, ctlOps, false);
  }

  /** Encode the in-flight calls (none for a stop) after the quarantined generation ids, and
   * hand them to the worker; `stop` ends its serve task after this batch. */
  private dispatch(channel: BatchChannel, ctlOps: ControlOp[] | null, stop: boolean): void {
    const w = channel.startBatch();
    const ids = this.sink.quarantined();
    w.u32(ids.length);
    for (let i = 0; i < ids.length; i++) w.u32(ids[i]);
    if (this.flyEntries.length > 0) this.sink.encode(this, w, this.flyEntries, this.flyOps, this.flyAnswers);
    else w.u32(0);
    this.busy = true;
    channel.send(ctlOps, stop);
    channel.awaitReply(this.onWakeBound);
  }

  /** Make sure a serve task will take the batch about to be sent (piscina queues a new task
   * behind one that is still returning). */
  private startServing(channel: BatchChannel): void {
    if (this.serving) return;
    this.serving = true;
    const first = !this.channelGiven;
    this.channelGiven = true;
    const task: ServeTask = { init: first ? channel.init : null };
    const gen = ++this.serveGen;
    this.piscina
      .run(task, { transferList: first ? [channel.init.port] : undefined, signal: this.controller.signal })
      .then(
        () => this.onServeEnd(gen),
        (err: unknown) => this.onServeError(gen, err),
      );
  }

  /** No batch since the last check: end the serve task, so an idle runtime lets the process exit. */
  private stopIfIdle(): void {
    const quiet = this.batches === this.batchesAtLastCheck;
    this.batchesAtLastCheck = this.batches;
    if (!quiet || !this.serving || this.busy || this.scheduled || this.closed || this.channel === null) return;
    // Nothing is pending (else a flush would be scheduled): the stop batch carries no calls.
    this.serving = false;
    this.dispatch(this.channel, null, true);
  }

  private onServeEnd(gen: number): void {
    // A stopped task returned; a newer one (if any) is serving already.
    if (gen === this.serveGen && !this.busy) this.serving = false;
  }

  /** The serve task failed: the thread was terminated (deadline) or died. */
  private onServeError(gen: number, err: unknown): void {
    if (gen !== this.serveGen) return;
    this.serving = false;
    this.channel?.close();
    this.channel = null;
    this.channelGiven = false;
    this.onError(err);
  }

  private onWake(): void {
    const channel = this.channel;
    // A waiter of a channel that was replaced (its thread died) can still fire: ignore it.
    if (!this.busy || this.closed || channel === null || !channel.hasReply()) return;
    this.busy = false;
    this.failures = 0;
    const reply = channel.takeReply();
    const results = reply.ctl;
    for (let i = 0; i < this.flyCtl.length; i++) {
      const r = results?.[i] ?? { ok: false, error: 'no answer from worker' };
      this.flyCtl[i].resolve?.(r);
    }
    this.flyCtl.length = 0;
    try {
      this.sink.onReply(this, this.flyEntries, this.flyOps, reply.buf);
    } catch (err) {
      // A bug here must not become an unhandled rejection that takes the process down.
      process.emitWarning(`filter worker ${this.index}: could not process a batch reply: ${err instanceof Error ? err.stack : String(err)}`);
    } finally {
      this.flyEntries.length = 0;
      this.flyOps.length = 0;
      this.flyAnswers.length = 0;
      if (this.entries.length > 0 || this.ctl.length > 0) this.flush();
    }
  }

  private onError(err: unknown): void {
    this.busy = false;
    if (this.controller.signal.aborted) this.controller = new AbortController();
    const culprit = this.abortGen;
    const reason = culprit !== 0 ? this.abortReason : `filter worker failed: ${err instanceof Error ? err.message : String(err)}`;
    this.abortGen = 0;
    this.abortReason = '';
    this.watch[Watch.StartMs] = 0;
    if (this.closed) {
      for (const c of this.flyCtl) c.resolve?.({ ok: false, error: 'filter runtime closed' });
      this.flyCtl.length = 0;
      return;
    }
    // The thread is gone (piscina replaces it): everything it held must be sent again.
    this.epoch++;
    this.needsResync = true;
    const requeue: PendingControl[] = [];
    for (const c of this.flyCtl) {
      // A sniff that ran past its deadline is answered (as a failure) rather than sent again.
      if ((c.op.op === 'load' && c.op.spec.id === culprit) || (c.op.op === 'sniff' && c.op.genId === culprit)) c.resolve?.({ ok: false, error: reason });
      else if (c.resolve !== null) requeue.push(c);
    }
    this.flyCtl.length = 0;
    this.ctl = requeue.concat(this.ctl);
    try {
      this.sink.onFailure(this, this.flyEntries, this.flyOps, this.flyAnswers, culprit, reason);
    } finally {
      this.flyEntries.length = 0;
      this.flyOps.length = 0;
      this.flyAnswers.length = 0;
      if (!this.scheduled) {
        this.scheduled = true;
        this.failures++;
        if (this.failures <= 2) setImmediate(this.flushBound);
        else setTimeout(this.flushBound, Math.min(2000, 10 << this.failures)).unref();
      }
    }
  }

  /** Send proxy_on_tick for the generation every `ms` (0 stops). `entry` names the
   * generation and belongs to no stream. */
  setTick(entry: StreamEntry, ms: number): void {
    const genId = entry.gens[0].id;
    const old = this.ticks.get(genId);
    if (old !== undefined) clearInterval(old);
    this.ticks.delete(genId);
    if (ms <= 0 || this.closed) return;
    const timer = setInterval(() => this.enqueue(entry, Op.Tick), ms);
    timer.unref();
    this.ticks.set(genId, timer);
  }

  clearTick(genId: number): void {
    const old = this.ticks.get(genId);
    if (old !== undefined) clearInterval(old);
    this.ticks.delete(genId);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.idleCheck);
    for (const t of this.ticks.values()) clearInterval(t);
    this.ticks.clear();
    for (const c of this.ctl) c.resolve?.({ ok: false, error: 'filter runtime closed' });
    this.ctl.length = 0;
    await this.piscina.destroy();
    this.channel?.close();
  }
}
