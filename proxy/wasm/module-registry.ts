// Filter modules and their generations on the main thread: compile + check a module before
// any worker sees it, number generations, switch the current one, keep retired ones alive
// while streams still use them, and count faults for quarantine.

import { createHash } from 'node:crypto';
import type { FailurePolicy, FilterConfig } from '../config/types.js';
import { type AbiVersion, detectAbi, KNOWN_ENV_IMPORTS, KNOWN_WASI_IMPORTS, KNOWN_WASI_MODULES } from './abi.js';
import type { GenerationSpec } from './wire.js';
import { BodyPhase } from '../filters/types.js';

export interface FilterInfo {
  name: string;
  /** sha256 of the module bytes, hex. */
  version: string;
  /** ISO-8601 time the current generation was switched in. */
  loaded_at: string;
  generation: number;
  abi: AbiVersion;
  wasm: string;
  failure: FailurePolicy;
  /** Faults since the filter was first loaded. */
  faults: number;
  last_fault?: string;
  quarantined: boolean;
  quarantined_until?: string;
  /** Streams currently using any generation of this filter. */
  streams: number;
}

export class FilterLoadError extends Error {
  constructor(readonly filter: string, reason: string) {
    super(`filter "${filter}": ${reason}`);
    this.name = 'FilterLoadError';
  }
}

export interface CheckedModule {
  module: WebAssembly.Module;
  abi: AbiVersion;
  sha256: string;
}

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];

/** Compile and check a filter module: wasm at all, the exports a proxy-wasm host needs, and
 * only imports this host provides. Throws FilterLoadError naming what is wrong. */
export async function checkModule(name: string, bytes: Uint8Array): Promise<CheckedModule> {
  if (bytes.length < 8 || WASM_MAGIC.some((b, i) => bytes[i] !== b)) throw new FilterLoadError(name, 'not a wasm file');
  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (err) {
    throw new FilterLoadError(name, `invalid wasm: ${err instanceof Error ? err.message : String(err)}`);
  }
  const exports = WebAssembly.Module.exports(module);
  const names = new Set(exports.map((e) => e.name));
  const abi = detectAbi(names);
  if (abi === null) throw new FilterLoadError(name, 'missing export proxy_abi_version_* (this host speaks 0_2_1, 0_2_0 and 0_1_0)');
  if (!exports.some((e) => e.name === 'memory' && e.kind === 'memory')) throw new FilterLoadError(name, 'missing export memory');
  if (!names.has('proxy_on_memory_allocate') && !names.has('malloc')) {
    throw new FilterLoadError(name, 'missing export proxy_on_memory_allocate (or malloc)');
  }
  const unknown: string[] = [];
  for (const imp of WebAssembly.Module.imports(module)) {
    const known =
      imp.kind === 'function' &&
      ((imp.module === 'env' && KNOWN_ENV_IMPORTS.has(imp.name)) ||
        (KNOWN_WASI_MODULES.has(imp.module) && KNOWN_WASI_IMPORTS.has(imp.name)));
    if (!known) unknown.push(`${imp.module}.${imp.name}${imp.kind === 'function' ? '' : ` (${imp.kind})`}`);
  }
  if (unknown.length > 0) throw new FilterLoadError(name, `unknown import${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return { module, abi, sha256 };
}

export class Generation {
  /** Streams pinned to this generation (they finish on it even after a reload). */
  streams = 0;
  retired = false;
  readonly spec: GenerationSpec;
  loadedAt = 0;

  constructor(
    readonly id: number,
    readonly cfg: FilterConfig,
    readonly module: WebAssembly.Module,
    readonly abi: AbiVersion,
    readonly sha256: string,
  ) {
    this.spec = {
      id,
      name: cfg.name,
      rootId: cfg.root_id,
      config: cfg.config,
      vmConfig: cfg.vm_config,
      failure: cfg.failure,
      deadlineMs: cfg.deadline_ms,
      maxMemoryBytes: cfg.max_memory_bytes,
      maxBodyBytes: cfg.max_body_bytes,
    };
    const names = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
    this.bodyPhases =
      (names.has('proxy_on_request_body') ? BodyPhase.Request : 0) | (names.has('proxy_on_response_body') ? BodyPhase.Response : 0);
  }

  /** Which body phases the module exports (BodyPhase bits): a chain whose filters export
   * neither never sees a body, and the request path keeps its streaming fast path. */
  readonly bodyPhases: number;

  get name(): string {
    return this.cfg.name;
  }
}

export const FAULT_WINDOW_MS = 10_000;
export const FAULTS_TO_QUARANTINE = 5;
export const QUARANTINE_MS = 30_000;

export class FilterRecord {
  readonly faultTimes: number[] = [];
  totalFaults = 0;
  lastFault = '';
  quarantinedUntil = 0;

  constructor(public current: Generation) {}
}

export class ModuleRegistry {
  private nextGenId = 1;
  readonly records = new Map<string, FilterRecord>();
  /** Every generation some worker holds: current ones, retired ones still in use, and ones
   * being loaded. */
  readonly generations = new Map<number, Generation>();
  /** Bumped whenever a current generation changes, so chains re-resolve lazily. */
  version = 0;
  private quarantineVersion = 0;
  private quarantineCache: number[] = [];
  private quarantineCacheVersion = -1;
  private nextQuarantineExpiry = Infinity;

  newGeneration(cfg: FilterConfig, checked: CheckedModule): Generation {
    const gen = new Generation(this.nextGenId++, { ...cfg }, checked.module, checked.abi, checked.sha256);
    this.generations.set(gen.id, gen);
    this.quarantineVersion++;
    return gen;
  }

  /** Forget a generation that never became current (its load failed). */
  discard(gen: Generation): void {
    this.generations.delete(gen.id);
  }

  /** Make gen current for its filter; returns the generation it replaced. */
  activate(gen: Generation, now = Date.now()): Generation | null {
    gen.loadedAt = now;
    const rec = this.records.get(gen.name);
    this.version++;
    if (rec === undefined) {
      this.records.set(gen.name, new FilterRecord(gen));
      return null;
    }
    const prev = rec.current;
    rec.current = gen;
    prev.retired = true;
    return prev;
  }

  /** Remove a filter; returns its current generation (now retired). */
  remove(name: string): Generation | null {
    const rec = this.records.get(name);
    if (rec === undefined) return null;
    this.records.delete(name);
    this.version++;
    rec.current.retired = true;
    return rec.current;
  }

  current(name: string): Generation | null {
    return this.records.get(name)?.current ?? null;
  }

  /** A retired generation nobody uses any more: forget it (the caller tells the workers). */
  collectable(gen: Generation): boolean {
    if (!gen.retired || gen.streams > 0 || !this.generations.has(gen.id)) return false;
    this.generations.delete(gen.id);
    return true;
  }

  /** Record a fault; returns true when this fault put the filter into quarantine. */
  recordFault(name: string, reason: string, now = Date.now()): boolean {
    const rec = this.records.get(name);
    if (rec === undefined) return false;
    rec.totalFaults++;
    rec.lastFault = reason;
    if (rec.quarantinedUntil > now) return false;
    const times = rec.faultTimes;
    times.push(now);
    while (times.length > 0 && times[0] <= now - FAULT_WINDOW_MS) times.shift();
    if (times.length >= FAULTS_TO_QUARANTINE) {
      rec.quarantinedUntil = now + QUARANTINE_MS;
      times.length = 0;
      this.quarantineVersion++;
      this.nextQuarantineExpiry = Math.min(this.nextQuarantineExpiry, rec.quarantinedUntil);
      return true;
    }
    return false;
  }

  /** Generation ids of quarantined filters (every generation of them), cached between changes. */
  quarantinedGenIds(now = Date.now()): number[] {
    if (now >= this.nextQuarantineExpiry) {
      this.quarantineVersion++;
      this.nextQuarantineExpiry = Infinity;
      for (const rec of this.records.values()) {
        if (rec.quarantinedUntil > now) this.nextQuarantineExpiry = Math.min(this.nextQuarantineExpiry, rec.quarantinedUntil);
      }
    }
    if (this.quarantineCacheVersion === this.quarantineVersion) return this.quarantineCache;
    const names = new Set<string>();
    for (const [name, rec] of this.records) if (rec.quarantinedUntil > now) names.add(name);
    const ids: number[] = [];
    for (const gen of this.generations.values()) if (names.has(gen.name)) ids.push(gen.id);
    this.quarantineCache = ids;
    this.quarantineCacheVersion = this.quarantineVersion;
    return ids;
  }

  info(now = Date.now()): FilterInfo[] {
    const out: FilterInfo[] = [];
    const streamsByName = new Map<string, number>();
    for (const gen of this.generations.values()) streamsByName.set(gen.name, (streamsByName.get(gen.name) ?? 0) + gen.streams);
    for (const [name, rec] of this.records) {
      const g = rec.current;
      const info: FilterInfo = {
        name,
        version: g.sha256,
        loaded_at: new Date(g.loadedAt).toISOString(),
        generation: g.id,
        abi: g.abi,
        wasm: g.cfg.wasm,
        failure: g.cfg.failure,
        faults: rec.totalFaults,
        quarantined: rec.quarantinedUntil > now,
        streams: streamsByName.get(name) ?? 0,
      };
      if (rec.lastFault) info.last_fault = rec.lastFault;
      if (info.quarantined) info.quarantined_until = new Date(rec.quarantinedUntil).toISOString();
      out.push(info);
    }
    return out;
  }
}
