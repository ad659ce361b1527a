// Every built filter must link against a proxy-wasm host and nothing else: its imports are
// proxy_* functions from "env" (and, if any, the small WASI surface the spec lists), and it
// exports the ABI marker, the allocator and the callbacks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { BUILD_DIR, loadModule } from './harness.js';

const PROXY_IMPORTS = new Set([
  'proxy_log', 'proxy_get_log_level', 'proxy_get_current_time_nanoseconds', 'proxy_set_tick_period_milliseconds',
  'proxy_get_buffer_bytes', 'proxy_set_buffer_bytes', 'proxy_get_buffer_status', 'proxy_get_header_map_pairs',
  'proxy_set_header_map_pairs', 'proxy_get_header_map_value', 'proxy_add_header_map_value',
  'proxy_replace_header_map_value', 'proxy_remove_header_map_value', 'proxy_get_header_map_size',
  'proxy_get_property', 'proxy_set_property', 'proxy_send_local_response', 'proxy_continue_stream',
  'proxy_close_stream', 'proxy_get_shared_data', 'proxy_set_shared_data', 'proxy_register_shared_queue',
  'proxy_resolve_shared_queue', 'proxy_enqueue_shared_queue', 'proxy_dequeue_shared_queue', 'proxy_http_call',
  'proxy_define_metric', 'proxy_increment_metric', 'proxy_record_metric', 'proxy_get_metric',
  'proxy_set_effective_context', 'proxy_done', 'proxy_call_foreign_function', 'proxy_get_status',
]);
const WASI_IMPORTS = new Set([
  'fd_write', 'clock_time_get', 'random_get', 'environ_sizes_get', 'environ_get', 'args_sizes_get', 'args_get', 'proc_exit',
]);
const REQUIRED_EXPORTS = [
  'memory', '_initialize', 'proxy_abi_version_0_2_1', 'proxy_on_memory_allocate', 'proxy_on_context_create',
  'proxy_on_vm_start', 'proxy_on_configure', 'proxy_on_tick', 'proxy_on_request_headers',
  'proxy_on_request_trailers', 'proxy_on_response_headers', 'proxy_on_response_trailers',
  'proxy_on_http_call_response', 'proxy_on_queue_ready', 'proxy_on_log', 'proxy_on_done', 'proxy_on_delete',
];
const EXPECTED_FILTERS = ['noop', 'add-header', 'headers', 'ratelimit', 'auth', 'breaker'];

const built = readdirSync(BUILD_DIR).filter((f) => f.endsWith('.wasm')).map((f) => f.slice(0, -5));

test('the priority filters are built', () => {
  for (const name of EXPECTED_FILTERS) assert.ok(built.includes(name), `${name}.wasm missing in ${BUILD_DIR}`);
});

for (const name of built) {
  test(`${name}.wasm imports only proxy-wasm and WASI functions`, () => {
    const imports = WebAssembly.Module.imports(loadModule(name));
    assert.ok(imports.length > 0, 'a filter that imports nothing cannot log');
    for (const imp of imports) {
      assert.equal(imp.kind, 'function', `${imp.module}.${imp.name} is a ${imp.kind}`);
      if (imp.module === 'env') assert.ok(PROXY_IMPORTS.has(imp.name), `unexpected import env.${imp.name}`);
      else if (imp.module === 'wasi_snapshot_preview1') assert.ok(WASI_IMPORTS.has(imp.name), `unexpected WASI import ${imp.name}`);
      else assert.fail(`unexpected import module ${imp.module} (${imp.name})`);
    }
  });

  test(`${name}.wasm exports the proxy-wasm 0.2.1 callbacks`, () => {
    const exports = new Map(WebAssembly.Module.exports(loadModule(name)).map((e) => [e.name, e.kind]));
    for (const e of REQUIRED_EXPORTS) assert.ok(exports.has(e), `missing export ${e}`);
    assert.equal(exports.get('memory'), 'memory');
    assert.equal(exports.get('proxy_on_request_headers'), 'function');
    // None of the built-in filters reads bodies: without the body callbacks the host streams
    // bodies past them (sdk-as/assembly/exports-body.ts is the opt-in).
    assert.ok(!exports.has('proxy_on_request_body') && !exports.has('proxy_on_response_body'), 'built-in filters must not export body callbacks');
    // The runtime helpers stay internal: nothing but the ABI and memory is exported.
    for (const e of exports.keys()) {
      assert.ok(e === 'memory' || e === '_initialize' || e.startsWith('proxy_'), `unexpected export ${e}`);
    }
  });
}
