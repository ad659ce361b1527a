// Worker-side view of one request: what the filters may read and mutate during a phase.

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

export class StreamState {
  readonly id: number;
  method = '';
  scheme = '';
  authority = '';
  path = '';
  clientAddress = '';
  clientPort = 0;
  listenerName = '';
  routeName = '';
  clusterName = '';
  requestId = '';
  /** Flat pairs with the pseudo-headers first (:authority, :path, :method, :scheme). */
  requestHeaders: string[] = [];
  /** Flat pairs with :status first. */
  responseHeaders: string[] = [];
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

  setRequestHeaders(raw: string[]): void {
    const h = new Array<string>(raw.length + 8);
    h[0] = ':authority';
    h[1] = this.authority;
    h[2] = ':path';
    h[3] = this.path;
    h[4] = ':method';
    h[5] = this.method;
    h[6] = ':scheme';
    h[7] = this.scheme;
    for (let i = 0; i < raw.length; i++) h[i + 8] = raw[i];
    this.requestHeaders = h;
    this.requestDirty = false;
    this.requestAppendOnly = true;
    this.requestBaseLength = h.length;
  }

  setResponseHeaders(status: number, raw: string[]): void {
    const h = new Array<string>(raw.length + 2);
    h[0] = ':status';
    h[1] = String(status);
    for (let i = 0; i < raw.length; i++) h[i + 2] = raw[i];
    this.responseHeaders = h;
    this.responseStatus = status;
    this.responseDirty = false;
    this.responseAppendOnly = true;
    this.responseBaseLength = h.length;
  }
}
