// A running Wisp in front of one recording upstream, with wasm filters on its routes: the
// start-up most filter tests need, written once. Everything a test does not name takes the
// value those tests all used (admin and listener on 127.0.0.1:0, one worker, one route '/').
import { normalizeConfig } from '../../proxy/config/load.js';
import { Wisp } from '../../proxy/server.js';
import { startUpstream, type TestUpstream } from './net.js';

/** A filter as written under `filters:` in wisp.yaml (normalizeConfig checks the rest). */
export interface FilterSpec {
  name: string;
  wasm: string;
  [option: string]: unknown;
}

/** A route as written under a listener's `routes:`. Without `cluster`, it goes to the upstream's. */
export interface RouteSpec {
  match: Record<string, unknown>;
  cluster?: string;
  filters?: string[];
  [option: string]: unknown;
}

export type UpstreamHandler = NonNullable<Parameters<typeof startUpstream>[0]>;

export interface WispWithFiltersOptions {
  /** The filters the config defines (its top-level `filters:`). */
  filters: FilterSpec[];
  /** The filter chain of the one route, prefix '/'. Ignored when `routes` is given. */
  chain?: string[];
  /** Several routes instead of the one route '/'. */
  routes?: RouteSpec[];
  /** Filter worker threads; 0 runs the filters on the event loop. Default 1. */
  workers?: number;
  /** An upstream the test started (and closes itself), or the handler of one the helper
   * starts and stop() closes. Default: a startUpstream() with its default JSON answer. */
  upstream?: TestUpstream | UpstreamHandler;
  /** Options merged into the upstream's cluster (outlier ...); `name` renames it (default
   * 'up'), for filters that report per cluster. */
  cluster?: { name?: string; [option: string]: unknown };
  /** More clusters on 127.0.0.1, name -> port (targets of proxy_http_call, second upstreams). */
  clusters?: Record<string, number>;
  /** The config's file name in normalizeConfig's errors: the test's name. */
  file?: string;
}

export interface RunningWisp {
  wisp: Wisp;
  upstream: TestUpstream;
  /** The listener's port. */
  port: number;
  adminPort: number;
  /** Stops Wisp without draining, then the upstream when the helper started it. */
  stop(): Promise<void>;
}

const UPSTREAM_CLUSTER = 'up';
const LISTENER = 'l';

export async function startWispWithFilters(opts: WispWithFiltersOptions): Promise<RunningWisp> {
  const given = typeof opts.upstream === 'object' ? opts.upstream : undefined;
  const upstream = given ?? (await startUpstream(typeof opts.upstream === 'function' ? opts.upstream : undefined));
  const closeUpstream = given === undefined ? () => upstream.close() : () => Promise.resolve();
  const upstreamCluster = { name: UPSTREAM_CLUSTER, endpoints: [`127.0.0.1:${upstream.port}`], ...opts.cluster };
  const routes = (opts.routes ?? [{ match: { prefix: '/' }, filters: opts.chain ?? [] }]).map((r) => ({ cluster: upstreamCluster.name, ...r }));
  const clusters = [
    upstreamCluster,
    ...Object.entries(opts.clusters ?? {}).map(([name, port]) => ({ name, endpoints: [`127.0.0.1:${port}`] })),
  ];
  let wisp: Wisp;
  try {
    const config = normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        workers: opts.workers ?? 1,
        listeners: [{ name: LISTENER, address: '127.0.0.1:0', routes }],
        clusters,
        filters: opts.filters,
      },
      opts.file ?? 'startWispWithFilters',
    );
    wisp = await Wisp.start(config);
  } catch (err) {
    await closeUpstream();
    throw err;
  }
  return {
    wisp,
    upstream,
    port: wisp.listenerPort(LISTENER),
    adminPort: wisp.adminPort(),
    stop: async () => {
      await wisp.stop(0);
      await closeUpstream();
    },
  };
}
