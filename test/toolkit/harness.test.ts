// wisp/testing's FilterHarness itself, with the wasm host's test fixtures: pause on an http
// call and resume, local answers from the callback, traps, refused configs, ABI 0.1.0, and
// the ways to pass a module.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { FilterHarness, headerValue } from '../../proxy/testing/index.js';
import { fixture } from '../wasm/helpers.js';

const PROBE = fixture('probe.wasm');
const callout = (path: string) => ({ headers: { 'x-action': 'callout', 'x-callout-path': path } });

test('a request paused on an http call resumes with the answer, in the same context', async () => {
  const h = await FilterHarness.load(PROBE, { name: 'gate', config: 'G' });
  const r = h.request(callout('/allow'));
  assert.equal(r.action, 'pause');
  assert.equal(h.httpCalls.length, 1);
  const call = h.httpCalls[0];
  assert.equal(call.stream, r.stream);
  assert.equal(headerValue(call.headers, ':path'), '/allow');
  assert.equal(headerValue(call.headers, ':method'), 'GET');
  const resumed = h.httpCallResponse(call.token, { status: 200, headers: { 'content-type': 'text/plain' }, body: 'granted' });
  assert.equal(resumed?.action, 'continue');
  assert.equal(resumed?.header('x-callout'), 'granted');
  assert.equal(h.response({ status: 200 }).header('x-probe-response'), 'G', 'the context survived the pause');
  h.done();
  assert.throws(() => h.httpCallResponse(call.token, null), /no pending http call/);
});

test('the http call callback may answer locally; a failed call arrives as no response', async () => {
  const h = await FilterHarness.load(PROBE, { name: 'gate', config: 'G' });
  h.request(callout('/nope'));
  const denied = h.httpCallResponse(h.httpCalls[0].token, { status: 403 });
  assert.equal(denied?.action, 'local');
  assert.equal(denied?.status, 403);
  assert.equal(denied?.body, 'callout said 403');
  assert.equal(headerValue(denied!.local!.headers, 'x-callout-status'), '403');
  h.done();
  h.request(callout('/allow'));
  const failed = h.httpCallResponse(h.httpCalls[1].token, null);
  assert.equal(failed?.body, 'callout said nothing');
});

test('a trap throws with the phase, and the harness goes on with a fresh instance', async () => {
  const h = await FilterHarness.load(PROBE, { name: 'p', config: 'P' });
  assert.throws(() => h.request({ headers: { 'x-action': 'trap' } }), /^Error: trap in proxy_on_request_headers \(request 1\): /);
  assert.equal(h.request({ path: '/' }).action, 'continue');
});

test('a module whose configure refuses rejects load; ABI 0.1.0 modules run too', async () => {
  await assert.rejects(FilterHarness.load(fixture('configure-false.wasm')), /proxy_on_configure returned false/);
  const v010 = await FilterHarness.load(fixture('v010.wasm'), { config: 'B' });
  assert.equal(v010.request({ path: '/' }).header('x-abi'), '0.1.0:B');
});

test('a module can be given as a path, a file: URL, bytes or a compiled Module', async () => {
  const bytes = readFileSync(PROBE);
  const forms = [PROBE, pathToFileURL(PROBE), new Uint8Array(bytes), new WebAssembly.Module(bytes)];
  for (const form of forms) {
    const h = await FilterHarness.load(form, { config: 'F' });
    const r = h.exchange({ path: '/' });
    assert.equal(r.action, 'continue');
    assert.equal(r.header('x-probe-response'), 'F');
  }
});

test('body chunks: buffered by the filter until the end, then checked whole; limits as in Wisp', async () => {
  const h = await FilterHarness.load(fixture('body-guard.wasm'), { name: 'guard', maxBodyBytes: 64 });
  h.request({ method: 'POST', path: '/q', endOfStream: false });
  assert.equal(h.requestBody('select 1; DROP ', false).action, 'buffer');
  const denied = h.requestBody('TABLE users', true);
  assert.equal(denied.action, 'local');
  assert.equal(denied.status, 400);
  h.done();

  h.request({ method: 'POST', path: '/q', endOfStream: false });
  assert.equal(h.requestBody('hello ', false).action, 'buffer');
  const ok = h.requestBody('world', true);
  assert.equal(ok.action, 'continue');
  assert.equal(ok.forwarded, 'hello world', 'everything buffered goes on at the end');
  h.response({ status: 200, endOfStream: false });
  assert.equal(h.responseBody('a SECRET', true).status, 502);
  h.done();

  h.request({ method: 'POST', path: '/big', endOfStream: false });
  const big = h.requestBody('x'.repeat(65), false);
  assert.equal(big.status, 413);
  assert.match(big.local!.body, /request body too large for filter guard/);
});

test('a body filter that rewrites the chunk: the forwarded bytes are its replacement', async () => {
  const h = await FilterHarness.load(fixture('body-upper.wasm'));
  h.request({ method: 'POST', endOfStream: false });
  const r = h.requestBody('abc', true);
  assert.equal(r.action, 'continue');
  assert.equal(r.forwarded, 'ABC');
});
