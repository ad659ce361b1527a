// haproxy as a peer: one thread, HTTP mode, connection reuse to the upstream always.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManagedProcess, findExecutable, waitReady } from './proc.js';
import { freePort } from '../../test/helpers/net.js';
import type { RunningTarget, Target, TargetContext } from './target.js';

export interface HaproxyConfigOptions {
  listenPort: number;
  upstreamPort: number;
  connections: number;
}

export function haproxyConfig(o: HaproxyConfigOptions): string {
  const maxconn = Math.max(4096, o.connections * 2 + 256);
  return `global
  nbthread 1
  maxconn ${maxconn}

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always

frontend bench
  bind 127.0.0.1:${o.listenPort}
  default_backend up

backend up
  server s1 127.0.0.1:${o.upstreamPort}
`;
}

export const haproxyTarget: Target = {
  name: 'haproxy',
  unavailable: () => (findExecutable('haproxy') ? null : 'haproxy not installed (apt-get install haproxy)'),
  async start(ctx: TargetContext): Promise<RunningTarget> {
    const exe = findExecutable('haproxy') as string;
    const port = await freePort();
    mkdirSync(ctx.dir, { recursive: true });
    const conf = join(ctx.dir, 'haproxy.cfg');
    writeFileSync(conf, haproxyConfig({ listenPort: port, upstreamPort: ctx.upstreamPort, connections: ctx.connections }));
    // -db: stay in the foreground, one process, so its pid is the one whose RSS we read.
    const proc = new ManagedProcess('haproxy', exe, ['-db', '-f', conf]);
    try {
      await waitReady(proc, port);
    } catch (err) {
      await proc.stop();
      throw err;
    }
    return { port, proc, stop: () => proc.stop() };
  },
};
