// How the event loop picks up a worker's answer: a busy loop finds it in one of the next turns
// without arming the waitAsync wake-up (a task posted across threads, an eventfd, a promise).
// An idle loop arms the wake-up after those turns: every other runtime test goes that way.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { filterConfig, fixture, TestStream } from './helpers.js';

const pause = new Int32Array(new SharedArrayBuffer(4));

/** Keep this thread busy (it runs no callbacks) until `ready()`, at most `limitMs`. */
function busyUntil(ready: () => boolean, limitMs: number): void {
  const end = Date.now() + limitMs;
  while (!ready()) {
    if (Date.now() > end) throw new Error(`condition not met within ${limitMs} ms`);
    Atomics.wait(pause, 0, 0, 1);
  }
}

async function start(): Promise<WasmFilterRuntime> {
  const rt = new WasmFilterRuntime({ workers: 1, log: () => {} });
  await rt.load(filterConfig('probe-a', fixture('probe.wasm'), { config: 'A' }));
  // One exchange first, so the worker thread is up and serving.
  const chain = rt.chain(['probe-a']);
  const warm = new TestStream();
  chain.requestHeaders(warm);
  await warm.next();
  chain.done(warm);
  return rt;
}

test('an answer that is in by the next turn is picked up without a wake-up', async () => {
  const rt = await start();
  try {
    const chain = rt.chain(['probe-a']);
    const s = new TestStream();
    chain.requestHeaders(s);
    const armed = rt.wakeupsArmed;
    // Queued before the flush that sends the batch runs, so it runs right after it in the same
    // turn: the loop stays busy until the worker has answered, as under load.
    setImmediate(() => busyUntil(() => rt.answerWaiting, 10_000));
    assert.deepEqual(await s.next(), { kind: 'continue', phase: 'request_headers' });
    assert.equal(s.header('x-probe'), 'A');
    assert.equal(rt.wakeupsArmed, armed, 'no waitAsync wake-up armed for an answer the next turn found');
    chain.done(s);
  } finally {
    await rt.close();
  }
});
