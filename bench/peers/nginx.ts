// nginx as a peer: one worker, upstream keep-alive, no access log, everything in a temp dir so
// it never touches the system's nginx paths.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManagedProcess, findExecutable, waitReady } from './proc.js';
import { freePort } from '../../test/helpers/net.js';
import type { RunningTarget, Target, TargetContext } from './target.js';

export interface NginxConfigOptions {
  dir: string;
  listenPort: number;
  upstreamPort: number;
  connections: number;
  /** Add `user root;` (needed when started as root, or workers drop to nobody). */
  asRoot: boolean;
}

export function nginxConfig(o: NginxConfigOptions): string {
  const t = (name: string) => join(o.dir, name);
  // Each proxied client connection needs a second one upstream, plus slack.
  const workerConnections = Math.max(1024, o.connections * 2 + 256);
  return `${o.asRoot ? 'user root;\n' : ''}worker_processes 1;
pid ${t('nginx.pid')};
error_log ${t('error.log')} warn;
worker_rlimit_nofile ${workerConnections * 2};
events { worker_connections ${workerConnections}; }
http {
  access_log off;
  client_body_temp_path ${t('client_body')};
  proxy_temp_path ${t('proxy')};
  fastcgi_temp_path ${t('fastcgi')};
  uwsgi_temp_path ${t('uwsgi')};
  scgi_temp_path ${t('scgi')};
  # nginx closes a client connection after 1000 requests by default; wrk would then spend
  # time reconnecting that no other target pays for.
  keepalive_requests 1000000;
  # The idle upstream cache matches Wisp's default (max_idle_per_endpoint 1024): with 64, at
  # 1,000 client connections nginx would close and reopen upstream connections all the time.
  upstream up {
    server 127.0.0.1:${o.upstreamPort};
    keepalive 1024;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${o.listenPort};
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

export const nginxTarget: Target = {
  name: 'nginx',
  unavailable: () => (findExecutable('nginx') ? null : 'nginx not installed (apt-get install nginx-light)'),
  async start(ctx: TargetContext): Promise<RunningTarget> {
    const exe = findExecutable('nginx') as string;
    const port = await freePort();
    mkdirSync(ctx.dir, { recursive: true });
    const conf = join(ctx.dir, 'nginx.conf');
    writeFileSync(
      conf,
      nginxConfig({
        dir: ctx.dir,
        listenPort: port,
        upstreamPort: ctx.upstreamPort,
        connections: ctx.connections,
        asRoot: process.getuid?.() === 0,
      }),
    );
    // -e: the error log nginx opens before it has read the config (default /var/log/nginx).
    const proc = new ManagedProcess('nginx', exe, ['-p', ctx.dir, '-e', join(ctx.dir, 'error.log'), '-c', conf, '-g', 'daemon off;']);
    try {
      await waitReady(proc, port);
    } catch (err) {
      await proc.stop();
      throw err;
    }
    return { port, proc, stop: () => proc.stop() };
  },
};
