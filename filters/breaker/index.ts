// breaker: a circuit breaker per upstream cluster, driven by response status.
//   {"consecutive_failures": 5, "failure_ratio": 0.5, "window": "10s", "min_requests": 20,
//    "cooldown": "10s", "max_cooldown": "5m", "half_open_requests": 1,
//    "failure_statuses": [500, 502, 503, 504]}
// closed → open after N consecutive failures (default: any 5xx), or, with failure_ratio, when
// at least that fraction of the requests in the sliding window failed and the window holds
// min_requests or more (either trigger trips); open answers 503 with `x-wisp-breaker: open`
// at once; after the cooldown the next requests become half-open probes (at most K in
// flight); K successful probes close it, a failed probe re-opens it with the cooldown doubled
// (up to max_cooldown). State lives in shared data keyed by the cluster_name property and is
// updated with CAS, so every worker sees one breaker; the window is part of the same record,
// so a trip decided from it is one atomic write.
// The per-request path reads the cluster and the record into buffers the root reuses and
// finds the cluster's key in a small table, so a request allocates nothing but its context.
export * from "../../sdk-as/assembly/exports";
import {
  Bytes, Counter, FilterHeadersStatus, Gauge, HeaderPair, HttpContext, MapType, RootContext, SharedSlot, WasmResult,
  getCurrentTimeNanoseconds, getHeaderMapValueInto, getPropertyInt64Into, getPropertyInto, logError, logInfo, logWarn, parseDurationMs,
  parseJson, readSharedData, registerRootContext, serializePropertyPath, utf8Bytes, writeSharedData,
} from "../../sdk-as/assembly/index";

const CLOSED: u32 = 0;
const OPEN: u32 = 1;
const HALF_OPEN: u32 = 2;
const STATE_BYTES = 32;
// The sliding window: WINDOW_BUCKETS sub-windows of window/WINDOW_BUCKETS each, a ring of
// (requests, failures) u32 pairs after the u64 index of the newest bucket. A whole bucket
// drops out at a time, so the ratio covers between 9/10 of the window and all of it.
const WINDOW_BUCKETS = 10;
const WINDOW_BYTES = 8 + WINDOW_BUCKETS * 8;
const MAX_CAS_ATTEMPTS = 16;
// Clusters whose key and state gauge a root keeps; beyond it a cluster's key is built per
// request and has no gauge (clusters come from config: this is far above any real one).
const MAX_TRACKED_CLUSTERS = 64;
const PPM: u64 = 1000000;
const CLUSTER_PATH = serializePropertyPath(["cluster_name"]);
const RESPONSE_CODE_PATH = serializePropertyPath(["response", "code"]);
const STATUS_HEADER = utf8Bytes(":status");

/** The shared record: 32 bytes of state, then (when the ratio trigger is on) the window. */
class BreakerState {
  state: u32 = CLOSED;
  failures: u32 = 0; // consecutive failures while closed
  trips: u32 = 0; // consecutive trips without a successful close: drives the cooldown growth
  probes: u32 = 0; // half-open probes admitted
  successes: u32 = 0; // half-open probes that succeeded
  cooldownMs: u32 = 0;
  openedAtNs: u64 = 0;
  newestBucket: u64 = 0; // index (time / bucket width) of the newest window bucket
  ring: StaticArray<u32> = new StaticArray<u32>(WINDOW_BUCKETS * 2); // [requests, failures] per bucket
  cas: u32 = 0;
  exists: bool = false;
  /** Record length this filter writes: STATE_BYTES, or with the window appended. */
  bytes: i32 = STATE_BYTES;
  private slot: SharedSlot = new SharedSlot(STATE_BYTES + WINDOW_BYTES);
  private out: Bytes = new Bytes(STATE_BYTES + WINDOW_BYTES);

  read(key: Bytes): void {
    const slot = this.slot;
    readSharedData(key, slot);
    const v = slot.value;
    this.cas = slot.cas;
    // A record of another length (written by a differently configured instance under the
    // same name) keeps its state; only a window of this filter's layout is read.
    if (!slot.found || v.length < STATE_BYTES) {
      this.exists = false;
      this.state = CLOSED;
      this.failures = 0;
      this.trips = 0;
      this.probes = 0;
      this.successes = 0;
      this.cooldownMs = 0;
      this.openedAtNs = 0;
      this.newestBucket = 0;
      this.clearWindow();
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
    if (this.bytes == STATE_BYTES) return;
    if (v.length != this.bytes) {
      this.newestBucket = 0;
      this.clearWindow();
      return;
    }
    this.newestBucket = load<u64>(p, STATE_BYTES);
    memory.copy(changetype<usize>(this.ring), p + STATE_BYTES + 8, WINDOW_BUCKETS * 8);
  }

  /** Writes with the CAS of the last read; true when nobody wrote in between. */
  write(key: Bytes): bool {
    const buf = this.out;
    buf.length = this.bytes;
    const p = buf.ptr;
    store<u32>(p, this.state);
    store<u32>(p, this.failures, 4);
    store<u32>(p, this.trips, 8);
    store<u32>(p, this.probes, 12);
    store<u32>(p, this.successes, 16);
    store<u32>(p, this.cooldownMs, 20);
    store<u64>(p, this.openedAtNs, 24);
    if (this.bytes != STATE_BYTES) {
      store<u64>(p, this.newestBucket, STATE_BYTES);
      memory.copy(p + STATE_BYTES + 8, changetype<usize>(this.ring), WINDOW_BUCKETS * 8);
    }
    const r = writeSharedData(key, buf, this.cas);
    if (r == WasmResult.Ok) return true;
    if (r != WasmResult.CasMismatch) logWarn("breaker: cannot store state for " + key.toString());
    return false;
  }

  clearWindow(): void {
    const ring = this.ring;
    for (let i = 0; i < WINDOW_BUCKETS * 2; i++) unchecked(ring[i] = 0);
  }

  /** Counts one request in the window bucket `bucket`, first emptying the buckets that the
   * clock moved past since the newest one. */
  count(bucket: u64, failure: bool): void {
    const ring = this.ring;
    const newest = this.newestBucket;
    if (bucket > newest) {
      const steps = bucket - newest;
      const n: i32 = steps >= <u64>WINDOW_BUCKETS ? WINDOW_BUCKETS : <i32>steps;
      for (let i = 1; i <= n; i++) {
        const slot = <i32>((newest + <u64>i) % <u64>WINDOW_BUCKETS) << 1;
        unchecked(ring[slot] = 0);
        unchecked(ring[slot + 1] = 0);
      }
      this.newestBucket = bucket;
    } else if (newest - bucket >= <u64>WINDOW_BUCKETS) {
      return; // another worker's clock read is a whole window ahead: this one is too old to count
    }
    const slot = <i32>(bucket % <u64>WINDOW_BUCKETS) << 1;
    unchecked(ring[slot] += 1);
    if (failure) unchecked(ring[slot + 1] += 1);
  }

  windowRequests(): u64 {
    let n: u64 = 0;
    for (let i = 0; i < WINDOW_BUCKETS * 2; i += 2) n += <u64>unchecked(this.ring[i]);
    return n;
  }

  windowFailures(): u64 {
    let n: u64 = 0;
    for (let i = 1; i < WINDOW_BUCKETS * 2; i += 2) n += <u64>unchecked(this.ring[i]);
    return n;
  }
}

/** One cluster's breaker as a root sees it: the shared-data key and the state gauge. Never
 * changed once made: the contexts of requests in flight hold it until their response. */
class ClusterBreaker {
  readonly cluster: Bytes;
  readonly key: Bytes;
  readonly gauge: Gauge | null;

  constructor(prefix: string, cluster: Bytes, name: string, withGauge: bool) {
    const copy = new Bytes(cluster.length);
    copy.setFrom(cluster.ptr, cluster.length);
    const key = Bytes.fromString(prefix);
    key.appendBytes(cluster);
    this.cluster = copy;
    this.key = key;
    this.gauge = withGauge ? new Gauge("breaker_state." + name) : null;
  }

  /** The state gauge follows the transitions this worker makes (every transition is made by
   * one worker's successful write, and the gauge is shared). */
  show(state: u32): void {
    const g = this.gauge;
    if (g !== null) g.set(<u64>state);
  }
}

class BreakerRoot extends RootContext {
  threshold: u32 = 5; // 0: the consecutive trigger is off
  ratioPpm: u64 = 0; // failure_ratio in parts per million; 0: the ratio trigger is off
  windowMs: f64 = 10000;
  bucketNs: u64 = 1000000000;
  minRequests: u64 = 20;
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
  breakers: ClusterBreaker[] = [];
  last: ClusterBreaker | null = null;
  defaultBreaker: ClusterBreaker | null = null;

  /** The breaker for this request's cluster ("default" when it has none). */
  breakerFor(): ClusterBreaker {
    const cluster = this.cluster;
    if (!getPropertyInto(CLUSTER_PATH, cluster) || cluster.length == 0) {
      let d = this.defaultBreaker;
      if (d === null) {
        cluster.clear();
        cluster.appendBuffer(String.UTF8.encode("default"));
        d = new ClusterBreaker(this.prefix, cluster, "default", true);
        this.defaultBreaker = d;
      }
      return d;
    }
    const last = this.last;
    if (last !== null && last.cluster.equalsBytes(cluster)) return last;
    const known = this.breakers;
    for (let i = 0; i < known.length; i++) {
      const b = unchecked(known[i]);
      if (b.cluster.equalsBytes(cluster)) {
        this.last = b;
        return b;
      }
    }
    const tracked = known.length < MAX_TRACKED_CLUSTERS;
    const b = new ClusterBreaker(this.prefix, cluster, cluster.toString(), tracked);
    if (tracked) known.push(b);
    this.last = b;
    return b;
  }

  onConfigure(configSize: u32): bool {
    const text = this.getPluginConfig();
    const parsed = parseJson(text.trim().length == 0 ? "{}" : text);
    const cfg = parsed.value;
    if (cfg === null) return this.refuse("config is not valid JSON: " + parsed.error);
    if (!cfg.isObject) return this.refuse("config must be an object, got " + cfg.kindName);
    let windowGiven = false;
    let minRequestsGiven = false;
    for (let i = 0; i < cfg.keys.length; i++) {
      const k = cfg.keys[i];
      const v = cfg.items[i];
      // max_failures / open_for: the names used in examples/demo.yaml, accepted as aliases.
      if (k == "consecutive_failures" || k == "max_failures") {
        if (!v.isNumber || v.numberValue < 0 || v.numberValue > 1e6 || v.numberValue != Math.floor(v.numberValue)) {
          return this.refuse("consecutive_failures must be a whole number >= 1 (0 turns it off, with failure_ratio only)");
        }
        this.threshold = <u32>v.numberValue;
      } else if (k == "failure_ratio") {
        if (!v.isNumber || !(v.numberValue > 0) || v.numberValue > 1) {
          return this.refuse("failure_ratio must be a fraction in (0, 1], e.g. 0.5 to open when half the requests in the window fail");
        }
        this.ratioPpm = max<u64>(1, <u64>Math.round(v.numberValue * <f64>PPM));
      } else if (k == "window") {
        const ms = parseDurationMs(v);
        if (!(ms >= 100) || ms > 3600000) return this.refuse("window must be a duration from \"100ms\" to \"1h\", like \"10s\"");
        this.windowMs = ms;
        windowGiven = true;
      } else if (k == "min_requests") {
        if (!v.isNumber || v.numberValue < 1 || v.numberValue > 1e9 || v.numberValue != Math.floor(v.numberValue)) {
          return this.refuse("min_requests must be a whole number >= 1");
        }
        this.minRequests = <u64>v.numberValue;
        minRequestsGiven = true;
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
        return this.refuse("unknown key \"" + k + "\" (expected consecutive_failures, failure_ratio, window, min_requests, cooldown, max_cooldown, half_open_requests, failure_statuses, name)");
      }
    }
    if (this.ratioPpm == 0) {
      if (windowGiven || minRequestsGiven) return this.refuse("window and min_requests only apply with failure_ratio");
      if (this.threshold == 0) return this.refuse("consecutive_failures must be a whole number >= 1 (0 turns it off, with failure_ratio only)");
    }
    this.bucketNs = max<u64>(1, <u64>(this.windowMs * 1e6 / <f64>WINDOW_BUCKETS));
    this.scratch.bytes = this.ratioPpm > 0 ? STATE_BYTES + WINDOW_BYTES : STATE_BYTES;
    if (this.maxCooldownMs < this.cooldownMs) this.maxCooldownMs = this.cooldownMs;
    // The prefix may have changed.
    this.breakers = [];
    this.last = null;
    this.defaultBreaker = null;
    // Failures are recorded before the client sees them (so a client that retries at once
    // finds the breaker open); successes only reset counts and can wait for onLog. So only a
    // failure needs the response held for this filter.
    this.responseHeadersOnlyFor(this.failureStatuses.length == 0 ? "500-599" : this.failureStatuses.join(","));
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

  /** The window holds min_requests or more and at least failure_ratio of them failed. */
  ratioExceeded(s: BreakerState): bool {
    if (this.ratioPpm == 0) return false;
    const total = s.windowRequests();
    if (total < this.minRequests) return false;
    // Integer compare: 0.3 of 10 is exactly 3 (a float product would be 3.0000000000000004).
    return s.windowFailures() * PPM >= this.ratioPpm * total;
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
    s.clearWindow(); // a closed breaker starts from an empty window
  }

  createHttpContext(id: u32): HttpContext {
    return new BreakerHttp(id, this);
  }
}

class BreakerHttp extends HttpContext {
  breaker: ClusterBreaker | null = null;
  probe: bool = false;
  rejected: bool = false;
  recorded: bool = false;

  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<BreakerRoot>(this.root);
    const breaker = root.breakerFor();
    this.breaker = breaker;
    const key = breaker.key;
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
          breaker.show(HALF_OPEN);
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
    if (this.rejected || this.breaker === null) return FilterHeadersStatus.Continue;
    const text = changetype<BreakerRoot>(this.root).statusText;
    if (getHeaderMapValueInto(MapType.HttpResponseHeaders, STATUS_HEADER, text)) this.record(parseDecimal(text));
    return FilterHeadersStatus.Continue;
  }

  onLog(): void {
    if (this.rejected || this.recorded || this.breaker === null) return;
    // A response that was not a failure (Wisp skips onResponseHeaders for those), or no
    // response phase at all (connect failure, reset, a local reply): the final status if the
    // host knows it; a probe that ends with nothing is a failure.
    const v = getPropertyInt64Into(RESPONSE_CODE_PATH, changetype<BreakerRoot>(this.root).statusText, 0);
    const code: u32 = v > 0 && v < 1000 ? <u32>v : 0;
    if (code > 0) this.record(code);
    else if (this.probe) this.record(503);
  }

  record(status: u32): void {
    this.recorded = true;
    const root = changetype<BreakerRoot>(this.root);
    const failure = root.isFailure(status);
    const windowed = root.ratioPpm > 0;
    const s = root.scratch;
    const breaker = this.breaker!;
    const key = breaker.key;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      s.read(key);
      if (s.state == CLOSED) {
        let changed = windowed;
        if (failure) {
          s.failures += 1;
          changed = true;
        } else if (s.failures != 0) {
          s.failures = 0;
          changed = true;
        }
        // Without the window a success on a clean record has nothing to write.
        if (!changed) return;
        const now = getCurrentTimeNanoseconds();
        if (windowed) s.count(now / root.bucketNs, failure);
        const byCount = failure && root.threshold > 0 && s.failures >= root.threshold;
        if (byCount || root.ratioExceeded(s)) {
          // What tripped it, read before trip() clears the counts (the log line is rare).
          const why = byCount
            ? root.threshold.toString() + " consecutive failures"
            : s.windowFailures().toString() + " of " + s.windowRequests().toString() + " requests failed in " + (<u64>root.windowMs).toString() + "ms";
          root.trip(s, now);
          if (s.write(key)) {
            root.opened!.increment();
            breaker.show(OPEN);
            logWarn("breaker: " + key.toString() + " open after " + why + ", cooldown " + s.cooldownMs.toString() + "ms");
            return;
          }
          continue;
        }
        if (s.write(key)) return;
        continue;
      }
      if (s.state == HALF_OPEN && this.probe) {
        if (failure) {
          root.trip(s, getCurrentTimeNanoseconds());
          if (s.write(key)) {
            root.opened!.increment();
            breaker.show(OPEN);
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
          s.clearWindow();
        }
        if (s.write(key)) {
          if (s.state == CLOSED) {
            breaker.show(CLOSED);
            logInfo("breaker: " + key.toString() + " closed");
          }
          return;
        }
        continue;
      }
      return; // open, or half-open and this request was not a probe: nothing to learn
    }
  }
}

/** A status in decimal digits; 0 when empty or not all digits. */
function parseDecimal(text: Bytes): u32 {
  const n = text.length;
  if (n == 0 || n > 9) return 0;
  let v: u32 = 0;
  for (let i = 0; i < n; i++) {
    const c = <u32>text.at(i) - 0x30;
    if (c > 9) return 0;
    v = v * 10 + c;
  }
  return v;
}

registerRootContext((id: u32): RootContext => new BreakerRoot(id), "breaker");
