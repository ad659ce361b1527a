// A small JSON reader for plugin configuration (AssemblyScript has no JSON.parse and no
// exceptions: parse errors come back as null plus a message with the offset).

export enum JsonKind {
  Null = 0,
  Bool = 1,
  Number = 2,
  String = 3,
  Array = 4,
  Object = 5,
}

export class JsonValue {
  kind: JsonKind = JsonKind.Null;
  boolValue: bool = false;
  numberValue: f64 = 0;
  stringValue: string = "";
  /** Array items, or object values (parallel to keys). */
  items: JsonValue[] = [];
  /** Object keys in document order. */
  keys: string[] = [];

  get isNull(): bool { return this.kind == JsonKind.Null; }
  get isBool(): bool { return this.kind == JsonKind.Bool; }
  get isNumber(): bool { return this.kind == JsonKind.Number; }
  get isString(): bool { return this.kind == JsonKind.String; }
  get isArray(): bool { return this.kind == JsonKind.Array; }
  get isObject(): bool { return this.kind == JsonKind.Object; }

  /** Member of an object, or null (also when this is not an object). */
  get(key: string): JsonValue | null {
    if (this.kind != JsonKind.Object) return null;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }

  has(key: string): bool { return this.get(key) !== null; }

  /** Type names for error messages. */
  get kindName(): string {
    switch (this.kind) {
      case JsonKind.Null: return "null";
      case JsonKind.Bool: return "boolean";
      case JsonKind.Number: return "number";
      case JsonKind.String: return "string";
      case JsonKind.Array: return "array";
      default: return "object";
    }
  }

  static null(): JsonValue { return new JsonValue(); }
  static bool(v: bool): JsonValue { const j = new JsonValue(); j.kind = JsonKind.Bool; j.boolValue = v; return j; }
  static number(v: f64): JsonValue { const j = new JsonValue(); j.kind = JsonKind.Number; j.numberValue = v; return j; }
  static string(v: string): JsonValue { const j = new JsonValue(); j.kind = JsonKind.String; j.stringValue = v; return j; }
}

class JsonReader {
  pos: i32 = 0;
  error: string = "";

  constructor(public text: string) {}

  fail(message: string): JsonValue | null {
    if (this.error.length == 0) this.error = message + " at offset " + this.pos.toString();
    return null;
  }

  skipSpace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d) this.pos++;
      else break;
    }
  }

  value(depth: i32): JsonValue | null {
    if (depth > 64) return this.fail("nesting too deep");
    this.skipSpace();
    if (this.pos >= this.text.length) return this.fail("unexpected end");
    const c = this.text.charCodeAt(this.pos);
    if (c == 0x7b) return this.object(depth);
    if (c == 0x5b) return this.array(depth);
    if (c == 0x22) {
      const s = this.string();
      return s === null ? null : JsonValue.string(s);
    }
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (this.literal("true")) return JsonValue.bool(true);
    if (this.literal("false")) return JsonValue.bool(false);
    if (this.literal("null")) return JsonValue.null();
    return this.fail("unexpected character '" + String.fromCharCode(c) + "'");
  }

  literal(word: string): bool {
    if (this.text.substr(this.pos, word.length) == word) {
      this.pos += word.length;
      return true;
    }
    return false;
  }

  /** JSON number grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
  number(): JsonValue | null {
    const t = this.text;
    const start = this.pos;
    if (this.peek() == 0x2d) this.pos++;
    if (this.peek() == 0x30) this.pos++;
    else if (this.digits() == 0) return this.fail("bad number");
    if (this.peek() == 0x2e) {
      this.pos++;
      if (this.digits() == 0) return this.fail("bad number");
    }
    const e = this.peek();
    if (e == 0x65 || e == 0x45) {
      this.pos++;
      const sign = this.peek();
      if (sign == 0x2b || sign == 0x2d) this.pos++;
      if (this.digits() == 0) return this.fail("bad number");
    }
    return JsonValue.number(parseFloat(t.substring(start, this.pos)));
  }

  peek(): i32 {
    return this.pos < this.text.length ? this.text.charCodeAt(this.pos) : -1;
  }

  digits(): i32 {
    let n = 0;
    while (true) {
      const c = this.peek();
      if (c < 0x30 || c > 0x39) return n;
      this.pos++;
      n++;
    }
  }

  string(): string | null {
    const t = this.text;
    this.pos++; // opening quote
    let out = "";
    let runStart = this.pos;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c == 0x22) {
        out += t.substring(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) {
        this.fail("control character in string");
        return null;
      }
      if (c == 0x5c) {
        out += t.substring(runStart, this.pos);
        this.pos++;
        if (this.pos >= t.length) break;
        const e = t.charCodeAt(this.pos);
        this.pos++;
        if (e == 0x22) out += "\"";
        else if (e == 0x5c) out += "\\";
        else if (e == 0x2f) out += "/";
        else if (e == 0x62) out += "\b";
        else if (e == 0x66) out += "\f";
        else if (e == 0x6e) out += "\n";
        else if (e == 0x72) out += "\r";
        else if (e == 0x74) out += "\t";
        else if (e == 0x75) {
          if (this.pos + 4 > t.length) break;
          const code = parseHex4(t, this.pos);
          if (code < 0) {
            this.fail("bad \\u escape");
            return null;
          }
          out += String.fromCharCode(code);
          this.pos += 4;
        } else {
          this.fail("bad escape");
          return null;
        }
        runStart = this.pos;
        continue;
      }
      this.pos++;
    }
    this.fail("unterminated string");
    return null;
  }

  array(depth: i32): JsonValue | null {
    this.pos++;
    const out = new JsonValue();
    out.kind = JsonKind.Array;
    this.skipSpace();
    if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == 0x5d) {
      this.pos++;
      return out;
    }
    while (true) {
      const v = this.value(depth + 1);
      if (v === null) return null;
      out.items.push(v);
      this.skipSpace();
      if (this.pos >= this.text.length) return this.fail("unterminated array");
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c == 0x5d) return out;
      if (c != 0x2c) return this.fail("expected ',' or ']'");
    }
  }

  object(depth: i32): JsonValue | null {
    this.pos++;
    const out = new JsonValue();
    out.kind = JsonKind.Object;
    this.skipSpace();
    if (this.pos < this.text.length && this.text.charCodeAt(this.pos) == 0x7d) {
      this.pos++;
      return out;
    }
    while (true) {
      this.skipSpace();
      if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x22) return this.fail("expected a key");
      const key = this.string();
      if (key === null) return null;
      this.skipSpace();
      if (this.pos >= this.text.length || this.text.charCodeAt(this.pos) != 0x3a) return this.fail("expected ':'");
      this.pos++;
      const v = this.value(depth + 1);
      if (v === null) return null;
      out.keys.push(key);
      out.items.push(v);
      this.skipSpace();
      if (this.pos >= this.text.length) return this.fail("unterminated object");
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c == 0x7d) return out;
      if (c != 0x2c) return this.fail("expected ',' or '}'");
    }
  }
}

function parseHex4(t: string, at: i32): i32 {
  let v = 0;
  for (let i = 0; i < 4; i++) {
    const c = t.charCodeAt(at + i);
    let d: i32;
    if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
    else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
    else return -1;
    v = (v << 4) | d;
  }
  return v;
}

/** Result of parseJson: value is null when error is set. */
export class JsonParseResult {
  constructor(public value: JsonValue | null, public error: string) {}
}

export function parseJson(text: string): JsonParseResult {
  const r = new JsonReader(text);
  const v = r.value(0);
  if (v === null) return new JsonParseResult(null, r.error);
  r.skipSpace();
  if (r.pos != text.length) return new JsonParseResult(null, "trailing characters at offset " + r.pos.toString());
  return new JsonParseResult(v, "");
}
