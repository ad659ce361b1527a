// Config and module faults: at start (bin/wisp.js exits non-zero with a clear message) and at
// reload (the old config keeps serving), and a reload storm under continuous load in which
// every response is counted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wisp } from '../../proxy/server.js';
import { loadConfigFile } from '../../proxy/config/load.js';
import { freePort, httpGet, startUpstream, type TestUpstream } from '../helpers/net.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'wisp.js');
const TAG_WASM = path.join(ROOT, 'filters', 'build', 'add-header.wasm');

let dir: string;
let upA: TestUpstream;
let upB: TestUpstream;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-config-faults-'));
  fs.writeFileSync(path.join(dir, 'corrupt.wasm'), Buffer.from('\0asm\x01\0\0\0this is not a module'));
  upA = await startUpstream((_req, res) => res.end('A'));
  upB = await startUpstream((_req, res) => res.end('B'));
});

after(async () => {
  await upA.close();
  await upB.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function validYaml(listenPort: number, upstreamPort: number, tag: string, extra = ''): string {
  return `admin:
  address: 127.0.0.1:0
workers: 1
listeners:
  - name: main
    address: 127.0.0.1:${listenPort}
    routes:
      - match: { prefix: / }
        cluster: up
        filters: [tag]
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstreamPort}]
filters:
  - name: tag
    wasm: ${TAG_WASM}
    config: ${tag}
${extra}`;
}

/** The broken configs, each with what the error message must mention. */
function brokenConfigs(listenPort: number, busyPort: number): Array<[string, string, RegExp]> {
  const good = validYaml(listenPort, upA.port, 'x');
  return [
    ['invalid YAML', 'listeners: [ {name: main\n  address: :::\n', /yaml|flow|unexpected|missing/i],
    ['schema error (unknown key)', good.replace('workers: 1', 'workerz: 1'), /workerz/],
    ['schema error (bad type)', good.replace('workers: 1', 'workers: many'), /workers/],
    ['port in use', good.replace(`127.0.0.1:${listenPort}`, `127.0.0.1:${busyPort}`), /in use|EADDRINUSE|listen|bind/i],
    ['admin port in use', good.replace('address: 127.0.0.1:0', `address: 127.0.0.1:${busyPort}`), /admin.*EADDRINUSE|EADDRINUSE.*admin/i],
    ['missing certificate', good.replace(`    routes:`, `    tls: { cert: ${dir}/nope.crt, key: ${dir}/nope.key }\n    routes:`), /nope\.(crt|key)/],
    ['missing wasm', good.replace(TAG_WASM, `${dir}/missing.wasm`), /missing\.wasm/],
    ['corrupt wasm', good.replace(TAG_WASM, `${dir}/corrupt.wasm`), /corrupt\.wasm|compile|wasm/i],
    ['unknown filter name', good.replace('filters: [tag]', 'filters: [tag, tagg]'), /unknown filter \\?"tagg\\?" \(defined: tag\)/],
  ];
}

function runWisp(file: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, '--config', file], { timeout: 20_000, env: { ...process.env, WISP_LOG_LEVEL: 'info' } }, (err, _stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stderr });
    });
  });
}

test('at start: every broken config makes bin/wisp.js exit non-zero with a message that names the problem', async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const busyPort = (busy.address() as net.AddressInfo).port;
  try {
    const listenPort = await freePort();
    await Promise.all(
      brokenConfigs(listenPort, busyPort).map(async ([what, yaml, mention], i) => {
        const file = path.join(dir, `start-${i}.yaml`);
        fs.writeFileSync(file, yaml);
        const r = await runWisp(file);
        assert.ok(r.code !== 0 && r.code !== null, `${what}: exit code ${r.code} (null = still running at the timeout)`);
        assert.match(r.stderr, mention, `${what}: ${r.stderr}`);
      }),
    );
  } finally {
    busy.close();
  }
});

test('at reload: every broken config is refused (admin 400 with the reason) and the old config keeps serving', async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const busyPort = (busy.address() as net.AddressInfo).port;
  const file = path.join(dir, 'reload.yaml');
  const listenPort = await freePort();
  fs.writeFileSync(file, validYaml(listenPort, upA.port, 'first'));
  const wisp = await Wisp.start(loadConfigFile(file));
  try {
    // The admin listener is bound once at start; a reload does not move it (see docs).
    for (const [what, yaml, mention] of brokenConfigs(listenPort, busyPort).filter(([w]) => w !== 'admin port in use')) {
      fs.writeFileSync(file, yaml);
      const r = await httpGet(wisp.adminPort(), '/config/reload', { method: 'POST' });
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.body}`);
      assert.match(r.body, mention, what);
      const served = await httpGet(listenPort, '/still');
      assert.equal(served.status, 200, what);
      assert.equal(served.body, 'A', what);
    }
    const m = await httpGet(wisp.adminPort(), '/metrics');
    assert.match(m.body, /wisp_config_reloads_total\{result="failed"\} 8/);
  } finally {
    await wisp.stop(0);
    busy.close();
  }
});

test('reload storm: 100 reloads in ~10 s (valid A/B and invalid) under continuous load: 0 failed, 0 dropped', async () => {
  const file = path.join(dir, 'storm.yaml');
  const listenPort = await freePort();
  fs.writeFileSync(file, validYaml(listenPort, upA.port, 'A'));
  const wisp = await Wisp.start(loadConfigFile(file));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const statuses = new Map<string, number>();
  const count = (k: string) => statuses.set(k, (statuses.get(k) ?? 0) + 1);
  let stop = false;
  let sent = 0;
  const oneRequest = () =>
    new Promise<void>((resolve) => {
      sent++;
      const req = http.get({ host: '127.0.0.1', port: listenPort, path: '/storm', agent }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          count(`${res.statusCode} ${body}`);
          resolve();
        });
        res.on('error', () => {
          count('error');
          resolve();
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        count(`error ${e.code}`);
        resolve();
      });
    });
  const clients = Array.from({ length: 8 }, async () => {
    while (!stop) await oneRequest();
  });
  const reloads = { ok: 0, failed: 0 };
  try {
    for (let i = 0; i < 100; i++) {
      const t0 = Date.now();
      let yaml: string;
      if (i % 10 === 9) yaml = i % 20 === 9 ? 'listeners: [oops\n' : validYaml(listenPort, upA.port, 'X').replace(TAG_WASM, `${dir}/corrupt.wasm`);
      else yaml = i % 2 === 0 ? validYaml(listenPort, upB.port, 'B') : validYaml(listenPort, upA.port, 'A');
      fs.writeFileSync(file, yaml);
      const r = await wisp.reload();
      if (r.ok) reloads.ok++;
      else reloads.failed++;
      const left = 100 - (Date.now() - t0);
      if (left > 0) await new Promise((res) => setTimeout(res, left)); // pacing the storm, not waiting for a condition
    }
  } finally {
    stop = true;
    await Promise.all(clients);
    agent.destroy();
    await wisp.stop(0);
  }
  const received = [...statuses.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(`# reload-storm ${JSON.stringify({ reloads, sent, received, statuses: Object.fromEntries(statuses) })}\n`);
  assert.equal(reloads.ok, 90);
  assert.equal(reloads.failed, 10);
  assert.equal(received, sent, 'every request got an answer');
  for (const k of statuses.keys()) assert.ok(k === '200 A' || k === '200 B', `unexpected outcome "${k}" × ${statuses.get(k)}`);
  assert.ok(sent > 200, `load was continuous (${sent} requests)`);
});

test('filter hot-load storm: 60 PUTs (alternating modules, some corrupt) under continuous load: 0 failed, 0 dropped', async () => {
  const file = path.join(dir, 'hotload.yaml');
  const listenPort = await freePort();
  fs.writeFileSync(file, validYaml(listenPort, upA.port, 'A'));
  const wisp = await Wisp.start(loadConfigFile(file));
  const admin = wisp.adminPort();
  const modules = [fs.readFileSync(path.join(ROOT, 'filters', 'build', 'noop.wasm')), fs.readFileSync(TAG_WASM)];
  const corrupt = fs.readFileSync(path.join(dir, 'corrupt.wasm'));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const outcomes = new Map<string, number>();
  let stop = false;
  let sent = 0;
  const oneRequest = () =>
    new Promise<void>((resolve) => {
      sent++;
      const req = http.get({ host: '127.0.0.1', port: listenPort, path: '/hot', agent }, (res) => {
        res.resume();
        res.on('end', () => {
          outcomes.set(String(res.statusCode), (outcomes.get(String(res.statusCode)) ?? 0) + 1);
          resolve();
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        outcomes.set(`error ${e.code}`, (outcomes.get(`error ${e.code}`) ?? 0) + 1);
        resolve();
      });
    });
  const clients = Array.from({ length: 8 }, async () => {
    while (!stop) await oneRequest();
  });
  const puts = new Map<number, number>();
  try {
    for (let i = 0; i < 60; i++) {
      const body = i % 10 === 9 ? corrupt : modules[i % 2]!;
      const r = await httpGet(admin, '/filters/tag', { method: 'PUT', body });
      puts.set(r.status, (puts.get(r.status) ?? 0) + 1);
    }
  } finally {
    stop = true;
    await Promise.all(clients);
    agent.destroy();
    await wisp.stop(0);
  }
  const received = [...outcomes.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(`# hotload-storm ${JSON.stringify({ puts: Object.fromEntries(puts), sent, received, outcomes: Object.fromEntries(outcomes) })}\n`);
  assert.deepEqual(Object.fromEntries(puts), { 200: 54, 400: 6 });
  assert.equal(received, sent);
  assert.deepEqual([...outcomes.keys()], ['200']);
  assert.ok(sent > 100, `load was continuous (${sent})`);
});
