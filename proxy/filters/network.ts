// Network (L4) filter chains: a TCP connection's bytes through proxy-wasm network filters in
// the same workers, batches, generations and failure policies as HTTP streams. The runtime
// sees each connection as one more stream (NetworkStream), whose body answers are the
// connection's data answers.

import { closePeers, NetOp } from '../wasm/wire.js';
import { type ChainHost, WasmFilterChain } from './chain.js';
import type { BodyFilterPhase, FilterStream, NetworkConnection, NetworkFilterChain } from './types.js';

/** What the runtime offers network chains (WasmFilterRuntime implements it). */
export interface NetworkChainHost extends ChainHost {
  /** One chunk of a connection (op: NetOp.*) to its worker, pinning it on the first call. */
  submitNetwork(chain: WasmFilterChain, stream: FilterStream, op: number, data: Uint8Array, endOfStream: boolean): void;
}

/** Ids apart from the request path's (from 1) and WebSocket streams' (from 1e9): all of them
 * share the runtime's stream map and the workers' stream state. */
let nextConnectionStreamId = 4_000_000_000;

/** One connection as the runtime's stream: created on its first data() call, kept in the
 * connection's networkFilterState slot. Body answers map to the connection's callbacks
 * (request_body = downstream), a local response (fail-closed, proxy_close_stream) to a close. */
export class NetworkStream implements FilterStream {
  readonly streamId = nextConnectionStreamId++;
  readonly method = '';
  readonly scheme = '';
  readonly authority = '';
  path = '';
  readonly clientAddress: string;
  readonly clientPort: number;
  readonly listenerName: string;
  readonly routeName = '';
  readonly clusterName: string;
  readonly requestId = '';
  readonly destinationAddress: string;
  /** A connection's own id is its stream id (unique in the process, never 0). */
  get connectionId(): number {
    return this.streamId;
  }
  requestHeaders: string[] = [];
  /** Op.Done's u32: for a connection, the close peers (wire.ts closePeers). */
  responseStatus = 0;
  responseHeaders: string[] = [];
  closed = false;

  constructor(readonly conn: NetworkConnection) {
    this.clientAddress = conn.clientAddress;
    this.clientPort = conn.clientPort;
    this.listenerName = conn.listenerName;
    this.clusterName = conn.clusterName;
    this.destinationAddress = conn.localAddress;
  }

  onFilterContinue(): void {}

  onFilterLocalResponse(_status: number, _headers: string[], body: Uint8Array): void {
    if (this.closed) return;
    this.closed = true;
    this.conn.onNetworkClose(body.length > 0 ? Buffer.from(body).toString('utf8').trim() : 'closed by a network filter');
  }

  onFilterBody(phase: BodyFilterPhase, data: Uint8Array, endOfStream: boolean): void {
    if (!this.closed) this.conn.onNetworkData(phase === 'request_body', data, endOfStream);
  }
}

export class WasmNetworkFilterChain implements NetworkFilterChain {
  readonly names: readonly string[];
  /** Resolves (and caches per registry version) the current generations. */
  private readonly gens: WasmFilterChain;

  constructor(private readonly host: NetworkChainHost, names: readonly string[]) {
    this.gens = new WasmFilterChain(host, names);
    this.names = this.gens.names;
  }

  data(conn: NetworkConnection, downstream: boolean, bytes: Uint8Array, endOfStream: boolean): void {
    let stream = conn.networkFilterState as NetworkStream | null;
    if (stream === null) conn.networkFilterState = stream = new NetworkStream(conn);
    if (stream.closed) return;
    this.host.submitNetwork(this.gens, stream, downstream ? NetOp.DownstreamData : NetOp.UpstreamData, bytes, endOfStream);
  }

  close(conn: NetworkConnection, downstreamPeer: number, upstreamPeer: number): void {
    const stream = conn.networkFilterState as NetworkStream | null;
    if (stream === null) return; // no byte ever reached the filters: no contexts to close
    stream.closed = true;
    stream.responseStatus = closePeers(downstreamPeer, upstreamPeer);
    this.host.finish(stream);
  }
}
