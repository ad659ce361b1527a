// Response trailers through a running Wisp: a real node:http upstream sends chunked responses
// with trailers (res.addTrailers), a real AS filter (test/fixtures/as/trailer-meter.ts) reads
// them in proxy_on_response_trailers and counts what it saw in metrics, read on /metrics.
// uWS cannot write trailers to the client: the client gets the whole body without them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Wisp } from '../../proxy/server.js';
import { filterMetric, httpGet, waitFor } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const fixture = (name: string) => path.join(ROOT, 'test', 'fixtures', `${name}.wasm`);

const BODY = 'first part, second part';

/** The trailers-phase http call target: it answers only when the test releases it. */
let authz: http.Server;
const authzHeld: http.ServerResponse[] = [];
let wisp: Wisp;
let port = 0;
let stop: (() => Promise<void>) | undefined;

before(async () => {
  authz = http.createServer((_req, res) => void authzHeld.push(res));
  await new Promise<void>((r) => authz.listen(0, '127.0.0.1', r));
  ({ wisp, port, stop } = await startWispWithFilters({
    file: 'trailers.test',
    // /with-trailers/<sum>: chunked body in two writes, then the trailer x-checksum: <sum>.
    // /chunked/...: chunked without trailers. Anything else: a Content-Length body.
    upstream: (req, res) => {
      const url = req.url ?? '/';
      if (url.includes('/with-trailers/')) {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('first part, ');
        res.addTrailers({ 'x-checksum': url.slice(url.lastIndexOf('/') + 1) });
        res.end('second part');
        return;
      }
      if (url.includes('/chunked/')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first part, ');
        res.end('second part');
        return;
      }
      res.end(BODY);
    },
    routes: [
      { match: { prefix: '/meter/' }, filters: ['meter'] },
      { match: { prefix: '/body-meter/' }, filters: ['append', 'meter'] },
      { match: { prefix: '/answer/' }, filters: ['meter-answer'] },
      { match: { prefix: '/callout/' }, filters: ['meter-callout'] },
      // A filter without proxy_on_response_trailers: the end does not wait for the chain.
      { match: { prefix: '/probe/' }, filters: ['probe'] },
      { match: { prefix: '/direct/' } },
    ],
    clusters: { authz: (authz.address() as AddressInfo).port },
    filters: [
      { name: 'meter', wasm: fixture('trailer-meter') },
      { name: 'meter-answer', wasm: fixture('trailer-meter'), config: 'answer' },
      { name: 'meter-callout', wasm: fixture('trailer-meter'), config: 'callout' },
      { name: 'append', wasm: fixture('body-append'), config: '+tail' },
      { name: 'probe', wasm: fixture('probe'), config: 'p' },
    ],
  }));
});

after(async () => {
  await stop?.();
  for (const res of authzHeld.splice(0)) res.destroy();
  authz.closeAllConnections();
  await new Promise<void>((r) => authz.close(() => r()));
});

interface Got {
  status: number;
  body: string;
  trailers: NodeJS.Dict<string>;
  /** The body ended with its proper framing (not cut by a closed connection). */
  complete: boolean;
  error: string | null;
}

/** GET that also reports trailers, and a cut response instead of throwing. */
function get(p: string): Promise<Got> {
  return new Promise((resolve) => {
    const got: Got = { status: 0, body: '', trailers: {}, complete: false, error: null };
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      got.status = res.statusCode ?? 0;
      res.setEncoding('utf8');
      res.on('data', (c: string) => (got.body += c));
      res.on('error', (err) => (got.error = err.message));
      res.on('close', () => {
        got.complete = res.complete;
        got.trailers = res.trailers;
        resolve(got);
      });
    });
    req.on('error', (err) => {
      got.error = err.message;
      resolve(got);
    });
  });
}

/** A filter metric's value from the admin /metrics page (0 when not defined yet). */
async function metric(filter: string, name: string): Promise<number> {
  return (await filterMetric(wisp.adminPort(), filter, name)) ?? 0;
}

test('a filter reads the upstream trailers in proxy_on_response_trailers; the client gets the whole body', async () => {
  const calls = await metric('meter', 'trailer_calls');
  const r = await get('/meter/with-trailers/abc123');
  assert.equal(r.error, null);
  assert.equal(r.status, 200);
  assert.equal(r.body, BODY);
  assert.equal(r.complete, true);
  // uWS cannot write trailers: none reach the client.
  assert.deepEqual(r.trailers, {});
  // The trailers phase finishes before the response ends, so the counts are already there.
  assert.equal(await metric('meter', 'trailer_checksum_abc123'), 1);
  assert.equal(await metric('meter', 'trailer_calls'), calls + 1);
});

test('responses without trailers never reach proxy_on_response_trailers and are unchanged', async () => {
  const calls = await metric('meter', 'trailer_calls');
  const chunked = await get('/meter/chunked/x');
  assert.equal(chunked.status, 200);
  assert.equal(chunked.body, BODY);
  assert.equal(chunked.complete, true);
  const sized = await get('/meter/sized');
  assert.equal(sized.status, 200);
  assert.equal(sized.body, BODY);
  assert.equal(sized.complete, true);
  assert.equal(await metric('meter', 'trailer_calls'), calls);
});

test('with a response body filter too, the trailers come after the filtered body', async () => {
  const r = await get('/body-meter/with-trailers/after-body');
  assert.equal(r.error, null);
  assert.equal(r.status, 200);
  assert.equal(r.body, BODY + '+tail');
  assert.equal(r.complete, true);
  assert.equal(await metric('meter', 'trailer_checksum_after-body'), 1);
});

test('routes without a trailers filter (no filter, or one without the export) still relay the whole body', async () => {
  for (const p of ['/direct/with-trailers/d', '/probe/with-trailers/p', '/direct/chunked/c']) {
    const r = await get(p);
    assert.equal(r.error, null, p);
    assert.equal(r.status, 200, p);
    assert.equal(r.body, BODY, p);
    assert.equal(r.complete, true, p);
  }
  assert.equal(await metric('meter', 'trailer_checksum_d'), 0);
});

test('a local response from the trailers phase resets the client stream (the head is out)', async () => {
  const r = await get('/answer/with-trailers/late');
  assert.equal(r.status, 200); // the head went out before the trailers arrived
  assert.equal(r.complete, false);
  assert.equal(await metric('meter-answer', 'trailer_checksum_late'), 1);
  // The next request is served normally.
  const next = await get('/direct/with-trailers/again');
  assert.equal(next.body, BODY);
  assert.equal(next.complete, true);
});

test('a filter that pauses the trailers phase on an http call holds the response end until the answer', async () => {
  let done = false;
  const pending = get('/callout/with-trailers/c1').then((r) => {
    done = true;
    return r;
  });
  await waitFor(() => authzHeld.length === 1, 5000, 'the trailers-phase call reached authz');
  // The body is out but the response cannot end before the filter's call is answered.
  assert.equal(done, false);
  const res = authzHeld.shift()!;
  res.writeHead(200);
  res.end('ok');
  const r = await pending;
  assert.equal(r.error, null);
  assert.equal(r.status, 200);
  assert.equal(r.body, BODY);
  assert.equal(r.complete, true);
  assert.equal(await metric('meter-callout', 'trailer_callout_200'), 1);
});

test('a paused trailers phase whose call answers with a local response resets the client stream', async () => {
  const pending = get('/callout/with-trailers/c2');
  await waitFor(() => authzHeld.length === 1, 5000, 'the trailers-phase call reached authz');
  const res = authzHeld.shift()!;
  res.writeHead(503);
  res.end('no');
  const r = await pending;
  // The head and body were out: the only way to fail the response now is to cut it.
  assert.equal(r.complete, false);
  assert.equal(await metric('meter-callout', 'trailer_callout_503'), 1);
});
