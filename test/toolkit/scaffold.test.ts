// `wisp filter new`: the generated project builds and its own tests pass. Instead of a slow
// `npm install`, the project's node_modules links to this repo's packages (assemblyscript,
// the SDK, Wisp itself for wisp/testing) — the same layout npm makes for its file: deps.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { scaffoldFilter } from '../../proxy/filter-scaffold.js';
import { buildFilterProject, linkDependencies } from '../helpers/filter-project.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'wisp-scaffold-'));
const dir = join(work, 'edge-guard');

before(async () => {
  const out = scaffoldFilter({ name: 'edge-guard', dir, wispRoot: ROOT });
  assert.deepEqual(out.files.sort(), ['.gitignore', '.npmrc', 'README.md', 'asconfig.json', 'assembly/index.ts', 'package.json', 'test/filter.test.mjs']);
  linkDependencies(dir);
  await buildFilterProject(dir, 'release');
});

after(() => rmSync(work, { recursive: true, force: true }));

test('the project links the SDK and Wisp by file: path, and refuses to overwrite', () => {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  assert.match(pkg.devDependencies['@wisp/sdk-as'], /^file:.*sdk-as$/);
  assert.match(pkg.devDependencies.wisp, /^file:/);
  assert.equal(pkg.scripts.test, 'npm run build && node --test test/filter.test.mjs');
  const asconfig = JSON.parse(readFileSync(join(dir, 'asconfig.json'), 'utf8'));
  assert.deepEqual(asconfig.options.use, [
    'abort=~lib/@wisp/sdk-as/assembly/runtime/wispAbort',
    'trace=~lib/@wisp/sdk-as/assembly/runtime/wispTrace',
    'seed=~lib/@wisp/sdk-as/assembly/runtime/wispSeed',
  ]);
  assert.throws(() => scaffoldFilter({ name: 'edge-guard', dir }), /exists and is not empty/);
  assert.throws(() => scaffoldFilter({ name: 'Bad Name', dir: join(work, 'x') }), /must be lower-case/);
});

test('`wisp filter new NAME --dir DIR` creates the project and says what to run next', async () => {
  const target = join(work, 'from-cli');
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'wisp.js'), 'filter', 'new', 'from-cli', '--dir', target], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, output);
  assert.match(output, /npm install && npm test/);
  assert.match(readFileSync(join(target, 'assembly', 'index.ts'), 'utf8'), /registerRootContext\(.*"from-cli"\)/);
});

test('the built module imports only proxy-wasm host functions', () => {
  const wasm = join(dir, 'build', 'edge-guard.wasm');
  assert.ok(existsSync(wasm));
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(wasm)));
  assert.ok(imports.length > 0);
  for (const imp of imports) assert.ok(imp.module === 'env' && imp.name.startsWith('proxy_'), `unexpected import ${imp.module}.${imp.name}`);
});

test("the project's own test file passes (node --test, importing wisp/testing)", async () => {
  // Without NODE_TEST_CONTEXT the child runs as a top-level `node --test`, not as a subtest.
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, ['--test', 'test/filter.test.mjs'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, output);
  assert.match(output, /# pass 4\b/);
  assert.match(output, /# fail 0\b/);
});
