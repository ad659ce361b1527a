// headers: set / add / remove request and response headers from config.
//   {"request":  {"set": {"x-a": "1"}, "add": {"x-b": "%CLIENT_IP%"}, "remove": ["x-c"]},
//    "response": {"set": {...}, "add": {...}, "remove": [...]}}
// Values may hold placeholders: %CLIENT_IP% (source.address without port), %REQUEST_ID%
// (request header x-request-id, else property request.id), %ROUTE% (property route_name), %PROPERTY(a.b)% (any
// property, path split on '.'). Order within a phase: remove, then set, then add.
// Templates are rendered into a buffer the root reuses, from text encoded and property paths
// serialized at configure time: a request allocates nothing but its context.
export * from "../../sdk-as/assembly/exports";
import {
  Bytes, FilterHeadersStatus, HttpContext, JsonValue, MapType, RootContext, addHeaderMapValueBytes,
  addHeaderMapValueOf, appendAddressHost, getHeaderMapValue, getPropertyInto, getPropertyString, logError,
  parseJson, registerRootContext, removeHeaderMapValueBytes, replaceHeaderMapValueBytes, replaceHeaderMapValueOf,
  serializePropertyPath, utf8Bytes,
} from "../../sdk-as/assembly/index";

const SOURCE_ADDRESS = serializePropertyPath(["source", "address"]);

const SEG_TEXT = 0;
const SEG_CLIENT_IP = 1;
const SEG_REQUEST_ID = 2;
const SEG_PROPERTY = 3;

class Segment {
  /** SEG_TEXT: the text's UTF-8; SEG_PROPERTY: the serialized property path. */
  readonly bytes: ArrayBuffer;
  constructor(public kind: i32, public text: string, public path: string[]) {
    this.bytes = kind == SEG_TEXT ? utf8Bytes(text) : kind == SEG_PROPERTY ? serializePropertyPath(path) : new ArrayBuffer(0);
  }
}

/** A value with its placeholders split out at configure time. */
class Template {
  segments: Segment[] = [];
  constantBytes: ArrayBuffer | null = null; // set when there is no placeholder
  usesRequestId: bool = false;
}

class HeaderOp {
  constructor(public name: ArrayBuffer, public value: Template) {}
}

class PhaseOps {
  sets: HeaderOp[] = [];
  adds: HeaderOp[] = [];
  removes: ArrayBuffer[] = [];
  get empty(): bool { return this.sets.length == 0 && this.adds.length == 0 && this.removes.length == 0; }
  usesRequestId(): bool {
    for (let i = 0; i < this.sets.length; i++) if (this.sets[i].value.usesRequestId) return true;
    for (let i = 0; i < this.adds.length; i++) if (this.adds[i].value.usesRequestId) return true;
    return false;
  }
}

let configError = "";

function isHeaderName(name: string): bool {
  if (name.length == 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    // RFC 9110 token characters; ':' allowed first for pseudo-headers like :path.
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) ||
      c == 0x2d || c == 0x5f || c == 0x2e || c == 0x21 || c == 0x23 || c == 0x24 || c == 0x25 ||
      c == 0x26 || c == 0x27 || c == 0x2a || c == 0x2b || c == 0x5e || c == 0x60 || c == 0x7c ||
      c == 0x7e || (c == 0x3a && i == 0 && name.length > 1);
    if (!ok) return false;
  }
  return true;
}

function compileTemplate(value: string, where: string): Template | null {
  const t = new Template();
  let literal = "";
  let i = 0;
  while (i < value.length) {
    const c = value.charCodeAt(i);
    if (c == 0x25 /* % */) {
      const end = value.indexOf("%", i + 1);
      if (end > i) {
        const name = value.substring(i + 1, end);
        let seg: Segment | null = null;
        if (name == "CLIENT_IP") seg = new Segment(SEG_CLIENT_IP, "", []);
        else if (name == "REQUEST_ID") { seg = new Segment(SEG_REQUEST_ID, "", []); t.usesRequestId = true; }
        else if (name == "ROUTE") seg = new Segment(SEG_PROPERTY, "", ["route_name"]);
        else if (name.startsWith("PROPERTY(") && name.endsWith(")")) {
          const path = name.substring(9, name.length - 1);
          if (path.length == 0) {
            configError = where + ": empty %PROPERTY()%";
            return null;
          }
          seg = new Segment(SEG_PROPERTY, "", path.split("."));
        } else if (name.length > 0 && isPlaceholderName(name)) {
          configError = where + ": unknown placeholder %" + name + "%";
          return null;
        }
        if (seg !== null) {
          if (literal.length > 0) t.segments.push(new Segment(SEG_TEXT, literal, []));
          literal = "";
          t.segments.push(seg);
          i = end + 1;
          continue;
        }
      }
    }
    literal += String.fromCharCode(c);
    i++;
  }
  if (literal.length > 0) t.segments.push(new Segment(SEG_TEXT, literal, []));
  if (t.segments.length == 0) t.constantBytes = utf8Bytes("");
  else if (t.segments.length == 1 && t.segments[0].kind == SEG_TEXT) t.constantBytes = utf8Bytes(t.segments[0].text);
  return t;
}

/** Upper-case word like FOO_BAR: something that was meant as a placeholder. */
function isPlaceholderName(name: string): bool {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 0x41 && c <= 0x5a) || c == 0x5f || (c >= 0x30 && c <= 0x39))) return false;
  }
  return true;
}

function compileMapOps(obj: JsonValue, where: string, out: HeaderOp[]): bool {
  if (!obj.isObject) {
    configError = where + " must be an object of header: value, got " + obj.kindName;
    return false;
  }
  for (let i = 0; i < obj.keys.length; i++) {
    const name = obj.keys[i];
    const v = obj.items[i];
    if (!isHeaderName(name)) {
      configError = where + ": invalid header name \"" + name + "\"";
      return false;
    }
    let text: string;
    if (v.isString) text = v.stringValue;
    else if (v.isNumber) text = v.numberValue == Math.floor(v.numberValue) ? (<i64>v.numberValue).toString() : v.numberValue.toString();
    else if (v.isBool) text = v.boolValue ? "true" : "false";
    else {
      configError = where + "." + name + " must be a string, got " + v.kindName;
      return false;
    }
    const t = compileTemplate(text, where + "." + name);
    if (t === null) return false;
    out.push(new HeaderOp(utf8Bytes(name.toLowerCase()), t));
  }
  return true;
}

function compilePhase(v: JsonValue | null, where: string): PhaseOps | null {
  const ops = new PhaseOps();
  if (v === null || v.isNull) return ops;
  if (!v.isObject) {
    configError = where + " must be an object, got " + v.kindName;
    return null;
  }
  for (let i = 0; i < v.keys.length; i++) {
    const key = v.keys[i];
    const item = v.items[i];
    if (key == "set") {
      if (!compileMapOps(item, where + ".set", ops.sets)) return null;
    } else if (key == "add") {
      if (!compileMapOps(item, where + ".add", ops.adds)) return null;
    } else if (key == "remove") {
      if (!item.isArray) {
        configError = where + ".remove must be an array of header names";
        return null;
      }
      for (let j = 0; j < item.items.length; j++) {
        const n = item.items[j];
        if (!n.isString || !isHeaderName(n.stringValue)) {
          configError = where + ".remove[" + j.toString() + "] must be a header name";
          return null;
        }
        ops.removes.push(utf8Bytes(n.stringValue.toLowerCase()));
      }
    } else {
      configError = where + ": unknown key \"" + key + "\" (expected set, add, remove)";
      return null;
    }
  }
  return ops;
}

class HeadersRoot extends RootContext {
  request: PhaseOps = new PhaseOps();
  response: PhaseOps = new PhaseOps();
  responseUsesRequestId: bool = false;
  // Per-request scratch (callbacks never interleave inside one instance): the value being
  // rendered, a property read, and the client IP of context `clientIpOwner` (0 = none).
  out: Bytes = new Bytes(128);
  property: Bytes = new Bytes(64);
  clientIp: Bytes = new Bytes(48);
  clientIpOwner: u32 = 0;

  onConfigure(configSize: u32): bool {
    const text = this.getPluginConfig().trim();
    if (text.length == 0) {
      logError("headers: config is empty; expected {\"request\": {...}, \"response\": {...}}");
      return false;
    }
    const parsed = parseJson(text);
    const cfg = parsed.value;
    if (cfg === null) {
      logError("headers: config is not valid JSON: " + parsed.error);
      return false;
    }
    if (!cfg.isObject) {
      logError("headers: config must be an object, got " + cfg.kindName);
      return false;
    }
    for (let i = 0; i < cfg.keys.length; i++) {
      const k = cfg.keys[i];
      if (k != "request" && k != "response") {
        logError("headers: unknown key \"" + k + "\" (expected request, response)");
        return false;
      }
    }
    const request = compilePhase(cfg.get("request"), "request");
    if (request === null) {
      logError("headers: " + configError);
      return false;
    }
    const response = compilePhase(cfg.get("response"), "response");
    if (response === null) {
      logError("headers: " + configError);
      return false;
    }
    this.request = request;
    this.response = response;
    this.responseUsesRequestId = response.usesRequestId();
    // Request rules only: responses needn't wait for this filter.
    if (response.empty) this.skipResponsePhases();
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new HeadersHttp(id, this);
  }
}

class HeadersHttp extends HttpContext {
  requestId: string | null = null;

  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<HeadersRoot>(this.root);
    // Request headers are not readable in the response phase: keep the id now.
    if (root.responseUsesRequestId) this.requestId = this.readRequestId();
    if (!root.request.empty) this.apply(root.request, MapType.HttpRequestHeaders);
    return FilterHeadersStatus.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<HeadersRoot>(this.root);
    if (!root.response.empty) this.apply(root.response, MapType.HttpResponseHeaders);
    return FilterHeadersStatus.Continue;
  }

  /** x-request-id as the client (or an earlier hop) sent it, else the host's request.id. */
  readRequestId(): string {
    const v = getHeaderMapValue(MapType.HttpRequestHeaders, "x-request-id");
    if (v !== null) return v;
    const id = getPropertyString(["request", "id"]);
    return id !== null ? id : "";
  }

  apply(ops: PhaseOps, map: MapType): void {
    const root = changetype<HeadersRoot>(this.root);
    for (let i = 0; i < ops.removes.length; i++) removeHeaderMapValueBytes(map, ops.removes[i]);
    for (let i = 0; i < ops.sets.length; i++) {
      const op = ops.sets[i];
      const constant = op.value.constantBytes;
      if (constant !== null) replaceHeaderMapValueBytes(map, op.name, constant);
      else replaceHeaderMapValueOf(map, op.name, this.render(op.value, root));
    }
    for (let i = 0; i < ops.adds.length; i++) {
      const op = ops.adds[i];
      const constant = op.value.constantBytes;
      if (constant !== null) addHeaderMapValueBytes(map, op.name, constant);
      else addHeaderMapValueOf(map, op.name, this.render(op.value, root));
    }
  }

  /** A template with placeholders, rendered into root.out. */
  render(t: Template, root: HeadersRoot): Bytes {
    const out = root.out;
    out.clear();
    for (let i = 0; i < t.segments.length; i++) {
      const s = t.segments[i];
      if (s.kind == SEG_TEXT) out.appendBuffer(s.bytes);
      else if (s.kind == SEG_CLIENT_IP) out.appendBytes(this.clientIpOf(root));
      else if (s.kind == SEG_REQUEST_ID) {
        let id = this.requestId;
        if (id === null) {
          id = this.readRequestId();
          this.requestId = id;
        }
        out.appendBuffer(String.UTF8.encode(id));
      } else if (getPropertyInto(s.bytes, root.property)) {
        out.appendBytes(root.property);
      }
    }
    return out;
  }

  onDelete(): void {
    // A host may hand this id out again: the cached client IP must not outlive the request.
    const root = changetype<HeadersRoot>(this.root);
    if (root.clientIpOwner == this.id) root.clientIpOwner = 0;
  }

  /** source.address without its port, read once per request ("" when the host has none). */
  clientIpOf(root: HeadersRoot): Bytes {
    const ip = root.clientIp;
    if (root.clientIpOwner == this.id) return ip;
    ip.clear();
    if (getPropertyInto(SOURCE_ADDRESS, root.property)) appendAddressHost(ip, root.property);
    root.clientIpOwner = this.id;
    return ip;
  }
}

registerRootContext((id: u32): RootContext => new HeadersRoot(id), "headers");
