// One upstream endpoint of a cluster: its address, its keep-alive pool, and the state the
// load balancers read on every pick (active, healthy, ejectedUntil). Health checks, outlier
// detection and DNS write that state; they live in their own modules and keep their
// bookkeeping here so every Endpoint has one stable shape.
import net from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { EndpointPool } from './pool.js';
import type { EndpointPoolOptions, PoolStats, UpstreamErrorKind } from './types.js';

/** The only place a pool is created, so the upstream client can be swapped in one line. */
export function createPool(address: string, port: number, opts: EndpointPoolOptions): EndpointPool {
  return new EndpointPool(address, port, opts);
}

/** Receives the outcome of every try (the cluster's outlier detector). */
export interface OutcomeListener {
  onStatus(endpoint: Endpoint, status: number): void;
  onFailure(endpoint: Endpoint, kind: UpstreamErrorKind): void;
}

/** A config host as a literal IP, or null when it is a name that needs DNS. IPv6 literals may
 * come bracketed ("[::1]"). */
export function literalIp(host: string): string | null {
  const bare = host.length > 1 && host.charCodeAt(0) === 91 /* [ */ && host.charCodeAt(host.length - 1) === 93 /* ] */
    ? host.slice(1, -1)
    : host;
  return net.isIP(bare) !== 0 ? bare : null;
}

export class Endpoint {
  /** "host:port" as configured (DNS name, not the resolved IP). */
  readonly key: string;
  readonly host: string;
  readonly port: number;
  weight: number;
  /** Position in the cluster's endpoint array (load balancers index their state by it). */
  readonly index: number;
  /** Resolved IP the pool connects to; '' until the first DNS answer. */
  address = '';
  /** The keep-alive pool for `address`. Always set once the endpoint belongs to a cluster
   * (initPool). Before a DNS name's first answer it is a pool on the name itself (node
   * resolves it per connection): stats work, and nothing uses it because available() is
   * false until the name is resolved. */
  pool!: EndpointPool;
  /** True once the endpoint has an address and a pool. */
  resolved = false;
  /** Requests in flight (the request path does active++ / active--). */
  active = 0;
  /** Active health check verdict; true when the cluster has no health check. */
  healthy = true;
  /** Outlier ejection deadline (Date.now() ms); 0 = never ejected. Left in place after it
   * passes (ejection ends lazily) so the detector can tell how recent the last one was.
   * Set it only through OutlierDetector.eject (Cluster.pick relies on that). */
  ejectedUntil = 0;

  // Outlier detection state (written by outlier.ts).
  consecutive5xx = 0;
  consecutiveConnectFailures = 0;
  /** Ejection multiplier: base_ejection_ms × timesEjected. */
  timesEjected = 0;

  // Counters (monotone; carried over when a reload rebuilds the cluster).
  requests = 0;
  responses5xx = 0;
  connectFailures = 0;
  /** reset / protocol errors. */
  otherFailures = 0;
  ejections = 0;

  readonly poolOptions: EndpointPoolOptions;
  listener: OutcomeListener | null = null;
  private hasPool = false;
  /** False once another Endpoint (a reload's rebuilt cluster) took over this pool. */
  private ownsPool = false;

  constructor(host: string, port: number, weight: number, index: number, poolOptions: EndpointPoolOptions) {
    this.host = host;
    this.port = port;
    this.weight = weight;
    this.index = index;
    this.key = `${host}:${port}`;
    this.poolOptions = poolOptions;
  }

  /** True when the endpoint needs DNS to get (and keep) its address. */
  get needsDns(): boolean {
    return literalIp(this.host) === null;
  }

  /** Give the endpoint its pool unless it adopted one: a literal IP is resolved at once; a
   * DNS name gets a placeholder pool on the name until dns.ts resolves it. */
  initPool(): void {
    if (this.hasPool) return;
    const ip = literalIp(this.host);
    if (ip !== null) {
      this.setAddress(ip);
      return;
    }
    this.pool = createPool(this.host, this.port, this.poolOptions);
    this.hasPool = true;
    this.ownsPool = true;
  }

  /** Request path: a response head with this status arrived for a try. */
  reportStatus(status: number): void {
    this.requests++;
    if (status >= 500) this.responses5xx++;
    if (this.listener !== null) this.listener.onStatus(this, status);
  }

  /** Request path: a try failed without a response. */
  reportFailure(kind: UpstreamErrorKind): void {
    this.requests++;
    if (kind === 'connect' || kind === 'connect-timeout') this.connectFailures++;
    else if (kind !== 'overflow') this.otherFailures++;
    if (this.listener !== null) this.listener.onFailure(this, kind);
  }

  /** Resolved, healthy and not ejected. */
  available(now: number): boolean {
    return this.resolved && this.healthy && this.ejectedUntil <= now;
  }

  ejected(now: number): boolean {
    return this.ejectedUntil > now;
  }

  /** Point the endpoint at `address`. A change makes a new pool and closes the old one
   * gracefully (its in-flight exchanges finish). Returns true when the address changed. */
  setAddress(address: string): boolean {
    if (this.resolved && address === this.address) return false;
    const old = this.hasPool && this.ownsPool ? this.pool : null;
    this.pool = createPool(address, this.port, this.poolOptions);
    this.address = address;
    this.resolved = true;
    this.hasPool = true;
    this.ownsPool = true;
    if (old !== null) old.close();
    return true;
  }

  /** Take over `prev`'s pool, address and state when a reload rebuilds the cluster and this
   * endpoint is the same host:port with the same pool settings. Returns false (nothing taken)
   * otherwise. `keepHealth`: carry the health verdict (both clusters health-check). */
  adopt(prev: Endpoint, keepHealth: boolean): boolean {
    if (prev.key !== this.key || !prev.resolved || !prev.ownsPool) return false;
    if (this.hasPool || !isDeepStrictEqual(prev.poolOptions, this.poolOptions)) return false;
    this.pool = prev.pool;
    this.address = prev.address;
    this.resolved = true;
    this.hasPool = true;
    this.ownsPool = true;
    prev.ownsPool = false;
    if (keepHealth) this.healthy = prev.healthy;
    this.ejectedUntil = prev.ejectedUntil;
    this.timesEjected = prev.timesEjected;
    this.consecutive5xx = prev.consecutive5xx;
    this.consecutiveConnectFailures = prev.consecutiveConnectFailures;
    this.requests = prev.requests;
    this.responses5xx = prev.responses5xx;
    this.connectFailures = prev.connectFailures;
    this.otherFailures = prev.otherFailures;
    this.ejections = prev.ejections;
    return true;
  }

  poolStats(): PoolStats | null {
    return this.hasPool ? this.pool.stats() : null;
  }

  /** Close the pool gracefully unless a newer Endpoint adopted it. */
  close(): void {
    this.listener = null;
    if (this.hasPool && this.ownsPool) {
      this.ownsPool = false;
      this.pool.close();
    }
  }
}
