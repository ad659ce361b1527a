// Fault isolation: traps, runaway loops (deadline), memory growth, quarantine.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { waitFor } from '../helpers/net.js';
import { filterConfig, fixture, requestThrough, TestStream } from './helpers.js';

const logs: string[] = [];
let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 1, log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
  await rt.load(filterConfig('closed', fixture('probe.wasm'), { config: 'C', failure: 'closed' }));
  await rt.load(filterConfig('open', fixture('probe.wasm'), { config: 'O', failure: 'open' }));
  await rt.load(filterConfig('small', fixture('probe.wasm'), { config: 'S', failure: 'open', max_memory_bytes: 8 * 1024 * 1024 }));
  await rt.load(filterConfig('small-closed', fixture('probe.wasm'), { config: 'SC', failure: 'closed', max_memory_bytes: 8 * 1024 * 1024 }));
  await rt.load(filterConfig('loopy', fixture('probe.wasm'), { config: 'L', failure: 'closed', deadline_ms: 30 }));
});

after(async () => {
  await rt.close();
});

const run = (names: string[], headers: string[] = []): Promise<TestStream> => requestThrough(rt, names, headers);

function faults(name: string): number {
  return rt.list().find((f) => f.name === name)!.faults;
}

test('trap with failure closed: 503 from the policy, instance recreated, next call works', async () => {
  const s = await run(['closed'], ['x-action', 'trap']);
  const o = s.outcomes[0];
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') {
    assert.equal(o.status, 503);
    assert.equal(o.body, 'filter closed failed\n');
  }
  assert.equal(faults('closed'), 1);
  const ok = await run(['closed'], []);
  assert.equal(ok.outcomes[0].kind, 'continue');
  assert.equal(ok.header('x-probe'), 'C');
  assert.ok(logs.some((l) => l.includes('closed fault: trap in proxy_on_request_headers')), logs.join('\n'));
});

test('trap with failure open: the chain continues past the failed filter', async () => {
  const s = await run(['open', 'closed'], ['x-action', 'trap', 'x-probe', 'start']);
  // "open" trapped and was skipped; "closed" also saw x-action=trap and failed closed.
  assert.equal(s.outcomes[0].kind, 'local');
  const s2 = await run(['closed', 'open'], ['x-probe', 'start']);
  assert.equal(s2.header('x-probe'), 'start,C,O');
  const s3 = await run(['open'], ['x-action', 'trap']);
  assert.deepEqual(s3.outcomes[0], { kind: 'continue', phase: 'request_headers' });
});

test('infinite loop: deadline aborts the batch, worker replaced, policy applied, next batch works', async () => {
  const chain = rt.chain(['loopy']);
  const bystander = rt.chain(['open']);
  const victim = new TestStream(['x-action', 'loop']);
  const other = new TestStream([]);
  chain.requestHeaders(victim);
  bystander.requestHeaders(other);
  const o = await victim.next(10_000);
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') assert.equal(o.status, 503);
  // The bystander in the same batch (fail-open filter) continues.
  assert.deepEqual(await other.next(), { kind: 'continue', phase: 'request_headers' });
  chain.done(victim);
  bystander.done(other);
  assert.equal(faults('loopy'), 1);
  assert.ok(logs.some((l) => l.includes('ran past its deadline of 30 ms')), logs.join('\n'));
  // The replacement worker re-instantiated every current generation.
  const after = await run(['loopy', 'open'], []);
  assert.equal(after.header('x-probe'), 'L,O');
});

test('a batch sent behind one that runs past its deadline is not lost: it runs on the replacement worker', async () => {
  const loopy = rt.chain(['loopy']);
  const closed = rt.chain(['closed']);
  const waiting = new TestStream([]);
  closed.requestHeaders(waiting);
  assert.deepEqual(await waiting.next(), { kind: 'continue', phase: 'request_headers' });
  const before = faults('closed');
  const victim = new TestStream(['x-action', 'loop']);
  loopy.requestHeaders(victim);
  // Let the victim's batch go out, then queue a call that must not share its fate: a
  // fail-closed filter's response phase would answer 503 if its batch were counted as lost.
  await new Promise((r) => setImmediate(r));
  assert.equal(rt.workerOf(victim.streamId), rt.workerOf(waiting.streamId));
  waiting.responseStatus = 200;
  waiting.responseHeaders = ['content-type', 'text/plain'];
  closed.responseHeaders(waiting);
  const o = await victim.next(10_000);
  assert.equal(o.kind, 'local');
  assert.deepEqual(await waiting.next(), { kind: 'continue', phase: 'response_headers' });
  assert.equal(waiting.responseHeader('x-probe-response'), 'C');
  assert.equal(faults('closed'), before);
  loopy.done(victim);
  closed.done(waiting);
});

test('memory past max_memory_bytes: instance recycled, fault counted, keeps serving', async () => {
  const before = faults('small');
  const s = await run(['small'], ['x-action', 'grow']);
  assert.equal(s.outcomes[0].kind, 'continue');
  assert.equal(faults('small'), before + 1);
  assert.ok(logs.some((l) => l.includes('exceeds max_memory_bytes')));
  const next = await run(['small'], []);
  assert.equal(next.header('x-probe'), 'S');
});

test('memory past max_memory_bytes with failure closed: the request gets 503, the next one is served', async () => {
  const s = await run(['small-closed'], ['x-action', 'grow']);
  const o = s.outcomes[0];
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') assert.equal(o.status, 503);
  const next = await run(['small-closed'], []);
  assert.equal(next.header('x-probe'), 'SC');
});

test('5 faults in 10 s quarantine the filter: policy applies without calling it', async () => {
  await rt.load(filterConfig('flaky', fixture('probe.wasm'), { config: 'F', failure: 'closed' }));
  for (let i = 0; i < 5; i++) await run(['flaky'], ['x-action', 'trap']);
  const info = rt.list().find((f) => f.name === 'flaky')!;
  assert.equal(info.faults, 5);
  assert.equal(info.quarantined, true);
  assert.ok(info.quarantined_until);
  // A healthy request now gets the policy (503) because the filter is not called.
  const s = await run(['flaky'], []);
  const o = s.outcomes[0];
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') assert.equal(o.status, 503);
  assert.equal(rt.list().find((f) => f.name === 'flaky')!.faults, 5, 'quarantined calls are not faults');
  assert.ok(logs.some((l) => l.startsWith('error flaky quarantined')));
});

test('a quarantine ends: after it the filter is called again, and new faults count again', async () => {
  // Long enough that the request below surely lands inside it on a busy machine, short enough to wait out.
  const short = new WasmFilterRuntime({ workers: 1, quarantineMs: 2000, log: () => {} });
  try {
    await short.load(filterConfig('flaky', fixture('probe.wasm'), { config: 'Q', failure: 'closed' }));
    const info = () => short.list().find((f) => f.name === 'flaky')!;
    for (let i = 0; i < 5; i++) await requestThrough(short, ['flaky'], ['x-action', 'trap']);
    assert.equal(info().quarantined, true);
    const during = await requestThrough(short, ['flaky'], []);
    assert.equal(during.outcomes[0].kind, 'local', 'the policy answers while quarantined');
    await waitFor(() => !info().quarantined, 15_000, 'the quarantine to end');
    const after = await requestThrough(short, ['flaky'], []);
    assert.equal(after.outcomes[0].kind, 'continue');
    assert.equal(after.header('x-probe'), 'Q', 'the filter itself answered');
    await requestThrough(short, ['flaky'], ['x-action', 'trap']);
    assert.equal(info().faults, 6, 'a fault after the quarantine counts');
    assert.equal(info().quarantined, false, 'one fault does not quarantine again');
  } finally {
    await short.close();
  }
});
