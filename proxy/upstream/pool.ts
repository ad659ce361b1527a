// Keep-alive connection pool for one upstream endpoint (host:port). Idle connections are a
// LIFO stack (the warmest socket first; the coldest ones age out at the bottom), requests
// beyond maxConnections wait in a FIFO queue of at most maxPending.
//
// Synchronous answers: request() may call handler.onUpstreamError before it returns —
// 'overflow' when the queue is full, and 'connect' after close()/destroy(). The request
// path must expect a callback from inside request() (it does: it checks its own state
// after the call). Everything else arrives asynchronously from socket events.
import { UpstreamError } from './types.js';
import type { EndpointPoolOptions, PoolStats, UpstreamExchange, UpstreamHandler, UpstreamRequestHead } from './types.js';
import { Http1Connection, Http1Exchange, EX_PENDING, EX_DONE } from './connection.js';
import type { ConnectionOwner } from './connection.js';

const DEFAULT_MAX_RESPONSE_HEADER_BYTES = 64 * 1024;

export class EndpointPool implements ConnectionOwner {
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly maxIdle: number;
  private readonly maxConnections: number;
  private readonly maxPending: number;
  private readonly maxHeaderBytes: number;

  private readonly all = new Set<Http1Connection>();
  /** LIFO: push/pop at the end; index 0 is the connection idle the longest. */
  private readonly idle: Http1Connection[] = [];
  /** FIFO with a moving head; aborted entries stay until dequeued (state EX_DONE). */
  private queue: (Http1Exchange | undefined)[] = [];
  private queueHead = 0;
  private pendingCount = 0;
  private created = 0;
  private closing = false;
  private destroyed = false;
  private idleTimer: NodeJS.Timeout | null = null;
  /** When the armed idle timer fires (ms epoch). */
  private idleTimerAt = 0;
  private readonly sweepIdleBound: () => void;

  constructor(
    readonly host: string,
    readonly port: number,
    opts: EndpointPoolOptions,
  ) {
    this.connectTimeoutMs = opts.connectTimeoutMs;
    this.idleTimeoutMs = opts.idleTimeoutMs;
    this.maxIdle = opts.maxIdle;
    this.maxConnections = Math.max(1, opts.maxConnections);
    this.maxPending = Math.max(0, opts.maxPending);
    this.maxHeaderBytes = opts.maxResponseHeaderBytes ?? DEFAULT_MAX_RESPONSE_HEADER_BYTES;
    this.sweepIdleBound = () => this.sweepIdle();
  }

  /** Start an exchange. May call handler.onUpstreamError synchronously ('overflow', or
   * 'connect' once the pool is closed); see the file comment. */
  request(head: UpstreamRequestHead, handler: UpstreamHandler): UpstreamExchange {
    const ex = new Http1Exchange(this, head, handler);
    if (this.closing) {
      ex.state = EX_DONE;
      handler.onUpstreamError(new UpstreamError('connect', 'endpoint pool is closed', false));
      return ex;
    }
    const conn = this.idle.pop();
    if (conn !== undefined) {
      conn.assign(ex);
    } else if (this.all.size < this.maxConnections) {
      this.open().assign(ex);
    } else if (this.pendingCount < this.maxPending) {
      this.enqueue(ex);
    } else {
      ex.state = EX_DONE;
      handler.onUpstreamError(
        new UpstreamError('overflow', `upstream ${this.host}:${this.port}: ${this.all.size} connections busy and ${this.pendingCount} requests queued`, false),
      );
    }
    return ex;
  }

  stats(): PoolStats {
    const open = this.all.size;
    const idle = this.idle.length;
    return { open, idle, busy: open - idle, pending: this.pendingCount, created: this.created };
  }

  /** Stop taking requests: idle connections close now, queued and in-flight exchanges
   * finish, and each connection closes when its last exchange is done. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.clearIdleTimer();
    const idle = this.idle.splice(0);
    for (let i = 0; i < idle.length; i++) idle[i]!.close();
  }

  /** Close everything now. In-flight exchanges get 'reset', queued ones 'connect'. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.closing = true;
    this.clearIdleTimer();
    const queued = this.queue;
    const from = this.queueHead;
    this.queue = [];
    this.queueHead = 0;
    this.pendingCount = 0;
    for (let i = from; i < queued.length; i++) {
      const ex = queued[i];
      if (ex === undefined || ex.state !== EX_PENDING) continue;
      ex.state = EX_DONE;
      ex.handler.onUpstreamError(new UpstreamError('connect', 'endpoint pool destroyed', false));
    }
    this.idle.length = 0;
    for (const conn of Array.from(this.all)) conn.destroy('endpoint pool destroyed');
  }

  // ── ConnectionOwner ──
  connectionFree(conn: Http1Connection): void {
    const next = this.dequeue();
    if (next !== null) {
      conn.assign(next);
      return;
    }
    if (this.closing || this.idle.length >= this.maxIdle) {
      conn.close();
      return;
    }
    const now = Date.now();
    const deadline = now + this.idleLifetime(conn.keepAliveHintMs);
    conn.idleDeadline = deadline;
    this.idle.push(conn);
    if (this.idleTimer === null) this.armIdleTimer(deadline, now);
    else if (deadline < this.idleTimerAt) {
      clearTimeout(this.idleTimer);
      this.armIdleTimer(deadline, now);
    }
  }

  /** How long an idle connection is kept: idleTimeoutMs, but shorter than the upstream's own
   * Keep-Alive timeout hint, so that we close first instead of racing its close. */
  private idleLifetime(hintMs: number): number {
    if (hintMs < 0) return this.idleTimeoutMs;
    const beforeUpstream = Math.max(hintMs - 1000, hintMs / 2);
    return beforeUpstream < this.idleTimeoutMs ? beforeUpstream : this.idleTimeoutMs;
  }

  connectionClosed(conn: Http1Connection, retry: Http1Exchange | null): void {
    if (!this.all.delete(conn)) return;
    const i = this.idle.lastIndexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    if (retry !== null) {
      if (this.destroyed) {
        retry.state = EX_DONE;
        retry.handler.onUpstreamError(new UpstreamError('reset', 'endpoint pool destroyed', false));
      } else {
        this.open().assign(retry);
      }
    }
    // A slot opened: start the next queued exchange on a new connection.
    while (this.pendingCount > 0 && this.all.size < this.maxConnections && !this.destroyed) {
      const next = this.dequeue();
      if (next === null) break;
      this.open().assign(next);
    }
  }

  exchangeAborted(_ex: Http1Exchange): void {
    // Lazy removal: the queue skips it; only the count changes now.
    this.pendingCount--;
    // Keep the queue from growing without bound under steady aborts.
    if (this.queue.length - this.queueHead > 2 * this.maxPending + 64) this.compactQueue();
  }

  // ── internals ──
  private open(): Http1Connection {
    const conn = new Http1Connection(this, this.host, this.port, this.connectTimeoutMs, this.maxHeaderBytes);
    this.all.add(conn);
    this.created++;
    return conn;
  }

  private enqueue(ex: Http1Exchange): void {
    this.queue.push(ex);
    this.pendingCount++;
  }

  private dequeue(): Http1Exchange | null {
    if (this.pendingCount === 0) return null;
    const q = this.queue;
    while (this.queueHead < q.length) {
      const ex = q[this.queueHead];
      q[this.queueHead++] = undefined;
      if (ex !== undefined && ex.state === EX_PENDING) {
        this.pendingCount--;
        if (this.queueHead === q.length) {
          q.length = 0;
          this.queueHead = 0;
        }
        return ex;
      }
    }
    q.length = 0;
    this.queueHead = 0;
    return null;
  }

  private compactQueue(): void {
    const live: (Http1Exchange | undefined)[] = [];
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const ex = this.queue[i];
      if (ex !== undefined && ex.state === EX_PENDING) live.push(ex);
    }
    this.queue = live;
    this.queueHead = 0;
  }

  private armIdleTimer(at: number, now: number): void {
    this.idleTimerAt = at;
    this.idleTimer = setTimeout(this.sweepIdleBound, Math.max(1, at - now));
    this.idleTimer.unref();
  }

  private clearIdleTimer(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  /** Close idle connections past their deadline, then re-arm for the earliest remaining one.
   * Deadlines differ per connection (Keep-Alive hints), so the whole (short) list is scanned. */
  private sweepIdle(): void {
    this.idleTimer = null;
    const now = Date.now();
    const idle = this.idle;
    let expired: Http1Connection[] | null = null;
    let next = Infinity;
    let w = 0;
    for (let r = 0; r < idle.length; r++) {
      const conn = idle[r]!;
      if (conn.idleDeadline <= now) {
        (expired ??= []).push(conn);
        continue;
      }
      if (conn.idleDeadline < next) next = conn.idleDeadline;
      idle[w++] = conn;
    }
    idle.length = w;
    if (expired !== null) for (let i = 0; i < expired.length; i++) expired[i]!.close();
    if (idle.length > 0) this.armIdleTimer(next, now);
  }
}
