// Small helpers filters share: durations, base64url, hex, ASCII case, address parsing.

import { JsonValue } from "./json";

/** Milliseconds from a JSON number (ms) or a string like "250ms", "1s", "2m", "1h", or a
 * bare number string; -1 when invalid. */
export function parseDurationMs(v: JsonValue): f64 {
  if (v.isNumber) return v.numberValue >= 0 ? v.numberValue : -1;
  if (!v.isString) return -1;
  return parseDurationString(v.stringValue);
}

export function parseDurationString(s: string): f64 {
  let unit: f64 = 1;
  let num = s;
  if (s.endsWith("ms")) { num = s.substring(0, s.length - 2); unit = 1; }
  else if (s.endsWith("s")) { num = s.substring(0, s.length - 1); unit = 1000; }
  else if (s.endsWith("m")) { num = s.substring(0, s.length - 1); unit = 60000; }
  else if (s.endsWith("h")) { num = s.substring(0, s.length - 1); unit = 3600000; }
  if (num.length == 0) return -1;
  for (let i = 0; i < num.length; i++) {
    const c = num.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || c == 0x2e)) return -1;
  }
  const n = parseFloat(num);
  if (isNaN(n) || n < 0) return -1;
  return n * unit;
}

/** "1.2.3.4:5678" → "1.2.3.4"; "[::1]:80" → "::1"; a bare address is returned as is. */
export function stripPort(address: string): string {
  if (address.startsWith("[")) {
    const end = address.indexOf("]");
    return end > 0 ? address.substring(1, end) : address;
  }
  const colon = address.lastIndexOf(":");
  // More than one colon without brackets is a bare IPv6 address.
  if (colon > 0 && address.indexOf(":") == colon) return address.substring(0, colon);
  return address;
}

export function toLowerAscii(s: string): string {
  let needs = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) { needs = true; break; }
  }
  return needs ? s.toLowerCase() : s;
}

const HEX = "0123456789abcdef";

export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    out += HEX.charAt(b >> 4) + HEX.charAt(b & 15);
  }
  return out;
}

/** Hex string → bytes, or null when malformed. */
export function fromHex(s: string): Uint8Array | null {
  if (s.length & 1) return null;
  const out = new Uint8Array(s.length >> 1);
  for (let i = 0; i < out.length; i++) {
    const hi = hexDigit(s.charCodeAt(2 * i));
    const lo = hexDigit(s.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) return null;
    out[i] = <u8>((hi << 4) | lo);
  }
  return out;
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

function base64Digit(c: i32): i32 {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41;
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52;
  if (c == 0x2d || c == 0x2b) return 62; // '-' (url) or '+'
  if (c == 0x5f || c == 0x2f) return 63; // '_' (url) or '/'
  return -1;
}

/** Decodes base64url or base64 (padding optional); null when malformed. */
export function base64UrlDecode(s: string): Uint8Array | null {
  let len = s.length;
  while (len > 0 && s.charCodeAt(len - 1) == 0x3d) len--;
  if ((len & 3) == 1) return null;
  const outLen = (len * 3) >> 2;
  const out = new Uint8Array(outLen);
  let acc: u32 = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < len; i++) {
    const d = base64Digit(s.charCodeAt(i));
    if (d < 0) return null;
    acc = (acc << 6) | <u32>d;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (o < outLen) out[o++] = <u8>((acc >> bits) & 0xff);
    }
  }
  return out;
}

/** Bytes of an ArrayBuffer-backed string, as a Uint8Array view. */
export function utf8Array(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}

/** Compares two byte arrays in time that depends only on their lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): bool {
  const n = a.length;
  if (n != b.length) return false;
  const pa = a.dataStart;
  const pb = b.dataStart;
  let diff: u32 = 0;
  for (let i = 0; i < n; i++) diff |= <u32>(load<u8>(pa + <usize>i) ^ load<u8>(pb + <usize>i));
  return diff == 0;
}
