// Shared data with CAS and metrics, across two worker threads.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { SharedState } from '../../proxy/wasm/shared-state.js';
import { WasmResult } from '../../proxy/wasm/abi.js';
import { filterConfig, fixture, TestStream } from './helpers.js';

let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 2, log: () => {} });
  await rt.load(filterConfig('counter', fixture('probe.wasm'), { config: 'K' }));
});

after(async () => {
  await rt.close();
});

test('shared data CAS increments are visible across 2 workers', async () => {
  const chain = rt.chain(['counter']);
  const rounds = 4;
  const perRound = 50;
  // Creating a key is not atomic under Envoy's semantics (cas 0 writes unconditionally), so
  // the key is created by one request before the race starts.
  const first = new TestStream(['x-action', 'count']);
  chain.requestHeaders(first);
  await first.next();
  chain.done(first);
  const seen: number[] = [Number(first.header('x-count'))];
  const workers = new Set<number | undefined>();
  for (let r = 0; r < rounds; r++) {
    const streams: TestStream[] = [];
    for (let i = 0; i < perRound; i++) {
      const s = new TestStream(['x-action', 'count']);
      streams.push(s);
      chain.requestHeaders(s); // least-loaded pick alternates the two workers
      workers.add(rt.workerOf(s.streamId));
    }
    for (const s of streams) {
      await s.next();
      seen.push(Number(s.header('x-count')));
    }
    for (const s of streams) chain.done(s);
  }
  assert.deepEqual([...workers].sort(), [0, 1], 'both workers took part');
  seen.sort((a, b) => a - b);
  assert.deepEqual(seen, Array.from({ length: rounds * perRound + 1 }, (_, i) => i + 1));
});

test('metrics defined by a filter are exported with its name', async () => {
  const before = rt.metricsSnapshot().find((m) => m.filter === 'counter' && m.name === 'probe_requests');
  assert.ok(before);
  assert.equal(before.type, 'counter');
  const chain = rt.chain(['counter']);
  const streams = Array.from({ length: 10 }, () => new TestStream());
  for (const s of streams) chain.requestHeaders(s);
  for (const s of streams) await s.next();
  for (const s of streams) chain.done(s);
  const now = rt.metricsSnapshot().find((m) => m.filter === 'counter' && m.name === 'probe_requests')!;
  assert.equal(now.value, before.value + 10);
});

test('shared state: CAS mismatch, full table error, queues', () => {
  const st = SharedState.create({ kvCapacity: 2, kvMaxKeyBytes: 16, kvMaxValueBytes: 16, queues: 2, queueBytes: 64, metrics: 4 });
  const k = (s: string) => Buffer.from(s);
  assert.equal(st.setData(k('a'), k('1'), 0).result, WasmResult.Ok);
  const a = st.getData(k('a'))!;
  assert.equal(Buffer.from(a.value).toString(), '1');
  assert.equal(st.setData(k('a'), k('2'), a.cas + 1).result, WasmResult.CasMismatch);
  assert.equal(st.setData(k('a'), k('2'), a.cas).result, WasmResult.Ok);
  assert.equal(st.setData(k('b'), k('x'), 0).result, WasmResult.Ok);
  const full = st.setData(k('c'), k('x'), 0);
  assert.equal(full.result, WasmResult.InternalFailure);
  assert.match(full.error!, /shared data is full \(2 keys\)/);
  assert.match(st.setData(k('a'), Buffer.alloc(17), 0).error!, /limit 16/);

  const q = st.registerQueue(k('jobs')).id;
  assert.ok(q > 0);
  assert.equal(st.resolveQueue(k('jobs')), q);
  assert.equal(st.dequeue(q), null);
  for (let i = 0; i < 5; i++) assert.equal(st.enqueue(q, k(`m${i}`)), WasmResult.Ok);
  for (let i = 0; i < 5; i++) assert.equal(Buffer.from(st.dequeue(q) as Uint8Array).toString(), `m${i}`);
  // Wrap-around of the ring buffer.
  for (let r = 0; r < 20; r++) {
    assert.equal(st.enqueue(q, k(`wrap-${r}`)), WasmResult.Ok);
    assert.equal(Buffer.from(st.dequeue(q) as Uint8Array).toString(), `wrap-${r}`);
  }
  assert.equal(st.enqueue(99, k('x')), WasmResult.NotFound);
});
