// The batch channel between the main thread and one filter worker. Why not one piscina task
// per batch: piscina's task bookkeeping, the structured-clone message and the promise cost
// ~20 µs of main-thread CPU and ~56 µs of latency per round trip on this machine; a shared
// region each way, Atomics.wait in the worker and Atomics.waitAsync on the main thread cost
// ~7 µs and ~14 µs (a bare round-trip microbenchmark; with one call in flight,
// `node dist/bench/filter-calls.js 20000 1` went from 62–108 to 27–45 µs). Piscina still owns the thread: the worker
// serves the channel inside one long-running task, so a deadline abort or a crash ends that
// task and piscina replaces the thread, exactly as before.
//
// Protocol: one batch in flight at a time. The main thread writes a batch into `request`,
// bumps RequestSeq and wakes the worker if it sleeps; the worker writes its answer into
// `reply`, bumps ReplySeq and notifies. What does not fit in the shared regions (control ops
// with a WebAssembly.Module, their results, a batch larger than the region) travels as a
// message on `port`, flagged in the cells and read synchronously with receiveMessageOnPort.

import { type MessagePort, MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { BinReader, BinWriter, type ControlOp, type ControlResult } from './wire.js';

/** Int32 slots of the `cells` buffer. */
const Cell = { RequestSeq: 0, ReplySeq: 1, WorkerSleeping: 2, RequestLen: 3, ReplyLen: 4, RequestFlags: 5, ReplyFlags: 6, Slots: 8 } as const;
/** RequestFlags / ReplyFlags bits. Port: a port message goes with this batch. Stop: end the serve task. */
const Flag = { Port: 1, Stop: 2 } as const;

/** Bytes of each shared region; a larger batch (bodies, big http call answers) goes by port. */
const REGION_BYTES = 256 * 1024;

/** What the worker needs to serve a channel; sent with the first serve task of a thread. */
export interface ChannelInit {
  cells: SharedArrayBuffer;
  request: SharedArrayBuffer;
  reply: SharedArrayBuffer;
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

/** A reply as the main thread reads it: valid until the next send. */
export interface ChannelReply {
  ctl: ControlResult[] | null;
  buf: ArrayBufferLike;
  len: number;
}

/** The private buffer a writer moved to when the batch did not fit in `region`; null if it fits. */
function outgrown(w: BinWriter, region: SharedArrayBuffer): ArrayBuffer | null {
  const ab = w.arrayBuffer;
  return ab === region ? null : (ab as ArrayBuffer);
}

/** Main-thread end. */
export class BatchChannel {
  readonly init: ChannelInit;
  /** Writes go straight into the shared request region (it grows into a private buffer when a
   * batch does not fit, which then travels by port). */
  private readonly writer: BinWriter;
  private readonly cells: Int32Array;
  private readonly port: MessagePort;
  private replySeq = 0;
  private readonly reply: ChannelReply = { ctl: null, buf: new ArrayBuffer(0), len: 0 };

  constructor() {
    const cells = new SharedArrayBuffer(Cell.Slots * 4);
    const request = new SharedArrayBuffer(REGION_BYTES);
    const reply = new SharedArrayBuffer(REGION_BYTES);
    const { port1, port2 } = new MessageChannel();
    this.cells = new Int32Array(cells);
    this.port = port1;
    this.init = { cells, request, reply, port: port2 };
    this.writer = new BinWriter(request);
  }

  /** Position the writer at the start of the request region. */
  startBatch(): BinWriter {
    this.writer.reset(this.init.request, 0);
    return this.writer;
  }

  /** Hand the written batch (and any control ops) to the worker. `stop` ends its serve task
   * after this batch. */
  send(ctl: ControlOp[] | null, stop: boolean): void {
    const w = this.writer;
    const cells = this.cells;
    let flags = stop ? Flag.Stop : 0;
    const grown = outgrown(w, this.init.request);
    if (ctl !== null || grown !== null) {
      const msg: RequestMessage = { ctl, buf: grown };
      this.port.postMessage(msg, msg.buf !== null ? [msg.buf] : undefined);
      flags |= Flag.Port;
    }
    cells[Cell.RequestLen] = w.pos;
    cells[Cell.RequestFlags] = flags;
    Atomics.add(cells, Cell.RequestSeq, 1);
    // Only a sleeping worker needs the (expensive) futex wake; a busy one looks again first.
    if (Atomics.load(cells, Cell.WorkerSleeping) === 1) Atomics.notify(cells, Cell.RequestSeq, 1);
  }

  /** Calls `onReply` (once) when the answer to the batch just sent is in. */
  awaitReply(onReply: () => void): void {
    const r = Atomics.waitAsync(this.cells, Cell.ReplySeq, this.replySeq);
    if (r.async) r.value.then(onReply);
    else queueMicrotask(onReply);
  }

  /** Whether the answer to the last batch is in. */
  hasReply(): boolean {
    return Atomics.load(this.cells, Cell.ReplySeq) !== this.replySeq;
  }

  /** The answer to the last batch; call once per batch, after `awaitReply` fired. */
  takeReply(): ChannelReply {
    const cells = this.cells;
    this.replySeq = Atomics.load(cells, Cell.ReplySeq);
    const out = this.reply;
    out.ctl = null;
    out.buf = this.init.reply;
    out.len = cells[Cell.ReplyLen];
    if ((cells[Cell.ReplyFlags] & Flag.Port) !== 0) {
      const msg = receiveMessageOnPort(this.port)?.message as ReplyMessage | undefined;
      if (msg !== undefined) {
        out.ctl = msg.ctl;
        if (msg.buf !== null) out.buf = msg.buf;
      }
    }
    return out;
  }

  close(): void {
    this.port.close();
  }
}

/** Worker end: what runs one batch. `payload` holds `len` bytes of the encoded batch; the answer
 * goes into `out`. Returns the control results (null when there were no control ops). */
export type BatchHandler = (ctl: ControlOp[] | null, reader: BinReader | null, out: BinWriter) => ControlResult[] | null;

interface WorkerEnd {
  init: ChannelInit;
  cells: Int32Array;
  out: BinWriter;
  reader: BinReader | null;
  seen: number;
}

/** The thread's channel, kept across serve tasks (a resumed task finds it here). */
let current: WorkerEnd | null = null;

/** Serve batches until the main thread says stop. Runs inside a piscina task. */
export function serveChannel(task: ServeTask, handle: BatchHandler): void {
  if (task.init !== null) {
    current = { init: task.init, cells: new Int32Array(task.init.cells), out: new BinWriter(task.init.reply), reader: null, seen: 0 };
  }
  const end = current;
  if (end === null) throw new Error('filter worker: serve task without a channel');
  const cells = end.cells;
  for (;;) {
    let seq = Atomics.load(cells, Cell.RequestSeq);
    if (seq === end.seen) {
      // Announce the sleep, then look again: the main thread bumps the sequence before it
      // reads the flag, so one of the two sides always sees the other (no lost wake-up).
      Atomics.store(cells, Cell.WorkerSleeping, 1);
      if (Atomics.load(cells, Cell.RequestSeq) === end.seen) Atomics.wait(cells, Cell.RequestSeq, end.seen);
      Atomics.store(cells, Cell.WorkerSleeping, 0);
      continue;
    }
    end.seen = seq;
    const flags = cells[Cell.RequestFlags];
    const len = cells[Cell.RequestLen];
    let ctl: ControlOp[] | null = null;
    let payload: ArrayBufferLike = end.init.request;
    if ((flags & Flag.Port) !== 0) {
      const msg = receiveMessageOnPort(end.init.port)?.message as RequestMessage | undefined;
      if (msg !== undefined) {
        ctl = msg.ctl;
        if (msg.buf !== null) payload = msg.buf;
      }
    }
    const out = end.out;
    out.reset(end.init.reply, 0);
    let reader: BinReader | null = null;
    if (len > 0) {
      reader = end.reader ?? (end.reader = new BinReader(payload, len));
      reader.reset(payload, len);
    }
    const results = handle(ctl, reader, out);
    let replyFlags = 0;
    const grown = outgrown(out, end.init.reply);
    if (results !== null || grown !== null) {
      const msg: ReplyMessage = { ctl: results, buf: grown };
      end.init.port.postMessage(msg, msg.buf !== null ? [msg.buf] : undefined);
      replyFlags |= Flag.Port;
    }
    cells[Cell.ReplyLen] = out.pos;
    cells[Cell.ReplyFlags] = replyFlags;
    Atomics.add(cells, Cell.ReplySeq, 1);
    Atomics.notify(cells, Cell.ReplySeq);
    if ((flags & Flag.Stop) !== 0) return;
  }
}
