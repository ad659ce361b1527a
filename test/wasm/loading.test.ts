// Hot-load: bad modules are refused with a reason while the previous generation keeps
// answering; reloads switch new streams only; in-flight streams finish on the old one.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { waitFor } from '../helpers/net.js';
import { filterConfig, fixture, TestStream } from './helpers.js';

let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 2, log: () => {} });
  await rt.load(filterConfig('f', fixture('probe.wasm'), { config: 'v1' }));
});

after(async () => {
  await rt.close();
});

async function probeValue(names = ['f']): Promise<string | undefined> {
  const chain = rt.chain(names);
  const s = new TestStream();
  chain.requestHeaders(s);
  await s.next();
  chain.done(s);
  return s.header('x-probe') ?? s.header('x-abi');
}

test('bad modules are rejected with the reason; the previous generation keeps answering', async () => {
  const before = rt.list().find((f) => f.name === 'f')!;
  const cases: [string, Uint8Array, RegExp][] = [
    ['not wasm', Buffer.from('hello, I am not a module'), /filter "f": not a wasm file$/],
    ['no abi', await readFile(fixture('no-abi.wasm')), /filter "f": missing export proxy_abi_version_\*/],
    ['unknown import', await readFile(fixture('unknown-import.wasm')), /filter "f": unknown import env\.proxy_make_coffee$/],
    ['configure false', await readFile(fixture('configure-false.wasm')), /filter "f": proxy_on_configure returned false$/],
    ['truncated', (await readFile(fixture('probe.wasm'))).subarray(0, 100), /filter "f": invalid wasm: /],
  ];
  for (const [what, bytes, re] of cases) {
    await assert.rejects(rt.loadBytes('f', bytes), re, what);
    assert.equal(await probeValue(), 'v1', `old generation still answers after "${what}"`);
  }
  const afterList = rt.list().find((f) => f.name === 'f')!;
  assert.equal(afterList.generation, before.generation);
  assert.equal(afterList.version, before.version);
});

test('a missing file is reported with its path', async () => {
  await assert.rejects(rt.load(filterConfig('f', '/nonexistent/x.wasm')), /filter "f": cannot read \/nonexistent\/x\.wasm/);
  assert.equal(await probeValue(), 'v1');
});

test('reload switches new streams; streams in flight finish on the old generation', async () => {
  const chain = rt.chain(['f']);
  const old = new TestStream();
  chain.requestHeaders(old);
  await old.next();
  assert.equal(old.header('x-probe'), 'v1');

  const gen1 = rt.list().find((f) => f.name === 'f')!.generation;
  await rt.load(filterConfig('f', fixture('probe.wasm'), { config: 'v2' }));
  const info = rt.list().find((f) => f.name === 'f')!;
  assert.ok(info.generation > gen1);

  // The old stream's response phase still runs on generation 1 (its config is v1).
  old.responseStatus = 200;
  old.responseHeaders = [];
  chain.responseHeaders(old);
  await old.next();
  assert.equal(old.responseHeader('x-probe-response'), 'v1');
  chain.done(old);

  assert.equal(await probeValue(), 'v2');
  // The old generation is gone from the registry once its last stream is done.
  await waitFor(() => !rt.registry.generations.has(gen1), 5000, 'old generation collected');
});

test('hot-load while calls are in flight: every call answers, old then new', async () => {
  const chain = rt.chain(['f']);
  const streams: TestStream[] = [];
  for (let i = 0; i < 200; i++) {
    const s = new TestStream();
    streams.push(s);
    chain.requestHeaders(s);
  }
  const loading = rt.load(filterConfig('f', fixture('probe.wasm'), { config: 'v3' }));
  const later: TestStream[] = [];
  for (let i = 0; i < 200; i++) {
    const s = new TestStream();
    later.push(s);
    chain.requestHeaders(s);
  }
  await loading;
  const after: TestStream[] = [];
  for (let i = 0; i < 50; i++) {
    const s = new TestStream();
    after.push(s);
    chain.requestHeaders(s);
  }
  for (const s of [...streams, ...later, ...after]) {
    const o = await s.next();
    assert.equal(o.kind, 'continue');
  }
  for (const s of streams) assert.equal(s.header('x-probe'), 'v2');
  for (const s of later) assert.equal(s.header('x-probe'), 'v2', 'submitted before the switch: old generation');
  for (const s of after) assert.equal(s.header('x-probe'), 'v3');
  for (const s of [...streams, ...later, ...after]) chain.done(s);
});

test('ABI 0.1.0 module: detected, configured via proxy_get_configuration, runs', async () => {
  const info = await rt.load(filterConfig('old', fixture('v010.wasm'), { config: 'cfg010' }));
  assert.equal(info.abi, '0.1.0');
  assert.equal(await probeValue(['old']), '0.1.0:cfg010');
});

test('apply(): loads new and changed, drops removed, all or nothing', async () => {
  await rt.apply([
    filterConfig('f', fixture('probe.wasm'), { config: 'v3' }),
    filterConfig('g', fixture('probe.wasm'), { config: 'g1' }),
  ]);
  assert.deepEqual(rt.list().map((f) => f.name).sort(), ['f', 'g']);
  await assert.rejects(
    rt.apply([
      filterConfig('f', fixture('probe.wasm'), { config: 'v4' }),
      filterConfig('g', fixture('configure-false.wasm')),
    ]),
    /filter "g": proxy_on_configure returned false/,
  );
  assert.equal(await probeValue(), 'v3', 'nothing switched when one filter failed');
  const r = await rt.apply([filterConfig('f', fixture('probe.wasm'), { config: 'v3' })]);
  assert.deepEqual(r, { loaded: [], unchanged: ['f'], removed: ['g'] });
  assert.throws(() => rt.chain(['g']), /unknown filter "g"/);
});

/** RSS once it stops moving: a forced GC per reading when the test runs with --expose-gc,
 * and five readings in a row within 512 KiB of each other (or the last one after 5 s). */
async function settledRss(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  let last = -Infinity;
  let stable = 0;
  try {
    return await waitFor(
      () => {
        gc?.();
        const now = process.memoryUsage().rss;
        stable = Math.abs(now - last) < 512 * 1024 ? stable + 1 : 0;
        last = now;
        return stable >= 5 ? now : 0;
      },
      5000,
      'RSS to settle',
    );
  } catch {
    return last;
  }
}

/** RSS growth over `count` reloads after `warmup`: settled end minus settled start, and the
 * peak seen right after any reload minus the start (what dropped instances cost while V8
 * still held them). */
async function reloadGrowth(name: string, bytes: Uint8Array, warmup: number, count: number): Promise<{ grown: number; peak: number }> {
  for (let i = 0; i < warmup; i++) await rt.loadBytes(name, bytes, { config: `w${i}` });
  const before = await settledRss();
  let peak = before;
  for (let i = 0; i < count; i++) {
    await rt.loadBytes(name, bytes, { config: `r${i}` });
    peak = Math.max(peak, process.memoryUsage().rss);
  }
  const grown = (await settledRss()) - before;
  const mb = (n: number) => (n / 1048576).toFixed(1);
  console.log(`# ${name}: RSS over ${count} reloads (2 workers): +${mb(grown)} MB settled, +${mb(peak - before)} MB peak`);
  return { grown, peak: peak - before };
}

// The bound: 1,000 reloads in a row grow RSS by less than 50 MB. Here 300, against
// the proportional 15 MB (bench/reload-rss.ts measures 1,000 through the admin API).
test('300 reloads stay under the proportional RSS bound; only the current generation is held', async () => {
  const bytes = await readFile(fixture('probe.wasm'));
  const { grown } = await reloadGrowth('f', bytes, 50, 300);
  assert.equal(await probeValue(), 'r299');
  assert.ok(grown < 15 * 1024 * 1024, `RSS grew ${(grown / 1048576).toFixed(1)} MB over 300 reloads`);
  const held = [...rt.registry.generations.values()].filter((g) => g.name === 'f');
  assert.equal(held.length, 1);
});

// Each instance of memory-hog holds 1 MiB it has touched: 2 workers × 150 reloads drop 300 MiB
// of guest memory. Workers hardly allocate on their own heaps, so without the collection
// after retirement V8 kept ~60 MB of dropped instances per worker before freeing any.
test('dropped instances give their linear memory back (1 MiB filter, 150 reloads)', async () => {
  const bytes = await readFile(fixture('memory-hog.wasm'));
  await rt.loadBytes('hog', bytes, { config: 'w' });
  const { peak } = await reloadGrowth('hog', bytes, 10, 150);
  assert.ok(peak < 30 * 1024 * 1024, `RSS peaked ${(peak / 1048576).toFixed(1)} MB above the start over 150 reloads of a 1 MiB filter`);
  await rt.apply([filterConfig('f', fixture('probe.wasm'), { config: 'r299' })]);
});
