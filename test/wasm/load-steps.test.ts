// A module that traps while it starts (its start section, _start, proxy_on_vm_start,
// proxy_on_configure) is refused with the step named in the reason, keeping its wasm stack;
// the generation already serving the filter keeps answering, in the runtime and through a
// running Wisp's admin API (PUT /filters/NAME answers 400 with the reason).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { httpGet } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';
import { assertRefusedKeepsServing, filterConfig, fixture, requestThrough } from './helpers.js';
import { wasmFromText } from './wat.js';

/** Where the module traps ('none': nowhere). */
type Step = 'none' | 'start-section' | '_start' | 'proxy_on_vm_start' | 'proxy_on_configure';

/** The smallest proxy-wasm module that loads, with `unreachable` in the step named. */
function trappingModule(step: Step): Uint8Array {
  const trapIn = (s: Step, otherwise: string): string => (s === step ? 'unreachable' : otherwise);
  const wat = `(module
  (memory (export "memory") 1)
  ${step === 'start-section' ? '(func $init unreachable) (start $init)' : ''}
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_start") ${trapIn('_start', 'nop')})
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) ${trapIn('proxy_on_vm_start', '(i32.const 1)')})
  (func (export "proxy_on_configure") (param i32 i32) (result i32) ${trapIn('proxy_on_configure', '(i32.const 1)')})
)`;
  return wasmFromText(wat);
}

/** What the refusal says for a trap in `step`: the step, the trap, the wasm stack. */
function refusal(filter: string, step: string): RegExp {
  const escaped = step.replace(/[()]/g, '\\$&');
  return new RegExp(`^filter "${filter}": trapped in ${escaped}: unreachable \\[wasm stack: wasm-function\\[\\d+\\]:0x[0-9a-f]+`);
}

let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 2, log: () => {} });
  await rt.load(filterConfig('t', fixture('probe.wasm'), { config: 'v1' }));
});

after(async () => {
  await rt.close();
});

test('a module without a trap loads (the cases below differ only in the trap)', async () => {
  await rt.loadBytes('spare', trappingModule('none'), { config: 'x' });
  assert.ok(rt.list().some((f) => f.name === 'spare'));
});

for (const [step, named] of [
  ['_start', '_start'],
  ['proxy_on_vm_start', 'proxy_on_vm_start'],
  ['proxy_on_configure', 'proxy_on_configure'],
  ['start-section', 'instantiation (start section)'],
] as const) {
  test(`a trap in ${step}: refused with the step named; the serving generation keeps answering`, async () => {
    await assertRefusedKeepsServing(rt, 't', trappingModule(step), 'v1', (err) => assert.match(err.message, refusal('t', named)));
  });
}

test('through a running Wisp: PUT /filters/NAME of a module trapping in proxy_on_vm_start is a 400 naming the step; the route keeps its filter', async () => {
  const { port, adminPort, upstream, stop } = await startWispWithFilters({
    file: 'load-steps.test',
    chain: ['probe'],
    filters: [{ name: 'probe', wasm: fixture('probe.wasm'), config: 'v1' }],
  });
  try {
    const put = await httpGet(adminPort, '/filters/probe', { method: 'PUT', body: Buffer.from(trappingModule('proxy_on_vm_start')) });
    assert.equal(put.status, 400, put.body);
    assert.match(put.body, /trapped in proxy_on_vm_start: unreachable \[wasm stack: /);
    const seen = upstream.requests.length;
    assert.equal((await httpGet(port, '/after-refused-put')).status, 200);
    assert.equal(upstream.requests[seen]!.headers['x-probe'], 'v1', 'the old generation still filters the route');
  } finally {
    await stop();
  }
});

test('a module that loops in proxy_on_vm_start: refused past its deadline, said once, and not counted as a fault of the filter it would replace', async () => {
  const wat = `(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
)`;
  const looping = wasmFromText(wat);
  const before = rt.list().find((f) => f.name === 't')!;
  await assert.rejects(rt.loadBytes('t', looping, { config: 'v3' }), (err: Error) => {
    assert.match(err.message, /^filter "t": while starting: call ran past its deadline of \d+ ms; worker \d+ replaced$/);
    return true;
  });
  const s = await requestThrough(rt, ['t']);
  assert.equal(s.header('x-probe'), 'v1', 'the previous generation answered, on the replacement worker');
  const now = rt.list().find((f) => f.name === 't')!;
  assert.equal(now.generation, before.generation);
  assert.equal(now.faults, before.faults, 'the refused module is not a fault of the serving filter');
});
