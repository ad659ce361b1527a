// The filter workers. Each worker is its own Piscina (one thread) so a request's contexts
// stay in the worker that created them. Calls queue up during an event-loop turn and go out
// as ONE batch per worker (setImmediate flush) over the worker's BatchChannel; up to SLOTS
// batches are in flight (the worker finds the next one waiting when it finishes one), and
// while that many are out the next accumulates, so under load batches grow instead of
// multiplying.
// The thread runs one long piscina task that serves the channel; it is stopped after a quiet
// spell so an idle runtime does not keep the process alive.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { FilterStream } from '../filters/types.js';
import type { Generation } from './module-registry.js';
import { BatchChannel, type ChannelReply, type FilterChannel, type ServeTask, SLOTS } from './channel.js';
import { InlineChannel } from './inline-channel.js';
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
  /** Its responseTrailers call is unanswered. The worker answers it like a response headers
   * call (same result kinds); this tells the two apart. At most one phase of a stream is
   * outstanding when trailers are sent (filters/types.ts). */
  awaitingTrailers = false;
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

/** The calls and control ops of one batch sent to the worker, until its answer is read. */
class InFlightBatch {
  entries: StreamEntry[] = [];
  ops: number[] = [];
  answers: CallPayload[] = [];
  ctl: PendingControl[] = [];
  /** Its number on the channel (see BatchChannel.startedCount). */
  seq = 0;

  clear(): void {
    this.entries.length = 0;
    this.ops.length = 0;
    this.answers.length = 0;
    this.ctl.length = 0;
  }
}

// The thread runs the CommonJS build of worker.ts and its imports (tsconfig.worker.json):
// piscina requires it, so the thread starts no ESM loader, 0.9 MB less per worker (10.1 →
// 9.2 MB with Wisp's modules loaded, docs/memory.md). A dist/ built by tsc alone has only the
// ES module, which piscina imports.
const WORKER_CJS = fileURLToPath(new URL('../../worker/proxy/wasm/worker.js', import.meta.url));
export const WORKER_FILE = existsSync(WORKER_CJS) ? WORKER_CJS : new URL('./worker.js', import.meta.url).href;

/** Event-loop turns that look for a batch's answer before the waitAsync wake-up is armed. */
const POLL_TURNS = 2;

/** Default of WorkerHandle's doneDelayMs. */
export const DONE_DELAY_MS = 10;

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
  /** The watchdog's view of the running call (runtime.checkDeadlines): its number, and when
   * the watchdog first saw it. */
  timedCall = 0;
  timedSince = 0;
  /** null with `workers: 0` (inline: the batches run on this thread). */
  private readonly piscina: Piscina | null;
  /** Batches sent whose answer is not read yet, oldest first (at most SLOTS). */
  private readonly flying: InFlightBatch[] = [];
  private readonly spare: InFlightBatch[] = [];
  private scheduled = false;
  /** Armed when only done calls are waiting (see enqueue). */
  private doneTimer: NodeJS.Timeout | null = null;
  /** Waiting calls other than done calls: they are what makes a batch worth a wake-up. */
  private urgent = 0;
  private closed = false;
  private needsResync = false;
  /** The channel to the current thread; a replaced thread gets a new one. */
  private channel: FilterChannel | null = null;
  /** The channel's init (its port) has been handed to a thread. */
  private channelGiven = false;
  /** A serve task is running (or queued) that will take the next batch. */
  private serving = false;
  /** Identifies the current serve task: a superseded task's end is ignored. */
  private serveGen = 0;
  /** Batches sent (diagnostics and tests). */
  batches = 0;
  private batchesAtLastCheck = 0;
  private readonly idleCheck: NodeJS.Timeout | null;
  private readonly boot: WorkerBootData;
  /** Calls and control ops waiting for the next batch. */
  private entries: StreamEntry[] = [];
  private ops: number[] = [];
  private answers: CallPayload[] = [];
  private ctl: PendingControl[] = [];
  /** Entry for calls that belong to no stream (root-context http call answers). */
  readonly rootEntry: StreamEntry;
  /** Shared by the serve tasks until it fires (a deadline abort); then replaced. */
  private controller = new AbortController();
  private abortGen = 0;
  private abortReason = '';
  /** Consecutive lost serve tasks; a worker that cannot even start must not be retried in a hot loop. */
  private failures = 0;
  private readonly ticks = new Map<number, NodeJS.Timeout>();
  private readonly flushBound = (): void => this.flush();
  private readonly flushDoneBound = (): void => {
    this.doneTimer = null;
    if (!this.scheduled) this.flush();
  };
  private readonly onWakeBound = (): void => this.onWake();
  /** A look for answers is queued (setImmediate), and how many turns it may still take. */
  private polling = false;
  private pollTurnsLeft = 0;
  private readonly pollBound = (): void => this.poll();

  constructor(
    readonly index: number,
    private readonly sink: BatchSink,
    shared: SharedArrayBuffer,
    logLevel: number,
    httpCalls: boolean,
    /** Run the batches on this thread (`workers: 0`, see inline-channel.ts). */
    readonly inline = false,
    /** How long a done call waits for a batch to go with when nothing else is waiting. */
    private readonly doneDelayMs = DONE_DELAY_MS,
  ) {
    const watchSab = new SharedArrayBuffer(Watch.Slots * 8);
    this.watch = new Float64Array(watchSab);
    this.rootEntry = new StreamEntry(NO_STREAM, this, []);
    this.rootEntry.done = true;
    const boot: WorkerBootData = { shared, watch: watchSab, logLevel, httpCalls };
    this.boot = boot;
    if (inline) {
      this.piscina = null;
      this.idleCheck = null;
      return;
    }
    this.piscina = new Piscina({
      filename: WORKER_FILE,
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

  /** waitAsync wake-ups armed by this worker's current channel (diagnostics and tests). */
  get wakeupsArmed(): number {
    return this.channel instanceof BatchChannel ? this.channel.wakeupsArmed : 0;
  }

  /** An answer is in that this thread has not applied yet (diagnostics and tests). */
  get answerWaiting(): boolean {
    return this.flying.length > 0 && this.channel !== null && this.channel.hasReply();
  }

  get inFlight(): boolean {
    return this.flying.length > 0;
  }

  /** A serve task holds the thread (it ends after IDLE_STOP_MS without batches). */
  get isServing(): boolean {
    return this.serving;
  }

  enqueue(entry: StreamEntry, op: number, answer: CallPayload = null): void {
    this.entries.push(entry);
    this.ops.push(op);
    this.answers.push(answer);
    if (op !== Op.Done) this.urgent++;
    else if (!this.scheduled) {
      // Nothing waits on a done call (on_done, on_log, on_delete): it goes with the next batch.
      // Under load that is this turn's anyway; at a low rate a batch of its own was a third
      // worker wake-up per request (~1/3 of what a filter cost at 1,000 requests/s). An idle
      // proxy sends it after doneDelayMs.
      this.armDoneTimer();
      return;
    }
    this.schedule();
  }

  private armDoneTimer(): void {
    if (this.doneTimer !== null || this.closed) return;
    this.doneTimer = setTimeout(this.flushDoneBound, this.doneDelayMs);
    this.doneTimer.unref();
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

  /** Flush at the end of this event-loop turn (with SLOTS batches in flight, the first answer
   * flushes what piled up meanwhile). */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flushBound);
  }

  /** Called by the runtime's watchdog: the current call ran past its deadline. */
  abort(genId: number, reason: string): void {
    if (this.inline || this.flying.length === 0 || this.abortGen !== 0) return;
    this.abortGen = genId;
    this.abortReason = reason;
    this.controller.abort();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.closed) return;
    this.takeReplies();
    if (this.flying.length >= SLOTS) return;
    if (this.entries.length === 0 && this.ctl.length === 0 && !this.needsResync) return;
    // A second batch only to a worker that is still busy (it takes it without a wake-up);
    // one that went to sleep has its answer on the way, which flushes these calls.
    if (this.flying.length > 0 && this.channel !== null && !this.channel.workerBusy) return;

    if (this.needsResync) {
      this.needsResync = false;
      const pendingLoads = new Set<number>();
      for (const c of this.ctl) if (c.op.op === 'load') pendingLoads.add(c.op.spec.id);
      const resync: PendingControl[] = [];
      for (const op of this.sink.resyncOps()) if (op.op !== 'load' || !pendingLoads.has(op.spec.id)) resync.push({ op, resolve: null });
      this.ctl = resync.concat(this.ctl);
    }
    let ctlOps: ControlOp[] | null = null;
    if (this.ctl.length > 0) {
      ctlOps = new Array(this.ctl.length);
      for (let i = 0; i < this.ctl.length; i++) ctlOps[i] = this.ctl[i].op;
    }
    // The pending arrays become the batch's; the batch's (empty) ones take new calls.
    this.urgent = 0;
    if (this.doneTimer !== null) {
      clearTimeout(this.doneTimer);
      this.doneTimer = null;
    }
    const b = this.spare.pop() ?? new InFlightBatch();
    const entries = b.entries;
    b.entries = this.entries;
    this.entries = entries;
    const ops = b.ops;
    b.ops = this.ops;
    this.ops = ops;
    const answers = b.answers;
    b.answers = this.answers;
    this.answers = answers;
    const ctl = b.ctl;
    b.ctl = this.ctl;
    this.ctl = ctl;

    const channel = this.channel ?? (this.channel = this.inline ? new InlineChannel(this.onWakeBound, this.boot) : new BatchChannel(this.onWakeBound));
    this.batches++;
    if (!this.inline) this.startServing(channel as BatchChannel);
    this.dispatch(channel, b, ctlOps, false);
  }

  /** Encode the batch's calls (none for a stop) after the quarantined generation ids, and
   * hand them to the worker; `stop` ends its serve task after this batch. */
  private dispatch(channel: FilterChannel, b: InFlightBatch, ctlOps: ControlOp[] | null, stop: boolean): void {
    const w = channel.startBatch();
    const ids = this.sink.quarantined();
    w.u32(ids.length);
    for (let i = 0; i < ids.length; i++) w.u32(ids[i]);
    if (b.entries.length > 0) this.sink.encode(this, w, b.entries, b.ops, b.answers);
    else w.u32(0);
    b.seq = channel.nextBatch;
    this.flying.push(b);
    if (this.inline) {
      try {
        channel.send(ctlOps, stop);
      } catch (err) {
        // A host bug, not a filter fault (those are caught per call): as when a thread dies,
        // the batch gets the failure handling and a fresh FilterWorker takes the next one.
        process.emitWarning(`inline filters: batch failed, starting over: ${err instanceof Error ? err.stack : String(err)}`);
        this.channel = null;
        channel.close();
        this.onError(err, channel);
        return;
      }
    } else {
      channel.send(ctlOps, stop);
    }
    this.awaitAnswer(channel);
  }

  /** Have the answer picked up. Under load it is in before the next turn ends (the worker
   * takes tens of µs, a busy turn hundreds), and a setImmediate that looks for it costs the
   * event loop less than the waitAsync wake-up: a task posted from the worker, an eventfd
   * write and read, a promise. So the next POLL_TURNS turns look, and only then is the
   * wake-up armed, which an event loop with nothing else to do needs. */
  private awaitAnswer(channel: FilterChannel): void {
    if (this.inline) {
      channel.watchReplies();
      return;
    }
    this.pollTurnsLeft = POLL_TURNS;
    if (this.polling) return;
    this.polling = true;
    setImmediate(this.pollBound);
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
    this.piscina!
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
    if (!quiet || !this.serving || this.flying.length > 0 || this.scheduled || this.doneTimer !== null || this.closed || this.channel === null) return;
    // Nothing is pending (else a flush or the done timer would be): the stop batch carries no calls.
    this.serving = false;
    this.dispatch(this.channel, this.spare.pop() ?? new InFlightBatch(), null, true);
  }

  private onServeEnd(gen: number): void {
    // A stopped task returned; a newer one (if any) is serving already.
    if (gen === this.serveGen && this.flying.length === 0) this.serving = false;
  }

  /** The serve task failed: the thread was terminated (deadline) or died. */
  private onServeError(gen: number, err: unknown): void {
    if (gen !== this.serveGen) return;
    this.serving = false;
    const channel = this.channel;
    this.channel = null;
    this.channelGiven = false;
    this.onError(err, channel);
    channel?.close();
  }

  private onWake(): void {
    if (!this.applyAnswers()) return;
    // A batch this sent is being looked for already (awaitAnswer).
    if (this.flying.length > 0 && !this.polling) this.channel?.watchReplies();
  }

  private poll(): void {
    this.polling = false;
    if (!this.applyAnswers() || this.flying.length === 0 || this.polling) return;
    if (--this.pollTurnsLeft > 0) {
      this.polling = true;
      setImmediate(this.pollBound);
    } else {
      this.channel?.watchReplies();
    }
  }

  /** Apply the answers that are in and send what waited for them; false when there is no
   * channel to look at (closed, or its thread is gone). */
  private applyAnswers(): boolean {
    if (this.closed || this.channel === null) return false;
    this.takeReplies();
    if (this.urgent > 0 || this.ctl.length > 0 || this.needsResync) this.flush();
    else if (this.entries.length > 0) this.armDoneTimer();
    return true;
  }

  /** Apply every answer that is in. Also run by each flush: under load the answer is often
   * in before the waitAsync wake-up reaches this thread (a task posted to the event loop, run
   * an iteration later), and the calls that were waiting on it leave in this same turn. */
  private takeReplies(): void {
    const channel = this.channel;
    if (channel === null) return;
    while (this.flying.length > 0 && channel.hasReply()) {
      this.failures = 0;
      this.answer(this.flying.shift()!, channel.takeReply());
    }
  }

  /** Apply a batch's answer: control results, then the calls' results, logs and faults. */
  private answer(b: InFlightBatch, reply: ChannelReply): void {
    const results = reply.ctl;
    for (let i = 0; i < b.ctl.length; i++) {
      const r = results?.[i] ?? { ok: false, error: 'no answer from worker' };
      b.ctl[i].resolve?.(r);
    }
    try {
      this.sink.onReply(this, b.entries, b.ops, reply.buf);
    } catch (err) {
      // A bug here must not become an unhandled rejection that takes the process down.
      process.emitWarning(`filter worker ${this.index}: could not process a batch reply: ${err instanceof Error ? err.stack : String(err)}`);
    } finally {
      this.recycle(b);
    }
  }

  private recycle(b: InFlightBatch): void {
    b.clear();
    this.spare.push(b);
  }

  /** The thread is gone. Answers it finished are applied; the batch it was running gets the
   * failure handling (policies, quarantine accounting); batches it never started go again, as
   * they were, to the replacement thread. */
  private onError(err: unknown, channel: FilterChannel | null): void {
    if (channel !== null && !this.closed) {
      while (channel.hasReply()) this.answer(this.flying.shift()!, channel.takeReply());
    }
    if (this.controller.signal.aborted) this.controller = new AbortController();
    const culprit = this.abortGen;
    const reason = culprit !== 0 ? this.abortReason : `filter worker failed: ${err instanceof Error ? err.message : String(err)}`;
    this.abortGen = 0;
    this.abortReason = '';
    this.watch[Watch.Call] = 0;
    const flying = this.flying.splice(0);
    if (this.closed) {
      for (const b of flying) for (const c of b.ctl) c.resolve?.({ ok: false, error: 'filter runtime closed' });
      return;
    }
    // Everything the thread held must be sent again.
    this.epoch++;
    this.needsResync = true;
    const started = channel !== null ? channel.startedCount() : 0;
    const lost: InFlightBatch[] = [];
    const unsentEntries: StreamEntry[] = [];
    const unsentOps: number[] = [];
    const unsentAnswers: CallPayload[] = [];
    const unsentCtl: PendingControl[] = [];
    for (const b of flying) {
      if (channel !== null && ((started - b.seq) | 0) < 0) {
        for (let i = 0; i < b.entries.length; i++) {
          unsentEntries.push(b.entries[i]);
          unsentOps.push(b.ops[i]);
          unsentAnswers.push(b.answers[i]);
        }
        for (const c of b.ctl) unsentCtl.push(c);
        this.recycle(b);
      } else {
        lost.push(b);
      }
    }
    this.entries = unsentEntries.concat(this.entries);
    this.urgent = this.entries.length; // sent again at once, done calls with the rest
    this.ops = unsentOps.concat(this.ops);
    this.answers = unsentAnswers.concat(this.answers);
    const requeue: PendingControl[] = [];
    for (const b of lost) {
      for (const c of b.ctl) {
        // A sniff that ran past its deadline is answered (as a failure) rather than sent again.
        if (c.op.op === 'load' && c.op.spec.id === culprit) c.resolve?.({ ok: false, error: `while starting: ${reason}` });
        else if (c.op.op === 'sniff' && c.op.genId === culprit) c.resolve?.({ ok: false, error: reason });
        else if (c.resolve !== null) requeue.push(c);
      }
    }
    this.ctl = requeue.concat(unsentCtl, this.ctl);
    try {
      for (const b of lost) this.sink.onFailure(this, b.entries, b.ops, b.answers, culprit, reason);
    } finally {
      for (const b of lost) this.recycle(b);
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
    if (this.idleCheck !== null) clearInterval(this.idleCheck);
    if (this.doneTimer !== null) clearTimeout(this.doneTimer);
    for (const t of this.ticks.values()) clearInterval(t);
    this.ticks.clear();
    for (const c of this.ctl) c.resolve?.({ ok: false, error: 'filter runtime closed' });
    this.ctl.length = 0;
    if (this.piscina !== null) await this.piscina.destroy();
    this.channel?.close();
  }
}
