// auth: API keys and/or JWT (HS256, HS384, HS512).
//   {"api_keys": [{"name": "ci", "key_sha256": "<hex>"}], "keys": ["plain"],
//    "header": "x-api-key", "query_param": "api_key",
//    "jwt": {"secret": "…", "algorithms": ["HS256"], "issuer": "…", "audiences": ["…"],
//            "clock_skew_s": 30, "require_exp": false, "forward_claims": {"sub": "x-user"}}}
// Missing or invalid credentials → 401 with www-authenticate; a valid JWT whose iss/aud do
// not match → 403. Keys are kept only as SHA-256 digests; a presented key is hashed and
// compared with every digest in constant time. The API-key path works on bytes in buffers
// the root context reuses (no strings, no allocation per request); a presented key is
// hashed every time, never cached: a cache keyed by the presented bytes would answer a
// known key faster than an unknown one.
export * from "../../sdk-as/assembly/exports";
import {
  Bytes, FilterHeadersStatus, HashAlg, HeaderPair, HmacKey, HttpContext, JsonValue, MapType, RootContext, Sha256,
  base64UrlDecode, constantTimeEqual, fromHex, getCurrentTimeNanoseconds, getHeaderMapValue, getHeaderMapValueInto,
  logError, parseJson, registerRootContext, removeHeaderMapValue, removeHeaderMapValueBytes, replaceHeaderMapValue,
  replaceHeaderMapValueBytes, sha256, utf8Array, utf8Bytes,
} from "../../sdk-as/assembly/index";

class ApiKey {
  readonly nameBytes: ArrayBuffer;
  constructor(public name: string, public digest: Uint8Array) {
    this.nameBytes = utf8Bytes(name);
  }
}

const PATH_HEADER = utf8Bytes(":path");

class ClaimForward {
  constructor(public claim: string, public header: string) {}
}

class JwtConfig {
  keys: HmacKey[] = [];
  algNames: string[] = [];
  issuer: string = "";
  audiences: string[] = [];
  skewS: f64 = 30;
  requireExp: bool = false;
  header: string = "authorization";
  forwards: ClaimForward[] = [];
}

let configError = "";

function fail(message: string): bool {
  configError = message;
  return false;
}

function algOf(name: string): i32 {
  if (name == "HS256") return HashAlg.Sha256;
  if (name == "HS384") return HashAlg.Sha384;
  if (name == "HS512") return HashAlg.Sha512;
  return -1;
}

class AuthRoot extends RootContext {
  apiKeys: ApiKey[] = [];
  keyHeader: string = "x-api-key";
  queryParam: string = "";
  jwt: JwtConfig | null = null;
  realm: string = "wisp";
  forwardKeyName: string = "";
  stripCredentials: bool = false;
  // Encoded once configure is done (finishConfig), for the per-request path.
  keyHeaderBytes: ArrayBuffer = new ArrayBuffer(0);
  forwardKeyNameBytes: ArrayBuffer = new ArrayBuffer(0);
  queryParamBytes: Bytes = new Bytes(16);
  // Per-request scratch: callbacks never interleave inside one instance.
  headerValue: Bytes = new Bytes(256);
  segment: Bytes = new Bytes(32);
  presented: Bytes = new Bytes(64);
  hasher: Sha256 = new Sha256();
  digest: Uint8Array = new Uint8Array(32);

  onConfigure(configSize: u32): bool {
    this.skipResponsePhases(); // decides on the request alone
    const parsed = parseJson(this.getPluginConfig());
    const cfg = parsed.value;
    if (cfg === null) return this.refuse("config is not valid JSON: " + parsed.error);
    if (!cfg.isObject) return this.refuse("config must be an object, got " + cfg.kindName);
    if (!this.configure(cfg)) return this.refuse(configError);
    if (this.apiKeys.length == 0 && this.jwt === null) {
      return this.refuse("configure at least one of api_keys, keys or jwt");
    }
    this.keyHeaderBytes = utf8Bytes(this.keyHeader);
    this.forwardKeyNameBytes = utf8Bytes(this.forwardKeyName);
    this.queryParamBytes = Bytes.fromString(this.queryParam);
    return true;
  }

  configure(cfg: JsonValue): bool {
    for (let i = 0; i < cfg.keys.length; i++) {
      const k = cfg.keys[i];
      const v = cfg.items[i];
      if (k == "api_keys") {
        if (!v.isArray) return fail("api_keys must be an array of {name, key_sha256}");
        for (let j = 0; j < v.items.length; j++) {
          const e = v.items[j];
          const where = "api_keys[" + j.toString() + "]";
          if (!e.isObject) return fail(where + " must be an object {name, key_sha256}");
          const name = e.get("name");
          if (name === null || !name.isString || name.stringValue.length == 0) return fail(where + ".name must be a non-empty string");
          const hex = e.get("key_sha256");
          const plain = e.get("key");
          if (hex !== null) {
            const digest = hex.isString ? fromHex(hex.stringValue) : null;
            if (digest === null || digest.length != 32) return fail(where + ".key_sha256 must be 64 hex characters");
            this.apiKeys.push(new ApiKey(name.stringValue, digest));
          } else if (plain !== null && plain.isString && plain.stringValue.length > 0) {
            this.apiKeys.push(new ApiKey(name.stringValue, sha256(utf8Array(plain.stringValue))));
          } else {
            return fail(where + " needs key_sha256 (or key)");
          }
        }
      } else if (k == "keys") {
        if (!v.isArray) return fail("keys must be an array of strings");
        for (let j = 0; j < v.items.length; j++) {
          const e = v.items[j];
          if (!e.isString || e.stringValue.length == 0) return fail("keys[" + j.toString() + "] must be a non-empty string");
          this.apiKeys.push(new ApiKey("key" + j.toString(), sha256(utf8Array(e.stringValue))));
        }
      } else if (k == "header") {
        if (!v.isString || v.stringValue.length == 0) return fail("header must be a header name");
        this.keyHeader = v.stringValue.toLowerCase();
      } else if (k == "query_param") {
        if (!v.isString || v.stringValue.length == 0) return fail("query_param must be a non-empty string");
        this.queryParam = v.stringValue;
      } else if (k == "realm") {
        if (!v.isString || v.stringValue.indexOf("\"") >= 0) return fail("realm must be a string without quotes");
        this.realm = v.stringValue;
      } else if (k == "forward_key_name") {
        if (!v.isString) return fail("forward_key_name must be a header name");
        this.forwardKeyName = v.stringValue.toLowerCase();
      } else if (k == "strip_credentials") {
        if (!v.isBool) return fail("strip_credentials must be true or false");
        this.stripCredentials = v.boolValue;
      } else if (k == "jwt") {
        if (!this.configureJwt(v)) return false;
      } else {
        return fail("unknown key \"" + k + "\" (expected api_keys, keys, header, query_param, jwt, realm, forward_key_name, strip_credentials)");
      }
    }
    return true;
  }

  configureJwt(v: JsonValue): bool {
    if (!v.isObject) return fail("jwt must be an object");
    const j = new JwtConfig();
    let secret: Uint8Array | null = null;
    let algs = new Array<string>();
    algs.push("HS256");
    for (let i = 0; i < v.keys.length; i++) {
      const k = v.keys[i];
      const item = v.items[i];
      if (k == "secret") {
        if (!item.isString || item.stringValue.length == 0) return fail("jwt.secret must be a non-empty string");
        secret = utf8Array(item.stringValue);
      } else if (k == "secret_base64") {
        secret = item.isString ? base64UrlDecode(item.stringValue) : null;
        if (secret === null || secret.length == 0) return fail("jwt.secret_base64 must be base64 or base64url");
      } else if (k == "algorithms") {
        if (!item.isArray || item.items.length == 0) return fail("jwt.algorithms must be a non-empty array");
        algs = new Array<string>();
        for (let a = 0; a < item.items.length; a++) {
          const n = item.items[a];
          if (!n.isString || algOf(n.stringValue) < 0) return fail("jwt.algorithms: only HS256, HS384 and HS512 are supported");
          algs.push(n.stringValue);
        }
      } else if (k == "issuer") {
        if (!item.isString) return fail("jwt.issuer must be a string");
        j.issuer = item.stringValue;
      } else if (k == "audiences" || k == "audience") {
        if (item.isString) j.audiences.push(item.stringValue);
        else if (item.isArray) {
          for (let a = 0; a < item.items.length; a++) {
            if (!item.items[a].isString) return fail("jwt.audiences must be strings");
            j.audiences.push(item.items[a].stringValue);
          }
        } else return fail("jwt.audiences must be a string or an array of strings");
      } else if (k == "clock_skew_s") {
        if (!item.isNumber || item.numberValue < 0) return fail("jwt.clock_skew_s must be a number >= 0");
        j.skewS = item.numberValue;
      } else if (k == "require_exp") {
        if (!item.isBool) return fail("jwt.require_exp must be true or false");
        j.requireExp = item.boolValue;
      } else if (k == "header") {
        if (!item.isString || item.stringValue.length == 0) return fail("jwt.header must be a header name");
        j.header = item.stringValue.toLowerCase();
      } else if (k == "forward_claims") {
        if (!item.isObject) return fail("jwt.forward_claims must be an object {claim: header}");
        for (let a = 0; a < item.keys.length; a++) {
          const h = item.items[a];
          if (!h.isString || h.stringValue.length == 0) return fail("jwt.forward_claims." + item.keys[a] + " must be a header name");
          j.forwards.push(new ClaimForward(item.keys[a], h.stringValue.toLowerCase()));
        }
      } else {
        return fail("unknown key jwt." + k);
      }
    }
    if (secret === null) return fail("jwt.secret (or jwt.secret_base64) is required");
    for (let a = 0; a < algs.length; a++) {
      j.algNames.push(algs[a]);
      j.keys.push(new HmacKey(<HashAlg>algOf(algs[a]), secret));
    }
    this.jwt = j;
    return true;
  }

  refuse(message: string): bool {
    logError("auth: " + message);
    return false;
  }

  createHttpContext(id: u32): HttpContext {
    return new AuthHttp(id, this);
  }
}

const JWT_OK = 0;
const JWT_INVALID = 1; // 401
const JWT_FORBIDDEN = 2; // 403

class AuthHttp extends HttpContext {
  problem: string = "";

  onRequestHeaders(numHeaders: u32, endOfStream: bool): FilterHeadersStatus {
    const root = changetype<AuthRoot>(this.root);
    const jwt = root.jwt;
    if (jwt !== null) {
      // Claims headers only ever come from a verified token, never from the client.
      for (let i = 0; i < jwt.forwards.length; i++) removeHeaderMapValue(MapType.HttpRequestHeaders, jwt.forwards[i].header);
      const value = getHeaderMapValue(MapType.HttpRequestHeaders, jwt.header);
      if (value !== null && value.length > 7 && value.substring(0, 7).toLowerCase() == "bearer ") {
        const verdict = this.checkJwt(jwt, value.substring(7).trim());
        if (verdict == JWT_OK) {
          if (root.stripCredentials) removeHeaderMapValue(MapType.HttpRequestHeaders, jwt.header);
          return FilterHeadersStatus.Continue;
        }
        if (verdict == JWT_FORBIDDEN) return this.deny(403, "forbidden: " + this.problem, "", root);
        return this.deny(401, "unauthorized: " + this.problem,
          "Bearer realm=\"" + root.realm + "\", error=\"invalid_token\", error_description=\"" + this.problem + "\"", root);
      }
    }
    if (root.apiKeys.length > 0) {
      const forward = root.forwardKeyName.length > 0;
      if (forward) removeHeaderMapValueBytes(MapType.HttpRequestHeaders, root.forwardKeyNameBytes);
      const presented = root.presented;
      let found = getHeaderMapValueInto(MapType.HttpRequestHeaders, root.keyHeaderBytes, presented);
      if (!found && root.queryParam.length > 0) found = this.queryValue(root, presented);
      if (found) {
        const key = this.matchKey(root, presented);
        if (key !== null) {
          if (forward) replaceHeaderMapValueBytes(MapType.HttpRequestHeaders, root.forwardKeyNameBytes, key.nameBytes);
          if (root.stripCredentials) removeHeaderMapValueBytes(MapType.HttpRequestHeaders, root.keyHeaderBytes);
          return FilterHeadersStatus.Continue;
        }
        return this.deny(401, "unauthorized: invalid API key", "ApiKey realm=\"" + root.realm + "\", error=\"invalid_key\"", root);
      }
    }
    return this.deny(401, "unauthorized: credentials required", "", root);
  }

  /** Answers 401/403. An empty challenge means "list every configured scheme". */
  deny(status: u32, message: string, challenge: string, root: AuthRoot): FilterHeadersStatus {
    const headers = new Array<HeaderPair>();
    if (status == 401) {
      if (challenge.length > 0) headers.push(new HeaderPair("www-authenticate", challenge));
      else {
        if (root.jwt !== null) headers.push(new HeaderPair("www-authenticate", "Bearer realm=\"" + root.realm + "\""));
        if (root.apiKeys.length > 0) headers.push(new HeaderPair("www-authenticate", "ApiKey realm=\"" + root.realm + "\""));
      }
    }
    headers.push(new HeaderPair("content-type", "text/plain"));
    this.sendLocalResponse(status, message + "\n", headers, "auth");
    return FilterHeadersStatus.StopIteration;
  }

  /** Hashes the presented key and compares it with every stored digest (no early exit). */
  matchKey(root: AuthRoot, presented: Bytes): ApiKey | null {
    const hasher = root.hasher;
    const digest = root.digest;
    hasher.reset();
    hasher.updateRaw(presented.ptr, <usize>presented.length);
    hasher.digestInto(digest.dataStart);
    let found = -1;
    for (let i = 0; i < root.apiKeys.length; i++) {
      if (constantTimeEqual(digest, root.apiKeys[i].digest)) found = i;
    }
    return found >= 0 ? root.apiKeys[found] : null;
  }

  /** The query parameter's value (form-decoded) into `out`; the first pair whose decoded
   * name is the parameter wins. False when the path has no such pair. */
  queryValue(root: AuthRoot, out: Bytes): bool {
    const path = root.headerValue;
    if (!getHeaderMapValueInto(MapType.HttpRequestHeaders, PATH_HEADER, path)) return false;
    const q = path.indexOf(0x3f); // '?'
    if (q < 0) return false;
    const end = path.length;
    const name = root.segment;
    let start = q + 1;
    while (start <= end) {
      let stop = path.indexOf(0x26, start); // '&'
      if (stop < 0) stop = end;
      let eq = path.indexOf(0x3d, start); // '='
      if (eq < 0 || eq > stop) eq = stop;
      formDecode(path.ptr + <usize>start, eq - start, name);
      if (name.equalsBytes(root.queryParamBytes)) {
        if (eq < stop) formDecode(path.ptr + <usize>(eq + 1), stop - eq - 1, out);
        else out.clear();
        return true;
      }
      start = stop + 1;
    }
    return false;
  }

  checkJwt(cfg: JwtConfig, token: string): i32 {
    const d1 = token.indexOf(".");
    const d2 = d1 >= 0 ? token.indexOf(".", d1 + 1) : -1;
    if (d1 <= 0 || d2 <= d1 + 1 || token.indexOf(".", d2 + 1) >= 0) return this.invalid("malformed token");
    const headerJson = decodeJsonPart(token.substring(0, d1));
    if (headerJson === null) return this.invalid("malformed header");
    const alg = headerJson.get("alg");
    if (alg === null || !alg.isString) return this.invalid("missing alg");
    let key: HmacKey | null = null;
    for (let i = 0; i < cfg.algNames.length; i++) {
      if (cfg.algNames[i] == alg.stringValue) key = cfg.keys[i];
    }
    if (key === null) return this.invalid("algorithm not allowed");
    const signature = base64UrlDecode(token.substring(d2 + 1));
    if (signature === null) return this.invalid("malformed signature");
    const expected = key.sign(utf8Array(token.substring(0, d2)));
    if (!constantTimeEqual(signature, expected)) return this.invalid("bad signature");

    const claims = decodeJsonPart(token.substring(d1 + 1, d2));
    if (claims === null) return this.invalid("malformed payload");
    const now = <f64>getCurrentTimeNanoseconds() / 1e9;
    const exp = claims.get("exp");
    if (exp !== null) {
      if (!exp.isNumber) return this.invalid("exp is not a number");
      if (now > exp.numberValue + cfg.skewS) return this.invalid("token expired");
    } else if (cfg.requireExp) return this.invalid("exp required");
    const nbf = claims.get("nbf");
    if (nbf !== null) {
      if (!nbf.isNumber) return this.invalid("nbf is not a number");
      if (now + cfg.skewS < nbf.numberValue) return this.invalid("token not yet valid");
    }
    if (cfg.issuer.length > 0) {
      const iss = claims.get("iss");
      if (iss === null || !iss.isString || iss.stringValue != cfg.issuer) return this.forbidden("issuer not accepted");
    }
    if (cfg.audiences.length > 0 && !audienceMatches(claims.get("aud"), cfg.audiences)) {
      return this.forbidden("audience not accepted");
    }
    for (let i = 0; i < cfg.forwards.length; i++) {
      const f = cfg.forwards[i];
      const v = claims.get(f.claim);
      if (v === null) continue;
      let text: string | null = null;
      if (v.isString) text = v.stringValue;
      else if (v.isNumber) text = v.numberValue == Math.floor(v.numberValue) ? (<i64>v.numberValue).toString() : v.numberValue.toString();
      else if (v.isBool) text = v.boolValue ? "true" : "false";
      if (text !== null) replaceHeaderMapValue(MapType.HttpRequestHeaders, f.header, text);
    }
    return JWT_OK;
  }

  invalid(why: string): i32 {
    this.problem = why;
    return JWT_INVALID;
  }

  forbidden(why: string): i32 {
    this.problem = why;
    return JWT_FORBIDDEN;
  }
}

function decodeJsonPart(part: string): JsonValue | null {
  const bytes = base64UrlDecode(part);
  if (bytes === null) return null;
  const v = parseJson(String.UTF8.decode(bytes.buffer)).value;
  return v !== null && v.isObject ? v : null;
}

function audienceMatches(aud: JsonValue | null, accepted: string[]): bool {
  if (aud === null) return false;
  if (aud.isString) return accepted.includes(aud.stringValue);
  if (aud.isArray) {
    for (let i = 0; i < aud.items.length; i++) {
      const a = aud.items[i];
      if (a.isString && accepted.includes(a.stringValue)) return true;
    }
  }
  return false;
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** application/x-www-form-urlencoded decoding of `len` bytes at `src` into `out` ('+' is a
 * space, %XX a byte; a '%' not followed by two hex digits stays as it is). */
function formDecode(src: usize, len: i32, out: Bytes): void {
  out.clear();
  out.reserve(len);
  const dst = out.ptr;
  let o = 0;
  for (let i = 0; i < len; i++) {
    const c = <i32>load<u8>(src + <usize>i);
    if (c == 0x25 && i + 2 < len) {
      const hi = hexValue(load<u8>(src + <usize>(i + 1)));
      const lo = hexValue(load<u8>(src + <usize>(i + 2)));
      if (hi >= 0 && lo >= 0) {
        store<u8>(dst + <usize>o, <u8>((hi << 4) | lo));
        o++;
        i += 2;
        continue;
      }
    }
    store<u8>(dst + <usize>o, c == 0x2b ? 0x20 : <u8>c);
    o++;
  }
  out.length = o;
}

registerRootContext((id: u32): RootContext => new AuthRoot(id), "auth");
