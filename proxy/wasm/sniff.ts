// Runs a proxy-wasm network filter over the first bytes of a TCP connection, in-process on
// the calling thread, with the same FilterInstance + host imports a worker uses. Wisp's TCP
// listeners sniff through the workers instead (WasmFilterRuntime.sniff, the worker's
// 'sniff' control op, which has the deadline watchdog); this is for tests and tools that want
// a filter's verdict on some bytes without a runtime. The bytes are offered as the
// DownstreamData buffer (proxy_get_buffer_bytes type 2) to proxy_on_new_connection +
// proxy_on_downstream_data; what the filter sets with proxy_set_property is the answer.
// No watchdog here: a trap is caught and answered as null, a loop is not interrupted.

import fs from 'node:fs/promises';
import type { FilterConfig } from '../config/types.js';
import { BufferType } from './abi.js';
import { FilterInstance, type InstanceDeps, WorkerLog } from './instance.js';
import { DEFAULT_SHARED_STATE, SharedState } from './shared-state.js';
import { StreamState } from './stream-state.js';
import { Watch } from './wire.js';

let nextSniffGen = 1_000_000;

export class SniffFilter {
  readonly name: string;
  private inst: FilterInstance;
  private nextStream = 1;
  private readonly decoder = new TextDecoder();

  private constructor(private readonly cfg: FilterConfig, private readonly module: WebAssembly.Module, private readonly deps: InstanceDeps) {
    this.name = cfg.name;
    this.inst = this.instantiate();
  }

  static async load(cfg: FilterConfig): Promise<SniffFilter> {
    const bytes = await fs.readFile(cfg.wasm);
    const module = await WebAssembly.compile(bytes);
    const names = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
    if (!names.has('proxy_on_downstream_data')) {
      throw new Error(`filter "${cfg.name}" (${cfg.wasm}) cannot sniff: it does not export proxy_on_downstream_data`);
    }
    const deps: InstanceDeps = {
      shared: SharedState.create({ ...DEFAULT_SHARED_STATE, kvCapacity: 16, queues: 1, metrics: 16 }),
      log: new WorkerLog(),
      httpCalls: null,
      watch: new Float64Array(Watch.Slots),
      onQueueRegistered: () => {},
      onEnqueue: () => {},
      onTickPeriod: () => {},
    };
    return new SniffFilter(cfg, module, deps);
  }

  private instantiate(): FilterInstance {
    const inst = new FilterInstance({
      id: nextSniffGen++, name: this.cfg.name, rootId: this.cfg.root_id, config: this.cfg.config, vmConfig: this.cfg.vm_config,
      failure: this.cfg.failure, deadlineMs: this.cfg.deadline_ms, maxMemoryBytes: this.cfg.max_memory_bytes, maxBodyBytes: 0,
    }, this.module, this.deps);
    try {
      inst.start();
    } finally {
      this.deps.log.clear();
    }
    return inst;
  }

  /** The properties the filter set for these first bytes (empty: it has not decided yet),
   * or null when the filter trapped (the instance is replaced for the next connection). */
  sniff(bytes: Uint8Array, endOfStream: boolean): Map<string, string> | null {
    const inst = this.inst;
    const stream = new StreamState(this.nextStream++);
    stream.body = bytes;
    stream.bodyType = BufferType.DownstreamData;
    try {
      const ctx = inst.contextFor(stream);
      inst.stream = stream;
      inst.contextId = ctx;
      if (inst.onNewConnection !== null) inst.onNewConnection(ctx);
      inst.onDownstreamData!(ctx, bytes.length, endOfStream ? 1 : 0);
      if (inst.onDone !== null) inst.onDone(ctx);
      if (inst.onDelete !== null) inst.onDelete(ctx);
      inst.contexts.delete(stream.id);
    } catch {
      this.deps.log.clear();
      try {
        this.inst = this.instantiate();
      } catch {
        // Keep the broken one: every later sniff traps too and answers null (= unknown).
      }
      return null;
    } finally {
      inst.stream = null;
    }
    this.deps.log.clear();
    const out = new Map<string, string>();
    if (stream.properties !== null) for (const [k, v] of stream.properties) out.set(k, this.decoder.decode(v));
    return out;
  }
}
