// Test plumbing for the built-in filters: where the built modules are, and the SDK's
// testing host (sdk-as/testing/host.js, a small proxy-wasm 0.2.1 host in plain JS that
// filter authors use too). tsc does not copy that JS into dist/, so it is loaded from the
// source tree at run time and typed by its host.d.ts.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type HostModule = typeof import('../../sdk-as/testing/host.js');
const sdkTesting = (await import(new URL('../../../sdk-as/testing/host.js', import.meta.url).href)) as HostModule;

export const { FilterHost, SharedStore, ACTION_CONTINUE, ACTION_PAUSE } = sdkTesting;
export type FilterHost = import('../../sdk-as/testing/host.js').FilterHost;
export type SharedStore = import('../../sdk-as/testing/host.js').SharedStore;
export type LocalResponse = import('../../sdk-as/testing/host.js').LocalResponse;

export const BUILD_DIR = fileURLToPath(new URL('../../../filters/build/', import.meta.url));

export function wasmPath(name: string): string {
  return BUILD_DIR + name + '.wasm';
}

export function loadModule(name: string): WebAssembly.Module {
  const path = wasmPath(name);
  if (!existsSync(path)) throw new Error(`${path} missing: run \`npm run build:filters\``);
  return new WebAssembly.Module(readFileSync(path));
}
