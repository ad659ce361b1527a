// All clusters by name, and hot reload of their configs. apply() changes only what changed:
// an identical config keeps its Cluster object (and so its pools, health state, ejections);
// a changed one is rebuilt, with endpoints of the same host:port and pool settings taking
// over their old pools; a removed one is closed gracefully (its in-flight requests finish).
import { isDeepStrictEqual } from 'node:util';
import type { ClusterConfig } from '../config/types.js';
import { Cluster, ClusterCounters, type ClusterStats, type ClusterOptions, type CounterValues } from './cluster.js';

/** Sums over every cluster ever applied (removed clusters included), for the metrics module. */
export interface UpstreamTotals extends CounterValues {
  clusters: number;
  endpoints: number;
  availableEndpoints: number;
}

const COUNTER_FIELDS = [
  'overflows',
  'ejections',
  'ejectionsSkipped',
  'healthyTransitions',
  'unhealthyTransitions',
  'dnsResolutions',
  'dnsChanges',
  'dnsFailures',
] as const;

export class ClusterManager {
  private clusters = new Map<string, Cluster>();
  /** Counters of removed clusters, so totals stay monotone. */
  private readonly retired = new ClusterCounters();
  private readonly clusterOptions: Omit<ClusterOptions, 'previous'>;

  constructor(clusterOptions: Omit<ClusterOptions, 'previous'> = {}) {
    this.clusterOptions = clusterOptions;
  }

  /** Apply a whole new set of cluster configs. Throws (changing nothing) on duplicate names. */
  apply(configs: readonly ClusterConfig[]): void {
    const seen = new Set<string>();
    for (const c of configs) {
      if (seen.has(c.name)) throw new Error(`duplicate cluster name "${c.name}"`);
      seen.add(c.name);
    }
    const next = new Map<string, Cluster>();
    const replaced: Array<[Cluster, Cluster]> = [];
    for (const config of configs) {
      const prev = this.clusters.get(config.name);
      if (prev !== undefined && (prev.config === config || isDeepStrictEqual(prev.config, config))) {
        next.set(config.name, prev);
        continue;
      }
      const cluster = new Cluster(config, { ...this.clusterOptions, previous: prev });
      next.set(config.name, cluster);
      if (prev !== undefined) replaced.push([prev, cluster]);
    }
    for (const [name, cluster] of this.clusters) {
      if (next.has(name)) continue;
      this.retire(cluster.counters);
      cluster.close();
    }
    // The replacements took what they could from these; the rest closes gracefully, and a
    // request still holding an old Cluster gets its endpoint from the new one.
    for (const [old, cluster] of replaced) old.replaceWith(cluster);
    this.clusters = next;
  }

  get(name: string): Cluster | undefined {
    return this.clusters.get(name);
  }

  all(): Cluster[] {
    return [...this.clusters.values()];
  }

  stats(): ClusterStats[] {
    return this.all().map((c) => c.stats());
  }

  totals(): UpstreamTotals {
    const now = Date.now();
    const t: UpstreamTotals = {
      clusters: this.clusters.size,
      endpoints: 0,
      availableEndpoints: 0,
      ...this.retired,
      inFlight: 0,
    };
    for (const c of this.clusters.values()) {
      t.endpoints += c.endpoints.length;
      t.availableEndpoints += c.availableCount(now);
      t.inFlight += c.counters.inFlight;
      for (const f of COUNTER_FIELDS) t[f] += c.counters[f];
    }
    return t;
  }

  close(): void {
    for (const c of this.clusters.values()) {
      this.retire(c.counters);
      c.close();
    }
    this.clusters = new Map();
  }

  private retire(counters: ClusterCounters): void {
    for (const f of COUNTER_FIELDS) this.retired[f] += counters[f];
  }
}
