// Modules built by other toolchains (TinyGo Go SDK, emscripten C++ SDK) and the WASI surface.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { filterConfig, fixture, TestStream } from './helpers.js';

const logs: string[] = [];
let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 1, logLevel: 'debug', log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
});

after(async () => {
  await rt.close();
});

async function run(name: string, headers: string[] = ['host', 'a.test']): Promise<TestStream> {
  const chain = rt.chain([name]);
  const s = new TestStream(headers);
  chain.requestHeaders(s);
  await s.next();
  chain.done(s);
  return s;
}

test('TinyGo Go SDK module, ABI 0.1.0 (_start, WASI args)', async () => {
  const info = await rt.load(filterConfig('go-v1', fixture('third-party/mosn-add-req-header-v1.wasm'), { config: '' }));
  assert.equal(info.abi, '0.1.0');
  const s = await run('go-v1');
  assert.match(s.header('wasm-context') ?? '', /^\d+$/);
});

test('TinyGo Go SDK module, ABI 0.2.0', async () => {
  const info = await rt.load(filterConfig('go-v2', fixture('third-party/mosn-add-req-header-v2.wasm'), { config: '' }));
  assert.equal(info.abi, '0.2.0');
  const a = await run('go-v2');
  const b = await run('go-v2');
  assert.match(a.header('wasm-context') ?? '', /^\d+$/);
  assert.notEqual(a.header('wasm-context'), b.header('wasm-context'), 'each stream has its own context id');
});

// The C++ SDK picks its context factory by plugin_root_id (registered for "").
test('emscripten C++ SDK module (wasi_unstable) reads header pairs and logs them', async () => {
  const info = await rt.load(filterConfig('cpp', fixture('third-party/mosn-cpp-http-log-headers.wasm'), { config: '', root_id: '' }));
  assert.equal(info.abi, '0.1.0');
  const s = await run('cpp', ['host', 'a.test', 'x-marker', 'cpp-123']);
  assert.equal(s.outcomes[0].kind, 'continue');
  assert.ok(logs.some((l) => l.startsWith('info cpp ') && l.endsWith('print from wasm, x-marker -> cpp-123')), logs.join('\n'));
  assert.ok(logs.some((l) => l.endsWith('print from wasm, :path -> /hello')));
});

test('WASI: fd_write logs, clock, random, empty environment; proc_exit traps', async () => {
  await rt.load(filterConfig('wasi', fixture('wasi.wasm'), { config: '', failure: 'closed' }));
  const s = await run('wasi');
  assert.equal(s.header('x-fd-write'), '0:16');
  assert.ok(Math.abs(Number(s.header('x-time-ms')) - Date.now()) < 60_000);
  assert.equal(s.header('x-random'), '0:nonzero');
  assert.equal(s.header('x-env'), '0');
  assert.ok(logs.includes('info wasi hello from wasi'), logs.join('\n'));
  const exit = await run('wasi', ['x-action', 'exit']);
  const o = exit.outcomes[0];
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') assert.equal(o.status, 503);
  assert.ok(logs.some((l) => l.includes('proc_exit(3)')));
});
