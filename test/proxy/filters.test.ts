// Wasm filters on the request path of a running Wisp: the built-in AssemblyScript filters
// built by `npm install`, real upstream, real client, real worker threads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { startUpstream, httpGet, type TestUpstream } from '../helpers/net.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const wasm = (name: string) => path.join(ROOT, 'filters', 'build', `${name}.wasm`);

let up: TestUpstream;
let wisp: Wisp;
let port: number;

before(async () => {
  up = await startUpstream();
  wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        workers: 2,
        listeners: [
          {
            name: 'main',
            address: '127.0.0.1:0',
            routes: [
              { match: { prefix: '/noop/' }, cluster: 'up', filters: ['noop'] },
              { match: { prefix: '/tag/' }, cluster: 'up', filters: ['tag'] },
              { match: { prefix: '/secure/' }, cluster: 'up', filters: ['auth', 'limit', 'tag'] },
              { match: { prefix: '/plain/' }, cluster: 'up' },
            ],
          },
        ],
        clusters: [{ name: 'up', endpoints: [`127.0.0.1:${up.port}`] }],
        filters: [
          { name: 'noop', wasm: wasm('noop') },
          { name: 'tag', wasm: wasm('add-header'), config: 'tagged' },
          { name: 'auth', wasm: wasm('auth'), config: { keys: ['sesame'] } },
          { name: 'limit', wasm: wasm('ratelimit'), config: { rate: 1, per: '1h', burst: 5, key: 'header:x-api-key' } },
        ],
      },
      'filters.test',
    ),
  );
  port = wisp.listenerPort('main');
});

after(async () => {
  await wisp.stop(0);
  await up.close();
});

test('noop filter: the request passes untouched', async () => {
  const r = await httpGet(port, '/noop/a');
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).url, '/noop/a');
});

test('add-header filter: the upstream sees the header the filter added', async () => {
  const before = up.requests.length;
  const r = await httpGet(port, '/tag/a');
  assert.equal(r.status, 200);
  assert.equal(up.requests[before]!.headers['x-wisp-filter'], 'tagged');
});

test('chain: auth answers 401 locally and nothing reaches the upstream', async () => {
  const before = up.requests.length;
  const r = await httpGet(port, '/secure/a');
  assert.equal(r.status, 401);
  assert.ok(r.headers['www-authenticate']);
  assert.equal(up.requests.length, before);
});

test('chain: auth passes, ratelimit allows the burst then answers 429, tag runs after both', async () => {
  const before = up.requests.length;
  const statuses: number[] = [];
  // Concurrent, across two worker threads: the bucket is shared, so exactly the burst passes.
  const results = await Promise.all(Array.from({ length: 12 }, () => httpGet(port, '/secure/b', { headers: { 'x-api-key': 'sesame' } })));
  for (const r of results) statuses.push(r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 5, `statuses: ${statuses.join(',')}`);
  assert.equal(statuses.filter((s) => s === 429).length, 7);
  const limited = results.find((r) => r.status === 429)!;
  assert.ok(limited.headers['retry-after']);
  assert.equal(up.requests.length - before, 5);
  for (const req of up.requests.slice(before)) assert.equal(req.headers['x-wisp-filter'], 'tagged');
});

test('routes without filters are unaffected', async () => {
  const r = await httpGet(port, '/plain/x');
  assert.equal(r.status, 200);
});

test('admin: hot-load a filter by PUT; a corrupt module is refused and the old one keeps serving', async () => {
  const admin = wisp.adminPort();
  const list1 = JSON.parse((await httpGet(admin, '/filters')).body) as { name: string }[];
  assert.ok(list1.some((f) => f.name === 'tag'));

  const bad = await httpGet(admin, '/filters/tag', { method: 'PUT', body: Buffer.from('not wasm at all') });
  assert.ok(bad.status >= 400, `status ${bad.status}`);
  assert.match(bad.body, /wasm/i);
  const stillTagged = up.requests.length;
  assert.equal((await httpGet(port, '/tag/after-bad')).status, 200);
  assert.equal(up.requests[stillTagged]!.headers['x-wisp-filter'], 'tagged');

  // Replace "tag" (add-header) with noop's bytes: the header disappears for new requests.
  const put = await httpGet(admin, '/filters/tag', { method: 'PUT', body: fs.readFileSync(wasm('noop')) });
  assert.equal(put.status, 200, put.body);
  const idx = up.requests.length;
  assert.equal((await httpGet(port, '/tag/after-put')).status, 200);
  assert.equal(up.requests[idx]!.headers['x-wisp-filter'], undefined);

  // And reload from disk brings the configured module back.
  const rl = await httpGet(admin, '/filters/tag/reload', { method: 'POST' });
  assert.equal(rl.status, 200, rl.body);
  const idx2 = up.requests.length;
  await httpGet(port, '/tag/after-reload');
  assert.equal(up.requests[idx2]!.headers['x-wisp-filter'], 'tagged');
});

test('filter metrics are exported on /metrics', async () => {
  const m = await httpGet(wisp.adminPort(), '/metrics');
  assert.match(m.body, /wisp_filter_metric\{filter="limit"/);
});
