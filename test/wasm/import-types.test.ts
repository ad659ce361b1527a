// A filter module whose host imports have the wrong wasm type is refused at load, naming the
// import, the type it declares and the type Wisp provides (a JS host function would accept
// any signature and then be handed garbage); modules with the right types, every module the
// repository builds among them, still load; a refused hot load leaves the serving
// generation answering, in the runtime and through a running Wisp's admin API.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { checkModule } from '../../proxy/wasm/module-registry.js';
import { formatSignature, readFunctionImports, WasmBinaryError } from '../../proxy/wasm/wasm-binary.js';
import { httpGet, waitFor } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';
import { assertRefusedKeepsServing, filterConfig, fixture } from './helpers.js';
import { wasmFromText } from './wat.js';

/** The smallest proxy-wasm module that loads, plus `imports` (WAT import fields) and
 * `configure` (instructions run in proxy_on_configure, before it returns true). */
function moduleWith(imports: string, configure = ''): Uint8Array {
  const wat = `(module
  ${imports}
  (memory (export "memory") 1)
  (data (i32.const 16) "typed ok")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) ${configure} (i32.const 1))
)`;
  return wasmFromText(wat);
}

// The auditor's module: env.proxy_log as (i64, f64) -> f32.
const WRONG_ENV = moduleWith(
  '(import "env" "proxy_log" (func $log (param i64 f64) (result f32)))',
  '(drop (call $log (i64.const 2) (f64.const 1)))',
);
// The classic WASI mistake: clock_time_get's precision is a 64-bit timestamp, declared as i32.
const WRONG_WASI = moduleWith(
  '(import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i32 i32) (result i32)))',
  '(drop (call $now (i32.const 0) (i32.const 0) (i32.const 64)))',
);
// Right types, including the i64 ones, calling proxy_log and clock_time_get while configuring.
const RIGHT = moduleWith(
  `(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))`,
  '(drop (call $now (i32.const 0) (i64.const 1) (i32.const 64))) (drop (call $log (i32.const 2) (i32.const 16) (i32.const 8)))',
);

test('readFunctionImports: each function import with its declared signature; other import kinds skipped', () => {
  const bytes = moduleWith(
    `(import "env" "table" (table 1 funcref))
    (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
    (import "env" "g" (global i32))
    (import "wasi_unstable" "fd_seek" (func (param i32 i64 i32 i32) (result i32)))
    (import "env" "trace" (func (param i32 i32 f64 f64 f64 f64 f64)))
    (import "env" "seed" (func (result f64)))`,
  );
  const imports = readFunctionImports(bytes).map((i) => `${i.module}.${i.name} ${formatSignature(i.signature)}`);
  assert.deepEqual(imports, [
    'env.proxy_log (i32, i32, i32) -> i32',
    'wasi_unstable.fd_seek (i32, i64, i32, i32) -> i32',
    'env.trace (i32, i32, f64, f64, f64, f64, f64) -> ()',
    'env.seed () -> f64',
  ]);
  assert.deepEqual(readFunctionImports(moduleWith('')), [], 'no import section: nothing imported');
});

test('readFunctionImports: a section running past the end or a runaway LEB128 is a WasmBinaryError with the offset', () => {
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const pastEnd = Uint8Array.from([...header, 0x01, 0x10, 0x01, 0x60]);
  assert.throws(() => readFunctionImports(pastEnd), (err: Error) => {
    assert.ok(err instanceof WasmBinaryError);
    assert.match(err.message, /^section 1 of 16 bytes runs past the end of the module at byte offset 10$/);
    return true;
  });
  const runaway = Uint8Array.from([...header, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
  assert.throws(() => readFunctionImports(runaway), /LEB128 integer (larger than 32 bits|longer than 5 bytes) at byte offset 9/);
  const truncatedImport = moduleWith('(import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))');
  // Cut the module inside the import section's "proxy_log" name.
  const at = Buffer.from(truncatedImport).indexOf('proxy_log');
  assert.throws(() => readFunctionImports(truncatedImport.subarray(0, at + 3)), WasmBinaryError);
});

test('every module the repository builds passes the type check (built-in filters, fixtures, SDK fixtures when built)', async () => {
  const dirs = [
    fileURLToPath(new URL('../../../filters/build/', import.meta.url)),
    fixture(''),
    // Built by the Solo/G-Core SDK tests into dist/ (outside git); checked when present.
    fileURLToPath(new URL('../fixtures/solo/', import.meta.url)),
    fileURLToPath(new URL('../fixtures/gcore/', import.meta.url)),
  ];
  // Refused on purpose, for other reasons than types (their own tests check why).
  const refused = new Map([
    ['no-abi.wasm', /missing export proxy_abi_version_/],
    ['unknown-import.wasm', /unknown import env\.proxy_make_coffee/],
    ['origin-token.wasm', /unknown import env\.proxy_get_secret/],
  ]);
  let checked = 0;
  for (const dir of dirs) {
    if (!fs.existsSync(dir)) continue;
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.wasm'))) {
      const bytes = fs.readFileSync(path.join(dir, file));
      const expected = refused.get(file);
      if (expected !== undefined) await assert.rejects(checkModule(file, bytes), expected);
      else await checkModule(file, bytes);
      checked++;
    }
  }
  assert.ok(checked >= 20, `checked ${checked} modules`);
});

let rt: WasmFilterRuntime;
const logs: string[] = [];

before(async () => {
  rt = new WasmFilterRuntime({ workers: 2, log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
  await rt.load(filterConfig('t', fixture('probe.wasm'), { config: 'v1' }));
});

after(async () => {
  await rt.close();
});

test('the right types (i64 included) load, and the host functions work when called', async () => {
  const info = await rt.loadBytes('typed', RIGHT, { config: 'x' });
  assert.equal(info.abi, '0.2.1');
  await waitFor(() => logs.some((l) => l.endsWith('typed typed ok')), 5000, 'proxy_log from the well-typed module');
});

test('an SDK shape Wisp accepts besides the spec one loads (AssemblyScript SDKs: proxy_grpc_stream without metadata)', async () => {
  const bytes = moduleWith('(import "env" "proxy_grpc_stream" (func (param i32 i32 i32 i32 i32 i32 i32) (result i32)))');
  await rt.loadBytes('grpc-as', bytes, { config: 'x' });
  assert.ok(rt.list().some((f) => f.name === 'grpc-as'));
});

for (const [what, bytes, message] of [
  ['env.proxy_log', WRONG_ENV, 'import env.proxy_log has type (i64, f64) -> f32; Wisp provides (i32, i32, i32) -> i32'],
  [
    'wasi_snapshot_preview1.clock_time_get',
    WRONG_WASI,
    'import wasi_snapshot_preview1.clock_time_get has type (i32, i32, i32) -> i32; Wisp provides (i32, i64, i32) -> i32',
  ],
] as const) {
  test(`a wrong-typed ${what} import is refused, naming both types; the serving generation keeps answering`, async () => {
    await assertRefusedKeepsServing(rt, 't', bytes, 'v1', (err) => assert.equal(err.message, `filter "t": ${message}`));
  });
}

test('every mismatch is listed, with each accepted shape when there are several', async () => {
  const bytes = moduleWith(
    `(import "env" "proxy_increment_metric" (func (param i32 i32) (result i32)))
    (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
    (import "env" "proxy_grpc_call" (func (param i32) (result i32)))
    (import "wasi_unstable" "proc_exit" (func (param i32) (result i32)))`,
  );
  await assert.rejects(rt.loadBytes('multi', bytes, { config: 'x' }), (err: Error) => {
    assert.equal(
      err.message,
      'filter "multi": ' +
        'import env.proxy_increment_metric has type (i32, i32) -> i32; Wisp provides (i32, i64) -> i32; ' +
        'import env.proxy_grpc_call has type (i32) -> i32; Wisp provides (i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32, i32) -> i32 ' +
        'or (i32, i32, i32, i32, i32, i32, i32, i32, i32, i32) -> i32; ' +
        'import wasi_unstable.proc_exit has type (i32) -> i32; Wisp provides (i32) -> ()',
    );
    return true;
  });
  assert.ok(!rt.list().some((f) => f.name === 'multi'));
});

test('through a running Wisp: PUT /filters/NAME of a wrong-typed module is a 400 naming the import; the route keeps its filter', async () => {
  const { port, adminPort, upstream, stop } = await startWispWithFilters({
    file: 'import-types.test',
    chain: ['probe'],
    filters: [{ name: 'probe', wasm: fixture('probe.wasm'), config: 'v1' }],
  });
  try {
    const put = await httpGet(adminPort, '/filters/probe', { method: 'PUT', body: Buffer.from(WRONG_ENV) });
    assert.equal(put.status, 400, put.body);
    assert.match(put.body, /import env\.proxy_log has type \(i64, f64\) -> f32; Wisp provides \(i32, i32, i32\) -> i32/);
    const seen = upstream.requests.length;
    assert.equal((await httpGet(port, '/after-refused-put')).status, 200);
    assert.equal(upstream.requests[seen]!.headers['x-probe'], 'v1', 'the old generation still filters the route');
  } finally {
    await stop();
  }
});
