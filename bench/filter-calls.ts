// Per-call cost of the filter runtime: N streams through a filter (request headers + done),
// with C streams in flight at a time, so batches form the way they do under load.
// Usage: node dist/bench/filter-calls.js [N=10000] [C=64,256] [workers=1]
// Prints µs per call (wall time / N) and calls per second; nothing is asserted.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FilterConfig } from '../proxy/config/types.js';
import { WasmFilterRuntime } from '../proxy/filters/runtime.js';
import type { FilterChain, FilterPhase, FilterStream } from '../proxy/filters/types.js';

const N = Number(process.argv[2] ?? 10_000);
const concurrencies = (process.argv[3] ?? '64,256').split(',').map(Number);
const workers = Number(process.argv[4] ?? 1);

let nextId = 1;

class BenchStream implements FilterStream {
  streamId = nextId++;
  method = 'GET';
  scheme = 'http';
  authority = 'bench.test';
  path = '/bench';
  clientAddress = '127.0.0.1';
  clientPort = 40000;
  listenerName = 'bench';
  routeName = 'bench';
  clusterName = 'bench';
  requestId = 'bench';
  requestHeaders = ['host', 'bench.test', 'user-agent', 'wrk', 'accept', '*/*'];
  responseStatus = 0;
  responseHeaders: string[] = [];
  constructor(private readonly driver: Driver) {}
  onFilterContinue(_phase: FilterPhase): void {
    this.driver.completed(this);
  }
  onFilterLocalResponse(): void {
    this.driver.completed(this);
  }
}

class Driver {
  private started = 0;
  private finished = 0;
  private resolve: () => void = () => {};
  constructor(private readonly chain: FilterChain, private readonly total: number) {}

  run(concurrency: number): Promise<void> {
    const done = new Promise<void>((r) => (this.resolve = r));
    for (let i = 0; i < concurrency && this.started < this.total; i++) this.start();
    return done;
  }

  private start(): void {
    this.started++;
    this.chain.requestHeaders(new BenchStream(this));
  }

  completed(s: BenchStream): void {
    this.chain.done(s);
    this.finished++;
    if (this.finished === this.total) this.resolve();
    else if (this.started < this.total) this.start();
  }
}

function cfg(name: string, wasm: string, config: string): FilterConfig {
  return { name, wasm, config, root_id: name, vm_config: '', failure: 'open', deadline_ms: 1000, max_memory_bytes: 256 << 20, max_body_bytes: 1 << 20 };
}

const buildDir = fileURLToPath(new URL('../../filters/build/', import.meta.url));
const fixtures = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));
const candidates: [string, string, string][] = [
  ['noop', `${buildDir}noop.wasm`, ''],
  ['add-header', `${buildDir}add-header.wasm`, ''],
  ['probe (host fixture)', `${fixtures}probe.wasm`, 'bench'],
];

const rt = new WasmFilterRuntime({ workers, log: () => {} });
try {
  for (const [name, wasm, config] of candidates) {
    if (!existsSync(wasm)) {
      console.log(`${name}: ${wasm} missing, skipped`);
      continue;
    }
    await rt.load(cfg(name, wasm, config));
    const chain = rt.chain([name]);
    await new Driver(chain, 2000).run(64); // warm-up (JIT, worker start)
    for (const c of concurrencies) {
      const t0 = process.hrtime.bigint();
      await new Driver(chain, N).run(c);
      const ns = Number(process.hrtime.bigint() - t0);
      const us = ns / 1000 / N;
      console.log(`${name.padEnd(22)} workers=${workers} in-flight=${String(c).padEnd(4)} ${us.toFixed(2)} µs/call  ${Math.round(N / (ns / 1e9))} calls/s`);
    }
  }
} finally {
  await rt.close();
}
