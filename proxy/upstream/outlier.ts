// Passive outlier detection: the request path reports every try's outcome and an endpoint
// that fails too many times in a row is ejected (skipped by the load balancers) for a while.
//
// - consecutive_5xx: responses with status >= 500, and tries that broke after the request
//   was sent (reset, protocol error) — Envoy maps those local errors to 5xx the same way
//   when it does not split local from external errors.
// - consecutive_connect_failure: 'connect' and 'connect-timeout' failures.
// - Any response below 500 resets both counters (the endpoint answered). Pool overflow is
//   our own limit, not the endpoint's fault, and counts for nothing.
// - Ejection lasts base_ejection_ms × (times ejected), capped at max_ejection_ms. The
//   multiplier starts over when the previous ejection ended more than max_ejection_ms ago
//   (Envoy decays it one step per interval; we have no interval timer, so decay is lazy).
// - Ejection ends lazily: Endpoint.available() compares ejectedUntil with the clock.
// - max_ejection_percent (Envoy's rule): an ejection happens only while ejected endpoints,
//   this one included, stay within the percentage — except that one endpoint may always be
//   ejected when none is. Unlike Envoy, that exception needs ≥ 2 endpoints: ejecting the
//   only endpoint of a cluster turns its errors into 503s with nowhere else to go, so a
//   single-endpoint cluster is ejected only with max_ejection_percent = 100.
import type { OutlierConfig } from '../config/types.js';
import type { Endpoint, OutcomeListener } from './endpoint.js';
import type { UpstreamErrorKind } from './types.js';
import type { ClusterCounters } from './cluster.js';

export class OutlierDetector implements OutcomeListener {
  private readonly config: OutlierConfig;
  private readonly endpoints: readonly Endpoint[];
  private readonly counters: ClusterCounters;
  /** The latest ejection deadline handed out; 0 once the clock passed it. While it is 0 no
   * endpoint is ejected and Cluster.pick skips reading the clock (Date.now() costs about as
   * much as a whole pick). Every ejection goes through eject() so this stays true. */
  activeUntil = 0;

  constructor(config: OutlierConfig, endpoints: readonly Endpoint[], counters: ClusterCounters) {
    this.config = config;
    this.endpoints = endpoints;
    this.counters = counters;
    // Ejections taken over from a replaced cluster.
    for (const ep of endpoints) if (ep.ejectedUntil > this.activeUntil) this.activeUntil = ep.ejectedUntil;
  }

  onStatus(ep: Endpoint, status: number): void {
    if (status < 500) {
      ep.consecutive5xx = 0;
      ep.consecutiveConnectFailures = 0;
      return;
    }
    ep.consecutive5xx++;
    const limit = this.config.consecutive_5xx;
    if (limit > 0 && ep.consecutive5xx >= limit) this.eject(ep, Date.now());
  }

  onFailure(ep: Endpoint, kind: UpstreamErrorKind): void {
    if (kind === 'overflow') return;
    if (kind === 'connect' || kind === 'connect-timeout') {
      ep.consecutiveConnectFailures++;
      const limit = this.config.consecutive_connect_failure;
      if (limit > 0 && ep.consecutiveConnectFailures >= limit) this.eject(ep, Date.now());
      return;
    }
    ep.consecutive5xx++;
    const limit = this.config.consecutive_5xx;
    if (limit > 0 && ep.consecutive5xx >= limit) this.eject(ep, Date.now());
  }

  /** Eject `ep` if max_ejection_percent allows. Returns true when it was ejected. */
  eject(ep: Endpoint, now: number): boolean {
    if (ep.ejectedUntil > now) return false; // already out; late reports of in-flight tries
    if (!this.ejectionAllowed(now)) {
      this.counters.ejectionsSkipped++;
      return false;
    }
    const cfg = this.config;
    if (ep.ejectedUntil !== 0 && now - ep.ejectedUntil > cfg.max_ejection_ms) ep.timesEjected = 0;
    ep.timesEjected++;
    ep.ejectedUntil = now + Math.min(cfg.base_ejection_ms * ep.timesEjected, cfg.max_ejection_ms);
    if (ep.ejectedUntil > this.activeUntil) this.activeUntil = ep.ejectedUntil;
    ep.consecutive5xx = 0;
    ep.consecutiveConnectFailures = 0;
    ep.ejections++;
    this.counters.ejections++;
    return true;
  }

  /** Endpoints ejected right now. */
  ejectedCount(now: number): number {
    let n = 0;
    for (let i = 0; i < this.endpoints.length; i++) if (this.endpoints[i].ejectedUntil > now) n++;
    return n;
  }

  private ejectionAllowed(now: number): boolean {
    const total = this.endpoints.length;
    const ejected = this.ejectedCount(now);
    if ((ejected + 1) * 100 <= this.config.max_ejection_percent * total) return true;
    return ejected === 0 && total >= 2;
  }
}
