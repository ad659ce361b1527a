// proxy_on_tick and proxy_on_queue_ready: the main thread sends ticks to each
// worker's instance; removing the filter stops them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { waitFor } from '../helpers/net.js';
import { filterConfig, fixture, TestStream } from './helpers.js';

let rt: WasmFilterRuntime;

before(() => {
  rt = new WasmFilterRuntime({ workers: 2, log: () => {} });
});

after(async () => {
  await rt.close();
});

function ticks(): number {
  return rt.metricsSnapshot().find((m) => m.filter === 'ticker' && m.name === 'ticks')?.value ?? 0;
}

test('on_tick runs periodically in every worker and stops when the filter is removed', async () => {
  await rt.load(filterConfig('ticker', fixture('tick.wasm'), { config: '' }));
  await waitFor(() => ticks() >= 10, 5000, 'ten ticks');
  await rt.apply([]);
  assert.deepEqual(rt.list(), []);
  // Ticks already queued may still land; after that the count must stand still.
  const settled = await waitFor(async () => {
    const a = ticks();
    await new Promise((r) => setTimeout(r, 50));
    return ticks() === a ? a : 0;
  }, 5000, 'ticks to stop');
  assert.ok(settled >= 10);
});

test('shared queue: enqueue in one worker, proxy_on_queue_ready drains it', async () => {
  await rt.load(filterConfig('queue', fixture('queue.wasm'), { config: '' }));
  const chain = rt.chain(['queue']);
  const streams = Array.from({ length: 6 }, (_, i) => new TestStream(['x-enqueue', `job-${i}`]));
  for (const s of streams) chain.requestHeaders(s);
  for (const s of streams) {
    await s.next();
    assert.equal(s.header('x-enqueued'), '0');
    chain.done(s);
  }
  const dequeued = () => rt.metricsSnapshot().find((m) => m.filter === 'queue' && m.name === 'dequeued')?.value ?? 0;
  await waitFor(() => dequeued() === 6, 5000, 'all six messages dequeued exactly once');
  assert.equal(dequeued(), 6);
});
