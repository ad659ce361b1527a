// HTTP/1.1 response parser for the upstream client: one instance per connection, reset for
// every exchange. It is push-based: execute() is handed each socket chunk and calls the sink
// for the head and for body slices (views of the chunk, never copies). The head is parsed
// from one latin1 string with indexOf/charCodeAt scans (no regex); Buffer.concat happens
// only when a head spans several socket chunks.
//
// Strictness (a proxy must not forward what it cannot frame): CRLF line endings only, no
// obs-fold, token header names, no control characters in values, one Content-Length value,
// no Content-Length together with Transfer-Encoding, no 101 (we never ask for an upgrade).

/** Receives what the parser finds. Both methods return false to stop parsing now (the
 * consumer paused, or the exchange went away); execute() then returns PARSE_PAUSED. */
export interface ResponseSink {
  onParsedHead(status: number, reason: string, headers: string[], contentLength: number): boolean;
  onParsedBody(chunk: Buffer): boolean;
  /** The trailer fields of a chunked response (flat name/value pairs, names lower-case),
   * called once, just before the exchange completes, only when there were any. Fields that
   * must not be trailers (framing, routing, connection: RFC 9110 6.5.1) are left out. */
  onParsedTrailers?(trailers: string[]): void;
}

/** execute() results. */
export const PARSE_NEED_MORE = 0;
export const PARSE_PAUSED = 1;
export const PARSE_COMPLETE = 2;
export const PARSE_ERROR = 3;

const S_HEAD = 0;
const S_BODY_LENGTH = 1;
const S_BODY_CLOSE = 2;
const S_CHUNK_SIZE = 3;
const S_CHUNK_SIZE_WS = 4;
const S_CHUNK_EXT = 5;
const S_CHUNK_SIZE_LF = 6;
const S_CHUNK_DATA = 7;
const S_CHUNK_DATA_CR = 8;
const S_CHUNK_DATA_LF = 9;
const S_TRAILER_LINE_START = 10;
const S_TRAILER_LINE = 11;
const S_TRAILER_LINE_LF = 12;
const S_TRAILER_END_LF = 13;
const S_DONE = 14;
const S_ERROR = 15;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const SEMICOLON = 59;

const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY_HEADERS: string[] = [];
/** Fields a sender must not put in a trailer section (RFC 9110 6.5.1: framing, routing,
 * connection management); a recipient drops them rather than merge them into the head. */
const NOT_A_TRAILER = new Set([
  'content-length', 'transfer-encoding', 'trailer', 'host', 'connection', 'keep-alive',
  'proxy-connection', 'te', 'upgrade', 'content-encoding', 'content-type', 'content-range',
]);
/** A chunk size with more hex digits than this is refused (2^48 bytes is plenty). */
const MAX_CHUNK_SIZE_DIGITS = 12;

/** RFC 9110 tchar. */
const TOKEN = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  TOKEN[c] =
    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || "!#$%&'*+-.^_`|~".includes(ch) ? 1 : 0;
}

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

/** Control characters other than HTAB are never allowed in field values or reason phrases. */
function isBadValueChar(c: number): boolean {
  return c < SP ? c !== HTAB : c === 127;
}

/** Parses a Content-Length value; -1 when invalid. Accepts a list of identical values
 * ("5, 5"), which RFC 9110 lets a recipient treat as one value. */
/** True when some LF from `from` on is not preceded by CR (only on the incomplete-head path). */
function hasBareLf(buf: Buffer, from: number): boolean {
  let i = buf.indexOf(LF, from);
  while (i !== -1) {
    if (i === from || buf[i - 1] !== CR) return true;
    i = buf.indexOf(LF, i + 1);
  }
  return false;
}

function parseContentLength(v: string): number {
  if (v.indexOf(',') !== -1) {
    const parts = v.split(',');
    const first = parseContentLength(parts[0]!.trim());
    for (let i = 1; i < parts.length; i++) if (parseContentLength(parts[i]!.trim()) !== first) return -1;
    return first;
  }
  const len = v.length;
  // 15 digits stays below Number.MAX_SAFE_INTEGER.
  if (len === 0 || len > 15) return -1;
  let n = 0;
  for (let i = 0; i < len; i++) {
    const d = v.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** `timeout=N` (seconds) from a Keep-Alive header value, in ms; -1 when absent or invalid. */
function parseKeepAliveTimeout(v: string): number {
  const at = v.toLowerCase().indexOf('timeout=');
  if (at === -1) return -1;
  let n = 0;
  let digits = 0;
  for (let i = at + 8; i < v.length && digits < 9; i++, digits++) {
    const d = v.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
  }
  return digits === 0 ? -1 : n * 1000;
}

export class ResponseParser {
  /** Where the last execute() stopped in its buffer (for PAUSED / COMPLETE). */
  offset = 0;
  /** Why the last execute() returned PARSE_ERROR. */
  error = '';
  /** True once any byte of this exchange's response arrived. */
  anyBytes = false;
  /** Valid after the head: the connection may carry another exchange after this response. */
  keepAlive = false;
  /** True once the final (non-1xx) head was delivered. */
  headDone = false;
  /** The upstream's `Keep-Alive: timeout=N` hint in ms, or -1 when it sent none. */
  keepAliveTimeoutMs = -1;

  private state = S_HEAD;
  private isHeadRequest = false;
  /** Bytes of a head that began in an earlier socket chunk (a copy). */
  private partial: Buffer | null = null;
  /** Body bytes left (content-length) or bytes left in the current chunk. */
  private remaining = 0;
  private chunkSize = 0;
  private chunkDigits = 0;
  /** Chunk-extension and trailer bytes seen, bounded by maxHeaderBytes. */
  private extraBytes = 0;
  /** The trailer line being read (latin1), when it spans socket chunks. */
  private trailerLine = '';
  /** Where the current trailer line starts in the chunk being parsed. */
  private trailerStart = 0;
  /** Trailer fields of this exchange (flat pairs), valid once it completed. */
  trailers: string[] = EMPTY_HEADERS;

  // The head being handed to the sink.
  private status = 0;
  private reason = '';
  private headers: string[] = EMPTY_HEADERS;
  private contentLength = 0;

  constructor(
    private readonly sink: ResponseSink,
    private readonly maxHeaderBytes: number,
  ) {}

  /** Prepare for the response to a new request. */
  reset(isHeadRequest: boolean): void {
    this.state = S_HEAD;
    this.isHeadRequest = isHeadRequest;
    this.partial = null;
    this.anyBytes = false;
    this.keepAlive = false;
    this.headDone = false;
    this.keepAliveTimeoutMs = -1;
    this.remaining = 0;
    this.chunkSize = 0;
    this.chunkDigits = 0;
    this.extraBytes = 0;
    this.trailerLine = '';
    this.trailers = EMPTY_HEADERS;
    this.offset = 0;
    this.error = '';
  }

  /** True when the body runs until the upstream closes the connection. */
  get closeDelimited(): boolean {
    return this.state === S_BODY_CLOSE;
  }

  /** The upstream closed the connection: completes a close-delimited body, anything else
   * was cut short (PARSE_ERROR with `error` set; the caller reports it as a reset). */
  finishEof(): number {
    if (this.state === S_BODY_CLOSE) {
      this.state = S_DONE;
      return PARSE_COMPLETE;
    }
    if (this.state === S_DONE) return PARSE_COMPLETE;
    this.error = this.headDone ? 'upstream closed the connection before the body was complete' : 'upstream closed the connection before a complete response head';
    this.state = S_ERROR;
    return PARSE_ERROR;
  }

  execute(buf: Buffer, start: number): number {
    const len = buf.length;
    let pos = start;
    if (pos < len) this.anyBytes = true;
    if (this.state === S_TRAILER_LINE) this.trailerStart = pos; // a line cut by the last chunk
    while (pos < len) {
      switch (this.state) {
        case S_HEAD: {
          const next = this.readHead(buf, pos);
          if (next === -1) return this.stop(len, PARSE_NEED_MORE);
          if (next === -2) return PARSE_ERROR;
          pos = next;
          if (this.state === S_HEAD) break; // a 1xx interim response: read the next head
          this.headDone = true;
          const headers = this.headers;
          this.headers = EMPTY_HEADERS;
          const go = this.sink.onParsedHead(this.status, this.reason, headers, this.contentLength);
          if (this.state === S_DONE) return this.stop(pos, PARSE_COMPLETE);
          if (!go) return this.stop(pos, PARSE_PAUSED);
          break;
        }
        case S_BODY_LENGTH: {
          const avail = len - pos;
          if (avail >= this.remaining) {
            const end = pos + this.remaining;
            this.remaining = 0;
            this.state = S_DONE;
            this.sink.onParsedBody(pos === 0 && end === len ? buf : buf.subarray(pos, end));
            return this.stop(end, PARSE_COMPLETE);
          }
          this.remaining -= avail;
          const go = this.sink.onParsedBody(pos === 0 ? buf : buf.subarray(pos));
          return this.stop(len, go ? PARSE_NEED_MORE : PARSE_PAUSED);
        }
        case S_BODY_CLOSE: {
          const go = this.sink.onParsedBody(pos === 0 ? buf : buf.subarray(pos));
          return this.stop(len, go ? PARSE_NEED_MORE : PARSE_PAUSED);
        }
        case S_CHUNK_DATA: {
          const avail = len - pos;
          const n = avail < this.remaining ? avail : this.remaining;
          const end = pos + n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S_CHUNK_DATA_CR;
          const go = this.sink.onParsedBody(pos === 0 && end === len ? buf : buf.subarray(pos, end));
          pos = end;
          if (!go) return this.stop(pos, PARSE_PAUSED);
          break;
        }
        case S_CHUNK_SIZE: {
          const c = buf[pos]!;
          const v = HEX[c]!;
          if (v >= 0) {
            if (++this.chunkDigits > MAX_CHUNK_SIZE_DIGITS) return this.fail('chunk size too large');
            this.chunkSize = this.chunkSize * 16 + v;
          } else if (this.chunkDigits === 0) {
            return this.fail('invalid chunk size');
          } else if (c === CR) {
            this.state = S_CHUNK_SIZE_LF;
          } else if (c === SEMICOLON) {
            this.state = S_CHUNK_EXT;
          } else if (c === SP || c === HTAB) {
            this.state = S_CHUNK_SIZE_WS;
          } else {
            return this.fail('invalid chunk size');
          }
          pos++;
          break;
        }
        case S_CHUNK_SIZE_WS: {
          const c = buf[pos]!;
          if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if (c === SEMICOLON) this.state = S_CHUNK_EXT;
          else if (c !== SP && c !== HTAB) return this.fail('invalid chunk size line');
          pos++;
          break;
        }
        case S_CHUNK_EXT: {
          // Extensions are skipped (no one downstream can use them), but bounded and checked.
          const c = buf[pos]!;
          if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if (isBadValueChar(c)) return this.fail('invalid chunk extension');
          else if (++this.extraBytes > this.maxHeaderBytes) return this.fail('chunk extensions too large');
          pos++;
          break;
        }
        case S_CHUNK_SIZE_LF: {
          if (buf[pos] !== LF) return this.fail('invalid chunk size line ending');
          pos++;
          if (this.chunkSize === 0) {
            this.state = S_TRAILER_LINE_START;
          } else {
            this.remaining = this.chunkSize;
            this.state = S_CHUNK_DATA;
          }
          this.chunkSize = 0;
          this.chunkDigits = 0;
          break;
        }
        case S_CHUNK_DATA_CR: {
          if (buf[pos] !== CR) return this.fail('chunk data not followed by CRLF');
          this.state = S_CHUNK_DATA_LF;
          pos++;
          break;
        }
        case S_CHUNK_DATA_LF: {
          if (buf[pos] !== LF) return this.fail('chunk data not followed by CRLF');
          this.state = S_CHUNK_SIZE;
          pos++;
          break;
        }
        case S_TRAILER_LINE_START: {
          const c = buf[pos]!;
          if (c === CR) {
            this.state = S_TRAILER_END_LF;
          } else {
            if (isBadValueChar(c) || c === SP || c === HTAB) return this.fail('invalid trailer');
            this.state = S_TRAILER_LINE;
            this.trailerStart = pos;
          }
          if (++this.extraBytes > this.maxHeaderBytes) return this.fail('trailers too large');
          pos++;
          break;
        }
        case S_TRAILER_LINE: {
          const c = buf[pos]!;
          if (c === CR) {
            this.state = S_TRAILER_LINE_LF;
            const line = this.trailerLine + buf.toString('latin1', this.trailerStart, pos);
            this.trailerLine = '';
            if (!this.addTrailer(line)) return this.fail('invalid trailer');
          } else if (isBadValueChar(c)) return this.fail('invalid trailer');
          if (++this.extraBytes > this.maxHeaderBytes) return this.fail('trailers too large');
          pos++;
          break;
        }
        case S_TRAILER_LINE_LF: {
          if (buf[pos] !== LF) return this.fail('invalid trailer line ending');
          this.state = S_TRAILER_LINE_START;
          pos++;
          break;
        }
        case S_TRAILER_END_LF: {
          if (buf[pos] !== LF) return this.fail('invalid trailer line ending');
          this.state = S_DONE;
          if (this.trailers.length > 0) this.sink.onParsedTrailers?.(this.trailers);
          return this.stop(pos + 1, PARSE_COMPLETE);
        }
        case S_DONE:
          // Bytes after a complete response (we never pipeline): the caller decides.
          return this.stop(pos, PARSE_COMPLETE);
        default:
          return this.fail(this.error || 'parser in error state');
      }
    }
    if (this.state === S_TRAILER_LINE) this.trailerLine += buf.toString('latin1', this.trailerStart, len);
    return this.stop(len, PARSE_NEED_MORE);
  }

  /** One trailer field line (CRLF excluded): `token ":" OWS value OWS`, as in the head.
   * Keeps it unless it is a field a trailer must not carry. False when malformed. */
  private addTrailer(line: string): boolean {
    const colon = line.indexOf(':');
    if (colon <= 0) return false;
    for (let i = 0; i < colon; i++) if (TOKEN[line.charCodeAt(i)] !== 1) return false;
    const name = line.slice(0, colon).toLowerCase();
    if (NOT_A_TRAILER.has(name)) return true;
    let i = colon + 1;
    let end = line.length;
    while (i < end && (line.charCodeAt(i) === SP || line.charCodeAt(i) === HTAB)) i++;
    while (end > i && (line.charCodeAt(end - 1) === SP || line.charCodeAt(end - 1) === HTAB)) end--;
    if (this.trailers === EMPTY_HEADERS) this.trailers = [];
    this.trailers.push(name, line.slice(i, end));
    return true;
  }

  private stop(pos: number, result: number): number {
    this.offset = pos;
    return result;
  }

  private fail(message: string): number {
    this.error = message;
    this.state = S_ERROR;
    return PARSE_ERROR;
  }

  /** Finds the end of the head; returns the position after it, -1 when more bytes are
   * needed (kept in `partial`), -2 on error. */
  private readHead(buf: Buffer, pos: number): number {
    const max = this.maxHeaderBytes;
    const partial = this.partial;
    if (partial === null) {
      const idx = buf.indexOf(HEAD_END, pos);
      if (idx === -1) {
        if (buf.length - pos > max) return this.failHead('response head too large');
        // A bare-LF head never shows CRLFCRLF: without this it would wait for a timeout.
        if (hasBareLf(buf, pos)) return this.failHead('bare LF in response head');
        // A copy: the socket chunk may be a view that is not ours to keep.
        this.partial = Buffer.from(buf.subarray(pos));
        return -1;
      }
      if (idx + 4 - pos > max) return this.failHead('response head too large');
      return this.parseHead(buf.toString('latin1', pos, idx + 2)) ? idx + 4 : -2;
    }
    // The head spans chunks: the one place that concatenates.
    const joined = Buffer.concat([partial, pos === 0 ? buf : buf.subarray(pos)]);
    const idx = joined.indexOf(HEAD_END, partial.length > 3 ? partial.length - 3 : 0);
    if (idx === -1) {
      if (joined.length > max) return this.failHead('response head too large');
      if (hasBareLf(joined, 0)) return this.failHead('bare LF in response head');
      this.partial = joined;
      return -1;
    }
    if (idx + 4 > max) return this.failHead('response head too large');
    this.partial = null;
    return this.parseHead(joined.toString('latin1', 0, idx + 2)) ? pos + (idx + 4 - partial.length) : -2;
  }

  private failHead(message: string): number {
    this.fail(message);
    return -2;
  }

  /** Parses "status-line CRLF *(field-line CRLF)" (the final empty line excluded). Sets the
   * body state; leaves the state at S_HEAD for 1xx interim responses. */
  private parseHead(s: string): boolean {
    // status-line = "HTTP/1." DIGIT SP 3DIGIT [SP reason] CRLF
    if (
      s.length < 14 ||
      s.charCodeAt(0) !== 0x48 || s.charCodeAt(1) !== 0x54 || s.charCodeAt(2) !== 0x54 || s.charCodeAt(3) !== 0x50 ||
      s.charCodeAt(4) !== 0x2f || s.charCodeAt(5) !== 0x31 || s.charCodeAt(6) !== 0x2e || s.charCodeAt(8) !== SP
    ) {
      return this.failBool('bad status line');
    }
    const minor = s.charCodeAt(7) - 0x30;
    if (minor !== 0 && minor !== 1) return this.failBool('unsupported HTTP version');
    const d1 = s.charCodeAt(9) - 0x30;
    const d2 = s.charCodeAt(10) - 0x30;
    const d3 = s.charCodeAt(11) - 0x30;
    if (d1 < 1 || d1 > 5 || d2 < 0 || d2 > 9 || d3 < 0 || d3 > 9) return this.failBool('bad status code');
    const status = d1 * 100 + d2 * 10 + d3;
    const lineEnd = s.indexOf('\r\n', 12);
    let reason = '';
    if (lineEnd !== 12) {
      if (s.charCodeAt(12) !== SP) return this.failBool('bad status line');
      for (let i = 13; i < lineEnd; i++) if (isBadValueChar(s.charCodeAt(i))) return this.failBool('bad reason phrase');
      reason = s.slice(13, lineEnd);
    }
    if (status === 101) return this.failBool('unexpected 101 Switching Protocols');
    const interim = status < 200;
    // HEAD and 304 answers carry the representation's Content-Length without a body: it is
    // passed on as a header there; everywhere else framing headers are consumed here.
    const keepLengthHeader = this.isHeadRequest || status === 304;

    const headers: string[] = [];
    let contentLength = -1;
    let transferEncoding = false;
    let chunked = false;
    let connClose = false;
    let connKeepAlive = false;
    let connListed: string[] | null = null;

    let pos = lineEnd + 2;
    const end = s.length;
    while (pos < end) {
      const eol = s.indexOf('\r\n', pos);
      let i = pos;
      while (i < eol && TOKEN[s.charCodeAt(i)] === 1) i++;
      // Also rejects obs-fold (a line starting with SP/HTAB) and space before the colon.
      if (i === pos || i === eol || s.charCodeAt(i) !== 0x3a) return this.failBool('bad header line');
      const nameEnd = i;
      i++;
      let c = s.charCodeAt(i);
      while (i < eol && (c === SP || c === HTAB)) c = s.charCodeAt(++i);
      let vEnd = eol;
      c = s.charCodeAt(vEnd - 1);
      while (vEnd > i && (c === SP || c === HTAB)) c = s.charCodeAt(--vEnd - 1);
      for (let j = i; j < vEnd; j++) if (isBadValueChar(s.charCodeAt(j))) return this.failBool('bad header value');
      const name = s.slice(pos, nameEnd).toLowerCase();
      const value = s.slice(i, vEnd);
      pos = eol + 2;
      switch (name) {
        case 'content-length': {
          const n = parseContentLength(value);
          if (n < 0) return this.failBool('bad content-length');
          if (contentLength >= 0 && n !== contentLength) return this.failBool('conflicting content-length');
          contentLength = n;
          if (keepLengthHeader) headers.push(name, value);
          break;
        }
        case 'transfer-encoding': {
          transferEncoding = true;
          // Only the final coding decides framing; several headers form one list.
          const comma = value.lastIndexOf(',');
          chunked = (comma === -1 ? value : value.slice(comma + 1)).trim().toLowerCase() === 'chunked';
          break;
        }
        case 'connection': {
          const lower = value.toLowerCase();
          if (lower === 'close') connClose = true;
          else if (lower === 'keep-alive') connKeepAlive = true;
          else {
            const parts = lower.split(',');
            for (let k = 0; k < parts.length; k++) {
              const token = parts[k]!.trim();
              if (token === 'close') connClose = true;
              else if (token === 'keep-alive') connKeepAlive = true;
              else if (token.length > 0) (connListed ??= []).push(token);
            }
          }
          break;
        }
        case 'keep-alive':
          this.keepAliveTimeoutMs = parseKeepAliveTimeout(value);
          break;
        case 'proxy-connection':
        case 'te':
        case 'trailer':
        case 'upgrade':
          break;
        default:
          headers.push(name, value);
      }
    }

    if (interim) {
      // 1xx: not reported; the real response follows.
      this.state = S_HEAD;
      return true;
    }

    if (connListed !== null) {
      // Connection-listed names are hop-by-hop too (RFC 9110 7.6.1).
      let w = 0;
      for (let r = 0; r < headers.length; r += 2) {
        if (connListed.includes(headers[r]!)) continue;
        headers[w] = headers[r]!;
        headers[w + 1] = headers[r + 1]!;
        w += 2;
      }
      headers.length = w;
    }

    let keepAlive = minor === 1 ? !connClose : connKeepAlive && !connClose;
    let reported: number;
    if (this.isHeadRequest || status === 204 || status === 304) {
      reported = 0;
      this.state = S_DONE;
    } else if (transferEncoding) {
      if (contentLength >= 0) return this.failBool('both transfer-encoding and content-length');
      if (chunked) {
        this.state = S_CHUNK_SIZE;
      } else {
        this.state = S_BODY_CLOSE;
        keepAlive = false;
      }
      reported = -1;
    } else if (contentLength >= 0) {
      reported = contentLength;
      this.remaining = contentLength;
      this.state = contentLength === 0 ? S_DONE : S_BODY_LENGTH;
    } else {
      reported = -1;
      this.state = S_BODY_CLOSE;
      keepAlive = false;
    }
    this.keepAlive = keepAlive;
    this.status = status;
    this.reason = reason;
    this.headers = headers;
    this.contentLength = reported;
    return true;
  }

  private failBool(message: string): boolean {
    this.fail(message);
    return false;
  }
}
