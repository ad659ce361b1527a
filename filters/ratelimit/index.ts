// ratelimit: a token bucket per key, shared by every worker through proxy-wasm shared data.
//   {"rate": 100, "per": "1s", "burst": 200, "key": "client_ip", "shadow": false}
// key: "client_ip" | "route" | "cluster" | "header:<name>" | "property:<a.b>", or several
// joined with "+" (or given as an array): "client_ip+header:x-api-key".
// A bucket is 16 bytes in shared data (f64 tokens, u64 last refill ns); each request reads
// it, refills from the elapsed time, takes a token and writes it back with the CAS value of
// the read, retrying a bounded number of times when another worker wrote in between.
// The per-request path builds the key and reads/writes the bucket in buffers the root
// reuses: no strings and no allocation per request.
// Metrics: ratelimit_allowed.<key class> / ratelimit_limited.<key class>, e.g.
// "ratelimit_limited.client_ip+header:x-api-key" (one class per filter: no separate totals,
// which would cost a second host call per request for the same number).
export * from "../../sdk-as/assembly/exports";
import {
  Bytes, Counter, FilterHeadersStatus, appendAddressHost, HeaderPair, HttpContext, MapType, RootContext, SharedSlot, WasmResult,
  addHeaderMapValueBytes, getCurrentTimeNanoseconds, getHeaderMapValueInto, getPropertyInto, logError, logWarn,
  parseDurationMs, parseJson, readSharedData, registerRootContext, serializePropertyPath, utf8Bytes, writeSharedData,
} from "../../sdk-as/assembly/index";

const MAX_CAS_ATTEMPTS = 16;
const BUCKET_BYTES = 16;

const PART_CLIENT_IP = 0;
const PART_ROUTE = 1;
const PART_CLUSTER = 2;
const PART_HEADER = 3;
const PART_PROPERTY = 4;

class KeyPart {
  /** What the request is asked for: the header name (UTF-8) or the serialized property path. */
  readonly query: ArrayBuffer;
  /** The part as the metrics name it: "client_ip", "route", "cluster", "header:<name>", "property:<a.b>". */
  readonly className: string;
  constructor(public kind: i32, public name: string, public path: string[]) {
    if (kind == PART_HEADER) {
      this.query = utf8Bytes(name);
      this.className = "header:" + name;
    } else if (kind == PART_CLIENT_IP) {
      this.query = serializePropertyPath(["source", "address"]);
      this.className = "client_ip";
    } else if (kind == PART_ROUTE) {
      this.query = serializePropertyPath(["route_name"]);
      this.className = "route";
    } else if (kind == PART_CLUSTER) {
      this.query = serializePropertyPath(["cluster_name"]);
      this.className = "cluster";
    } else {
      this.query = serializePropertyPath(path);
      this.className = "property:" + path.join(".");
    }
  }
}

// Wisp's metric table holds filter + name in 192 bytes: a longer key class is cut here.
const MAX_KEY_CLASS_CHARS = 96;

/** The key class metrics are named by: the key parts in canonical form, joined with "+". */
function keyClassOf(parts: KeyPart[]): string {
  let out = "";
  for (let i = 0; i < parts.length; i++) out += (i > 0 ? "+" : "") + parts[i].className;
  return out.length > MAX_KEY_CLASS_CHARS ? out.substring(0, MAX_KEY_CLASS_CHARS) : out;
}

let configError = "";

function parseKeyPart(spec: string): KeyPart | null {
  const s = spec.trim();
  if (s == "client_ip" || s == "remote_address") return new KeyPart(PART_CLIENT_IP, "", []);
  if (s == "route") return new KeyPart(PART_ROUTE, "", []);
  if (s == "cluster") return new KeyPart(PART_CLUSTER, "", []);
  if (s.startsWith("header:") && s.length > 7) return new KeyPart(PART_HEADER, s.substring(7).toLowerCase(), []);
  if (s.startsWith("property:") && s.length > 9) return new KeyPart(PART_PROPERTY, "", s.substring(9).split("."));
  configError = "key part \"" + s + "\" is not client_ip, route, cluster, header:<name> or property:<path>";
  return null;
}

/** FNV-1a of the config text: workers loading the same config share buckets, two
 * differently configured instances of the filter do not. */
function fnv1a(s: string): string {
  let h: u32 = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= <u32>s.charCodeAt(i);
    h *= 16777619;
  }
  return h.toString(16);
}

class RateLimitRoot extends RootContext {
  rate: f64 = 0;
  perMs: f64 = 1000;
  burst: f64 = 0;
  shadow: bool = false;
  keyParts: KeyPart[] = [];
  namespace: string = "";
  policyHeader: string = "";
  allowed: Counter | null = null;
  limited: Counter | null = null;
  shadowName: ArrayBuffer = utf8Bytes("x-ratelimit-shadow");
  shadowValue: ArrayBuffer = utf8Bytes("limited");
  // Per-request scratch: callbacks never interleave inside one instance.
  key: Bytes = new Bytes(128);
  namespaceBytes: i32 = 0;
  part: Bytes = new Bytes(64);
  slot: SharedSlot = new SharedSlot(BUCKET_BYTES);
  bucket: Bytes = new Bytes(BUCKET_BYTES);
  decision: Decision = new Decision();

  onConfigure(configSize: u32): bool {
    const text = this.getPluginConfig();
    const parsed = parseJson(text.trim().length == 0 ? "{}" : text);
    const cfg = parsed.value;
    if (cfg === null) return this.refuse("config is not valid JSON: " + parsed.error);
    if (!cfg.isObject) return this.refuse("config must be an object, got " + cfg.kindName);
    for (let i = 0; i < cfg.keys.length; i++) {
      const k = cfg.keys[i];
      if (k != "rate" && k != "per" && k != "burst" && k != "key" && k != "shadow" && k != "name") {
        return this.refuse("unknown key \"" + k + "\" (expected rate, per, burst, key, shadow, name)");
      }
    }
    const rate = cfg.get("rate");
    if (rate === null || !rate.isNumber || !(rate.numberValue > 0)) return this.refuse("rate must be a number > 0");
    this.rate = rate.numberValue;

    const per = cfg.get("per");
    if (per !== null) {
      const ms = parseDurationMs(per);
      if (!(ms > 0)) return this.refuse("per must be a duration > 0 like \"1s\", \"500ms\", \"1m\" or milliseconds");
      this.perMs = ms;
    }
    const burst = cfg.get("burst");
    if (burst !== null) {
      if (!burst.isNumber || !(burst.numberValue >= 1)) return this.refuse("burst must be a number >= 1");
      this.burst = Math.floor(burst.numberValue);
    } else {
      this.burst = Math.max(1, Math.floor(this.rate));
    }
    const shadow = cfg.get("shadow");
    if (shadow !== null) {
      if (!shadow.isBool) return this.refuse("shadow must be true or false");
      this.shadow = shadow.boolValue;
    }
    const parts = new Array<KeyPart>();
    const key = cfg.get("key");
    if (key === null) {
      parts.push(new KeyPart(PART_CLIENT_IP, "", []));
    } else if (key.isString) {
      const specs = key.stringValue.split("+");
      for (let i = 0; i < specs.length; i++) {
        const p = parseKeyPart(specs[i]);
        if (p === null) return this.refuse(configError);
        parts.push(p);
      }
    } else if (key.isArray && key.items.length > 0) {
      for (let i = 0; i < key.items.length; i++) {
        const item = key.items[i];
        if (!item.isString) return this.refuse("key[" + i.toString() + "] must be a string");
        const p = parseKeyPart(item.stringValue);
        if (p === null) return this.refuse(configError);
        parts.push(p);
      }
    } else {
      return this.refuse("key must be a string like \"client_ip\" or \"client_ip+header:x-api-key\", or an array of them");
    }
    this.keyParts = parts;
    const name = cfg.get("name");
    this.namespace = "wisp.ratelimit." + (name !== null && name.isString ? name.stringValue : fnv1a(text)) + ".";
    this.key.clear();
    this.key.appendBuffer(utf8Bytes(this.namespace));
    this.namespaceBytes = this.key.length;
    this.policyHeader = (<i64>this.burst).toString() + ";w=" + seconds(this.perMs).toString();
    const keyClass = keyClassOf(parts);
    this.allowed = new Counter("ratelimit_allowed." + keyClass);
    this.limited = new Counter("ratelimit_limited." + keyClass);
    // Only shadow mode adds a response header: otherwise the response needn't wait for us.
    if (!this.shadow) this.skipResponsePhases();
    return true;
  }

  refuse(message: string): bool {
    logError("ratelimit: " + message);
    return false;
  }

  createHttpContext(id: u32): HttpContext {
    return new RateLimitHttp(id, this);
  }
}

function seconds(ms: f64): i64 {
  return <i64>Math.ceil(ms / 1000);
}

/** What one take from the bucket decided. */
class Decision {
  allowed: bool = true;
  remaining: f64 = 0;
  /** ms until one token is back (when limited) */
  retryAfterMs: f64 = 0;
  /** ms until the bucket is full again */
  resetMs: f64 = 0;
}

class RateLimitHttp extends HttpContext {
  shadowLimited: bool = false;

  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<RateLimitRoot>(this.root);
    const d = this.take(root, this.bucketKey(root));
    if (d.allowed) {
      root.allowed!.increment();
      return FilterHeadersStatus.Continue;
    }
    root.limited!.increment();
    if (root.shadow) {
      this.shadowLimited = true;
      addHeaderMapValueBytes(MapType.HttpRequestHeaders, root.shadowName, root.shadowValue);
      return FilterHeadersStatus.Continue;
    }
    const headers = new Array<HeaderPair>();
    const retry = <i64>Math.max(1, Math.ceil(d.retryAfterMs / 1000));
    headers.push(new HeaderPair("retry-after", retry.toString()));
    headers.push(new HeaderPair("ratelimit-policy", root.policyHeader));
    headers.push(new HeaderPair("ratelimit", "limit=" + (<i64>root.burst).toString() +
      ", remaining=" + (<i64>Math.floor(d.remaining)).toString() + ", reset=" + retry.toString()));
    headers.push(new HeaderPair("content-type", "text/plain"));
    this.sendLocalResponse(429, "rate limited\n", headers, "ratelimit");
    return FilterHeadersStatus.StopIteration;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    if (this.shadowLimited) {
      const root = changetype<RateLimitRoot>(this.root);
      addHeaderMapValueBytes(MapType.HttpResponseHeaders, root.shadowName, root.shadowValue);
    }
    return FilterHeadersStatus.Continue;
  }

  /** The shared-data key in root.key: namespace, then the parts' values joined with "|". */
  bucketKey(root: RateLimitRoot): Bytes {
    const key = root.key;
    key.length = root.namespaceBytes; // the namespace prefix stays in place
    const parts = root.keyParts;
    const v = root.part;
    for (let i = 0; i < parts.length; i++) {
      if (i > 0) key.appendByte(0x7c); // '|'
      const p = parts[i];
      const found = p.kind == PART_HEADER
        ? getHeaderMapValueInto(MapType.HttpRequestHeaders, p.query, v)
        : getPropertyInto(p.query, v);
      // A missing part (no header sent) still gets a bucket: everyone without it shares one.
      if (!found) key.appendByte(0x2d); // '-'
      else if (p.kind == PART_CLIENT_IP) appendAddressHost(key, v);
      else key.appendBytes(v);
    }
    return key;
  }

  take(root: RateLimitRoot, key: Bytes): Decision {
    const d = root.decision;
    d.allowed = true;
    d.remaining = 0;
    d.retryAfterMs = 0;
    d.resetMs = 0;
    const burst = root.burst;
    const nsPerToken = root.perMs * 1e6 / root.rate;
    const value = root.bucket;
    value.length = BUCKET_BYTES;
    const vp = value.ptr;
    const current = root.slot;
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const now = getCurrentTimeNanoseconds();
      readSharedData(key, current);
      let tokens = burst;
      let last = now;
      const stored = current.value;
      if (current.found && stored.length == BUCKET_BYTES) {
        const sp = stored.ptr;
        tokens = load<f64>(sp);
        last = load<u64>(sp, 8);
        if (now > last) tokens = Math.min(burst, tokens + <f64>(now - last) / nsPerToken);
        else last = now;
      }
      if (tokens < 1) {
        // Limited: nothing to write, the stored (tokens, last) pair still describes the bucket.
        d.allowed = false;
        d.remaining = tokens;
        d.retryAfterMs = (1 - tokens) * nsPerToken / 1e6;
        d.resetMs = (burst - tokens) * nsPerToken / 1e6;
        return d;
      }
      tokens -= 1;
      store<f64>(vp, tokens);
      store<u64>(vp, now, 8);
      // cas 0 on a missing key: two workers creating the same bucket at once may lose one take.
      const r = writeSharedData(key, value, current.cas);
      if (r == WasmResult.Ok) {
        d.allowed = true;
        d.remaining = tokens;
        d.resetMs = (burst - tokens) * nsPerToken / 1e6;
        return d;
      }
      if (r != WasmResult.CasMismatch) break;
    }
    // Contention beyond the bound (or a store failure): let the request through rather than
    // fail closed on a bookkeeping problem, and say so.
    logWarn("ratelimit: shared bucket update did not settle for key " + key.toString() + "; allowing");
    return d;
  }
}

registerRootContext((id: u32): RootContext => new RateLimitRoot(id), "ratelimit");

