// The benchmark's upstream: the smallest fast HTTP server we can write on uWebSockets.js, so
// the numbers measure the proxy in front of it rather than the server behind it.
//
//   node dist/bench/upstream.js --port N [--host 127.0.0.1] [--stream-bytes BYTES]
//
// Every path answers 200 "hello world\n" (12 bytes, text/plain). GET /stream answers
// `streamBytes` bytes (default 1 GiB) with a content-length, written only as fast as the
// reader takes them (uWS tryEnd + onWritable), so the upstream itself never buffers the
// body and any memory growth seen in a proxy is the proxy's own.
import uWS from 'uWebSockets.js';
import { pathToFileURL } from 'node:url';

export const HELLO_BODY = 'hello world\n';
export const DEFAULT_STREAM_BYTES = 1024 * 1024 * 1024;
const STREAM_CHUNK_BYTES = 64 * 1024;

export interface BenchUpstreamOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** Body size of GET /stream. */
  streamBytes?: number;
}

export interface BenchUpstream {
  port: number;
  close(): void;
}

/** One /stream response in flight; a reused object instead of closures per write. */
class StreamWriter {
  private aborted = false;
  constructor(
    private readonly res: uWS.HttpResponse,
    private readonly total: number,
    private readonly chunk: Buffer,
  ) {}

  start(): void {
    this.res.onAborted(() => {
      this.aborted = true;
    });
    this.res.onWritable(() => this.pump());
    this.res.cork(() => {
      this.res.writeStatus('200 OK').writeHeader('content-type', 'application/octet-stream');
      this.pump();
    });
  }

  /** Write from the current write offset until the socket pushes back or the body is done.
   * The body is constant bytes, so resuming needs only the offset uWS reports. */
  pump(): boolean {
    if (this.aborted) return true;
    for (;;) {
      const offset = this.res.getWriteOffset();
      const left = this.total - offset;
      if (left <= 0) return true;
      const piece = left >= this.chunk.length ? this.chunk : this.chunk.subarray(0, left);
      const [ok, done] = this.res.tryEnd(piece, this.total);
      if (done) return true;
      if (!ok) return false;
    }
  }
}

/** Start the upstream in this process. Resolves once it listens. */
export function startBenchUpstream(opts: BenchUpstreamOptions = {}): Promise<BenchUpstream> {
  const host = opts.host ?? '127.0.0.1';
  const streamBytes = opts.streamBytes ?? DEFAULT_STREAM_BYTES;
  const chunk = Buffer.alloc(STREAM_CHUNK_BYTES, 0x78);
  const app = uWS.App();
  app.get('/stream', (res) => {
    new StreamWriter(res, streamBytes, chunk).start();
  });
  app.any('/*', (res) => {
    // Inside the handler uWS is already corked: status, header and body go out in one write.
    res.writeStatus('200 OK').writeHeader('content-type', 'text/plain').end(HELLO_BODY);
  });
  return new Promise((resolve, reject) => {
    app.listen(host, opts.port ?? 0, (listenSocket) => {
      if (!listenSocket) {
        reject(new Error(`bench upstream could not listen on ${host}:${opts.port ?? 0}`));
        return;
      }
      const port = uWS.us_socket_local_port(listenSocket as unknown as uWS.us_socket);
      resolve({
        port,
        close: () => uWS.us_listen_socket_close(listenSocket),
      });
    });
  });
}

function argValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function main(argv: string[]): Promise<void> {
  const port = Number(argValue(argv, '--port') ?? '0');
  const host = argValue(argv, '--host') ?? '127.0.0.1';
  const streamArg = argValue(argv, '--stream-bytes');
  const upstream = await startBenchUpstream({ port, host, streamBytes: streamArg ? Number(streamArg) : undefined });
  process.stdout.write(`listening ${host}:${upstream.port}\n`);
  const stop = () => {
    upstream.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
