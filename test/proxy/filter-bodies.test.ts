// Body phases through a running Wisp: real client sockets, real upstreams, real wasm
// fixtures (test/fixtures/as/body-*.ts) in real worker threads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startUpstream, httpGet, rawRequest, waitFor, type TestUpstream } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const fixture = (name: string) => path.join(ROOT, 'test', 'fixtures', `${name}.wasm`);

const BIG = 5 * 1024 * 1024;

/** Upstream for the big-body tests: hashes request bodies as they stream (so the test
 * process does not hold them), and streams a BIG response from a pattern. */
interface BigUpstream {
  port: number;
  received: number;
  requests: { headers: http.IncomingHttpHeaders; bytes: number; sha256: string }[];
  close(): Promise<void>;
}

function pattern(offset: number, length: number): Buffer {
  // Upper-case letters only, so the upper-casing filter must leave it unchanged.
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = 65 + ((offset + i) % 26);
  return b;
}

async function startBigUpstream(): Promise<BigUpstream> {
  const state: BigUpstream = { port: 0, received: 0, requests: [], close: async () => {} };
  const server = http.createServer((req, res) => {
    if (req.url?.endsWith('/big-response')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG) });
      let sent = 0;
      const more = (): void => {
        while (sent < BIG) {
          const n = Math.min(64 * 1024, BIG - sent);
          const ok = res.write(pattern(sent, n));
          sent += n;
          if (!ok) return void res.once('drain', more);
        }
        res.end();
      };
      return more();
    }
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
      state.received += c.length;
    });
    req.on('end', () => {
      state.requests.push({ headers: req.headers, bytes, sha256: hash.digest('hex') });
      res.end(JSON.stringify({ bytes }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as AddressInfo).port;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}

let up: TestUpstream;
let authz: TestUpstream;
let big: BigUpstream;
let port: number;
let stop: (() => Promise<void>) | undefined;

before(async () => {
  big = await startBigUpstream();
  authz = await startUpstream((_req, res) => res.end('authz-said-ok'));
  ({ port, upstream: up, stop } = await startWispWithFilters({
    file: 'filter-bodies.test',
    workers: 2,
    upstream: (req, res, body) => {
      if (req.url?.includes('secret')) return void res.end('the SECRET is out');
      if (req.url?.includes('callout')) res.setHeader('x-callout', 'yes');
      res.setHeader('content-type', 'text/plain');
      res.end(`got ${body.length}: ${body.toString()}`);
    },
    routes: [
      { match: { prefix: '/upper/' }, filters: ['upper'] },
      { match: { prefix: '/append/' }, filters: ['append'] },
      { match: { prefix: '/guard/' }, filters: ['guard'] },
      { match: { prefix: '/headers-only/' }, filters: ['headers-only'] },
      { match: { prefix: '/big-append/' }, cluster: 'big', filters: ['append'] },
      { match: { prefix: '/big-upper/' }, cluster: 'big', filters: ['upper'] },
      { match: { prefix: '/big-response' }, cluster: 'big', filters: ['append'] },
      { match: { prefix: '/big-headers-only/' }, cluster: 'big', filters: ['headers-only'] },
      { match: { prefix: '/plain/' }, cluster: 'big' },
    ],
    clusters: { big: big.port, authz: authz.port },
    filters: [
      { name: 'upper', wasm: fixture('body-upper') },
      { name: 'append', wasm: fixture('body-append'), config: '+tail' },
      { name: 'guard', wasm: fixture('body-guard'), max_body: '64KiB' },
      // Exports no body callbacks (the sdk-as filters export them all, used or not).
      { name: 'headers-only', wasm: fixture('probe'), config: 'p' },
    ],
  }));
});

after(async () => {
  await stop?.();
  await big?.close();
  await authz?.close();
});

/** POST a body written in pieces, waiting for `between` before each piece after the first. */
function postPieces(p: string, pieces: Buffer[], between?: () => Promise<unknown>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method: 'POST', agent: false, headers: { 'content-length': String(pieces.reduce((n, b) => n + b.length, 0)) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    void (async () => {
      for (let i = 0; i < pieces.length; i++) {
        if (i > 0 && between !== undefined) await between();
        // Respect backpressure, so that what piles up is Wisp's doing, not the client's.
        if (!req.write(pieces[i])) await new Promise((r) => req.once('drain', r));
      }
      req.end();
    })();
  });
}

test('request body filter: the upstream gets the upper-cased body with an exact Content-Length', async () => {
  const before = up.requests.length;
  const r = await httpGet(port, '/upper/a', { method: 'POST', body: 'hello, body filters' });
  assert.equal(r.status, 200);
  const seen = up.requests[before]!;
  assert.equal(seen.body.toString(), 'HELLO, BODY FILTERS');
  // Emitted whole with the end of the body: sent with its length, not chunked.
  assert.equal(seen.headers['content-length'], String('HELLO, BODY FILTERS'.length));
  assert.equal(seen.headers['transfer-encoding'], undefined);
});

test('a filter that changes the size: small bodies get the new Content-Length, streamed ones go chunked', async () => {
  const before = up.requests.length;
  const r1 = await httpGet(port, '/append/small', { method: 'POST', body: 'abc' });
  assert.equal(r1.status, 200);
  const seen = up.requests[before]!;
  assert.equal(seen.body.toString(), 'abc+tail');
  assert.equal(seen.headers['content-length'], '8');

  // A body sent in pieces, the second only once the upstream is receiving the first: the
  // upstream request started before the end of the body, so it is chunked.
  const start = big.received;
  const pieces = [Buffer.alloc(20_000, 'x'), Buffer.alloc(20_000, 'y')];
  const r2 = await postPieces('/big-append/streamed', pieces, () => waitFor(() => big.received > start, 5000, 'first piece upstream'));
  assert.equal(r2.status, 200);
  const got = big.requests[big.requests.length - 1]!;
  assert.equal(got.headers['transfer-encoding'], 'chunked');
  assert.equal(got.headers['content-length'], undefined);
  assert.equal(got.bytes, 40_000 + '+tail'.length);
  assert.equal(got.sha256, createHash('sha256').update('x'.repeat(20_000) + 'y'.repeat(20_000) + '+tail').digest('hex'));
});

test('response body filter: the client gets the appended body with framing that matches it', async () => {
  // Read whole, the response becomes one body call with the end: exact Content-Length.
  const r = await rawRequest(port, 'GET /append/r HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', { idleMs: 2000 });
  assert.equal(r.status, 200);
  const cut = r.text.indexOf('\r\n\r\n');
  const head = r.text.slice(0, cut);
  const body = r.text.slice(cut + 4);
  assert.equal(body, 'got 0: +tail');
  assert.match(head, new RegExp(`\r\ncontent-length: ${body.length}\r?(\n|$)`, 'i'), head);
  assert.doesNotMatch(head, /transfer-encoding/i);
});

test('response body filter on a streamed response: chunked to the client, de-chunks to the appended body', { timeout: 30_000 }, async () => {
  const r = await rawRequest(port, 'GET /big-response HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', { idleMs: 3000, timeoutMs: 20_000 });
  assert.equal(r.status, 200);
  const cut = r.text.indexOf('\r\n\r\n');
  const head = r.text.slice(0, cut);
  assert.match(head, /\r\ntransfer-encoding: chunked/i);
  assert.doesNotMatch(head, /\r\ncontent-length:/i, 'the upstream Content-Length no longer describes the body');
  // De-chunk by hand: the node client would hide a framing error.
  let at = cut + 4;
  let bytes = 0;
  let tail = '';
  const text = r.text;
  for (let guard = 0; guard < 100_000; guard++) {
    const eol = text.indexOf('\r\n', at);
    const size = parseInt(text.slice(at, eol), 16);
    assert.ok(Number.isInteger(size), `chunk size at ${at}`);
    if (size === 0) break;
    bytes += size;
    tail = (tail + text.slice(eol + 2, eol + 2 + size)).slice(-16);
    at = eol + 2 + size + 2;
  }
  assert.equal(bytes, BIG + '+tail'.length);
  assert.ok(tail.endsWith('+tail'));
});

test('response body calls that arrive while the response headers wait on an http call run after it', async () => {
  const r = await httpGet(port, '/append/callout');
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-callout-body'], 'authz-said-ok');
  assert.equal(r.body, 'got 0: +tail');
  assert.ok(authz.requests.length >= 1);
});

test('a buffering filter rejects a body with 400 and no upstream request is ever started', async () => {
  const before = up.requests.length;
  const r = await postPieces('/guard/q', [Buffer.from('name=x; DROP '), Buffer.from('TABLE users;')], () => new Promise((res) => setImmediate(res)));
  assert.equal(r.status, 400);
  assert.equal(r.headers['x-guard'], 'sql');
  assert.equal(r.body, 'rejected: sql in body');
  const ok = await httpGet(port, '/guard/q', { method: 'POST', body: 'name=robert' });
  assert.equal(ok.status, 200);
  assert.equal(up.requests.length, before + 1, 'only the clean body reached the upstream');
  assert.equal(up.requests[before]!.body.toString(), 'name=robert');
  assert.equal(up.requests[before]!.headers['content-length'], '11');
});

test('a body over the filter max_body_bytes while buffered gets 413', async () => {
  const before = up.requests.length;
  const r = await httpGet(port, '/guard/big', { method: 'POST', body: Buffer.alloc(200 * 1024, 'z') });
  assert.equal(r.status, 413);
  assert.equal(up.requests.length, before);
});

test('a response body filter answers locally when nothing was sent to the client yet', async () => {
  const r = await httpGet(port, '/guard/secret');
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-guard'], 'secret');
  assert.equal(r.body, 'response withheld');
});

test('a chain with no body filter keeps the streaming fast path (Content-Length passed as is)', async () => {
  const before = up.requests.length;
  const r = await httpGet(port, '/headers-only/x', { method: 'POST', body: 'plain body' });
  assert.equal(r.status, 200);
  assert.equal(up.requests[before]!.headers['content-length'], '10');
  assert.equal(r.headers['content-length'], String('got 10: plain body'.length));
});

test('5 MB request body through a Continue body filter: intact, and forwarded while the client still sends', { timeout: 30_000 }, async () => {
  const pieces: Buffer[] = [];
  for (let off = 0; off < BIG; off += 256 * 1024) pieces.push(pattern(off, Math.min(256 * 1024, BIG - off)));
  const want = createHash('sha256');
  for (const p of pieces) want.update(p);
  const wantHash = want.digest('hex');
  const startReceived = big.received;
  let piece = 0;
  const r = await postPieces('/big-upper/x', pieces, async () => {
    piece++;
    // Streamed, never held whole: after the first MB the upstream must already be receiving,
    // before the rest is sent. (RSS is not asserted here: in one process with the test and its
    // upstream it moves by tens of MB of young generation and uncollected chunk garbage; the
    // memory bound is measured by `npm run bench -- --stream` over 1 GiB.)
    if (piece === 4) await waitFor(() => big.received > startReceived, 10_000, 'upstream receiving while the client still sends');
  });
  assert.equal(r.status, 200, r.body);
  const seen = big.requests[big.requests.length - 1]!;
  assert.equal(seen.bytes, BIG);
  assert.equal(seen.sha256, wantHash);
});

test('5 MB response through a body filter that appends: intact plus suffix, with client backpressure', { timeout: 30_000 }, async () => {
  const hash = createHash('sha256');
  let bytes = 0;
  let tail = Buffer.alloc(0);
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/big-response', agent: false }, (res) => {
      // A slow reader: pause on every chunk so Wisp sees the client's backpressure.
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        hash.update(c);
        tail = Buffer.concat([tail, c]).subarray(-16);
        res.pause();
        setImmediate(() => res.resume());
      });
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  assert.equal(status, 200);
  assert.equal(bytes, BIG + '+tail'.length);
  assert.equal(tail.subarray(-5).toString(), '+tail');
  const want = createHash('sha256');
  for (let off = 0; off < BIG; off += 64 * 1024) want.update(pattern(off, Math.min(64 * 1024, BIG - off)));
  want.update('+tail');
  assert.equal(hash.digest('hex'), want.digest('hex'));
});

test('5 MB response through a header-only filter: what arrives while the response phase runs is held (reading pauses past 16 KiB), then all of it goes out in order', { timeout: 30_000 }, async () => {
  const got: Buffer[] = [];
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/big-headers-only/big-response', agent: false }, (r) => {
      r.on('data', (c: Buffer) => got.push(c));
      r.on('end', () => resolve(r));
      r.on('error', reject);
    });
    req.on('error', reject);
  });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['x-probe-response'], 'p');
  const body = Buffer.concat(got);
  assert.equal(body.length, BIG);
  assert.ok(body.equals(pattern(0, BIG)), 'bytes intact and in order');
});

test('no filters: a slow client still gets a whole 5 MB Content-Length response (upstream resumed after backpressure)', { timeout: 30_000 }, async () => {
  // Regression: onResponseData returned false without noting that the exchange paused
  // itself, so it was never resumed and the response stalled part way.
  let bytes = 0;
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/plain/big-response', agent: false }, (res) => {
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        res.pause();
        setImmediate(() => res.resume());
      });
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  assert.equal(status, 200);
  assert.equal(bytes, BIG);
});
