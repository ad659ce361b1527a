// Wisp: one process = clusters + filter runtime + listeners + admin API, driven by one
// validated config. apply() is the only way configuration changes, at start and on every
// reload: everything new is built (and can fail) before anything serving is touched.
import type { ListenerConfig, WispConfig } from './config/types.js';
import { loadConfigFile, redactConfig } from './config/load.js';
import { ClusterManager } from './upstream/cluster-manager.js';
import { HttpListener } from './listener/http.js';
import { ListenerState, inflight } from './listener/state.js';
import { AdminServer, HttpError, type AdminBackend } from './admin/server.js';
import { Metrics } from './admin/metrics.js';
import { createFilterRuntime, type ManagedFilterRuntime } from './filters/managed.js';
import { log } from './log.js';
import { FileWatch } from './file-watch.js';
import { closeWebSockets, openWebSocketCount } from './listener/websocket.js';
import { TcpListener, TcpListenerState, type Sniffer } from './listener/tcp.js';
import { HttpHandoffs } from './listener/handoff.js';
import { InlineSniffer } from './listener/inline-sniff.js';
import { WasmFilterRuntime } from './filters/runtime.js';
import type { NetworkFilterChain } from './filters/types.js';
import type { FilterInfo } from './wasm/module-registry.js';

export interface WispOptions {
  /** Watch the config file and reload on change (default: true when started from a file). */
  watch?: boolean;
}

export class Wisp {
  config: WispConfig;
  readonly metrics = new Metrics();
  readonly clusters = new ClusterManager();
  filters: ManagedFilterRuntime | null = null;
  private readonly listeners = new Map<string, HttpListener | TcpListener>();
  /** Private loopback ports of the HTTP listeners tcp routes hand HTTP/1 to. */
  private readonly handoffs = new HttpHandoffs();
  private admin: AdminServer | null = null;
  private adminPortNo = 0;
  private watcher: FileWatch | null = null;
  private reloading: Promise<unknown> = Promise.resolve();
  private stopping = false;

  private constructor(config: WispConfig) {
    this.config = config;
  }

  static async start(config: WispConfig, opts: WispOptions = {}): Promise<Wisp> {
    const wisp = new Wisp(config);
    try {
      await wisp.apply(config, true);
      wisp.admin = new AdminServer(config.admin, wisp.adminBackend());
      wisp.adminPortNo = await wisp.admin.listen();
      wisp.registerMetrics();
      if (opts.watch) wisp.watch();
    } catch (err) {
      await wisp.stop(0);
      throw err;
    }
    return wisp;
  }

  listenerPort(name: string): number {
    const l = this.listeners.get(name);
    if (!l) throw new Error(`no listener named "${name}"`);
    return l.port;
  }

  adminPort(): number {
    return this.adminPortNo;
  }

  /** The network filter chain of a tcp listener (tcp.filters), or null when it has none. */
  private networkChainFor(lc: ListenerConfig): NetworkFilterChain | null {
    const names = lc.tcp!.filters;
    if (names === undefined || names.length === 0) return null;
    const runtime = this.filters;
    if (!(runtime instanceof WasmFilterRuntime)) throw new Error(`listener "${lc.name}": network filters need the wasm filter runtime`);
    return runtime.networkChain(names);
  }

  /** Swap to a new config. Throws (and leaves the old config serving) when any part fails. */
  async apply(next: WispConfig, initial = false): Promise<void> {
    // 1. Filters first: a module that fails to load must stop the whole reload.
    if (next.filters.length > 0 || this.filters !== null) {
      if (this.filters === null) this.filters = await createFilterRuntime(next, log, this.clusters);
      await this.filters.apply(next.filters);
    }
    // 2. Listener states (routes, chains) are built before any listener changes.
    //    TCP listeners sniff through the filter workers (WasmFilterRuntime.sniff).
    //    With sniff_inline the filter runs on the main thread instead (listener/inline-sniff.ts).
    const sniffers = new Map<string, Sniffer>();
    const snifferKey = (lc: ListenerConfig): string => `${lc.tcp!.sniff}${lc.tcp!.sniff_inline ? ' inline' : ''}`;
    for (const lc of next.listeners) {
      const name = lc.tcp?.sniff;
      if (name === undefined || sniffers.has(snifferKey(lc))) continue;
      const runtime = this.filters;
      if (!(runtime instanceof WasmFilterRuntime)) throw new Error(`listener "${lc.name}": sniff filter "${name}" needs the wasm filter runtime`);
      sniffers.set(snifferKey(lc), lc.tcp!.sniff_inline ? InlineSniffer.for(runtime, name) : { sniff: (bytes, end) => runtime.sniff(name, bytes, end) });
    }
    const states = new Map<string, ListenerState | TcpListenerState>();
    for (const lc of next.listeners) {
      states.set(lc.name, lc.protocol === 'tcp'
        ? new TcpListenerState(lc, this.clusters, lc.tcp!.sniff === undefined ? null : sniffers.get(snifferKey(lc))!, this.metrics, this.handoffs, this.networkChainFor(lc))
        : new ListenerState(lc, this.clusters, this.filters, this.metrics));
    }
    this.handoffs.stage(next, (lc) => new ListenerState(lc, this.clusters, this.filters, this.metrics));
    // 3. Bind new or moved listeners; a bind failure closes what this reload opened.
    const opened: (HttpListener | TcpListener)[] = [];
    try {
      for (const lc of next.listeners) {
        const cur = this.listeners.get(lc.name);
        if (cur === undefined || !sameBinding(cur.config, lc)) {
          const st = states.get(lc.name)!;
          const l = st instanceof TcpListenerState ? new TcpListener(st) : new HttpListener(st);
          await l.listen();
          opened.push(l);
        }
      }
      await this.handoffs.bind();
    } catch (err) {
      for (const l of opened) l.close();
      this.handoffs.abort();
      throw err;
    }
    // 4. Commit. Clusters first (unchanged ones keep their pools): requests look their
    //    cluster up by name when they start, so routes and clusters switch together.
    this.clusters.apply(next.clusters);
    this.filters?.setHttpCallClusters(next.clusters.map((c) => c.name));
    for (const l of opened) {
      const old = this.listeners.get(l.config.name);
      if (old !== undefined) old.close();
      this.listeners.set(l.config.name, l);
    }
    for (const lc of next.listeners) {
      const l = this.listeners.get(lc.name)!;
      const st = states.get(lc.name)!;
      if (l instanceof TcpListener) l.state = st as TcpListenerState;
      else l.state = st as ListenerState;
    }
    this.handoffs.commit();
    for (const [name, l] of this.listeners) {
      if (!states.has(name)) {
        l.close();
        this.listeners.delete(name);
      }
    }
    this.config = next;
    if (this.watcher !== null) this.watchFiles();
    if (!initial) log.info('config applied', { source: next.source, listeners: next.listeners.length, clusters: next.clusters.length });
  }

  /** Re-read the config file and apply it; failures are logged and counted, never thrown. */
  reload(): Promise<{ ok: boolean; error?: string }> {
    const run = async (): Promise<{ ok: boolean; error?: string }> => {
      try {
        const next = loadConfigFile(this.config.source);
        await this.apply(next);
        this.metrics.reloads.ok++;
        return { ok: true };
      } catch (err) {
        this.metrics.reloads.failed++;
        const error = err instanceof Error ? err.message : String(err);
        log.error('config reload rejected; the previous config keeps serving', { error });
        return { ok: false, error };
      }
    };
    // Reloads never overlap: each waits for the one before it.
    const p = this.reloading.then(run, run);
    this.reloading = p;
    return p;
  }

  /** Reload the config when its file changes, and a filter when its .wasm changes. */
  private watch(): void {
    this.watcher = new FileWatch((file) => {
      if (file === this.config.source) return void this.reload();
      const filter = this.config.filters.find((f) => f.wasm === file);
      if (filter !== undefined && this.filters !== null) {
        this.filters.reload(filter.name).then(
          () => {
            this.metrics.filterReloads.ok++;
            log.info('filter reloaded from disk', { filter: filter.name });
          },
          (err: unknown) => {
            this.metrics.filterReloads.failed++;
            log.error('filter reload rejected; the previous version keeps serving', { filter: filter.name, error: String(err) });
          },
        );
      }
    });
    this.watchFiles();
  }

  private watchFiles(): void {
    this.watcher!.set([this.config.source, ...this.config.filters.map((f) => f.wasm)]);
  }

  /** Stop accepting, let requests in flight finish (up to drainMs), then close everything. */
  async stop(drainMs = this.config.drain_timeout_ms): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.watcher !== null) this.watcher.close();
    for (const l of this.listeners.values()) l.close();
    this.handoffs.close();
    // uWS keeps upgraded sockets open after the listen socket closes.
    closeWebSockets(1001, 'going away');
    const deadline = Date.now() + drainMs;
    while (inflight.count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const l of this.listeners.values()) if (l instanceof TcpListener) l.closeConnections();
    this.listeners.clear();
    if (this.admin !== null) await this.admin.close();
    this.clusters.close();
    if (this.filters !== null) await this.filters.close();
  }

  private adminBackend(): AdminBackend {
    return {
      ready: () => !this.stopping && this.listeners.size > 0,
      metrics: () => this.metrics.render(),
      config: () => redactConfig(this.config),
      clusters: () => this.clusters.all().map((c) => c.stats()),
      filters: () => this.filterList(),
      reloadConfig: () => this.reload(),
      // Only configured filters: a PUT of a new name would load a filter no route uses and
      // the next config reload drops.
      putFilter: async (name, wasm) => this.configuredFilters(name).loadBytes(name, wasm),
      reloadFilter: async (name) => this.configuredFilters(name).reload(name),
    };
  }

  /** The filter runtime, when `name` is a configured filter; else a 404 for the admin API. */
  private configuredFilters(name: string): ManagedFilterRuntime {
    if (this.filters === null || !this.config.filters.some((f) => f.name === name)) {
      throw new HttpError(404, `no filter named "${name}" is configured`);
    }
    return this.filters;
  }

  private filterList(): FilterInfo[] {
    return this.filters === null ? [] : this.filters.list();
  }

  private registerMetrics(): void {
    const m = this.metrics;
    m.register('wisp_upstream_connections', 'Upstream connections by cluster, endpoint and state', 'gauge', () => {
      const out = [];
      for (const c of this.clusters.all()) {
        for (const e of c.endpoints) {
          const s = e.pool.stats();
          out.push({ labels: { cluster: c.name, endpoint: e.key, state: 'busy' }, value: s.busy });
          out.push({ labels: { cluster: c.name, endpoint: e.key, state: 'idle' }, value: s.idle });
        }
      }
      return out;
    });
    m.register('wisp_upstream_pending', 'Requests waiting for an upstream connection', 'gauge', () =>
      this.clusters.all().flatMap((c) => c.endpoints.map((e) => ({ labels: { cluster: c.name, endpoint: e.key }, value: e.pool.stats().pending }))),
    );
    m.register('wisp_endpoint_healthy', 'Endpoint availability (1 = healthy and not ejected)', 'gauge', () => {
      const now = Date.now();
      return this.clusters.all().flatMap((c) => c.endpoints.map((e) => ({ labels: { cluster: c.name, endpoint: e.key }, value: e.available(now) ? 1 : 0 })));
    });
    m.register('wisp_outlier_ejections_total', 'Outlier ejections by cluster', 'counter', () =>
      this.clusters.all().map((c) => ({ labels: { cluster: c.name }, value: c.stats().ejections })),
    );
    m.register('wisp_inflight_requests', 'Requests in flight', 'gauge', () => [{ labels: {}, value: inflight.count }]);
    m.register('wisp_websockets_open', 'Proxied WebSocket connections open', 'gauge', () => [{ labels: {}, value: openWebSocketCount() }]);
    // What /filters shows per filter, for alerting: faults (traps, deadline kills, instances
    // recycled past max_memory), quarantine, streams using it.
    m.register('wisp_filter_faults_total', 'Faults of each wasm filter since it was first loaded', 'counter', () =>
      this.filterList().map((f) => ({ labels: { filter: f.name }, value: f.faults })),
    );
    m.register('wisp_filter_quarantined', 'Whether a filter is quarantined (its failure policy applied without calling it)', 'gauge', () =>
      this.filterList().map((f) => ({ labels: { filter: f.name }, value: f.quarantined ? 1 : 0 })),
    );
    m.register('wisp_filter_streams', 'Streams using any generation of a filter', 'gauge', () =>
      this.filterList().map((f) => ({ labels: { filter: f.name }, value: f.streams })),
    );
    m.register('wisp_filter_metric', 'Metrics defined by wasm filters (proxy_define_metric); for a histogram, the sum of its values', 'gauge', () =>
      this.filters === null ? [] : this.filters.metricsSnapshot().map((s) => ({ labels: { filter: s.filter, name: s.name, type: s.type }, value: s.value })),
    );
    m.register('wisp_filter_metric_count', 'How many values a wasm filter recorded into each of its histograms', 'counter', () =>
      this.filters === null
        ? []
        : this.filters.metricsSnapshot().flatMap((s) => (s.count === undefined ? [] : [{ labels: { filter: s.filter, name: s.name }, value: s.count }])),
    );
  }
}

function sameBinding(a: ListenerConfig, b: ListenerConfig): boolean {
  return a.host === b.host && a.port === b.port && JSON.stringify(a.tls) === JSON.stringify(b.tls) && (a.protocol ?? 'http') === (b.protocol ?? 'http');
}
