// checkRequest's rules one by one, on header lists shaped as uWS hands them over. The
// end-to-end proof (real uWS parse, real Wisp, real upstream) is in uws-behaviour.test.ts
// and smuggling.test.ts; these cover the branches uWS never lets through today (upper-case
// names, TE+CL order, chunked acceptance) so a future uWS that does is already handled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkRequest, RequestCheck } from '../../proxy/http/request-validation.js';
import type { ListenerLimits } from '../../proxy/config/types.js';

const LIMITS: ListenerLimits = {
  max_request_line_bytes: 64,
  max_header_bytes: 200,
  max_headers: 6,
  header_timeout_ms: 10_000,
  body_timeout_ms: 30_000,
  idle_timeout_ms: 60_000,
  max_body_bytes: 100,
};

const out = new RequestCheck();
function run(method: string, url: string, headers: string[], query = '', limits = LIMITS, check = out): RequestCheck {
  const ok = checkRequest(method, url, query, headers, limits, check);
  assert.equal(ok, check.status === 0, 'return value agrees with status');
  return check;
}
function status(method: string, url: string, headers: string[], query = '', limits = LIMITS): number {
  return run(method, url, headers, query, limits).status;
}
const H = ['host', 'wisp.test'];

test('a common request passes and fills the result', () => {
  const r = run('GET', '/a/b', [...H, 'user-agent', 'curl/8', 'accept', '*/*', 'connection', 'keep-alive, Close'], 'x=1');
  assert.equal(r.status, 0);
  assert.equal(r.reason, '');
  assert.equal(r.host, 'wisp.test');
  assert.equal(r.contentLength, -1);
  assert.equal(r.connectionClose, true);
  assert.equal(r.upgrade, '');
  assert.equal(r.expectContinue, false);
  assert.equal(r.chunked, false);
});

test('fields are reset on every call (one instance reused per listener)', () => {
  run('POST', '/', [...H, 'content-length', '5', 'connection', 'close', 'expect', '100-continue']);
  assert.equal(out.contentLength, 5);
  const r = run('GET', '/', ['host', 'other.test']);
  assert.deepEqual(
    [r.status, r.contentLength, r.host, r.connectionClose, r.expectContinue, r.upgrade],
    [0, -1, 'other.test', false, false, ''],
  );
  run('GET', '/', []);
  assert.equal(out.status, 400);
  assert.equal(run('GET', '/', H).status, 0);
  assert.equal(out.reason, '');
});

test('method must be a token; CONNECT is 501 in either case', () => {
  assert.equal(status('GET', '/', H), 0);
  assert.equal(status('get', '/', H), 0, 'uWS getMethod() gives lower case');
  assert.equal(status('M-SEARCH', '/', H), 0);
  assert.equal(status('', '/', H), 400);
  assert.equal(status('G T', '/', H), 400);
  assert.equal(status('G@T', '/', H), 400);
  assert.equal(status('GÉT', '/', H), 400);
  assert.equal(status('CONNECT', '/', H), 501);
  assert.equal(status('connect', '/', H), 501);
});

test('request target: origin-form only, asterisk for OPTIONS, no CTL/space/#', () => {
  assert.equal(status('OPTIONS', '*', H), 0);
  assert.equal(status('options', '*', H), 0);
  assert.equal(status('GET', '*', H), 400);
  assert.equal(status('OPTIONS', '**', H), 400);
  assert.equal(status('GET', 'http://a/', H), 400);
  assert.equal(status('GET', 'a', H), 400);
  assert.equal(status('GET', '', H), 400);
  assert.equal(status('GET', '/a b', H), 400);
  assert.equal(status('GET', '/a\tb', H), 400);
  assert.equal(status('GET', '/a\x00', H), 400);
  assert.equal(status('GET', '/a\x7f', H), 400);
  assert.equal(status('GET', '/a#f', H), 400);
  assert.equal(status('GET', '/a', H, 'b#f'), 400);
  assert.equal(status('GET', '/a', H, 'b c'), 400);
  assert.equal(status('GET', '/caf\u00e9', H), 0, 'non-ASCII (UTF-8) path bytes pass, as nginx does');
});

test('request line over max_request_line_bytes is 414, counted in UTF-8 bytes', () => {
  // "GET " + url + " HTTP/1.1" = 4 + n + 9 <= 64  →  n <= 51
  assert.equal(status('GET', '/' + 'a'.repeat(50), H), 0);
  assert.equal(status('GET', '/' + 'a'.repeat(51), H), 414);
  // query counts with its '?': 4 + 1 + 1 + 45 + 9 = 60 ok; +5 → 65
  assert.equal(status('GET', '/', H, 'q'.repeat(45)), 0);
  assert.equal(status('GET', '/', H, 'q'.repeat(50)), 414);
  // 'é' is 2 bytes on the wire: 26 of them + '/' = 53 bytes > 51
  assert.equal(status('GET', '/' + '\u00e9'.repeat(25), H), 0);
  assert.equal(status('GET', '/' + '\u00e9'.repeat(26), H), 414);
  assert.equal(status('GET', '/' + '\u{1f600}'.repeat(12), H), 0, '4 bytes each: 49 bytes');
  assert.equal(status('GET', '/' + '\u{1f600}'.repeat(13), H), 414);
});

test('header count and size limits are 431', () => {
  const six = [...H, 'a', '1', 'b', '2', 'c', '3', 'd', '4', 'e', '5'];
  assert.equal(status('GET', '/', six), 0);
  assert.equal(status('GET', '/', [...six, 'f', '6']), 431);
  // bytes: each line is name + ": " + value + CRLF
  const big = (n: number) => [...H, 'x', 'v'.repeat(n)]; // host line = 4+9+4 = 17; x line = 1+n+4
  assert.equal(status('GET', '/', big(200 - 17 - 5)), 0);
  assert.equal(status('GET', '/', big(200 - 17 - 5 + 1)), 431);
});

test('header names must be tokens', () => {
  for (const bad of ['', 'a b', 'a:b', 'a@b', 'a"b', 'a\x00b', 'a\tb', 'caf\u00e9', '(x)', 'a/b']) {
    assert.equal(status('GET', '/', [...H, bad, 'v']), 400, JSON.stringify(bad));
  }
  for (const good of ['x-a', "!#$%&'*+-.^_`|~", 'a_b', 'X-Upper']) {
    assert.equal(status('GET', '/', [...H, good, 'v']), 0, JSON.stringify(good));
  }
});

test('header values: no CTL except HTAB, no DEL; obs-text passes', () => {
  for (let c = 0; c < 0x20; c++) {
    const expected = c === 0x09 ? 0 : 400;
    assert.equal(status('GET', '/', [...H, 'x', `a${String.fromCharCode(c)}b`]), expected, `0x${c.toString(16)}`);
  }
  assert.equal(status('GET', '/', [...H, 'x', 'a\x7fb']), 400);
  assert.equal(status('GET', '/', [...H, 'x', 'caf\u00e9 \u00ff']), 0);
  assert.equal(status('GET', '/', [...H, 'x', '']), 0, 'empty value is fine');
});

test('Content-Length: 1*DIGIT only, once, within max_body_bytes', () => {
  const cl = (v: string) => run('POST', '/', [...H, 'content-length', v]);
  assert.equal(cl('0').contentLength, 0);
  assert.equal(cl('42').contentLength, 42);
  assert.equal(cl('007').contentLength, 7, 'leading zeros are 1*DIGIT: accepted');
  assert.equal(cl('100').status, 0);
  assert.equal(cl('101').status, 413);
  for (const bad of ['', '+1', '-1', '0x10', '1e3', '1.0', ' 1', '1 ', '1 0', '1,1', '1, 1', '١', '1000000000000000']) {
    assert.equal(cl(bad).status, 400, JSON.stringify(bad));
    assert.equal(cl(bad).reason, 'invalid Content-Length');
  }
  const unlimited = { ...LIMITS, max_body_bytes: 0 };
  assert.equal(run('POST', '/', [...H, 'content-length', '999999999999999'], '', unlimited).contentLength, 999999999999999);
  assert.equal(status('POST', '/', [...H, 'content-length', '3', 'content-length', '3']), 400, 'equal duplicates refused too');
  assert.equal(status('POST', '/', [...H, 'content-length', '3', 'content-length', '4']), 400);
});

test('Transfer-Encoding: 501 for any coding, 400 with Content-Length in either order or when repeated', () => {
  const te = (v: string) => status('POST', '/', [...H, 'transfer-encoding', v]);
  assert.equal(te('chunked'), 501);
  assert.equal(out.reason, 'chunked request bodies are not supported');
  for (const v of ['xchunked', 'chunked, identity', 'identity', 'gzip, chunked', 'chunked ,', '']) {
    assert.equal(te(v), 501, JSON.stringify(v));
    assert.equal(out.reason, 'unsupported Transfer-Encoding');
  }
  assert.equal(status('POST', '/', [...H, 'transfer-encoding', 'chunked', 'content-length', '3']), 400);
  assert.equal(status('POST', '/', [...H, 'content-length', '3', 'transfer-encoding', 'chunked']), 400);
  assert.equal(out.reason, 'Transfer-Encoding with Content-Length');
  assert.equal(status('POST', '/', [...H, 'transfer-encoding', 'chunked', 'transfer-encoding', 'chunked']), 400);
});

test('acceptChunked lets exactly "chunked" through and nothing else', () => {
  const c = new RequestCheck(true);
  assert.equal(run('POST', '/', [...H, 'transfer-encoding', 'chunked'], '', LIMITS, c).status, 0);
  assert.equal(c.chunked, true);
  assert.equal(c.contentLength, -1);
  assert.equal(run('POST', '/', [...H, 'transfer-encoding', 'Chunked'], '', LIMITS, c).status, 501, 'only the lower-case spelling (TE.TE probe)');
  assert.equal(run('POST', '/', [...H, 'transfer-encoding', 'gzip, chunked'], '', LIMITS, c).status, 501);
  assert.equal(c.chunked, false);
  assert.equal(run('POST', '/', [...H, 'transfer-encoding', 'chunked', 'content-length', '1'], '', LIMITS, c).status, 400);
});

test('Host: exactly one, valid characters, optional numeric port', () => {
  assert.equal(status('GET', '/', []), 400);
  assert.equal(out.reason, 'missing Host');
  assert.equal(status('GET', '/', [...H, 'host', 'wisp.test']), 400);
  assert.equal(out.reason, 'repeated Host');
  for (const good of ['a', 'wisp.test', 'WISP.test:8080', '127.0.0.1', '127.0.0.1:1', '[::1]', '[::1]:443', '[2001:db8::ff]', 'xn--caf-dma.test', 'a_b.test']) {
    assert.equal(status('GET', '/', ['host', good]), 0, good);
    assert.equal(out.host, good);
  }
  for (const bad of ['', ' ', 'a b', 'a/b', 'u@a', 'a,b', 'a:', 'a:x', 'a:123456', 'a:1:2', ':80', '[::1', '[]', '[::1]x', '[::g]', 'caf\u00e9', 'a\\b', 'a%2fb', 'a?b', 'a#b']) {
    assert.equal(status('GET', '/', ['host', bad]), 400, JSON.stringify(bad));
    assert.equal(out.reason, 'invalid Host');
  }
});

test('Expect: 100-continue sets expectContinue; anything else is 417', () => {
  assert.equal(run('POST', '/', [...H, 'expect', '100-Continue', 'content-length', '1']).expectContinue, true);
  assert.equal(status('GET', '/', [...H, 'expect', 'teapot']), 417);
  assert.equal(status('GET', '/', [...H, 'expect', '']), 417);
  assert.equal(status('POST', '/', [...H, 'expect', '100-continue', 'content-length', '101']), 413);
});

test('Upgrade: websocket only together with Connection: upgrade; other protocols ignored', () => {
  assert.equal(run('GET', '/', [...H, 'connection', 'Upgrade', 'upgrade', 'WebSocket']).upgrade, 'websocket');
  assert.equal(run('GET', '/', [...H, 'upgrade', 'websocket', 'connection', 'keep-alive, upgrade']).upgrade, 'websocket');
  assert.equal(run('GET', '/', [...H, 'upgrade', 'websocket']).upgrade, '', 'no Connection: upgrade');
  const h2c = run('GET', '/', [...H, 'connection', 'Upgrade, HTTP2-Settings', 'upgrade', 'h2c']);
  assert.deepEqual([h2c.status, h2c.upgrade], [0, '']);
  assert.equal(run('GET', '/', [...H, 'connection', 'upgradex', 'upgrade', 'websocket']).upgrade, '');
});

test('Connection: close found in any list position and across repeated headers', () => {
  assert.equal(run('GET', '/', [...H, 'connection', 'close']).connectionClose, true);
  assert.equal(run('GET', '/', [...H, 'connection', 'CLOSE']).connectionClose, true);
  assert.equal(run('GET', '/', [...H, 'connection', 'keep-alive', 'connection', ' close ']).connectionClose, true);
  assert.equal(run('GET', '/', [...H, 'connection', 'closed, keep-alive']).connectionClose, false);
  assert.equal(run('GET', '/', [...H, 'connection', 'keep-alive']).connectionClose, false);
});

test('upper-case header names (a future uWS that stops lower-casing) get the same rules', () => {
  assert.equal(status('POST', '/', ['Host', 'a', 'Content-Length', '1', 'CONTENT-LENGTH', '1']), 400);
  assert.equal(status('POST', '/', ['Host', 'a', 'Transfer-Encoding', 'chunked']), 501);
  assert.equal(status('GET', '/', ['Host', 'a', 'HOST', 'b']), 400);
  const r = run('POST', '/', ['Host', 'a', 'Content-Length', '9']);
  assert.deepEqual([r.status, r.contentLength, r.host], [0, 9, 'a']);
});

test('the first problem found decides: request line before headers', () => {
  assert.equal(status('CONNECT', '/', []), 501);
  assert.equal(status('GET', '/' + 'a'.repeat(100), []), 414);
  assert.equal(status('GET', '/', ['host', 'a', 'host', 'b', 'transfer-encoding', 'x']), 400);
});
