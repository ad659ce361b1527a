// Unit tests for the WISPRPC sniff filter, in-process on real bytes. wisp/testing's
// FilterHarness drives HTTP streams only, so this file carries a minimal proxy-wasm host for
// the one network call Wisp makes when sniffing: a fresh context, the held bytes as the
// DownstreamData buffer, proxy_on_downstream_data, and the properties the filter set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const WASM = new URL('../build/wisprpc-sniff.wasm', import.meta.url);
const DOWNSTREAM_DATA = 2;
const OK = 0;
const NOT_FOUND = 1;

/** Loads the filter; returns sniff(bytes, end) → the properties it set, as an object. */
async function loadSniffer() {
  const module = await WebAssembly.compile(readFileSync(WASM));
  let exports;
  let held = new Uint8Array(0);
  let props = {};
  const logs = [];
  const mem = () => new Uint8Array(exports.memory.buffer);
  const text = (ptr, len) => new TextDecoder().decode(mem().subarray(ptr, ptr + len));
  const host = {
    proxy_log(level, ptr, len) { logs.push(text(ptr, len)); return OK; },
    proxy_get_current_time_nanoseconds(ret) { new DataView(exports.memory.buffer).setBigUint64(ret, process.hrtime.bigint(), true); return OK; },
    proxy_get_buffer_bytes(type, start, max, retPtr, retLen) {
      if (type !== DOWNSTREAM_DATA) return NOT_FOUND;
      const bytes = held.subarray(start, start + max);
      const ptr = exports.proxy_on_memory_allocate(bytes.length);
      mem().set(bytes, ptr);
      const view = new DataView(exports.memory.buffer);
      view.setUint32(retPtr, ptr, true);
      view.setUint32(retLen, bytes.length, true);
      return OK;
    },
    proxy_set_property(pathPtr, pathLen, valPtr, valLen) {
      props[text(pathPtr, pathLen).split('\0').join('.')] = text(valPtr, valLen);
      return OK;
    },
  };
  const env = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind === 'function') env[imp.name] = host[imp.name] ?? (() => NOT_FOUND);
  }
  ({ exports } = await WebAssembly.instantiate(module, { env }));
  exports._initialize?.();
  exports.proxy_on_context_create(1, 0);
  assert.ok(exports.proxy_on_vm_start(1, 0));
  assert.ok(exports.proxy_on_configure(1, 0));
  let nextContext = 2;
  return {
    logs,
    sniff(bytes, end = false) {
      held = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
      props = {};
      const ctx = nextContext++;
      exports.proxy_on_context_create(ctx, 1);
      exports.proxy_on_new_connection(ctx);
      exports.proxy_on_downstream_data(ctx, held.length, end ? 1 : 0);
      exports.proxy_on_done(ctx);
      exports.proxy_on_delete(ctx);
      return props;
    },
  };
}

/** A WISPRPC hello: magic, version, u16 BE name length, name. */
function hello(service, version = 1) {
  const name = Buffer.from(service, 'latin1');
  const head = Buffer.from([0x57, 0x52, 0x50, 0x43, version, name.length >> 8, name.length & 0xff]);
  return Buffer.concat([head, name]);
}

test('a whole hello names the protocol, the service and the version', async () => {
  const f = await loadSniffer();
  assert.deepEqual(f.sniff(hello('billing.v2')), { protocol: 'wisprpc', 'wisprpc.version': '1', 'wisprpc.service': 'billing.v2' });
  const withPayload = Buffer.concat([hello('users', 3), Buffer.from('request body follows')]);
  assert.deepEqual(f.sniff(withPayload), { protocol: 'wisprpc', 'wisprpc.version': '3', 'wisprpc.service': 'users' });
  assert.deepEqual(f.logs, []);
});

test('every strict prefix of a hello waits for more bytes; the whole one decides', async () => {
  const f = await loadSniffer();
  const h = hello('inventory');
  for (let i = 0; i < h.length; i++) assert.deepEqual(f.sniff(h.subarray(0, i)), {}, `prefix of ${i} bytes`);
  assert.equal(f.sniff(h)['wisprpc.service'], 'inventory');
});

test('anything else is unknown as soon as a byte differs', async () => {
  const f = await loadSniffer();
  assert.deepEqual(f.sniff('GET / HTTP/1.1\r\n'), { protocol: 'unknown' });
  assert.deepEqual(f.sniff('WRPX'), { protocol: 'unknown' });
  assert.deepEqual(f.sniff('W'), {}, 'one matching byte is not enough to say');
  assert.deepEqual(f.sniff(Buffer.from([0x16, 0x03, 0x01])), { protocol: 'unknown' });
});

test('bad service names are refused: empty, too long, not printable', async () => {
  const f = await loadSniffer();
  assert.deepEqual(f.sniff(hello('')), { protocol: 'unknown' });
  assert.deepEqual(f.sniff(hello('x'.repeat(256))), { protocol: 'unknown' });
  assert.deepEqual(f.sniff(hello('x'.repeat(255)))['wisprpc.service'], 'x'.repeat(255));
  assert.deepEqual(f.sniff(hello('two words')), { protocol: 'unknown' });
  assert.deepEqual(f.sniff(hello('ok').subarray(0, 8)), {}, 'a good partial name waits');
});

test('end of stream always decides', async () => {
  const f = await loadSniffer();
  assert.deepEqual(f.sniff('', true), { protocol: 'unknown' });
  assert.deepEqual(f.sniff('WRP', true), { protocol: 'unknown' });
  assert.deepEqual(f.sniff(hello('orders').subarray(0, 9), true), { protocol: 'wisprpc' }, 'magic seen, name cut short');
});
