// The proxy-wasm network (L4) callbacks, for filters on tcp listeners. Re-export them next to
// the main callbacks:
//   export * from "@wisp/sdk-as/assembly/exports";
//   export * from "@wisp/sdk-as/assembly/exports-network";
// and override RootContext.createNetworkContext. A host creates a connection's context with
// proxy_on_context_create like any stream's (the SDK cannot tell them apart there); the
// NetworkContext is made on proxy_on_new_connection and takes the stream context's place, so
// on_done / on_log / on_delete reach it through exports.ts.

import { HttpContext, NetworkContext } from "./context";
import { httpContext, replaceHttpContext } from "./registry";
import { enter, leave } from "./runtime";
import { PeerType } from "./types";

/** Stands in a connection's NetworkContext where exports.ts looks stream contexts up. */
class NetworkContextHolder extends HttpContext {
  constructor(public readonly net: NetworkContext) { super(net.id, net.root); }
  onDone(): bool { return this.net.onDone(); }
  onLog(): void { this.net.onLog(); }
  onDelete(): void {
    this.net.onDelete();
    connections.delete(this.id);
  }
  onHttpCallResponse(token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
    this.net.onHttpCallResponse(token, numHeaders, bodySize, numTrailers);
  }
}

const connections = new Map<u32, NetworkContext>();

function networkContext(id: u32): NetworkContext | null {
  return connections.has(id) ? connections.get(id) : null;
}

export function proxy_on_new_connection(contextId: u32): u32 {
  enter();
  let status: u32 = 0;
  const stream = httpContext(contextId);
  if (stream !== null) {
    const net = stream.root.createNetworkContext(contextId);
    connections.set(contextId, net);
    replaceHttpContext(contextId, new NetworkContextHolder(net));
    status = net.onNewConnection();
  }
  leave();
  return status;
}

export function proxy_on_downstream_data(contextId: u32, dataSize: u32, endOfStream: u32): u32 {
  enter();
  const ctx = networkContext(contextId);
  const status: u32 = ctx !== null ? ctx.onDownstreamData(dataSize, endOfStream != 0) : 0;
  leave();
  return status;
}

export function proxy_on_upstream_data(contextId: u32, dataSize: u32, endOfStream: u32): u32 {
  enter();
  const ctx = networkContext(contextId);
  const status: u32 = ctx !== null ? ctx.onUpstreamData(dataSize, endOfStream != 0) : 0;
  leave();
  return status;
}

export function proxy_on_downstream_connection_close(contextId: u32, peerType: u32): void {
  enter();
  const ctx = networkContext(contextId);
  if (ctx !== null) ctx.onDownstreamClose(<PeerType>peerType);
  leave();
}

export function proxy_on_upstream_connection_close(contextId: u32, peerType: u32): void {
  enter();
  const ctx = networkContext(contextId);
  if (ctx !== null) ctx.onUpstreamClose(<PeerType>peerType);
  leave();
}
