// Hostile HTTP/1.1 requests, as data. Sources: RFC 9112 (message syntax and framing),
// RFC 9110 (fields, Host, Expect), and the public request-smuggling research (Watchfire 2005
// "HTTP Request Smuggling"; James Kettle, "HTTP Desync Attacks", 2019, and "HTTP/2: The
// Sequel is Always Worse", 2021, for TE.TE obfuscations and h2c; Bishop Fox 2020 on h2c
// smuggling). Every case is used twice:
//   - test/hostile/uws-behaviour.test.ts sends it to a bare uWS app and checks `uws`
//     (what uWebSockets.js 20.30 itself does), so a uWS upgrade that changes any of it fails;
//   - test/hostile/smuggling.test.ts sends it to a real Wisp in front of a recording
//     upstream and checks `expect`, and that nothing reached the upstream.
import type { ListenerLimits } from '../../proxy/config/types.js';

/** What a bare uWS 20.30 app does with the bytes (measured; docs/http-limits.md). */
export type UwsBehaviour =
  /** The handler is called: Wisp must refuse the request itself. */
  | 'handed'
  /** The handler is called, then uWS closes the socket (bad framing found after the head):
   * nothing the handler answers asynchronously gets out. */
  | 'handed-then-closed'
  /** Never handed over; uWS waits for the client (idle timeout ~10 s), answers nothing. */
  | 'hangs'
  /** Never handed over; uWS closes at once, answers nothing. */
  | 'closed'
  /** Never handed over; uWS closes with the client's bytes unread (client may see ECONNRESET). */
  | 'reset';

export interface HostileCase {
  name: string;
  /** Where the case comes from. */
  ref: string;
  raw: string | Buffer;
  uws: UwsBehaviour;
  expect: {
    /** Wisp answers this status (final status: a 100 Continue before it is skipped) and closes. */
    status?: number;
    /** uWS never hands it over: no response bytes. */
    closedByUws?: true;
    /** A close without any answer is also correct (uWS closed first, or a pipelined request
     * behind the refused one made uWS drop the connection). */
    orClosed?: true;
  };
  forwarded: false;
  /** Valid HTTP that this uWS build still cannot serve (documented, not an attack). */
  legit?: true;
}

export interface GoodCase {
  name: string;
  raw: string | Buffer;
  /** Status Wisp must answer (from the recording upstream). */
  status: number;
  /** Requests the upstream must record for this case, by url. */
  forwardedUrls: string[];
  /** Header names the upstream must NOT see (hop-by-hop / smuggling-relevant). */
  absentUpstreamHeaders?: string[];
  /** Body bytes the upstream must receive for the first forwarded request. */
  body?: string;
}

/** Limits the end-to-end Wisp listener runs with, so 414/431/413 are reachable inside what uWS
 * hands over (uWS refuses more than 48 header lines and heads over ~128 KB on its own). */
export const CORPUS_LIMITS: ListenerLimits = {
  max_request_line_bytes: 2048,
  max_header_bytes: 8192,
  max_headers: 20,
  max_body_bytes: 1024,
  header_timeout_ms: 10_000,
  body_timeout_ms: 30_000,
  idle_timeout_ms: 60_000,
};

const CRLF = '\r\n';
/** request line + header lines + empty line + body, CRLF everywhere. */
function msg(requestLine: string, headerLines: string[], body = ''): string {
  let s = requestLine + CRLF;
  for (const h of headerLines) s += h + CRLF;
  return s + CRLF + body;
}
/** Exact bytes (latin1), for cases whose point is a byte that UTF-8 would change. */
function bytes(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}
function manyHeaders(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`x-h${i}: v`);
  return out;
}

const HOST = 'Host: wisp.test';
const GOOD_TAIL = msg('GET /after-bad HTTP/1.1', [HOST]);
const W400 = { status: 400 } as const;
const W501 = { status: 501 } as const;
const UWS = { closedByUws: true } as const;

export const hostileCases: HostileCase[] = [
  // ---- Content-Length (RFC 9110 §8.6, RFC 9112 §6.3) ----
  { name: 'CL.CL different values', ref: 'RFC 9112 §6.3 item 5; Watchfire 2005', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 3', 'Content-Length: 4'], 'abcd'), uws: 'handed', expect: W400, forwarded: false },
  { name: 'CL.CL equal values (Wisp refuses even equal ones)', ref: 'RFC 9112 §6.3 item 5', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 3', 'Content-Length: 3'], 'abc'), uws: 'handed', expect: W400, forwarded: false },
  { name: 'CL as a list "3, 3"', ref: 'RFC 9110 §8.6', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 3, 3'], 'abc'), uws: 'handed-then-closed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'CL signed +3', ref: 'RFC 9110 §8.6 (1*DIGIT)', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: +3'], 'abc'), uws: 'handed-then-closed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'CL negative -1', ref: 'RFC 9110 §8.6', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: -1'], 'abc'), uws: 'handed-then-closed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'CL hex 0x10', ref: 'Kettle 2019 (parser differentials)', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 0x10'], 'abc'), uws: 'handed-then-closed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'CL trailing garbage 3a', ref: 'RFC 9110 §8.6', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 3a'], 'abc'), uws: 'handed-then-closed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'CL with inner space "1 0"', ref: 'RFC 9110 §8.6', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 1 0'], 'abc'), uws: 'handed-then-closed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'CL empty value', ref: 'RFC 9110 §8.6 (uWS reads it as 0)', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: '], 'abc'), uws: 'handed', expect: W400, forwarded: false },
  { name: 'CL overflow (23 digits)', ref: 'integer overflow differentials', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 99999999999999999999999'], 'abc'), uws: 'handed-then-closed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'CL 16 digits (past 2^53 guard)', ref: 'integer precision', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 1000000000000000'], 'abc'), uws: 'handed-then-closed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'CL over max_body_bytes', ref: 'RFC 9110 §15.5.14', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 5000'], 'x'.repeat(5000)), uws: 'handed', expect: { status: 413 }, forwarded: false },
  { name: 'CL.CL smuggle: CL 0 then CL 40 hiding a request', ref: 'Watchfire 2005; RFC 9112 §11.2', raw: msg('POST /cl HTTP/1.1', [HOST, 'Content-Length: 0', 'Content-Length: 40'], msg('GET /smuggled HTTP/1.1', [HOST])), uws: 'handed', expect: { status: 400, orClosed: true }, forwarded: false },

  // ---- Transfer-Encoding (RFC 9112 §6.1, §6.3) ----
  { name: 'CL.TE classic', ref: 'Kettle 2019 CL.TE', raw: msg('POST /te HTTP/1.1', [HOST, 'Content-Length: 6', 'Transfer-Encoding: chunked'], '0\r\n\r\nG'), uws: 'closed', expect: UWS, forwarded: false },
  { name: 'TE.CL classic', ref: 'Kettle 2019 TE.CL', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: chunked', 'Content-Length: 3'], '8\r\nSMUGGLED\r\n0\r\n\r\n'), uws: 'closed', expect: UWS, forwarded: false },
  { name: 'TE xchunked', ref: 'Kettle 2019 TE.TE obfuscation', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: xchunked'], '0\r\n\r\n'), uws: 'handed', expect: W501, forwarded: false },
  { name: 'TE "chunked, identity"', ref: 'Kettle 2019 TE.TE; RFC 9112 §6.1', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: chunked, identity'], '0\r\n\r\n'), uws: 'handed', expect: W501, forwarded: false },
  { name: 'TE identity', ref: 'RFC 7230 removed "identity"', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: identity'], '0\r\n\r\n'), uws: 'handed', expect: W501, forwarded: false },
  { name: 'TE "gzip, chunked"', ref: 'RFC 9112 §6.1', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: gzip, chunked'], '0\r\n\r\n'), uws: 'handed', expect: W501, forwarded: false },
  { name: 'TE "Chunked" (case)', ref: 'Kettle 2019 TE.TE', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: Chunked'], '0\r\n\r\n'), uws: 'handed', expect: W501, forwarded: false },
  { name: 'TE twice (chunked, identity)', ref: 'Kettle 2019 TE.TE', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: chunked', 'Transfer-Encoding: identity'], '0\r\n\r\n'), uws: 'handed', expect: W400, forwarded: false },
  { name: 'TE with space before colon', ref: 'RFC 9112 §5.1; Kettle 2019', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding : chunked'], '0\r\n\r\n'), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'TE with vertical tab before value', ref: 'Kettle 2019 TE.TE', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: \x0bchunked'], '0\r\n\r\n'), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'TE obs-folded value', ref: 'RFC 9112 §5.2; Kettle 2019', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding:', ' chunked'], '0\r\n\r\n'), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'TE hidden behind a bare LF', ref: 'RFC 9112 §2.2', raw: msg('POST /te HTTP/1.1', [HOST, 'X-A: a\nTransfer-Encoding: chunked'], '0\r\n\r\n'), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'TE chunked with invalid chunk size', ref: 'RFC 9112 §7.1', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: chunked'], 'zz\r\nabc\r\n0\r\n\r\n'), uws: 'handed-then-closed', expect: { status: 501, orClosed: true }, forwarded: false },
  { name: 'TE chunked with a chunk extension (uWS 20.30 closes on any extension)', ref: 'RFC 9112 §7.1.1', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: chunked'], '3;ext=1\r\nabc\r\n0\r\n\r\n'), uws: 'handed-then-closed', expect: { status: 501, orClosed: true }, forwarded: false },
  { name: 'TE chunked with 0x chunk size', ref: 'RFC 9112 §7.1', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer-Encoding: chunked'], '0x3\r\nabc\r\n0\r\n\r\n'), uws: 'handed-then-closed', expect: { status: 501, orClosed: true }, forwarded: false },
  { name: 'Transfer_Encoding (underscore name)', ref: 'CGI name mangling', raw: msg('POST /te HTTP/1.1', [HOST, 'Transfer_Encoding: chunked'], '0\r\n\r\n'), uws: 'hangs', expect: UWS, forwarded: false },

  // ---- field syntax (RFC 9112 §5, RFC 9110 §5.5) ----
  { name: 'obs-fold continuation line', ref: 'RFC 9112 §5.2', raw: msg('GET /f HTTP/1.1', [HOST, 'X-A: a', ' b']), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'space before colon on Content-Length', ref: 'RFC 9112 §5.1', raw: msg('POST /f HTTP/1.1', [HOST, 'Content-Length : 3'], 'abc'), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'tab before colon', ref: 'RFC 9112 §5.1', raw: msg('GET /f HTTP/1.1', [HOST, 'X-A\t: b']), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'bare LF line endings', ref: 'RFC 9112 §2.2', raw: 'GET /f HTTP/1.1\nHost: wisp.test\n\n', uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'bare CR line ending', ref: 'RFC 9112 §2.2', raw: 'GET /f HTTP/1.1\rHost: wisp.test\r\n\r\n', uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'CR CR LF at end of a field', ref: 'RFC 9112 §2.2', raw: msg('GET /f HTTP/1.1', [HOST, 'X-A: a\r']), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'NUL in value', ref: 'RFC 9110 §5.5', raw: bytes(msg('GET /f HTTP/1.1', [HOST, 'X-A: a\x00b'])), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'NUL in name', ref: 'RFC 9110 §5.1', raw: bytes(msg('GET /f HTTP/1.1', [HOST, 'X-\x00A: b'])), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'CR inside value', ref: 'RFC 9110 §5.5', raw: msg('GET /f HTTP/1.1', [HOST, 'X-A: a\rb']), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'LF inside value', ref: 'RFC 9110 §5.5', raw: msg('GET /f HTTP/1.1', [HOST, 'X-A: a\nb']), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'SOH (0x01) in value', ref: 'RFC 9110 §5.5', raw: bytes(msg('GET /f HTTP/1.1', [HOST, 'X-A: a\x01b'])), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'VT (0x0b) in value', ref: 'RFC 9110 §5.5', raw: bytes(msg('GET /f HTTP/1.1', [HOST, 'X-A: a\x0bb'])), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'DEL (0x7f) in value', ref: 'RFC 9110 §5.5', raw: bytes(msg('GET /f HTTP/1.1', [HOST, 'X-A: a\x7fb'])), uws: 'handed', expect: W400, forwarded: false },
  { name: 'name with @', ref: 'RFC 9110 §5.6.2 token', raw: msg('GET /f HTTP/1.1', [HOST, 'X@A: b']), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'name with double quote', ref: 'RFC 9110 §5.6.2 token', raw: msg('GET /f HTTP/1.1', [HOST, 'X"A: b']), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'name with a non-ASCII byte', ref: 'RFC 9110 §5.6.2 token', raw: bytes(msg('GET /f HTTP/1.1', [HOST, 'X\xe9A: b'])), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'field line without colon', ref: 'RFC 9112 §5', raw: msg('GET /f HTTP/1.1', [HOST, 'X-A']), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'whitespace before the first field line', ref: 'RFC 9112 §2.2 (MUST reject or consume)', raw: msg('GET /f HTTP/1.1', [' ' + HOST]), uws: 'hangs', expect: UWS, forwarded: false },

  // ---- request line (RFC 9112 §3) ----
  { name: 'lower-case method', ref: 'RFC 9110 §9.1 (case-sensitive)', raw: msg('get /m HTTP/1.1', [HOST]), uws: 'closed', expect: UWS, forwarded: false },
  { name: 'method with @', ref: 'RFC 9110 §9.1 token', raw: msg('G@T /m HTTP/1.1', [HOST]), uws: 'closed', expect: UWS, forwarded: false },
  { name: 'extension method PURGE', ref: 'RFC 9110 §9.1 (uWS knows only the RFC 9110 set + PATCH)', raw: msg('PURGE /m HTTP/1.1', [HOST]), uws: 'closed', expect: UWS, forwarded: false, legit: true },
  { name: 'CONNECT authority-form', ref: 'RFC 9112 §3.2.3', raw: msg('CONNECT wisp.test:443 HTTP/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false, legit: true },
  { name: 'CONNECT with origin-form target', ref: 'RFC 9110 §9.3.6 (Wisp: 501)', raw: msg('CONNECT /m HTTP/1.1', [HOST]), uws: 'handed', expect: W501, forwarded: false },
  { name: 'HTTP/1.0', ref: 'RFC 9112 §2.3 (uWS speaks 1.1 only)', raw: msg('GET /v HTTP/1.0', [HOST]), uws: 'hangs', expect: UWS, forwarded: false, legit: true },
  { name: 'HTTP/0.9 simple request', ref: 'RFC 1945 §4.1', raw: 'GET /v\r\n\r\n', uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'HTTP/1.2', ref: 'RFC 9112 §2.3', raw: msg('GET /v HTTP/1.2', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'HTTP/2.0 in an HTTP/1 request line', ref: 'RFC 9112 §2.3', raw: msg('GET /v HTTP/2.0', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'HTTP/2 prior-knowledge preface', ref: 'RFC 9113 §3.4', raw: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'lower-case version http/1.1', ref: 'RFC 9112 §2.3 (case-sensitive)', raw: msg('GET /v http/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'no version', ref: 'RFC 9112 §3', raw: msg('GET /v ', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'absolute-form target', ref: 'RFC 9112 §3.2.2', raw: msg('GET http://other.test/v HTTP/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'asterisk-form with GET', ref: 'RFC 9112 §3.2.4', raw: msg('GET * HTTP/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'OPTIONS * (valid asterisk-form)', ref: 'RFC 9112 §3.2.4', raw: msg('OPTIONS * HTTP/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false, legit: true },
  { name: 'relative target without /', ref: 'RFC 9112 §3.2.1', raw: msg('GET v HTTP/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'space inside target', ref: 'RFC 9112 §3.2', raw: msg('GET /a b HTTP/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'tab inside target', ref: 'RFC 9112 §3.2', raw: msg('GET /a\tb HTTP/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'CTL inside target', ref: 'RFC 9112 §3.2', raw: bytes(msg('GET /a\x01 HTTP/1.1', [HOST])), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'fragment # in path', ref: 'RFC 9112 §3.2 (fragments are never sent)', raw: msg('GET /a#frag HTTP/1.1', [HOST]), uws: 'handed', expect: W400, forwarded: false },
  { name: 'fragment # in query', ref: 'RFC 9112 §3.2', raw: msg('GET /a?b=1#frag HTTP/1.1', [HOST]), uws: 'handed', expect: W400, forwarded: false },
  { name: 'two spaces after method', ref: 'RFC 9112 §3 (single SP)', raw: msg('GET  /v HTTP/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'empty line before request line', ref: 'RFC 9112 §2.2 (SHOULD ignore one CRLF)', raw: '\r\n' + msg('GET /v HTTP/1.1', [HOST]), uws: 'hangs', expect: UWS, forwarded: false, legit: true },
  { name: 'request line over max_request_line_bytes', ref: 'RFC 9112 §3 (414)', raw: msg('GET /' + 'a'.repeat(3000) + ' HTTP/1.1', [HOST]), uws: 'handed', expect: { status: 414 }, forwarded: false },
  { name: 'target of 200 KB', ref: 'buffer limits', raw: msg('GET /' + 'a'.repeat(200_000) + ' HTTP/1.1', [HOST]), uws: 'reset', expect: UWS, forwarded: false },

  // ---- Host (RFC 9112 §3.2, RFC 9110 §7.2) ----
  { name: 'missing Host, no fields at all', ref: 'RFC 9112 §3.2 (MUST 400)', raw: msg('GET /h HTTP/1.1', []), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'missing Host, other fields present', ref: 'RFC 9112 §3.2 (MUST 400)', raw: msg('GET /h HTTP/1.1', ['X-A: b']), uws: 'closed', expect: UWS, forwarded: false },
  { name: 'two Host headers', ref: 'RFC 9112 §3.2 (MUST 400)', raw: msg('GET /h HTTP/1.1', [HOST, 'Host: evil.test']), uws: 'handed', expect: W400, forwarded: false },
  { name: 'empty Host', ref: 'RFC 9112 §3.2 (Wisp routes on Host: refused)', raw: msg('GET /h HTTP/1.1', ['Host: ']), uws: 'handed', expect: W400, forwarded: false },
  { name: 'Host with a space', ref: 'RFC 3986 §3.2.2', raw: msg('GET /h HTTP/1.1', ['Host: wisp.test evil.test']), uws: 'handed', expect: W400, forwarded: false },
  { name: 'Host with a slash', ref: 'RFC 3986 §3.2.2', raw: msg('GET /h HTTP/1.1', ['Host: wisp.test/evil']), uws: 'handed', expect: W400, forwarded: false },
  { name: 'Host with userinfo @', ref: 'RFC 9110 §4.2.4', raw: msg('GET /h HTTP/1.1', ['Host: user@wisp.test']), uws: 'handed', expect: W400, forwarded: false },
  { name: 'Host with a comma list', ref: 'Kettle 2019 (Host header attacks)', raw: msg('GET /h HTTP/1.1', ['Host: wisp.test,evil.test']), uws: 'handed', expect: W400, forwarded: false },
  { name: 'Host with a non-numeric port', ref: 'RFC 3986 §3.2.3', raw: msg('GET /h HTTP/1.1', ['Host: wisp.test:80x']), uws: 'handed', expect: W400, forwarded: false },

  // ---- limits ----
  { name: 'more header lines than max_headers (30 > 20)', ref: 'RFC 6585 §5 (431)', raw: msg('GET /l HTTP/1.1', [HOST, ...manyHeaders(29)]), uws: 'handed', expect: { status: 431 }, forwarded: false },
  { name: 'more than 48 header lines (uWS limit)', ref: 'uWS UWS_HTTP_MAX_HEADERS_COUNT', raw: msg('GET /l HTTP/1.1', [HOST, ...manyHeaders(60)]), uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'header value over max_header_bytes (10 KB > 8 KB)', ref: 'RFC 6585 §5 (431)', raw: msg('GET /l HTTP/1.1', [HOST, 'X-Big: ' + 'a'.repeat(10_000)]), uws: 'handed', expect: { status: 431 }, forwarded: false },
  { name: 'header of 70 KB', ref: 'RFC 6585 §5 (431)', raw: msg('GET /l HTTP/1.1', [HOST, 'X-Big: ' + 'a'.repeat(70_000)]), uws: 'handed', expect: { status: 431 }, forwarded: false },
  { name: 'header of 300 KB', ref: 'buffer limits', raw: msg('GET /l HTTP/1.1', [HOST, 'X-Big: ' + 'a'.repeat(300_000)]), uws: 'reset', expect: UWS, forwarded: false },

  // ---- Expect (RFC 9110 §10.1.1) ----
  { name: 'Expect other than 100-continue', ref: 'RFC 9110 §10.1.1 (417)', raw: msg('GET /e HTTP/1.1', [HOST, 'Expect: teapot']), uws: 'handed', expect: { status: 417 }, forwarded: false },
  { name: 'Expect 100-continue with a body over max_body_bytes', ref: 'RFC 9110 §10.1.1', raw: msg('POST /e HTTP/1.1', [HOST, 'Expect: 100-continue', 'Content-Length: 5000']), uws: 'handed', expect: { status: 413 }, forwarded: false },
  { name: 'request sent after a refused 100-continue', ref: 'RFC 9110 §10.1.1 (client sends anyway)', raw: msg('POST /e HTTP/1.1', [HOST, 'Expect: 100-continue', 'Content-Length: 2000'], 'x'.repeat(2000)) + GOOD_TAIL, uws: 'handed', expect: { status: 413, orClosed: true }, forwarded: false },

  // ---- pipelining behind a refused request ----
  { name: 'good request pipelined after double Host', ref: 'RFC 9112 §9.3.2', raw: msg('GET /p HTTP/1.1', [HOST, 'Host: evil.test']) + GOOD_TAIL, uws: 'handed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'good request pipelined after DEL in value', ref: 'RFC 9112 §9.3.2', raw: bytes(msg('GET /p HTTP/1.1', [HOST, 'X-A: \x7f']) + GOOD_TAIL), uws: 'handed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'good request pipelined after obs-fold', ref: 'RFC 9112 §9.3.2', raw: msg('GET /p HTTP/1.1', [HOST, 'X-A: a', ' b']) + GOOD_TAIL, uws: 'hangs', expect: UWS, forwarded: false },
  { name: 'good request pipelined after xchunked', ref: 'Kettle 2019 TE.TE', raw: msg('POST /p HTTP/1.1', [HOST, 'Transfer-Encoding: xchunked'], '0\r\n\r\n') + GOOD_TAIL, uws: 'handed', expect: { status: 501, orClosed: true }, forwarded: false },
];

// The same kinds of hostile heads dressed as WebSocket upgrades: uWS routes a GET with
// Sec-WebSocket-Key to the listener's .ws() upgrade handler instead of the HTTP one, so the
// upgrade path must refuse them too. (A bare uWS app without a .ws() route hands them to its
// HTTP handler, which is how uws-behaviour.test.ts checks checkRequest's verdict on them.)
const WS = ['Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13'];

export const wsHostileCases: HostileCase[] = [
  { name: 'WS: two Host headers', ref: 'RFC 9112 §3.2', raw: msg('GET /ws HTTP/1.1', [HOST, 'Host: evil.test', ...WS]), uws: 'handed', expect: W400, forwarded: false },
  { name: 'WS: Host with a slash', ref: 'RFC 3986 §3.2.2', raw: msg('GET /ws HTTP/1.1', ['Host: wisp.test/evil', ...WS]), uws: 'handed', expect: W400, forwarded: false },
  { name: 'WS: fragment # in path', ref: 'RFC 9112 §3.2', raw: msg('GET /ws#frag HTTP/1.1', [HOST, ...WS]), uws: 'handed', expect: W400, forwarded: false },
  { name: 'WS: DEL in a value', ref: 'RFC 9110 §5.5', raw: bytes(msg('GET /ws HTTP/1.1', [HOST, 'X-A: a\x7fb', ...WS])), uws: 'handed', expect: W400, forwarded: false },
  { name: 'WS: CL.CL hiding a request', ref: 'Watchfire 2005', raw: msg('GET /ws HTTP/1.1', [HOST, 'Content-Length: 0', 'Content-Length: 40', ...WS], msg('GET /smuggled HTTP/1.1', [HOST])), uws: 'handed', expect: { status: 400, orClosed: true }, forwarded: false },
  { name: 'WS: Transfer-Encoding xchunked', ref: 'Kettle 2019 TE.TE', raw: msg('GET /ws HTTP/1.1', [HOST, 'Transfer-Encoding: xchunked', ...WS], '0\r\n\r\n'), uws: 'handed', expect: W501, forwarded: false },
  { name: 'WS: Expect other than 100-continue', ref: 'RFC 9110 §10.1.1', raw: msg('GET /ws HTTP/1.1', [HOST, 'Expect: teapot', ...WS]), uws: 'handed', expect: { status: 417 }, forwarded: false },
  { name: 'WS: request line over max_request_line_bytes', ref: 'RFC 9112 §3 (414)', raw: msg('GET /' + 'a'.repeat(3000) + ' HTTP/1.1', [HOST, ...WS]), uws: 'handed', expect: { status: 414 }, forwarded: false },
  { name: 'WS: header over max_header_bytes', ref: 'RFC 6585 §5 (431)', raw: msg('GET /ws HTTP/1.1', [HOST, 'X-Big: ' + 'a'.repeat(10_000), ...WS]), uws: 'handed', expect: { status: 431 }, forwarded: false },
  { name: 'WS: empty Host', ref: 'RFC 9112 §3.2', raw: msg('GET /ws HTTP/1.1', ['Host: ', ...WS]), uws: 'handed', expect: W400, forwarded: false },
];

export const goodCases: GoodCase[] = [
  { name: 'plain GET', raw: msg('GET /good/get?x=1 HTTP/1.1', [HOST]), status: 200, forwardedUrls: ['/good/get?x=1'] },
  { name: 'POST with Content-Length', raw: msg('POST /good/post HTTP/1.1', [HOST, 'Content-Length: 5'], 'hello'), status: 200, forwardedUrls: ['/good/post'], body: 'hello' },
  { name: 'Content-Length with leading zeros (accepted: 1*DIGIT)', raw: msg('POST /good/zeros HTTP/1.1', [HOST, 'Content-Length: 003'], 'abc'), status: 200, forwardedUrls: ['/good/zeros'], body: 'abc' },
  { name: 'Expect 100-continue within limits', raw: msg('POST /good/expect HTTP/1.1', [HOST, 'Expect: 100-continue', 'Content-Length: 3'], 'abc'), status: 200, forwardedUrls: ['/good/expect'], body: 'abc', absentUpstreamHeaders: ['expect'] },
  { name: 'Upgrade h2c is not an upgrade: plain request, Upgrade stripped', raw: msg('GET /good/h2c HTTP/1.1', [HOST, 'Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA']), status: 200, forwardedUrls: ['/good/h2c'], absentUpstreamHeaders: ['upgrade', 'http2-settings', 'connection'] },
  { name: 'obs-text (0xff) in a value is allowed', raw: bytes(msg('GET /good/obs-text HTTP/1.1', [HOST, 'X-A: caf\xe9'])), status: 200, forwardedUrls: ['/good/obs-text'] },
  { name: 'chunked request body (decoded by uWS, re-framed upstream by Wisp)', raw: msg('POST /good/chunked HTTP/1.1', [HOST, 'Transfer-Encoding: chunked'], '3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n'), status: 200, forwardedUrls: ['/good/chunked'], body: 'abcde' },
  { name: 'TE with tab before the value: OWS, trimmed by uWS, same as nginx (valid RFC 9112)', raw: msg('POST /good/te-tab HTTP/1.1', [HOST, 'Transfer-Encoding:\tchunked'], '1\r\nz\r\n0\r\n\r\n'), status: 200, forwardedUrls: ['/good/te-tab'], body: 'z' },
  { name: 'Host with port and IPv6 literal', raw: msg('GET /good/ipv6 HTTP/1.1', ['Host: [::1]:8080']), status: 200, forwardedUrls: ['/good/ipv6'] },
];
