// `wisp filter new NAME`: a filter project that builds, tests and hot-loads as it is.
// The project depends on the SDK and on Wisp (for wisp/testing) by file: path to this
// repository; published, those would be the npm names "@wisp/sdk-as" and "wisp".

import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (dist/proxy/filter-scaffold.js or proxy/filter-scaffold.ts → ../..). */
const DEFAULT_WISP_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ScaffoldOptions {
  /** Filter name: lower-case letters, digits and dashes, starting with a letter. */
  name: string;
  /** Folder to create (default: ./NAME). Must not exist or be empty. */
  dir?: string;
  /** The Wisp repository the project links to (default: the one this code runs from). */
  wispRoot?: string;
}

export interface ScaffoldResult {
  dir: string;
  /** Paths relative to dir. */
  files: string[];
}

const NAME_RE = /^[a-z][a-z0-9-]{0,62}$/;

export function scaffoldFilter(opts: ScaffoldOptions): ScaffoldResult {
  const name = opts.name;
  if (!NAME_RE.test(name)) throw new Error(`filter name "${name}" must be lower-case letters, digits and dashes, starting with a letter`);
  const dir = path.resolve(opts.dir ?? name);
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`${dir} exists and is not empty`);
  const wispRoot = path.resolve(opts.wispRoot ?? DEFAULT_WISP_ROOT);
  const files = templates(name, relativeLink(dir, wispRoot), relativeLink(dir, path.join(wispRoot, 'sdk-as')));
  for (const [rel, text] of Object.entries(files)) {
    const file = path.join(dir, rel);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
  return { dir, files: Object.keys(files) };
}

/** A file: spec npm accepts, relative when it can be (the project may move with the repo). */
function relativeLink(from: string, to: string): string {
  const rel = path.relative(from, to).split(path.sep).join('/');
  return `file:${rel === '' ? '.' : rel}`;
}

function templates(name: string, wispLink: string, sdkLink: string): Record<string, string> {
  const ident = name.replace(/-/g, '_');
  return {
    'package.json': JSON.stringify(
      {
        name,
        version: '0.1.0',
        private: true,
        type: 'module',
        description: `${name}: a proxy-wasm filter for Wisp (AssemblyScript)`,
        scripts: {
          build: 'asc assembly/index.ts --target release && asc assembly/index.ts --target debug',
          test: 'npm run build && node --test test/filter.test.mjs',
        },
        devDependencies: {
          '@wisp/sdk-as': sdkLink,
          wisp: wispLink,
          assemblyscript: '^0.28.0',
        },
      },
      null,
      2,
    ) + '\n',
    'asconfig.json': JSON.stringify(
      {
        targets: {
          release: { outFile: `build/${name}.wasm`, optimizeLevel: 3, shrinkLevel: 1, noAssert: true },
          debug: { outFile: `build/${name}.debug.wasm`, sourceMap: true, debug: true },
        },
        options: {
          runtime: 'incremental',
          exportStart: '_initialize',
          use: [
            'abort=~lib/@wisp/sdk-as/assembly/runtime/wispAbort',
            'trace=~lib/@wisp/sdk-as/assembly/runtime/wispTrace',
            'seed=~lib/@wisp/sdk-as/assembly/runtime/wispSeed',
          ],
        },
      },
      null,
      2,
    ) + '\n',
    '.gitignore': 'node_modules/\nbuild/\n',
    // Dependencies' install scripts stay off: npm would otherwise run the linked Wisp
    // checkout's `prepare` (a full rebuild of it) on every install. `npm test` / `npm run`
    // still run this project's own scripts.
    '.npmrc': 'ignore-scripts=true\n',
    'assembly/index.ts': filterSource(name, ident),
    'test/filter.test.mjs': testSource(name),
    'README.md': readme(name, wispLink, sdkLink),
  };
}

function filterSource(name: string, ident: string): string {
  return `// ${name}: a starting filter. It adds a header to every request, answers 403 to requests
// under a configured path prefix, and reads both from its JSON configuration:
//   {"header": "x-${name}", "value": "1", "deny_prefix": "/admin"}   (all optional)
// Written against @wisp/sdk-as (proxy-wasm ABI 0.2.1): it runs on Wisp, Envoy, Istio, MOSN.

export * from "@wisp/sdk-as/assembly/exports"; // the proxy-wasm callbacks: keep this line
import {
  Counter, FilterHeadersStatus, HeaderPair, HttpContext, JsonValue, RootContext, logError, parseJson,
  registerRootContext,
} from "@wisp/sdk-as/assembly";

/** One per filter instance: holds the configuration, read once in onConfigure. */
class ${pascal(ident)}Root extends RootContext {
  header: string = "x-${name}";
  value: string = "1";
  denyPrefix: string = "";
  denied: Counter | null = null;

  onConfigure(configSize: u32): bool {
    // Metrics are defined once; Wisp exports them as wisp_filter_metric{filter="${name}",...}.
    this.denied = new Counter("${ident}_denied");
    const text = this.getPluginConfig();
    if (text.length == 0) return true; // no config: the defaults above
    const parsed = parseJson(text);
    const cfg = parsed.value;
    if (cfg === null) return refuse("config is not valid JSON: " + parsed.error);
    if (!cfg.isObject) return refuse("config must be a JSON object");
    for (let i = 0; i < cfg.keys.length; i++) {
      const key = cfg.keys[i];
      if (key != "header" && key != "value" && key != "deny_prefix") return refuse("unknown key \\"" + key + "\\"");
    }
    const header = stringField(cfg, "header");
    if (header !== null) this.header = header.toLowerCase();
    const value = stringField(cfg, "value");
    if (value !== null) this.value = value;
    const deny = stringField(cfg, "deny_prefix");
    if (deny !== null) this.denyPrefix = deny;
    if (cfg.has("header") && header === null) return refuse("config.header must be a string");
    if (cfg.has("value") && value === null) return refuse("config.value must be a string");
    if (cfg.has("deny_prefix") && deny === null) return refuse("config.deny_prefix must be a string");
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new ${pascal(ident)}Http(id, this);
  }
}

/** One per request: sees every phase of it, so per-request state lives in fields. */
class ${pascal(ident)}Http extends HttpContext {
  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<${pascal(ident)}Root>(this.root);
    const path = this.getRequestHeader(":path");
    if (root.denyPrefix.length > 0 && path !== null && path.startsWith(root.denyPrefix)) {
      root.denied!.increment();
      const headers = new Array<HeaderPair>();
      headers.push(new HeaderPair("content-type", "text/plain"));
      this.sendLocalResponse(403, "forbidden by ${name}\\n", headers);
      return FilterHeadersStatus.StopIteration; // answered: the request goes no further
    }
    this.setRequestHeader(root.header, root.value);
    return FilterHeadersStatus.Continue;
  }
}

/** Log why the config is refused (Wisp shows it and keeps the previous version serving). */
function refuse(why: string): bool {
  logError("${name}: " + why);
  return false;
}

function stringField(cfg: JsonValue, key: string): string | null {
  const v = cfg.get(key);
  return v !== null && v.isString ? v.stringValue : null;
}

registerRootContext((id: u32): RootContext => new ${pascal(ident)}Root(id), "${name}");
`;
}

function testSource(name: string): string {
  return `// Unit tests for ${name} on Wisp's own proxy-wasm host, in-process (no proxy, no sockets).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FilterHarness } from 'wisp/testing';

const WASM = new URL('../build/${name}.wasm', import.meta.url);

test('adds the configured header to every request', async () => {
  const h = await FilterHarness.load(WASM, { name: '${name}', config: { header: 'x-team', value: 'blue' } });
  const r = h.request({ method: 'GET', path: '/api', headers: { 'user-agent': 'test' } });
  assert.equal(r.action, 'continue');
  assert.equal(r.header('x-team'), 'blue');
  h.done();
  assert.deepEqual(h.errors(), []);
});

test('answers 403 under deny_prefix and counts it', async () => {
  const h = await FilterHarness.load(WASM, { name: '${name}', config: { deny_prefix: '/admin' } });
  const r = h.request({ path: '/admin/users' });
  assert.equal(r.action, 'local');
  assert.equal(r.status, 403);
  assert.equal(r.body, 'forbidden by ${name}\\n');
  h.done();
  assert.equal(h.exchange({ path: '/public' }).action, 'continue');
  assert.equal(h.metrics().${name.replace(/-/g, '_')}_denied, 1);
});

test('works without config (defaults)', async () => {
  const h = await FilterHarness.load(WASM, { name: '${name}' });
  assert.equal(h.request({ path: '/' }).header('x-${name}'), '1');
});

test('refuses a bad config, saying why', async () => {
  await assert.rejects(FilterHarness.load(WASM, { name: '${name}', config: { deny: '/x' } }), /unknown key "deny"/);
  await assert.rejects(FilterHarness.load(WASM, { name: '${name}', config: '{"value": 3}' }), /config\\.value must be a string/);
});
`;
}

function readme(name: string, wispLink: string, sdkLink: string): string {
  return `# ${name}

A [proxy-wasm](https://github.com/proxy-wasm/spec) HTTP filter for Wisp, in AssemblyScript.
It runs on Wisp, and on Envoy / Istio / MOSN too (ABI 0.2.1).

## Write

\`assembly/index.ts\` is a starting filter: it adds a header (\`x-${name}: 1\` by default) to
every request and answers 403 to requests under \`deny_prefix\`. Its configuration is JSON,
checked in \`onConfigure\`; a refused config keeps the previous version serving.

\`\`\`json
{"header": "x-${name}", "value": "1", "deny_prefix": "/admin"}
\`\`\`

SDK reference: \`node_modules/@wisp/sdk-as/README.md\`.

## Build and test

\`\`\`sh
npm install        # once
npm test           # builds build/${name}.wasm (+ a debug build) and runs test/filter.test.mjs
npm run build      # just the build
\`\`\`

The tests use \`wisp/testing\`: \`FilterHarness.load(wasm, { config })\` runs the module on
Wisp's own proxy-wasm host, in-process, and \`h.request({...})\`, \`h.response({...})\`,
\`h.done()\`, \`h.tick()\`, \`h.metrics()\`, \`h.sharedData(key)\`, \`h.logs\` drive and inspect it.

Dependencies: this project links \`@wisp/sdk-as\` (\`${sdkLink}\`) and \`wisp\`
(\`${wispLink}\`) from a Wisp checkout, whose \`npm install\` must have run (it builds
\`dist/\`). Published, they would be \`"@wisp/sdk-as": "^0.1.0"\` and \`"wisp": "^0.1.0"\`.
\`.npmrc\` turns dependency install scripts off, so \`npm install\` does not rebuild the linked
Wisp checkout (its \`prepare\`); \`npm test\` and \`npm run build\` still run.

## Run it in Wisp

Declare the filter and put it on a route (paths are relative to the config file):

\`\`\`yaml
filters:
  - name: ${name}
    wasm: ${name}/build/${name}.wasm
    config: { deny_prefix: /admin }
listeners:
  - name: public
    address: 127.0.0.1:8080
    routes:
      - match: { prefix: / }
        cluster: app
        filters: [${name}]
clusters:
  - name: app
    endpoints: [127.0.0.1:3000]
\`\`\`

## Hot-load a new version

Edit, \`npm test\`, then one command swaps the running filter without a restart (requests
in flight finish on the old version; a module that fails to load leaves the old one serving):

\`\`\`sh
curl -X PUT --data-binary @build/${name}.wasm http://127.0.0.1:9901/filters/${name}
curl -s http://127.0.0.1:9901/filters                         # version (sha256), generation, faults
curl -s http://127.0.0.1:9901/metrics | grep 'filter="${name}"'   # the filter's own counters
\`\`\`

(Wisp also reloads the filter by itself when the \`.wasm\` file named in the config changes.)
`;
}

function pascal(ident: string): string {
  return ident
    .split('_')
    .filter((p) => p.length > 0)
    .map((p) => p[0]!.toUpperCase() + p.slice(1))
    .join('');
}
