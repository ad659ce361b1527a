// DNS for endpoints configured by name. Each such endpoint is resolved on its own timer:
// resolve4 and resolve6 (with TTLs, through a resolver with a bounded timeout), falling back
// to the system's getaddrinfo (dns.lookup) for names only /etc/hosts or nsswitch know;
// `localhost` goes straight to getaddrinfo. The next resolution is due after
// min(dns_refresh_ms, TTL), at least 1 s.
//
// Address choice: the endpoint keeps its current address while the answer still contains
// it (a round-robin DNS answer in a new order must not churn pools); otherwise it takes the
// first IPv4 address, or the first address when there is none (Envoy's V4_PREFERRED: a
// `localhost` that lists ::1 first must still reach a server bound to 127.0.0.1). A change makes a new pool and closes the old one gracefully (Endpoint
// .setAddress). A failed resolution keeps the old address and retries sooner. Until the
// first answer the endpoint is unavailable to the load balancers.
//
// One address per endpoint (Envoy's STRICT_DNS makes every address of the answer a host;
// here a name is one endpoint with one pool, and the weight stays the configured one).
import dns from 'node:dns';
import net from 'node:net';
import type { Endpoint } from './endpoint.js';
import type { ClusterCounters } from './cluster.js';

export const MIN_REFRESH_MS = 1000;
/** Retry delay after a failed resolution (capped by dns_refresh_ms, floored at 1 s). */
export const RETRY_MS = 5000;

export interface Resolution {
  addresses: string[];
  /** TTL in ms of the shortest record, or null when the answer came from getaddrinfo. */
  ttlMs: number | null;
}

const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 2 });

/** RFC 6761: `localhost` and `*.localhost` are loopback and never go to a DNS server; the
 * system's getaddrinfo answers them at once (asking DNS first could wait for its timeout). */
function isLocalhostName(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost');
}

/** Resolve `host`: A and AAAA in parallel (A preferred, TTLs kept), then getaddrinfo
 * (dns.lookup) when DNS has no answer. Rejects when all fail. */
export async function resolveHost(host: string): Promise<Resolution> {
  if (!isLocalhostName(host)) {
    const [a, aaaa] = await Promise.allSettled([resolver.resolve4(host, { ttl: true }), resolver.resolve6(host, { ttl: true })]);
    if (a.status === 'fulfilled' && a.value.length > 0) return fromRecords(a.value);
    if (aaaa.status === 'fulfilled' && aaaa.value.length > 0) return fromRecords(aaaa.value);
  }
  const all = await dns.promises.lookup(host, { all: true });
  if (all.length === 0) throw new Error(`no address for ${host}`);
  return { addresses: all.map((r) => r.address), ttlMs: null };
}

/** The current address while still listed, else the first IPv4, else the first. */
export function chooseAddress(addresses: readonly string[], current: string): string {
  if (current !== '' && addresses.includes(current)) return current;
  for (const a of addresses) if (net.isIPv4(a)) return a;
  return addresses[0];
}

function fromRecords(records: { address: string; ttl: number }[]): Resolution {
  let ttl = Infinity;
  for (const r of records) if (r.ttl < ttl) ttl = r.ttl;
  return { addresses: records.map((r) => r.address), ttlMs: ttl * 1000 };
}

/** Keeps the DNS-named endpoints of one cluster resolved. */
export class DnsRefresher {
  private readonly endpoints: Endpoint[];
  private readonly refreshMs: number;
  private readonly counters: ClusterCounters;
  private readonly timers = new Map<Endpoint, NodeJS.Timeout>();
  private closed = false;

  constructor(endpoints: readonly Endpoint[], refreshMs: number, counters: ClusterCounters) {
    this.endpoints = endpoints.filter((ep) => ep.needsDns);
    this.refreshMs = refreshMs;
    this.counters = counters;
  }

  /** Endpoints this refresher looks after. */
  get size(): number {
    return this.endpoints.length;
  }

  /** Resolve every named endpoint now (endpoints adopted from a previous cluster keep
   * serving on their address meanwhile). */
  start(): void {
    for (const ep of this.endpoints) void this.refresh(ep);
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Resolve one endpoint now and schedule the next resolution. Resolves when done. */
  async refresh(ep: Endpoint): Promise<void> {
    let delay: number;
    try {
      const res = await resolveHost(ep.host);
      if (this.closed) return;
      this.counters.dnsResolutions++;
      const next = chooseAddress(res.addresses, ep.address);
      if (ep.setAddress(next)) this.counters.dnsChanges++;
      delay = res.ttlMs === null ? this.refreshMs : Math.min(this.refreshMs, res.ttlMs);
    } catch {
      if (this.closed) return;
      this.counters.dnsFailures++;
      delay = Math.min(this.refreshMs, RETRY_MS);
    }
    this.schedule(ep, Math.max(MIN_REFRESH_MS, delay));
  }

  private schedule(ep: Endpoint, delay: number): void {
    const old = this.timers.get(ep);
    if (old !== undefined) clearTimeout(old);
    const t = setTimeout(() => void this.refresh(ep), delay);
    t.unref();
    this.timers.set(ep, t);
  }
}
