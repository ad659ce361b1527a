// Everything a listener needs to serve one request under one configuration. A reload
// builds a new ListenerState and swaps it in; requests already running keep the one they
// started with, so in-flight requests finish on their own config.
import type { ListenerConfig } from '../config/types.js';
import { Router, type CompiledRoute } from '../router/match.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import type { FilterChain, FilterRuntime } from '../filters/types.js';
import type { Metrics, RequestStats } from '../admin/metrics.js';
import { RequestCheck } from '../http/request-validation.js';
import { AccessLog } from './access-log.js';

/** Requests in flight across every listener, for graceful drain. */
export const inflight = { count: 0 };

export class ListenerState {
  readonly router: Router;
  readonly scheme: 'http' | 'https';
  // uWS 20.30 decodes chunked request bodies itself (docs/http-limits.md); Wisp re-frames them upstream.
  readonly check = new RequestCheck(true);
  readonly accessLog: AccessLog | null;
  /** "ip:port" the listener is bound to once it listens (filters' destination.address);
   * carried over to the state that replaces this one on a reload. */
  localAddress = '';
  private readonly chains = new Map<CompiledRoute, FilterChain>();
  private readonly stats = new Map<CompiledRoute, RequestStats>();

  constructor(
    readonly config: ListenerConfig,
    readonly clusters: ClusterManager,
    filters: FilterRuntime | null,
    metrics: Metrics,
  ) {
    this.router = new Router(config.routes);
    this.scheme = config.tls ? 'https' : 'http';
    this.accessLog = config.access_log ? new AccessLog() : null;
    for (const route of this.router.routes) {
      const names = route.config.filters;
      if (names.length > 0) {
        if (filters === null) throw new Error(`route "${route.name}": filters ${names.join(', ')} named but no filter runtime is running`);
        this.chains.set(route, filters.chain(names));
      }
      this.stats.set(route, metrics.requestStats(config.name, route.name, route.config.cluster ?? ''));
    }
  }

  chainFor(route: CompiledRoute): FilterChain | null {
    return this.chains.get(route) ?? null;
  }

  statsFor(route: CompiledRoute): RequestStats {
    return this.stats.get(route)!;
  }
}
