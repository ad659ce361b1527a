// ALPN routing on a sniffing tcp listener: node:tls clients offering different ALPN lists
// reach different TLS upstreams (passed through: the upstream negotiates with the client).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { closerFor, listenLocal } from '../helpers/net.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SNIFF_WASM = path.resolve(here, '..', '..', '..', 'filters', 'build', 'sniff.wasm');
const certDir = path.resolve(here, '..', '..', '..', 'test', 'fixtures', 'certs');
const cert = fs.readFileSync(path.join(certDir, 'localhost.crt'));
const key = fs.readFileSync(path.join(certDir, 'localhost.key'));

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

/** A TLS upstream that answers `tag` and speaks the ALPN protocols given. */
async function tlsUpstream(tag: string, alpn: string[] | undefined): Promise<number> {
  const server = tls.createServer({ cert, key, ...(alpn ? { ALPNProtocols: alpn } : {}) }, (s) => {
    s.on('error', () => {});
    s.on('data', () => s.write(tag));
  });
  closers.push(closerFor(server));
  return listenLocal(server);
}

const h2Port = await tlsUpstream('h2-upstream', ['h2']);
const h1Port = await tlsUpstream('h1-upstream', ['http/1.1']);
const otherPort = await tlsUpstream('other-upstream', undefined);

const wisp = await Wisp.start(normalizeConfig({
  admin: { address: '127.0.0.1:0' },
  workers: 1,
  filters: [{ name: 'sniff', wasm: SNIFF_WASM }],
  listeners: [{
    name: 'l4',
    address: '127.0.0.1:0',
    protocol: 'tcp',
    tcp: {
      sniff: 'sniff',
      cluster: 'other',
      routes: [
        { match: { protocol: 'tls', alpn: 'h2' }, cluster: 'h2' },
        { match: { protocol: 'tls', alpn: ['http/1.1', 'http/1.0'] }, cluster: 'h1' },
      ],
    },
  }],
  clusters: [
    { name: 'h2', endpoints: [`127.0.0.1:${h2Port}`] },
    { name: 'h1', endpoints: [`127.0.0.1:${h1Port}`] },
    { name: 'other', endpoints: [`127.0.0.1:${otherPort}`] },
  ],
}, path.join(here, 'tcp-alpn.yaml')));
closers.unshift(() => wisp.stop(0));
const port = wisp.listenerPort('l4');

function talk(alpn: string[] | undefined): Promise<{ reply: string; negotiated: string | false }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: cert, ...(alpn ? { ALPNProtocols: alpn } : {}) }, () => s.write('hi'));
    s.on('error', reject);
    s.once('data', (d) => {
      resolve({ reply: d.toString(), negotiated: s.alpnProtocol ?? false });
      s.destroy();
    });
  });
}

test('alpn: a client offering h2 reaches the h2 upstream and negotiates h2 with it', async () => {
  assert.deepEqual(await talk(['h2']), { reply: 'h2-upstream', negotiated: 'h2' });
});

test('alpn: http/1.1 (any of the route\'s list) reaches the http/1.1 upstream', async () => {
  assert.deepEqual(await talk(['http/1.1']), { reply: 'h1-upstream', negotiated: 'http/1.1' });
  // Offering both matches the first route that takes any of them (h2 here).
  assert.deepEqual(await talk(['http/1.1', 'h2']), { reply: 'h2-upstream', negotiated: 'h2' });
});

test('alpn: no ALPN, or none a route lists, goes to the default cluster', async () => {
  assert.equal((await talk(undefined)).reply, 'other-upstream');
  assert.equal((await talk(['spdy/3'])).reply, 'other-upstream');
  const text = await wisp.metrics.render();
  assert.match(text, /wisp_tcp_connections_total\{listener="l4",cluster="h2",protocol="tls"\} 2\b/);
  assert.match(text, /wisp_tcp_connections_total\{listener="l4",cluster="other",protocol="tls"\} 2\b/);
});
