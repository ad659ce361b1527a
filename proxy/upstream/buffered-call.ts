// A whole request/response exchange with a cluster, buffered in memory: what filters'
// proxy_http_call needs (auth servers, policy lookups). Off the proxying hot path, so
// clarity over allocation.
import type { ClusterManager } from './cluster-manager.js';
import { UpstreamError, type UpstreamExchange, type UpstreamHandler } from './types.js';

export interface BufferedRequest {
  cluster: string;
  /** Flat pairs; :method, :path and :authority give the request line and Host. */
  headers: string[];
  body: Uint8Array;
  timeoutMs: number;
}

export interface BufferedResponse {
  status: number;
  headers: string[];
  body: Uint8Array;
}

/** Largest response body kept; a larger one fails the call rather than grow without bound. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

class Collector implements UpstreamHandler {
  status = 0;
  headers: string[] = [];
  private readonly chunks: Buffer[] = [];
  private size = 0;
  exchange: UpstreamExchange | null = null;
  constructor(
    private readonly resolve: (r: BufferedResponse) => void,
    private readonly reject: (e: Error) => void,
    private readonly done: () => void,
  ) {}
  onResponseHeaders(status: number, _reason: string, headers: string[]): void {
    this.status = status;
    this.headers = headers;
  }
  onResponseData(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.size > MAX_RESPONSE_BYTES) {
      this.exchange?.abort();
      this.fail(new Error(`response larger than ${MAX_RESPONSE_BYTES} bytes`));
      return true;
    }
    this.chunks.push(Buffer.from(chunk));
    return true;
  }
  onResponseEnd(): void {
    this.done();
    this.resolve({ status: this.status, headers: this.headers, body: Buffer.concat(this.chunks) });
  }
  onUpstreamError(err: UpstreamError): void {
    this.fail(err);
  }
  onRequestDrain(): void {}
  fail(err: Error): void {
    this.done();
    this.reject(err);
  }
}

export function bufferedCall(clusters: ClusterManager, req: BufferedRequest): Promise<BufferedResponse> {
  return new Promise((resolve, reject) => {
    const cluster = clusters.get(req.cluster);
    if (cluster === undefined) return reject(new Error(`unknown cluster "${req.cluster}"`));
    const ep = cluster.pick('', null);
    if (ep === null) return reject(new Error(`cluster "${req.cluster}" has no healthy endpoint`));
    let method = 'GET';
    let path = '/';
    let authority = ep.key;
    const headers: string[] = [];
    for (let i = 0; i < req.headers.length; i += 2) {
      const name = req.headers[i]!.toLowerCase();
      const value = req.headers[i + 1]!;
      if (name === ':method') method = value;
      else if (name === ':path') path = value;
      else if (name === ':authority' || name === 'host') authority = value;
      else if (name.charCodeAt(0) !== 58) headers.push(name, value);
    }
    headers.unshift('host', authority);
    let timer: NodeJS.Timeout | null = null;
    ep.active++;
    const collector = new Collector(resolve, reject, () => {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      ep.active--;
    });
    const exchange = ep.pool.request({ method, path, headers, bodyLength: req.body.length }, collector);
    collector.exchange = exchange;
    if (req.body.length > 0) {
      exchange.writeBody(req.body);
      exchange.endBody();
    }
    if (req.timeoutMs > 0) {
      timer = setTimeout(() => {
        exchange.abort();
        collector.fail(new Error(`timed out after ${req.timeoutMs} ms`));
      }, req.timeoutMs);
    }
  });
}
