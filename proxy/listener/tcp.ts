// L4 (TCP) listener: accepts connections, optionally holds the first bytes for a sniff filter
// to name the protocol (and TLS SNI), picks a cluster by the tcp routes, connects to one of
// its endpoints (same load balancer, health and outlier state as HTTP) and pipes bytes both
// ways. Wisp never terminates TLS here: a ClientHello is only read, then passed through.
// HTTP/1 a route gives to an HTTP listener goes to that listener's private loopback port
// with a PROXY v2 header in front (handoff.ts), and is piped the same way from then on.
// With tcp.filters, bytes to and from a cluster go through the network filter chain instead
// of pipe() (filters/network.ts), one chunk per direction at a time.
import net from 'node:net';
import type { ListenerConfig, TcpListenerConfig, TcpRouteConfig } from '../config/types.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import type { Cluster } from '../upstream/cluster.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { Metrics, TcpStats } from '../admin/metrics.js';
import type { NetworkConnection, NetworkFilterChain } from '../filters/types.js';
import { PeerType } from '../wasm/wire.js';
import { envoyAddress } from '../wasm/abi.js';
import { log } from '../log.js';
import { HANDOFF_HOST, proxyV2Header, type HandoffPorts } from './handoff.js';

/** Runs the sniff filter over the bytes held so far: the properties it set (none = it wants
 * more bytes), or null when it failed (trap, deadline) — treated as `unknown`. */
export interface Sniffer {
  sniff(bytes: Uint8Array, endOfStream: boolean): Promise<Map<string, string> | null> | Map<string, string> | null;
}

/** What a listener serves with; swapped whole on reload (connections keep the one they started with). */
export class TcpListenerState {
  readonly tcp: TcpListenerConfig;
  /** The HTTP listener a connection is dialled to at accept, while its sniff runs ('' = none):
   * the loopback connect then overlaps the sniff instead of following it. A connection that
   * turns out to be something else closes its unused loopback connection (uWS sees a client
   * that connected and left): a little CPU, against a connect serialised after the verdict. */
  readonly speculativeHandoff: string;
  constructor(
    readonly config: ListenerConfig,
    readonly clusters: ClusterManager,
    /** null: the listener does not sniff (every connection goes to tcp.cluster). */
    readonly sniffer: Sniffer | null,
    readonly metrics: Metrics,
    /** Private ports of the HTTP listeners routes hand HTTP/1 to; null = none configured. */
    readonly handoffs: HandoffPorts | null = null,
    /** tcp.filters as a chain (WasmFilterRuntime.networkChain); null = bytes are piped. */
    readonly network: NetworkFilterChain | null = null,
  ) {
    this.tcp = config.tcp!;
    // Piping bytes a config says must be filtered would be worse than refusing the config.
    if (network === null && this.tcp.filters !== undefined && this.tcp.filters.length > 0) {
      throw new Error(`listener "${config.name}": tcp.filters needs the network filter chain (WasmFilterRuntime.networkChain)`);
    }
    const handoff = sniffer === null ? undefined : this.tcp.routes.find((r) => r.http_listener !== undefined);
    this.speculativeHandoff = handoff?.http_listener ?? '';
  }

  /** The first route matching a sniffed connection; null = none (→ tcp.cluster). `alpn` is
   * the comma-separated list the client offered ('' = none or not TLS). */
  route(protocol: string, sni: string, alpn: string): TcpRouteConfig | null {
    const routes = this.tcp.routes;
    for (let i = 0; i < routes.length; i++) if (routeMatches(routes[i]!, protocol, sni, alpn)) return routes[i]!;
    return null;
  }
}

function routeMatches(route: TcpRouteConfig, protocol: string, sni: string, alpn: string): boolean {
  const m = route.match;
  if (m.protocol !== undefined && !m.protocol.includes(protocol)) return false;
  if (m.alpn !== undefined && !offersAny(alpn, m.alpn)) return false;
  if (m.sni !== undefined) {
    if (sni === '') return false;
    let hit = false;
    for (const pattern of m.sni) {
      if (pattern.startsWith('*.') ? sni.endsWith(pattern.slice(1)) && sni.length > pattern.length - 1 : sni === pattern) {
        hit = true;
        break;
      }
    }
    if (!hit) return false;
  }
  return true;
}

function ignore(): void {}

const NO_BYTES = new Uint8Array(0);

function destroySelf(this: net.Socket): void {
  this.destroy();
}

/** Whether the comma-separated ALPN list a client offered holds any of `wanted`. */
function offersAny(offered: string, wanted: readonly string[]): boolean {
  let start = 0;
  while (start < offered.length) {
    let end = offered.indexOf(',', start);
    if (end < 0) end = offered.length;
    const id = offered.slice(start, end);
    if (wanted.includes(id)) return true;
    start = end + 1;
  }
  return false;
}

export class TcpListener {
  state: TcpListenerState;
  readonly config: ListenerConfig;
  private readonly server: net.Server;
  private readonly open = new Set<TcpConnection>();
  private boundPort = 0;

  constructor(state: TcpListenerState) {
    this.state = state;
    this.config = state.config;
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      const conn = new TcpConnection(this, socket);
      this.open.add(conn);
      conn.start();
    });
    // A failed accept must not take the process down; the listener keeps serving.
    this.server.on('error', (err) => log.error('tcp listener error', { listener: this.config.name, error: String(err) }));
  }

  get port(): number {
    return this.boundPort;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`listener "${this.config.name}" cannot listen on ${this.config.host}:${this.config.port}: ${err.message}`));
      this.server.once('error', onError);
      this.server.listen({ host: this.config.host, port: this.config.port }, () => {
        this.server.off('error', onError);
        this.boundPort = (this.server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  /** Stop accepting; connections in flight carry on (see closeConnections). */
  close(): void {
    this.server.close();
  }

  /** Destroy every connection still open (shutdown after the drain). */
  closeConnections(): void {
    for (const c of this.open) c.destroy();
  }

  get connectionCount(): number {
    return this.open.size;
  }

  forget(conn: TcpConnection): void {
    this.open.delete(conn);
  }
}

/** One proxied connection: sniff (optional) → connect → pipe (or filter) → close. */
class TcpConnection implements NetworkConnection {
  private readonly state: TcpListenerState;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private clientEnded = false;
  private sniffTimer: NodeJS.Timeout | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private upstream: net.Socket | null = null;
  /** Loopback connection to speculativeHandoff's private port, opened at accept. */
  private spare: net.Socket | null = null;
  private sparePort = 0;
  private endpoint: Endpoint | null = null;
  private cluster: Cluster | null = null;
  private stats: TcpStats | null = null;
  private done = false;
  private decided = false;
  private sniffing = false;
  private finalWanted = false;
  /** The network filters this connection's bytes pass through (set when it dials a cluster). */
  private filters: NetworkFilterChain | null = null;
  networkFilterState: object | null = null;
  clusterName = '';
  /** Chunks with the filters, per direction: the source socket stays paused until they are
   * answered and written (and the other side drained). */
  private downPending = 0;
  private upPending = 0;
  private upstreamEnded = false;
  private clientClosedFirst = false;

  constructor(private readonly listener: TcpListener, private readonly client: net.Socket) {
    this.state = listener.state;
  }

  start(): void {
    const client = this.client;
    client.on('error', () => this.destroy());
    client.on('close', () => {
      if (!this.done) this.clientClosedFirst = true;
      this.destroy();
    });
    const idle = this.state.tcp.idle_timeout_ms;
    // Bytes either way are a read on one socket and a write on the other, so the client
    // socket's own inactivity timer sees traffic in both directions.
    if (idle > 0) client.setTimeout(idle, () => this.destroy());
    if (this.state.sniffer === null) {
      client.pause();
      this.connect(this.state.tcp.cluster ?? '', '');
      return;
    }
    client.on('data', this.onFirstBytes);
    client.on('end', this.onFirstEnd);
    this.sniffTimer = setTimeout(() => this.decide(true), this.state.tcp.first_bytes_timeout_ms);
    const spareTo = this.state.speculativeHandoff;
    const port = spareTo === '' || this.state.handoffs === null ? 0 : this.state.handoffs.port(spareTo);
    if (port !== 0) {
      const spare = net.connect({ host: HANDOFF_HOST, port, allowHalfOpen: true, noDelay: true });
      spare.on('error', ignore);
      // Reading lets a close by the listener (its idle timeout, during a long sniff) be seen
      // as 'end'; uWS sends nothing before a request, so no byte is lost.
      spare.on('end', destroySelf);
      spare.resume();
      this.spare = spare;
      this.sparePort = port;
    }
  }

  private readonly onFirstBytes = (chunk: Buffer): void => {
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    const full = this.heldBytes >= this.state.tcp.first_bytes;
    // Hold no more than first_bytes (plus one chunk) while the verdict is pending.
    if (full) this.client.pause();
    this.decide(full);
  };

  private readonly onFirstEnd = (): void => {
    this.clientEnded = true;
    this.decide(true);
  };

  /** Sniff what is held; `final` forces an answer (size, time or end reached). One sniff is
   * in flight at a time: bytes or a deadline arriving meanwhile trigger the next one. */
  private decide(final: boolean): void {
    if (this.done || this.decided) return;
    if (final) this.finalWanted = true;
    if (this.sniffing) return;
    this.sniffing = true;
    const bytes = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held);
    this.held = bytes.length > 0 ? [bytes] : [];
    const limit = this.state.tcp.first_bytes;
    const window = bytes.length > limit ? bytes.subarray(0, limit) : bytes;
    const isFinal = this.finalWanted;
    let answer: Promise<Map<string, string> | null> | Map<string, string> | null;
    try {
      answer = this.state.sniffer!.sniff(window, isFinal);
    } catch {
      answer = null;
    }
    if (answer instanceof Promise) {
      answer.then(
        (props) => this.onSniffed(props, isFinal, bytes.length),
        () => this.onSniffed(null, isFinal, bytes.length),
      );
    } else {
      this.onSniffed(answer, isFinal, bytes.length);
    }
  }

  private onSniffed(props: Map<string, string> | null, wasFinal: boolean, sniffedBytes: number): void {
    this.sniffing = false;
    if (this.done || this.decided) return;
    let protocol = props === null ? 'unknown' : props.get('protocol') ?? '';
    if (protocol === '') {
      if (!wasFinal) {
        if (this.finalWanted || this.heldBytes > sniffedBytes) this.decide(this.finalWanted);
        return;
      }
      protocol = 'unknown';
    }
    this.decided = true;
    if (this.sniffTimer !== null) clearTimeout(this.sniffTimer);
    this.sniffTimer = null;
    this.client.off('data', this.onFirstBytes);
    this.client.off('end', this.onFirstEnd);
    this.client.pause();
    const route = this.state.route(protocol, props?.get('tls.sni') ?? '', props?.get('tls.alpn') ?? '');
    if (route === null) this.connect(this.state.tcp.cluster ?? '', protocol);
    else if (route.http_listener !== undefined) this.handOff(route.http_listener, protocol);
    else this.connect(route.cluster!, protocol);
    this.dropSpare();
  }

  private dropSpare(): void {
    if (this.spare === null) return;
    this.spare.destroy();
    this.spare = null;
  }

  private connect(clusterName: string, protocol: string): void {
    const state = this.state;
    const stats = (this.stats = state.metrics.tcpStats(state.config.name, clusterName === '' ? 'none' : clusterName, protocol));
    stats.connections++;
    stats.active++;
    const cluster = clusterName === '' ? undefined : state.clusters.get(clusterName);
    if (cluster === undefined || !cluster.acquire()) return this.destroy();
    this.cluster = cluster;
    // ring_hash keys TCP connections by client IP (there are no headers to hash).
    const ep = cluster.pick(cluster.config.lb === 'ring_hash' ? this.client.remoteAddress ?? '' : '', null);
    if (ep === null || ep.address === '') return this.destroy();
    this.endpoint = ep;
    ep.active++;
    this.clusterName = clusterName;
    this.filters = state.network;
    this.dial(ep.address, ep.port);
  }

  /** HTTP/1 for an HTTP listener: to its private loopback port, the client's address first. */
  private handOff(listenerName: string, protocol: string): void {
    const state = this.state;
    const stats = (this.stats = state.metrics.tcpStats(state.config.name, `http_listener:${listenerName}`, protocol));
    stats.connections++;
    stats.active++;
    const port = state.handoffs === null ? 0 : state.handoffs.port(listenerName);
    const header = proxyV2Header(this.client);
    if (port === 0 || header === null) return this.destroy();
    // uWS reads the PROXY header only from the start of the first packet it receives, so it
    // goes out in one write with the held bytes.
    this.held.unshift(header);
    this.held = [Buffer.concat(this.held)];
    const spare = this.spare;
    this.spare = null;
    // A spare for another port (a reload moved the target) or one the listener already
    // closed is dropped for a fresh connection.
    if (spare !== null && !spare.destroyed && this.sparePort === port) {
      spare.off('end', destroySelf);
      this.attach(spare);
    } else {
      if (spare !== null) spare.destroy();
      this.dial(HANDOFF_HOST, port);
    }
  }

  /** Connect (under connect_timeout), write the held bytes, then pipe both ways. */
  private dial(host: string, port: number): void {
    this.attach(net.connect({ host, port, allowHalfOpen: true, noDelay: true }));
  }

  /** Take over an upstream socket, connecting or (a spare) already connected. */
  private attach(upstream: net.Socket): void {
    const state = this.state;
    this.upstream = upstream;
    upstream.on('error', () => {
      if (this.connectTimer !== null) this.connectFailed();
      this.destroy();
    });
    // A clean upstream close already ended the client through pipe(); destroying it here
    // would drop response bytes still queued for the client. A reset tears both down.
    upstream.on('close', (hadError) => {
      if (hadError || this.connectTimer !== null) this.destroy();
    });
    if (!upstream.connecting) return this.onUpstreamConnected();
    this.connectTimer = setTimeout(() => {
      this.connectFailed('connect-timeout');
      this.destroy();
    }, state.tcp.connect_timeout_ms);
    upstream.once('connect', this.onUpstreamConnected);
  }

  private readonly onUpstreamConnected = (): void => {
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    const upstream = this.upstream!;
    if (this.filters !== null) return this.startFiltering(upstream);
    for (const chunk of this.held) upstream.write(chunk);
    this.held = [];
    // pipe() handles backpressure both ways and, with allowHalfOpen, forwards each side's
    // FIN as end() on the other while the reverse direction keeps flowing.
    if (this.clientEnded) upstream.end();
    else this.client.pipe(upstream);
    upstream.pipe(this.client);
    this.client.resume();
  };

  // --- network filters (instead of pipe) -------------------------------------------------

  get listenerName(): string {
    return this.state.config.name;
  }

  get clientAddress(): string {
    return this.client.remoteAddress ?? '';
  }

  get clientPort(): number {
    return this.client.remotePort ?? 0;
  }

  get localAddress(): string {
    const ip = this.client.localAddress;
    return ip === undefined ? '' : envoyAddress(ip, this.client.localPort ?? 0);
  }

  private startFiltering(upstream: net.Socket): void {
    const client = this.client;
    const filters = this.filters!;
    for (const chunk of this.held) {
      this.downPending++;
      filters.data(this, true, chunk, false);
    }
    this.held = [];
    // The client's FIN may have come while the upstream connected, with no listener then.
    if (this.clientEnded || client.readableEnded) {
      this.clientEnded = true;
      this.downPending++;
      filters.data(this, true, NO_BYTES, true);
    } else {
      client.on('data', this.onClientData);
      client.on('end', this.onClientEnd);
    }
    upstream.on('data', this.onUpstreamData);
    upstream.on('end', this.onUpstreamEnd);
    upstream.resume();
    if (this.downPending === 0) client.resume();
  }

  private readonly onClientData = (chunk: Buffer): void => {
    this.downPending++;
    this.client.pause();
    this.filters!.data(this, true, chunk, false);
  };

  private readonly onClientEnd = (): void => {
    this.clientEnded = true;
    this.downPending++;
    this.filters!.data(this, true, NO_BYTES, true);
  };

  private readonly onUpstreamData = (chunk: Buffer): void => {
    this.upPending++;
    this.upstream!.pause();
    this.filters!.data(this, false, chunk, false);
  };

  private readonly onUpstreamEnd = (): void => {
    this.upstreamEnded = true;
    this.upPending++;
    this.filters!.data(this, false, NO_BYTES, true);
  };

  /** The filters' answer for one chunk: write it on, then let the source flow again once
   * nothing is with the filters and the destination is not backed up. */
  onNetworkData(downstream: boolean, data: Uint8Array, endOfStream: boolean): void {
    if (this.done) return;
    const to = downstream ? this.upstream! : this.client;
    if (data.length > 0) to.write(data);
    if (endOfStream) to.end();
    if (downstream) {
      if (--this.downPending > 0 || this.clientEnded) return;
    } else if (--this.upPending > 0 || this.upstreamEnded) {
      return;
    }
    if (to.writableNeedDrain) to.once('drain', downstream ? this.resumeClient : this.resumeUpstream);
    else if (downstream) this.client.resume();
    else this.upstream!.resume();
  }

  onNetworkClose(reason: string): void {
    if (this.done) return;
    log.debug('tcp connection closed by its network filters', { listener: this.state.config.name, reason });
    this.destroy();
  }

  private readonly resumeClient = (): void => {
    if (!this.done && this.downPending === 0) this.client.resume();
  };

  private readonly resumeUpstream = (): void => {
    if (!this.done && this.upPending === 0) this.upstream!.resume();
  };

  private connectFailed(kind: 'connect' | 'connect-timeout' = 'connect'): void {
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    if (this.endpoint !== null) this.endpoint.reportFailure(kind);
  }

  destroy(): void {
    if (this.done) return;
    this.done = true;
    if (this.sniffTimer !== null) clearTimeout(this.sniffTimer);
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.sniffTimer = null;
    this.connectTimer = null;
    const client = this.client;
    const upstream = this.upstream;
    if (this.stats !== null) {
      this.stats.active--;
      this.stats.bytesIn += client.bytesRead;
      this.stats.bytesOut += client.bytesWritten;
    }
    if (this.endpoint !== null) this.endpoint.active--;
    if (this.cluster !== null) this.cluster.release();
    if (this.filters !== null) {
      // Who ended each side: the peer (its FIN or close came first) or Wisp.
      const down = this.clientEnded || this.clientClosedFirst ? PeerType.Remote : PeerType.Local;
      this.filters.close(this, down, this.upstreamEnded ? PeerType.Remote : PeerType.Local);
    }
    client.destroy();
    if (upstream !== null) upstream.destroy();
    this.dropSpare();
    this.listener.forget(this);
  }
}
