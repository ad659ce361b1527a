// Worker-side view of one request: what the filters may read and mutate during a phase.

import { decodePacked, packedLength, packedValue, unpackStrings } from './wire.js';

export interface LocalResponse {
  status: number;
  headers: string[];
  body: Uint8Array;
  details: string;
}

/** Body bytes one filter holds (StopIterationAndBuffer), grown by doubling so that a filter
 * buffering a large body costs amortised copies, not one concat per chunk. */
export class BodyBuffer {
  private bytes: Uint8Array;
  length = 0;

  constructor(first: Uint8Array) {
    this.bytes = new Uint8Array(Math.max(first.length * 2, 16 * 1024));
    this.bytes.set(first);
    this.length = first.length;
  }

  append(data: Uint8Array): void {
    const need = this.length + data.length;
    if (need > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (size < need) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.bytes.subarray(0, this.length));
      this.bytes = next;
    }
    this.bytes.set(data, this.length);
    this.length = need;
  }

  /** The held bytes, valid until the next append. */
  view(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }
}

/** The values of `key` in a flat [name, value, ...] list, joined with ',' (null: none). */
export function mapValue(list: string[], key: string): string | null {
  let out: string | null = null;
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === key) out = out === null ? list[i + 1] : `${out},${list[i + 1]}`;
  }
  return out;
}

/** Index of each stream info string (wire.ts STREAM_INFO_STRINGS order). */
export const Info = {
  Method: 0,
  Scheme: 1,
  Authority: 2,
  Path: 3,
  ClientAddress: 4,
  Listener: 5,
  Route: 6,
  Cluster: 7,
  RequestId: 8,
  Destination: 9,
} as const;

export class StreamState {
  readonly id: number;
  clientPort = 0;
  /** 0: unknown. */
  connectionId = 0;
  // The stream's info and heads arrive packed (BinReader.packed) and are decoded on first
  // read: most filters read a few of them, many read none, and decoding ~20 strings per
  // request was a third of a no-op filter's cost in the worker.
  private packedInfo: string | null = null;
  /** Bit i: info[i] holds its decoded (or since set) value. */
  private infoDecoded = 0;
  /** Bit i: info[i] was set after the packed info came (its packed bytes are stale). */
  private infoSet = 0;
  private packedRequest: string | null = null;
  private packedRequestCount = 0;
  private packedResponse: string | null = null;
  private packedResponseCount = 0;
  private info: string[] = ['', '', '', '', '', '', '', '', '', ''];
  private request: string[] = [];
  private response: string[] = [];

  get method(): string {
    return this.infoAt(0);
  }
  set method(v: string) {
    this.setInfoAt(0, v);
  }
  get scheme(): string {
    return this.infoAt(1);
  }
  set scheme(v: string) {
    this.setInfoAt(1, v);
  }
  get authority(): string {
    return this.infoAt(2);
  }
  set authority(v: string) {
    this.setInfoAt(2, v);
  }
  get path(): string {
    return this.infoAt(3);
  }
  set path(v: string) {
    this.setInfoAt(3, v);
  }
  get clientAddress(): string {
    return this.infoAt(4);
  }
  set clientAddress(v: string) {
    this.setInfoAt(4, v);
  }
  get listenerName(): string {
    return this.infoAt(5);
  }
  set listenerName(v: string) {
    this.setInfoAt(5, v);
  }
  get routeName(): string {
    return this.infoAt(6);
  }
  set routeName(v: string) {
    this.setInfoAt(6, v);
  }
  get clusterName(): string {
    return this.infoAt(7);
  }
  set clusterName(v: string) {
    this.setInfoAt(7, v);
  }
  get requestId(): string {
    return this.infoAt(8);
  }
  set requestId(v: string) {
    this.setInfoAt(8, v);
  }
  /** "ip:port", '' when unknown. */
  get destinationAddress(): string {
    return this.infoAt(9);
  }
  set destinationAddress(v: string) {
    this.setInfoAt(9, v);
  }

  /** Flat pairs with the pseudo-headers first (:authority, :path, :method, :scheme). */
  get requestHeaders(): string[] {
    if (this.packedRequest !== null) this.unpackRequest();
    return this.request;
  }
  set requestHeaders(v: string[]) {
    this.packedRequest = null;
    this.request = v;
  }

  /** Flat pairs with :status first. */
  get responseHeaders(): string[] {
    if (this.packedResponse !== null) this.unpackResponse();
    return this.response;
  }
  set responseHeaders(v: string[]) {
    this.packedResponse = null;
    this.response = v;
  }

  /** A request header's value(s) joined with ',' (null: none), decoding only what matches. */
  requestHeaderValue(key: string): string | null {
    const packed = this.packedRequest;
    if (packed === null) return mapValue(this.request, key);
    if (key.charCodeAt(0) === 58 /* : */) {
      if (key === ':authority') return this.authority;
      if (key === ':path') return this.path;
      if (key === ':method') return this.method;
      if (key === ':scheme') return this.scheme;
      return null;
    }
    return packedValue(packed, key);
  }

  /** The same for the response headers (the stream must have a response). */
  responseHeaderValue(key: string): string | null {
    const packed = this.packedResponse;
    if (packed === null) return mapValue(this.response, key);
    if (key === ':status') return String(this.responseStatus);
    return key.charCodeAt(0) === 58 ? null : packedValue(packed, key);
  }

  /** Pairs in the request / response header map, without decoding it. */
  get requestPairs(): number {
    return this.packedRequest !== null ? 4 + (this.packedRequestCount >> 1) : this.request.length >> 1;
  }
  get responsePairs(): number {
    return this.packedResponse !== null ? 1 + (this.packedResponseCount >> 1) : this.response.length >> 1;
  }

  responseStatus = 0;
  requestDirty = false;
  responseDirty = false;
  /** Every mutation so far only appended pairs after the first `*BaseLength` entries. */
  requestAppendOnly = true;
  responseAppendOnly = true;
  requestBaseLength = 0;
  responseBaseLength = 0;
  /** Trailer fields (flat pairs, names lower-case) once a chunked body ended with some; null
   * before that and when there were none (the trailer maps then answer NotFound). */
  requestTrailers: string[] | null = null;
  responseTrailers: string[] | null = null;
  /** A filter changed the trailers of the current trailers phase. */
  trailersDirty = false;
  local: LocalResponse | null = null;
  /** Set while a filter paused this stream waiting for its http call(s). */
  pausedRequest = false;
  /** The paused phase is the response trailers one (pausedRequest is then false). */
  pausedTrailers = false;
  pausedStep = -1;
  /** proxy_continue_stream was called during the current callback. */
  resumeRequested = false;
  /** Outstanding proxy_http_call tokens made on behalf of this stream. */
  pendingCalls = 0;
  /** During a body callback: the body bytes the filter reads and replaces (HttpRequestBody /
   * HttpResponseBody buffers), and which of the two it is (BufferType, -1 outside). */
  body: Uint8Array | null = null;
  bodyType = -1;
  /** Per chain step, the bytes a filter buffers (StopIterationAndBuffer); null while none. */
  requestBodyHeld: (BodyBuffer | null)[] | null = null;
  responseBodyHeld: (BodyBuffer | null)[] | null = null;
  /** Body calls that arrived while the headers were paused (run when the pause ends). */
  deferredBody: { request: boolean; data: Uint8Array; endOfStream: boolean }[] | null = null;
  /** A network (L4) connection rather than an HTTP stream: body buffers are DownstreamData /
   * UpstreamData, and proxy_close_stream closes it. */
  network = false;
  /** proxy_set_property values, by dotted path. */
  properties: Map<string, Uint8Array> | null = null;

  constructor(id: number) {
    this.id = id;
  }

  /** The info strings (wire.ts STREAM_INFO_STRINGS, in that order) as BinReader.packed() copied them. */
  setPackedInfo(packed: string): void {
    this.packedInfo = packed;
    this.infoDecoded = 0;
    this.infoSet = 0;
  }

  /** The packed info text (see packedInfoOffset); '' when there is none. */
  get packedInfoText(): string {
    return this.packedInfo ?? '';
  }

  /** Where info string i's UTF-8 bytes start in packedInfoText (one char per byte, the length
   * in the u32 before them), or -1 when they are not there (not packed, or set since): read
   * infoAt(i) then. The host copies a value from there into guest memory without decoding it
   * into a string first. */
  packedInfoOffset(i: number): number {
    const packed = this.packedInfo;
    if (packed === null || (this.infoSet & (1 << i)) !== 0) return -1;
    let p = 0;
    for (let k = 0; k < i; k++) p += 4 + packedLength(packed, p);
    return p + 4;
  }

  /** The Info index a request pseudo-header reads while the request heads are still packed
   * (then the info strings are its values), else -1: decoded heads may have been changed. */
  packedRequestPseudoInfo(key: string): number {
    if (this.packedRequest === null || key.charCodeAt(0) !== 58 /* : */) return -1;
    if (key === ':path') return Info.Path;
    if (key === ':authority') return Info.Authority;
    if (key === ':method') return Info.Method;
    if (key === ':scheme') return Info.Scheme;
    return -1;
  }

  /** Info string i (Info), decoded on first read: a filter that reads :path needs no request id. */
  infoAt(i: number): string {
    const packed = this.packedInfo;
    if (packed !== null && (this.infoDecoded & (1 << i)) === 0) {
      let p = 0;
      for (let k = 0; k < i; k++) p += 4 + packedLength(packed, p);
      this.info[i] = decodePacked(packed, p + 4, packedLength(packed, p));
      this.infoDecoded |= 1 << i;
    }
    return this.info[i];
  }

  private setInfoAt(i: number, v: string): void {
    this.info[i] = v;
    this.infoDecoded |= 1 << i;
    this.infoSet |= 1 << i;
  }

  setRequestHeaders(raw: string[]): void {
    const h = new Array<string>(raw.length + 8);
    this.pseudoHeaders(h);
    for (let i = 0; i < raw.length; i++) h[i + 8] = raw[i];
    this.requestHeaders = h;
    this.requestHeadersSet(h.length);
  }

  /** The request's header list (count strings) as BinReader.packed() copied it. */
  setPackedRequestHeaders(packed: string, count: number): void {
    this.packedRequest = packed;
    this.packedRequestCount = count;
    this.requestHeadersSet(count + 8);
  }

  private requestHeadersSet(length: number): void {
    this.requestDirty = false;
    this.requestAppendOnly = true;
    this.requestBaseLength = length;
  }

  private pseudoHeaders(h: string[]): void {
    h[0] = ':authority';
    h[1] = this.authority;
    h[2] = ':path';
    h[3] = this.path;
    h[4] = ':method';
    h[5] = this.method;
    h[6] = ':scheme';
    h[7] = this.scheme;
  }

  private unpackRequest(): void {
    const packed = this.packedRequest!;
    this.packedRequest = null;
    const h = new Array<string>(this.packedRequestCount + 8);
    this.pseudoHeaders(h);
    unpackStrings(packed, h, 8);
    this.request = h;
  }

  setResponseHeaders(status: number, raw: string[]): void {
    const h = new Array<string>(raw.length + 2);
    h[0] = ':status';
    h[1] = String(status);
    for (let i = 0; i < raw.length; i++) h[i + 2] = raw[i];
    this.responseHeaders = h;
    this.responseHeadersSet(status, h.length);
  }

  /** The response's status and header list (count strings) as BinReader.packed() copied it. */
  setPackedResponseHeaders(status: number, packed: string, count: number): void {
    this.packedResponse = packed;
    this.packedResponseCount = count;
    this.responseHeadersSet(status, count + 2);
  }

  private responseHeadersSet(status: number, length: number): void {
    this.responseStatus = status;
    this.responseDirty = false;
    this.responseAppendOnly = true;
    this.responseBaseLength = length;
  }

  private unpackResponse(): void {
    const packed = this.packedResponse!;
    this.packedResponse = null;
    const h = new Array<string>(this.packedResponseCount + 2);
    h[0] = ':status';
    h[1] = String(this.responseStatus);
    unpackStrings(packed, h, 2);
    this.response = h;
  }
}
