// The `wisp` command: run a config, validate one, or start the demo gateway.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigFile } from './config/load.js';
import { ConfigError } from './config/errors.js';
import { Wisp } from './server.js';
import { log } from './log.js';

const USAGE = `usage:
  wisp --config FILE        run a proxy from a YAML config (hot-reloads on change)
  wisp run FILE             the same
  wisp --validate FILE      check a config and exit (non-zero with the reasons when invalid)
  wisp validate FILE        the same
  wisp demo                 start the demo: an upstream on :8081 and a gateway on :8080
  wisp filter new NAME [--dir DIR]
                            create a filter project (AssemblyScript, tests, README) in DIR (default ./NAME)
`;

/** Repository root (dist/proxy/cli.js → ../..). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

async function run(file: string): Promise<Wisp> {
  const config = loadConfigFile(path.resolve(file));
  const wisp = await Wisp.start(config, { watch: true });
  for (const l of config.listeners) {
    const scheme = l.protocol === 'tcp' ? 'tcp' : l.tls ? 'https' : 'http';
    log.info(`listener ${l.name} on ${scheme}://${l.host}:${wisp.listenerPort(l.name)}`);
  }
  log.info(`admin on http://${config.admin.host}:${wisp.adminPort()}`);
  installSignals(wisp);
  return wisp;
}

function installSignals(wisp: Wisp): void {
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${sig}: draining (up to ${wisp.config.drain_timeout_ms} ms)`);
    wisp.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('stop failed', { error: String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function demo(): Promise<void> {
  const { startDemoUpstream } = await import('./demo-upstream.js');
  const upstream = await startDemoUpstream(8081);
  const wisp = await run(path.join(ROOT, 'examples', 'demo.yaml'));
  const port = wisp.listenerPort(wisp.config.listeners[0]!.name);
  const admin = wisp.adminPort();
  process.stdout.write(`
Wisp is running (demo upstream on http://127.0.0.1:${upstream.port}/). Try:

  curl -i http://127.0.0.1:${port}/hello?name=wisp                 (headers filter adds x-served-by)
  curl -i http://127.0.0.1:${port}/private/                        (auth filter: 401)
  curl -i -H 'x-api-key: demo-key' http://127.0.0.1:${port}/private/  (auth filter: 200)
  for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' http://127.0.0.1:${port}/limited/; done
                                                                   (ratelimit filter: 10 × 200, then 429)
  curl -s http://127.0.0.1:${admin}/clusters
  curl -s http://127.0.0.1:${admin}/filters
  curl -s http://127.0.0.1:${admin}/metrics | grep wisp_requests_total

Edit examples/demo.yaml and save: the config hot-reloads. Ctrl-C drains and stops.
`);
}

async function newFilter(args: string[]): Promise<void> {
  const name = args[0]!;
  const dirAt = args.indexOf('--dir');
  const dir = dirAt > 0 ? args[dirAt + 1] : undefined;
  if (dirAt > 0 && dir === undefined) throw new Error('--dir needs a folder');
  const { scaffoldFilter } = await import('./filter-scaffold.js');
  const out = scaffoldFilter({ name, dir });
  process.stdout.write(`created ${out.dir}\n${out.files.map((f) => `  ${f}\n`).join('')}\nnext:\n  cd ${path.relative(process.cwd(), out.dir) || '.'} && npm install && npm test\n`);
}

async function main(argv: string[]): Promise<void> {
  const [cmd, arg] = argv;
  if ((cmd === '--validate' || cmd === 'validate') && arg) {
    try {
      const cfg = loadConfigFile(path.resolve(arg));
      process.stdout.write(`${arg}: valid (${cfg.listeners.length} listeners, ${cfg.clusters.length} clusters, ${cfg.filters.length} filters)\n`);
    } catch (err) {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(err instanceof ConfigError ? 2 : 1);
    }
    return;
  }
  if ((cmd === '--config' || cmd === 'run') && arg) {
    await run(arg);
    return;
  }
  if (cmd === 'demo') return demo();
  if (cmd === 'filter' && arg === 'new' && argv[2] !== undefined) return newFilter(argv.slice(2));
  process.stderr.write(USAGE);
  process.exit(cmd === undefined || cmd === '--help' || cmd === '-h' ? 0 : 2);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`wisp: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
