// The small WASI preview1 surface the Go/C++/Rust proxy-wasm SDKs import: stdout/stderr
// go to the filter log, clocks and randomness work, the environment and arguments are
// empty, files do not exist, and proc_exit ends the call like a trap.

import { LogLevel } from './abi.js';
import type { FilterInstance } from './instance.js';

const ERRNO_SUCCESS = 0;
const ERRNO_BADF = 8;
const ERRNO_FAULT = 21;
const ERRNO_INVAL = 28;
const ERRNO_NOSYS = 52;

/** Thrown by proc_exit; exit code 0 from _start is a normal return. */
export class ProcExit extends Error {
  constructor(readonly code: number) {
    super(`proc_exit(${code})`);
  }
}

export function createWasiImports(inst: FilterInstance): Record<string, (...args: any[]) => unknown> {
  const monoOrigin = process.hrtime.bigint();
  const nowNs = inst.deps.nowNs;
  return {
    fd_write(fd: number, iovs: number, iovsLen: number, retWrittenPtr: number): number {
      if (fd !== 1 && fd !== 2) return ERRNO_BADF;
      if (!inst.inBounds(iovs, iovsLen * 8)) return ERRNO_FAULT;
      const parts: string[] = [];
      let total = 0;
      for (let i = 0; i < iovsLen; i++) {
        const ptr = inst.readU32(iovs + i * 8);
        const len = inst.readU32(iovs + i * 8 + 4);
        const s = inst.readString(ptr, len);
        if (s === null) return ERRNO_FAULT;
        parts.push(s);
        total += len;
      }
      let msg = parts.join('');
      if (msg.endsWith('\n')) msg = msg.slice(0, -1);
      if (msg.length > 0) inst.log(fd === 1 ? LogLevel.Info : LogLevel.Error, msg);
      return inst.writeU32(retWrittenPtr, total) ? ERRNO_SUCCESS : ERRNO_FAULT;
    },
    fd_read: () => ERRNO_BADF,
    fd_close: () => ERRNO_BADF,
    fd_seek: () => ERRNO_BADF,
    fd_fdstat_get: () => ERRNO_BADF,
    fd_prestat_get: () => ERRNO_BADF,
    fd_prestat_dir_name: () => ERRNO_BADF,
    clock_time_get(clockId: number, _precision: bigint, retPtr: number): number {
      let ns: bigint;
      if (clockId === 0) ns = nowNs !== undefined ? nowNs() : BigInt(Date.now()) * 1_000_000n;
      else if (clockId === 1 || clockId === 2 || clockId === 3) ns = process.hrtime.bigint() - monoOrigin;
      else return ERRNO_INVAL;
      return inst.writeU64(retPtr, ns) ? ERRNO_SUCCESS : ERRNO_FAULT;
    },
    clock_res_get(_clockId: number, retPtr: number): number {
      return inst.writeU64(retPtr, 1000n) ? ERRNO_SUCCESS : ERRNO_FAULT;
    },
    random_get(ptr: number, len: number): number {
      if (len > 65536) return ERRNO_INVAL;
      const view = inst.viewBytes(ptr, len);
      if (view === null) return ERRNO_FAULT;
      // Web Crypto's getter loads node:crypto on first use: a worker whose filters never ask
      // for randomness does not carry it (~0.3 MB per worker thread).
      globalThis.crypto.getRandomValues(view);
      return ERRNO_SUCCESS;
    },
    environ_sizes_get(countPtr: number, sizePtr: number): number {
      return inst.writeU32(countPtr, 0) && inst.writeU32(sizePtr, 0) ? ERRNO_SUCCESS : ERRNO_FAULT;
    },
    environ_get: () => ERRNO_SUCCESS,
    args_sizes_get(countPtr: number, sizePtr: number): number {
      return inst.writeU32(countPtr, 0) && inst.writeU32(sizePtr, 0) ? ERRNO_SUCCESS : ERRNO_FAULT;
    },
    args_get: () => ERRNO_SUCCESS,
    proc_exit(code: number): never {
      throw new ProcExit(code);
    },
    sched_yield: () => ERRNO_SUCCESS,
    poll_oneoff: () => ERRNO_NOSYS,
  };
}
