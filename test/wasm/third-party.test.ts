// Modules built by other toolchains (TinyGo Go SDK, emscripten C++ SDK) and the WASI surface.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import fs from 'node:fs';
import path from 'node:path';
import { httpGet } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';
import { filterConfig, fixture, TestStream } from './helpers.js';

// Modules built by other projects are not committed here (only our own code and builds are):
// drop them into test/fixtures/third-party/ or point WISP_THIRD_PARTY_WASM at a folder that
// has them (README.md there says where each comes from and its sha256). Missing → skipped.
const THIRD_PARTY = process.env.WISP_THIRD_PARTY_WASM ?? fixture('third-party');
function thirdParty(file: string): { path: string; skip: string | false } {
  const p = path.join(THIRD_PARTY, file);
  return { path: p, skip: fs.existsSync(p) ? false : `${file} not present in ${THIRD_PARTY} (see test/fixtures/third-party/README.md)` };
}
const GO_V1 = thirdParty('mosn-add-req-header-v1.wasm');
const GO_V2 = thirdParty('mosn-add-req-header-v2.wasm');
const CPP = thirdParty('mosn-cpp-http-log-headers.wasm');

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

test('TinyGo Go SDK module, ABI 0.1.0 (_start, WASI args)', { skip: GO_V1.skip }, async () => {
  const info = await rt.load(filterConfig('go-v1', GO_V1.path, { config: '' }));
  assert.equal(info.abi, '0.1.0');
  const s = await run('go-v1');
  assert.match(s.header('wasm-context') ?? '', /^\d+$/);
});

test('TinyGo Go SDK module, ABI 0.2.0', { skip: GO_V2.skip }, async () => {
  const info = await rt.load(filterConfig('go-v2', GO_V2.path, { config: '' }));
  assert.equal(info.abi, '0.2.0');
  const a = await run('go-v2');
  const b = await run('go-v2');
  assert.match(a.header('wasm-context') ?? '', /^\d+$/);
  assert.notEqual(a.header('wasm-context'), b.header('wasm-context'), 'each stream has its own context id');
});

// The C++ SDK picks its context factory by plugin_root_id (registered for "").
test('emscripten C++ SDK module (wasi_unstable) reads header pairs and logs them', { skip: CPP.skip }, async () => {
  const info = await rt.load(filterConfig('cpp', CPP.path, { config: '', root_id: '' }));
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

test('through a running Wisp: the Go SDK modules set Wasm-Context on requests reaching the upstream', { skip: GO_V1.skip || GO_V2.skip }, async () => {
  const { port, upstream, stop } = await startWispWithFilters({
    file: 'third-party.test',
    routes: [
      { match: { prefix: '/v1/' }, filters: ['go-v1'] },
      { match: { prefix: '/v2/' }, filters: ['go-v2'] },
    ],
    filters: [
      { name: 'go-v1', wasm: GO_V1.path, config: '' },
      { name: 'go-v2', wasm: GO_V2.path, config: '' },
    ],
  });
  try {
    for (const url of ['/v1/a', '/v2/a', '/v2/b']) assert.equal((await httpGet(port, url)).status, 200, url);
    const ctx = (url: string): string => String(upstream.requests.find((r) => r.url === url)!.headers['wasm-context'] ?? '');
    assert.match(ctx('/v1/a'), /^\d+$/);
    assert.match(ctx('/v2/a'), /^\d+$/);
    assert.notEqual(ctx('/v2/a'), ctx('/v2/b'), 'each request has its own context id');
  } finally {
    await stop();
  }
});
