// Replacements for the AssemblyScript runtime's env imports, wired by asconfig.json
// `"use": ["abort=…/wispAbort", "trace=…/wispTrace", "seed=…/wispSeed"]`, so a built filter
// imports nothing but proxy_* functions. abort logs the message through proxy_log at
// CRITICAL and traps: the host sees a trap and applies the filter's failure policy.

import { proxy_get_current_time_nanoseconds, proxy_log } from "./imports";

function logRaw(level: u32, text: string): void {
  const buf = String.UTF8.encode(text);
  proxy_log(level, changetype<usize>(buf), buf.byteLength);
}

export function wispAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let text = "wasm abort: ";
  text += message !== null ? message : "(no message)";
  if (fileName !== null) {
    text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  }
  logRaw(5, text);
  unreachable();
}

export function wispTrace(message: string, n: i32 = 0, a0: f64 = 0, a1: f64 = 0, a2: f64 = 0, a3: f64 = 0, a4: f64 = 0): void {
  let text = "trace: " + message;
  if (n > 0) text += " " + a0.toString();
  if (n > 1) text += " " + a1.toString();
  if (n > 2) text += " " + a2.toString();
  if (n > 3) text += " " + a3.toString();
  if (n > 4) text += " " + a4.toString();
  logRaw(0, text);
}

const SEED_SLOT: usize = memory.data(8, 8);

/** Seeds Math.random from the host clock (not cryptographic; nor is Math.random). */
export function wispSeed(): f64 {
  proxy_get_current_time_nanoseconds(SEED_SLOT);
  return <f64>load<u64>(SEED_SLOT);
}
