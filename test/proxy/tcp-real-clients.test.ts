// One sniffing L4 listener, three real protocol stacks behind it: redis-cli against a real
// redis-server (Debian package), sofa-bolt-node's RpcClient against a sofa-bolt-node server,
// and a dubbo-remoting client against a dubbo-remoting server. Each must be recognised by
// filters/sniff, routed to its own cluster (bolt → A, dubbo → B, redis → C) and answered end
// to end. Without redis-server on PATH the redis tests skip; they never fail for that.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { freePort, waitFor } from '../helpers/net.js';
import { bolt, dubbo, helloRequest, startRpcUpstream, RpcCodecClient, type RpcPacket } from '../helpers/rpc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SNIFF_WASM = path.resolve(here, '..', '..', '..', 'filters', 'build', 'sniff.wasm');

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

function onPath(binary: string): boolean {
  const r = spawnSync(binary, ['--version'], { stdio: 'ignore', timeout: 5000 });
  return r.error === undefined && r.status === 0;
}
const REDIS_MISSING = onPath('redis-server') && onPath('redis-cli')
  ? null
  : 'redis-server/redis-cli not installed (Debian: apt-get install redis-server)';

/** A real redis-server on a free loopback port, persistence off, its files in a temp dir. */
async function startRedis(): Promise<{ port: number; close: () => Promise<void> }> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-redis-'));
  const proc: ChildProcess = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const close = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => proc.exitCode === null && (await redisCli(port, ['PING'])) === 'PONG\n', 10000, `redis-server on ${port} ${stderr}`);
  } catch (err) {
    await close();
    throw err;
  }
  return { port, close };
}

/** Runs redis-cli (the real client) against 127.0.0.1:port; resolves with its stdout. */
function redisCli(port: number, args: string[], input?: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const cli = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 20000 });
    const out: Buffer[] = [];
    let err = '';
    cli.stdout.on('data', (d: Buffer) => out.push(d));
    cli.stderr.on('data', (d: Buffer) => (err += d.toString()));
    cli.on('error', reject);
    cli.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('latin1'));
      else reject(new Error(`redis-cli ${args[0]} exited ${code}: ${err}`));
    });
    cli.stdin.end(input);
  });
}

// Anything the sniffer cannot place lands here; a test that finds a connection here failed.
let fallbackConnections = 0;
const fallbackSockets = new Set<net.Socket>();
const fallback = net.createServer((s) => {
  fallbackConnections++;
  fallbackSockets.add(s);
  s.on('close', () => fallbackSockets.delete(s));
  s.on('error', () => {});
  s.end('fallback\n');
});
await new Promise<void>((r) => fallback.listen(0, '127.0.0.1', () => r()));
closers.push(() => new Promise<void>((r) => {
  for (const s of fallbackSockets) s.destroy();
  fallback.close(() => r());
}));
const fallbackPort = (fallback.address() as net.AddressInfo).port;

const boltUp = await startRpcUpstream(bolt, 'bolt-upstream');
closers.push(() => boltUp.close());
const dubboUp = await startRpcUpstream(dubbo, 'dubbo-upstream');
closers.push(() => dubboUp.close());
const redis = REDIS_MISSING === null ? await startRedis() : null;
if (redis !== null) closers.push(() => redis.close());

const wisp = await Wisp.start(normalizeConfig({
  admin: { address: '127.0.0.1:0' },
  workers: 1,
  filters: [{ name: 'sniff', wasm: SNIFF_WASM }],
  listeners: [{
    name: 'l4', address: '127.0.0.1:0', protocol: 'tcp',
    tcp: {
      cluster: 'fallback', sniff: 'sniff', first_bytes_timeout: '3s',
      routes: [
        { match: { protocol: 'bolt' }, cluster: 'A' },
        { match: { protocol: 'dubbo' }, cluster: 'B' },
        { match: { protocol: 'redis' }, cluster: 'C' },
      ],
    },
  }],
  clusters: [
    { name: 'A', endpoints: [`127.0.0.1:${boltUp.port}`] },
    { name: 'B', endpoints: [`127.0.0.1:${dubboUp.port}`] },
    // Without redis-server the C route still needs a cluster; its tests skip.
    { name: 'C', endpoints: [`127.0.0.1:${redis?.port ?? fallbackPort}`] },
    { name: 'fallback', endpoints: [`127.0.0.1:${fallbackPort}`] },
  ],
}, path.join(here, 'tcp-real-clients.yaml')));
closers.push(() => wisp.stop(0));
const port = wisp.listenerPort('l4');

async function connectionsTotal(cluster: string, protocol: string): Promise<number> {
  const text = await wisp.metrics.render();
  const m = new RegExp(`wisp_tcp_connections_total\\{listener="l4",cluster="${cluster}",protocol="${protocol}"\\} (\\d+)`).exec(text);
  return m === null ? 0 : Number(m[1]);
}

const quiet = (): void => {};
const boltLogger = { info: quiet, warn: quiet, debug: quiet, error: (...args: unknown[]) => console.error(...args) };

function appResponse(p: RpcPacket): unknown {
  assert.equal(p.data.error, null, `RPC error: ${String(p.data.error)}`);
  return p.data.appResponse;
}

test('redis-cli → redis-server through Wisp: SET, GET, INCR, and INFO names the upstream', { timeout: 30000 }, async (t) => {
  if (redis === null) return t.skip(REDIS_MISSING!);
  const before = await connectionsTotal('C', 'redis');
  assert.equal(await redisCli(port, ['SET', 'wisp:greeting', 'hello through wisp']), 'OK\n');
  assert.equal(await redisCli(port, ['GET', 'wisp:greeting']), 'hello through wisp\n');
  assert.equal(await redisCli(port, ['INCR', 'wisp:n']), '1\n');
  assert.equal(await redisCli(port, ['INCRBY', 'wisp:n', '41']), '42\n');
  // The server that answered is the one behind cluster C, not just any RESP speaker.
  assert.match(await redisCli(port, ['INFO', 'server']), new RegExp(`tcp_port:${redis.port}\r?\n`));
  assert.equal(await redisCli(redis.port, ['GET', 'wisp:n']), '42\n', 'written through Wisp, read directly');
  assert.equal(await connectionsTotal('C', 'redis'), before + 5);
  assert.equal(fallbackConnections, 0);
});

test('redis-cli through Wisp: many commands on one connection, and a 2000-command --pipe pipeline', { timeout: 30000 }, async (t) => {
  if (redis === null) return t.skip(REDIS_MISSING!);
  const before = await connectionsTotal('C', 'redis');
  // Commands read from stdin share one connection: a long-lived proxied session.
  const session = await redisCli(port, [], 'DEL wisp:list\nRPUSH wisp:list a b c\nLRANGE wisp:list 0 -1\nLLEN wisp:list\n');
  assert.equal(session, '0\n3\na\nb\nc\n3\n');
  // --pipe writes the whole RESP stream without waiting for replies (true pipelining).
  const n = 2000;
  let resp = '*2\r\n$3\r\nDEL\r\n$9\r\nwisp:pipe\r\n';
  for (let i = 0; i < n; i++) resp += '*2\r\n$4\r\nINCR\r\n$9\r\nwisp:pipe\r\n';
  const piped = await redisCli(port, ['--pipe'], resp);
  assert.match(piped, new RegExp(`errors: 0, replies: ${n + 1}`));
  assert.equal(await redisCli(port, ['GET', 'wisp:pipe']), `${n}\n`);
  assert.equal(await connectionsTotal('C', 'redis'), before + 3);
  assert.equal(fallbackConnections, 0);
});

test('redis-cli through Wisp: a 4 MiB value goes up and comes back byte for byte', { timeout: 30000 }, async (t) => {
  if (redis === null) return t.skip(REDIS_MISSING!);
  const value = randomBytes(3 * 1024 * 1024).toString('base64'); // 4 MiB of text, no newline
  assert.equal(await redisCli(port, ['-x', 'SET', 'wisp:big'], value), 'OK\n');
  assert.equal(await redisCli(port, ['STRLEN', 'wisp:big']), `${value.length}\n`);
  const got = await redisCli(port, ['GET', 'wisp:big']);
  assert.equal(got.length, value.length + 1);
  assert.equal(createHash('sha256').update(got.slice(0, -1)).digest('hex'), createHash('sha256').update(value).digest('hex'));
});

test('sofa-bolt-node RpcClient → Wisp → sofa-bolt-node server: detected as bolt, routed to cluster A', { timeout: 30000 }, async () => {
  const before = { a: await connectionsTotal('A', 'bolt'), dubboRequests: dubboUp.requests };
  const client = new bolt.RpcClient({ address: new URL(`bolt://127.0.0.1:${port}`), logger: boltLogger });
  try {
    await client.ready();
    assert.equal(appResponse(await client.invoke(helloRequest('peter'))), 'bolt-upstream: hello peter');
    // Concurrent calls on the one connection: responses are matched by request id.
    const names = Array.from({ length: 50 }, (_, i) => `caller-${i}`);
    const replies = await Promise.all(names.map((n) => client.invoke(helloRequest(n))));
    assert.deepEqual(replies.map(appResponse), names.map((n) => `bolt-upstream: hello ${n}`));
    // A 1 MiB argument spans many TCP reads on both legs.
    const big = 'b'.repeat(1024 * 1024);
    assert.equal(appResponse(await client.invoke(helloRequest(big))), `bolt-upstream: hello ${big}`);
  } finally {
    await client.close();
  }
  assert.equal(await connectionsTotal('A', 'bolt'), before.a + 1);
  assert.ok(boltUp.requests >= 52);
  assert.equal(dubboUp.requests, before.dubboRequests, 'nothing bolt reached the dubbo upstream');
  assert.equal(fallbackConnections, 0);
});

test('sofa-bolt-node Bolt v2 with CRC32 (proto 2, ver1 2), heartbeat first: detected as bolt, routed to cluster A', { timeout: 30000 }, async () => {
  const before = await connectionsTotal('A', 'bolt');
  const client = new RpcCodecClient(bolt, port, { protocolType: 'bolt2', boltVersion: 2, crcEnable: true });
  try {
    // The first bytes Wisp sees are a v2 heartbeat (cmdcode 0), not a request.
    assert.equal((await client.heartbeat()).packetType, 'heartbeat_ack');
    assert.equal(appResponse(await client.invoke(helloRequest('v2'))), 'bolt-upstream: hello v2');
  } finally {
    client.close();
  }
  assert.equal(await connectionsTotal('A', 'bolt'), before + 1);
  assert.equal(fallbackConnections, 0);
});

test('dubbo-remoting client → Wisp → dubbo-remoting server: detected as dubbo, routed to cluster B', { timeout: 30000 }, async () => {
  const before = { b: await connectionsTotal('B', 'dubbo'), boltRequests: boltUp.requests };
  const client = new RpcCodecClient(dubbo, port);
  try {
    // A heartbeat (event flag set) as the first packet: detection rests on the magic alone.
    assert.equal((await client.heartbeat()).packetType, 'heartbeat_ack');
    assert.equal(appResponse(await client.invoke(helloRequest('peter'))), 'dubbo-upstream: hello peter');
    const names = Array.from({ length: 50 }, (_, i) => `caller-${i}`);
    const replies = await Promise.all(names.map((n) => client.invoke(helloRequest(n))));
    assert.deepEqual(replies.map(appResponse), names.map((n) => `dubbo-upstream: hello ${n}`));
    const big = 'd'.repeat(1024 * 1024);
    assert.equal(appResponse(await client.invoke(helloRequest(big))), `dubbo-upstream: hello ${big}`);
  } finally {
    client.close();
  }
  assert.equal(await connectionsTotal('B', 'dubbo'), before.b + 1);
  assert.equal(boltUp.requests, before.boltRequests, 'nothing dubbo reached the bolt upstream');
  assert.equal(fallbackConnections, 0);
});

test('all three at once on the one listener: each client reaches its own upstream', { timeout: 30000 }, async () => {
  const boltClient = new bolt.RpcClient({ address: new URL(`bolt://127.0.0.1:${port}`), logger: boltLogger });
  const dubboClient = new RpcCodecClient(dubbo, port);
  try {
    const [b, d, r] = await Promise.all([
      boltClient.ready().then(() => boltClient.invoke(helloRequest('together'))),
      dubboClient.invoke(helloRequest('together')),
      redis === null ? Promise.resolve('skipped\n') : redisCli(port, ['ECHO', 'together']),
    ]);
    assert.equal(appResponse(b), 'bolt-upstream: hello together');
    assert.equal(appResponse(d), 'dubbo-upstream: hello together');
    assert.equal(r, redis === null ? 'skipped\n' : 'together\n');
  } finally {
    await boltClient.close();
    dubboClient.close();
  }
  assert.equal(fallbackConnections, 0, 'no real client fell through to the default cluster');
  assert.equal(await connectionsTotal('fallback', 'unknown'), 0);
});
