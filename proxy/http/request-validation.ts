// HTTP/1.1 request-head checks that uWebSockets.js 20.30 does not make itself.
//
// uWS hands a request to its handler with two Content-Length headers, two Host headers,
// a Transfer-Encoding it does not understand, a signed or hex Content-Length (it closes the
// socket only after the handler ran), a 100 KB header, a `#` in the target, DEL in a value.
// Every one of those is a request-smuggling or cache-poisoning vector once Wisp forwards it,
// so the request path calls checkRequest() once per request with the headers collected by
// req.forEach, before anything is routed or forwarded. docs/http-limits.md has the table
// of what uWS does by itself and why each rule below exists.
//
// Hot path: one pass over the flat header list, char-code loops, no regex, no allocation
// on success (the result object is reused per listener).
import type { HttpResponse } from 'uWebSockets.js';
import type { ListenerLimits } from '../config/types.js';
import { statusLine } from './status.js';

export class RequestCheck {
  /** 0 = ok; else 400 / 413 / 414 / 417 / 431 / 501 to answer (and close). */
  status = 0;
  /** Short text for the response body / log. */
  reason = '';
  /** Parsed Content-Length, -1 when absent. */
  contentLength = -1;
  /** The single Host value, as sent. */
  host = '';
  /** The client asked for Connection: close. */
  connectionClose = false;
  /** 'websocket' when the request asks for a WebSocket upgrade (Upgrade: websocket and
   * Connection: upgrade); '' otherwise. Other upgrade protocols are ignored (plain request). */
  upgrade = '';
  expectContinue = false;
  /** Transfer-Encoding: chunked body (only when acceptChunked; never together with contentLength). */
  chunked = false;

  /**
   * acceptChunked: let `Transfer-Encoding: chunked` (exactly that coding, no Content-Length)
   * through. Off by default: the request path streams bodies by Content-Length. uWS 20.30
   * does decode chunked request bodies (measured, see docs/http-limits.md), so turning this
   * on only needs a request path that forwards a body of unknown length.
   */
  constructor(readonly acceptChunked = false) {}
}

// Reasons are constants so a rejection allocates nothing.
const R_METHOD = 'invalid method';
const R_CONNECT = 'CONNECT is not supported';
const R_TARGET = 'request target must be origin-form';
const R_TARGET_CHAR = 'invalid character in request target';
const R_LINE_LONG = 'request line too long';
const R_TOO_MANY = 'too many header fields';
const R_TOO_BIG = 'header section too large';
const R_NAME = 'invalid header name';
const R_VALUE = 'invalid character in header value';
const R_CL = 'invalid Content-Length';
const R_CL_DUP = 'repeated Content-Length';
const R_TE_DUP = 'repeated Transfer-Encoding';
const R_TE_CL = 'Transfer-Encoding with Content-Length';
const R_TE = 'unsupported Transfer-Encoding';
const R_CHUNKED = 'chunked request bodies are not supported';
const R_HOST_MISSING = 'missing Host';
const R_HOST_DUP = 'repeated Host';
const R_HOST = 'invalid Host';
const R_BODY = 'request body too large';
const R_EXPECT = 'unsupported Expect';

// RFC 9110 §5.6.2 tchar: "!#$%&'*+-.^_`|~" / DIGIT / ALPHA.
const TCHAR = new Uint8Array(128);
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;

// Host characters: reg-name unreserved (ALPHA DIGIT - . _ ~); ':' before the port and
// '[' ']' around an IPv6 literal are handled by validHost. Sub-delims and pct-encoding are legal in a reg-name but never
// seen in a real Host, and each one ('@', ',', '%', ...) is a known host-confusion trick.
const HOSTCHAR = new Uint8Array(128);
for (let c = 0x30; c <= 0x39; c++) HOSTCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) HOSTCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) HOSTCHAR[c] = 1;
for (const ch of '-._~') HOSTCHAR[ch.charCodeAt(0)] = 1;

/** Content-Length digits kept below 2^53 so the value stays an exact integer. */
const MAX_CL_DIGITS = 15;

function fail(out: RequestCheck, status: number, reason: string): boolean {
  out.status = status;
  out.reason = reason;
  return false;
}

/** UTF-8 bytes of a target string, or -1 when it holds a character a request target must not. */
function targetBytes(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // CTLs, SP, DEL, and '#': a fragment is never sent (RFC 9112 §3.2); seeing one means the
    // client or something in front of us disagrees about where the target ends.
    if (c <= 0x20 || c === 0x7f || c === 0x23) return -1;
    bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdfff ? 2 : 3;
  }
  return bytes;
}

/** Case-insensitive compare of `s` with a lower-case ASCII literal. */
function equalsLower(s: string, lower: string): boolean {
  if (s.length !== lower.length) return false;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Does the comma-separated token list `v` hold `token` (lower-case), ignoring case and OWS? */
function listHas(v: string, token: string): boolean {
  const n = v.length;
  let i = 0;
  while (i < n) {
    while (i < n && (v.charCodeAt(i) === 0x20 || v.charCodeAt(i) === 0x09 || v.charCodeAt(i) === 0x2c)) i++;
    const start = i;
    while (i < n && v.charCodeAt(i) !== 0x2c) i++;
    let end = i;
    while (end > start && (v.charCodeAt(end - 1) === 0x20 || v.charCodeAt(end - 1) === 0x09)) end--;
    if (end - start === token.length) {
      let k = 0;
      while (k < token.length) {
        let c = v.charCodeAt(start + k);
        if (c >= 0x41 && c <= 0x5a) c |= 0x20;
        if (c !== token.charCodeAt(k)) break;
        k++;
      }
      if (k === token.length) return true;
    }
  }
  return false;
}

/** Content-Length = 1*DIGIT (RFC 9110 §8.6); -1 for anything else (sign, hex, list, OWS, empty, too long). */
function parseContentLength(v: string): number {
  const n = v.length;
  if (n === 0 || n > MAX_CL_DIGITS) return -1;
  let value = 0;
  for (let i = 0; i < n; i++) {
    const d = v.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

/** uri-host [":" port] with the characters Wisp accepts; an IPv6 literal only as "[...]". */
function validHost(v: string): boolean {
  const n = v.length;
  if (n === 0) return false;
  let i = 0;
  if (v.charCodeAt(0) === 0x5b /* [ */) {
    i = 1;
    while (i < n && v.charCodeAt(i) !== 0x5d /* ] */) {
      const c = v.charCodeAt(i);
      const hex = (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);
      if (!hex && c !== 0x3a && c !== 0x2e) return false;
      i++;
    }
    if (i === n || i === 1) return false;
    i++; // past ']'
    if (i === n) return true;
    if (v.charCodeAt(i) !== 0x3a) return false;
  } else {
    while (i < n) {
      const c = v.charCodeAt(i);
      if (c === 0x3a) break;
      if (c >= 128 || HOSTCHAR[c] === 0) return false;
      i++;
    }
    if (i === 0) return false;
    if (i === n) return true;
  }
  // port = 1*5 DIGIT after the one ':'
  i++;
  const digits = n - i;
  if (digits < 1 || digits > 5) return false;
  for (; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/**
 * Check one request head. `headers` is the flat [name, value, ...] list from req.forEach
 * (uWS gives names lower-cased and values with surrounding OWS trimmed). `method` may be in
 * either case (uWS's getMethod() lower-cases it). `query` is the part after '?', or ''.
 * Returns true when the request may proceed; otherwise out.status/out.reason say what to
 * answer, and the connection must be closed after the answer.
 */
export function checkRequest(
  method: string,
  url: string,
  query: string,
  headers: string[],
  limits: ListenerLimits,
  out: RequestCheck,
): boolean {
  out.status = 0;
  out.reason = '';
  out.contentLength = -1;
  out.host = '';
  out.connectionClose = false;
  out.upgrade = '';
  out.expectContinue = false;
  out.chunked = false;

  // ---- request line ----
  const mlen = method.length;
  if (mlen === 0) return fail(out, 400, R_METHOD);
  for (let i = 0; i < mlen; i++) {
    const c = method.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return fail(out, 400, R_METHOD);
  }
  let isOptions = false;
  if (mlen === 7) {
    if (equalsLower(method, 'connect')) return fail(out, 501, R_CONNECT);
    isOptions = equalsLower(method, 'options');
  }
  const urlBytes = targetBytes(url);
  if (urlBytes < 0) return fail(out, 400, R_TARGET_CHAR);
  const first = url.length > 0 ? url.charCodeAt(0) : 0;
  if (first !== 0x2f /* / */) {
    // asterisk-form is only for OPTIONS (RFC 9112 §3.2.4); absolute- and authority-form never reach a reverse proxy.
    if (!(isOptions && url.length === 1 && first === 0x2a)) return fail(out, 400, R_TARGET);
  }
  let queryBytes = 0;
  if (query) {
    queryBytes = targetBytes(query);
    if (queryBytes < 0) return fail(out, 400, R_TARGET_CHAR);
    queryBytes += 1; // the '?'
  }
  // "METHOD SP target SP HTTP/1.1": the method is ASCII (checked above).
  if (mlen + 1 + urlBytes + queryBytes + 9 > limits.max_request_line_bytes) return fail(out, 414, R_LINE_LONG);

  // ---- header section, one pass ----
  const n = headers.length;
  if (n >>> 1 > limits.max_headers) return fail(out, 431, R_TOO_MANY);
  const maxBytes = limits.max_header_bytes;
  let bytes = 0;
  let sawCL = false;
  let sawTE = false;
  let teValue = '';
  let sawHost = false;
  let upgradeValue = '';
  let connectionValue = '';
  for (let h = 0; h < n; h += 2) {
    let name = headers[h];
    const value = headers[h + 1];
    const nlen = name.length;
    const vlen = value.length;
    // "name: value\r\n" on the wire (uWS trims the OWS it saw; count the canonical one).
    bytes += nlen + vlen + 4;
    if (bytes > maxBytes) return fail(out, 431, R_TOO_BIG);
    if (nlen === 0) return fail(out, 400, R_NAME);
    let upper = false;
    for (let i = 0; i < nlen; i++) {
      const c = name.charCodeAt(i);
      if (c >= 128 || TCHAR[c] === 0) return fail(out, 400, R_NAME);
      if (c <= 0x5a && c >= 0x41) upper = true;
    }
    for (let i = 0; i < vlen; i++) {
      const c = value.charCodeAt(i);
      // field-vchar / obs-text / SP / HTAB (RFC 9110 §5.5): no CTL, no DEL.
      if ((c < 0x20 && c !== 0x09) || c === 0x7f) return fail(out, 400, R_VALUE);
    }
    // uWS lower-cases names; if a future build stops doing that, compare lower-cased.
    if (upper) name = name.toLowerCase();
    switch (nlen) {
      case 4:
        if (name === 'host') {
          if (sawHost) return fail(out, 400, R_HOST_DUP);
          sawHost = true;
          if (!validHost(value)) return fail(out, 400, R_HOST);
          out.host = value;
        }
        break;
      case 6:
        if (name === 'expect') {
          // Only 100-continue is defined (RFC 9110 §10.1.1).
          if (!equalsLower(value, '100-continue')) return fail(out, 417, R_EXPECT);
          out.expectContinue = true;
        }
        break;
      case 7:
        if (name === 'upgrade') upgradeValue = value;
        break;
      case 10:
        if (name === 'connection') connectionValue = connectionValue === '' ? value : connectionValue + ',' + value;
        break;
      case 14:
        if (name === 'content-length') {
          // Refused even when equal: RFC 9112 §6.3 lets a recipient merge identical values,
          // but a peer in front of us that took a different one is exactly the CL.CL desync.
          if (sawCL) return fail(out, 400, R_CL_DUP);
          if (sawTE) return fail(out, 400, R_TE_CL);
          sawCL = true;
          const cl = parseContentLength(value);
          if (cl < 0) return fail(out, 400, R_CL);
          out.contentLength = cl;
        }
        break;
      case 17:
        if (name === 'transfer-encoding') {
          if (sawTE) return fail(out, 400, R_TE_DUP);
          if (sawCL) return fail(out, 400, R_TE_CL);
          sawTE = true;
          teValue = value;
        }
        break;
    }
  }

  if (!sawHost) return fail(out, 400, R_HOST_MISSING);
  if (sawTE) {
    // Anything but exactly "chunked" is a coding Wisp cannot frame (RFC 9112 §6.1: 501).
    // Codings are case-insensitive, but "Chunked" is a classic TE.TE probe that a front proxy
    // may read differently: only the lower-case spelling every client sends is accepted.
    if (teValue !== 'chunked') return fail(out, 501, R_TE);
    if (!out.acceptChunked) return fail(out, 501, R_CHUNKED);
    out.chunked = true;
  }
  if (limits.max_body_bytes > 0 && out.contentLength > limits.max_body_bytes) return fail(out, 413, R_BODY);
  if (connectionValue !== '') {
    out.connectionClose = listHas(connectionValue, 'close');
    // RFC 9110 §7.8: Upgrade counts only with "Connection: upgrade".
    if (upgradeValue !== '' && equalsLower(upgradeValue, 'websocket') && listHas(connectionValue, 'upgrade')) out.upgrade = 'websocket';
  }
  return true;
}

/**
 * Answer a request checkRequest refused, and close the connection without letting uWS hand
 * over anything the client sent after it.
 *
 * Why not simply `res.end(body, true)` in the handler: uWS 20.30 goes on parsing the bytes
 * already read after a synchronous end, even with closeConnection, and hands the next
 * pipelined request to the handler (measured: test/hostile/uws-behaviour.test.ts). After a
 * refused `Content-Length: 0` + `Content-Length: 40` that next request is exactly the one a
 * front proxy thought was body. Answering on the next event-loop turn instead leaves the
 * response pending while uWS parses; uWS 20.30 aborts a connection that pipelines behind a
 * pending response, so the smuggled request is dropped with the connection and never seen.
 * Without anything pipelined, the answer goes out on the next turn and the socket closes.
 *
 * Takes the place of the handler's own onAborted (uWS keeps one per response).
 */
export function rejectRequest(res: HttpResponse, status: number, reason: string, requestId: string): void {
  const rejection = new Rejection(res, status, reason, requestId);
  res.onAborted(rejection.onAborted);
  setImmediate(sendRejection, rejection);
}

// A rejected request is rare: one small object and two bound functions per rejection are fine.
class Rejection {
  aborted = false;
  readonly onAborted = (): void => {
    this.aborted = true;
  };
  readonly write = (): void => {
    const res = this.res.writeStatus(statusLine(this.status)).writeHeader('content-type', 'text/plain; charset=utf-8');
    // The id may come from the refused head itself: echo it only when it cannot split the response.
    if (isPrintable(this.requestId)) res.writeHeader('x-request-id', this.requestId);
    res.end(`${this.status} ${this.reason}\n`, true);
  };
  constructor(
    readonly res: HttpResponse,
    readonly status: number,
    readonly reason: string,
    readonly requestId: string,
  ) {}
}

function isPrintable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

function sendRejection(r: Rejection): void {
  if (r.aborted) return;
  r.res.cork(r.write);
}
