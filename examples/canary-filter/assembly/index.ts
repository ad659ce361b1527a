// canary: assigns each request to the canary or the stable cohort and tags it with a header
// (x-wisp-canary: 1 or 0) that the next hop routes on.
//
// Why a tag and not a route change: Wisp (like Envoy) matches the route, and so the cluster,
// before filters run; a filter cannot move a request to another cluster. The tag is read by
// whoever picks the backend next: a second Wisp listener whose routes match on the header
// (see ../README.md), or the application itself (A/B split in the app).
//
// Cohort, first rule that applies:
//   1. request header `x-canary: 1|0` (opt in / out; e.g. set by a tester),
//   2. cookie `canary=1|0`,
//   3. `percent` of clients, by a hash of the client IP (sticky: one client, one cohort).
// The tag from a client is always replaced, so clients cannot spoof it past the filter.
//
// Config (JSON, all optional):
//   {"percent": 10, "header": "x-canary", "cookie": "canary", "tag": "x-wisp-canary"}

export * from "@wisp/sdk-as/assembly/exports"; // the proxy-wasm callbacks: keep this line
import {
  Counter, FilterHeadersStatus, HttpContext, JsonValue, RootContext, getPropertyString, logError, parseJson,
  registerRootContext, stripPort,
} from "@wisp/sdk-as/assembly";

class CanaryRoot extends RootContext {
  percent: f64 = 0;
  header: string = "x-canary";
  cookie: string = "canary";
  tag: string = "x-wisp-canary";
  canary: Counter | null = null;
  stable: Counter | null = null;

  onConfigure(configSize: u32): bool {
    this.canary = new Counter("canary_requests");
    this.stable = new Counter("stable_requests");
    const text = this.getPluginConfig();
    if (text.length == 0) return true;
    const parsed = parseJson(text);
    const cfg = parsed.value;
    if (cfg === null) return refuse("config is not valid JSON: " + parsed.error);
    if (!cfg.isObject) return refuse("config must be a JSON object");
    for (let i = 0; i < cfg.keys.length; i++) {
      const k = cfg.keys[i];
      if (k != "percent" && k != "header" && k != "cookie" && k != "tag") return refuse("unknown key \"" + k + "\"");
    }
    const p = cfg.get("percent");
    if (p !== null) {
      if (!p.isNumber || p.numberValue < 0 || p.numberValue > 100) return refuse("percent must be a number from 0 to 100");
      this.percent = p.numberValue;
    }
    const h = stringField(cfg, "header");
    const c = stringField(cfg, "cookie");
    const t = stringField(cfg, "tag");
    if (cfg.has("header") && h === null) return refuse("header must be a non-empty string");
    if (cfg.has("cookie") && c === null) return refuse("cookie must be a non-empty string");
    if (cfg.has("tag") && t === null) return refuse("tag must be a non-empty string");
    if (h !== null) this.header = h.toLowerCase();
    if (c !== null) this.cookie = c;
    if (t !== null) this.tag = t.toLowerCase();
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new CanaryHttp(id, this);
  }
}

class CanaryHttp extends HttpContext {
  /** -1 until decided; then 0 (stable) or 1 (canary), kept for the response phase. */
  cohort: i32 = -1;

  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<CanaryRoot>(this.root);
    this.cohort = this.decide(root);
    if (this.cohort == 1) root.canary!.increment();
    else root.stable!.increment();
    // Replace (not add): a client-sent tag never reaches the next hop.
    this.setRequestHeader(root.tag, this.cohort == 1 ? "1" : "0");
    return FilterHeadersStatus.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    // Tell the client which cohort served it (handy with curl -i; harmless otherwise).
    if (this.cohort >= 0) this.setResponseHeader(changetype<CanaryRoot>(this.root).tag, this.cohort == 1 ? "1" : "0");
    return FilterHeadersStatus.Continue;
  }

  private decide(root: CanaryRoot): i32 {
    const forced = this.getRequestHeader(root.header);
    if (forced == "1") return 1;
    if (forced == "0") return 0;
    const cookies = this.getRequestHeader("cookie");
    if (cookies !== null) {
      const v = cookieValue(cookies, root.cookie);
      if (v == "1") return 1;
      if (v == "0") return 0;
    }
    if (root.percent <= 0) return 0;
    if (root.percent >= 100) return 1;
    const address = getPropertyString(["source", "address"]);
    if (address === null) return 0;
    return <f64>(fnv1a(stripPort(address)) % 10000) < root.percent * 100 ? 1 : 0;
  }
}

/** Value of one cookie in a Cookie header ("a=1; canary=1"), or null. */
function cookieValue(header: string, name: string): string | null {
  const parts = header.split(";");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i].trim();
    const eq = part.indexOf("=");
    if (eq > 0 && part.substring(0, eq) == name) return part.substring(eq + 1);
  }
  return null;
}

/** FNV-1a over the UTF-16 code units: cheap, stable across builds and hosts. */
function fnv1a(s: string): u32 {
  let h: u32 = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= <u32>s.charCodeAt(i);
    h *= 0x01000193;
  }
  return h;
}

function stringField(cfg: JsonValue, key: string): string | null {
  const v = cfg.get(key);
  return v !== null && v.isString && v.stringValue.length > 0 ? v.stringValue : null;
}

function refuse(why: string): bool {
  logError("canary: " + why);
  return false;
}

registerRootContext((id: u32): RootContext => new CanaryRoot(id), "canary");
