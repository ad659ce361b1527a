// The validated, normalised configuration every module consumes.
// YAML is parsed and checked against config/schema.json by config/load.ts, which fills
// defaults and turns durations ("15s", "250ms") into milliseconds and sizes ("64KB") into
// bytes, so nothing downstream ever re-parses user text.

export type LbPolicy = 'round_robin' | 'least_request' | 'random' | 'ring_hash';
export type FailurePolicy = 'open' | 'closed' | 'reload';
export type RetryOn = 'connect-failure' | 'reset' | 'timeout' | 'status';

export interface WispConfig {
  /** Absolute path of the file this came from (for error messages and relative paths). */
  source: string;
  admin: AdminConfig;
  /** Filter worker threads; default max(1, cores - 1). */
  workers: number;
  /** Graceful drain on SIGTERM/SIGINT, ms. */
  drain_timeout_ms: number;
  listeners: ListenerConfig[];
  clusters: ClusterConfig[];
  filters: FilterConfig[];
}

export interface AdminConfig {
  host: string;      // default 127.0.0.1
  port: number;      // default 9901; 0 = any free port
  /** When set, mutating endpoints need `Authorization: Bearer <token>`. Never logged or shown. */
  token?: string;
}

export interface TlsConfig {
  cert: string;      // absolute path
  key: string;       // absolute path
  passphrase?: string;
  sni: { hostname: string; cert: string; key: string; passphrase?: string }[];
}

export interface ListenerLimits {
  max_request_line_bytes: number;   // default 8192 → 414
  max_header_bytes: number;         // default 65536 total → 431
  max_headers: number;              // default 100 → 431
  header_timeout_ms: number;        // default 10000 → 408
  body_timeout_ms: number;          // default 30000, idle time between body chunks → 408
  idle_timeout_ms: number;          // keep-alive idle, default 60000
  max_body_bytes: number;           // 0 = unlimited → 413
}

export interface ListenerConfig {
  name: string;
  host: string;
  port: number;       // 0 = any free port
  tls?: TlsConfig;
  /** Trust PROXY protocol v2 from the peer for the client address. Off by default. */
  proxy_protocol: boolean;
  access_log: boolean;
  /** Value of the `via` header Wisp adds. */
  via: string;
  limits: ListenerLimits;
  /** HTTP routes; empty on a tcp listener. */
  routes: RouteConfig[];
  /** Absent = 'http'. A 'tcp' listener proxies bytes (L4) as described by `tcp`. */
  protocol?: ListenerProtocol;
  /** Set exactly when protocol is 'tcp'. */
  tcp?: TcpListenerConfig;
}

export type ListenerProtocol = 'http' | 'tcp';

/** Protocols the sniff filter reports (the `protocol` property); 'unknown' when none fits. */
export const SNIFFED_PROTOCOLS = ['tls', 'http1', 'http2', 'redis', 'dubbo', 'bolt', 'proxy', 'unknown'] as const;

export interface TcpRouteMatch {
  /** Any of these sniffed protocols; absent = any. */
  protocol?: string[];
  /** TLS SNI: exact host or "*.suffix" (lower-cased); absent = any. */
  sni?: string[];
  /** TLS ALPN: matches when the client offers any of these (the `tls.alpn` property);
   * absent = any. A connection that offers no ALPN never matches a route that has this. */
  alpn?: string[];
}

/** Exactly one of `cluster` and `http_listener` is set. */
export interface TcpRouteConfig {
  match: TcpRouteMatch;
  /** Pipe the connection's bytes to this cluster. */
  cluster?: string;
  /** Hand the connection to this HTTP listener (of the same config), whose routes and HTTP
   * filters then serve it: only for `protocol: http1` matches. Wisp connects over loopback
   * to a private port of that listener and sends a PROXY v2 header with the client's
   * address first (see listener/handoff.ts). */
  http_listener?: string;
}

export interface TcpListenerConfig {
  /** Where connections no route matches go; absent = such connections are closed. */
  cluster?: string;
  /** Name of the filter (from WispConfig.filters) that sniffs the first bytes. */
  sniff?: string;
  /** Network filters (names from WispConfig.filters) every byte of a connection to a cluster
   * passes through, in order (proxy_on_downstream_data / proxy_on_upstream_data); empty =
   * absent = bytes are piped untouched. Connections handed to an HTTP listener are not
   * filtered here. */
  filters?: string[];
  /** Run `sniff` on the main thread (µs) instead of in a filter worker (a round trip), with
   * no deadline: a looping filter hangs the proxy. Default false. */
  sniff_inline: boolean;
  /** First match wins. Routes need `sniff`. */
  routes: TcpRouteConfig[];
  first_bytes: number;             // most bytes held for sniffing, default 1024
  first_bytes_timeout_ms: number;  // default 1000; then sniff what arrived
  idle_timeout_ms: number;         // no bytes either way for this long closes both sides; default 3600000; 0 = none
  connect_timeout_ms: number;      // default 2000
}

export interface HeaderMatch {
  name: string;            // lower-cased by the loader
  present?: boolean;       // true: must exist; false: must be absent
  exact?: string;
  regex?: string;
}

export interface QueryMatch {
  name: string;
  present?: boolean;
  exact?: string;
  regex?: string;
}

export interface RouteMatch {
  /** exact host ("api.example.com") or suffix wildcard ("*.example.com"); port ignored. */
  host?: string[];
  path?: string;          // exact
  prefix?: string;
  regex?: string;         // full match against the path (without query)
  methods?: string[];     // upper-case
  headers: HeaderMatch[];
  query: QueryMatch[];
}

export interface RetryPolicy {
  attempts: number;            // retries after the first try; default 0 (1 for idempotent on connect-failure)
  on: RetryOn[];
  statuses: number[];          // used when `on` has 'status'
  /** Retry non-idempotent methods too (POST/PATCH). Default false. */
  non_idempotent: boolean;
  /** Retries in flight may never exceed this fraction of requests in flight; default 1.0 (= never more than double load). */
  budget_ratio: number;
}

export interface RouteConfig {
  name: string;
  match: RouteMatch;
  /** Exactly one of cluster / direct_response / redirect is set. */
  cluster?: string;
  direct_response?: { status: number; body: string; content_type: string };
  redirect?: { status: number; scheme?: string; host?: string; path?: string; prefix?: string };
  rewrite?: { prefix?: string; host?: string };
  timeout_ms: number;          // whole request, default 15000; 0 = none
  per_try_timeout_ms: number;  // default 0 = same as timeout
  retry: RetryPolicy;
  filters: string[];           // names from WispConfig.filters, in chain order
}

export interface EndpointConfig {
  host: string;        // IP or DNS name
  port: number;
  weight: number;      // default 1
}

export interface HealthCheckConfig {
  path: string;
  host?: string;
  interval_ms: number;         // default 5000
  timeout_ms: number;          // default 1000
  healthy_threshold: number;   // default 2
  unhealthy_threshold: number; // default 3
  expected_statuses: number[]; // default 200-399 expanded lazily: empty = any 2xx/3xx
}

export interface OutlierConfig {
  consecutive_5xx: number;             // default 5; 0 disables
  consecutive_connect_failure: number; // default 3; 0 disables
  base_ejection_ms: number;            // default 30000, multiplied by times ejected
  max_ejection_ms: number;             // default 300000
  max_ejection_percent: number;        // default 50
}

export interface ClusterLimits {
  max_connections: number;     // per cluster, default 1024
  max_pending: number;         // requests waiting for a connection, default 1024
  max_requests: number;        // in flight, default 4096
}

export interface ClusterConfig {
  name: string;
  endpoints: EndpointConfig[];
  /** Re-resolve DNS names this often (TTL respected when shorter). Default 30000. */
  dns_refresh_ms: number;
  lb: LbPolicy;
  /** ring_hash key: a request header name, or client IP when absent. */
  hash_header?: string;
  health_check?: HealthCheckConfig;
  outlier: OutlierConfig;
  limits: ClusterLimits;
  connect_timeout_ms: number;  // default 2000
  idle_timeout_ms: number;     // keep-alive idle before closing, default 60000
  max_idle_per_endpoint: number; // default 1024
}

export interface FilterConfig {
  name: string;
  /** Absolute path of the .wasm file. */
  wasm: string;
  /** The filter's `config`, handed to proxy_on_configure as bytes (JSON if an object, the string itself if a string). */
  config: string;
  root_id: string;
  vm_config: string;
  failure: FailurePolicy;
  deadline_ms: number;         // CPU time per batch call, default 50
  max_memory_bytes: number;    // default 64 MiB
  /** Request body bytes buffered for the filter when it pauses on body; default 1 MiB. */
  max_body_bytes: number;
}
