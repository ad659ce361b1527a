// Small filters written in WebAssembly text, through a running Wisp: a histogram a filter
// defines (proxy_define_metric type 2) and records into (proxy_record_metric) shows on
// /metrics as its sum (wisp_filter_metric) and its count (wisp_filter_metric_count); a
// filter's vm_config reaches proxy_on_vm_start (buffer 6).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { httpGet, metricIn } from '../helpers/net.js';
import { type RunningWisp, startWispWithFilters } from '../helpers/wisp.js';
import { wasmFromText } from '../wasm/wat.js';

/** Wisp with one route through filter `name`, built from `wat` into a temporary file; stop()
 * also removes the file. `options` go into the filter's config entry. */
async function startWithWatFilter(name: string, wat: string, options: Record<string, unknown> = {}, workers = 1): Promise<RunningWisp> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-wat-filter-'));
  const wasm = path.join(dir, `${name}.wasm`);
  fs.writeFileSync(wasm, wasmFromText(wat));
  try {
    const w = await startWispWithFilters({ file: `wat-filters.test (${name})`, workers, chain: [name], filters: [{ name, wasm, ...options }] });
    return {
      ...w,
      stop: async () => {
        await w.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

// Records 21 into histogram "req_sizes" on every request's headers.
const HISTOGRAM_FILTER = `(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "req_sizes")
  (global $id (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 2) (i32.const 16) (i32.const 9) (i32.const 32)))
    (global.set $id (i32.load (i32.const 32)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $record (global.get $id) (i64.const 21)))
    (i32.const 0))
)`;

test('a filter histogram on /metrics: its sum, and how many values were recorded', async () => {
  const { port, adminPort, stop } = await startWithWatFilter('sizes', HISTOGRAM_FILTER, {}, 2);
  try {
    for (let i = 0; i < 3; i++) assert.equal((await httpGet(port, `/r${i}`)).status, 200);
    const page = (await httpGet(adminPort, '/metrics')).body;
    assert.equal(metricIn(page, 'wisp_filter_metric', { filter: 'sizes', name: 'req_sizes', type: 'histogram' }), 63);
    assert.equal(metricIn(page, 'wisp_filter_metric_count', { filter: 'sizes', name: 'req_sizes' }), 3);
    assert.match(page, /# TYPE wisp_filter_metric_count counter/);
  } finally {
    await stop();
  }
});

// Copies the VM configuration (proxy_get_buffer_bytes, buffer 6) it gets in proxy_on_vm_start
// into request header x-vm-config.
const VM_CONFIG_FILTER = `(module
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-vm-config")
  (global $ptr (mut i32) (i32.const 0))
  (global $len (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $buffer (i32.const 6) (i32.const 0) (local.get 1) (i32.const 64) (i32.const 68)))
    (global.set $ptr (i32.load (i32.const 64)))
    (global.set $len (i32.load (i32.const 68)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 16) (i32.const 11) (global.get $ptr) (global.get $len)))
    (i32.const 0))
)`;

test('a filter\'s vm_config reaches proxy_on_vm_start through a running Wisp', async () => {
  const { port, upstream, stop } = await startWithWatFilter('vmc', VM_CONFIG_FILTER, { vm_config: 'vm-hello' });
  try {
    assert.equal((await httpGet(port, '/vm')).status, 200);
    assert.equal(upstream.requests.find((r) => r.url === '/vm')!.headers['x-vm-config'], 'vm-hello');
  } finally {
    await stop();
  }
});
