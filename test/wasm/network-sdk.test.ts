// A network filter written with sdk-as's NetworkContext (sdk-as/tests/network), compiled here
// with the asc API and run in real filter workers through runtime.networkChain().
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import type { NetworkConnection } from '../../proxy/filters/types.js';
import { PeerType } from '../../proxy/wasm/wire.js';
import { waitFor } from '../helpers/net.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

class Conn implements NetworkConnection {
  clientAddress = '127.0.0.1';
  clientPort = 42424;
  localAddress = '127.0.0.1:7000';
  listenerName = 'l4';
  clusterName = 'c';
  networkFilterState: object | null = null;
  down: string[] = [];
  up: string[] = [];
  closed: string | null = null;
  onNetworkData(downstream: boolean, data: Uint8Array): void {
    (downstream ? this.down : this.up).push(Buffer.from(data).toString());
  }
  onNetworkClose(reason: string): void {
    this.closed = reason;
  }
}

const logs: string[] = [];
let rt: WasmFilterRuntime;

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wisp-sdk-net-'));
  let bytes: Uint8Array;
  try {
    const out = join(dir, 'net.wasm');
    let stderr = '';
    const { error } = await asc.main(
      ['sdk-as/tests/network/index.ts', '--config', 'asconfig.json', '--target', 'release', '--baseDir', ROOT, '--outFile', out],
      { stderr: { write: (c: string | Uint8Array) => { stderr += String(c); } }, stdout: { write: () => {} } },
    );
    assert.equal(error, null, `build failed: ${error?.message}\n${stderr}`);
    bytes = readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  rt = new WasmFilterRuntime({ workers: 1, logLevel: 'info', log: (level, filter, msg) => logs.push(`${filter} ${msg}`) });
  await rt.loadBytes('sdk-net', bytes, { root_id: 'sdk-net', failure: 'closed', deadline_ms: 1000 });
});

after(async () => {
  await rt.close();
});

test('NetworkContext: per-connection state, rewrites both ways, holds, close callbacks', async () => {
  const chain = rt.networkChain(['sdk-net']);
  const a = new Conn();
  const b = new Conn();
  chain.data(a, true, Buffer.from('hello'), false);
  chain.data(b, true, Buffer.from('other'), false);
  chain.data(a, true, Buffer.from('wait\\'), false);
  chain.data(a, true, Buffer.from('ed'), false);
  chain.data(a, false, Buffer.from('answer'), false);
  await waitFor(() => a.down.length === 3 && a.up.length === 1 && b.down.length === 1, 5000);
  assert.deepEqual(a.down, ['[1]hello', '', '[2]wait\\ed']);
  assert.deepEqual(b.down, ['[1]other']);
  assert.deepEqual(a.up, ['ANSWER']);
  chain.close(a, PeerType.Remote, PeerType.Local);
  await waitFor(() => logs.some((l) => l.includes('sdk-net done')), 5000);
  assert.ok(logs.some((l) => l.includes('sdk-net new 127.0.0.1:42424')), logs.join('\n'));
  assert.ok(logs.some((l) => l.includes('sdk-net downstream-close 2 after 2')), logs.join('\n'));
  assert.ok(logs.some((l) => l.includes('sdk-net upstream-close 1')), logs.join('\n'));

  chain.data(b, true, Buffer.from('bye'), false);
  await waitFor(() => b.closed !== null, 5000);
  assert.equal(b.down.length, 1);
  chain.close(b, PeerType.Local, PeerType.Local);
});
