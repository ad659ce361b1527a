// A minimal RFC 6455 WebSocket client over node:net / node:tls: the opening handshake and
// the frame codec, nothing else (no extensions, so no permessage-deflate). Wisp uses it to
// open the upstream half of a proxied WebSocket; the tests use it as a real client.
//
// Two layers: connectWebSocket() runs the HTTP/1.1 Upgrade exchange and answers with either
// an open WsConnection (101) or the upstream's refusal (any other status, with its head and
// a small body). WsConnection then speaks frames as the client role: every frame it sends is
// masked, every frame it receives must be unmasked; fragmented messages are reassembled,
// pings are answered, and a close handshake is finished for the caller.
import net from 'node:net';
import tls from 'node:tls';
import { isUtf8 } from 'node:buffer';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';

/** RFC 6455 §1.3: appended to the key before hashing into Sec-WebSocket-Accept. */
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_HANDSHAKE_HEAD = 64 * 1024;
/** Body bytes of a refused handshake kept to pass on; the rest is dropped. */
const MAX_REFUSAL_BODY = 64 * 1024;
/** After sending a close frame, wait this long for the peer's before dropping the socket. */
const CLOSE_WAIT_MS = 5000;

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/** Sec-WebSocket-Accept the server must answer for `key`. */
export function acceptKeyFor(key: string): string {
  return createHash('sha1').update(key + WS_GUID).digest('base64');
}

// Masking keys come from a pooled CSPRNG buffer (RFC 6455 §5.3 wants them unpredictable);
// one randomFillSync per 2048 frames instead of one per frame.
const maskPool = Buffer.allocUnsafe(8192);
let maskOffset = maskPool.length;

/** One frame as bytes. mask: client-to-server frames must be masked (RFC 6455 §5.1). */
export function encodeFrame(opcode: number, payload: Uint8Array, fin: boolean, mask: boolean): Buffer {
  const len = payload.length;
  const extra = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const headerLen = 2 + extra + (mask ? 4 : 0);
  const out = Buffer.allocUnsafe(headerLen + len);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (extra === 0) out[1] = len;
  else if (extra === 2) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(len / 0x100000000), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  if (!mask) {
    out.set(payload, headerLen);
    return out;
  }
  out[1] |= 0x80;
  if (maskOffset === maskPool.length) {
    randomFillSync(maskPool);
    maskOffset = 0;
  }
  const k = headerLen - 4;
  const m0 = (out[k] = maskPool[maskOffset]!);
  const m1 = (out[k + 1] = maskPool[maskOffset + 1]!);
  const m2 = (out[k + 2] = maskPool[maskOffset + 2]!);
  const m3 = (out[k + 3] = maskPool[maskOffset + 3]!);
  maskOffset += 4;
  let i = 0;
  let o = headerLen;
  const whole = len - (len & 3);
  for (; i < whole; i += 4, o += 4) {
    out[o] = payload[i]! ^ m0;
    out[o + 1] = payload[i + 1]! ^ m1;
    out[o + 2] = payload[i + 2]! ^ m2;
    out[o + 3] = payload[i + 3]! ^ m3;
  }
  if (i < len) out[o] = payload[i]! ^ m0;
  if (i + 1 < len) out[o + 1] = payload[i + 1]! ^ m1;
  if (i + 2 < len) out[o + 2] = payload[i + 2]! ^ m2;
  return out;
}

/** Payload of a close frame; code 1005 ("no status") means an empty payload. */
export function closePayload(code: number, reason: string): Buffer {
  if (code === 1005 || code === 0) return Buffer.alloc(0);
  // A control frame carries at most 125 bytes: 2 for the code, 123 for the reason.
  let r = Buffer.from(reason, 'utf8');
  if (r.length > 123) r = r.subarray(0, 123);
  const out = Buffer.allocUnsafe(2 + r.length);
  out.writeUInt16BE(code, 0);
  out.set(r, 2);
  return out;
}

/** Codes a peer may put in a close frame (RFC 6455 §7.4.1, §11.7). */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/** What a WsConnection reports to its owner. */
export interface WsHandler {
  /** A whole message (fragments reassembled). The buffer may share memory with a socket chunk:
   * use or copy it before returning. */
  onMessage(data: Buffer, isBinary: boolean): void;
  /** Once per connection. code 1005: the peer's close frame had no status; 1006: the socket
   * ended without a close handshake (abnormal). clean: a close frame was received. */
  onClose(code: number, reason: string, clean: boolean): void;
  /** The socket's write buffer drained (after send() returned false). */
  onDrain(): void;
  /** Optional: run `deliver` (which calls onMessage for every whole message in the chunk
   * just read) inside a batch, e.g. uWS's cork, so a chunk of many messages costs one write
   * downstream. `deliver` is the same function for the connection's whole life. */
  batch?(deliver: () => void): void;
}

const enum ReadState {
  Header,
  Payload,
}

/** An open WebSocket, client role. Data is not read until start() names a handler. */
export class WsConnection {
  /** Subprotocol the server chose ('' for none). */
  readonly protocol: string;
  private handler: WsHandler | null = null;
  private closeSent = false;
  private closed = false;
  private paused = false;
  private parsing = false;
  private closeTimer: NodeJS.Timeout | null = null;
  private readonly parseBound = (): void => this.parse();

  // Frame reader state. `buf` holds bytes not yet consumed (header bytes, or payload of a
  // frame whose length is known but which has not arrived whole).
  private buf: Buffer;
  private state = ReadState.Header;
  private opcode = 0;
  private fin = false;
  private payloadLength = 0;
  private payload: Buffer | null = null; // large frames are gathered here
  private payloadFilled = 0;
  private fragments: Buffer[] = [];
  private fragmentsLength = 0;
  private fragmentOpcode = 0;

  constructor(
    readonly socket: net.Socket,
    head: Buffer,
    protocol: string,
    private readonly maxMessageBytes: number,
  ) {
    this.buf = head;
    this.protocol = protocol;
    socket.pause();
    // Until start(), an error must not go unhandled; 'close' reports it as 1006 after start().
    socket.on('error', ignoreError);
  }

  /** Begin delivering frames (including any that arrived with the handshake answer). */
  start(handler: WsHandler): void {
    this.handler = handler;
    const s = this.socket;
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.on('drain', () => this.handler!.onDrain());
    s.on('close', () => this.onSocketClose());
    this.parse();
    if (!this.paused && !this.closed) s.resume();
  }

  /** Bytes accepted by send() and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Send one message. Returns false when the socket's buffer is over its high-water mark
   * (the data is still queued; wait for onDrain to keep memory bounded). */
  send(data: Uint8Array | string, isBinary: boolean): boolean {
    if (this.closeSent || this.closed) return false;
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    return this.socket.write(encodeFrame(isBinary ? OP_BINARY : OP_TEXT, bytes, true, true));
  }

  ping(data: Uint8Array = Buffer.alloc(0)): void {
    if (!this.closeSent && !this.closed) this.socket.write(encodeFrame(OP_PING, data, true, true));
  }

  /** Start the close handshake. The socket is dropped if the peer does not answer in time. */
  close(code = 1000, reason = ''): void {
    if (this.closeSent || this.closed) return;
    this.closeSent = true;
    this.socket.write(encodeFrame(OP_CLOSE, closePayload(code, reason), true, true));
    this.closeTimer = setTimeout(destroySocket, CLOSE_WAIT_MS, this.socket);
    this.closeTimer.unref();
  }

  /** Drop the connection without a close handshake (the peer sees 1006). */
  destroy(): void {
    this.socket.destroy();
  }

  /** Stop delivering messages (and reading the socket) until resume(). */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.parse();
    if (!this.paused && !this.closed) this.socket.resume();
  }

  private onData(chunk: Buffer): void {
    if (this.state === ReadState.Payload && this.payload !== null) {
      // Gathering a large frame: copy straight into its buffer, no re-concatenation.
      const want = this.payloadLength - this.payloadFilled;
      const n = chunk.length < want ? chunk.length : want;
      chunk.copy(this.payload, this.payloadFilled, 0, n);
      this.payloadFilled += n;
      this.buf = n === chunk.length ? EMPTY : chunk.subarray(n);
    } else {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    }
    const h = this.handler!;
    if (h.batch !== undefined) h.batch(this.parseBound);
    else this.parse();
  }

  private parse(): void {
    if (this.parsing || this.handler === null) return; // re-entered from a handler: the outer loop continues
    this.parsing = true;
    try {
      while (!this.paused && !this.closed) {
        if (this.state === ReadState.Header) {
          if (!this.readHeader()) return;
        } else if (!this.readPayload()) return;
      }
    } finally {
      this.parsing = false;
    }
  }

  /** Parse one frame header from buf. False when more bytes are needed (or the peer erred). */
  private readHeader(): boolean {
    const b = this.buf;
    if (b.length < 2) return false;
    const b0 = b[0]!;
    const b1 = b[1]!;
    if ((b0 & 0x70) !== 0) return this.fail(1002, 'reserved bits set');
    if ((b1 & 0x80) !== 0) return this.fail(1002, 'masked frame from server');
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    let len = b1 & 0x7f;
    let offset = 2;
    if (len === 126) {
      if (b.length < 4) return false;
      len = b.readUInt16BE(2);
      offset = 4;
    } else if (len === 127) {
      if (b.length < 10) return false;
      const hi = b.readUInt32BE(2);
      if (hi > 0x1fffff) return this.fail(1009, 'frame too large');
      len = hi * 0x100000000 + b.readUInt32BE(6);
      offset = 10;
    }
    if (opcode >= 0x8) {
      if (!fin || len > 125) return this.fail(1002, 'invalid control frame');
      if (opcode > OP_PONG) return this.fail(1002, 'unknown opcode');
    } else if (opcode === OP_CONTINUATION) {
      if (this.fragmentOpcode === 0) return this.fail(1002, 'continuation without a message');
    } else if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (this.fragmentOpcode !== 0) return this.fail(1002, 'new message inside a fragmented one');
    } else return this.fail(1002, 'unknown opcode');
    if (opcode < 0x8 && this.fragmentsLength + len > this.maxMessageBytes) return this.fail(1009, 'message too big');
    this.opcode = opcode;
    this.fin = fin;
    this.payloadLength = len;
    this.buf = b.subarray(offset);
    this.state = ReadState.Payload;
    if (this.buf.length < len) {
      // Not here yet: gather into a buffer of the right size as chunks arrive.
      this.payload = Buffer.allocUnsafe(len);
      this.buf.copy(this.payload, 0);
      this.payloadFilled = this.buf.length;
      this.buf = EMPTY;
    }
    return true;
  }

  private readPayload(): boolean {
    let data: Buffer;
    if (this.payload !== null) {
      if (this.payloadFilled < this.payloadLength) return false;
      data = this.payload;
      this.payload = null;
    } else {
      data = this.buf.subarray(0, this.payloadLength);
      this.buf = this.buf.subarray(this.payloadLength);
    }
    this.state = ReadState.Header;
    this.onFrame(this.opcode, this.fin, data);
    return true;
  }

  private onFrame(opcode: number, fin: boolean, data: Buffer): void {
    switch (opcode) {
      case OP_PING:
        if (!this.closeSent) this.socket.write(encodeFrame(OP_PONG, data, true, true));
        return;
      case OP_PONG:
        return;
      case OP_CLOSE:
        return this.onCloseFrame(data);
    }
    if (opcode !== OP_CONTINUATION) this.fragmentOpcode = opcode;
    if (!fin || this.fragments.length > 0) {
      // Socket chunks are fresh buffers per read, so keeping a view is safe.
      this.fragments.push(data);
      this.fragmentsLength += data.length;
      if (!fin) return;
      data = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments, this.fragmentsLength);
      this.fragments = [];
      this.fragmentsLength = 0;
    }
    const isBinary = this.fragmentOpcode === OP_BINARY;
    this.fragmentOpcode = 0;
    if (!isBinary && !isUtf8(data)) {
      this.fail(1007, 'invalid UTF-8 in a text message');
      return;
    }
    if (!this.closeSent) this.handler!.onMessage(data, isBinary);
  }

  private onCloseFrame(data: Buffer): void {
    let code = 1005;
    let reason = '';
    if (data.length === 1) {
      this.fail(1002, 'close frame with a 1-byte payload');
      return;
    }
    if (data.length >= 2) {
      code = data.readUInt16BE(0);
      if (!isValidCloseCode(code)) {
        this.fail(1002, 'invalid close code');
        return;
      }
      const r = data.subarray(2);
      if (!isUtf8(r)) {
        this.fail(1007, 'invalid UTF-8 in the close reason');
        return;
      }
      reason = r.toString('utf8');
    }
    // Answer (echoing the code, RFC 6455 §5.5.1) unless we started the close; the server
    // closes TCP first, we end our half.
    if (!this.closeSent) {
      this.closeSent = true;
      this.socket.write(encodeFrame(OP_CLOSE, closePayload(code, reason), true, true));
    }
    this.socket.end();
    if (this.closeTimer === null) {
      this.closeTimer = setTimeout(destroySocket, CLOSE_WAIT_MS, this.socket);
      this.closeTimer.unref();
    }
    this.finish(code, reason, true);
  }

  /** The peer broke the protocol: close with `code` and report it as our close. */
  private fail(code: number, reason: string): boolean {
    if (!this.closeSent) {
      this.closeSent = true;
      this.socket.end(encodeFrame(OP_CLOSE, closePayload(code, reason), true, true));
      this.closeTimer = setTimeout(destroySocket, CLOSE_WAIT_MS, this.socket);
      this.closeTimer.unref();
    }
    this.finish(code, reason, false);
    return false;
  }

  private onSocketClose(): void {
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.finish(1006, '', false);
  }

  private finish(code: number, reason: string, clean: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.handler!.onClose(code, reason, clean);
  }
}

const EMPTY = Buffer.alloc(0);

function ignoreError(): void {}

function destroySocket(s: net.Socket): void {
  s.destroy();
}

export interface WsConnectOptions {
  /** Address to connect to (an IP, or a name node resolves). */
  host: string;
  port: number;
  /** Request target: path and query. */
  path: string;
  /** Flat [name, value, ...] with lower-case names, sent as they are. A `host` header is
   * added (host:port) when absent. Upgrade, Connection, Sec-WebSocket-Key and -Version are
   * written by the client and must not be in this list. */
  headers?: readonly string[];
  /** Sec-WebSocket-Protocol offer ("chat, superchat"); '' or absent for none. */
  protocols?: string;
  /** Connect with TLS using these options (servername, ca, rejectUnauthorized...). */
  tls?: tls.ConnectionOptions;
  /** TCP (and TLS) connect deadline; 0 = none. */
  connectTimeoutMs?: number;
  /** Deadline for the whole handshake, connect included; 0 = none. */
  handshakeTimeoutMs?: number;
  /** Largest message accepted (reassembled); bigger ones close with 1009. Default 16 MiB. */
  maxMessageBytes?: number;
}

/** Why a handshake produced neither a WebSocket nor an HTTP answer. */
export type WsConnectErrorKind = 'connect' | 'connect-timeout' | 'timeout' | 'reset' | 'protocol';

export class WsConnectError extends Error {
  constructor(readonly kind: WsConnectErrorKind, message: string) {
    super(message);
    this.name = 'WsConnectError';
  }
}

export interface WsUpgraded {
  upgraded: true;
  status: 101;
  /** The 101 response's headers, flat, names lower-case. */
  headers: string[];
  connection: WsConnection;
}

export interface WsRefused {
  upgraded: false;
  status: number;
  headers: string[];
  /** Up to 64 KiB of the body (Content-Length or read-until-close bodies; chunked bodies are decoded). */
  body: Buffer;
}

/** Open a WebSocket. Resolves with the connection (101) or the server's refusal; rejects
 * with WsConnectError when the server could not be reached or did not speak HTTP/WebSocket. */
export function connectWebSocket(opts: WsConnectOptions): Promise<WsUpgraded | WsRefused> {
  return new Promise((resolve, reject) => {
    new Handshake(opts, resolve, reject).begin();
  });
}

/** One opening handshake, as a state machine driven by socket events. */
class Handshake {
  private readonly key = randomBytes(16).toString('base64');
  private socket!: net.Socket;
  private connected = false;
  private done = false;
  private head: Buffer = EMPTY;
  private connectTimer: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  // refusal body reading
  private refusal: WsRefused | null = null;
  private bodyLeft = -1; // -1: until close
  private bodyDeclared = -1;
  private chunked = false;
  private bodyChunks: Buffer[] = [];
  private bodyBytes = 0;

  constructor(
    private readonly opts: WsConnectOptions,
    private readonly resolve: (r: WsUpgraded | WsRefused) => void,
    private readonly reject: (e: Error) => void,
  ) {}

  begin(): void {
    const o = this.opts;
    const useTls = o.tls !== undefined;
    this.socket = useTls ? tls.connect({ ...o.tls, host: o.host, port: o.port }) : net.connect({ host: o.host, port: o.port });
    this.socket.setNoDelay(true);
    // A WebSocket may stay quiet for hours: let TCP notice a peer that vanished.
    this.socket.setKeepAlive(true, 30_000);
    this.socket.once(useTls ? 'secureConnect' : 'connect', () => this.onConnect());
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: Error) => this.onError(err));
    this.socket.on('close', () => this.onClose());
    if (o.connectTimeoutMs !== undefined && o.connectTimeoutMs > 0) {
      this.connectTimer = setTimeout(() => this.failWith('connect-timeout', `connect timed out after ${o.connectTimeoutMs} ms`), o.connectTimeoutMs);
    }
    if (o.handshakeTimeoutMs !== undefined && o.handshakeTimeoutMs > 0) {
      this.timer = setTimeout(() => this.failWith(this.connected ? 'timeout' : 'connect-timeout', `no handshake answer within ${o.handshakeTimeoutMs} ms`), o.handshakeTimeoutMs);
    }
  }

  private onConnect(): void {
    this.connected = true;
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    const o = this.opts;
    const h = o.headers ?? [];
    let out = `GET ${o.path} HTTP/1.1\r\n`;
    let hasHost = false;
    for (let i = 0; i < h.length; i += 2) {
      if (h[i] === 'host') hasHost = true;
      out += `${h[i]}: ${h[i + 1]}\r\n`;
    }
    if (!hasHost) out += `host: ${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}\r\n`;
    if (o.protocols !== undefined && o.protocols !== '') out += `sec-websocket-protocol: ${o.protocols}\r\n`;
    out += `connection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${this.key}\r\n\r\n`;
    this.socket.write(out, 'latin1');
  }

  private onData(chunk: Buffer): void {
    if (this.done) return;
    if (this.refusal !== null) return this.onRefusalBody(chunk);
    this.head = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk]);
    const end = this.head.indexOf('\r\n\r\n');
    if (end === -1) {
      if (this.head.length > MAX_HANDSHAKE_HEAD) this.failWith('protocol', 'handshake answer head too large');
      return;
    }
    const text = this.head.toString('latin1', 0, end);
    const rest = this.head.subarray(end + 4);
    const lines = text.split('\r\n');
    const statusLine = lines[0]!;
    if (!statusLine.startsWith('HTTP/1.') || statusLine.length < 12) return this.failWith('protocol', `not an HTTP answer: ${JSON.stringify(statusLine.slice(0, 40))}`);
    const status = Number(statusLine.slice(9, 12));
    if (!(status >= 100 && status <= 599)) return this.failWith('protocol', 'bad status code');
    const headers: string[] = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) return this.failWith('protocol', 'malformed header line');
      headers.push(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    if (status === 101) return this.onSwitch(headers, rest);
    if (status < 200) {
      // Interim answers (100 Continue, 103) do not answer the upgrade: keep reading.
      this.head = rest;
      if (rest.length > 0) this.onData(EMPTY);
      return;
    }
    this.refusal = { upgraded: false, status, headers, body: EMPTY };
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    const te = find(headers, 'transfer-encoding');
    const cl = find(headers, 'content-length');
    if (te !== undefined && te.toLowerCase().includes('chunked')) {
      this.chunked = true;
      this.bodyLeft = -1;
    } else if (cl !== undefined) this.bodyLeft = Number(cl) || 0;
    else if (status === 204 || status === 304) this.bodyLeft = 0;
    this.bodyDeclared = this.bodyLeft;
    this.head = EMPTY;
    this.onRefusalBody(rest);
  }

  private onSwitch(headers: string[], rest: Buffer): void {
    const upgrade = find(headers, 'upgrade');
    if (upgrade === undefined || upgrade.toLowerCase() !== 'websocket') return this.failWith('protocol', '101 without "Upgrade: websocket"');
    const connection = find(headers, 'connection');
    if (connection === undefined || !connection.toLowerCase().includes('upgrade')) return this.failWith('protocol', '101 without "Connection: Upgrade"');
    if (find(headers, 'sec-websocket-accept') !== acceptKeyFor(this.key)) return this.failWith('protocol', 'wrong Sec-WebSocket-Accept');
    if (find(headers, 'sec-websocket-extensions') !== undefined) return this.failWith('protocol', 'server enabled an extension that was not offered');
    const protocol = find(headers, 'sec-websocket-protocol') ?? '';
    if (protocol !== '') {
      const offered = (this.opts.protocols ?? '').split(',').map((p) => p.trim());
      if (!offered.includes(protocol)) return this.failWith('protocol', `server chose subprotocol "${protocol}" that was not offered`);
    }
    this.finishTimers();
    this.done = true;
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('error');
    this.socket.removeAllListeners('close');
    const conn = new WsConnection(this.socket, rest, protocol, this.opts.maxMessageBytes ?? 16 * 1024 * 1024);
    this.resolve({ upgraded: true, status: 101, headers, connection: conn });
  }

  private onRefusalBody(chunk: Buffer): void {
    if (this.chunked) {
      this.bodyChunks.push(chunk);
      const all = Buffer.concat(this.bodyChunks);
      this.bodyChunks = [all];
      const decoded = decodeChunked(all);
      if (decoded !== null) {
        this.refusal!.body = decoded.subarray(0, MAX_REFUSAL_BODY);
        return this.finishRefusal();
      }
      if (all.length > MAX_REFUSAL_BODY * 2) return this.finishRefusal();
      return;
    }
    if (chunk.length > 0 && this.bodyBytes < MAX_REFUSAL_BODY) {
      this.bodyChunks.push(chunk);
      this.bodyBytes += chunk.length;
    }
    if (this.bodyLeft >= 0) {
      this.bodyLeft -= chunk.length;
      if (this.bodyLeft <= 0) this.finishRefusal();
    } else if (this.bodyBytes >= MAX_REFUSAL_BODY) this.finishRefusal();
  }

  private finishRefusal(): void {
    const r = this.refusal!;
    if (!this.chunked) {
      const limit = this.bodyDeclared >= 0 ? Math.min(this.bodyDeclared, MAX_REFUSAL_BODY) : MAX_REFUSAL_BODY;
      r.body = Buffer.concat(this.bodyChunks).subarray(0, limit);
    }
    this.finishTimers();
    this.done = true;
    this.socket.destroy();
    this.resolve(r);
  }

  private onError(err: Error): void {
    if (this.done) return;
    const code = (err as NodeJS.ErrnoException).code;
    this.failWith(this.connected ? 'reset' : 'connect', `${code ?? err.name}: ${err.message}`);
  }

  private onClose(): void {
    if (this.done) return;
    // A refusal whose body runs until close is complete now.
    if (this.refusal !== null && this.bodyLeft < 0 && !this.chunked) return this.finishRefusal();
    this.failWith(this.connected ? 'reset' : 'connect', 'connection closed before the handshake answer');
  }

  private failWith(kind: WsConnectErrorKind, message: string): void {
    if (this.done) return;
    this.done = true;
    this.finishTimers();
    this.socket.destroy();
    this.reject(new WsConnectError(kind, message));
  }

  private finishTimers(): void {
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    if (this.timer !== null) clearTimeout(this.timer);
    this.connectTimer = null;
    this.timer = null;
  }
}

function find(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

/** A whole chunked body, or null while it is incomplete. Trailers are skipped. */
function decodeChunked(data: Buffer): Buffer | null {
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', pos);
    if (lineEnd === -1) return null;
    const size = parseInt(data.toString('latin1', pos, lineEnd), 16);
    if (Number.isNaN(size)) return Buffer.concat(parts);
    if (size === 0) return Buffer.concat(parts);
    const start = lineEnd + 2;
    if (data.length < start + size + 2) return null;
    parts.push(data.subarray(start, start + size));
    pos = start + size + 2;
  }
}
