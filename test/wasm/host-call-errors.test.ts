// A host call a filter misuses is refused with a status and logged on one line that names the
// call, the status (name and number) and why: "proxy_add_header_map_value -> BadArgument (2):
// header value contains CR". Expected answers (NotFound for a missing header or property) are
// not logged: filters probe with those on every request.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { waitFor } from '../helpers/net.js';
import { filterConfig, fixture, requestThrough } from './helpers.js';
import { wasmFromText } from './wat.js';

const logs: string[] = [];
let rt: WasmFilterRuntime;

/** Each misuse (or probe) the module below makes per request: the call, as WAT returning the
 * call's status, and the request header the status comes back in (as one digit). */
interface Misuse {
  header: string;
  wat: (str: (text: string) => string) => string;
}

const RET = 4000; // two return slots (ptr, size)

const MISUSES: Misuse[] = [
  // A log level past critical (5).
  { header: 'x-r-level', wat: (str) => `(call $proxy_log (i32.const 9) ${str('hello')})` },
  // A message far outside the module's one page of memory.
  { header: 'x-r-oob', wat: () => `(call $proxy_log (i32.const 2) (i32.const 0x7ffffff0) (i32.const 8))` },
  // A metric id proxy_define_metric never handed out.
  { header: 'x-r-metric', wat: () => `(call $proxy_increment_metric (i32.const 12345) (i64.const 1))` },
  // A map type the ABI does not have.
  { header: 'x-r-map', wat: (str) => `(call $proxy_get_header_map_value (i32.const 42) ${str('x-anything')} (i32.const ${RET}) (i32.const ${RET + 4}))` },
  // A buffer type the ABI does not have.
  { header: 'x-r-buffer', wat: () => `(call $proxy_get_buffer_bytes (i32.const 99) (i32.const 0) (i32.const 16) (i32.const ${RET}) (i32.const ${RET + 4}))` },
  // A property that is there, asked for with return slots outside memory.
  { header: 'x-r-slots', wat: (str) => `(call $proxy_get_property ${str('plugin_name')} (i32.const 0x7ffffff0) (i32.const 0x7ffffff4))` },
  // Expected outcomes: a header and a property that are not there.
  { header: 'x-r-missing', wat: (str) => `(call $proxy_get_header_map_value (i32.const 0) ${str('x-not-sent')} (i32.const ${RET}) (i32.const ${RET + 4}))` },
  { header: 'x-r-prop', wat: (str) => `(call $proxy_get_property ${str('no.such.property')} (i32.const ${RET}) (i32.const ${RET + 4}))` },
];

/** A proxy-wasm module whose proxy_on_request_headers makes every call in MISUSES and adds
 * each status as a request header, built with binaryen from WAT. */
function misusingModule(): Uint8Array {
  const data: string[] = [];
  let next = 1024;
  const str = (text: string): string => {
    const at = next;
    data.push(`(data (i32.const ${at}) "${text}")`);
    next += text.length;
    return `(i32.const ${at}) (i32.const ${text.length})`;
  };
  const body = MISUSES.map((m) => `(call $report ${str(m.header)} ${m.wat(str)})`).join('\n    ');
  const wat = `(module
  (import "env" "proxy_log" (func $proxy_log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $proxy_increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $proxy_get_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $proxy_get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $proxy_get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $proxy_add_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  ${data.join('\n  ')}
  ;; request header name = the status as one ASCII digit
  (func $report (param $name i32) (param $len i32) (param $status i32)
    (i32.store8 (i32.const ${RET + 16}) (i32.add (i32.const 48) (local.get $status)))
    (drop (call $proxy_add_header_map_value (i32.const 0) (local.get $name) (local.get $len) (i32.const ${RET + 16}) (i32.const 1))))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $at))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ${body}
    (i32.const 0))
)`;
  return wasmFromText(wat);
}

before(async () => {
  rt = new WasmFilterRuntime({ workers: 1, log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
  await rt.load(filterConfig('probe', fixture('probe.wasm')));
  await rt.loadBytes('misuse', misusingModule(), { config: '' });
});

after(async () => {
  await rt.close();
});

/** The log line for `call` refused with `status`, once it arrived. */
function refusedLine(filter: string, call: string, status: string): Promise<string> {
  const prefix = `warn ${filter} ${call} -> ${status}: `;
  return waitFor(() => logs.find((l) => l.startsWith(prefix)), 5000, `a "${prefix}" log line`) as Promise<string>;
}

test('probe misuses (CR in a value, a bad header name, status 99): the line names the call, the status by name and number, and the reason', async () => {
  const expected: [string, string, string, string][] = [
    ['bad-header', 'proxy_add_header_map_value', 'BadArgument (2)', 'header value contains CR'],
    ['bad-name', 'proxy_add_header_map_value', 'BadArgument (2)', 'invalid character 0x20 in header name "bad name"'],
    ['bad-status', 'proxy_send_local_response', 'BadArgument (2)', 'status 99 is outside 200-599'],
  ];
  for (const [action, call, status, reason] of expected) {
    const from = logs.length;
    const s = await requestThrough(rt, ['probe'], ['x-action', action]);
    assert.equal(s.header('x-bad-result'), '2', `${action}: the filter got BadArgument`);
    const line = await waitFor(() => logs.slice(from).find((l) => l.startsWith(`warn probe ${call} -> `)), 5000, `${action} logged`);
    assert.equal(line, `warn probe ${call} -> ${status}: ${reason}`);
  }
});

test('a module misusing calls: each status it got back is the one logged, with why; missing headers and properties are not logged', async () => {
  const s = await requestThrough(rt, ['misuse'], ['host', 'example.test']);
  const got = Object.fromEntries(MISUSES.map((m) => [m.header, s.header(m.header)]));
  assert.deepEqual(got, {
    'x-r-level': '2',
    'x-r-oob': '6',
    'x-r-metric': '1',
    'x-r-map': '2',
    'x-r-buffer': '2',
    'x-r-slots': '6',
    'x-r-missing': '1',
    'x-r-prop': '1',
  });
  assert.equal(await refusedLine('misuse', 'proxy_log', 'BadArgument (2)'), 'warn misuse proxy_log -> BadArgument (2): log level 9 is not 0-5 (trace-critical)');
  assert.match(
    await refusedLine('misuse', 'proxy_log', 'InvalidMemoryAccess (6)'),
    /^warn misuse proxy_log -> InvalidMemoryAccess \(6\): message \[2147483632, \+8\) is outside guest memory \(65536 bytes\)$/,
  );
  assert.equal(await refusedLine('misuse', 'proxy_increment_metric', 'NotFound (1)'), 'warn misuse proxy_increment_metric -> NotFound (1): no metric has id 12345');
  assert.equal(await refusedLine('misuse', 'proxy_get_header_map_value', 'BadArgument (2)'), 'warn misuse proxy_get_header_map_value -> BadArgument (2): unknown map type 42');
  assert.equal(await refusedLine('misuse', 'proxy_get_buffer_bytes', 'BadArgument (2)'), 'warn misuse proxy_get_buffer_bytes -> BadArgument (2): unknown buffer type 99');
  assert.equal(
    await refusedLine('misuse', 'proxy_get_property', 'InvalidMemoryAccess (6)'),
    'warn misuse proxy_get_property -> InvalidMemoryAccess (6): return slots 2147483632, 2147483636 are outside guest memory (65536 bytes)',
  );
  // The NotFound answers for x-not-sent and no.such.property came without a line.
  const mine = logs.filter((l) => l.startsWith('warn misuse '));
  assert.equal(mine.length, 6, mine.join('\n'));
  assert.ok(!mine.some((l) => l.includes('NotFound') && !l.includes('proxy_increment_metric')), mine.join('\n'));
});

test('a filter misusing a call on every request: at most 10 refusal lines a second, the next line says how many were left out', async () => {
  const line = (l: string): boolean => l.startsWith('warn probe proxy_add_header_map_value -> BadArgument (2)');
  const summary = /^warn probe (\d+) more host-call refusals in the last second were not logged$/;
  const from = logs.length;
  let refusals = 0;
  const misuse = async (): Promise<void> => {
    const s = await requestThrough(rt, ['probe'], ['x-action', 'bad-header']);
    assert.equal(s.header('x-bad-result'), '2', 'every call is still refused with BadArgument');
    refusals++;
  };
  // 40 at once: one batch, so one or at most two of the worker's one-second windows.
  await Promise.all(Array.from({ length: 40 }, misuse));
  const burstLines = logs.slice(from).filter(line).length;
  assert.ok(burstLines >= 1 && burstLines <= 20, `${burstLines} lines for 40 refusals`);
  // Keep misusing until a new second opens and reports what was left out (bounded).
  await waitFor(async () => {
    if (logs.slice(from).some((l) => summary.test(l))) return true;
    await misuse();
    return false;
  }, 10_000, 'the left-out count');
  const since = logs.slice(from);
  const logged = since.filter(line).length;
  const leftOut = since.map((l) => summary.exec(l)).reduce((n, m) => n + (m === null ? 0 : Number(m[1])), 0);
  assert.ok(leftOut > 0);
  assert.equal(logged + leftOut, refusals, 'every refusal is either logged or counted');
});
