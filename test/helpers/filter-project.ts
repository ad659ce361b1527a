// A filter project (scaffolded or from examples/) made runnable without `npm install`: its
// node_modules link to this repo (what npm's file: dependencies make), and it is built with
// the asc API in-process.
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** node_modules/{assemblyscript,@wisp/sdk-as,wisp} in `dir`, linked to this checkout. */
export function linkDependencies(dir: string): void {
  mkdirSync(join(dir, 'node_modules', '@wisp'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules', 'assemblyscript'), join(dir, 'node_modules', 'assemblyscript'), 'dir');
  symlinkSync(join(ROOT, 'sdk-as'), join(dir, 'node_modules', '@wisp', 'sdk-as'), 'dir');
  symlinkSync(ROOT, join(dir, 'node_modules', 'wisp'), 'dir');
}

/** Build one asconfig target of the project in `dir`; fails the test with asc's output. */
export async function buildFilterProject(dir: string, target: 'release' | 'debug' = 'release'): Promise<void> {
  let stderr = '';
  const { error } = await asc.main(['assembly/index.ts', '--config', 'asconfig.json', '--target', target, '--baseDir', dir], {
    stderr: { write: (c: string | Uint8Array) => { stderr += String(c); } },
    stdout: { write: () => {} },
  });
  assert.equal(error, null, `${dir}: ${target} build failed: ${error?.message}\n${stderr}`);
}
