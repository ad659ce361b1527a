// WebAssembly text → module bytes, for modules no toolchain would emit (wrong import types,
// traps in odd places). Its own module: binaryen is large, and a test file that does not
// build modules (some measure the test process's RSS) must not load it.
import binaryen from 'binaryen';

export function wasmFromText(wat: string): Uint8Array {
  const mod = binaryen.parseText(wat);
  try {
    return mod.emitBinary();
  } finally {
    mod.dispose();
  }
}
