// One upstream socket's HTTP/1.1 state machine, and the per-request exchange object the
// request path holds. A connection carries one exchange at a time (no pipelining); the pool
// (pool.ts) owns the connections and decides reuse.
//
// What the handler sees (details the contract in types.ts leaves open):
// - Header names and values are latin1 strings both ways (one char per byte, like node:http);
//   request header values are written as given: the request path validated them (no CR/LF).
// - content-length and transfer-encoding are framing, owned here: a caller's are dropped
//   from the request, and the response's are removed from the headers (the length arrives
//   as the contentLength argument). Exception: HEAD and 304 responses keep their
//   content-length header, which describes the representation, and report contentLength 0.
// - Chunk extensions are consumed and dropped; response trailers go to the handler's optional
//   onResponseTrailers, just before onResponseEnd.
// - onResponseData chunks are views of a shared read buffer: copy to keep them.
// - A response that completes before the request body was fully written is delivered, then
//   the connection is closed (the upstream may still expect body bytes); later writeBody
//   calls are ignored and return true.
//
// Threading of a request: pool.request() → Http1Exchange (pending or assigned) →
// Http1Connection.assign() writes the head → writeBody/endBody stream the body →
// socket 'data' → ResponseParser → handler.onResponseHeaders/onResponseData →
// complete: the connection goes back to the pool, then handler.onResponseEnd().
import net from 'node:net';
import { UpstreamError } from './types.js';
import type { UpstreamErrorKind, UpstreamExchange, UpstreamHandler, UpstreamRequestHead } from './types.js';
import {
  ResponseParser,
  PARSE_COMPLETE,
  PARSE_ERROR,
  PARSE_NEED_MORE,
  PARSE_PAUSED,
} from './response-parser.js';
import type { ResponseSink } from './response-parser.js';

/** What a connection tells its pool. */
export interface ConnectionOwner {
  /** The exchange completed and the connection may carry another one. */
  connectionFree(conn: Http1Connection): void;
  /** The connection is gone. `retry` is an exchange to run again on a fresh connection (a
   * reused keep-alive connection died before the upstream answered). */
  connectionClosed(conn: Http1Connection, retry: Http1Exchange | null): void;
  /** A pending exchange was aborted before it got a connection. */
  exchangeAborted(ex: Http1Exchange): void;
}

export const EX_PENDING = 0;
export const EX_ACTIVE = 1;
export const EX_DONE = 2;

/** The request path's handle on one request. Lives from pool.request() to the last handler
 * callback; while no connection is free it queues body chunks itself. */
export class Http1Exchange implements UpstreamExchange {
  state = EX_PENDING;
  conn: Http1Connection | null = null;
  /** Body chunks written before a connection was assigned. */
  queuedBody: Uint8Array[] | null = null;
  /** endBody() was called. */
  bodyEnded = false;
  /** Some body bytes reached a socket (the exchange can no longer be replayed). */
  bodyStarted = false;
  /** writeBody returned false: an onRequestDrain is owed. */
  needDrain = false;
  /** pause() was called before a connection was assigned. */
  pausedEarly = false;
  /** Already retried once on a fresh connection. */
  retried = false;

  constructor(
    readonly owner: ConnectionOwner,
    readonly head: UpstreamRequestHead,
    readonly handler: UpstreamHandler,
  ) {}

  writeBody(chunk: Uint8Array): boolean {
    const conn = this.conn;
    if (conn !== null) return conn.writeBody(this, chunk);
    if (this.state !== EX_PENDING || this.bodyEnded) return true;
    (this.queuedBody ??= []).push(chunk);
    this.needDrain = true;
    return false;
  }

  endBody(): void {
    const conn = this.conn;
    if (conn !== null) return conn.endBody(this);
    this.bodyEnded = true;
  }

  pause(): void {
    const conn = this.conn;
    if (conn !== null) conn.pause(this);
    else this.pausedEarly = true;
  }

  resume(): void {
    const conn = this.conn;
    if (conn !== null) conn.resume(this);
    else this.pausedEarly = false;
  }

  abort(): void {
    const state = this.state;
    if (state === EX_DONE) return;
    this.state = EX_DONE;
    const conn = this.conn;
    if (conn !== null) {
      this.conn = null;
      conn.abortExchange(this);
    } else if (state === EX_PENDING) {
      this.owner.exchangeAborted(this);
    }
  }
}

const C_CONNECTING = 0;
const C_IDLE = 1;
const C_BUSY = 2;
const C_CLOSED = 3;

const CHUNKED_END_FIRST = '0\r\n\r\n';
const CHUNKED_END = '\r\n0\r\n\r\n';

/** Every connection reads into this one buffer (socket `onread`): no Buffer allocation and
 * no stream machinery per read. Safe because reads are handled one at a time and a chunk is
 * only valid during onResponseData (types.ts); the one view kept across reads, the unparsed
 * rest of a chunk while paused, is copied. */
const READ_BUFFER_BYTES = 64 * 1024;
const sharedReadBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

function uncorkSocket(socket: net.Socket): void {
  socket.uncork();
}

/** Methods that define a body: an empty one is announced with content-length: 0. */
function wantsZeroLength(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH';
}

/** Framing is ours: a caller's content-length / transfer-encoding never goes out. */
function isFramingHeader(name: string): boolean {
  const len = name.length;
  if (len !== 14 && len !== 17) return false;
  const lower = name.toLowerCase();
  return lower === 'content-length' || lower === 'transfer-encoding';
}

/** Serialises the request head into one latin1 string. Header names and values are written
 * as given: the request path hands over values it already validated (no CR/LF). */
export function serializeRequestHead(head: UpstreamRequestHead): string {
  let s = head.method + ' ' + head.path + ' HTTP/1.1\r\n';
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    if (isFramingHeader(name)) continue;
    s += name + ': ' + h[i + 1]! + '\r\n';
  }
  const bodyLength = head.bodyLength;
  if (bodyLength > 0) s += 'content-length: ' + bodyLength + '\r\n\r\n';
  else if (bodyLength < 0) s += 'transfer-encoding: chunked\r\n\r\n';
  else if (wantsZeroLength(head.method)) s += 'content-length: 0\r\n\r\n';
  else s += '\r\n';
  return s;
}

export class Http1Connection implements ResponseSink {
  readonly socket: net.Socket;
  /** Set by the pool when the connection joins the idle list: when the idle sweep closes it. */
  idleDeadline = 0;
  /** The upstream's last Keep-Alive timeout hint (ms), or -1. */
  keepAliveHintMs = -1;
  /** Exchanges completed on this connection (> 0: it is a reused keep-alive connection). */
  served = 0;

  private state = C_CONNECTING;
  private exchange: Http1Exchange | null = null;
  private readonly parser: ResponseParser;
  // Request side of the current exchange.
  private requestDone = false;
  private bodyLeft = 0; // content-length bytes still to write
  private chunkedFirst = true;
  // Response side.
  private paused = false;
  private parsing = false;
  /** Unparsed rest of a socket chunk, kept while paused. */
  private stash: Buffer | null = null;
  private stashOffset = 0;
  /** EOF arrived while the stash was still unparsed. */
  private eofPending = false;
  private connectTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly owner: ConnectionOwner,
    host: string,
    port: number,
    connectTimeoutMs: number,
    maxHeaderBytes: number,
  ) {
    this.parser = new ResponseParser(this, maxHeaderBytes);
    const socket = net.connect({
      port,
      host,
      noDelay: true,
      // Idle pooled connections to a peer that vanished are found by the kernel, not by us.
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
      onread: { buffer: sharedReadBuffer, callback: (nread: number, buf: Uint8Array) => this.onRead(nread, buf as Buffer) },
    });
    socket.setNoDelay(true);
    this.socket = socket;
    socket.on('connect', () => this.onConnect());
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: NodeJS.ErrnoException) => this.onSocketError(err));
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.onDrain());
    if (connectTimeoutMs > 0) this.connectTimer = setTimeout(onConnectTimeout, connectTimeoutMs, this);
  }

  get isIdle(): boolean {
    return this.state === C_IDLE;
  }

  get isClosed(): boolean {
    return this.state === C_CLOSED;
  }

  /** Start an exchange on this connection: write the head (and anything queued). */
  assign(ex: Http1Exchange): void {
    this.exchange = ex;
    ex.conn = this;
    ex.state = EX_ACTIVE;
    if (this.state === C_IDLE) this.state = C_BUSY;
    const head = ex.head;
    this.parser.reset(head.method === 'HEAD');
    this.paused = ex.pausedEarly;
    if (this.paused) this.socket.pause();
    this.chunkedFirst = true;
    const socket = this.socket;
    const bodyLength = head.bodyLength;
    const s = serializeRequestHead(head);
    if (bodyLength === 0) {
      this.requestDone = true;
      this.bodyLeft = 0;
      socket.write(s, 'latin1');
      return;
    }
    this.requestDone = false;
    this.bodyLeft = bodyLength;
    // Corked until the end of this tick, so that a body chunk written right after
    // pool.request() leaves in the same packet as the head.
    socket.cork();
    socket.write(s, 'latin1');
    process.nextTick(uncorkSocket, socket);
    const queued = ex.queuedBody;
    if (queued !== null) {
      ex.queuedBody = null;
      let ok = true;
      for (let i = 0; i < queued.length; i++) ok = this.writeBody(ex, queued[i]!);
      if (ok && ex.needDrain) {
        ex.needDrain = false;
        ex.handler.onRequestDrain();
        if (this.exchange !== ex) return;
      }
    }
    if (ex.bodyEnded) this.endBody(ex);
  }

  writeBody(ex: Http1Exchange, chunk: Uint8Array): boolean {
    // A response that finished (or failed) before the body did ends the request side.
    if (this.exchange !== ex || this.requestDone) return true;
    let len = chunk.length;
    if (len === 0) return !this.socket.writableNeedDrain;
    ex.bodyStarted = true;
    const socket = this.socket;
    let ok: boolean;
    if (this.bodyLeft < 0) {
      socket.cork();
      socket.write((this.chunkedFirst ? '' : '\r\n') + len.toString(16) + '\r\n', 'latin1');
      ok = socket.write(chunk);
      socket.uncork();
      this.chunkedFirst = false;
    } else {
      if (len > this.bodyLeft) {
        // More than announced would be read as a second request: never send it.
        len = this.bodyLeft;
        chunk = chunk.subarray(0, len);
      }
      this.bodyLeft -= len;
      ok = len > 0 ? socket.write(chunk) : !socket.writableNeedDrain;
    }
    if (!ok) ex.needDrain = true;
    return ok;
  }

  endBody(ex: Http1Exchange): void {
    if (this.exchange !== ex || this.requestDone) return;
    this.requestDone = true;
    if (this.bodyLeft < 0) {
      this.socket.write(this.chunkedFirst ? CHUNKED_END_FIRST : CHUNKED_END, 'latin1');
    } else if (this.bodyLeft > 0) {
      // The upstream waits for bytes that will never come: this exchange cannot finish.
      this.fail('reset', `request body ended ${this.bodyLeft} bytes short of its content-length`, this.parser.anyBytes);
    }
  }

  pause(ex: Http1Exchange): void {
    if (this.exchange !== ex || this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  resume(ex: Http1Exchange): void {
    if (this.exchange !== ex || !this.paused) return;
    this.paused = false;
    this.socket.resume();
    // Inside a handler callback the running parse loop picks up from here by itself.
    if (this.parsing) return;
    const stash = this.stash;
    if (stash !== null) {
      this.stash = null;
      this.runParser(ex, stash, this.stashOffset);
    }
    if (this.eofPending && this.stash === null && this.exchange === ex && !this.paused) {
      this.eofPending = false;
      this.onEnd();
    }
  }

  /** The exchange was aborted: the connection is destroyed without any callback. */
  abortExchange(ex: Http1Exchange): void {
    if (this.exchange !== ex) return;
    this.exchange = null;
    this.close();
  }

  /** Close this connection now. A current exchange gets a 'reset' error. */
  destroy(message: string): void {
    if (this.state === C_CLOSED) return;
    if (this.exchange === null) this.close();
    else if (this.state === C_CONNECTING) this.fail('connect', message, false);
    else this.fail('reset', message, this.parser.anyBytes);
  }

  // ── ResponseSink ──
  onParsedHead(status: number, reason: string, headers: string[], contentLength: number): boolean {
    const ex = this.exchange;
    if (ex === null) return false;
    ex.handler.onResponseHeaders(status, reason, headers, contentLength);
    return this.exchange === ex && !this.paused;
  }

  onParsedBody(chunk: Buffer): boolean {
    const ex = this.exchange;
    if (ex === null) return false;
    if (!ex.handler.onResponseData(chunk) && this.exchange === ex && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    return this.exchange === ex && !this.paused;
  }

  onParsedTrailers(trailers: string[]): void {
    const ex = this.exchange;
    if (ex !== null) ex.handler.onResponseTrailers?.(trailers);
  }

  // ── socket events ──
  private onConnect(): void {
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
    if (this.state === C_CONNECTING) this.state = this.exchange !== null ? C_BUSY : C_IDLE;
  }

  /** Fired by the connect timer. */
  connectTimedOut(): void {
    this.connectTimer = null;
    if (this.state !== C_CONNECTING) return;
    this.fail('connect-timeout', 'upstream connect timed out', false);
  }

  private onRead(nread: number, buf: Buffer): boolean {
    this.onData(nread === buf.length ? buf : buf.subarray(0, nread));
    return true; // pausing is done through socket.pause(), which stops the reads itself
  }

  private onData(chunk: Buffer): void {
    const ex = this.exchange;
    if (ex === null) {
      // Bytes nobody asked for: this connection's framing can no longer be trusted.
      this.close();
      return;
    }
    this.runParser(ex, chunk, 0);
  }

  private runParser(ex: Http1Exchange, buf: Buffer, offset: number): void {
    this.parsing = true;
    const result = this.parser.execute(buf, offset);
    this.parsing = false;
    if (this.exchange !== ex) return; // aborted or failed inside a callback
    switch (result) {
      case PARSE_NEED_MORE:
        return;
      case PARSE_PAUSED: {
        const at = this.parser.offset;
        if (this.paused) {
          if (at < buf.length) {
            // A copy: the next read of any connection reuses the buffer this is a view of.
            this.stash = buf.buffer === sharedReadBuffer.buffer ? Buffer.from(buf.subarray(at)) : buf;
            this.stashOffset = buf.buffer === sharedReadBuffer.buffer ? 0 : at;
          }
        } else if (at < buf.length) {
          // resumed inside a callback after the parser decided to stop
          this.runParser(ex, buf, at);
        }
        return;
      }
      case PARSE_COMPLETE:
        this.complete(ex, this.parser.offset < buf.length);
        return;
      case PARSE_ERROR:
        this.fail('protocol', this.parser.error, true);
        return;
    }
  }

  private complete(ex: Http1Exchange, trailingBytes: boolean): void {
    const reusable = this.parser.keepAlive && this.requestDone && !trailingBytes && this.state === C_BUSY;
    this.exchange = null;
    ex.conn = null;
    ex.state = EX_DONE;
    this.served++;
    this.stash = null;
    this.eofPending = false;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    if (reusable) {
      this.keepAliveHintMs = this.parser.keepAliveTimeoutMs;
      this.state = C_IDLE;
      this.owner.connectionFree(this);
    } else {
      this.close();
    }
    ex.handler.onResponseEnd();
  }

  private onEnd(): void {
    const ex = this.exchange;
    if (ex === null || this.state === C_CLOSED) {
      this.close();
      return;
    }
    if (this.stash !== null || this.paused) {
      // Paused with bytes still unparsed: EOF is handled once they are.
      this.eofPending = true;
      return;
    }
    const result = this.parser.finishEof();
    if (result === PARSE_COMPLETE) this.complete(ex, false);
    else this.fail('reset', this.parser.error, this.parser.anyBytes);
  }

  private onSocketError(err: NodeJS.ErrnoException): void {
    if (this.state === C_CLOSED) return;
    if (this.state === C_CONNECTING) {
      this.fail('connect', `upstream connect failed: ${err.code ?? err.message}`, false);
    } else {
      this.fail('reset', `upstream connection error: ${err.code ?? err.message}`, this.parser.anyBytes);
    }
  }

  private onClose(): void {
    // A deferred EOF (paused with unparsed bytes) is settled by resume() or abort().
    if (this.state === C_CLOSED || this.eofPending) return;
    if (this.state === C_CONNECTING) this.fail('connect', 'upstream connection closed while connecting', false);
    else this.fail('reset', 'upstream connection closed', this.parser.anyBytes);
  }

  private onDrain(): void {
    const ex = this.exchange;
    if (ex !== null && ex.needDrain) {
      ex.needDrain = false;
      ex.handler.onRequestDrain();
    }
  }

  /** Tear down and report the current exchange's failure (or retry it once). */
  private fail(kind: UpstreamErrorKind, message: string, responseStarted: boolean): void {
    const ex = this.exchange;
    const reused = this.served > 0;
    this.exchange = null;
    let retry: Http1Exchange | null = null;
    if (ex !== null) {
      ex.conn = null;
      // A keep-alive connection the upstream closed just as we reused it: nothing of the
      // request was processed, so running it once more on a fresh connection is safe.
      if (kind === 'reset' && reused && !responseStarted && !ex.bodyStarted && !ex.retried) {
        ex.retried = true;
        ex.state = EX_PENDING;
        retry = ex;
      } else {
        ex.state = EX_DONE;
      }
    }
    this.shutdown(retry);
    if (ex !== null && retry === null) ex.handler.onUpstreamError(new UpstreamError(kind, message, responseStarted));
  }

  /** Close without reporting anything to a handler. */
  close(): void {
    this.exchange = null;
    this.shutdown(null);
  }

  private shutdown(retry: Http1Exchange | null): void {
    if (this.state === C_CLOSED) return;
    this.state = C_CLOSED;
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
    this.stash = null;
    this.socket.destroy();
    this.owner.connectionClosed(this, retry);
  }
}

function onConnectTimeout(conn: Http1Connection): void {
  conn.connectTimedOut();
}
