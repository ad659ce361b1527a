// examples/custom-protocol end to end: build the WISPRPC sniff filter with the asc API, run the
// example's own unit tests, then put it in front of two raw TCP upstreams on a Wisp
// `protocol: tcp` listener and talk to it with real net clients: a WISPRPC hello (whole, and
// one byte per write) reaches `rpc`, plain text reaches `default`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { loadConfigFile, normalizeConfig } from '../../proxy/config/load.js';
import { Wisp } from '../../proxy/server.js';
import { waitFor } from '../helpers/net.js';
import { buildFilterProject, linkDependencies } from '../helpers/filter-project.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLE = join(ROOT, 'examples', 'custom-protocol');
const work = mkdtempSync(join(tmpdir(), 'wisp-wisprpc-'));

/** A raw TCP echo server that prefixes everything it sends back with `name:` once. */
class EchoUpstream {
  readonly sockets = new Set<net.Socket>();
  connections = 0;
  port = 0;
  private readonly server: net.Server;

  constructor(readonly name: string) {
    this.server = net.createServer({ allowHalfOpen: true }, (s) => {
      this.connections++;
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
      s.write(`${name}:`);
      s.on('data', (d) => s.write(d));
      s.on('end', () => s.end());
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

let rpc: EchoUpstream;
let fallback: EchoUpstream;
let wisp: Wisp | null = null;
let port = 0;

function hello(service: string, version = 1): Buffer {
  const name = Buffer.from(service, 'latin1');
  return Buffer.concat([Buffer.from([0x57, 0x52, 0x50, 0x43, version, name.length >> 8, name.length & 0xff]), name]);
}

/** Connects, sends `chunks` (one write each, a turn of the event loop apart), and collects the
 * reply until it is `expectLength` bytes long or the connection closes. */
function talk(chunks: Buffer[], expectLength: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const c = net.connect({ port, host: '127.0.0.1', noDelay: true }, async () => {
      for (const chunk of chunks) {
        c.write(chunk);
        await new Promise((r) => setImmediate(r));
      }
    });
    c.on('error', reject);
    c.on('data', (d) => {
      got += d.toString('latin1');
      if (got.length >= expectLength) c.destroy();
    });
    c.on('close', () => resolve(got));
  });
}

before(async () => {
  // The example's layout with node_modules linked to this repo (what npm's file: deps make).
  linkDependencies(work);
  mkdirSync(join(work, 'test'));
  symlinkSync(join(EXAMPLE, 'assembly'), join(work, 'assembly'), 'dir');
  copyFileSync(join(EXAMPLE, 'asconfig.json'), join(work, 'asconfig.json'));
  copyFileSync(join(EXAMPLE, 'test', 'wisprpc.test.mjs'), join(work, 'test', 'wisprpc.test.mjs'));
  await buildFilterProject(work);

  rpc = await new EchoUpstream('rpc').listen();
  fallback = await new EchoUpstream('default').listen();
  const cfg = normalizeConfig({
    admin: { address: '127.0.0.1:0' },
    workers: 1,
    filters: [{ name: 'wisprpc-sniff', wasm: join(work, 'build', 'wisprpc-sniff.wasm') }],
    listeners: [{
      name: 'rpc-edge',
      address: '127.0.0.1:0',
      protocol: 'tcp',
      tcp: { cluster: 'default', sniff: 'wisprpc-sniff', first_bytes_timeout: '3s', routes: [{ match: { protocol: ['wisprpc'] }, cluster: 'rpc' }] },
    }],
    clusters: [
      { name: 'rpc', endpoints: [`127.0.0.1:${rpc.port}`] },
      { name: 'default', endpoints: [`127.0.0.1:${fallback.port}`] },
    ],
  }, join(work, 'wisp.yaml'));
  wisp = await Wisp.start(cfg);
  port = wisp.listenerPort('rpc-edge');
});

after(async () => {
  if (wisp !== null) await wisp.stop(0);
  await rpc?.close();
  await fallback?.close();
  rmSync(work, { recursive: true, force: true });
});

test("the example's own unit tests pass (node --test test/wisprpc.test.mjs)", async () => {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // a top-level `node --test`, not a subtest
  const child = spawn(process.execPath, ['--test', 'test/wisprpc.test.mjs'], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, output);
  assert.match(output, /# fail 0\b/);
});

test("the example's wisp.yaml is a valid config routing wisprpc to rpc", () => {
  // The module is built into a temp copy above, not into the example folder: skip file checks.
  const cfg = loadConfigFile(join(EXAMPLE, 'wisp.yaml'), { checkFiles: false });
  const l = cfg.listeners[0]!;
  assert.equal(l.protocol, 'tcp');
  assert.equal(l.tcp?.sniff, 'wisprpc-sniff');
  assert.equal(l.tcp?.cluster, 'default');
  assert.deepEqual(l.tcp?.routes.map((r) => [r.match.protocol, r.cluster]), [[['wisprpc'], 'rpc']]);
});

test('a WISPRPC hello reaches rpc; the held bytes and what follows arrive intact', async () => {
  const h = hello('billing');
  const before = rpc.connections;
  const reply = await talk([h, Buffer.from('ping')], 'rpc:'.length + h.length + 4);
  assert.equal(reply, `rpc:${h.toString('latin1')}ping`);
  assert.equal(rpc.connections, before + 1);
});

test('a WISPRPC hello written one byte at a time still reaches rpc', async () => {
  const h = hello('inventory.v2', 7);
  const chunks: Buffer[] = [];
  for (let i = 0; i < h.length; i++) chunks.push(h.subarray(i, i + 1));
  assert.equal(await talk(chunks, 'rpc:'.length + h.length), `rpc:${h.toString('latin1')}`);
});

test('plain text, and a look-alike with a bad magic, reach default', async () => {
  assert.equal(await talk([Buffer.from('hello there\n')], 'default:'.length + 12), 'default:hello there\n');
  const fake = Buffer.from([0x57, 0x52, 0x50, 0x58, 1, 0, 1, 0x41]);
  assert.equal(await talk([fake], 'default:'.length + fake.length), `default:${fake.toString('latin1')}`);
});

test('connections are counted under protocol="wisprpc" and "unknown"', async () => {
  const metrics = wisp!.metrics;
  await waitFor(async () => /wisp_tcp_connections_active\{listener="rpc-edge",cluster="rpc",protocol="wisprpc"\} 0/.test(await metrics.render()), 5000, 'rpc connections closed');
  const text = await metrics.render();
  assert.match(text, /wisp_tcp_connections_total\{listener="rpc-edge",cluster="rpc",protocol="wisprpc"\} 2/);
  assert.match(text, /wisp_tcp_connections_total\{listener="rpc-edge",cluster="default",protocol="unknown"\} 2/);
});
