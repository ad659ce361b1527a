// Wisp as a target: `node bin/wisp.js --config <tmp>/wisp.yaml`, optionally with wasm filters
// on the route. A variant whose filter .wasm has not been built is skipped, not failed.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ManagedProcess, waitReady } from './proc.js';
import { freePort } from '../../test/helpers/net.js';
import type { RunningTarget, SideTask, Target, TargetContext } from './target.js';

export interface BenchFilter {
  name: string;
  /** Path relative to the repository root, e.g. filters/build/noop.wasm. */
  wasm: string;
  config?: Record<string, unknown>;
}

export interface WispConfigOptions {
  root: string;
  adminPort: number;
  listenPort: number;
  upstreamPort: number;
  filters: BenchFilter[];
  /** Route timeout; 0 = none (the streaming check). Wisp's default otherwise. */
  routeTimeout?: string | number;
  /** An L4 listener (`protocol: tcp`) instead of the HTTP one; `filters` are then unused. */
  l4?: L4Options;
  /** Filter worker threads (Wisp's default otherwise: cores − 1). */
  workers?: number;
}

export interface L4Options {
  /** The sniff filter (e.g. filters/build/sniff.wasm); null = no sniffing, straight pipe. */
  sniff: BenchFilter | null;
}

/** An L4 listener to the same cluster: with a sniff filter, http1 is routed to it (the
 * default cluster too, so a wrong verdict costs nothing but shows in the metrics). */
function l4Listener(o: WispConfigOptions, l4: L4Options): Record<string, unknown> {
  const tcp: Record<string, unknown> = { cluster: 'up' };
  if (l4.sniff !== null) {
    tcp.sniff = l4.sniff.name;
    tcp.routes = [{ match: { protocol: ['http1'] }, cluster: 'up' }];
  }
  return { name: 'bench', address: `127.0.0.1:${o.listenPort}`, protocol: 'tcp', tcp };
}

export function wispConfig(o: WispConfigOptions): string {
  const route: Record<string, unknown> = { match: { prefix: '/' }, cluster: 'up' };
  if (o.filters.length > 0) route.filters = o.filters.map((f) => f.name);
  if (o.routeTimeout !== undefined) route.timeout = o.routeTimeout;
  const doc: Record<string, unknown> = {
    admin: { address: `127.0.0.1:${o.adminPort}` },
    // The load has stopped when the harness stops Wisp; nothing is left to drain.
    drain_timeout: '2s',
    ...(o.workers !== undefined ? { workers: o.workers } : {}),
    listeners: [o.l4 ? l4Listener(o, o.l4) : { name: 'bench', address: `127.0.0.1:${o.listenPort}`, routes: [route] }],
    clusters: [{ name: 'up', endpoints: [`127.0.0.1:${o.upstreamPort}`] }],
  };
  const filters = o.l4 ? (o.l4.sniff ? [o.l4.sniff] : []) : o.filters;
  if (filters.length > 0) {
    doc.filters = filters.map((f) => {
      const entry: Record<string, unknown> = { name: f.name, wasm: join(o.root, f.wasm) };
      if (f.config) entry.config = f.config;
      return entry;
    });
  }
  return stringify(doc);
}

export const WISP_BIN = 'bin/wisp.js';

export interface WispTargetOptions {
  /** While the load runs, reload this filter through the admin API every `everyMs`. */
  hotload?: { filter: string; everyMs: number };
  /** A `protocol: tcp` listener (bytes piped, optionally sniffed) instead of the HTTP one. */
  l4?: L4Options;
  /** Filter worker threads (Wisp's default otherwise). */
  workers?: number;
  /** Path and query the load requests (default "/"), e.g. to carry an API key. */
  path?: string;
}

/** Reloads one filter through the admin API on a timer, one reload at a time, counting
 * the outcomes: the load must see no errors while generations switch underneath it. */
export class FilterReloader implements SideTask {
  private readonly timer: NodeJS.Timeout;
  private inFlight: Promise<void> | null = null;
  reloads = 0;
  failures = 0;

  constructor(
    private readonly adminPort: number,
    private readonly filter: string,
    everyMs: number,
  ) {
    this.timer = setInterval(() => this.tick(), everyMs);
  }

  private tick(): void {
    if (this.inFlight) return;
    this.inFlight = this.reloadOnce().finally(() => {
      this.inFlight = null;
    });
  }

  private async reloadOnce(): Promise<void> {
    const status = await post(this.adminPort, `/filters/${encodeURIComponent(this.filter)}/reload`);
    if (status === 200) this.reloads++;
    else this.failures++;
  }

  async stop(): Promise<Record<string, number>> {
    clearInterval(this.timer);
    await this.inFlight;
    return { reloads: this.reloads, reload_failures: this.failures };
  }
}

function post(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** A Wisp run with these filters on its one route (none: the plain forwarding path). */
export function wispTarget(name: string, filters: BenchFilter[] = [], options: WispTargetOptions = {}): Target {
  return {
    name,
    unavailable(ctx) {
      if (!existsSync(join(ctx.root, WISP_BIN))) return `${WISP_BIN} does not exist yet`;
      if (!existsSync(join(ctx.root, 'dist', 'proxy', 'cli.js'))) return 'dist/proxy/cli.js missing (npx tsc -p .)';
      const needed = options.l4?.sniff ? [...filters, options.l4.sniff] : filters;
      for (const f of needed) {
        if (!existsSync(join(ctx.root, f.wasm))) return `${f.wasm} not built (npm run build:filters)`;
      }
      return null;
    },
    async start(ctx: TargetContext): Promise<RunningTarget> {
      const [listenPort, adminPort] = [await freePort(), await freePort()];
      mkdirSync(ctx.dir, { recursive: true });
      const conf = join(ctx.dir, 'wisp.yaml');
      writeFileSync(conf, wispConfig({ root: ctx.root, adminPort, listenPort, upstreamPort: ctx.upstreamPort, filters, routeTimeout: ctx.streaming ? 0 : undefined, l4: options.l4, workers: options.workers }));
      const env = ctx.wispNodeOptions ? { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${ctx.wispNodeOptions}`.trim() } : process.env;
      const proc = new ManagedProcess(name, process.execPath, [join(ctx.root, WISP_BIN), '--config', conf], { cwd: ctx.root, env });
      try {
        await waitReady(proc, listenPort, 15_000, options.path);
      } catch (err) {
        await proc.stop();
        throw err;
      }
      const hotload = options.hotload;
      return {
        port: listenPort,
        path: options.path,
        proc,
        duringMeasure: hotload ? () => new FilterReloader(adminPort, hotload.filter, hotload.everyMs) : undefined,
        stop: () => proc.stop(5000),
      };
    },
  };
}
