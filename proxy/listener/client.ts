// What both entry points (HTTP requests and WebSocket upgrades) read off a uWS request
// the same way: its header list, the client's address, the request id.
import { randomUUID } from 'node:crypto';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { headerValue } from '../router/match.js';

// req.forEach gives (name, value); a module-level target avoids a closure per request.
let collecting: string[] = [];
function collectHeader(name: string, value: string): void {
  collecting.push(name, value);
}

/** The request's headers as a flat [name, value, ...] list (names lower-case, as uWS gives them). */
export function readHeaders(req: HttpRequest): string[] {
  collecting = [];
  req.forEach(collectHeader);
  return collecting;
}

/** A client-supplied x-request-id is kept when it is sane; otherwise one is made. */
export function requestIdFrom(headers: readonly string[]): string {
  const v = headerValue(headers, 'x-request-id');
  if (v !== undefined && v.length > 0 && v.length <= 200) return v;
  return randomUUID();
}

/** The client's address: with proxy_protocol, the one a PROXY v2 header carried (uWS
 * parses it), else the peer's. IPv4 (and IPv4-mapped IPv6) is formatted from the binary
 * form, which costs less than uWS's text form on every request. */
export function clientAddressOf(res: HttpResponse, proxyProtocol: boolean): string {
  if (proxyProtocol) {
    const carried = addressText(new Uint8Array(res.getProxiedRemoteAddress()));
    if (carried !== '') return carried;
    const text = Buffer.from(res.getProxiedRemoteAddressAsText()).toString('latin1');
    if (text !== '') return text;
  }
  const peer = addressText(new Uint8Array(res.getRemoteAddress()));
  return peer !== '' ? peer : Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
}

/** A binary IPv4/IPv6 address as text ('' for any other length, e.g. no PROXY header). */
function addressText(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length === 16) return isV4Mapped(b) ? `${b[12]}.${b[13]}.${b[14]}.${b[15]}` : formatIPv6(b);
  return '';
}

/** RFC 5952 text (uWS gives "0000:…:0001"; x-forwarded-for and logs want "::1"). */
export function formatIPv6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // The longest run of two or more zero groups becomes "::" (the first one on a tie).
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

