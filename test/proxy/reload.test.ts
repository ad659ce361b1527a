// Hot reload: file watch and admin API; invalid configs are rejected while the old one serves;
// requests in flight finish on the config they started with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Wisp } from '../../proxy/server.js';
import { loadConfigFile } from '../../proxy/config/load.js';
import { fileURLToPath } from 'node:url';
import { startUpstream, httpGet, waitFor, freePort } from '../helpers/net.js';

const BUILD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'filters', 'build');

function yamlFor(listenPort: number, upstreamPort: number, prefix: string): string {
  return `admin:
  address: 127.0.0.1:0
listeners:
  - name: main
    address: 127.0.0.1:${listenPort}
    routes:
      - match: { prefix: ${prefix} }
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstreamPort}]
`;
}

test('file change reloads; invalid file is rejected and the old config keeps serving', async () => {
  const slowRelease: Array<() => void> = [];
  const up = await startUpstream((req, res) => {
    if (req.url === '/a/slow') {
      slowRelease.push(() => res.end('slow-done'));
      return;
    }
    res.end('up:' + req.url);
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-reload-'));
  const file = path.join(dir, 'wisp.yaml');
  const listenPort = await freePort();
  fs.writeFileSync(file, yamlFor(listenPort, up.port, '/a'));
  const wisp = await Wisp.start(loadConfigFile(file), { watch: true });
  try {
    assert.equal((await httpGet(listenPort, '/a/1')).status, 200);
    assert.equal((await httpGet(listenPort, '/b/1')).status, 404);

    // A request in flight under the old config...
    const inflight = httpGet(listenPort, '/a/slow');
    await waitFor(() => slowRelease.length === 1, 5000, 'slow request at upstream');

    // ...while the file changes to route /b instead of /a.
    fs.writeFileSync(file, yamlFor(listenPort, up.port, '/b'));
    await waitFor(async () => (await httpGet(listenPort, '/b/1')).status === 200, 5000, 'reload to route /b');
    assert.equal((await httpGet(listenPort, '/a/1')).status, 404);

    slowRelease[0]!();
    const done = await inflight;
    assert.equal(done.status, 200);
    assert.equal(done.body, 'slow-done');

    // An invalid config is rejected, counted, and the current one keeps serving.
    const failedBefore = wisp.metrics.reloads.failed;
    fs.writeFileSync(file, yamlFor(listenPort, up.port, '/c').replace('cluster: up', 'cluster: nope'));
    await waitFor(() => wisp.metrics.reloads.failed > failedBefore, 5000, 'failed reload counted');
    assert.equal((await httpGet(listenPort, '/b/2')).status, 200);

    // The admin API reload reports the reason.
    const r = await httpGet(wisp.adminPort(), '/config/reload', { method: 'POST' });
    assert.equal(r.status, 400);
    assert.match(JSON.parse(r.body).error, /nope/);
    assert.equal((await httpGet(listenPort, '/b/3')).status, 200);
  } finally {
    await wisp.stop(0);
    await up.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a listener that cannot bind fails the reload and changes nothing', async () => {
  const up = await startUpstream();
  const other = await startUpstream();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-reload-'));
  const file = path.join(dir, 'wisp.yaml');
  const listenPort = await freePort();
  fs.writeFileSync(file, yamlFor(listenPort, up.port, '/'));
  const wisp = await Wisp.start(loadConfigFile(file));
  const blocker = await startUpstream();
  try {
    // The new config moves the listener to a taken port AND points the cluster elsewhere.
    fs.writeFileSync(file, yamlFor(blocker.port, other.port, '/'));
    const r = await wisp.reload();
    assert.equal(r.ok, false);
    assert.match(r.error ?? '', /cannot listen/);
    const before = up.requests.length;
    assert.equal((await httpGet(listenPort, '/x')).status, 200);
    assert.equal(up.requests.length, before + 1, 'the old cluster still serves');
    assert.equal(other.requests.length, 0);
  } finally {
    await wisp.stop(0);
    await other.close();
    await blocker.close();
    await up.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('graceful stop lets the request in flight finish', async () => {
  let release: (() => void) | null = null;
  const up = await startUpstream((_req, res) => {
    release = () => res.end('finished');
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-drain-'));
  const file = path.join(dir, 'wisp.yaml');
  const listenPort = await freePort();
  fs.writeFileSync(file, yamlFor(listenPort, up.port, '/'));
  const wisp = await Wisp.start(loadConfigFile(file));
  try {
    const pending = httpGet(listenPort, '/drain');
    await waitFor(() => release !== null, 5000, 'request at upstream');
    const stopped = wisp.stop(5000);
    // New connections are refused while draining.
    await waitFor(() => httpGet(listenPort, '/new').then(() => false, () => true), 5000, 'listener closed');
    release!();
    const r = await pending;
    assert.equal(r.body, 'finished');
    await stopped;
  } finally {
    await wisp.stop(0);
    await up.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a filter whose .wasm file changes on disk is hot-loaded; a corrupt file is refused', async () => {
  const up = await startUpstream();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-wasm-'));
  const file = path.join(dir, 'wisp.yaml');
  const wasmFile = path.join(dir, 'tag.wasm');
  fs.copyFileSync(path.join(BUILD, 'add-header.wasm'), wasmFile);
  const listenPort = await freePort();
  fs.writeFileSync(
    file,
    yamlFor(listenPort, up.port, '/').replace('cluster: up', 'cluster: up\n        filters: [tag]') + 'filters:\n  - name: tag\n    wasm: tag.wasm\n    config: v1\n',
  );
  const wisp = await Wisp.start(loadConfigFile(file), { watch: true });
  const tagOf = async (): Promise<unknown> => {
    const before = up.requests.length;
    await httpGet(listenPort, '/t');
    return up.requests[before]!.headers['x-wisp-filter'];
  };
  try {
    assert.equal(await tagOf(), 'v1');
    // A corrupt module dropped in place is refused; the loaded one keeps serving.
    fs.writeFileSync(wasmFile, 'garbage');
    await waitFor(() => wisp.metrics.filterReloads.failed === 1, 5000, 'corrupt module refused');
    assert.equal(await tagOf(), 'v1');
    // The noop module replaces add-header: the header disappears.
    fs.copyFileSync(path.join(BUILD, 'noop.wasm'), wasmFile);
    await waitFor(async () => (await tagOf()) === undefined, 5000, 'noop hot-loaded from disk');
    assert.ok(wisp.metrics.filterReloads.ok >= 1);
  } finally {
    await wisp.stop(0);
    await up.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
