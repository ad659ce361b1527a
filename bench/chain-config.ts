// The Wisp config the long-running benches (reload-rss.ts, soak.ts) put under load: one route
// through noop, add-header (its config is the `tag` a reload flips) and a ratelimit the load
// never reaches, so every reload or hot-load swaps real generations under real traffic.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BUILD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'filters', 'build');

export interface ChainConfig {
  listenerName: string;
  listenPort: number;
  adminPort: number;
  upstreamPort: number;
  workers: number;
  /** add-header's config: a different tag makes a different generation. */
  tag: string;
  /** Top-level `drain_timeout`, when the bench stops Wisp under load. */
  drainTimeout?: string;
  /** The listener's `via`, so a client can tell which config answered. */
  via?: string;
}

export function chainConfigYaml(c: ChainConfig): string {
  const wasm = (n: string) => path.join(BUILD, `${n}.wasm`);
  return `admin:
  address: 127.0.0.1:${c.adminPort}
workers: ${c.workers}
${c.drainTimeout !== undefined ? `drain_timeout: ${c.drainTimeout}\n` : ''}listeners:
  - name: ${c.listenerName}
    address: 127.0.0.1:${c.listenPort}
${c.via !== undefined ? `    via: "${c.via}"\n` : ''}    routes:
      - match: { prefix: / }
        cluster: up
        filters: [noop, tag, limit]
clusters:
  - name: up
    endpoints: [127.0.0.1:${c.upstreamPort}]
filters:
  - name: noop
    wasm: ${wasm('noop')}
  - name: tag
    wasm: ${wasm('add-header')}
    config: ${c.tag}
  - name: limit
    wasm: ${wasm('ratelimit')}
    config: { key: client_ip, rate: 10000000, per: 1s, burst: 10000000 }
`;
}
