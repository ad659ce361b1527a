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

// ---- garbage collection under the minimal runtime ------------------------------------------
// Built-in filters use AssemblyScript's `minimal` runtime: no shadow stack and no collector
// step inside every allocation (the `incremental` runtime's per-call and per-allocation
// costs were a third of a filter's wasm time). The minimal runtime collects only when told
// to, and only where no managed reference lives on the wasm stack alone: when the host's
// outermost callback returns. So every proxy_on_* export runs between enter() and leave();
// leave() at depth 0 collects every COLLECT_EVERY callbacks, and at once after the heap had
// to grow linear memory. Garbage between collections is bounded by what COLLECT_EVERY
// callbacks allocate; a module built with the incremental runtime compiles this away.

const COLLECT_EVERY: u32 = 256;
let depth: i32 = 0;
let sinceCollect: u32 = 0;
let pagesAtCollect: i32 = 0;

/** A host callback starts (proxy_on_memory_allocate excepted: it runs inside hostcalls). */
@inline export function enter(): void {
  depth++;
}

/** A host callback ends; at the outermost one, collect when it is time. */
export function leave(): void {
  depth--;
  if (ASC_RUNTIME != 1 /* Runtime.Minimal */ || depth > 0) return;
  sinceCollect++;
  if (sinceCollect < COLLECT_EVERY && memory.size() == pagesAtCollect) return;
  __collect();
  sinceCollect = 0;
  pagesAtCollect = memory.size();
}
