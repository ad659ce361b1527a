// Connection setup cost of an L4 listener with and without protocol sniffing: N fresh TCP
// connections, one after another, each sending one HTTP/1.1 request and waiting for the
// whole reply, straight to the upstream, through `protocol: tcp` (bytes piped) and through
// `protocol: tcp` + `sniff: filters/build/sniff.wasm`. The three are run in interleaved
// batches so drift on the machine hits them alike; prints per-connection ms (median, p90,
// mean) and what sniffing adds.
//   node dist/bench/tcp-connect.js [--connections 500] [--batch 50]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagedProcess, installCleanup, stopAll, waitReady } from './peers/proc.js';
import { WISP_BIN, wispConfig, type L4Options } from './peers/wisp.js';
import { freePort } from '../test/helpers/net.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const REQUEST = Buffer.from('GET / HTTP/1.1\r\nhost: bench\r\n\r\n');
const BODY = 'hello world\n';

/** One fresh connection: connect, send the request, wait for the body; ms from connect(). */
function oneConnection(port: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const start = process.hrtime.bigint();
    let got = '';
    const c = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => c.write(REQUEST));
    c.setTimeout(5000, () => c.destroy(new Error('no reply in 5 s')));
    c.on('error', reject);
    c.on('data', (d) => {
      got += d.toString('latin1');
      if (got.endsWith(BODY)) {
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        c.destroy();
        resolvePromise(ms);
      }
    });
  });
}

interface Run {
  name: string;
  port: number;
  samples: number[];
}

function stats(samples: number[]): { median: number; p90: number; mean: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { median: at(0.5), p90: at(0.9), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

async function startWisp(dir: string, name: string, upstreamPort: number, l4: L4Options): Promise<{ proc: ManagedProcess; port: number }> {
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  const conf = join(dir, `${name}.yaml`);
  writeFileSync(conf, wispConfig({ root: ROOT, adminPort, listenPort, upstreamPort, filters: [], l4 }));
  const proc = new ManagedProcess(name, process.execPath, [join(ROOT, WISP_BIN), '--config', conf], { cwd: ROOT });
  await waitReady(proc, listenPort, 15_000);
  return { proc, port: listenPort };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, dflt: number): number => {
    const i = argv.indexOf(name);
    const n = i < 0 ? dflt : Number(argv[i + 1]);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
    return n;
  };
  const total = arg('--connections', 500);
  const batch = arg('--batch', 50);
  installCleanup();
  const dir = mkdtempSync(join(os.tmpdir(), 'wisp-tcp-connect-'));
  try {
    const upstreamPort = await freePort();
    const upstream = new ManagedProcess('upstream', process.execPath, [join(ROOT, 'dist', 'bench', 'upstream.js'), '--port', String(upstreamPort)]);
    await waitReady(upstream, upstreamPort, 15_000);
    const plain = await startWisp(dir, 'wisp-tcp-plain', upstreamPort, { sniff: null });
    const sniffed = await startWisp(dir, 'wisp-tcp-sniff', upstreamPort, { sniff: { name: 'sniff', wasm: 'filters/build/sniff.wasm' } });
    const runs: Run[] = [
      { name: 'direct', port: upstreamPort, samples: [] },
      { name: 'tcp', port: plain.port, samples: [] },
      { name: 'tcp+sniff', port: sniffed.port, samples: [] },
    ];
    // Warm-up (JIT, the filter worker's instance), thrown away.
    for (const r of runs) for (let i = 0; i < batch; i++) await oneConnection(r.port);
    for (let done = 0; done < total; done += batch) {
      const n = Math.min(batch, total - done);
      for (const r of runs) for (let i = 0; i < n; i++) r.samples.push(await oneConnection(r.port));
    }
    console.log(`${total} fresh connections each, one HTTP/1.1 request per connection, sequential\n`);
    console.log('| run       | median ms | p90 ms | mean ms |');
    console.log('|-----------|----------:|-------:|--------:|');
    const out: Record<string, ReturnType<typeof stats>> = {};
    for (const r of runs) {
      const s = stats(r.samples);
      out[r.name] = s;
      console.log(`| ${r.name.padEnd(9)} | ${s.median.toFixed(3).padStart(9)} | ${s.p90.toFixed(3).padStart(6)} | ${s.mean.toFixed(3).padStart(7)} |`);
    }
    const added = (k: 'median' | 'mean') => (out['tcp+sniff']![k] - out.tcp![k]).toFixed(3);
    console.log(`\nsniffing adds ${added('median')} ms (median) / ${added('mean')} ms (mean) per connection over tcp without sniff`);
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
