// A small synchronous proxy-wasm ABI 0.2.1 host used to drive the built filter modules in
// tests: header maps, properties, shared data with CAS, metrics, local responses and logs.
// It is a test fixture for the filters (the product host lives in proxy/wasm/); it follows
// the spec's memory conventions exactly so a filter that passes here talks the same ABI.
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BUILD_DIR = fileURLToPath(new URL('../../../filters/build/', import.meta.url));

export function wasmPath(name: string): string {
  return BUILD_DIR + name + '.wasm';
}

export function loadModule(name: string): WebAssembly.Module {
  const path = wasmPath(name);
  if (!existsSync(path)) throw new Error(`${path} missing: run \`npm run build:filters\``);
  return new WebAssembly.Module(readFileSync(path));
}

const OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2, CAS_MISMATCH = 8, EMPTY = 7;

/** Shared KV with CAS, shared by several FilterHosts like Wisp's workers share a SAB. */
export class SharedStore {
  readonly data = new Map<string, { value: Uint8Array; cas: number }>();
  private nextCas = 1;
  /** Called on every read: lets a test play "another worker wrote in between". */
  onGet: ((key: string) => void) | null = null;
  casMismatches = 0;
  get(key: string) {
    const v = this.data.get(key);
    if (this.onGet) this.onGet(key);
    return v;
  }
  /** Rewrites a key with its own bytes and a new cas, as a concurrent writer would. */
  touch(key: string): void {
    const cur = this.data.get(key);
    if (cur) this.data.set(key, { value: cur.value, cas: this.nextCas++ });
  }
  set(key: string, value: Uint8Array, cas: number): number {
    const cur = this.data.get(key);
    if (cas !== 0 && (cur === undefined || cur.cas !== cas)) { this.casMismatches++; return CAS_MISMATCH; }
    this.data.set(key, { value: value.slice(), cas: this.nextCas++ });
    return OK;
  }
}

export interface LocalResponse { status: number; body: string; headers: [string, string][]; details: string }
type Pairs = [string, string][];

export class FilterHost {
  readonly logs: { level: number; message: string }[] = [];
  readonly properties = new Map<string, string | Uint8Array>();
  readonly metrics = new Map<string, { type: number; value: bigint }>();
  private readonly metricIds: string[] = [];
  pluginConfig = '';
  nowNs = 1_700_000_000_000_000_000n;
  tickPeriodMs = 0;
  requestHeaders: Pairs = [];
  responseHeaders: Pairs = [];
  localResponse: LocalResponse | null = null;
  httpCalls: { cluster: string; headers: Pairs; timeout: number }[] = [];
  readonly instance: WebAssembly.Instance;
  private readonly exports: Record<string, any>;
  private nextContextId = 2;
  readonly rootId = 1;

  constructor(module: WebAssembly.Module, readonly shared: SharedStore = new SharedStore()) {
    const env = this.envImports();
    const wasi = this.wasiImports();
    this.instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi });
    this.exports = this.instance.exports as Record<string, any>;
    if (this.exports._initialize) this.exports._initialize();
  }

  /** Creates the root context, starts the VM and configures; returns proxy_on_configure. */
  start(config: string): boolean {
    this.pluginConfig = config;
    this.exports.proxy_on_context_create(this.rootId, 0);
    if (!this.exports.proxy_on_vm_start(this.rootId, 0)) return false;
    return this.exports.proxy_on_configure(this.rootId, Buffer.byteLength(config)) !== 0;
  }

  tick(): void { this.exports.proxy_on_tick(this.rootId); }

  newStream(): number {
    const id = this.nextContextId++;
    this.exports.proxy_on_context_create(id, this.rootId);
    return id;
  }

  onRequestHeaders(id: number, headers: Pairs, eos = true): number {
    this.requestHeaders = headers.map(([k, v]) => [k, v]);
    this.localResponse = null;
    return this.exports.proxy_on_request_headers(id, headers.length, eos ? 1 : 0);
  }

  onResponseHeaders(id: number, headers: Pairs, eos = true): number {
    this.responseHeaders = headers.map(([k, v]) => [k, v]);
    return this.exports.proxy_on_response_headers(id, headers.length, eos ? 1 : 0);
  }

  finish(id: number): void {
    if (this.exports.proxy_on_done(id)) {
      this.exports.proxy_on_log(id);
      this.exports.proxy_on_delete(id);
    }
  }

  /** One request through both phases; returns the local response if the filter sent one. */
  request(reqHeaders: Pairs, status = 200, respHeaders: Pairs = []): { action: number; local: LocalResponse | null; responseAction: number } {
    const id = this.newStream();
    const action = this.onRequestHeaders(id, reqHeaders);
    const local = this.localResponse;
    let responseAction = -1;
    if (local === null) responseAction = this.onResponseHeaders(id, [[':status', String(status)], ...respHeaders]);
    this.finish(id);
    return { action, local, responseAction };
  }

  header(pairs: Pairs, name: string): string | undefined {
    return pairs.find(([k]) => k === name)?.[1];
  }

  errors(): string[] { return this.logs.filter((l) => l.level >= 4).map((l) => l.message); }

  // ---- memory helpers ----
  private get mem(): Uint8Array { return new Uint8Array((this.exports.memory as WebAssembly.Memory).buffer); }
  private get view(): DataView { return new DataView((this.exports.memory as WebAssembly.Memory).buffer); }
  private str(ptr: number, len: number): string { return Buffer.from(this.mem.subarray(ptr, ptr + len)).toString('utf8'); }
  private bytes(ptr: number, len: number): Uint8Array { return this.mem.slice(ptr, ptr + len); }
  private giveBytes(data: Uint8Array, retPtr: number, retLen: number): number {
    const ptr = data.length === 0 ? 0 : this.exports.proxy_on_memory_allocate(data.length);
    if (data.length > 0) this.mem.set(data, ptr);
    this.view.setUint32(retPtr, ptr, true);
    this.view.setUint32(retLen, data.length, true);
    return OK;
  }
  private giveString(s: string, retPtr: number, retLen: number): number {
    return this.giveBytes(Buffer.from(s, 'utf8'), retPtr, retLen);
  }
  private map(type: number): Pairs {
    if (type === 0) return this.requestHeaders;
    if (type === 2) return this.responseHeaders;
    return [];
  }
  private setMap(type: number, pairs: Pairs): void {
    if (type === 0) this.requestHeaders = pairs;
    else if (type === 2) this.responseHeaders = pairs;
  }

  static serialize(pairs: Pairs): Uint8Array {
    const parts = pairs.map(([k, v]) => [Buffer.from(k), Buffer.from(v)] as const);
    let size = 4 + 8 * parts.length;
    for (const [k, v] of parts) size += k.length + v.length + 2;
    const out = Buffer.alloc(size);
    out.writeUInt32LE(parts.length, 0);
    let at = 4;
    for (const [k, v] of parts) { out.writeUInt32LE(k.length, at); out.writeUInt32LE(v.length, at + 4); at += 8; }
    for (const [k, v] of parts) { k.copy(out, at); at += k.length + 1; v.copy(out, at); at += v.length + 1; }
    return out;
  }

  static deserialize(buf: Uint8Array): Pairs {
    if (buf.length < 4) return [];
    const b = Buffer.from(buf);
    const n = b.readUInt32LE(0);
    const out: Pairs = [];
    let data = 4 + 8 * n;
    for (let i = 0; i < n; i++) {
      const kl = b.readUInt32LE(4 + 8 * i), vl = b.readUInt32LE(8 + 8 * i);
      const k = b.subarray(data, data + kl).toString(); data += kl + 1;
      const v = b.subarray(data, data + vl).toString(); data += vl + 1;
      out.push([k, v]);
    }
    return out;
  }

  private envImports(): Record<string, Function> {
    const h = this;
    return {
      proxy_log(level: number, ptr: number, len: number) { h.logs.push({ level, message: h.str(ptr, len) }); return OK; },
      proxy_get_log_level(ret: number) { h.view.setUint32(ret, 0, true); return OK; },
      proxy_get_current_time_nanoseconds(ret: number) { h.view.setBigUint64(ret, h.nowNs, true); return OK; },
      proxy_set_tick_period_milliseconds(ms: number) { h.tickPeriodMs = ms; return OK; },
      proxy_get_buffer_bytes(type: number, start: number, max: number, retPtr: number, retLen: number) {
        if (type !== 7) return NOT_FOUND;
        const all = Buffer.from(h.pluginConfig, 'utf8');
        return h.giveBytes(all.subarray(start, start + Math.min(max >>> 0, all.length)), retPtr, retLen);
      },
      proxy_set_buffer_bytes() { return NOT_FOUND; },
      proxy_get_header_map_pairs(type: number, retPtr: number, retLen: number) {
        return h.giveBytes(FilterHost.serialize(h.map(type)), retPtr, retLen);
      },
      proxy_set_header_map_pairs(type: number, ptr: number, len: number) {
        h.setMap(type, FilterHost.deserialize(h.bytes(ptr, len))); return OK;
      },
      proxy_get_header_map_value(type: number, kp: number, kl: number, retPtr: number, retLen: number) {
        const key = h.str(kp, kl);
        const found = h.map(type).find(([k]) => k === key);
        return found ? h.giveString(found[1], retPtr, retLen) : NOT_FOUND;
      },
      proxy_add_header_map_value(type: number, kp: number, kl: number, vp: number, vl: number) {
        h.map(type).push([h.str(kp, kl), h.str(vp, vl)]); return OK;
      },
      proxy_replace_header_map_value(type: number, kp: number, kl: number, vp: number, vl: number) {
        const key = h.str(kp, kl);
        const rest = h.map(type).filter(([k]) => k !== key);
        rest.push([key, h.str(vp, vl)]);
        h.setMap(type, rest); return OK;
      },
      proxy_remove_header_map_value(type: number, kp: number, kl: number) {
        const key = h.str(kp, kl);
        h.setMap(type, h.map(type).filter(([k]) => k !== key)); return OK;
      },
      proxy_get_header_map_size(type: number, ret: number) {
        h.view.setUint32(ret, FilterHost.serialize(h.map(type)).length, true); return OK;
      },
      proxy_get_property(pp: number, pl: number, retPtr: number, retLen: number) {
        const path = h.str(pp, pl).split('\0').join('.');
        const v = h.properties.get(path);
        return v === undefined ? NOT_FOUND : typeof v === 'string' ? h.giveString(v, retPtr, retLen) : h.giveBytes(v, retPtr, retLen);
      },
      proxy_set_property(pp: number, pl: number, vp: number, vl: number) {
        h.properties.set(h.str(pp, pl).split('\0').join('.'), h.str(vp, vl)); return OK;
      },
      proxy_send_local_response(status: number, dp: number, dl: number, bp: number, bl: number, hp: number, hl: number) {
        h.localResponse = { status, details: h.str(dp, dl), body: h.str(bp, bl), headers: FilterHost.deserialize(h.bytes(hp, hl)) };
        return OK;
      },
      proxy_continue_stream() { return OK; },
      proxy_close_stream() { return OK; },
      proxy_get_shared_data(kp: number, kl: number, retPtr: number, retLen: number, retCas: number) {
        const cur = h.shared.get(h.str(kp, kl));
        if (cur === undefined) return NOT_FOUND;
        h.view.setUint32(retCas, cur.cas, true);
        return h.giveBytes(cur.value, retPtr, retLen);
      },
      proxy_set_shared_data(kp: number, kl: number, vp: number, vl: number, cas: number) {
        return h.shared.set(h.str(kp, kl), h.bytes(vp, vl), cas);
      },
      proxy_register_shared_queue(_p: number, _l: number, ret: number) { h.view.setUint32(ret, 1, true); return OK; },
      proxy_resolve_shared_queue() { return NOT_FOUND; },
      proxy_enqueue_shared_queue() { return OK; },
      proxy_dequeue_shared_queue() { return EMPTY; },
      proxy_http_call(cp: number, cl: number, hp: number, hl: number, _bp: number, _bl: number, _tp: number, _tl: number, timeout: number, ret: number) {
        h.httpCalls.push({ cluster: h.str(cp, cl), headers: FilterHost.deserialize(h.bytes(hp, hl)), timeout });
        h.view.setUint32(ret, h.httpCalls.length, true); return OK;
      },
      proxy_define_metric(type: number, np: number, nl: number, ret: number) {
        const name = h.str(np, nl);
        let id = h.metricIds.indexOf(name);
        if (id < 0) { id = h.metricIds.push(name) - 1; h.metrics.set(name, { type, value: 0n }); }
        h.view.setUint32(ret, id, true); return OK;
      },
      proxy_increment_metric(id: number, delta: bigint) {
        const m = h.metrics.get(h.metricIds[id]); if (!m) return NOT_FOUND;
        m.value += delta; return OK;
      },
      proxy_record_metric(id: number, value: bigint) {
        const m = h.metrics.get(h.metricIds[id]); if (!m) return NOT_FOUND;
        m.value = value; return OK;
      },
      proxy_get_metric(id: number, ret: number) {
        const m = h.metrics.get(h.metricIds[id]); if (!m) return NOT_FOUND;
        h.view.setBigUint64(ret, m.value, true); return OK;
      },
      proxy_set_effective_context() { return OK; },
      proxy_done() { return OK; },
      proxy_call_foreign_function() { return NOT_FOUND; },
      proxy_get_buffer_status() { return NOT_FOUND; },
      proxy_get_status() { return NOT_FOUND; },
    };
  }

  private wasiImports(): Record<string, Function> {
    return {
      fd_write() { return 8; },
      clock_time_get() { return 58; },
      random_get() { return 0; },
      environ_sizes_get() { return 0; },
      environ_get() { return 0; },
      args_sizes_get() { return 0; },
      args_get() { return 0; },
      proc_exit() { throw new Error('proc_exit'); },
    };
  }
}

export const ACTION_CONTINUE = 0;
export const ACTION_PAUSE = 1;
void BAD_ARGUMENT;
