// L4 (TCP) listeners without sniffing: bytes both ways, half-close, large transfers with
// backpressure, refused upstreams, metrics and reload.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { freePort, waitFor, closerFor, listenLocal } from '../helpers/net.js';

/** Echo server; with `halfClose`, it answers "got N" after the client's FIN, then ends. */
async function startEcho(): Promise<{ port: number; server: net.Server; close: () => Promise<void> }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    let n = 0;
    s.on('data', (d) => {
      n += d.length;
      if (d[0] !== 0x3f /* ? */) s.write(d);
    });
    s.on('end', () => s.end(`\ngot ${n}`));
  });
  const close = closerFor(server);
  return { port: await listenLocal(server), server, close };
}

function config(tcpPort: number, upstreamPort: number, extra: Record<string, unknown> = {}): ReturnType<typeof normalizeConfig> {
  return normalizeConfig({
    admin: { address: '127.0.0.1:0' },
    workers: 1,
    listeners: [{ name: 'l4', address: `127.0.0.1:${tcpPort}`, protocol: 'tcp', tcp: { cluster: 'echo', ...extra } }],
    clusters: [{ name: 'echo', endpoints: [`127.0.0.1:${upstreamPort}`] }],
  }, '/tmp/wisp-tcp-test.yaml', { checkFiles: false });
}

/** Connect, send `data`, half-close, collect everything until the server closes. */
function exchange(port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => c.end(data));
    c.on('data', (d) => chunks.push(d));
    c.on('error', reject);
    c.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

const echo = await startEcho();
after(() => echo.close());

test('tcp: bytes both ways, and the reply after the client half-closes still arrives', async () => {
  const wisp = await Wisp.start(config(0, echo.port));
  try {
    const port = wisp.listenerPort('l4');
    const got = await exchange(port, Buffer.from('hello wisp'));
    assert.equal(got.toString(), 'hello wisp\ngot 10');

    // Interactive: several round trips on one connection before any FIN.
    const c = net.connect(port, '127.0.0.1');
    let seen = '';
    c.on('data', (d) => (seen += d.toString()));
    await new Promise<void>((r) => c.once('connect', () => r()));
    c.write('ping1');
    await waitFor(() => seen === 'ping1', 5000, 'first echo');
    c.write('ping2');
    await waitFor(() => seen === 'ping1ping2', 5000, 'second echo');
    c.destroy();

    // Bytes are added when a connection closes.
    await waitFor(async () => /wisp_tcp_bytes_total\{listener="l4",cluster="echo",protocol="none",direction="in"\} 20/.test(await wisp.metrics.render()), 5000, 'bytes counter');
    const text = await wisp.metrics.render();
    assert.match(text, /wisp_tcp_connections_total\{listener="l4",cluster="echo",protocol="none"\} 2/);
    assert.match(text, /wisp_tcp_connections_active\{listener="l4",cluster="echo",protocol="none"\} 0/);
  } finally {
    await wisp.stop(0);
  }
});

test('tcp: 5 MB each way arrives intact (backpressure through pipe)', async () => {
  const wisp = await Wisp.start(config(0, echo.port));
  try {
    const payload = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 10)) & 0xff;
    payload[0] = 0x41; // not '?' so it is echoed
    const got = await exchange(wisp.listenerPort('l4'), payload);
    const tail = Buffer.from(`\ngot ${payload.length}`);
    assert.equal(got.length, payload.length + tail.length);
    assert.equal(createHash('sha256').update(got.subarray(0, payload.length)).digest('hex'), createHash('sha256').update(payload).digest('hex'));
    assert.deepEqual(got.subarray(payload.length), tail);
  } finally {
    await wisp.stop(0);
  }
});

test('tcp: a refused upstream closes the client, the listener keeps accepting and counts the failure', async () => {
  const deadPort = await freePort();
  const wisp = await Wisp.start(normalizeConfig({
    admin: { address: '127.0.0.1:0' },
    workers: 1,
    listeners: [
      { name: 'dead', address: '127.0.0.1:0', protocol: 'tcp', tcp: { cluster: 'nowhere', connect_timeout: '2s' } },
      { name: 'live', address: '127.0.0.1:0', protocol: 'tcp', tcp: { cluster: 'echo' } },
    ],
    clusters: [
      { name: 'nowhere', endpoints: [`127.0.0.1:${deadPort}`] },
      { name: 'echo', endpoints: [`127.0.0.1:${echo.port}`] },
    ],
  }, '/tmp/wisp-tcp-test.yaml', { checkFiles: false }));
  try {
    for (let i = 0; i < 3; i++) {
      const got = await exchange(wisp.listenerPort('dead'), Buffer.from('x'));
      assert.equal(got.length, 0, 'nothing comes back from a refused upstream');
    }
    const failures = wisp.clusters.get('nowhere')!.endpoints[0]!.connectFailures;
    assert.ok(failures >= 1, `connect failures recorded (${failures})`);
    assert.equal((await exchange(wisp.listenerPort('live'), Buffer.from('still'))).toString(), 'still\ngot 5');
  } finally {
    await wisp.stop(0);
  }
});

test('tcp: idle timeout closes a silent connection', async () => {
  const wisp = await Wisp.start(config(0, echo.port, { idle_timeout: '150ms' }));
  try {
    const c = net.connect(wisp.listenerPort('l4'), '127.0.0.1');
    c.on('error', () => {});
    const closed = new Promise<void>((r) => c.on('close', () => r()));
    await new Promise<void>((r) => c.once('connect', () => r()));
    await closed;
    assert.equal(c.destroyed, true);
  } finally {
    await wisp.stop(0);
  }
});

test('tcp: reload swaps the cluster for new connections; a changed address rebinds; http listeners beside it work', async () => {
  const other = await startEcho();
  const port1 = await freePort();
  const wisp = await Wisp.start(config(port1, echo.port));
  try {
    assert.equal((await exchange(port1, Buffer.from('a'))).toString(), 'a\ngot 1');
    // Same address, the cluster now points at the other echo: '?' bytes are not echoed by
    // either, so tell them apart by the kept connection count on `other`.
    let otherConns = 0;
    other.server.on('connection', () => otherConns++);
    await wisp.apply(config(port1, other.port));
    assert.equal(wisp.listenerPort('l4'), port1);
    assert.equal((await exchange(port1, Buffer.from('b'))).toString(), 'b\ngot 1');
    assert.equal(otherConns, 1);

    const port2 = await freePort();
    await wisp.apply(config(port2, echo.port));
    assert.equal(wisp.listenerPort('l4'), port2);
    assert.equal((await exchange(port2, Buffer.from('cc'))).toString(), 'cc\ngot 2');
    await waitFor(() => new Promise<boolean>((resolve) => {
      const probe = net.connect(port1, '127.0.0.1');
      probe.on('connect', () => { probe.destroy(); resolve(false); });
      probe.on('error', () => resolve(true));
    }), 5000, 'old port released');
  } finally {
    await wisp.stop(0);
    await other.close();
  }
});
