// breaker: a circuit breaker per upstream cluster, driven by response status.
//   {"consecutive_failures": 5, "cooldown": "10s", "max_cooldown": "5m",
//    "half_open_requests": 1, "failure_statuses": [500, 502, 503, 504]}
// closed → open after N consecutive failures (default: any 5xx); open answers 503 with
// `x-wisp-breaker: open` at once; after the cooldown the next requests become half-open
// probes (at most K in flight); K successful probes close it, a failed probe re-opens it
// with the cooldown doubled (up to max_cooldown). State lives in shared data keyed by the
// cluster_name property and is updated with CAS, so every worker sees one breaker.
export * from "../../sdk-as/assembly/exports";
import {
  Counter, FilterHeadersStatus, HeaderPair, HttpContext, MapType, RootContext, WasmResult,
  getCurrentTimeNanoseconds, getHeaderMapValue, getPropertyInt64, getPropertyString, getSharedData, logError, logInfo,
  logWarn, parseDurationMs, parseJson, registerRootContext, setSharedData,
} from "../../sdk-as/assembly/index";

const CLOSED: u32 = 0;
const OPEN: u32 = 1;
const HALF_OPEN: u32 = 2;
const STATE_BYTES = 32;
const MAX_CAS_ATTEMPTS = 16;

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

  read(key: string): void {
    const sd = getSharedData(key);
    const v = sd.value;
    this.cas = sd.cas;
    if (v === null || v.byteLength != STATE_BYTES) {
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
    const p = changetype<usize>(v);
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
  write(key: string): bool {
    const buf = new ArrayBuffer(STATE_BYTES);
    const p = changetype<usize>(buf);
    store<u32>(p, this.state);
    store<u32>(p, this.failures, 4);
    store<u32>(p, this.trips, 8);
    store<u32>(p, this.probes, 12);
    store<u32>(p, this.successes, 16);
    store<u32>(p, this.cooldownMs, 20);
    store<u64>(p, this.openedAtNs, 24);
    const r = setSharedData(key, buf, this.cas);
    if (r == WasmResult.Ok) return true;
    if (r != WasmResult.CasMismatch) logWarn("breaker: cannot store state for " + key);
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
  key: string = "";
  probe: bool = false;
  rejected: bool = false;
  recorded: bool = false;

  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<BreakerRoot>(this.root);
    const cluster = getPropertyString(["cluster_name"]);
    this.key = root.prefix + (cluster !== null && cluster.length > 0 ? cluster : "default");
    const s = root.scratch;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      s.read(this.key);
      if (s.state == CLOSED) return FilterHeadersStatus.Continue;
      const now = getCurrentTimeNanoseconds();
      if (s.state == OPEN) {
        const until = s.openedAtNs + <u64>s.cooldownMs * 1000000;
        if (now < until) return this.reject(root, "open", until - now);
        s.state = HALF_OPEN;
        s.probes = 1;
        s.successes = 0;
        if (s.write(this.key)) {
          logInfo("breaker: " + this.key + " half-open after " + s.cooldownMs.toString() + "ms");
          this.probe = true;
          return FilterHeadersStatus.Continue;
        }
        continue;
      }
      // half-open
      if (s.probes >= root.halfOpenRequests) return this.reject(root, "half-open", 1000000000);
      s.probes += 1;
      if (s.write(this.key)) {
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
    if (this.rejected || this.key.length == 0) return FilterHeadersStatus.Continue;
    const status = getHeaderMapValue(MapType.HttpResponseHeaders, ":status");
    if (status !== null) this.record(<u32>I32.parseInt(status));
    return FilterHeadersStatus.Continue;
  }

  onLog(): void {
    if (this.rejected || this.recorded || this.key.length == 0) return;
    // No response phase (connect failure, reset, a local reply): use the final status if the
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
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      s.read(this.key);
      if (s.state == CLOSED) {
        if (!failure) {
          if (s.failures == 0) return;
          s.failures = 0;
        } else {
          s.failures += 1;
          if (s.failures >= root.threshold) {
            root.trip(s, getCurrentTimeNanoseconds());
            if (s.write(this.key)) {
              root.opened!.increment();
              logWarn("breaker: " + this.key + " open after " + root.threshold.toString() + " consecutive failures, cooldown " + s.cooldownMs.toString() + "ms");
              return;
            }
            continue;
          }
        }
        if (s.write(this.key)) return;
        continue;
      }
      if (s.state == HALF_OPEN && this.probe) {
        if (failure) {
          root.trip(s, getCurrentTimeNanoseconds());
          if (s.write(this.key)) {
            root.opened!.increment();
            logWarn("breaker: " + this.key + " probe failed, open again, cooldown " + s.cooldownMs.toString() + "ms");
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
        if (s.write(this.key)) {
          if (s.state == CLOSED) logInfo("breaker: " + this.key + " closed");
          return;
        }
        continue;
      }
      return; // open, or half-open and this request was not a probe: nothing to learn
    }
  }
}

registerRootContext((id: u32): RootContext => new BreakerRoot(id), "breaker");
