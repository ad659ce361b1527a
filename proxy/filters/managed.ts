// What the server needs from the filter runtime beyond the request-path contract
// (FilterRuntime in types.ts): lifecycle, hot-load and reporting. The wasm runtime
// (runtime.ts) provides it; this module is where the server's log meets the filters'.
import type { FilterConfig, WispConfig } from '../config/types.js';
import type { FilterRuntime } from './types.js';
import type { Logger } from '../log.js';
import type { FilterInfo } from '../wasm/module-registry.js';
import { WasmFilterRuntime } from './runtime.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import { bufferedCall } from '../upstream/buffered-call.js';

export interface FilterMetricSample {
  filter: string;
  name: string;
  type: string;
  /** Histograms: the sum of the values recorded. */
  value: number;
  /** Histograms: how many values were recorded. */
  count?: number;
}

export interface ManagedFilterRuntime extends FilterRuntime {
  /** Load new/changed filters and drop removed ones; throws (changing nothing) when any fails. */
  apply(filters: FilterConfig[]): Promise<unknown>;
  loadBytes(name: string, wasm: Uint8Array): Promise<unknown>;
  reload(name: string): Promise<unknown>;
  list(): FilterInfo[];
  /** The clusters proxy_http_call may name: the config's, set when a config is committed. */
  setHttpCallClusters(names: readonly string[]): void;
  metricsSnapshot(): FilterMetricSample[];
  close(): Promise<void>;
}

export async function createFilterRuntime(config: WispConfig, log: Logger, clusters: ClusterManager): Promise<ManagedFilterRuntime> {
  const level = log.enabled('debug') ? 'debug' : log.enabled('info') ? 'info' : 'warn';
  if (config.workers === 0 && config.filters.length > 0) {
    log.log('warn', 'workers: 0: filters run on the event loop thread; deadline is not enforced (a filter that loops hangs the proxy)');
  }
  return new WasmFilterRuntime({
    workers: config.workers,
    // proxy_http_call goes to the same clusters (LB, health, pools) as proxied requests.
    httpCall: (call) => bufferedCall(clusters, call),
    logLevel: level,
    log: (lvl, filter, message) => {
      const mapped = lvl === 'trace' ? 'debug' : lvl === 'critical' ? 'error' : lvl;
      log.log(mapped, message, { filter });
    },
  });
}
