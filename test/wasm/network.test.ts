// Network (L4) filters through the filter runtime: real AssemblyScript fixtures in real worker
// threads, fed a connection's chunks the way the tcp listener feeds them.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import type { NetworkConnection } from '../../proxy/filters/types.js';
import { PeerType } from '../../proxy/wasm/wire.js';
import { waitFor } from '../helpers/net.js';
import { filterConfig, fixture } from './helpers.js';

/** Records the chain's answers per direction, in order. */
class TestConnection implements NetworkConnection {
  clientAddress = '127.0.0.1';
  clientPort: number;
  localAddress = '127.0.0.1:7000';
  listenerName = 'l4';
  clusterName = 'echo';
  networkFilterState: object | null = null;
  downstream: string[] = [];
  upstream: string[] = [];
  downstreamEnded = false;
  upstreamEnded = false;
  closedReason: string | null = null;
  private static nextPort = 41000;

  constructor() {
    this.clientPort = TestConnection.nextPort++;
  }

  onNetworkData(downstream: boolean, data: Uint8Array, end: boolean): void {
    if (downstream) {
      this.downstream.push(Buffer.from(data).toString());
      if (end) this.downstreamEnded = true;
    } else {
      this.upstream.push(Buffer.from(data).toString());
      if (end) this.upstreamEnded = true;
    }
  }

  onNetworkClose(reason: string): void {
    this.closedReason = reason;
  }

  get down(): string {
    return this.downstream.join('');
  }

  get up(): string {
    return this.upstream.join('');
  }
}

const logs: string[] = [];
let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 2, logLevel: 'info', log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
  await rt.load(filterConfig('upper', fixture('net-upper.wasm')));
  await rt.load(filterConfig('guard', fixture('net-guard.wasm')));
  await rt.load(filterConfig('guard-open', fixture('net-guard.wasm'), { failure: 'open' }));
});

after(async () => {
  await rt.close();
});

test('downstream bytes are rewritten, upstream bytes pass, order kept over many chunks', async () => {
  const chain = rt.networkChain(['upper']);
  const conn = new TestConnection();
  let sent = '';
  for (let i = 0; i < 200; i++) {
    const chunk = `chunk-${i} abc;`;
    sent += chunk;
    chain.data(conn, true, Buffer.from(chunk), false);
    if (i % 3 === 0) chain.data(conn, false, Buffer.from(`reply-${i};`), false);
  }
  chain.data(conn, true, new Uint8Array(0), true);
  await waitFor(() => conn.downstreamEnded, 5000);
  assert.equal(conn.down, sent.toUpperCase());
  assert.equal(conn.downstream.length, 201);
  await waitFor(() => conn.upstream.length === 67, 5000);
  assert.ok(conn.up.startsWith('reply-0;reply-3;reply-6;'));
  assert.equal(conn.closedReason, null);
  chain.close(conn, PeerType.Remote, PeerType.Local);
  await waitFor(() => logs.some((l) => l.includes(`upstream-close peer=${PeerType.Local}`)), 5000);
  assert.ok(logs.some((l) => l.includes(`net-upper new 127.0.0.1:${conn.clientPort} to 127.0.0.1:7000 connection `)), logs.join('\n'));
  assert.ok(logs.some((l) => l.includes(`net-upper downstream-close peer=${PeerType.Remote}`)));
  await waitFor(() => logs.some((l) => l.includes('net-upper done')), 5000);
});

test('StopIteration holds bytes until the filter lets them go; chain order both ways', async () => {
  const chain = rt.networkChain(['upper', 'guard']);
  const conn = new TestConnection();
  chain.data(conn, true, Buffer.from('he'), false);
  chain.data(conn, true, Buffer.from('llo'), false);
  chain.data(conn, true, Buffer.from(' world\nnext'), false);
  await waitFor(() => conn.downstream.length === 3, 5000);
  // Held twice (empty answers), then everything at once, upper-cased by the first filter.
  assert.deepEqual(conn.downstream, ['', '', 'HELLO WORLD\nNEXT']);
  // Upstream runs last to first: guard prefixes, upper leaves it.
  chain.data(conn, false, Buffer.from('pong'), false);
  await waitFor(() => conn.upstream.length === 1, 5000);
  assert.equal(conn.up, '> pong');
  // "quit" is upper-cased by upper before guard sees it: guard closes the connection.
  chain.data(conn, true, Buffer.from('quit\n'), false);
  await waitFor(() => conn.closedReason !== null, 5000);
  assert.equal(conn.downstream.length, 3);
  chain.close(conn, PeerType.Local, PeerType.Local);
});

test('a trapping network filter: failure closed closes the connection, open passes the bytes', async () => {
  const closed = new TestConnection();
  const closedChain = rt.networkChain(['guard']);
  closedChain.data(closed, true, Buffer.from('ok\n'), false);
  closedChain.data(closed, true, Buffer.from('TRAP\n'), false);
  await waitFor(() => closed.closedReason !== null, 5000);
  assert.deepEqual(closed.downstream, ['ok\n']);
  assert.match(closed.closedReason!, /guard/);
  closedChain.close(closed, PeerType.Local, PeerType.Local);

  const open = new TestConnection();
  const openChain = rt.networkChain(['guard-open']);
  openChain.data(open, true, Buffer.from('TRAP\n'), false);
  openChain.data(open, true, Buffer.from('after\n'), true);
  await waitFor(() => open.downstreamEnded, 5000);
  assert.equal(open.down, 'TRAP\nafter\n');
  assert.equal(open.closedReason, null);
  openChain.close(open, PeerType.Remote, PeerType.Remote);
  assert.ok(logs.some((l) => l.includes('trap in proxy_on_downstream_data')));
});

test('hot load: an open connection keeps its generation, a new one gets the new module', async () => {
  await rt.load(filterConfig('swap', fixture('net-upper.wasm')));
  const chain = rt.networkChain(['swap']);
  const old = new TestConnection();
  chain.data(old, true, Buffer.from('one\n'), false);
  await waitFor(() => old.downstream.length === 1, 5000);
  await rt.loadBytes('swap', await readFile(fixture('net-guard.wasm')));
  const fresh = new TestConnection();
  chain.data(old, true, Buffer.from('two'), false);
  chain.data(fresh, true, Buffer.from('two'), false);
  await waitFor(() => old.downstream.length === 2 && fresh.downstream.length === 1, 5000);
  assert.deepEqual(old.downstream, ['ONE\n', 'TWO']);
  assert.deepEqual(fresh.downstream, ['']); // guard holds a line without a newline
  chain.close(old, PeerType.Remote, PeerType.Local);
  chain.close(fresh, PeerType.Remote, PeerType.Local);
});

test('an unknown filter name is refused', () => {
  assert.throws(() => rt.networkChain(['nope']), /unknown filter "nope"/);
});

test('a looping network filter is stopped by its deadline: closed closes, open passes and the connection goes on', async () => {
  const loopRt = new WasmFilterRuntime({ workers: 1, watchdogIntervalMs: 5, log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`) });
  try {
    await loopRt.load(filterConfig('loop-closed', fixture('net-guard.wasm'), { deadline_ms: 50 }));
    await loopRt.load(filterConfig('loop-open', fixture('net-guard.wasm'), { deadline_ms: 50, failure: 'open' }));
    const closed = new TestConnection();
    const closedChain = loopRt.networkChain(['loop-closed']);
    closedChain.data(closed, true, Buffer.from('LOOP\n'), false);
    await waitFor(() => closed.closedReason !== null, 10_000);
    assert.match(closed.closedReason!, /loop-closed/);
    closedChain.close(closed, PeerType.Local, PeerType.Local);

    const open = new TestConnection();
    const openChain = loopRt.networkChain(['loop-open']);
    openChain.data(open, true, Buffer.from('first\n'), false);
    await waitFor(() => open.downstream.length === 1, 10_000);
    openChain.data(open, true, Buffer.from('LOOP\n'), false);
    await waitFor(() => open.downstream.length === 2, 10_000);
    // The replacement worker knows nothing of the connection: it gets its info again and a
    // fresh context (the filter holds this line without a newline, so it runs again).
    openChain.data(open, true, Buffer.from('held'), false);
    openChain.data(open, true, Buffer.from(' then\n'), false);
    await waitFor(() => open.downstream.length === 4, 10_000);
    assert.deepEqual(open.downstream, ['first\n', 'LOOP\n', '', 'held then\n']);
    assert.equal(open.closedReason, null);
    openChain.close(open, PeerType.Remote, PeerType.Local);
    assert.ok(logs.some((l) => l.includes('ran past its deadline')), logs.join('\n'));
  } finally {
    await loopRt.close();
  }
});
