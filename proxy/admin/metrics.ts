// Prometheus metrics. The request path counts into plain arrays (RequestStats) — a
// prom-client label lookup per request would cost more than the rest of the accounting —
// and these are turned into exposition only when /metrics is scraped, through metric
// objects that prom-client's Registry renders like its own.
import client from 'prom-client';

/** Latency bucket upper bounds, seconds (Envoy-like spread from 0.5 ms to 30 s). */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

type Labels = Record<string, string | number>;
interface MetricValue {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** A metric whose values are produced on scrape by a callback. */
export class CollectedMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly collectValues: () => MetricValue[],
  ) {}

  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.collectValues(), aggregator: this.aggregator };
  }
}

/** Per (listener, route, cluster) request counters and a latency histogram. */
export class RequestStats {
  /** Index by status class: 0 = no response (aborted/reset), 1..5 = 1xx..5xx. */
  readonly byClass = [0, 0, 0, 0, 0, 0];
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  latencySum = 0;
  latencyCount = 0;
  retries = 0;
  constructor(readonly listener: string, readonly route: string, readonly cluster: string) {}

  record(status: number, seconds: number): void {
    const cls = status >= 100 && status < 600 ? (status / 100) | 0 : 0;
    this.byClass[cls]!++;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.buckets[i]!++;
    this.latencySum += seconds;
    this.latencyCount++;
  }
}

/** Per (listener, cluster, protocol) L4 connection counters; protocol is what sniffing found
 * ('' → "none" when the listener does not sniff). cluster is "none" for connections closed unrouted. */
export class TcpStats {
  connections = 0;
  active = 0;
  /** Bytes read from the client (sent upstream) and written to it. */
  bytesIn = 0;
  bytesOut = 0;
  constructor(readonly listener: string, readonly cluster: string, readonly protocol: string) {}
}

const CLASS_NAMES = ['none', '1xx', '2xx', '3xx', '4xx', '5xx'];

/** Owns the registry and the request stats; other modules register collectors. */
export class Metrics {
  readonly registry = new client.Registry();
  private readonly stats = new Map<string, RequestStats>();
  private readonly tcp = new Map<string, TcpStats>();
  readonly reloads = { ok: 0, failed: 0 };
  /** Filter hot-loads from a changed .wasm file. */
  readonly filterReloads = { ok: 0, failed: 0 };

  constructor() {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'wisp_process_' });
    this.register('wisp_requests_total', 'Requests by listener, route, cluster and status class', 'counter', () => {
      const out: MetricValue[] = [];
      for (const s of this.stats.values()) {
        for (let c = 0; c < 6; c++) {
          const v = s.byClass[c]!;
          if (v > 0) out.push({ labels: { listener: s.listener, route: s.route, cluster: s.cluster, status_class: CLASS_NAMES[c]! }, value: v });
        }
      }
      return out;
    });
    this.register('wisp_request_duration_seconds', 'Request latency from first byte in to last byte out', 'histogram', () => {
      const out: MetricValue[] = [];
      for (const s of this.stats.values()) {
        if (s.latencyCount === 0) continue;
        const labels = { listener: s.listener, route: s.route, cluster: s.cluster };
        let cum = 0;
        for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
          cum += s.buckets[i]!;
          out.push({ metricName: 'wisp_request_duration_seconds_bucket', labels: { ...labels, le: LATENCY_BUCKETS[i]! }, value: cum });
        }
        cum += s.buckets[LATENCY_BUCKETS.length]!;
        out.push({ metricName: 'wisp_request_duration_seconds_bucket', labels: { ...labels, le: '+Inf' }, value: cum });
        out.push({ metricName: 'wisp_request_duration_seconds_sum', labels, value: s.latencySum });
        out.push({ metricName: 'wisp_request_duration_seconds_count', labels, value: s.latencyCount });
      }
      return out;
    });
    this.register('wisp_retries_total', 'Upstream retries by listener, route and cluster', 'counter', () => {
      const out: MetricValue[] = [];
      for (const s of this.stats.values()) if (s.retries > 0) out.push({ labels: { listener: s.listener, route: s.route, cluster: s.cluster }, value: s.retries });
      return out;
    });
    this.register('wisp_tcp_connections_total', 'TCP (L4) connections by listener, cluster and sniffed protocol', 'counter', () =>
      [...this.tcp.values()].map((t) => ({ labels: { listener: t.listener, cluster: t.cluster, protocol: t.protocol }, value: t.connections })),
    );
    this.register('wisp_tcp_connections_active', 'TCP (L4) connections open by listener, cluster and sniffed protocol', 'gauge', () =>
      [...this.tcp.values()].map((t) => ({ labels: { listener: t.listener, cluster: t.cluster, protocol: t.protocol }, value: t.active })),
    );
    this.register('wisp_tcp_bytes_total', 'TCP (L4) bytes proxied; direction in = from the client, out = to the client', 'counter', () => {
      const out: MetricValue[] = [];
      for (const t of this.tcp.values()) {
        out.push({ labels: { listener: t.listener, cluster: t.cluster, protocol: t.protocol, direction: 'in' }, value: t.bytesIn });
        out.push({ labels: { listener: t.listener, cluster: t.cluster, protocol: t.protocol, direction: 'out' }, value: t.bytesOut });
      }
      return out;
    });
    this.register('wisp_config_reloads_total', 'Configuration reloads by result', 'counter', () => [
      { labels: { result: 'ok' }, value: this.reloads.ok },
      { labels: { result: 'failed' }, value: this.reloads.failed },
    ]);
    this.register('wisp_filter_file_reloads_total', 'Filter hot-loads triggered by a changed .wasm file, by result', 'counter', () => [
      { labels: { result: 'ok' }, value: this.filterReloads.ok },
      { labels: { result: 'failed' }, value: this.filterReloads.failed },
    ]);
  }

  register(name: string, help: string, type: 'counter' | 'gauge' | 'histogram', collect: () => MetricValue[]): void {
    this.registry.registerMetric(new CollectedMetric(name, help, type, collect) as unknown as client.Metric);
  }

  /** Stats objects are kept across reloads so counters never go backwards. */
  requestStats(listener: string, route: string, cluster: string): RequestStats {
    const key = `${listener}\u0000${route}\u0000${cluster}`;
    let s = this.stats.get(key);
    if (s === undefined) {
      s = new RequestStats(listener, route, cluster);
      this.stats.set(key, s);
    }
    return s;
  }

  /** Kept across reloads like requestStats. */
  tcpStats(listener: string, cluster: string, protocol: string): TcpStats {
    const key = `${listener}\u0000${cluster}\u0000${protocol}`;
    let t = this.tcp.get(key);
    if (t === undefined) {
      t = new TcpStats(listener, cluster, protocol === '' ? 'none' : protocol);
      this.tcp.set(key, t);
    }
    return t;
  }

  async render(): Promise<string> {
    return this.registry.metrics();
  }
}
