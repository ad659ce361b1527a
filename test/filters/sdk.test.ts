// The SDK surface no built-in filter uses (tick, http calls, queues, gauges, histograms,
// whole header maps, bodies, trailers, onDone/done, shared data, crypto), through a probe
// filter (sdk-as/tests/probe) compiled here with the asc API and driven by the SDK's test host.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';
import { ACTION_CONTINUE, ACTION_PAUSE, FilterHost } from './harness.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
let probe: WebAssembly.Module;

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wisp-probe-'));
  try {
    const out = join(dir, 'probe.wasm');
    let stderr = '';
    const { error } = await asc.main(
      ['sdk-as/tests/probe/index.ts', '--config', 'asconfig.json', '--target', 'debug', '--baseDir', ROOT, '--outFile', out],
      { stderr: { write: (c: string | Uint8Array) => { stderr += String(c); } }, stdout: { write: () => {} } },
    );
    assert.equal(error, null, `probe build failed: ${error?.message}\n${stderr}`);
    probe = new WebAssembly.Module(readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function started(config = ''): FilterHost {
  const h = new FilterHost(probe);
  h.vmConfig = 'vm-cfg';
  assert.equal(h.start(config), true, h.errors().join('\n'));
  return h;
}

const messages = (h: FilterHost) => h.logs.map((l) => l.message);

test('vm config is read in onVmStart, plugin config in onConfigure (false refuses)', () => {
  const h = started();
  assert.ok(messages(h).includes('vm config: vm-cfg'));
  assert.equal(h.tickPeriodMs, 250);
  const refused = new FilterHost(probe);
  assert.equal(refused.start('refuse'), false);
});

test('every other SDK wrapper runs against a host (properties, shared data CAS, crypto, durations)', () => {
  const h = started('all');
  assert.deepEqual(h.errors(), []);
  assert.equal(h.properties.get('probe.x'), '1');
  assert.equal(Buffer.from(h.shared.get('probe')!.value).toString(), 'v2');
});

test('tick: counter metric, http call out, response back to the root context', () => {
  const h = started();
  h.tick();
  h.tick();
  assert.equal(h.metrics.get('probe_ticks')?.value, 2n);
  assert.equal(h.httpCalls.length, 2);
  const call = h.httpCalls[1];
  assert.equal(call.cluster, 'auth-cluster');
  assert.equal(call.timeout, 1500);
  assert.deepEqual(call.headers, [[':method', 'GET'], [':path', '/tick?n=2'], [':authority', 'auth.internal']]);
  h.httpCallResponse(2, [[':status', '200']], 'pong');
  assert.ok(messages(h).some((m) => m.startsWith('call 2 status 200 body pong at ')), messages(h).join('\n'));
  h.httpCallResponse(1, [], ''); // no headers: the call failed
  assert.ok(messages(h).includes(`call 1 status none body  at ${h.nowNs / 1_000_000n}`), messages(h).join('\n'));
});

test('whole header maps, bodies, trailers, queues, gauges and histograms in one request', () => {
  const h = started();
  const id = h.newStream();
  const req: [string, string][] = [[':path', '/a'], ['x-a', 'hello'], ['x-b', 'wörld']];
  assert.equal(h.onRequestHeaders(id, req, false), ACTION_PAUSE, 'not end of stream: the probe waits for the body');
  assert.deepEqual(h.requestHeaders, [[':path', '/A'], ['x-a', 'HELLO'], ['x-b', 'WÖRLD'], ['x-count', '3']]);
  assert.equal(h.metrics.get('probe_header_bytes')?.value, BigInt(FilterHost.serialize(req).length));
  assert.equal(h.metrics.get('probe_inflight')?.value, 1n);

  assert.equal(h.onRequestBody(id, 'ab', false), ACTION_PAUSE);
  assert.equal(h.onRequestBody(id, 'abc', true), ACTION_CONTINUE);
  assert.equal(Buffer.from(h.requestBody).toString(), '[abc]');
  assert.equal(h.onRequestTrailers(id, [['grpc-status', '0']]), ACTION_CONTINUE);
  assert.ok(messages(h).includes('trailer grpc-status=0'));

  const queue = h.queueIds.get('probe')!;
  assert.equal(h.queues.get(queue)!.length, 1);
  h.queueReady(queue);
  assert.ok(messages(h).includes(`queue item: req ${id}`));
  assert.equal(h.queues.get(queue)!.length, 0);

  assert.equal(h.onResponseHeaders(id, [[':status', '200'], ['a', '1']]), ACTION_CONTINUE);
  assert.equal(h.header(h.responseHeaders, 'x-seen'), '2');
  h.finish(id);
  assert.equal(h.doneCalls, 1, 'onDone returned false and called done()');
  assert.ok(messages(h).some((m) => m.startsWith(`log ${id}`)), 'on_log ran after proxy_done');
  assert.equal(h.metrics.get('probe_inflight')?.value, 0n);
  assert.deepEqual(h.errors(), []);
});
