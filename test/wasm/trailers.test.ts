// The host side of trailers (HttpRequestTrailers / HttpResponseTrailers header maps and the
// proxy_on_*_trailers exports), on a real instance of a real module. The request path does not
// deliver trailers to the workers yet (docs/http-limits.md, Trailers): this pins down what a
// filter sees once it does.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { LogLevel, WasmResult } from '../../proxy/wasm/abi.js';
import { FilterInstance, type InstanceDeps, WorkerLog } from '../../proxy/wasm/instance.js';
import { DEFAULT_SHARED_STATE, SharedState } from '../../proxy/wasm/shared-state.js';
import { StreamState } from '../../proxy/wasm/stream-state.js';
import type { GenerationSpec } from '../../proxy/wasm/wire.js';
import { fixture, header } from './helpers.js';

async function instance(): Promise<FilterInstance> {
  const module = await WebAssembly.compile(await readFile(fixture('trailers.wasm')));
  const log = new WorkerLog();
  log.level = LogLevel.Trace;
  const deps: InstanceDeps = {
    shared: SharedState.create(DEFAULT_SHARED_STATE),
    log,
    watch: new Float64Array(8),
    httpCalls: null,
    onTickPeriod() {},
    onQueueRegistered() {},
    onEnqueue() {},
  };
  const spec: GenerationSpec = {
    id: 1,
    name: 'trailers',
    rootId: 'trailers',
    config: '',
    vmConfig: '',
    failure: 'closed',
    deadlineMs: 1000,
    maxMemoryBytes: 16 * 1024 * 1024,
    maxBodyBytes: 1024 * 1024,
  };
  const inst = new FilterInstance(spec, module, deps);
  inst.start();
  return inst;
}

function call(inst: FilterInstance, s: StreamState, fn: (ctx: number) => number): number {
  const ctx = inst.contextFor(s);
  inst.stream = s;
  inst.contextId = ctx;
  try {
    return fn(ctx);
  } finally {
    inst.stream = null;
  }
}

test('proxy_on_response_trailers reads, adds and removes response trailers', async () => {
  const inst = await instance();
  assert.notEqual(inst.onResponseTrailers, null);
  const s = new StreamState(1);
  s.responseTrailers = ['grpc-status', '0', 'x-secret', 'k'];
  assert.equal(call(inst, s, (ctx) => inst.onResponseTrailers!(ctx, 2)), 0);
  assert.deepEqual(s.responseTrailers, ['grpc-status', '0', 'x-seen-status', '0', 'x-count', '2']);
  assert.equal(s.trailersDirty, true);
  assert.equal(s.responseDirty, false, 'the response headers are untouched');
});

test('before any trailers the trailer map answers NotFound', async () => {
  const inst = await instance();
  const s = new StreamState(2);
  s.setRequestHeaders([':method', 'GET', ':path', '/']);
  call(inst, s, (ctx) => inst.onRequestHeaders!(ctx, 2, 0));
  assert.equal(header(s.requestHeaders, 'x-trailer-map'), String(WasmResult.NotFound));
  assert.equal(s.trailersDirty, false);
});
