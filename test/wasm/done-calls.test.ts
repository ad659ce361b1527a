// A stream's done call (on_done, on_log, on_delete) never costs a batch of its own while other
// calls come: it goes with the next batch, or after doneDelayMs when nothing else comes. At a
// low request rate that batch was a third worker wake-up per request.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { waitFor } from '../helpers/net.js';
import { filterConfig, fixture, TestStream } from './helpers.js';

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function start(doneDelayMs?: number): Promise<{ rt: WasmFilterRuntime; streams: () => number }> {
  const rt = new WasmFilterRuntime({ workers: 1, doneDelayMs, log: () => {} });
  await rt.load(filterConfig('probe-a', fixture('probe.wasm'), { config: 'A' }));
  return { rt, streams: () => rt.list().find((f) => f.name === 'probe-a')!.streams };
}

test('a done call waits for the next batch and goes with it', async () => {
  const { rt, streams } = await start(60_000);
  try {
    const chain = rt.chain(['probe-a']);
    const a = new TestStream();
    chain.requestHeaders(a);
    await a.next();
    const sent = rt.batchesSent;
    chain.done(a);
    await nextTurn();
    await nextTurn();
    assert.equal(rt.batchesSent, sent, 'no batch for the done call alone');
    assert.equal(streams(), 1, 'a is not released before its done call went');

    const b = new TestStream();
    chain.requestHeaders(b);
    assert.deepEqual(await b.next(), { kind: 'continue', phase: 'request_headers' });
    assert.equal(b.header('x-probe'), 'A');
    assert.equal(rt.batchesSent, sent + 1, "a's done call and b's request headers in one batch");
    assert.equal(streams(), 1, 'a released with that batch, b still running');
  } finally {
    await rt.close();
  }
});

test('with nothing else coming, a done call goes after the delay', async () => {
  const { rt, streams } = await start();
  try {
    const chain = rt.chain(['probe-a']);
    const a = new TestStream();
    chain.requestHeaders(a);
    await a.next();
    chain.done(a);
    await waitFor(() => streams() === 0);
    assert.equal(streams(), 0);
  } finally {
    await rt.close();
  }
});
