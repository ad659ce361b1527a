// `tcp.sniff_inline`: the sniff filter runs on the main thread. Real clients through a
// listener that sniffs inline are routed as with worker sniffing, the verdict is answered
// synchronously once the in-process copy is up, and a hot-reloaded filter is followed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { InlineSniffer } from '../../proxy/listener/inline-sniff.js';
import { waitFor, closerFor, listenLocal } from '../helpers/net.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SNIFF_WASM = path.resolve(here, '..', '..', '..', 'filters', 'build', 'sniff.wasm');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-inline-sniff-'));

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function listen(server: net.Server): Promise<number> {
  closers.push(closerFor(server));
  return listenLocal(server);
}

/** A TCP server that answers every chunk with `tag`. */
function tagServer(tag: string): Promise<number> {
  return listen(net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', () => s.write(tag));
  }));
}

const ports = {
  web: await listen(http.createServer((req, res) => res.end(`web ${req.url}`))),
  redis: await tagServer('+PONG\r\n'),
  alpha: await tagServer('alpha-upstream'),
  beta: await tagServer('beta-upstream'),
};

/** A sniff filter that names every connection `name`. */
async function constantSniff(name: string): Promise<Uint8Array> {
  const asc = await import('assemblyscript/asc');
  const built = await asc.compileString(`
@external("env", "proxy_set_property")
declare function proxy_set_property(pp: usize, pl: usize, vp: usize, vl: usize): i32;
export function proxy_abi_version_0_2_1(): void {}
export function proxy_on_memory_allocate(size: usize): usize { return heap.alloc(size); }
export function proxy_on_downstream_data(ctx: u32, size: u32, eos: u32): u32 {
  const k = String.UTF8.encode("protocol");
  const v = String.UTF8.encode("${name}");
  proxy_set_property(changetype<usize>(k), k.byteLength, changetype<usize>(v), v.byteLength);
  return 0;
}
`, { runtime: 'incremental', optimizeLevel: 2, noAssert: true, use: ['abort='] });
  assert.equal(built.error, null, String(built.stderr));
  return built.binary!;
}

const custom = path.join(dir, 'constant.wasm');
fs.writeFileSync(custom, await constantSniff('alpha'));

const wisp = await Wisp.start(normalizeConfig({
  admin: { address: '127.0.0.1:0' },
  workers: 1,
  filters: [{ name: 'sniff', wasm: SNIFF_WASM }, { name: 'constant', wasm: custom }],
  listeners: [
    {
      name: 'l4', address: '127.0.0.1:0', protocol: 'tcp',
      tcp: { sniff: 'sniff', sniff_inline: true, routes: [{ match: { protocol: 'http1' }, cluster: 'web' }, { match: { protocol: 'redis' }, cluster: 'redis' }] },
    },
    {
      name: 'custom', address: '127.0.0.1:0', protocol: 'tcp',
      tcp: { sniff: 'constant', sniff_inline: true, routes: [{ match: { protocol: 'alpha' }, cluster: 'alpha' }, { match: { protocol: 'beta' }, cluster: 'beta' }] },
    },
  ],
  clusters: Object.entries(ports).map(([name, port]) => ({ name, endpoints: [`127.0.0.1:${port}`] })),
}, path.join(dir, 'wisp.yaml')));
closers.unshift(() => wisp.stop(0));
const runtime = wisp.filters;
assert.ok(runtime instanceof WasmFilterRuntime);

function talk(port: number, data: string, until: (got: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const c = net.connect(port, '127.0.0.1', () => c.write(data));
    c.on('error', reject);
    c.on('data', (d) => {
      got += d.toString('latin1');
      if (until(got)) {
        c.destroy();
        resolve(got);
      }
    });
    c.on('close', () => resolve(got));
  });
}

test('sniff_inline: the verdict comes from the main thread (synchronously) and clients are routed by it', async () => {
  const sniffer = InlineSniffer.for(runtime, 'sniff');
  const request = Buffer.from('GET /x HTTP/1.1\r\nhost: a\r\n\r\n');
  const verdict = await waitFor(() => {
    const v = sniffer.sniff(request, false);
    return v instanceof Map ? v : null;
  }, 5000, 'the in-process instance');
  assert.ok(verdict !== null);
  assert.equal(verdict.get('protocol'), 'http1');
  const port = wisp.listenerPort('l4');
  const h = await talk(port, 'GET /inline HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n', (g) => g.endsWith('web /inline'));
  assert.match(h, /^HTTP\/1\.1 200/);
  assert.equal(await talk(port, '*1\r\n$4\r\nPING\r\n', (g) => g.endsWith('\r\n')), '+PONG\r\n');
});

test('sniff_inline: a hot-reloaded filter is followed (new verdicts once the new module is up)', async () => {
  const port = wisp.listenerPort('custom');
  const sniffer = InlineSniffer.for(runtime, 'constant');
  await waitFor(() => sniffer.sniff(Buffer.from('x'), false) instanceof Map, 5000, 'the in-process instance');
  assert.equal(await talk(port, 'x', (g) => g.length >= 14), 'alpha-upstream');
  fs.writeFileSync(custom, await constantSniff('beta'));
  await runtime.reload('constant');
  // Until the new module is instantiated here, connections sniff in the worker (also beta).
  assert.equal(await talk(port, 'x', (g) => g.length >= 13), 'beta-upstream');
  const v = await waitFor(() => {
    const r = sniffer.sniff(Buffer.from('x'), false);
    return r instanceof Map && r.get('protocol') === 'beta' ? r : null;
  }, 5000, 'the reloaded module on the main thread');
  assert.ok(v !== null);
  assert.equal(v.get('protocol'), 'beta');
  assert.equal(await talk(port, 'x', (g) => g.length >= 13), 'beta-upstream');
});
