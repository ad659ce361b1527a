// wisprpc-sniff: names the made-up binary protocol WISPRPC on a Wisp L4 listener (`tcp.sniff`).
//
// WISPRPC hello, the first bytes a client sends:
//   4 bytes  magic 0x57 0x52 0x50 0x43 ("WRPC")
//   1 byte   version
//   2 bytes  big-endian length of the service name (1..MAX_SERVICE)
//   n bytes  service name, printable ASCII
//
// Published with proxy_set_property (what Wisp's tcp.routes and metrics read):
//   protocol          wisprpc | unknown
//   wisprpc.service   the service name (when the hello is complete)
//   wisprpc.version   the version byte, in decimal
// Setting nothing means "not sure yet": Wisp calls again with every byte held so far, and
// with end_of_stream when first_bytes, first_bytes_timeout or the client's FIN runs out.

export * from "@wisp/sdk-as/assembly/exports"; // the proxy-wasm callbacks: keep this line
import { BufferType, RootContext, getBufferBytes, registerRootContext, setProperty } from "@wisp/sdk-as/assembly";

registerRootContext((id: u32): RootContext => new RootContext(id), "wisprpc-sniff");

const MAGIC: u8[] = [0x57, 0x52, 0x50, 0x43];
const HEADER: u32 = 7; // magic + version + name length
/** Longer names are refused: Wisp holds at most first_bytes (default 1KB) for a sniff. */
const MAX_SERVICE: u32 = 255;

// Network-context callbacks. @wisp/sdk-as dispatches the HTTP callbacks to HttpContext but has
// no network (L4) context class yet, so these two proxy-wasm exports are written here, the
// same way Wisp's built-in filters/sniff does. Each sniff call gets a fresh context and the
// whole held prefix, so no per-connection state is kept.
export function proxy_on_new_connection(contextId: u32): u32 {
  return 0; // Continue
}

export function proxy_on_downstream_data(contextId: u32, dataSize: u32, endOfStream: u32): u32 {
  const buf = dataSize > 0 ? getBufferBytes(BufferType.DownstreamData, 0, dataSize) : null;
  const n: u32 = buf !== null ? <u32>buf.byteLength : 0;
  const p: usize = buf !== null ? changetype<usize>(buf) : 0;
  const verdict = classify(p, n);
  if (verdict == Verdict.Undecided) {
    if (endOfStream == 0) return 0; // wait for more bytes
    // The stream ended early: a whole magic is still a WISPRPC client, just a short one.
    set("protocol", n >= <u32>MAGIC.length ? "wisprpc" : "unknown");
    return 0;
  }
  if (verdict == Verdict.Other) {
    set("protocol", "unknown");
    return 0;
  }
  set("protocol", "wisprpc");
  set("wisprpc.version", (<u32>load<u8>(p + 4)).toString());
  set("wisprpc.service", String.UTF8.decodeUnsafe(p + HEADER, serviceLength(p)));
  return 0;
}

enum Verdict { Undecided, Other, Hello }

/** What the first `n` bytes at `p` are so far. */
function classify(p: usize, n: u32): Verdict {
  if (n == 0) return Verdict.Undecided;
  const m: u32 = n < <u32>MAGIC.length ? n : <u32>MAGIC.length;
  for (let i: u32 = 0; i < m; i++) if (load<u8>(p + i) != MAGIC[i]) return Verdict.Other;
  if (n < HEADER) return Verdict.Undecided;
  const len = serviceLength(p);
  if (len == 0 || len > MAX_SERVICE) return Verdict.Other;
  const have = n - HEADER < len ? n - HEADER : len;
  for (let i: u32 = 0; i < have; i++) {
    const c = load<u8>(p + HEADER + i);
    if (c < 0x21 || c > 0x7e) return Verdict.Other;
  }
  return have < len ? Verdict.Undecided : Verdict.Hello;
}

function serviceLength(p: usize): u32 {
  return (<u32>load<u8>(p + 5) << 8) | <u32>load<u8>(p + 6);
}

function set(name: string, value: string): void {
  setProperty([name], String.UTF8.encode(value));
}
