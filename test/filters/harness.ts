// Test plumbing for the built-in filters: where the built modules are, and loading one into
// wisp/testing's FilterHarness (Wisp's own proxy-wasm host, in-process).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FilterHarness, type LoadOptions } from '../../proxy/testing/index.js';

export { FilterHarness, HarnessSharedState, headerValue, type HeaderPairs } from '../../proxy/testing/index.js';

export const BUILD_DIR = fileURLToPath(new URL('../../../filters/build/', import.meta.url));

export function wasmPath(name: string): string {
  return BUILD_DIR + name + '.wasm';
}

const modules = new Map<string, WebAssembly.Module>();

/** The built filter, compiled once per test process. */
export function loadModule(name: string): WebAssembly.Module {
  let m = modules.get(name);
  if (m === undefined) {
    const path = wasmPath(name);
    if (!existsSync(path)) throw new Error(`${path} missing: run \`npm run build:filters\``);
    m = new WebAssembly.Module(readFileSync(path));
    modules.set(name, m);
  }
  return m;
}

/** A built-in filter on the harness. */
export function load(name: string, opts: LoadOptions = {}): Promise<FilterHarness> {
  return FilterHarness.load(loadModule(name), { name, ...opts });
}
