// A filter that exercises the SDK surface none of the built-in filters use (tick, http
// calls, queues, gauges/histograms, header-map pairs, bodies, trailers, onDone/done), driven
// by test/filters/sdk.test.ts. Not a product filter: it lives outside filters/.
export * from "../../assembly/exports";
export * from "../../assembly/exports-body";
import {
  BufferType, Counter, HashAlg, HmacKey, LogLevel as Level, StreamType, WasmResult, closeStream, continueStream,
  getLogLevel, getPropertyInt64, getSharedData, resolveSharedQueue, sendLocalResponseBytes, setEffectiveContext,
  setProperty, setSharedData, sha256, sha384, sha512, toHex, utf8Array, parseDurationString, stripPort, FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus, Gauge, HeaderPair,
  Histogram, HttpContext, LogLevel, MapType, RootContext, dequeueSharedQueue, enqueueSharedQueue,
  getBufferBytes, getHeaderMapSize, log, logInfo, nowMs, registerRootContext, registerSharedQueue,
  setBufferBytes, utf8Bytes, Bytes, SharedSlot, Sha256, getHeaderMapValueInto, getPropertyInto, readSharedData,
  serializePropertyPath, writeSharedData,
} from "../../assembly/index";

class ProbeRoot extends RootContext {
  ticks: Counter | null = null;
  inflight: Gauge | null = null;
  sizes: Histogram | null = null;
  queue: u32 = 0;
  lastCallToken: u32 = 0;

  onVmStart(vmConfigSize: u32): bool {
    logInfo("vm config: " + this.getVmConfig());
    return true;
  }

  onConfigure(configSize: u32): bool {
    this.ticks = new Counter("probe_ticks");
    this.inflight = new Gauge("probe_inflight");
    this.sizes = new Histogram("probe_header_bytes");
    this.queue = registerSharedQueue("probe");
    this.setTickPeriod(250);
    const config = this.getPluginConfig();
    if (config == "all") return exerciseEverything();
    return config != "refuse";
  }

  onTick(): void {
    this.ticks!.increment();
    const headers = new Array<HeaderPair>();
    headers.push(new HeaderPair(":method", "GET"));
    headers.push(new HeaderPair(":path", "/tick?n=" + this.ticks!.get().toString()));
    headers.push(new HeaderPair(":authority", "auth.internal"));
    this.lastCallToken = this.httpCall("auth-cluster", headers, utf8Bytes("ping"), [], 1500);
  }

  onHttpCallResponse(token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
    const status = this.getHttpCallResponseHeader(":status");
    const body = this.getHttpCallResponseBody(0, bodySize);
    log(LogLevel.Info, "call " + token.toString() + " status " + (status !== null ? status : "none") +
      " body " + (body !== null ? String.UTF8.decode(body) : "none") + " at " + nowMs().toString());
  }

  onQueueReady(queueId: u32): void {
    const item = dequeueSharedQueue(queueId);
    logInfo("queue item: " + (item !== null ? String.UTF8.decode(item) : "none"));
  }

  createHttpContext(id: u32): HttpContext {
    return new ProbeHttp(id, this);
  }
}

class ProbeHttp extends HttpContext {
  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    if (this.getRequestHeader("x-bytes-probe") !== null) return bytesProbe(this);
    if (this.getRequestHeader("x-probe-call") !== null) {
      // A request's own call: the host answers on the root context, the SDK routes it here.
      const headers = new Array<HeaderPair>();
      headers.push(new HeaderPair(":method", "GET"));
      headers.push(new HeaderPair(":path", "/check"));
      headers.push(new HeaderPair(":authority", "auth.internal"));
      this.httpCall("auth-cluster", headers, null, [], 1000);
      return FilterHeadersStatus.StopIteration;
    }
    const root = changetype<ProbeRoot>(this.root);
    root.inflight!.add(1);
    root.sizes!.record(getHeaderMapSize(MapType.HttpRequestHeaders));
    // Round-trip the whole map: read every pair, upper-case the values, write them back.
    const pairs = this.getRequestHeaders();
    const out = new Array<HeaderPair>();
    for (let i = 0; i < pairs.length; i++) out.push(new HeaderPair(pairs[i].key, pairs[i].value.toUpperCase()));
    out.push(new HeaderPair("x-count", pairs.length.toString()));
    this.setRequestHeaders(out);
    enqueueSharedQueue(root.queue, utf8Bytes("req " + this.id.toString()));
    return endOfStream ? FilterHeadersStatus.Continue : FilterHeadersStatus.StopIteration;
  }

  onRequestBody(bodySize: u32, endOfStream: bool): FilterDataStatus {
    if (!endOfStream) return FilterDataStatus.StopIterationAndBuffer;
    const body = this.getRequestBody(0, bodySize);
    if (body !== null) setBufferBytes(BufferType.HttpRequestBody, 0, bodySize, utf8Bytes("[" + String.UTF8.decode(body) + "]"));
    return FilterDataStatus.Continue;
  }

  onRequestTrailers(numTrailers: u32): FilterTrailersStatus {
    const t = this.getRequestTrailer("grpc-status");
    logInfo("trailer grpc-status=" + (t !== null ? t : "none"));
    return FilterTrailersStatus.Continue;
  }

  onHttpCallResponse(token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
    const status = this.getHttpCallResponseHeader(":status");
    this.setRequestHeader("x-call", (status !== null ? status : "failed") + " in context " + this.id.toString());
    this.resumeRequest();
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const pairs = this.getResponseHeaders();
    this.setResponseHeader("x-seen", pairs.length.toString());
    return FilterHeadersStatus.Continue;
  }

  onDone(): bool {
    const root = changetype<ProbeRoot>(this.root);
    root.inflight!.add(-1);
    // Keep the context (as a filter waiting on something would) and release it at once.
    this.done();
    return false;
  }

  onLog(): void {
    const b = getBufferBytes(BufferType.HttpResponseBody, 0, 10);
    logInfo("log " + this.id.toString() + (b === null ? " no-body" : " body"));
  }
}

/** The allocation-free readers (Bytes, *Into, SharedSlot, Sha256 reuse): what they read is
 * reported in x-result. x-big is larger than the SDK's scratch block (the heap path). */
function bytesProbe(ctx: HttpContext): FilterHeadersStatus {
  const out = new Array<string>();
  const small = new Bytes(4);
  const big = new Bytes(4);
  out.push("small=" + (getHeaderMapValueInto(MapType.HttpRequestHeaders, utf8Bytes("x-small"), small) ? small.toString() : "absent"));
  out.push("big=" + (getHeaderMapValueInto(MapType.HttpRequestHeaders, utf8Bytes("x-big"), big) ? big.length.toString() : "absent"));
  const bigText = ctx.getRequestHeader("x-big");
  out.push("bigSame=" + (bigText !== null && bigText == big.toString() ? "yes" : "no"));
  const again = new Bytes(4);
  getHeaderMapValueInto(MapType.HttpRequestHeaders, utf8Bytes("x-small"), again);
  out.push("again=" + (again.equalsBytes(small) ? "same" : "differs"));
  const missing = new Bytes(4);
  missing.appendByte(0x41);
  const found = getHeaderMapValueInto(MapType.HttpRequestHeaders, utf8Bytes("x-missing"), missing);
  out.push("missing=" + (found ? "found" : "absent") + "/" + missing.length.toString());
  const cluster = new Bytes(2);
  out.push("cluster=" + (getPropertyInto(serializePropertyPath(["cluster_name"]), cluster) ? cluster.toString() : "absent"));

  const key = Bytes.fromString("bytes-probe");
  const slot = new SharedSlot(2);
  readSharedData(key, slot);
  const first = slot.found ? "found" : "absent";
  const value = Bytes.fromString("one two three");
  const w1 = writeSharedData(key, value, slot.cas);
  readSharedData(key, slot);
  const w2 = writeSharedData(key, value, slot.cas + 1000);
  out.push("shared=" + first + "," + w1.toString() + "," + slot.value.toString() + "," + w2.toString());

  const h = new Sha256();
  const ab = Bytes.fromString("ab");
  h.updateRaw(ab.ptr, ab.length);
  h.updateRaw(changetype<usize>(utf8Bytes("c")), 1);
  const d1 = new Uint8Array(32);
  h.digestInto(d1.dataStart);
  h.reset();
  h.update(utf8Array("abc"));
  out.push("sha=" + (toHex(d1) == toHex(h.digest()) ? toHex(d1) : "mismatch"));
  ctx.setRequestHeader("x-result", out.join(" "));
  return FilterHeadersStatus.Continue;
}

/** Calls the rest of the SDK once so every wrapper is compiled and checked against a host. */
function exerciseEverything(): bool {
  let ok = true;
  if (getLogLevel() > Level.Critical) ok = false;
  if (setProperty(["probe", "x"], utf8Bytes("1")) != WasmResult.Ok) ok = false;
  if (getPropertyInt64(["probe", "missing"], 42) != 42) ok = false;
  if (resolveSharedQueue("", "nope") != 0) ok = false;
  if (setSharedData("probe", utf8Bytes("v1")) != WasmResult.Ok) ok = false;
  const sd = getSharedData("probe");
  if (sd.value === null || sd.cas == 0) ok = false;
  if (setSharedData("probe", utf8Bytes("v2"), sd.cas + 1000) != WasmResult.CasMismatch) ok = false;
  if (setSharedData("probe", utf8Bytes("v2"), sd.cas) != WasmResult.Ok) ok = false;
  continueStream(StreamType.HttpRequest);
  closeStream(StreamType.HttpResponse);
  setEffectiveContext(1);
  sendLocalResponseBytes(200, "probe", null, []);
  // Known digests of "abc" (FIPS 180-4 examples).
  const abc = utf8Array("abc");
  if (toHex(sha256(abc)) != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") ok = false;
  if (!toHex(sha384(abc)).startsWith("cb00753f45a35e8bb5a03d699ac65007")) ok = false;
  if (!toHex(sha512(abc)).startsWith("ddaf35a193617abacc417349ae204131")) ok = false;
  if (new HmacKey(HashAlg.Sha256, abc).sign(abc).length != 32) ok = false;
  if (parseDurationString("1.5s") != 1500 || parseDurationString("x") != -1) ok = false;
  if (stripPort("[::1]:80") != "::1" || stripPort("1.2.3.4:5") != "1.2.3.4" || stripPort("::1") != "::1") ok = false;
  if (!ok) log(LogLevel.Error, "exerciseEverything: a check failed");
  return ok;
}

registerRootContext((id: u32): RootContext => new ProbeRoot(id), "probe");
