// Filter modules and their generations on the main thread: compile + check a module before
// any worker sees it, number generations, switch the current one, keep retired ones alive
// while streams still use them, and count faults for quarantine.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SourceMap } from 'node:module';
import path from 'node:path';
import type { FailurePolicy, FilterConfig } from '../config/types.js';
import { type AbiVersion, detectAbi, hostFunctionSignatures } from './abi.js';
import { formatSignature, type FunctionImport, readFunctionImports, sameSignature, WasmBinaryError } from './wasm-binary.js';
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
    const known = imp.kind === 'function' && hostFunctionSignatures(imp.module, imp.name) !== null;
    if (!known) unknown.push(`${imp.module}.${imp.name}${imp.kind === 'function' ? '' : ` (${imp.kind})`}`);
  }
  if (unknown.length > 0) throw new FilterLoadError(name, `unknown import${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
  // A JS host function accepts any signature, so a wrong-typed import would instantiate and
  // then pass the host garbage: compare each declared signature with what Wisp provides.
  let functionImports: FunctionImport[];
  try {
    functionImports = readFunctionImports(bytes);
  } catch (err) {
    if (!(err instanceof WasmBinaryError)) throw err;
    throw new FilterLoadError(name, `cannot read the import signatures: ${err.message}`);
  }
  const mismatched: string[] = [];
  for (const imp of functionImports) {
    const provided = hostFunctionSignatures(imp.module, imp.name);
    if (provided === null || provided.some((p) => sameSignature(p, imp.signature))) continue;
    mismatched.push(
      `import ${imp.module}.${imp.name} has type ${formatSignature(imp.signature)}; Wisp provides ${provided.map(formatSignature).join(' or ')}`,
    );
  }
  if (mismatched.length > 0) throw new FilterLoadError(name, mismatched.join('; '));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return { module, abi, sha256 };
}

/** A wasm code offset in a trap's stack, as V8 prints it ("wasm-function[12]:0x1a2b"). */
const WASM_FRAME = /wasm-function\[(\d+)\]:0x([0-9a-f]+)/g;

/**
 * Maps the code offsets in a trap's wasm stack back to source lines, from the filter's
 * source map (AssemblyScript's --sourceMap; a wasm source map has one generated line and
 * the module byte offset as its column). Parsed on the first trap, not at load.
 */
export class WasmSourceMap {
  private map: SourceMap | null = null;

  constructor(private readonly payload: string) {}

  /** "file.ts:line:col" for a code offset, or null when the map has nothing there. */
  locate(offset: number): string | null {
    if (this.map === null) {
      const payload = JSON.parse(this.payload) as { sourcesContent?: unknown };
      delete payload.sourcesContent; // not needed for file:line, and most of a map's size
      this.map = new SourceMap(payload as ConstructorParameters<typeof SourceMap>[0]);
    }
    const e = this.map.findEntry(0, offset) as Partial<{ originalSource: string; originalLine: number; originalColumn: number }>;
    if (e.originalSource === undefined || e.originalLine === undefined) return null;
    return `${e.originalSource}:${e.originalLine + 1}:${(e.originalColumn ?? 0) + 1}`;
  }

  /** `text` with each wasm frame followed by its source location. */
  symbolize(text: string): string {
    try {
      return text.replace(WASM_FRAME, (frame, _fn: string, hex: string) => {
        const at = this.locate(Number.parseInt(hex, 16));
        return at === null ? frame : `${at} (${frame})`;
      });
    } catch {
      return text; // a malformed map never hides the fault itself
    }
  }
}

/** The source map for the module at `wasmPath`, when one is next to it and the file on disk is
 * still the module that was loaded (a PUT upload keeps the configured path but not its map):
 * the module's sourceMappingURL section, relative to the file, or else `<file>.map`. */
export async function loadSourceMap(wasmPath: string, module: WebAssembly.Module, sha256: string): Promise<WasmSourceMap | null> {
  try {
    const onDisk = await readFile(wasmPath);
    if (createHash('sha256').update(onDisk).digest('hex') !== sha256) return null;
    const url = sourceMappingUrl(module);
    const mapPath = url !== null && !url.includes(':') ? path.resolve(path.dirname(wasmPath), url) : `${wasmPath}.map`;
    return new WasmSourceMap(await readFile(mapPath, 'utf8'));
  } catch {
    return null; // no map, or not readable: traps are reported with raw offsets
  }
}

/** The URL in a module's sourceMappingURL custom section (a length-prefixed string). */
function sourceMappingUrl(module: WebAssembly.Module): string | null {
  const sections = WebAssembly.Module.customSections(module, 'sourceMappingURL');
  if (sections.length === 0) return null;
  const b = new Uint8Array(sections[0]);
  let len = 0;
  let shift = 0;
  let i = 0;
  for (; i < b.length && i < 5; i++) {
    len |= (b[i] & 0x7f) << shift;
    shift += 7;
    if ((b[i] & 0x80) === 0) break;
  }
  i++;
  if (len <= 0 || i + len > b.length) return null;
  return Buffer.from(b.buffer, b.byteOffset + i, len).toString('utf8');
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

  /** Every worker's instance said it has nothing to do in the response headers phase (no
   * export, or wisp.skip_phases while configuring): set when the load succeeded. */
  skipsResponseHeaders = false;
  /** The same for the response trailers phase (no export, or wisp.skip_phases). */
  skipsResponseTrailers = false;
  /** The statuses its response headers phase is limited to (wisp.response_headers_statuses,
   * index = status, 1 = called); null = every status. */
  responseHeadersStatuses: Uint8Array | null = null;

  /** Set once the source map next to the module file has been read (if there is one). */
  sourceMap: WasmSourceMap | null = null;
  /** Settles when the look for a source map is over (found or not). */
  sourceMapRead: Promise<void> = Promise.resolve();

  /** A fault reason with its wasm frames mapped to source lines where the map knows them. */
  symbolize(reason: string): string {
    return this.sourceMap === null ? reason : this.sourceMap.symbolize(reason);
  }

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
  /** How long a filter stays quarantined (QUARANTINE_MS; tests shorten it). */
  constructor(private readonly quarantineMs = QUARANTINE_MS) {}

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
    // Read while the workers instantiate it; a trap before it is read shows raw offsets.
    gen.sourceMapRead = loadSourceMap(cfg.wasm, checked.module, checked.sha256).then((map) => {
      gen.sourceMap = map;
    });
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
      rec.quarantinedUntil = now + this.quarantineMs;
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
