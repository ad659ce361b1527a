// The filter runtime end to end with real wasm modules in real worker threads.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { filterConfig, fixture, header, headerValues, TestStream } from './helpers.js';
import { waitFor } from '../helpers/net.js';

const logs: string[] = [];
let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 2, log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
  await rt.load(filterConfig('probe-a', fixture('probe.wasm'), { config: 'A' }));
  await rt.load(filterConfig('probe-b', fixture('probe.wasm'), { config: 'B' }));
});

after(async () => {
  await rt.close();
});

test('request headers: a filter adds a header through the runtime', async () => {
  const chain = rt.chain(['probe-a']);
  const s = new TestStream();
  chain.requestHeaders(s);
  const o = await s.next();
  assert.deepEqual(o, { kind: 'continue', phase: 'request_headers' });
  assert.equal(s.header('x-probe'), 'A');
  assert.equal(s.header('user-agent'), 'test');
  assert.equal(s.header(':path'), undefined, 'pseudo-headers are not handed back to the request path');
  chain.done(s);
});

test('response headers run and contexts live from request to response', async () => {
  const chain = rt.chain(['probe-a', 'probe-b']);
  const s = new TestStream();
  chain.requestHeaders(s);
  await s.next();
  s.responseStatus = 200;
  s.responseHeaders = ['content-type', 'text/plain'];
  chain.responseHeaders(s);
  const o = await s.next();
  assert.deepEqual(o, { kind: 'continue', phase: 'response_headers' });
  // Reverse order: B runs first, then A appends its own header.
  assert.deepEqual(headerValues(s.responseHeaders, 'x-probe-response'), ['B', 'A']);
  assert.equal(s.responseStatus, 200);
  chain.done(s);
});

test('chain of two filters runs in order in one round-trip', async () => {
  const chain = rt.chain(['probe-a', 'probe-b']);
  const s = new TestStream();
  chain.requestHeaders(s);
  await s.next();
  // probe-b saw probe-a's header and appended to it.
  assert.equal(s.header('x-probe'), 'A,B');
  chain.done(s);
});

test('local response stops the chain at the first filter that answers', async () => {
  const chain = rt.chain(['probe-a', 'probe-b']);
  const s = new TestStream(['x-action', 'deny']);
  chain.requestHeaders(s);
  const o = await s.next();
  assert.equal(o.kind, 'local');
  if (o.kind !== 'local') return;
  assert.equal(o.status, 403);
  assert.equal(o.body, 'denied by A');
  assert.equal(header(o.headers, 'x-denied-by'), 'A');
  assert.equal(s.header('x-probe'), undefined, 'probe-b never ran and headers were not replaced');
  chain.done(s);
});

test('many streams in one turn are batched and each gets its own answer', async () => {
  const chain = rt.chain(['probe-a']);
  const streams: TestStream[] = [];
  const sent = rt.batchesSent;
  for (let i = 0; i < 300; i++) {
    const s = new TestStream(i % 3 === 0 ? ['x-action', 'deny'] : ['n', String(i)]);
    streams.push(s);
    chain.requestHeaders(s);
  }
  const outcomes = await Promise.all(streams.map((s) => s.next()));
  // 300 calls made in one turn: one batch per worker, not one per call.
  const batches = rt.batchesSent - sent;
  assert.ok(batches >= 1 && batches <= rt.workerCount, `${batches} batches for 300 calls on ${rt.workerCount} workers`);
  for (let i = 0; i < streams.length; i++) {
    if (i % 3 === 0) assert.equal(outcomes[i].kind, 'local');
    else {
      assert.equal(outcomes[i].kind, 'continue');
      assert.equal(streams[i].header('n'), String(i));
      assert.equal(streams[i].header('x-probe'), 'A');
    }
    chain.done(streams[i]);
  }
});

test(':path rewrite is written back to stream.path', async () => {
  const chain = rt.chain(['probe-a']);
  const s = new TestStream(['x-action', 'path']);
  chain.requestHeaders(s);
  await s.next();
  assert.equal(s.path, '/rewritten');
  chain.done(s);
});

test('properties: request.path and route_name', async () => {
  const chain = rt.chain(['probe-a']);
  const s = new TestStream(['x-action', 'props']);
  chain.requestHeaders(s);
  await s.next();
  assert.equal(s.header('x-prop-path'), '/hello');
  assert.equal(s.header('x-prop-route'), 'route-a');
  chain.done(s);
});

test('non-ASCII header values and paths reach the filter and come back intact (heads are decoded lazily in the worker)', async () => {
  const chain = rt.chain(['probe-a', 'probe-b']);
  const s = new TestStream(['x-action', 'props', 'x-probe', 'café ☕ 𝄞', 'x-other', 'naïve']);
  s.path = '/häus?q=☃';
  chain.requestHeaders(s);
  await s.next();
  assert.equal(s.header('x-probe'), 'café ☕ 𝄞,A,B');
  assert.equal(s.header('x-other'), 'naïve');
  assert.equal(s.header('x-prop-path'), '/häus?q=☃');
  s.responseStatus = 200;
  s.responseHeaders = ['x-resp', 'ünïcödé'];
  chain.responseHeaders(s);
  await s.next();
  assert.equal(s.responseHeader('x-resp'), 'ünïcödé');
  assert.equal(s.responseHeader('x-probe-response'), 'B');
  chain.done(s);
});

test('wisp.skip_phases while configuring: the chain reports the response phase skippable; an unknown phase is refused', async () => {
  await rt.load(filterConfig('skipper', fixture('probe.wasm'), { config: 'skip-response' }));
  await rt.load(filterConfig('bogus', fixture('probe.wasm'), { config: 'skip-bogus' }));
  const s = new TestStream();
  const skipping = rt.chain(['skipper']);
  skipping.requestHeaders(s);
  await s.next();
  assert.equal(skipping.handlesResponseHeaders(s), false);
  skipping.done(s);
  const t = new TestStream();
  const mixed = rt.chain(['skipper', 'probe-a']);
  mixed.requestHeaders(t);
  await t.next();
  assert.equal(mixed.handlesResponseHeaders(t), true);
  // Sent anyway (a chain with one filter that wants it): the skipping filter is not called.
  t.responseStatus = 200;
  mixed.responseHeaders(t);
  await t.next();
  assert.deepEqual(headerValues(t.responseHeaders, 'x-probe-response'), ['A']);
  mixed.done(t);
  await waitFor(() => logs.some((l) => l.includes('skip_phases bogus -> 2')), 5000, 'the filter saw BadArgument');
  assert.ok(logs.some((l) => l.includes('proxy_set_property -> BadArgument (2): wisp.skip_phases: unknown phase "bogus"')), logs.join('\n'));
});

test('wisp.response_headers_statuses while configuring: the response waits only for the statuses named; other text is refused', async () => {
  await rt.load(filterConfig('failures-only', fixture('probe.wasm'), { config: 'statuses-5xx' }));
  await rt.load(filterConfig('statuses-bogus', fixture('probe.wasm'), { config: 'statuses-bogus' }));
  const wants = async (names: string[], status: number): Promise<boolean> => {
    const s = new TestStream();
    const chain = rt.chain(names);
    chain.requestHeaders(s);
    await s.next();
    s.responseStatus = status;
    const answer = chain.handlesResponseHeaders(s);
    chain.done(s);
    return answer;
  };
  assert.deepEqual(await Promise.all([200, 404, 429, 500, 503, 599].map((st) => wants(['failures-only'], st))), [false, false, true, true, true, true]);
  assert.equal(await wants(['statuses-bogus'], 200), true, 'refused: every status, as before');
  // Sent because another filter wants a 200: the limited filter is not called for it.
  const t = new TestStream();
  const mixed = rt.chain(['failures-only', 'probe-a']);
  mixed.requestHeaders(t);
  await t.next();
  t.responseStatus = 200;
  mixed.responseHeaders(t);
  await t.next();
  assert.deepEqual(headerValues(t.responseHeaders, 'x-probe-response'), ['A']);
  mixed.done(t);
  // ... and is for a 503.
  const u = new TestStream();
  mixed.requestHeaders(u);
  await u.next();
  u.responseStatus = 503;
  mixed.responseHeaders(u);
  await u.next();
  assert.deepEqual(headerValues(u.responseHeaders, 'x-probe-response').sort(), ['A', 'statuses-5xx']);
  mixed.done(u);
  await waitFor(() => logs.some((l) => l.includes('statuses bogus -> 2')), 5000, 'the filter saw BadArgument');
  assert.ok(logs.some((l) => l.includes('proxy_set_property -> BadArgument (2): wisp.response_headers_statuses: "5xx" is not a status')), logs.join('\n'));
});

test('invalid mutations are refused with BadArgument (2) and logged', async () => {
  const chain = rt.chain(['probe-a']);
  for (const action of ['bad-header', 'bad-name', 'bad-status']) {
    const s = new TestStream(['x-action', action]);
    chain.requestHeaders(s);
    const o = await s.next();
    assert.equal(o.kind, 'continue', action);
    assert.equal(s.header('x-bad-result'), '2', action);
    assert.equal(s.header('x-bad'), undefined);
    chain.done(s);
  }
  assert.ok(logs.some((l) => l.includes('proxy_add_header_map_value -> BadArgument (2): header value contains CR')), logs.join('\n'));
  assert.ok(logs.some((l) => l.includes('proxy_send_local_response -> BadArgument (2): status 99 is outside 200-599')));
});

test('proxy_log lines reach the main thread log with the filter name', () => {
  assert.ok(logs.some((l) => l === 'info probe-a configured with A'), logs.join('\n'));
});

test('chain() throws on an unknown filter name', () => {
  assert.throws(() => rt.chain(['probe-a', 'nope']), /unknown filter "nope"/);
});

test('an empty chain continues without a worker', async () => {
  const chain = rt.chain([]);
  const s = new TestStream();
  chain.requestHeaders(s);
  assert.deepEqual(await s.next(), { kind: 'continue', phase: 'request_headers' });
  chain.done(s);
});

test('list() describes loaded filters', () => {
  const list = rt.list();
  const a = list.find((f) => f.name === 'probe-a');
  assert.ok(a);
  assert.match(a.version, /^[0-9a-f]{64}$/);
  assert.equal(a.abi, '0.2.1');
  assert.equal(a.quarantined, false);
  assert.ok(a.generation > 0);
  assert.ok(!Number.isNaN(Date.parse(a.loaded_at)));
});

test('response phase: :status rewrite reaches stream.responseStatus; local response from on_response_headers', async () => {
  const chain = rt.chain(['probe-a', 'probe-b']);
  const s = new TestStream(['x-action', 'status']);
  chain.requestHeaders(s);
  await s.next();
  s.responseStatus = 200;
  s.responseHeaders = ['content-type', 'text/plain'];
  chain.responseHeaders(s);
  assert.deepEqual(await s.next(), { kind: 'continue', phase: 'response_headers' });
  assert.equal(s.responseStatus, 299);
  assert.equal(s.responseHeader(':status'), undefined);
  chain.done(s);

  const d = new TestStream(['x-action', 'deny-response']);
  chain.requestHeaders(d);
  await d.next();
  d.responseStatus = 200;
  d.responseHeaders = [];
  chain.responseHeaders(d);
  const o = await d.next();
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') {
    assert.equal(o.status, 502);
    // Reverse order: probe-b answers first.
    assert.equal(o.body, 'response refused by B');
  }
  chain.done(d);
});

test('loadBytes() adds a new filter with default settings', async () => {
  const { readFile } = await import('node:fs/promises');
  const info = await rt.loadBytes('uploaded', await readFile(fixture('probe.wasm')), { config: 'U' });
  assert.equal(info.name, 'uploaded');
  assert.equal(info.failure, 'closed');
  const s = new TestStream();
  rt.chain(['uploaded']).requestHeaders(s);
  await s.next();
  assert.equal(s.header('x-probe'), 'U');
  rt.chain(['uploaded']).done(s);
});

test('an idle worker ends its serve task (the runtime does not hold the process) and the next call starts one again', async () => {
  const chain = rt.chain(['probe-a']);
  const first = new TestStream();
  chain.requestHeaders(first);
  assert.deepEqual(await first.next(), { kind: 'continue', phase: 'request_headers' });
  chain.done(first);
  assert.ok(rt.servingWorkers >= 1);
  // No batch for ~2 s: every worker stops serving (its thread stays, with its instances).
  await waitFor(() => rt.servingWorkers === 0, 10_000, 'serve tasks stopped when idle');
  const again = new TestStream();
  chain.requestHeaders(again);
  assert.deepEqual(await again.next(), { kind: 'continue', phase: 'request_headers' });
  assert.equal(again.header('x-probe'), 'A', 'the filter instance survived the idle stop');
  assert.ok(rt.servingWorkers >= 1);
  chain.done(again);
});

test('a runtime left open does not keep the process alive once its workers are idle', async () => {
  const runtimeUrl = new URL('../../proxy/filters/runtime.js', import.meta.url).href;
  const helpersUrl = new URL('./helpers.js', import.meta.url).href;
  // One filter call, then nothing: no close(). The process must exit by itself.
  const script = `
    const { WasmFilterRuntime } = await import(${JSON.stringify(runtimeUrl)});
    const { filterConfig, fixture, TestStream } = await import(${JSON.stringify(helpersUrl)});
    const rt = new WasmFilterRuntime({ workers: 1, log: () => {} });
    await rt.load(filterConfig('probe', fixture('probe.wasm'), { config: 'X' }));
    const s = new TestStream();
    rt.chain(['probe']).requestHeaders(s);
    const o = await s.next();
    console.log(o.kind, s.header('x-probe'));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(killer);
  assert.equal(out.trim(), 'continue X');
  assert.equal(code, 0, 'exited by itself (killed after 20 s otherwise)');
});
