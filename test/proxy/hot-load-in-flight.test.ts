// A hot-load through the admin API while a request is in flight, over real sockets: the
// request finishes on the generation it started with (its response phase still runs the old
// module), requests after the load use the new one, and GET /filters reports the new
// version, generation and load time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { httpGet, waitFor } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PROBE = path.join(ROOT, 'test', 'fixtures', 'probe.wasm');
const ADD_HEADER = path.join(ROOT, 'filters', 'build', 'add-header.wasm');

interface FilterRow {
  name: string;
  version: string;
  generation: number;
  loaded_at: string;
}

test('hot-load under a request in flight: it finishes on the old module, the next one runs the new', async () => {
  // The upstream holds /slow until the test lets it go.
  let release = (): void => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    };
    if (req.url === '/slow') void held.then(answer);
    else answer();
  };
  const { adminPort, port, upstream, stop } = await startWispWithFilters({
    file: 'hot-load-in-flight.test',
    upstream: handler,
    chain: ['hot'],
    filters: [{ name: 'hot', wasm: PROBE, config: 'A' }],
  });
  try {
    const before = (JSON.parse((await httpGet(adminPort, '/filters')).body) as FilterRow[]).find((f) => f.name === 'hot')!;
    assert.equal(before.version, createHash('sha256').update(fs.readFileSync(PROBE)).digest('hex'));

    // In flight: its request phase ran the probe (the upstream sees x-probe), its response waits.
    const slow = httpGet(port, '/slow');
    await waitFor(() => upstream.requests.some((r) => r.url === '/slow'), 10_000, 'the slow request at the upstream');
    assert.equal(upstream.requests.find((r) => r.url === '/slow')!.headers['x-probe'], 'A');

    // Replace the module: add-header (with the same config "A" it adds x-wisp-filter: A and
    // skips the response phase; the probe marks responses with x-probe-response).
    const added = fs.readFileSync(ADD_HEADER);
    const put = await httpGet(adminPort, '/filters/hot', { method: 'PUT', body: added });
    assert.equal(put.status, 200, put.body);

    const fresh = await httpGet(port, '/fresh');
    assert.equal(fresh.status, 200);
    const atUpstream = upstream.requests.find((r) => r.url === '/fresh')!;
    assert.equal(atUpstream.headers['x-wisp-filter'], 'A', 'a request after the load runs the new module');
    assert.equal(atUpstream.headers['x-probe'], undefined);
    assert.equal(fresh.headers['x-probe-response'], undefined);

    release();
    const done = await slow;
    assert.equal(done.status, 200);
    assert.equal(done.body, 'ok');
    assert.equal(done.headers['x-probe-response'], 'A', 'the request in flight finished on the module it started with');

    const after = (JSON.parse((await httpGet(adminPort, '/filters')).body) as FilterRow[]).find((f) => f.name === 'hot')!;
    assert.equal(after.version, createHash('sha256').update(added).digest('hex'));
    assert.ok(after.generation > before.generation, `generation ${before.generation} → ${after.generation}`);
    assert.ok(Date.parse(after.loaded_at) >= Date.parse(before.loaded_at), `${before.loaded_at} → ${after.loaded_at}`);
  } finally {
    release();
    await stop();
  }
});
