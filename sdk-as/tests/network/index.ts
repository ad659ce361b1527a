// A network (L4) filter written with the SDK's NetworkContext, driven by
// test/wasm/network-sdk.test.ts: numbers each downstream chunk per connection ("[1]hello"),
// upper-cases upstream text, holds downstream bytes while they end in "\\" (StopIteration),
// closes the connection on "bye", and logs its connection callbacks.
export * from "../../assembly/exports";
export * from "../../assembly/exports-network";
import { FilterStatus, NetworkContext, PeerType, RootContext, logInfo, registerRootContext } from "../../assembly/index";

class Numbering extends NetworkContext {
  chunks: u32 = 0;

  onNewConnection(): FilterStatus {
    const from = this.getPropertyString(["source", "address"]);
    logInfo("sdk-net new " + (from !== null ? from : "?"));
    return FilterStatus.Continue;
  }

  onDownstreamData(size: u32, endOfStream: bool): FilterStatus {
    if (size == 0) return FilterStatus.Continue;
    const buf = this.getDownstreamData();
    if (buf === null) return FilterStatus.Continue;
    const text = String.UTF8.decode(buf);
    if (text.includes("bye")) {
      this.closeConnection();
      return FilterStatus.StopIteration;
    }
    if (text.endsWith("\\") && !endOfStream) return FilterStatus.StopIteration;
    this.chunks++;
    this.insertDownstreamData(0, String.UTF8.encode("[" + this.chunks.toString() + "]"));
    return FilterStatus.Continue;
  }

  onUpstreamData(size: u32, endOfStream: bool): FilterStatus {
    const buf = this.getUpstreamData(0, size);
    if (buf !== null) this.setUpstreamData(String.UTF8.encode(String.UTF8.decode(buf).toUpperCase()));
    return FilterStatus.Continue;
  }

  onDownstreamClose(peer: PeerType): void {
    logInfo("sdk-net downstream-close " + (<u32>peer).toString() + " after " + this.chunks.toString());
  }

  onUpstreamClose(peer: PeerType): void {
    logInfo("sdk-net upstream-close " + (<u32>peer).toString());
  }

  onDone(): bool {
    logInfo("sdk-net done");
    return true;
  }
}

class Root extends RootContext {
  createNetworkContext(id: u32): NetworkContext { return new Numbering(id, this); }
}

registerRootContext((id: u32): RootContext => new Root(id), "sdk-net");
