// The host functions' fast paths: property paths resolved from the guest's bytes (known
// attributes vs paths that go by their text), values written straight into guest memory,
// header names found again by their bytes, shared data read and written in place — and all
// of it after the guest's memory grew between calls.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import { createEnvImports, KNOWN_PROPERTIES, knownPropertyId } from '../../proxy/wasm/host.js';
import { FilterInstance, GuestNameCache, WorkerLog } from '../../proxy/wasm/instance.js';
import { type GenerationSpec, Watch } from '../../proxy/wasm/wire.js';
import { SharedState } from '../../proxy/wasm/shared-state.js';
import { WasmResult } from '../../proxy/wasm/abi.js';
import { FilterHarness } from '../../proxy/testing/index.js';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { filterConfig, fixture, TestStream } from './helpers.js';

const PROBE = fixture('probe.wasm');

/** `text` placed at offset 7 of a larger buffer, as a path sits in guest memory. */
function inMemory(text: string): { mem: Uint8Array; ptr: number; len: number } {
  const bytes = Buffer.from(text, 'utf8');
  const mem = new Uint8Array(bytes.length + 16).fill(0x41);
  mem.set(bytes, 7);
  return { mem, ptr: 7, len: bytes.length };
}

function idOf(text: string): number {
  const { mem, ptr, len } = inMemory(text);
  return knownPropertyId(mem, ptr, len);
}

test('known property paths resolve from bytes: NUL-separated, dotted, NUL-terminated', () => {
  for (let id = 0; id < KNOWN_PROPERTIES.length; id++) {
    const dotted = KNOWN_PROPERTIES[id];
    assert.equal(idOf(dotted), id, dotted);
    assert.equal(idOf(dotted.replaceAll('.', '\0')), id, `${dotted} NUL-separated`);
    assert.equal(idOf(`${dotted.replaceAll('.', '\0')}\0`), id, `${dotted} NUL-terminated`);
  }
  assert.equal(idOf('request.path'), KNOWN_PROPERTIES.indexOf('request.path'));
  assert.equal(idOf('xds\0route_name'), KNOWN_PROPERTIES.indexOf('xds.route_name'));
});

test('other paths are not known ids (they go by their text)', () => {
  for (const path of ['', '\0', 'request', 'request.pat', 'request.pathx', 'request\0path\0\0', 'Request.path', 'request.headers.x-id', 'request\0headers\0x-id', 'my.custom', 'requestXpath', 'a'.repeat(300)]) {
    assert.equal(idOf(path), -1, JSON.stringify(path));
  }
});

/** One request through the probe asking for a property; its value as the probe reports it. */
function prop(h: FilterHarness, path: string, opts: { int?: boolean; clientAddress?: string; action?: string } = {}): string | undefined {
  const headers: Record<string, string> = { 'x-action': opts.action ?? 'prop', 'x-prop': path };
  if (opts.int === true) headers['x-prop-int'] = '1';
  const r = h.request({ path: '/items?id=7', headers, clientAddress: opts.clientAddress ?? '10.1.2.3:40123', route: 'r1', cluster: 'c1', listener: 'l1', requestId: 'rid' });
  h.done(r.stream);
  return r.header('x-prop-value');
}

test('property values through the host: attributes, integers, addresses, headers, custom', async () => {
  const h = await FilterHarness.load(PROBE, { name: 'props', config: 'P', properties: { 'my.custom': 'hello', 'team.owner': 'ops' } });
  assert.equal(prop(h, 'request.path'), '/items?id=7');
  assert.equal(prop(h, 'request.url_path'), '/items');
  assert.equal(prop(h, 'request.query'), 'id=7');
  assert.equal(prop(h, 'request.method'), 'GET');
  assert.equal(prop(h, 'request.id'), 'rid');
  assert.equal(prop(h, 'plugin_name'), 'props');
  assert.equal(prop(h, 'route_name'), 'r1');
  assert.equal(prop(h, 'xds.cluster_name'), 'c1');
  assert.equal(prop(h, 'listener_name'), 'l1');
  assert.equal(prop(h, 'source.address'), '10.1.2.3:40123');
  assert.equal(prop(h, 'source.address', { clientAddress: '10.1.2.3:7' }), '10.1.2.3:7');
  assert.equal(prop(h, 'source.address', { clientAddress: '[::1]:65535' }), '[::1]:65535');
  assert.equal(prop(h, 'source.address', { clientAddress: '10.9.9.9' }), '10.9.9.9', 'no port: the bare ip');
  assert.equal(prop(h, 'source.ip', { clientAddress: '[::1]:8080' }), '::1');
  assert.equal(prop(h, 'source.port', { int: true }), '40123');
  assert.equal(prop(h, 'response.code', { int: true }), '(none)', 'no response yet');
  assert.equal(prop(h, 'destination.address'), '(none)');
  assert.equal(prop(h, 'request.headers.x-action'), 'prop', 'a header by path');
  assert.equal(prop(h, 'request.headers.X-Action'), 'prop', 'header names in paths are case-insensitive');
  assert.equal(prop(h, 'my.custom'), 'hello', 'a custom property by its text');
  assert.equal(prop(h, 'team.owner'), 'ops');
  assert.equal(prop(h, 'no.such.thing'), '(none)');
  assert.equal(prop(h, 'request.pathx'), '(none)');
});

test('guest memory grown between calls: property, header and shared-data calls see the new memory', async () => {
  const h = await FilterHarness.load(PROBE, { name: 'grower', config: 'G' });
  assert.equal(prop(h, 'source.address'), '10.1.2.3:40123');
  const before = h.memoryBytes;
  const count1 = h.request({ headers: { 'x-action': 'count' } });
  h.done(count1.stream);
  assert.equal(count1.header('x-count'), '1');
  // The probe grows its memory by 512 pages inside the call, then keeps calling the host.
  const grown = h.request({ headers: { 'x-action': 'grow' } });
  h.done(grown.stream);
  assert.ok(h.memoryBytes >= before + 512 * 65536, 'memory grew');
  assert.equal(grown.header('x-probe'), 'G', 'host calls after the growth, in the same callback');
  assert.equal(prop(h, 'source.address'), '10.1.2.3:40123');
  assert.equal(prop(h, 'request.headers.x-prop'), 'request.headers.x-prop');
  assert.equal(prop(h, 'source.port', { int: true }), '40123');
  const count2 = h.request({ headers: { 'x-action': 'count' } });
  h.done(count2.stream);
  assert.equal(count2.header('x-count'), '2', 'shared data read and written through the grown memory');
  assert.equal(h.sharedData('probe.count'), '2');
});

test('GuestNameCache finds names by their bytes and keeps the most recent ones', () => {
  const cache = new GuestNameCache(4);
  const names = ['x-api-key', ':path', 'X-Request-Id', 'accept', 'host', 'user-agent'];
  const mems = names.map((n) => inMemory(n));
  assert.equal(cache.find(mems[0].mem, mems[0].ptr, mems[0].len), null);
  for (let i = 0; i < names.length; i++) cache.add(mems[i].mem, mems[i].ptr, mems[i].len, names[i].toLowerCase());
  // Capacity 4: the first two were replaced by the last two.
  assert.equal(cache.find(mems[0].mem, mems[0].ptr, mems[0].len), null);
  assert.equal(cache.find(mems[1].mem, mems[1].ptr, mems[1].len), null);
  for (let i = 2; i < names.length; i++) assert.equal(cache.find(mems[i].mem, mems[i].ptr, mems[i].len), names[i].toLowerCase());
  // Same length, other bytes; a prefix; the same bytes elsewhere in memory.
  const other = inMemory('hosx');
  assert.equal(cache.find(other.mem, other.ptr, other.len), null);
  const prefix = inMemory('accep');
  assert.equal(cache.find(prefix.mem, prefix.ptr, prefix.len), null);
  const moved = new Uint8Array(64);
  moved.set(Buffer.from('accept'), 40);
  assert.equal(cache.find(moved, 40, 6), 'accept');
});

test('shared data keys and values taken from inside a larger buffer (as from guest memory)', () => {
  const shared = SharedState.create({ kvCapacity: 16, kvMaxKeyBytes: 32, kvMaxValueBytes: 256, queues: 1, queueBytes: 1024, metrics: 4 });
  const mem = new Uint8Array(1024).fill(0xee);
  const key = Buffer.from('bucket:10.0.0.1');
  mem.set(key, 100);
  const small = Buffer.from('tokens=5');
  const large = Buffer.alloc(200, 0x61); // over the by-loop copy size
  mem.set(small, 300);
  mem.set(large, 500);
  assert.equal(shared.readData(mem, 100, key.length), -1);
  assert.equal(shared.writeData(mem, 100, key.length, mem, 300, small.length, 0), WasmResult.Ok);
  assert.equal(shared.readData(mem, 100, key.length), small.length);
  assert.deepEqual(Buffer.from(shared.readBuf.subarray(0, small.length)), small);
  const cas = shared.readCas;
  assert.deepEqual(shared.getData(key), { value: new Uint8Array(small), cas }, 'the same entry by a plain key');
  assert.equal(shared.readData(mem, 101, key.length - 1), -1, 'a suffix of the key is another key');
  assert.equal(shared.writeData(mem, 100, key.length, mem, 500, large.length, cas), WasmResult.Ok);
  assert.equal(shared.writeData(mem, 100, key.length, mem, 300, small.length, cas), WasmResult.CasMismatch, 'the cas moved on');
  assert.equal(shared.readData(mem, 100, key.length), large.length);
  assert.deepEqual(Buffer.from(shared.readBuf.subarray(0, large.length)), large);
  assert.equal(shared.writeData(mem, 100, 0, mem, 300, 1, 0), WasmResult.BadArgument);
  assert.match(shared.writeError ?? '', /empty shared data key/);
  assert.equal(shared.writeData(mem, 100, 33, mem, 300, 1, 0), WasmResult.BadArgument);
  assert.match(shared.writeError ?? '', /key is 33 bytes, limit 32/);
});

test('proxy_get_current_time_nanoseconds on the wall clock (no injected clock): Date.now() in ns, as a u64', async () => {
  const module = new WebAssembly.Module(readFileSync(PROBE));
  const spec: GenerationSpec = { id: 1, name: 'clock', rootId: '', config: 'C', vmConfig: '', failure: 'open', deadlineMs: 1000, maxMemoryBytes: 64 << 20, maxBodyBytes: 0 };
  const watch = new Float64Array(new SharedArrayBuffer(Watch.Slots * 8));
  const inst = new FilterInstance(spec, module, {
    shared: SharedState.create({ kvCapacity: 16, kvMaxKeyBytes: 32, kvMaxValueBytes: 64, queues: 1, queueBytes: 1024, metrics: 8 }),
    log: new WorkerLog(),
    httpCalls: null,
    onQueueRegistered: () => {},
    onEnqueue: () => {},
    onTickPeriod: () => {},
    watch,
  });
  inst.start();
  const env = createEnvImports(inst);
  const before = BigInt(Date.now()) * 1_000_000n;
  assert.equal(env.proxy_get_current_time_nanoseconds(64), WasmResult.Ok);
  const after = BigInt(Date.now()) * 1_000_000n;
  const ns = Buffer.from(inst.viewBytes(64, 8)!).readBigUInt64LE(0);
  assert.ok(ns >= before && ns <= after, `${ns} not within [${before}, ${after}]`);
  assert.equal(ns % 1_000_000n, 0n, 'whole milliseconds, as Date.now() gives');
  assert.equal(env.proxy_get_current_time_nanoseconds(inst.memoryBytes - 4), WasmResult.InvalidMemoryAccess);
});

test('shared data filled to capacity: every key of every length found again, then refused', () => {
  const cap = 61; // not a power of two
  const shared = SharedState.create({ kvCapacity: cap, kvMaxKeyBytes: 48, kvMaxValueBytes: 8, queues: 1, queueBytes: 1024, metrics: 4 });
  // Lengths 1..48 and keys that differ only in one byte, early or late.
  const keys: Buffer[] = [];
  for (let i = 0; i < cap; i++) {
    const k = Buffer.alloc(1 + (i % 48), 0x6b);
    k[i % k.length] = 0x30 + (i % 10);
    if (keys.some((o) => o.equals(k))) k[0] = 0x41 + i;
    keys.push(k);
  }
  for (let i = 0; i < cap; i++) assert.equal(shared.writeData(keys[i], 0, keys[i].length, Buffer.from([i]), 0, 1, 0), WasmResult.Ok, `key ${i}`);
  for (let i = 0; i < cap; i++) {
    assert.equal(shared.readData(keys[i], 0, keys[i].length), 1, `key ${i} found`);
    assert.equal(shared.readBuf[0], i, `key ${i} has its own value`);
  }
  const extra = Buffer.from('one-too-many');
  assert.equal(shared.writeData(extra, 0, extra.length, extra, 0, 1, 0), WasmResult.InternalFailure);
  assert.match(shared.writeError ?? '', /shared data is full \(61 keys\)/);
});

test('through real worker threads: info values copied from the batch, and after a filter changed :path', async () => {
  const rt = new WasmFilterRuntime({ workers: 1, log: () => {} });
  try {
    await rt.load(filterConfig('probe-w', PROBE, { config: 'W' }));
    const chain = rt.chain(['probe-w']);
    const ask = async (path: string, setup: (s: TestStream) => void = () => {}): Promise<string | undefined> => {
      const s = new TestStream(['x-action', 'prop', 'x-prop', path]);
      setup(s);
      chain.requestHeaders(s);
      await s.next();
      chain.done(s);
      return s.header('x-prop-value');
    };
    assert.equal(await ask('request.path'), '/hello');
    assert.equal(await ask('request.path', (s) => (s.path = '/häus?q=☃')), '/häus?q=☃');
    assert.equal(await ask('request.method'), 'GET');
    assert.equal(await ask('request.scheme'), 'http');
    assert.equal(await ask('request.host'), 'example.test');
    assert.equal(await ask('route_name'), 'route-a');
    assert.equal(await ask('xds.cluster_name'), 'cluster-a');
    assert.equal(await ask('listener_name'), 'public');
    assert.match((await ask('request.id')) ?? '', /^req-\d+$/);
    assert.equal(await ask('source.ip'), '127.0.0.1');
    assert.equal(await ask('source.address'), '127.0.0.1:40000');
    assert.equal(await ask('source.address', (s) => (s.clientPort = 0)), '127.0.0.1', 'no port (as on HTTP listeners): the bare ip');
    assert.equal(await ask('source.address', (s) => ((s.clientAddress = '::1'), (s.clientPort = 8443))), '[::1]:8443');
    assert.equal(await ask('request.headers.x-action'), 'prop');
    // A filter rewriting :path still works with the heads packed (the list is decoded then).
    const two = rt.chain(['probe-w']);
    const s = new TestStream(['x-action', 'path']);
    two.requestHeaders(s);
    await s.next();
    assert.equal(s.path, '/rewritten');
    two.done(s);
  } finally {
    await rt.close();
  }
});
