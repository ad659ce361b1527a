// Body phases through the filter runtime: real AssemblyScript fixtures in real worker
// threads, called the way the request path calls them (chunks in order, answers in order).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { BodyPhase, type BodyFilterPhase, type FilterPhase, type FilterStream } from '../../proxy/filters/types.js';
import { filterConfig, fixture } from './helpers.js';
import { waitFor } from '../helpers/net.js';

let nextId = 1_000_000;

type Answer =
  | { kind: 'continue'; phase: FilterPhase }
  | { kind: 'body'; phase: BodyFilterPhase; data: string; end: boolean }
  | { kind: 'local'; status: number; headers: string[]; body: string };

/** A stream that records every answer of the chain, in order. */
class BodyStream implements FilterStream {
  readonly streamId = nextId++;
  method = 'POST';
  scheme = 'http';
  authority = 'example.test';
  path = '/upload';
  clientAddress = '127.0.0.1';
  clientPort = 40000;
  listenerName = 'public';
  routeName = 'r';
  clusterName = 'c';
  requestId = `body-${this.streamId}`;
  requestHeaders: string[] = ['host', 'example.test', 'content-type', 'text/plain'];
  responseStatus = 200;
  responseHeaders: string[] = ['content-type', 'text/plain'];
  readonly answers: Answer[] = [];

  onFilterContinue(phase: FilterPhase): void {
    this.answers.push({ kind: 'continue', phase });
  }
  onFilterLocalResponse(status: number, headers: string[], body: Uint8Array): void {
    this.answers.push({ kind: 'local', status, headers, body: Buffer.from(body).toString() });
  }
  onFilterBody(phase: BodyFilterPhase, data: Uint8Array, end: boolean): void {
    this.answers.push({ kind: 'body', phase, data: Buffer.from(data).toString(), end });
  }

  async until(count: number, timeoutMs = 5000): Promise<Answer[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.answers.length < count) {
      if (Date.now() > deadline) throw new Error(`stream ${this.streamId}: ${this.answers.length}/${count} answers: ${JSON.stringify(this.answers)}`);
      await new Promise((r) => setImmediate(r));
    }
    return this.answers;
  }
}

const logs: string[] = [];
let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 2, log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`), watchdogIntervalMs: 5 });
  await rt.load(filterConfig('probe', fixture('probe.wasm'), { config: 'P' }));
  await rt.load(filterConfig('upper', fixture('body-upper.wasm')));
  await rt.load(filterConfig('append', fixture('body-append.wasm'), { config: '+tail' }));
  await rt.load(filterConfig('guard', fixture('body-guard.wasm'), { max_body_bytes: 1000 }));
  await rt.load(filterConfig('guard-open', fixture('body-guard.wasm'), { failure: 'open', max_body_bytes: 1000, deadline_ms: 150 }));
  await rt.load(filterConfig('guard-closed', fixture('body-guard.wasm'), { failure: 'closed', max_body_bytes: 1000, deadline_ms: 150 }));
});

after(async () => {
  await rt.close();
});

async function headersDone(names: string[]): Promise<{ s: BodyStream; chain: ReturnType<WasmFilterRuntime['chain']> }> {
  const chain = rt.chain(names);
  const s = new BodyStream();
  chain.requestHeaders(s);
  await s.until(1);
  assert.deepEqual(s.answers[0], { kind: 'continue', phase: 'request_headers' });
  return { s, chain };
}

test('bodyPhases: read from the exports of the generations a stream is pinned to', async () => {
  for (const [names, want] of [
    [['probe'], 0],
    [['upper'], BodyPhase.Request],
    [['append'], BodyPhase.Request | BodyPhase.Response],
    [['probe', 'upper'], BodyPhase.Request],
  ] as const) {
    const { s, chain } = await headersDone([...names]);
    assert.equal(chain.bodyPhases(s), want, names.join(','));
    chain.done(s);
  }
  assert.equal(rt.chain(['upper']).bodyPhases(new BodyStream()), 0, 'a stream that never reached the chain has none');
});

test('request body: each chunk is answered in order, replaced through set_buffer_bytes', async () => {
  const { s, chain } = await headersDone(['upper']);
  chain.requestBody(s, Buffer.from('hello '), false);
  chain.requestBody(s, Buffer.from('wasm '), false);
  chain.requestBody(s, Buffer.from('world'), true);
  const a = await s.until(4);
  assert.deepEqual(a.slice(1), [
    { kind: 'body', phase: 'request_body', data: 'HELLO ', end: false },
    { kind: 'body', phase: 'request_body', data: 'WASM ', end: false },
    { kind: 'body', phase: 'request_body', data: 'WORLD', end: true },
  ]);
  chain.done(s);
});

test('chain order: request bodies go first to last, response bodies last to first', async () => {
  const { s, chain } = await headersDone(['upper', 'append']);
  chain.requestBody(s, Buffer.from('abc'), true);
  await s.until(2);
  // upper ran first, then append added its (lower-case) suffix.
  assert.deepEqual(s.answers[1], { kind: 'body', phase: 'request_body', data: 'ABC+tail', end: true });
  chain.responseHeaders(s);
  await s.until(3);
  chain.responseBody(s, Buffer.from('xyz'), false);
  chain.responseBody(s, new Uint8Array(0), true);
  await s.until(5);
  assert.deepEqual(s.answers.slice(3), [
    { kind: 'body', phase: 'response_body', data: 'xyz', end: false },
    { kind: 'body', phase: 'response_body', data: '+tail', end: true },
  ]);
  chain.done(s);
});

test('StopIterationAndBuffer: bytes are held and handed back whole at the end', async () => {
  const { s, chain } = await headersDone(['guard']);
  chain.requestBody(s, Buffer.from('select * '), false);
  chain.requestBody(s, Buffer.from('from t '), false);
  chain.requestBody(s, Buffer.from('where 1'), true);
  const a = await s.until(4);
  assert.deepEqual(a.slice(1), [
    { kind: 'body', phase: 'request_body', data: '', end: false },
    { kind: 'body', phase: 'request_body', data: '', end: false },
    { kind: 'body', phase: 'request_body', data: 'select * from t where 1', end: true },
  ]);
  chain.done(s);
});

test('a buffering filter answers locally on what it sees in the whole body', async () => {
  const { s, chain } = await headersDone(['guard']);
  chain.requestBody(s, Buffer.from('x; DROP '), false);
  chain.requestBody(s, Buffer.from('TABLE users'), true);
  const a = await s.until(3);
  assert.deepEqual(a[1], { kind: 'body', phase: 'request_body', data: '', end: false });
  const local = a[2];
  assert.equal(local.kind, 'local');
  if (local.kind === 'local') {
    assert.equal(local.status, 400);
    assert.equal(local.body, 'rejected: sql in body');
  }
  chain.done(s);
});

test('max_body_bytes: a request body buffered past it is answered 413, a response 500', async () => {
  const { s, chain } = await headersDone(['guard']);
  chain.requestBody(s, Buffer.alloc(600, 'a'), false);
  chain.requestBody(s, Buffer.alloc(600, 'b'), false);
  const a = await s.until(3);
  assert.equal(a[1].kind, 'body');
  assert.equal(a[2].kind === 'local' && a[2].status, 413);
  chain.done(s);

  const r = await headersDone(['guard']);
  r.chain.requestBody(r.s, Buffer.from('ok'), true);
  await r.s.until(2);
  r.chain.responseHeaders(r.s);
  await r.s.until(3);
  r.chain.responseBody(r.s, Buffer.alloc(1001, 'c'), false);
  const b = await r.s.until(4);
  assert.equal(b[3].kind === 'local' && b[3].status, 500);
  r.chain.done(r.s);
});

test('trap in a body call: fail-open passes the (held) bytes on, fail-closed answers 503', async () => {
  const open = await headersDone(['guard-open']);
  open.chain.requestBody(open.s, Buffer.from('a TRAP '), false);
  open.chain.requestBody(open.s, Buffer.from('here'), true);
  const a = await open.s.until(3);
  assert.deepEqual(a[2], { kind: 'body', phase: 'request_body', data: 'a TRAP here', end: true });
  open.chain.done(open.s);

  const closed = await headersDone(['guard-closed']);
  closed.chain.requestBody(closed.s, Buffer.from('TRAP'), true);
  const b = await closed.s.until(2);
  assert.equal(b[1].kind === 'local' && b[1].status, 503);
  closed.chain.done(closed.s);
  await waitFor(() => logs.some((l) => l.includes('trap in proxy_on_request_body')), 5000, 'the trap logged');
});

test('deadline in a body call: the worker is replaced; held bytes are lost so even fail-open answers 503', async () => {
  const held = await headersDone(['guard-open']);
  held.chain.requestBody(held.s, Buffer.from('spin: '), false);
  await held.s.until(2); // answered: the worker now holds 'spin: '
  held.chain.requestBody(held.s, Buffer.from('LOOP'), true);
  const a = await held.s.until(3, 10_000);
  assert.equal(a[2].kind === 'local' && a[2].status, 503, JSON.stringify(a[2]));
  held.chain.done(held.s);

  // Nothing held before the lost batch (its chunks are still on the main thread): fail-open
  // lets them through as they came, in order.
  const whole = await headersDone(['guard-open']);
  whole.chain.requestBody(whole.s, Buffer.from('first, '), false);
  whole.chain.requestBody(whole.s, Buffer.from('LOOP once'), true);
  const b = await whole.s.until(3, 10_000);
  assert.deepEqual(b.slice(1), [
    { kind: 'body', phase: 'request_body', data: 'first, ', end: false },
    { kind: 'body', phase: 'request_body', data: 'LOOP once', end: true },
  ]);
  whole.chain.done(whole.s);
  assert.ok(logs.some((l) => l.includes('ran past its deadline')), logs.join('\n'));
});

test('streams with no body filter are answered unchanged, in order, asynchronously', async () => {
  const { s, chain } = await headersDone(['probe']);
  const chunk = Buffer.from('untouched');
  chain.requestBody(s, chunk, true);
  assert.equal(s.answers.length, 1, 'never answered synchronously');
  await s.until(2);
  assert.deepEqual(s.answers[1], { kind: 'body', phase: 'request_body', data: 'untouched', end: true });
  chain.done(s);
});
