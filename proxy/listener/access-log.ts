// Access log: one JSON line per finished request on stdout, off unless the listener asks.
export interface AccessLogEntry {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly clientAddress: string;
  readonly requestId: string;
  readonly listenerName: string;
  readonly routeName: string;
  readonly clusterName: string;
}

export class AccessLog {
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}

  write(e: AccessLogEntry, status: number, seconds: number, upstream: string, aborted: boolean): void {
    this.out.write(
      JSON.stringify({
        time: new Date().toISOString(),
        listener: e.listenerName,
        route: e.routeName,
        method: e.method,
        authority: e.authority,
        path: e.path,
        status,
        duration_ms: Math.round(seconds * 1e6) / 1e3,
        client: e.clientAddress,
        upstream_cluster: e.clusterName,
        upstream: upstream,
        request_id: e.requestId,
        aborted,
      }) + '\n',
    );
  }
}
