// What the server needs from the filter runtime beyond the request-path contract
// (FilterRuntime in types.ts): lifecycle, hot-load and reporting.
import type { FilterConfig, WispConfig } from '../config/types.js';
import type { FilterRuntime } from './types.js';
import type { Logger } from '../log.js';

export interface FilterMetricSample {
  filter: string;
  name: string;
  type: string;
  value: number;
}

export interface ManagedFilterRuntime extends FilterRuntime {
  /** Load new/changed filters and drop removed ones; throws (changing nothing) when any fails. */
  apply(filters: FilterConfig[]): Promise<void>;
  loadBytes(name: string, wasm: Buffer): Promise<unknown>;
  reload(name: string): Promise<unknown>;
  list(): unknown[];
  metricsSnapshot(): FilterMetricSample[];
  close(): Promise<void>;
}

export async function createFilterRuntime(_config: WispConfig, _log: Logger): Promise<ManagedFilterRuntime> {
  throw new Error('the wasm filter runtime is not available in this build');
}
