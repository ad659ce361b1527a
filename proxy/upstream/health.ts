// Active health checks: every interval_ms each resolved endpoint gets an HTTP/1.1 GET of
// `path` on a fresh connection (node:http, agent:false, "connection: close") — never through
// the request pool, so a check measures the endpoint and not our pool's queue, and it cannot
// take a slot a request needs.
//
// Verdict: healthy_threshold consecutive passes to become healthy, unhealthy_threshold
// consecutive failures to become unhealthy. A pass is a response whose status is in
// expected_statuses (empty: 200–399) within timeout_ms; anything else (other status,
// connect error, timeout) is a failure.
//
// Endpoints start healthy, unlike Envoy (which holds new hosts out until their first check
// passes): a proxy that boots or reloads would otherwise answer 503 to everything for a
// check interval. A dead endpoint is found by the first round of checks, which starts at
// once, and by passive outlier detection in the meantime.
import http from 'node:http';
import type { HealthCheckConfig } from '../config/types.js';
import type { Endpoint } from './endpoint.js';
import type { ClusterCounters } from './cluster.js';

/** One endpoint's check state. */
class HealthProbe {
  readonly endpoint: Endpoint;
  passes = 0;
  failures = 0;
  inFlight: http.ClientRequest | null = null;
  timer: NodeJS.Timeout | null = null;
  /** Checks answered (pass or fail), for tests and stats. */
  checks = 0;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }
}

export class HealthChecker {
  private readonly config: HealthCheckConfig;
  private readonly counters: ClusterCounters;
  private readonly probes: HealthProbe[];
  private interval: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(config: HealthCheckConfig, endpoints: readonly Endpoint[], counters: ClusterCounters) {
    this.config = config;
    this.counters = counters;
    this.probes = endpoints.map((ep) => new HealthProbe(ep));
  }

  start(): void {
    if (this.closed || this.interval !== null) return;
    this.interval = setInterval(() => this.round(), Math.max(1, this.config.interval_ms));
    this.interval.unref();
    this.round();
  }

  /** Checks answered for `endpoint` so far (tests wait on it). */
  checksOf(endpoint: Endpoint): number {
    for (const p of this.probes) if (p.endpoint === endpoint) return p.checks;
    return 0;
  }

  close(): void {
    this.closed = true;
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
    for (const p of this.probes) {
      if (p.timer !== null) clearTimeout(p.timer);
      p.timer = null;
      if (p.inFlight !== null) p.inFlight.destroy();
      p.inFlight = null;
    }
  }

  private round(): void {
    for (const p of this.probes) {
      // A check still running (timeout longer than interval) is not doubled up.
      if (p.inFlight === null && p.endpoint.resolved) this.send(p);
    }
  }

  private send(p: HealthProbe): void {
    const ep = p.endpoint;
    const cfg = this.config;
    let settled = false;
    const finish = (pass: boolean): void => {
      if (settled) return;
      settled = true;
      if (p.timer !== null) clearTimeout(p.timer);
      p.timer = null;
      const req = p.inFlight;
      p.inFlight = null;
      if (req !== null) req.destroy();
      if (!this.closed) this.record(p, pass);
    };
    const req = http.request(
      {
        host: ep.address,
        port: ep.port,
        path: cfg.path,
        method: 'GET',
        agent: false,
        headers: { host: cfg.host ?? ep.key, 'user-agent': 'wisp-health-check', connection: 'close' },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        // The socket is destroyed right after the verdict; its late errors mean nothing.
        res.on('error', ignore);
        res.resume();
        finish(this.expected(status));
      },
    );
    req.on('error', () => finish(false));
    p.inFlight = req;
    p.timer = setTimeout(() => finish(false), Math.max(1, cfg.timeout_ms));
    p.timer.unref();
    req.end();
  }

  private expected(status: number): boolean {
    const list = this.config.expected_statuses;
    if (list.length === 0) return status >= 200 && status < 400;
    return list.includes(status);
  }

  private record(p: HealthProbe, pass: boolean): void {
    const ep = p.endpoint;
    p.checks++;
    if (pass) {
      p.failures = 0;
      p.passes++;
      if (!ep.healthy && p.passes >= this.config.healthy_threshold) {
        ep.healthy = true;
        this.counters.healthyTransitions++;
      }
    } else {
      p.passes = 0;
      p.failures++;
      if (ep.healthy && p.failures >= this.config.unhealthy_threshold) {
        ep.healthy = false;
        this.counters.unhealthyTransitions++;
      }
    }
  }
}

function ignore(): void {}
