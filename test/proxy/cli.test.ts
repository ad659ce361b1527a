// The `wisp` command as a user runs it: a real process, its stdout/stderr and exit codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startUpstream, httpGet, waitFor, freePort } from '../helpers/net.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const WISP = path.join(ROOT, 'bin', 'wisp.js');

test('--validate accepts a good config and names file, line and field of a bad one', () => {
  const ok = spawnSync(process.execPath, [WISP, '--validate', path.join(ROOT, 'examples', 'gateway.yaml')], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /valid/);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-cli-'));
  const bad = path.join(dir, 'bad.yaml');
  fs.writeFileSync(bad, 'listeners:\n  - name: l\n    address: 127.0.0.1:0\n    routes:\n      - match: { prefix: / }\n        cluster: missing\nclusters: []\n');
  const r = spawnSync(process.execPath, [WISP, '--validate', bad], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /bad\.yaml:6:\d+: listeners\[0\]\.routes\[0\]\.cluster: unknown cluster "missing"/);
});

test('runs a config, writes JSON access logs, drains and exits 0 on SIGTERM', async () => {
  const up = await startUpstream();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-cli-'));
  const file = path.join(dir, 'wisp.yaml');
  const port = await freePort();
  fs.writeFileSync(
    file,
    `admin: { address: 127.0.0.1:0 }
listeners:
  - name: main
    address: 127.0.0.1:${port}
    access_log: true
    routes: [{ name: all, match: { prefix: / }, cluster: up }]
clusters:
  - name: up
    endpoints: [127.0.0.1:${up.port}]
`,
  );
  const child = spawn(process.execPath, [WISP, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitFor(() => /listener main on/.test(stderr), 10_000, 'wisp to listen');
    const r = await httpGet(port, '/logged?x=1', { headers: { 'x-request-id': 'cli-test-1' } });
    assert.equal(r.status, 200);
    const line = await waitFor(() => stdout.split('\n').find((l) => l.includes('cli-test-1')), 5000, 'access log line');
    const entry = JSON.parse(line!) as Record<string, unknown>;
    assert.equal(entry.status, 200);
    assert.equal(entry.route, 'all');
    assert.equal(entry.path, '/logged?x=1');
    assert.equal(entry.upstream, `127.0.0.1:${up.port}`);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
    await up.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
