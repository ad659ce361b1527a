// HTTP/1 found on a tcp listener is served by an HTTP listener of the same config (a tcp
// route with `http_listener: NAME`), so its routes, HTTP filters, limits and access log
// apply. Wisp cannot give a node:net socket to uWS, so the tcp listener connects over
// loopback to a private port of that HTTP listener and writes a PROXY protocol v2 header
// with the client's real address in front of the held first bytes.
//
// Trust: the private port is a second uWS listener with the target's routes, bound to
// 127.0.0.1 on a kernel-chosen port, and it is the only place the PROXY header is believed
// (proxy_protocol: true on that copy only). The target's own address keeps its own
// proxy_protocol setting, so an external client can never present a PROXY header that is
// believed because of this feature. What remains is the usual loopback trust (nginx's
// `set_real_ip_from 127.0.0.1`): a process on the same host that finds the private port can
// claim any client address on it. Where that matters, run Wisp where untrusted local
// processes cannot reach 127.0.0.1 (a network namespace / pod of its own).
import net from 'node:net';
import type { ListenerConfig, WispConfig } from '../config/types.js';
import { HttpListener } from './http.js';
import type { ListenerState } from './state.js';

/** Where a hand-off to an HTTP listener connects: its private loopback port, 0 = none. */
export interface HandoffPorts {
  port(listener: string): number;
}

export const HANDOFF_HOST = '127.0.0.1';

/** The HTTP listeners some tcp route of `config` hands connections to. */
export function handoffTargets(config: WispConfig): Set<string> {
  const out = new Set<string>();
  for (const l of config.listeners) for (const r of l.tcp?.routes ?? []) if (r.http_listener !== undefined) out.add(r.http_listener);
  return out;
}

/** The private copy of an HTTP listener: same routes and limits, loopback only, PROXY v2 trusted. */
export function handoffListenerConfig(target: ListenerConfig): ListenerConfig {
  return { ...target, host: HANDOFF_HOST, port: 0, proxy_protocol: true };
}

/** The private listeners, kept across reloads (their ports stay the same while the target
 * exists) and driven by Wisp.apply in its three steps: stage (build states; may throw),
 * bind (open listeners for new targets), commit (swap states, close dropped targets). */
export class HttpHandoffs implements HandoffPorts {
  private readonly listeners = new Map<string, HttpListener>();
  private staged = new Map<string, ListenerState>();
  private opened: HttpListener[] = [];

  port(listener: string): number {
    return this.listeners.get(listener)?.port ?? 0;
  }

  stage(next: WispConfig, buildState: (lc: ListenerConfig) => ListenerState): void {
    this.staged = new Map();
    this.opened = [];
    for (const name of handoffTargets(next)) {
      const target = next.listeners.find((l) => l.name === name && l.protocol !== 'tcp');
      // The loader refuses a config naming a missing listener; a config built in code may not have been loaded.
      if (target === undefined) throw new Error(`tcp route hands connections to "${name}", which is not an HTTP listener of this config`);
      this.staged.set(name, buildState(handoffListenerConfig(target)));
    }
  }

  async bind(): Promise<void> {
    for (const [name, st] of this.staged) {
      if (this.listeners.has(name)) continue;
      const l = new HttpListener(st);
      await l.listen();
      this.opened.push(l);
    }
  }

  /** The reload failed after bind: close what it opened. */
  abort(): void {
    for (const l of this.opened) l.close();
    this.opened = [];
  }

  commit(): void {
    for (const l of this.opened) this.listeners.set(l.config.name, l);
    this.opened = [];
    for (const [name, l] of this.listeners) {
      const st = this.staged.get(name);
      if (st === undefined) {
        l.close();
        this.listeners.delete(name);
      } else {
        l.state = st;
      }
    }
    this.staged = new Map();
  }

  close(): void {
    for (const l of this.listeners.values()) l.close();
    this.listeners.clear();
  }
}

// PROXY protocol v2 (haproxy's proxy-protocol.txt, section 2.2): 12-byte signature, then
// version 2 + PROXY command, the address family + TCP, the address block length, and the
// addresses and ports in network order.
const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const V2_PROXY = 0x21;
const TCP_OVER_IPV4 = 0x11;
const TCP_OVER_IPV6 = 0x21;

/** The PROXY v2 header for a client socket (its remote → local address), or null when the
 * socket has no address any more (it closed). */
export function proxyV2Header(socket: net.Socket): Buffer | null {
  const src = socket.remoteAddress;
  const dst = socket.localAddress;
  if (src === undefined || dst === undefined) return null;
  const srcPort = socket.remotePort ?? 0;
  const dstPort = socket.localPort ?? 0;
  const src4 = ipv4Of(src);
  const dst4 = ipv4Of(dst);
  if (src4 !== null && dst4 !== null) {
    const b = Buffer.allocUnsafe(16 + 12);
    writeHead(b, TCP_OVER_IPV4, 12);
    writeIPv4(b, 16, src4);
    writeIPv4(b, 20, dst4);
    b.writeUInt16BE(srcPort, 24);
    b.writeUInt16BE(dstPort, 26);
    return b;
  }
  const b = Buffer.alloc(16 + 36);
  writeHead(b, TCP_OVER_IPV6, 36);
  // A v4 address next to a v6 one travels in its v4-mapped form (::ffff:a.b.c.d).
  if (!(src4 !== null ? writeMapped(b, 16, src4) : writeIPv6(b, 16, src))) return null;
  if (!(dst4 !== null ? writeMapped(b, 32, dst4) : writeIPv6(b, 32, dst))) return null;
  b.writeUInt16BE(srcPort, 48);
  b.writeUInt16BE(dstPort, 50);
  return b;
}

function writeHead(b: Buffer, family: number, length: number): void {
  for (let i = 0; i < 12; i++) b[i] = SIGNATURE[i]!;
  b[12] = V2_PROXY;
  b[13] = family;
  b.writeUInt16BE(length, 14);
}

/** "a.b.c.d" of a v4 or v4-mapped v6 address, else null. */
function ipv4Of(address: string): string | null {
  if (net.isIPv4(address)) return address;
  if (address.startsWith('::ffff:') && net.isIPv4(address.slice(7))) return address.slice(7);
  return null;
}

function writeIPv4(b: Buffer, at: number, v4: string): void {
  let part = 0;
  let value = 0;
  for (let i = 0; i < v4.length; i++) {
    const c = v4.charCodeAt(i);
    if (c === 46 /* . */) {
      b[at + part++] = value;
      value = 0;
    } else {
      value = value * 10 + (c - 48);
    }
  }
  b[at + part] = value;
}

function writeMapped(b: Buffer, at: number, v4: string): boolean {
  b.fill(0, at, at + 10);
  b[at + 10] = 0xff;
  b[at + 11] = 0xff;
  writeIPv4(b, at + 12, v4);
  return true;
}

/** 16 bytes of an IPv6 text address (with "::", a zone suffix or a dotted v4 tail). */
export function writeIPv6(b: Buffer, at: number, text: string): boolean {
  const zone = text.indexOf('%');
  const addr = zone >= 0 ? text.slice(0, zone) : text;
  if (!net.isIPv6(addr)) return false;
  const groups: number[] = [];
  const parse = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = g.split('.').map(Number);
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const gap = addr.indexOf('::');
  if (gap < 0) {
    groups.push(...parse(addr));
  } else {
    const head = parse(addr.slice(0, gap));
    const tail = parse(addr.slice(gap + 2));
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  }
  if (groups.length !== 8) return false;
  for (let i = 0; i < 8; i++) b.writeUInt16BE(groups[i]!, at + 2 * i);
  return true;
}
