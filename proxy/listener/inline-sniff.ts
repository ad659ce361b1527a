// `tcp.sniff_inline: true`: the sniff filter runs on the main thread (wasm/sniff.ts's
// in-process host) instead of through a filter worker. A verdict then costs a few µs instead
// of a worker round trip (~0.1–0.3 ms on a 2-core VM, most of it waking an idle worker),
// which is most of what sniffing adds to a new connection. The price is isolation: there is
// no deadline on the main thread, so a sniff filter that loops hangs the whole proxy. Only
// for a filter you trust (like the built-in filters/sniff); the default stays in the workers.
//
// Hot reloads are followed: the filter runtime's current generation is checked on every
// sniff, and a new one is instantiated here in the background (connections meanwhile sniff
// in the workers). The in-process copy is read from the generation's .wasm file and used only
// when its sha256 is the generation's, so a module pushed through the admin API (not on
// disk) keeps sniffing in the workers.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import type { WasmFilterRuntime } from '../filters/runtime.js';
import type { Generation } from '../wasm/module-registry.js';
import { SniffFilter } from '../wasm/sniff.js';
import { log } from '../log.js';
import type { Sniffer } from './tcp.js';

const byRuntime = new WeakMap<WasmFilterRuntime, Map<string, InlineSniffer>>();

export class InlineSniffer implements Sniffer {
  /** Generation the in-process copy was made for; -1 = none yet. */
  private genId = -1;
  /** null: this generation sniffs in the workers (not on disk as loaded, or failed to load here). */
  private filter: SniffFilter | null = null;
  private loading = false;

  private constructor(private readonly runtime: WasmFilterRuntime, private readonly name: string) {
    const gen = runtime.registry.current(name);
    if (gen !== null) this.load(gen);
  }

  /** One per runtime and filter, kept across config reloads (so is its instance). */
  static for(runtime: WasmFilterRuntime, name: string): InlineSniffer {
    let m = byRuntime.get(runtime);
    if (m === undefined) byRuntime.set(runtime, (m = new Map()));
    let s = m.get(name);
    if (s === undefined) m.set(name, (s = new InlineSniffer(runtime, name)));
    return s;
  }

  sniff(bytes: Uint8Array, endOfStream: boolean): Promise<Map<string, string> | null> | Map<string, string> | null {
    const gen = this.runtime.registry.current(this.name);
    if (gen === null) return null;
    if (gen.id === this.genId && this.filter !== null) return this.filter.sniff(bytes, endOfStream);
    if (gen.id !== this.genId) this.load(gen);
    return this.runtime.sniff(this.name, bytes, endOfStream);
  }

  private load(gen: Generation): void {
    if (this.loading) return;
    this.loading = true;
    this.instantiate(gen).then(
      (filter) => {
        this.filter = filter;
        this.genId = gen.id;
        this.loading = false;
      },
      (err: unknown) => {
        log.warn('inline sniff: cannot instantiate on the main thread; sniffing in the workers', { filter: this.name, error: String(err) });
        this.filter = null;
        this.genId = gen.id;
        this.loading = false;
      },
    );
  }

  private async instantiate(gen: Generation): Promise<SniffFilter | null> {
    const bytes = await fs.readFile(gen.cfg.wasm);
    if (createHash('sha256').update(bytes).digest('hex') !== gen.sha256) return null;
    return SniffFilter.load(gen.cfg);
  }
}
