// Header rules shared by the request and response directions.

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus the framing headers Wisp sets itself. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
  'host',
  'x-request-id',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

/** Names listed in a Connection header value ("close, x-foo"), lower-cased. */
export function connectionTokens(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t !== '' && t !== 'close' && t !== 'keep-alive') out.push(t);
  }
  return out;
}

export interface ForwardInfo {
  host: string;            // Host to send upstream
  originalHost: string;    // Host the client sent (x-forwarded-host)
  clientAddress: string;
  proto: 'http' | 'https';
  requestId: string;
  via: string;
}

/** Build the upstream-bound header list from the client's (flat, lower-case names):
 * hop-by-hop removed, x-forwarded-*, x-request-id and via set. `connection` is the
 * client's Connection header value ('' when absent). */
export function forwardRequestHeaders(headers: readonly string[], connection: string, info: ForwardInfo): string[] {
  const extra = connection === '' ? null : connectionTokens(connection);
  const out: string[] = ['host', info.host];
  let xff = '';
  let via = '';
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (HOP_BY_HOP.has(name)) continue;
    if (extra !== null && extra.includes(name)) continue;
    if (name === 'x-forwarded-for') {
      xff = xff === '' ? headers[i + 1]! : `${xff}, ${headers[i + 1]!}`;
      continue;
    }
    if (name === 'via') {
      via = via === '' ? headers[i + 1]! : `${via}, ${headers[i + 1]!}`;
      continue;
    }
    out.push(name, headers[i + 1]!);
  }
  out.push(
    'x-forwarded-for', xff === '' ? info.clientAddress : `${xff}, ${info.clientAddress}`,
    'x-forwarded-proto', info.proto,
    'x-forwarded-host', info.originalHost,
    'x-request-id', info.requestId,
    'via', via === '' ? info.via : `${via}, ${info.via}`,
  );
  return out;
}

/** Response headers never passed back to the client: uWS writes its own Date and framing. */
export function isDroppedResponseHeader(name: string): boolean {
  return name === 'date' || name === 'content-length' || name === 'transfer-encoding' || name === 'connection' || name === 'keep-alive';
}
