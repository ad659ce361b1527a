// `workers: 0`: filters run on the event-loop thread. The FilterWorker that serves a worker
// thread's channel (worker.ts) runs each batch synchronously when the pool sends it, so the
// pool, the wire format, the generations and the failure policies are the same code either
// way; only the crossing is gone (no thread wake-up, no waiting for a CPU: on a 2-core box a
// crossing costs more than the filter, docs/memory.md and the README's benchmark section).
// The price is isolation: a call cannot be interrupted on the thread it blocks, so `deadline`
// is not enforced and a filter that loops hangs the proxy. Traps are still caught (the
// instance is recreated and the failure policy applied) and `max_memory` still recycles.

import type { ChannelReply, FilterChannel } from './channel.js';
import { SLOTS } from './channel.js';
import { BinReader, BinWriter, type ControlOp } from './wire.js';
import { FilterWorker, type WorkerBootData } from './worker.js';

export class InlineChannel implements FilterChannel {
  private readonly worker: FilterWorker;
  /** One request and one reply buffer per slot, as a thread's channel has (a reply stays
   * valid until read). */
  private readonly writers: BinWriter[] = [];
  private readonly outs: BinWriter[] = [];
  private readonly replies: ChannelReply[] = [];
  private readonly reader = new BinReader(new ArrayBuffer(0), 0);
  /** Batches started, batches that ran to the end, answers read (wrapping int32). A batch
   * that threw counts as started, not done: the pool gives it the failure handling. */
  private started = 0;
  private done = 0;
  private read = 0;
  private waiting = false;
  private closed = false;
  private readonly woken = (): void => {
    this.waiting = false;
    if (!this.closed) this.onReply();
  };

  constructor(private readonly onReply: () => void, boot: WorkerBootData) {
    this.worker = new FilterWorker(boot);
    for (let i = 0; i < SLOTS; i++) {
      this.writers.push(new BinWriter(64 * 1024));
      this.outs.push(new BinWriter(64 * 1024));
      this.replies.push({ ctl: null, buf: new ArrayBuffer(0), len: 0 });
    }
  }

  get unanswered(): number {
    return (this.started - this.read) | 0;
  }

  get nextBatch(): number {
    return (this.started + 1) | 0;
  }

  /** Never asleep. */
  get workerBusy(): boolean {
    return true;
  }

  startBatch(): BinWriter {
    const w = this.writers[this.started & (SLOTS - 1)];
    w.reset(w.arrayBuffer, 0);
    return w;
  }

  /** Runs the batch now. A throw is a host bug (filter faults are handled per call): the pool
   * treats it like a dead worker thread. */
  send(ctl: ControlOp[] | null, _stop: boolean): void {
    const slot = this.started & (SLOTS - 1);
    this.started = (this.started + 1) | 0;
    const w = this.writers[slot];
    const out = this.outs[slot];
    out.reset(out.arrayBuffer, 0);
    let reader: BinReader | null = null;
    if (w.pos > 0) {
      reader = this.reader;
      reader.reset(w.arrayBuffer, w.pos);
    }
    const results = this.worker.handle(ctl, reader, out);
    const reply = this.replies[slot];
    reply.ctl = results;
    reply.buf = out.arrayBuffer;
    reply.len = out.pos;
    this.done = this.started;
  }

  /** The answer is in already; it is applied once the current callback is over, as a
   * thread's answer would be, never from inside the code that sent the batch. */
  watchReplies(): void {
    if (this.waiting || this.closed || !this.hasReply()) return;
    this.waiting = true;
    queueMicrotask(this.woken);
  }

  hasReply(): boolean {
    return ((this.done - this.read) | 0) > 0;
  }

  takeReply(): ChannelReply {
    const reply = this.replies[this.read & (SLOTS - 1)];
    this.read = (this.read + 1) | 0;
    return reply;
  }

  startedCount(): number {
    return this.started;
  }

  close(): void {
    this.closed = true;
  }
}
