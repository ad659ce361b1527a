// examples/canary-filter end to end: build the example with the asc API, run its own unit
// tests, start a Wisp whose edge route carries a placeholder filter, hot-load the canary
// module with PUT /filters/canary on the admin port, and watch real requests split between
// a stable and a canary upstream (a second listener routes on the filter's x-wisp-canary tag).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { normalizeConfig } from '../../proxy/config/load.js';
import { Wisp } from '../../proxy/server.js';
import { filterMetricIn, freePort, httpGet, startUpstream, type TestUpstream } from '../helpers/net.js';
import { buildFilterProject, linkDependencies } from '../helpers/filter-project.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLE = join(ROOT, 'examples', 'canary-filter');
const NOOP = join(ROOT, 'filters', 'build', 'noop.wasm');
const work = mkdtempSync(join(tmpdir(), 'wisp-canary-'));

let canaryWasm: Buffer;
let stable: TestUpstream;
let canary: TestUpstream;
let wisp: Wisp | null = null;
let edge: number;
let admin: number;

/** The example project's layout, with node_modules linked to this repo instead of npm
 * install (what npm makes for its file: dependencies). Sources are linked, not copied. */
function stageExample(): void {
  linkDependencies(work);
  mkdirSync(join(work, 'test'));
  symlinkSync(join(EXAMPLE, 'assembly'), join(work, 'assembly'), 'dir');
  copyFileSync(join(EXAMPLE, 'asconfig.json'), join(work, 'asconfig.json'));
  // Copied: node resolves a symlinked test file to its real path, and build/ is here.
  copyFileSync(join(EXAMPLE, 'test', 'canary.test.mjs'), join(work, 'test', 'canary.test.mjs'));
}

before(async () => {
  stageExample();
  await buildFilterProject(work);
  canaryWasm = readFileSync(join(work, 'build', 'canary.wasm'));

  stable = await startUpstream((_req, res) => res.end('stable'));
  canary = await startUpstream((_req, res) => res.end('canary'));
  const splitPort = await freePort();
  wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        workers: 1,
        listeners: [
          {
            name: 'edge',
            address: '127.0.0.1:0',
            routes: [{ match: { prefix: '/' }, cluster: 'split', filters: ['canary'] }],
          },
          {
            // Routes on the tag the filter set: the cohort picks the cluster here.
            name: 'split',
            address: `127.0.0.1:${splitPort}`,
            routes: [
              { match: { prefix: '/', headers: [{ name: 'x-wisp-canary', exact: '1' }] }, cluster: 'canary' },
              { match: { prefix: '/' }, cluster: 'stable' },
            ],
          },
        ],
        clusters: [
          { name: 'split', endpoints: [`127.0.0.1:${splitPort}`] },
          { name: 'stable', endpoints: [`127.0.0.1:${stable.port}`] },
          { name: 'canary', endpoints: [`127.0.0.1:${canary.port}`] },
        ],
        // Starts as a placeholder (noop); the test hot-loads the real module.
        filters: [{ name: 'canary', wasm: NOOP }],
      },
      'canary.test',
    ),
  );
  edge = wisp.listenerPort('edge');
  admin = wisp.adminPort();
});

after(async () => {
  if (wisp !== null) await wisp.stop(0);
  await stable?.close();
  await canary?.close();
  rmSync(work, { recursive: true, force: true });
});

test("the example's own unit tests pass (node --test test/canary.test.mjs)", async () => {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // run as a top-level `node --test`, not as a subtest
  const child = spawn(process.execPath, ['--test', 'test/canary.test.mjs'], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, output);
  assert.match(output, /# fail 0\b/);
});

test('hot-loaded with PUT /filters/canary, the filter splits real traffic by cookie and header', async () => {
  // Before: the placeholder tags nothing, so the split listener sends everything to stable.
  const pre = await httpGet(edge, '/page', { headers: { cookie: 'canary=1' } });
  assert.equal(pre.status, 200);
  assert.equal(pre.body, 'stable');

  const put = await httpGet(admin, '/filters/canary', { method: 'PUT', body: canaryWasm });
  assert.equal(put.status, 200, put.body);
  const info = JSON.parse(put.body) as { name: string; version: string };
  assert.equal(info.version, createHash('sha256').update(canaryWasm).digest('hex'));

  const byCookie = await httpGet(edge, '/page', { headers: { cookie: 'session=s1; canary=1' } });
  assert.equal(byCookie.body, 'canary');
  assert.equal(byCookie.headers['x-wisp-canary'], '1', 'the client sees its cohort');
  assert.equal(canary.requests.at(-1)?.headers['x-wisp-canary'], '1', 'the canary upstream sees the tag');

  const byHeader = await httpGet(edge, '/page', { headers: { 'x-canary': '1' } });
  assert.equal(byHeader.body, 'canary');

  const plain = await httpGet(edge, '/page');
  assert.equal(plain.body, 'stable');
  assert.equal(plain.headers['x-wisp-canary'], '0');
  assert.equal(stable.requests.at(-1)?.headers['x-wisp-canary'], '0');

  const spoofed = await httpGet(edge, '/page', { headers: { 'x-wisp-canary': '1' } });
  assert.equal(spoofed.body, 'stable', 'a client-sent tag is replaced by the filter');
});

test('the hot-loaded filter shows in /filters and its counters in /metrics', async () => {
  const list = JSON.parse((await httpGet(admin, '/filters')).body) as Array<{ name: string; version: string; generation: number }>;
  const entry = list.find((f) => f.name === 'canary');
  assert.ok(entry, JSON.stringify(list));
  assert.equal(entry.version, createHash('sha256').update(canaryWasm).digest('hex'));
  assert.ok(entry.generation >= 2, 'a new generation replaced the placeholder');
  const metrics = (await httpGet(admin, '/metrics')).body;
  assert.equal(filterMetricIn(metrics, 'canary', 'canary_requests'), 2, metrics.split('\n').filter((l) => l.includes('canary')).join('\n'));
  assert.equal(filterMetricIn(metrics, 'canary', 'stable_requests'), 2);
});
