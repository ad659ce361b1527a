// sniff: a proxy-wasm network filter that looks at the first bytes of a TCP connection and
// names the protocol, for Wisp's L4 listeners (`tcp.sniff`). It reads the DownstreamData
// buffer in proxy_on_downstream_data and publishes, with proxy_set_property:
//   protocol   tls | http1 | http2 | redis | dubbo | bolt | proxy | unknown
//   tls.sni    the ClientHello's server name (when tls and present)
//   tls.alpn   the offered ALPN protocols, comma-separated (when tls and present)
// When the bytes so far are a prefix of something it recognises it sets nothing: the host
// waits for more and calls again with everything held; with end_of_stream it always decides.
export * from "../../sdk-as/assembly/exports";
import { RootContext, registerRootContext } from "../../sdk-as/assembly/index";
import { getBufferBytes, setProperty } from "../../sdk-as/assembly/hostcalls";
import { BufferType } from "../../sdk-as/assembly/types";

registerRootContext((id: u32): RootContext => new RootContext(id), "sniff");

const UNDECIDED = "";
const H2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PROXY_V2_SIG: u8[] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

let sni = "";
let alpn = "";

export function proxy_on_new_connection(contextId: u32): u32 {
  return 0;
}

export function proxy_on_downstream_data(contextId: u32, dataSize: u32, endOfStream: u32): u32 {
  const buf = dataSize > 0 ? getBufferBytes(BufferType.DownstreamData, 0, dataSize) : null;
  const p = buf !== null ? changetype<usize>(buf) : 0;
  const n = buf !== null ? <u32>buf.byteLength : 0;
  sni = "";
  alpn = "";
  let protocol = n == 0 ? UNDECIDED : detect(p, n);
  if (protocol == UNDECIDED) {
    if (endOfStream == 0) return 0;
    protocol = n > 0 && load<u8>(p) == 0x16 ? "tls" : "unknown";
  }
  set("protocol", protocol);
  if (sni.length > 0) set("tls.sni", sni);
  if (alpn.length > 0) set("tls.alpn", alpn);
  return 0;
}

function set(name: string, value: string): void {
  setProperty([name], String.UTF8.encode(value));
}

function detect(p: usize, n: u32): string {
  const b0 = load<u8>(p);
  if (b0 == 0x16) return tls(p, n);
  if (b0 == 0xda) return n < 2 ? UNDECIDED : load<u8>(p + 1) == 0xbb ? "dubbo" : "unknown";
  if (b0 == 0x0d) return prefixOf(p, n, PROXY_V2_SIG) ? (n >= <u32>PROXY_V2_SIG.length ? "proxy" : UNDECIDED) : "unknown";
  if (b0 == 0x01 || b0 == 0x02) return bolt(p, n, b0);
  if (b0 == 0x2a || b0 == 0x24 || b0 == 0x2b || b0 == 0x2d || b0 == 0x3a) return resp(p, n, b0);
  const h2 = textPrefix(p, n, H2_PREFACE);
  if (h2 == 1) return "http2";
  if (h2 == 0) return UNDECIDED;
  if (textPrefix(p, n, "PROXY ") == 1) return "proxy";
  return http1(p, n);
}

/** 1: the bytes start with `text`; 0: they are a shorter prefix of it; -1: they differ. */
function textPrefix(p: usize, n: u32, text: string): i32 {
  const len = <u32>text.length;
  const m = n < len ? n : len;
  for (let i: u32 = 0; i < m; i++) if (<u32>load<u8>(p + i) != <u32>text.charCodeAt(i)) return -1;
  return n >= len ? 1 : 0;
}

function prefixOf(p: usize, n: u32, sig: u8[]): bool {
  const m = n < <u32>sig.length ? n : <u32>sig.length;
  for (let i: u32 = 0; i < m; i++) if (load<u8>(p + i) != sig[i]) return false;
  return true;
}

/** A method token (upper-case letters, at most 16) then a space then a target. */
function http1(p: usize, n: u32): string {
  let i: u32 = 0;
  while (i < n && i < 17) {
    const c = load<u8>(p + i);
    if (c == 0x20) break;
    if (c < 0x41 || c > 0x5a) return "unknown";
    i++;
  }
  if (i == n) return i < 17 ? UNDECIDED : "unknown";
  if (i == 0 || load<u8>(p + i) != 0x20) return "unknown";
  if (i + 1 == n) return UNDECIDED;
  const t = load<u8>(p + i + 1);
  // origin-form "/", asterisk-form "*", absolute-form "http://", authority-form for CONNECT
  return t == 0x2f || t == 0x2a || (t >= 0x61 && t <= 0x7a) || (t >= 0x30 && t <= 0x39) || (t >= 0x41 && t <= 0x5a) ? "http1" : "unknown";
}

/** RESP: * $ : then an integer then CRLF; + - then a line. */
function resp(p: usize, n: u32, b0: u8): string {
  const numeric = b0 == 0x2a || b0 == 0x24 || b0 == 0x3a;
  let i: u32 = 1;
  if (numeric && i < n && load<u8>(p + i) == 0x2d) i++; // *-1 / $-1
  const start = i;
  while (i < n && i < 64) {
    const c = load<u8>(p + i);
    if (c == 0x0d) break;
    if (numeric ? c < 0x30 || c > 0x39 : c < 0x20 || c > 0x7e) return "unknown";
    i++;
  }
  if (i >= 64) return "unknown";
  if (i == n) return UNDECIDED;
  if (numeric && i == start) return "unknown";
  if (i + 1 == n) return UNDECIDED;
  return load<u8>(p + i + 1) == 0x0a ? "redis" : "unknown";
}

/** SOFA Bolt: v1 = proto 1, type (0 response, 1 request, 2 oneway), cmdcode u16 (0..2);
 * v2 = proto 2, ver1, then the same type and cmdcode. ver1 1 is v1's layout under proto 2,
 * ver1 2 adds a CRC32 trailer (what sofa-bolt-node's 'bolt2' with crcEnable sends). */
function bolt(p: usize, n: u32, b0: u8): string {
  const base: u32 = b0 == 0x01 ? 1 : 2;
  if (n < base + 3) return UNDECIDED;
  if (b0 == 0x02) {
    const ver1 = load<u8>(p + 1);
    if (ver1 != 0x01 && ver1 != 0x02) return "unknown";
  }
  const type = load<u8>(p + base);
  const cmdHi = load<u8>(p + base + 1);
  const cmdLo = load<u8>(p + base + 2);
  return type <= 2 && cmdHi == 0 && cmdLo <= 2 ? "bolt" : "unknown";
}

function u16at(p: usize, i: u32): u32 {
  return (<u32>load<u8>(p + i) << 8) | <u32>load<u8>(p + i + 1);
}

/** A TLS record carrying a ClientHello; SNI and ALPN read when the whole first record is here. */
function tls(p: usize, n: u32): string {
  if (n < 2) return UNDECIDED;
  if (load<u8>(p + 1) != 0x03) return "unknown";
  if (n < 6) return UNDECIDED;
  if (load<u8>(p + 5) != 0x01) return "unknown"; // handshake type ClientHello
  const recordEnd: u32 = 5 + u16at(p, 3);
  if (n < recordEnd) return UNDECIDED;
  let i: u32 = 9 + 2 + 32; // record hdr, handshake hdr, client_version, random
  if (i + 1 > recordEnd) return "tls";
  i += 1 + <u32>load<u8>(p + i); // session id
  if (i + 2 > recordEnd) return "tls";
  i += 2 + u16at(p, i); // cipher suites
  if (i + 1 > recordEnd) return "tls";
  i += 1 + <u32>load<u8>(p + i); // compression methods
  if (i + 2 > recordEnd) return "tls";
  let extEnd = i + 2 + u16at(p, i);
  if (extEnd > recordEnd) extEnd = recordEnd;
  i += 2;
  while (i + 4 <= extEnd) {
    const type = u16at(p, i);
    const len = u16at(p, i + 2);
    const body = i + 4;
    if (body + len > extEnd) break;
    if (type == 0 && len >= 5) {
      // server_name_list: u16 length, then entries of (u8 type, u16 length, name)
      let j = body + 2;
      while (j + 3 <= body + len) {
        const nameType = load<u8>(p + j);
        const nameLen = u16at(p, j + 1);
        if (j + 3 + nameLen > body + len) break;
        if (nameType == 0) {
          sni = String.UTF8.decodeUnsafe(p + j + 3, nameLen).toLowerCase();
          break;
        }
        j += 3 + nameLen;
      }
    } else if (type == 16 && len >= 2) {
      // protocol_name_list: u16 length, then (u8 length, name) entries
      let j = body + 2;
      let list = "";
      while (j + 1 <= body + len) {
        const l = <u32>load<u8>(p + j);
        if (j + 1 + l > body + len) break;
        const proto = String.UTF8.decodeUnsafe(p + j + 1, l);
        list = list.length == 0 ? proto : list + "," + proto;
        j += 1 + l;
      }
      alpn = list;
    }
    i = body + len;
  }
  return "tls";
}
