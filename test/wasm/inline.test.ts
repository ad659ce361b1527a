// `workers: 0`: the filters run on the event-loop thread (wasm/inline-channel.ts). Same
// answers as from a worker thread, traps and max_memory still handled, no thread started;
// and a running Wisp configured so forwards through its filters.
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { httpGet } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';
import { filterConfig, fixture, requestThrough, header, TestStream } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const logs: string[] = [];
let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 0, log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
  await rt.load(filterConfig('probe-a', fixture('probe.wasm'), { config: 'A' }));
  await rt.load(filterConfig('probe-b', fixture('probe.wasm'), { config: 'B' }));
  await rt.load(filterConfig('closed', fixture('probe.wasm'), { config: 'C', failure: 'closed' }));
  await rt.load(filterConfig('small', fixture('probe.wasm'), { config: 'S', failure: 'open', max_memory_bytes: 8 * 1024 * 1024 }));
});

after(async () => {
  await rt.close();
});

const run = (names: string[], headers: string[] = []): Promise<TestStream> => requestThrough(rt, names, headers);

test('workers: 0 starts no thread and runs the chain in order, request and response', async () => {
  assert.equal(rt.workerCount, 0);
  const chain = rt.chain(['probe-a', 'probe-b']);
  const s = new TestStream();
  chain.requestHeaders(s);
  assert.deepEqual(await s.next(), { kind: 'continue', phase: 'request_headers' });
  assert.equal(s.header('x-probe'), 'A,B');
  s.responseStatus = 200;
  s.responseHeaders = ['content-type', 'text/plain'];
  chain.responseHeaders(s);
  assert.deepEqual(await s.next(), { kind: 'continue', phase: 'response_headers' });
  chain.done(s);
  assert.equal(rt.servingWorkers, 0);
});

test('the answer comes after the call, never from inside it (as from a thread)', async () => {
  const chain = rt.chain(['probe-a']);
  const s = new TestStream();
  chain.requestHeaders(s);
  assert.equal(s.outcomes.length, 0);
  await s.next();
  assert.equal(s.outcomes.length, 1);
  chain.done(s);
});

test('a local response stops the chain', async () => {
  const s = await run(['probe-a', 'probe-b'], ['x-action', 'deny']);
  const o = s.outcomes[0];
  assert.equal(o.kind, 'local');
  if (o.kind !== 'local') return;
  assert.equal(o.status, 403);
  assert.equal(header(o.headers, 'x-denied-by'), 'A');
});

test('many streams in one turn each get their own answer', async () => {
  const chain = rt.chain(['probe-a']);
  const streams: TestStream[] = [];
  for (let i = 0; i < 200; i++) {
    const s = new TestStream(i % 4 === 0 ? ['x-action', 'deny'] : []);
    streams.push(s);
    chain.requestHeaders(s);
  }
  for (let i = 0; i < streams.length; i++) {
    const o = await streams[i].next();
    assert.equal(o.kind, i % 4 === 0 ? 'local' : 'continue', `stream ${i}`);
    chain.done(streams[i]);
  }
});

test('a trap gets the failure policy and a fresh instance, on this thread too', async () => {
  const s = await run(['closed'], ['x-action', 'trap']);
  const o = s.outcomes[0];
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') assert.equal(o.status, 503);
  const ok = await run(['closed']);
  assert.equal(ok.header('x-probe'), 'C');
  assert.ok(logs.some((l) => l.includes('closed fault: trap in proxy_on_request_headers')), logs.join('\n'));
});

test('memory past max_memory_bytes recycles the instance', async () => {
  const s = await run(['small'], ['x-action', 'grow']);
  assert.equal(s.outcomes[0].kind, 'continue');
  assert.ok(logs.some((l) => l.includes('exceeds max_memory_bytes')));
  assert.equal((await run(['small'])).header('x-probe'), 'S');
});

test('a running Wisp with workers: 0 forwards through its filters and hot-reloads them', async () => {
  const { upstream: up, port, adminPort, stop } = await startWispWithFilters({
    file: 'inline.test',
    workers: 0,
    chain: ['tag', 'auth'],
    filters: [
      { name: 'tag', wasm: path.join(ROOT, 'filters', 'build', 'add-header.wasm'), config: 'inline-1' },
      { name: 'auth', wasm: path.join(ROOT, 'filters', 'build', 'auth.wasm'), config: { keys: ['k1'], query_param: 'api_key' } },
    ],
  });
  try {
    const ok = await httpGet(port, '/x?api_key=k1');
    assert.equal(ok.status, 200);
    assert.equal(up.requests.length, 1);
    assert.ok(JSON.stringify(up.requests[0].headers).includes('inline-1'), JSON.stringify(up.requests[0].headers));
    const denied = await httpGet(port, '/x');
    assert.equal(denied.status, 401);
    assert.equal(up.requests.length, 1, 'the refused request never reached the upstream');
    // A hot reload instantiates the new generation on this thread too; requests go on.
    const generation = async (): Promise<number> => {
      const list = JSON.parse((await httpGet(adminPort, '/filters')).body) as Array<{ name: string; generation: number }>;
      return list.find((f) => f.name === 'tag')!.generation;
    };
    const before = await generation();
    const reload = await httpGet(adminPort, '/filters/tag/reload', { method: 'POST' });
    assert.equal(reload.status, 200, reload.body);
    assert.ok((await generation()) > before);
    assert.equal((await httpGet(port, '/y?api_key=k1')).status, 200);
    assert.ok(JSON.stringify(up.requests[1].headers).includes('inline-1'));
  } finally {
    await stop();
  }
});
