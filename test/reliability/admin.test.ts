// The admin surface: loopback by default, bearer token on every mutating endpoint, no secret in
// /config, and oversized or malformed requests refused with a 4xx while the admin keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { httpGet, rawRequest, startUpstream, waitFor, type TestUpstream } from '../helpers/net.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NOOP = path.join(ROOT, 'filters', 'build', 'noop.wasm');
const AUTH = path.join(ROOT, 'filters', 'build', 'auth.wasm');
const CERTS = path.join(ROOT, 'test', 'fixtures', 'certs');
const TOKEN = 'admin-token-s3cr3t-value';
const JWT_SECRET = 'jwt-hmac-s3cr3t-value';
const PASSPHRASE = 'tls-pass-s3cr3t-value';

let up: TestUpstream;
let wisp: Wisp;
let admin: number;

before(async () => {
  up = await startUpstream();
  wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0', token: TOKEN },
        workers: 1,
        listeners: [
          {
            name: 'l',
            address: '127.0.0.1:0',
            // The fixture key is not encrypted; the passphrase is only here to be hidden.
            tls: { cert: path.join(CERTS, 'localhost.crt'), key: path.join(CERTS, 'localhost.key'), passphrase: PASSPHRASE },
            routes: [{ match: { prefix: '/' }, cluster: 'up', filters: ['noop', 'auth'] }],
          },
        ],
        clusters: [{ name: 'up', endpoints: [`127.0.0.1:${up.port}`] }],
        filters: [
          { name: 'noop', wasm: NOOP },
          { name: 'auth', wasm: AUTH, config: { jwt: { secret: JWT_SECRET } } },
        ],
      },
      'admin.test',
    ),
  );
  admin = wisp.adminPort();
});

after(async () => {
  await wisp.stop(0);
  await up.close();
});

const bearer = { authorization: `Bearer ${TOKEN}` };
const wasmBytes = () => fs.readFileSync(NOOP);

test('the admin binds 127.0.0.1 when no address is configured', async () => {
  const cfg = normalizeConfig({ listeners: [{ name: 'l', address: '127.0.0.1:0', routes: [{ match: { prefix: '/' }, direct_response: { status: 200 } }] }] }, 'default-admin');
  assert.equal(cfg.admin.host, '127.0.0.1');
  assert.equal(cfg.admin.port, 9901);
  cfg.admin.port = 0; // the default port may be taken on this machine; the host is what matters
  const w = await Wisp.start(cfg);
  try {
    const r = await httpGet(w.adminPort(), '/live');
    assert.equal(r.status, 200);
    // Not reachable on another local address of this machine (127.0.0.2 is loopback too, but
    // a socket bound to 127.0.0.1 does not accept there).
    await assert.rejects(httpGet(w.adminPort(), '/live', { host: '127.0.0.2' }));
  } finally {
    await w.stop(0);
  }
});

test('mutating endpoints need the bearer token: 401 without it or with a wrong one, and nothing changes', async () => {
  const before = JSON.parse((await httpGet(admin, '/filters')).body) as Array<{ name: string; generation: number }>;
  const ops: Array<[string, string, Buffer | undefined]> = [
    ['POST', '/config/reload', undefined],
    ['PUT', '/filters/noop', wasmBytes()],
    ['POST', '/filters/noop/reload', undefined],
  ];
  for (const [method, url, body] of ops) {
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong' }, { authorization: TOKEN }, { authorization: `bearer ${TOKEN}` }]) {
      const r = await httpGet(admin, url, { method, headers, body });
      assert.equal(r.status, 401, `${method} ${url} ${JSON.stringify(headers)}`);
      assert.ok(!r.body.includes(TOKEN));
    }
  }
  const afterList = JSON.parse((await httpGet(admin, '/filters')).body) as Array<{ name: string; generation: number }>;
  assert.deepEqual(afterList.map((f) => f.generation), before.map((f) => f.generation));
  // With the token they work.
  assert.equal((await httpGet(admin, '/filters/noop', { method: 'PUT', headers: bearer, body: wasmBytes() })).status, 200);
  assert.equal((await httpGet(admin, '/filters/noop/reload', { method: 'POST', headers: bearer })).status, 200);
});

test('/config shows no secret: admin token, TLS passphrase, JWT secret inside a filter config', async () => {
  const r = await httpGet(admin, '/config');
  assert.equal(r.status, 200);
  for (const secret of [TOKEN, JWT_SECRET, PASSPHRASE]) assert.ok(!r.body.includes(secret), `${secret} leaked in /config`);
  // And the other admin read endpoints don't carry them either.
  for (const p of ['/filters', '/clusters', '/metrics', '/']) {
    const o = await httpGet(admin, p);
    for (const secret of [TOKEN, JWT_SECRET, PASSPHRASE]) assert.ok(!o.body.includes(secret), `${secret} leaked in ${p}`);
  }
});

test('oversized admin requests: 413 for a PUT over the limit (declared or streamed), and the admin keeps serving', async () => {
  // Declared: refused from the head, without reading 33 MiB.
  const declared = await rawRequest(admin, `PUT /filters/noop HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: ${33 * 1024 * 1024}\r\n\r\n`, { idleMs: 300 });
  assert.equal(declared.status, 413);
  // Streamed (chunked, no length): refused once past the limit.
  const sock = net.connect(admin, '127.0.0.1');
  let text = '';
  sock.on('data', (d) => (text += d.toString('latin1')));
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  sock.on('error', () => {});
  sock.write(`PUT /filters/noop HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n`);
  const chunk = Buffer.alloc(1024 * 1024, 1);
  for (let i = 0; i < 34 && !sock.destroyed && text === ''; i++) {
    sock.write(`${chunk.length.toString(16)}\r\n`);
    if (!sock.write(chunk)) await new Promise<void>((r) => { sock.once('drain', r); sock.once('close', r); });
    sock.write('\r\n');
  }
  await waitFor(() => text !== '' || sock.destroyed, 5000, 'an answer to the streamed oversized PUT');
  sock.destroy();
  await closed;
  assert.match(text, /^HTTP\/1\.1 413 /, `streamed oversized PUT got ${JSON.stringify(text.slice(0, 60))}`);
  // A body on an endpoint that takes none.
  assert.equal((await httpGet(admin, '/config/reload', { method: 'POST', headers: bearer, body: 'x' })).status, 413);
  // Headers over the admin's 16 KB.
  const big = await httpGet(admin, '/live', { headers: { 'x-big': 'a'.repeat(20 * 1024) } }).catch(() => ({ status: 0 }));
  assert.ok(big.status === 431 || big.status === 0, `big head got ${big.status}`);
  assert.equal((await httpGet(admin, '/live')).status, 200);
});

test('malformed admin requests are refused with 4xx and the admin keeps serving', async () => {
  const cases: Array<[string, string | Buffer]> = [
    ['not a wasm module', 'PUT'],
    ['unknown filter', 'PUT-unknown'],
    ['empty PUT', 'PUT-empty'],
    ['unknown path', 'GET /nope HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['unsupported method', `DELETE /filters/noop HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`],
    ['protocol-relative target', 'GET //%zz HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['bad percent-encoding in a filter name', `POST /filters/%E0%A4%A/reload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`],
    ['garbage request line', 'HELLO\r\n\r\n'],
    ['bad content-length', `PUT /filters/noop HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: abc\r\n\r\n`],
  ];
  const got: Record<string, number> = {};
  for (const [what, req] of cases) {
    let status: number;
    if (req === 'PUT') status = (await httpGet(admin, '/filters/noop', { method: 'PUT', headers: bearer, body: Buffer.from('\0asm\x01\0\0\0garbage') })).status;
    else if (req === 'PUT-unknown') status = (await httpGet(admin, '/filters/nosuch', { method: 'PUT', headers: bearer, body: wasmBytes() })).status;
    else if (req === 'PUT-empty') status = (await httpGet(admin, '/filters/noop', { method: 'PUT', headers: bearer, body: '' })).status;
    else status = (await rawRequest(admin, req, { idleMs: 300 })).status;
    got[what] = status;
    assert.equal((await httpGet(admin, '/live')).status, 200, `admin alive after ${what}`);
  }
  process.stdout.write(`# admin malformed ${JSON.stringify(got)}\n`);
  for (const [what, status] of Object.entries(got)) assert.ok(status >= 400 && status < 500, `${what}: ${status}`);
  // The filter that got garbage is still loaded (its previous version serves).
  const filters = JSON.parse((await httpGet(admin, '/filters')).body) as Array<{ name: string }>;
  assert.ok(filters.some((f) => f.name === 'noop'));
});
