// breaker: a circuit breaker per upstream cluster, driven by response status.
//   {"consecutive_failures": 5, "cooldown": "10s", "max_cooldown": "5m",
//    "half_open_requests": 1, "failure_statuses": [500, 502, 503, 504]}
// closed → open after N consecutive failures (default: any 5xx); open answers 503 with
// `x-wisp-breaker: open` at once; after the cooldown the next requests become half-open
// probes (at most K in flight); K successful probes close it, a failed probe re-opens it
// with the cooldown doubled (up to max_cooldown). State lives in shared data keyed by the
// cluster_name property and is updated with CAS, so every worker sees one breaker.
// The per-request path reads the cluster and the record into buffers the root reuses and
// keeps the last cluster's key, so a request allocates nothing but its context.
export * from "../../sdk-as/assembly/exports";
import {
  Bytes, Counter, FilterHeadersStatus, HeaderPair, HttpContext, MapType, RootContext, SharedSlot, WasmResult,
  getCurrentTimeNanoseconds, getHeaderMapValueInto, getPropertyInt64, getPropertyInto, logError, logInfo,
  logWarn, parseDurationMs, parseJson, readSharedData, registerRootContext, serializePropertyPath, utf8Bytes,
  writeSharedData,
} from "../../sdk-as/assembly/index";

const CLOSED: u32 = 0;
const OPEN: u32 = 1;
const HALF_OPEN: u32 = 2;
const STATE_BYTES = 32;
const MAX_CAS_ATTEMPTS = 16;
const CLUSTER_PATH = serializePropertyPath(["cluster_name"]);
const STATUS_HEADER = utf8Bytes(":status");

/** The shared record; (de)serialized to 32 bytes. */
class BreakerState {
  state: u32 = CLOSED;
  failures: u32 = 0; // consecutive failures while closed
  trips: u32 = 0; // consecutive trips without a successful close: drives the cooldown growth
  probes: u32 = 0; // half-open probes admitted
  successes: u32 = 0; // half-open probes that succeeded
  cooldownMs: u32 = 0;
  openedAtNs: u64 = 0;
  cas: u32 = 0;
  exists: bool = false;
  private slot: SharedSlot = new SharedSlot(STATE_BYTES);
  private out: Bytes = new Bytes(STATE_BYTES);

  read(key: Bytes): void {
    const slot = this.slot;
    readSharedData(key, slot);
    const v = slot.value;
    this.cas = slot.cas;
    if (!slot.found || v.length != STATE_BYTES) {
      this.exists = false;
      this.state = CLOSED;
      this.failures = 0;
      this.trips = 0;
      this.probes = 0;
      this.successes = 0;
      this.cooldownMs = 0;
      this.openedAtNs = 0;
      return;
    }
    const p = v.ptr;
    this.exists = true;
    this.state = load<u32>(p);
    this.failures = load<u32>(p, 4);
    this.trips = load<u32>(p, 8);
    this.probes = load<u32>(p, 12);
    this.successes = load<u32>(p, 16);
    this.cooldownMs = load<u32>(p, 20);
    this.openedAtNs = load<u64>(p, 24);
  }

  /** Writes with the CAS of the last read; true when nobody wrote in between. */
  write(key: Bytes): bool {
    const buf = this.out;
    buf.length = STATE_BYTES;
    const p = buf.ptr;
    store<u32>(p, this.state);
    store<u32>(p, this.failures, 4);
    store<u32>(p, this.trips, 8);
    store<u32>(p, this.probes, 12);
    store<u32>(p, this.successes, 16);
    store<u32>(p, this.cooldownMs, 20);
    store<u64>(p, this.openedAtNs, 24);
    const r = writeSharedData(key, buf, this.cas);
    if (r == WasmResult.Ok) return true;
    if (r != WasmResult.CasMismatch) logWarn("breaker: cannot store state for " + key.toString());
    return false;
  }
}

class BreakerRoot extends RootContext {
  threshold: u32 = 5;
  cooldownMs: f64 = 10000;
  maxCooldownMs: f64 = 300000;
  halfOpenRequests: u32 = 1;
  failureStatuses: u32[] = [];
  prefix: string = "wisp.breaker.";
  opened: Counter | null = null;
  rejected: Counter | null = null;
  // One scratch record per root: callbacks never interleave inside one instance.
  scratch: BreakerState = new BreakerState();
  cluster: Bytes = new Bytes(64);
  statusText: Bytes = new Bytes(8);
  // The last cluster seen and its shared-data key. A key is never changed in place: the
  // contexts of requests in flight hold it until their response.
  lastCluster: Bytes = new Bytes(64);
  lastKey: Bytes | null = null;
  defaultKey: Bytes | null = null;

  /** The shared-data key for this request's cluster ("default" when it has none). */
  keyFor(): Bytes {
    const cluster = this.cluster;
    if (!getPropertyInto(CLUSTER_PATH, cluster) || cluster.length == 0) {
      let k = this.defaultKey;
      if (k === null) {
        k = Bytes.fromString(this.prefix + "default");
        this.defaultKey = k;
      }
      return k;
    }
    const last = this.lastKey;
    if (last !== null && this.lastCluster.equalsBytes(cluster)) return last;
    const k = Bytes.fromString(this.prefix);
    k.appendBytes(cluster);
    this.lastCluster.setFrom(cluster.ptr, cluster.length);
    this.lastKey = k;
    return k;
  }

  onConfigure(configSize: u32): bool {
    const text = this.getPluginConfig();
    const parsed = parseJson(text.trim().length == 0 ? "{}" : text);
    const cfg = parsed.value;
    if (cfg === null) return this.refuse("config is not valid JSON: " + parsed.error);
    if (!cfg.isObject) return this.refuse("config must be an object, got " + cfg.kindName);
    for (let i = 0; i < cfg.keys.length; i++) {
      const k = cfg.keys[i];
      const v = cfg.items[i];
      // max_failures / open_for: the names used in examples/demo.yaml, accepted as aliases.
      if (k == "consecutive_failures" || k == "max_failures") {
        if (!v.isNumber || v.numberValue < 1 || v.numberValue > 1e6) return this.refuse("consecutive_failures must be a number >= 1");
        this.threshold = <u32>v.numberValue;
      } else if (k == "cooldown" || k == "open_for") {
        const ms = parseDurationMs(v);
        if (!(ms > 0) || ms > 86400000) return this.refuse("cooldown must be a duration like \"10s\" (at most 24h)");
        this.cooldownMs = ms;
      } else if (k == "max_cooldown") {
        const ms = parseDurationMs(v);
        if (!(ms > 0) || ms > 86400000) return this.refuse("max_cooldown must be a duration like \"5m\" (at most 24h)");
        this.maxCooldownMs = ms;
      } else if (k == "half_open_requests") {
        if (!v.isNumber || v.numberValue < 1 || v.numberValue > 1e6) return this.refuse("half_open_requests must be a number >= 1");
        this.halfOpenRequests = <u32>v.numberValue;
      } else if (k == "failure_statuses") {
        if (!v.isArray || v.items.length == 0) return this.refuse("failure_statuses must be a non-empty array of status codes");
        for (let j = 0; j < v.items.length; j++) {
          const s = v.items[j];
          if (!s.isNumber || s.numberValue < 100 || s.numberValue > 599) return this.refuse("failure_statuses[" + j.toString() + "] must be a status code");
          this.failureStatuses.push(<u32>s.numberValue);
        }
      } else if (k == "name") {
        if (!v.isString) return this.refuse("name must be a string");
        this.prefix = "wisp.breaker." + v.stringValue + ".";
      } else {
        return this.refuse("unknown key \"" + k + "\" (expected consecutive_failures, cooldown, max_cooldown, half_open_requests, failure_statuses, name)");
      }
    }
    if (this.maxCooldownMs < this.cooldownMs) this.maxCooldownMs = this.cooldownMs;
    this.lastKey = null; // the prefix may have changed
    this.defaultKey = null;
    // Failures are recorded before the client sees them (so a client that retries at once
    // finds the breaker open); successes only reset counts and can wait for onLog. So only a
    // failure needs the response held for this filter.
    this.responseHeadersOnlyFor(this.failureStatuses.length == 0 ? "500-599" : joinStatuses(this.failureStatuses));
    this.skipResponseTrailers();
    this.opened = new Counter("breaker_opened");
    this.rejected = new Counter("breaker_rejected");
    return true;
  }

  refuse(message: string): bool {
    logError("breaker: " + message);
    return false;
  }

  isFailure(status: u32): bool {
    if (this.failureStatuses.length == 0) return status >= 500 && status <= 599;
    return this.failureStatuses.includes(status);
  }

  /** Cooldown after the n-th consecutive trip: base, 2×base, 4×base … up to the max. */
  cooldownFor(trips: u32): u32 {
    let ms = this.cooldownMs;
    for (let i: u32 = 1; i < trips && ms < this.maxCooldownMs; i++) ms *= 2;
    return <u32>Math.min(ms, this.maxCooldownMs);
  }

  trip(s: BreakerState, now: u64): void {
    s.state = OPEN;
    s.trips += 1;
    s.cooldownMs = this.cooldownFor(s.trips);
    s.openedAtNs = now;
    s.failures = 0;
    s.probes = 0;
    s.successes = 0;
  }

  createHttpContext(id: u32): HttpContext {
    return new BreakerHttp(id, this);
  }
}

class BreakerHttp extends HttpContext {
  key: Bytes | null = null;
  probe: bool = false;
  rejected: bool = false;
  recorded: bool = false;

  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<BreakerRoot>(this.root);
    const key = root.keyFor();
    this.key = key;
    const s = root.scratch;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      s.read(key);
      if (s.state == CLOSED) return FilterHeadersStatus.Continue;
      const now = getCurrentTimeNanoseconds();
      if (s.state == OPEN) {
        const until = s.openedAtNs + <u64>s.cooldownMs * 1000000;
        if (now < until) return this.reject(root, "open", until - now);
        s.state = HALF_OPEN;
        s.probes = 1;
        s.successes = 0;
        if (s.write(key)) {
          logInfo("breaker: " + key.toString() + " half-open after " + s.cooldownMs.toString() + "ms");
          this.probe = true;
          return FilterHeadersStatus.Continue;
        }
        continue;
      }
      // half-open
      if (s.probes >= root.halfOpenRequests) return this.reject(root, "half-open", 1000000000);
      s.probes += 1;
      if (s.write(key)) {
        this.probe = true;
        return FilterHeadersStatus.Continue;
      }
    }
    return FilterHeadersStatus.Continue; // contention beyond the bound: let it through
  }

  reject(root: BreakerRoot, state: string, waitNs: u64): FilterHeadersStatus {
    this.rejected = true;
    root.rejected!.increment();
    const headers = new Array<HeaderPair>();
    headers.push(new HeaderPair("x-wisp-breaker", state));
    headers.push(new HeaderPair("retry-after", max<u64>(1, (waitNs + 999999999) / 1000000000).toString()));
    headers.push(new HeaderPair("content-type", "text/plain"));
    this.sendLocalResponse(503, "upstream circuit " + state + "\n", headers, "breaker");
    return FilterHeadersStatus.StopIteration;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    if (this.rejected || this.key === null) return FilterHeadersStatus.Continue;
    const text = changetype<BreakerRoot>(this.root).statusText;
    if (getHeaderMapValueInto(MapType.HttpResponseHeaders, STATUS_HEADER, text)) this.record(parseStatus(text));
    return FilterHeadersStatus.Continue;
  }

  onLog(): void {
    if (this.rejected || this.recorded || this.key === null) return;
    // A response that was not a failure (Wisp skips onResponseHeaders for those), or no
    // response phase at all (connect failure, reset, a local reply): the final status if the
    // host knows it; a probe that ends with nothing is a failure.
    const code = getPropertyInt64(["response", "code"], 0);
    if (code > 0) this.record(<u32>code);
    else if (this.probe) this.record(503);
  }

  record(status: u32): void {
    this.recorded = true;
    const root = changetype<BreakerRoot>(this.root);
    const failure = root.isFailure(status);
    const s = root.scratch;
    const key = this.key!;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      s.read(key);
      if (s.state == CLOSED) {
        if (!failure) {
          if (s.failures == 0) return;
          s.failures = 0;
        } else {
          s.failures += 1;
          if (s.failures >= root.threshold) {
            root.trip(s, getCurrentTimeNanoseconds());
            if (s.write(key)) {
              root.opened!.increment();
              logWarn("breaker: " + key.toString() + " open after " + root.threshold.toString() + " consecutive failures, cooldown " + s.cooldownMs.toString() + "ms");
              return;
            }
            continue;
          }
        }
        if (s.write(key)) return;
        continue;
      }
      if (s.state == HALF_OPEN && this.probe) {
        if (failure) {
          root.trip(s, getCurrentTimeNanoseconds());
          if (s.write(key)) {
            root.opened!.increment();
            logWarn("breaker: " + key.toString() + " probe failed, open again, cooldown " + s.cooldownMs.toString() + "ms");
            return;
          }
          continue;
        }
        s.successes += 1;
        if (s.successes >= root.halfOpenRequests) {
          s.state = CLOSED;
          s.failures = 0;
          s.trips = 0;
          s.probes = 0;
          s.successes = 0;
        }
        if (s.write(key)) {
          if (s.state == CLOSED) logInfo("breaker: " + key.toString() + " closed");
          return;
        }
        continue;
      }
      return; // open, or half-open and this request was not a probe: nothing to learn
    }
  }
}

function joinStatuses(statuses: u32[]): string {
  let out = "";
  for (let i = 0; i < statuses.length; i++) out += (i > 0 ? "," : "") + statuses[i].toString();
  return out;
}

/** A :status value: its decimal digits (what I32.parseInt made of it for the usual 3). */
function parseStatus(text: Bytes): u32 {
  const n = text.length;
  if (n == 0 || n > 9) return <u32>I32.parseInt(text.toString());
  let v: u32 = 0;
  for (let i = 0; i < n; i++) {
    const c = <u32>text.at(i) - 0x30;
    if (c > 9) return <u32>I32.parseInt(text.toString());
    v = v * 10 + c;
  }
  return v;
}

registerRootContext((id: u32): RootContext => new BreakerRoot(id), "breaker");
