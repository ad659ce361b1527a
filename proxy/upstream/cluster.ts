// A cluster: its endpoints, the load balancer that picks among them, and the machinery that
// keeps their state current (DNS, active health checks, passive outlier detection), plus the
// max_requests limit. Built whole from one ClusterConfig; a config change builds a new
// Cluster (cluster-manager.ts) that takes over the old one's pools where it can.
import type { ClusterConfig } from '../config/types.js';
import { Endpoint } from './endpoint.js';
import type { PoolStats, EndpointPoolOptions } from './types.js';
import { createLoadBalancer, type LoadBalancer, type RandomSource } from './lb/index.js';
import { OutlierDetector } from './outlier.js';
import { HealthChecker } from './health.js';
import { DnsRefresher } from './dns.js';

/** Monotone counters (and the in-flight gauge) of one cluster name. A reload that rebuilds
 * the cluster hands the same object to the new Cluster, so metrics never go backwards and
 * requests still in flight on the old Cluster keep counting against max_requests. */
export class ClusterCounters {
  /** Requests in flight (acquire/release), a gauge. */
  inFlight = 0;
  /** acquire() refusals (max_requests reached). */
  overflows = 0;
  ejections = 0;
  /** Ejections max_ejection_percent prevented. */
  ejectionsSkipped = 0;
  healthyTransitions = 0;
  unhealthyTransitions = 0;
  dnsResolutions = 0;
  /** Address changes, the first resolution included. */
  dnsChanges = 0;
  dnsFailures = 0;
}

export interface EndpointStats {
  key: string;
  address: string;
  weight: number;
  healthy: boolean;
  ejected: boolean;
  /** Ejection deadline (ms since epoch), 0 when not ejected. */
  ejectedUntil: number;
  available: boolean;
  active: number;
  pool: PoolStats | null;
  requests: number;
  responses5xx: number;
  connectFailures: number;
  otherFailures: number;
  ejections: number;
}

/** The counters of a ClusterCounters, as plain data. */
export type CounterValues = { [K in keyof ClusterCounters]: number };

export interface ClusterStats extends CounterValues {
  name: string;
  lb: string;
  maxRequests: number;
  available: number;
  endpoints: EndpointStats[];
}

const AFTER_EVERY_EJECTION = Number.MAX_SAFE_INTEGER;

export interface ClusterOptions {
  /** The cluster this one replaces (same name): pools, endpoint state and counters are taken over. */
  previous?: Cluster;
  /** Randomness for the load balancer (tests). */
  random?: RandomSource;
}

/** Pool settings of one endpoint. Envoy's max_connections is per cluster; pools are per
 * endpoint, so each gets ceil(max / endpoints): the cluster total can exceed the limit by
 * less than one connection per endpoint. max_pending is per endpoint as configured. */
export function poolOptionsFor(config: ClusterConfig): EndpointPoolOptions {
  const n = Math.max(1, config.endpoints.length);
  return {
    connectTimeoutMs: config.connect_timeout_ms,
    idleTimeoutMs: config.idle_timeout_ms,
    maxIdle: config.max_idle_per_endpoint,
    maxConnections: Math.max(1, Math.ceil(config.limits.max_connections / n)),
    maxPending: config.limits.max_pending,
  };
}

export class Cluster {
  readonly name: string;
  config: ClusterConfig;
  readonly endpoints: Endpoint[];
  readonly counters: ClusterCounters;
  readonly outlier: OutlierDetector;
  readonly health: HealthChecker | null;
  readonly dns: DnsRefresher;
  private readonly lb: LoadBalancer;
  private closed = false;
  /** The Cluster that replaced this one on reload. Requests that captured this Cluster before
   * the swap (e.g. while their filters ran) pick from it: this one's pools are closing. */
  private successor: Cluster | null = null;

  constructor(config: ClusterConfig, opts: ClusterOptions = {}) {
    this.name = config.name;
    this.config = config;
    const prev = opts.previous;
    this.counters = prev !== undefined ? prev.counters : new ClusterCounters();
    const poolOptions = poolOptionsFor(config);
    const keepHealth = prev !== undefined && prev.config.health_check !== undefined && config.health_check !== undefined;
    this.endpoints = config.endpoints.map((ec, i) => {
      const ep = new Endpoint(ec.host, ec.port, ec.weight, i, poolOptions);
      if (prev !== undefined) {
        for (const old of prev.endpoints) if (ep.adopt(old, keepHealth)) break;
      }
      ep.initPool();
      return ep;
    });
    this.outlier = new OutlierDetector(config.outlier, this.endpoints, this.counters);
    for (const ep of this.endpoints) ep.listener = this.outlier;
    this.lb = createLoadBalancer(config.lb, this.endpoints, opts.random);
    this.dns = new DnsRefresher(this.endpoints, config.dns_refresh_ms, this.counters);
    this.dns.start();
    this.health = config.health_check !== undefined ? new HealthChecker(config.health_check, this.endpoints, this.counters) : null;
    if (this.health !== null) this.health.start();
  }

  /** Pick an endpoint for a try. hashKey: ring_hash's key ('' otherwise). exclude: the
   * previous try's endpoint; another one is preferred when available. null: none available. */
  pick(hashKey: string, exclude: Endpoint | null): Endpoint | null {
    if (this.successor !== null) return this.successor.pick(hashKey, exclude);
    const outlier = this.outlier;
    // With no ejection in force any time later than every past deadline gives the same
    // answers, so the clock is read only while some ejection may still be running.
    let now = AFTER_EVERY_EJECTION;
    if (outlier.activeUntil !== 0) {
      now = Date.now();
      if (now >= outlier.activeUntil) outlier.activeUntil = 0;
    }
    return this.lb.pick(hashKey, exclude, now);
  }

  /** max_requests accounting: false means the cluster is full (→ 503), and must not be released. */
  acquire(): boolean {
    const c = this.counters;
    if (c.inFlight >= this.config.limits.max_requests) {
      c.overflows++;
      return false;
    }
    c.inFlight++;
    return true;
  }

  release(): void {
    if (this.counters.inFlight > 0) this.counters.inFlight--;
  }

  /** Endpoints available right now. */
  availableCount(now = Date.now()): number {
    let n = 0;
    for (const ep of this.endpoints) if (ep.available(now)) n++;
    return n;
  }

  stats(): ClusterStats {
    const now = Date.now();
    const c = this.counters;
    return {
      name: this.name,
      lb: this.config.lb,
      ...c,
      maxRequests: this.config.limits.max_requests,
      available: this.availableCount(now),
      endpoints: this.endpoints.map((ep) => ({
        key: ep.key,
        address: ep.address,
        weight: ep.weight,
        healthy: ep.healthy,
        ejected: ep.ejected(now),
        ejectedUntil: ep.ejected(now) ? ep.ejectedUntil : 0,
        available: ep.available(now),
        active: ep.active,
        pool: ep.poolStats(),
        requests: ep.requests,
        responses5xx: ep.responses5xx,
        connectFailures: ep.connectFailures,
        otherFailures: ep.otherFailures,
        ejections: ep.ejections,
      })),
    };
  }

  /** Close this Cluster on reload, sending later picks to the one that replaced it. */
  replaceWith(next: Cluster): void {
    this.successor = next;
    this.close();
  }

  /** Stop timers and close pools gracefully (in-flight exchanges finish); pools a newer
   * Cluster adopted are left to it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dns.close();
    if (this.health !== null) this.health.close();
    for (const ep of this.endpoints) ep.close();
  }
}
