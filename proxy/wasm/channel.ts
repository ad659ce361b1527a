// The batch channel between the main thread and one filter worker. Why not one piscina task
// per batch: piscina's task bookkeeping, the structured-clone message and the promise cost
// ~20 µs of main-thread CPU and ~56 µs of latency per round trip on this machine; a shared
// region each way, Atomics.wait in the worker and Atomics.waitAsync on the main thread cost
// ~7 µs and ~14 µs (a bare round-trip microbenchmark; with one call in flight,
// `node dist/bench/filter-calls.js 20000 1` went from 62–108 to 27–45 µs). Piscina still owns the thread: the worker
// serves the channel inside one long-running task, so a deadline abort or a crash ends that
// task and piscina replaces the thread, exactly as before.
//
// Protocol: up to SLOTS batches in flight, answered in order. Batch n (counting from 0) uses
// slot n % SLOTS: its request region and length/flag cells, and the same slot's reply region.
// The main thread writes a batch into its slot, bumps RequestSeq and wakes the worker if it
// sleeps; the worker takes batches in order, marks each in StartedSeq before running it,
// writes the answer into the slot's reply region, bumps ReplySeq and notifies. A slot is
// written again only after the main thread has read its answer (at most SLOTS unread).
// Why two: with one, calls that arrive while a batch runs wait for its answer to reach the
// main thread before they can go; with two, the next batch is already there when the worker
// finishes one. The second goes only to a busy worker (pool.ts): waking a sleeping one costs
// the main thread ~7 µs on this VM (Atomics.notify), so calls for a worker that already
// answered wait for that answer and leave with it. (On this 2-core VM one and two slots
// measured the same throughput: the worker is rarely still busy when the next batch forms.)
// What does not fit in the shared regions (control ops with a WebAssembly.Module, their
// results, a batch larger than its region) travels as a message on `port`, flagged in the
// slot's cells and read synchronously with receiveMessageOnPort (messages keep batch order).

import { type MessagePort, MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { BinReader, BinWriter, type ControlOp, type ControlResult } from './wire.js';

/** Batches in flight at most (a power of two: slots are picked with a mask). */
export const SLOTS = 2;

/** Int32 slots of the `cells` buffer: the counters, then SlotCell.Count cells per slot. */
const Cell = { RequestSeq: 0, ReplySeq: 1, WorkerSleeping: 2, StartedSeq: 3, FirstSlot: 4 } as const;
const SlotCell = { RequestLen: 0, RequestFlags: 1, ReplyLen: 2, ReplyFlags: 3, Count: 4 } as const;
const CELL_COUNT = Cell.FirstSlot + SLOTS * SlotCell.Count;
/** RequestFlags / ReplyFlags bits. Port: a port message goes with this batch. Stop: end the serve task. */
const Flag = { Port: 1, Stop: 2 } as const;

/** Bytes of each shared region; a larger batch (bodies, big http call answers) goes by port. */
const REGION_BYTES = 256 * 1024;

/** What the worker needs to serve a channel; sent with the first serve task of a thread. */
export interface ChannelInit {
  cells: SharedArrayBuffer;
  /** One region per slot each way. */
  requests: SharedArrayBuffer[];
  replies: SharedArrayBuffer[];
  port: MessagePort;
}

/** A serve task: `init` for a new thread, null to resume the channel the thread already has. */
export interface ServeTask {
  init: ChannelInit | null;
}

interface RequestMessage {
  ctl: ControlOp[] | null;
  /** The batch, when it outgrew the shared region. */
  buf: ArrayBuffer | null;
}

interface ReplyMessage {
  ctl: ControlResult[] | null;
  buf: ArrayBuffer | null;
}

/** A reply as the main thread reads it: valid until its slot is sent again. */
export interface ChannelReply {
  ctl: ControlResult[] | null;
  buf: ArrayBufferLike;
  len: number;
}

/** What the pool (pool.ts) needs from the way its batches reach a FilterWorker: a worker
 * thread (BatchChannel) or, with `workers: 0`, the event-loop thread itself (InlineChannel). */
export interface FilterChannel {
  /** Batches sent whose answer has not been read. */
  readonly unanswered: number;
  /** The number the next batch will get when sent. */
  readonly nextBatch: number;
  /** A second batch can go without a wake-up. */
  readonly workerBusy: boolean;
  startBatch(): BinWriter;
  send(ctl: ControlOp[] | null, stop: boolean): void;
  watchReplies(): void;
  hasReply(): boolean;
  takeReply(): ChannelReply;
  startedCount(): number;
  close(): void;
}

/** The private buffer a writer moved to when the batch did not fit in `region`; null if it fits. */
function outgrown(w: BinWriter, region: SharedArrayBuffer): ArrayBuffer | null {
  const ab = w.arrayBuffer;
  return ab === region ? null : (ab as ArrayBuffer);
}

function slotCell(slot: number, cell: number): number {
  return Cell.FirstSlot + slot * SlotCell.Count + cell;
}

/** Main-thread end. Batches are numbered in the order they are sent; every counter is an
 * int32 that wraps (a busy proxy sends 2^31 batches in a few days), so they are compared by
 * difference, and a slot is `count & (SLOTS - 1)`. */
export class BatchChannel implements FilterChannel {
  readonly init: ChannelInit;
  /** One writer per slot, straight into its shared request region (it grows into a private
   * buffer when a batch does not fit, which then travels by port). */
  private readonly writers: BinWriter[] = [];
  private readonly cells: Int32Array;
  private readonly port: MessagePort;
  /** Batches sent, and answers read (wrapping int32). */
  private sent = 0;
  private read = 0;
  private readonly reply: ChannelReply = { ctl: null, buf: new ArrayBuffer(0), len: 0 };
  private waiting = false;
  private closed = false;
  /** waitAsync wake-ups armed so far (diagnostics and tests). */
  wakeupsArmed = 0;
  private readonly woken = (): void => {
    this.waiting = false;
    // A channel whose thread died can still be woken: its owner has moved on.
    if (!this.closed) this.onReply();
  };

  /** `onReply` runs (asynchronously) when an answer is in after watchReplies(). */
  constructor(private readonly onReply: () => void) {
    const cells = new SharedArrayBuffer(CELL_COUNT * 4);
    const requests: SharedArrayBuffer[] = [];
    const replies: SharedArrayBuffer[] = [];
    for (let i = 0; i < SLOTS; i++) {
      requests.push(new SharedArrayBuffer(REGION_BYTES));
      replies.push(new SharedArrayBuffer(REGION_BYTES));
      this.writers.push(new BinWriter(requests[i]));
    }
    const { port1, port2 } = new MessageChannel();
    this.cells = new Int32Array(cells);
    this.port = port1;
    this.init = { cells, requests, replies, port: port2 };
  }

  /** Batches sent whose answer has not been read. */
  get unanswered(): number {
    return (this.sent - this.read) | 0;
  }

  /** The number the next batch will get when sent (compare with startedCount()). */
  get nextBatch(): number {
    return (this.sent + 1) | 0;
  }

  /** Position the next batch's writer at the start of its slot (call only when
   * `unanswered < SLOTS`). */
  startBatch(): BinWriter {
    const slot = this.sent & (SLOTS - 1);
    const w = this.writers[slot];
    w.reset(this.init.requests[slot], 0);
    return w;
  }

  /** Hand the written batch (and any control ops) to the worker. `stop` ends its serve task
   * after this batch. */
  send(ctl: ControlOp[] | null, stop: boolean): void {
    const slot = this.sent & (SLOTS - 1);
    const w = this.writers[slot];
    const cells = this.cells;
    let flags = stop ? Flag.Stop : 0;
    const grown = outgrown(w, this.init.requests[slot]);
    if (ctl !== null || grown !== null) {
      const msg: RequestMessage = { ctl, buf: grown };
      this.port.postMessage(msg, msg.buf !== null ? [msg.buf] : undefined);
      flags |= Flag.Port;
    }
    cells[slotCell(slot, SlotCell.RequestLen)] = w.pos;
    cells[slotCell(slot, SlotCell.RequestFlags)] = flags;
    this.sent = (this.sent + 1) | 0;
    Atomics.store(cells, Cell.RequestSeq, this.sent);
    // Only a sleeping worker needs the (expensive) futex wake; a busy one looks again first.
    if (Atomics.load(cells, Cell.WorkerSleeping) === 1) Atomics.notify(cells, Cell.RequestSeq, 1);
  }

  /** Have `onReply` called once an answer not read yet is in (soon, if one is in already).
   * One waiter at a time: calling again before it fired does nothing. */
  watchReplies(): void {
    if (this.waiting || this.closed) return;
    this.waiting = true;
    this.wakeupsArmed++;
    const r = Atomics.waitAsync(this.cells, Cell.ReplySeq, this.read);
    if (r.async) r.value.then(this.woken);
    else queueMicrotask(this.woken);
  }

  /** The worker is running a batch (or about to look for the next one), not asleep. */
  get workerBusy(): boolean {
    return Atomics.load(this.cells, Cell.WorkerSleeping) === 0;
  }

  /** Whether the answer to the oldest unread batch is in. */
  hasReply(): boolean {
    return this.unanswered > 0 && ((Atomics.load(this.cells, Cell.ReplySeq) - this.read) | 0) > 0;
  }

  /** The number of the last batch the worker started (the one it runs, if any). */
  startedCount(): number {
    return Atomics.load(this.cells, Cell.StartedSeq);
  }

  /** The answer to the oldest unread batch; call after `hasReply()` said it is in. */
  takeReply(): ChannelReply {
    const cells = this.cells;
    const slot = this.read & (SLOTS - 1);
    this.read = (this.read + 1) | 0;
    const out = this.reply;
    out.ctl = null;
    out.buf = this.init.replies[slot];
    out.len = cells[slotCell(slot, SlotCell.ReplyLen)];
    if ((cells[slotCell(slot, SlotCell.ReplyFlags)] & Flag.Port) !== 0) {
      const msg = receiveMessageOnPort(this.port)?.message as ReplyMessage | undefined;
      if (msg !== undefined) {
        out.ctl = msg.ctl;
        if (msg.buf !== null) out.buf = msg.buf;
      }
    }
    return out;
  }

  close(): void {
    this.closed = true;
    this.port.close();
  }
}

/** Worker end: what runs one batch. `payload` holds `len` bytes of the encoded batch; the answer
 * goes into `out`. Returns the control results (null when there were no control ops). */
export type BatchHandler = (ctl: ControlOp[] | null, reader: BinReader | null, out: BinWriter) => ControlResult[] | null;

interface WorkerEnd {
  init: ChannelInit;
  cells: Int32Array;
  /** Per slot: the reply writer and the request reader (each keeps its views). */
  outs: BinWriter[];
  readers: BinReader[];
  /** Batches taken so far (wrapping int32, like the main thread's counters). */
  seen: number;
}

/** The thread's channel, kept across serve tasks (a resumed task finds it here). */
let current: WorkerEnd | null = null;

/** Serve batches until the main thread says stop. Runs inside a piscina task. */
export function serveChannel(task: ServeTask, handle: BatchHandler): void {
  if (task.init !== null) {
    const init = task.init;
    current = {
      init,
      cells: new Int32Array(init.cells),
      outs: init.replies.map((r) => new BinWriter(r)),
      readers: init.requests.map((r) => new BinReader(r, r.byteLength)),
      seen: 0,
    };
  }
  const end = current;
  if (end === null) throw new Error('filter worker: serve task without a channel');
  const cells = end.cells;
  for (;;) {
    if (Atomics.load(cells, Cell.RequestSeq) === end.seen) {
      // Announce the sleep, then look again: the main thread bumps the sequence before it
      // reads the flag, so one of the two sides always sees the other (no lost wake-up).
      Atomics.store(cells, Cell.WorkerSleeping, 1);
      if (Atomics.load(cells, Cell.RequestSeq) === end.seen) Atomics.wait(cells, Cell.RequestSeq, end.seen);
      Atomics.store(cells, Cell.WorkerSleeping, 0);
      continue;
    }
    const slot = end.seen & (SLOTS - 1);
    end.seen = (end.seen + 1) | 0;
    // Which batch was running if this thread dies now: the main thread sends the later ones again.
    Atomics.store(cells, Cell.StartedSeq, end.seen);
    const flags = cells[slotCell(slot, SlotCell.RequestFlags)];
    const len = cells[slotCell(slot, SlotCell.RequestLen)];
    let ctl: ControlOp[] | null = null;
    let payload: ArrayBufferLike = end.init.requests[slot];
    if ((flags & Flag.Port) !== 0) {
      const msg = receiveMessageOnPort(end.init.port)?.message as RequestMessage | undefined;
      if (msg !== undefined) {
        ctl = msg.ctl;
        if (msg.buf !== null) payload = msg.buf;
      }
    }
    const region = end.init.replies[slot];
    const out = end.outs[slot];
    out.reset(region, 0);
    let reader: BinReader | null = null;
    if (len > 0) {
      reader = end.readers[slot];
      reader.reset(payload, len);
    }
    const results = handle(ctl, reader, out);
    let replyFlags = 0;
    const grown = outgrown(out, region);
    if (results !== null || grown !== null) {
      const msg: ReplyMessage = { ctl: results, buf: grown };
      end.init.port.postMessage(msg, msg.buf !== null ? [msg.buf] : undefined);
      replyFlags |= Flag.Port;
    }
    cells[slotCell(slot, SlotCell.ReplyLen)] = out.pos;
    cells[slotCell(slot, SlotCell.ReplyFlags)] = replyFlags;
    Atomics.store(cells, Cell.ReplySeq, end.seen);
    Atomics.notify(cells, Cell.ReplySeq);
    if ((flags & Flag.Stop) !== 0) return;
  }
}
