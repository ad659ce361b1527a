// A trap is reported with the filter's wasm stack, mapped to source lines through the source
// map next to the .wasm (AssemblyScript --sourceMap), in the log line and in last_fault (what
// GET /filters shows). Without a map, or with a map that belongs to other bytes, the raw
// offsets are shown.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { httpGet, waitFor } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';
import { filterConfig, fixture, TestStream } from './helpers.js';

const logs: string[] = [];
let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 1, log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
});

after(async () => {
  await rt.close();
});

async function trapOnce(name: string, headers: string[] = ['x-action', 'trap']): Promise<string> {
  const chain = rt.chain([name]);
  const s = new TestStream(headers);
  chain.requestHeaders(s);
  assert.equal((await s.next()).kind, 'continue', 'failure open: the stream continues');
  chain.done(s);
  return (await waitFor(() => rt.list().find((f) => f.name === name)?.last_fault, 5000, `${name} fault recorded`))!;
}

test('a trap in a filter with a source map names the source line, in the log and in last_fault', async () => {
  await rt.load(filterConfig('trap', fixture('trap.wasm'), { failure: 'open' }));
  await rt.registry.current('trap')!.sourceMapRead;
  assert.notEqual(rt.registry.current('trap')!.sourceMap, null);
  const fault = await trapOnce('trap');
  // trap.ts line 11: `if (half(n) < 100) unreachable();` (check() is inlined into the export).
  assert.match(fault, /^trap in proxy_on_request_headers: unreachable \[wasm stack: trap\/proxy_on_request_headers trap\.ts:11:\d+ \(wasm-function\[\d+\]:0x[0-9a-f]+\)/);
  assert.ok(logs.some((l) => l.startsWith('warn trap fault: ') && l.includes('trap.ts:11:')), logs.join('\n'));
});

test('without a source map the wasm offsets are shown as they are', async () => {
  await rt.load(filterConfig('probe', fixture('probe.wasm'), { failure: 'open' }));
  const fault = await trapOnce('probe');
  assert.match(fault, /^trap in proxy_on_request_headers: unreachable \[wasm stack: wasm-function\[\d+\]:0x[0-9a-f]+\]$/);
});

test('uploaded bytes do not borrow the source map of the configured file', async () => {
  // The filter's configured path is trap.wasm (with its map), but the bytes are probe.wasm's.
  await rt.loadBytes('trap', await readFile(fixture('probe.wasm')), { config: 'uploaded' });
  const gen = rt.registry.current('trap')!;
  await gen.sourceMapRead;
  assert.equal(gen.sourceMap, null);
  const fault = await trapOnce('trap');
  assert.doesNotMatch(fault, /trap\.ts/);
});

test('through a running Wisp: the request gets the failure policy, GET /filters shows the mapped stack', async () => {
  const { port, adminPort, stop } = await startWispWithFilters({
    file: 'source-map.test',
    chain: ['trap'],
    filters: [{ name: 'trap', wasm: fixture('trap.wasm'), failure: 'open' }],
  });
  try {
    const res = await httpGet(port, '/x');
    assert.equal(res.status, 200, 'failure open: forwarded');
    // Each request traps again; the map is read while the workers instantiate the module, so
    // at the latest the fault of a later request carries the source line.
    const fault = await waitFor(async () => {
      const list = JSON.parse((await httpGet(adminPort, '/filters')).body) as { name: string; last_fault?: string }[];
      const last = list.find((f) => f.name === 'trap')?.last_fault ?? '';
      if (last.includes('trap.ts')) return last;
      await httpGet(port, '/again');
      return '';
    }, 5000, 'fault with a source line listed');
    assert.match(fault, /unreachable \[wasm stack: trap\/proxy_on_request_headers trap\.ts:11:\d+ \(wasm-function/);
  } finally {
    await stop();
  }
});
