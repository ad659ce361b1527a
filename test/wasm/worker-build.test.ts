// Filter worker threads load the CommonJS build of the worker's modules (tsconfig.worker.json):
// required rather than imported, a thread starts no ESM loader, and node:crypto waits until a
// filter asks WASI for randomness (third-party.test.ts checks random_get still answers).
// Together ~1.2 MB less per worker thread (docs/memory.md).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { WORKER_FILE } from '../../proxy/wasm/pool.js';

interface Loaded {
  exportType: string;
  added: string[];
}

/** Require `file` in a fresh thread, the way piscina does, and list the internal modules it loaded. */
async function loadInThread(file: string): Promise<Loaded> {
  const src = `
    const { parentPort } = require('node:worker_threads');
    const before = new Set(process.moduleLoadList);
    const m = require(${JSON.stringify(file)});
    parentPort.postMessage({ exportType: typeof m.default, added: process.moduleLoadList.filter((x) => !before.has(x)) });`;
  const w = new Worker(src, { eval: true, workerData: {} });
  try {
    const [msg] = (await once(w, 'message')) as [Loaded];
    return msg;
  } finally {
    await w.terminate();
  }
}

test('the pool starts its threads on the CommonJS build of the worker', async () => {
  assert.ok(!WORKER_FILE.startsWith('file:'), `expected a path to the CommonJS build, got ${WORKER_FILE}`);
  assert.equal(path.basename(path.dirname(path.dirname(path.dirname(WORKER_FILE)))), 'worker', WORKER_FILE);
  const loaded = await loadInThread(WORKER_FILE);
  assert.equal(loaded.exportType, 'function', 'piscina calls the default export');
  const esm = loaded.added.filter((m) => m.includes('modules/esm/'));
  assert.deepEqual(esm, [], 'no ESM loader in the thread');
  const crypto = loaded.added.filter((m) => /crypto/.test(m));
  assert.deepEqual(crypto, [], 'node:crypto is not loaded until a filter asks for randomness');
});
