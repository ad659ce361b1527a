// A FilterStream for tests: records what the chain answers and lets a test await it; fixtures
// and filter configs; one request through a chain.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { FilterConfig } from '../../proxy/config/types.js';
import type { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import type { FilterPhase, FilterStream } from '../../proxy/filters/types.js';

let nextStreamId = 1;

export type Outcome =
  | { kind: 'continue'; phase: FilterPhase }
  | { kind: 'local'; status: number; headers: string[]; body: string };

export class TestStream implements FilterStream {
  readonly streamId = nextStreamId++;
  method = 'GET';
  scheme = 'http';
  authority = 'example.test';
  path = '/hello';
  clientAddress = '127.0.0.1';
  clientPort = 40000;
  listenerName = 'public';
  routeName = 'route-a';
  clusterName = 'cluster-a';
  requestId = `req-${this.streamId}`;
  requestHeaders: string[];
  responseStatus = 0;
  responseHeaders: string[] = [];
  readonly outcomes: Outcome[] = [];
  private waiters: ((o: Outcome) => void)[] = [];

  constructor(headers: string[] = ['host', 'example.test', 'user-agent', 'test']) {
    this.requestHeaders = headers;
  }

  onFilterContinue(phase: FilterPhase): void {
    this.settle({ kind: 'continue', phase });
  }

  onFilterLocalResponse(status: number, headers: string[], body: Uint8Array): void {
    this.settle({ kind: 'local', status, headers, body: Buffer.from(body).toString('utf8') });
  }

  private settle(o: Outcome): void {
    this.outcomes.push(o);
    const w = this.waiters.shift();
    if (w) w(o);
  }

  /** The next outcome (or one that already arrived and was not awaited yet). */
  next(timeoutMs = 5000): Promise<Outcome> {
    const already = this.outcomes.length - this.consumed;
    if (already > 0) return Promise.resolve(this.outcomes[this.consumed++]);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`stream ${this.streamId}: no filter outcome within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((o) => {
        clearTimeout(t);
        this.consumed++;
        resolve(o);
      });
    });
  }
  private consumed = 0;

  header(name: string): string | undefined {
    for (let i = 0; i < this.requestHeaders.length; i += 2) if (this.requestHeaders[i] === name) return this.requestHeaders[i + 1];
    return undefined;
  }

  responseHeader(name: string): string | undefined {
    for (let i = 0; i < this.responseHeaders.length; i += 2) if (this.responseHeaders[i] === name) return this.responseHeaders[i + 1];
    return undefined;
  }
}

export function fixture(name: string): string {
  return fileURLToPath(new URL(`../../../test/fixtures/${name}`, import.meta.url));
}

export function filterConfig(name: string, wasm: string, over: Partial<FilterConfig> = {}): FilterConfig {
  return {
    name,
    wasm,
    config: name,
    root_id: name,
    vm_config: '',
    failure: 'closed',
    // Generous: tests share 2 cores, and a deadline is wall time. Deadline tests set their own.
    deadline_ms: 1000,
    max_memory_bytes: 64 * 1024 * 1024,
    max_body_bytes: 1024 * 1024,
    ...over,
  };
}

export function header(list: string[], name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}

/** Every value of a header, in list order. */
export function headerValues(list: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) out.push(list[i + 1]);
  return out;
}

/** One request through a chain: request headers, its answer, then done. */
export async function requestThrough(rt: WasmFilterRuntime, names: string[], headers: string[] = []): Promise<TestStream> {
  const chain = rt.chain(names);
  const s = new TestStream(headers);
  chain.requestHeaders(s);
  await s.next();
  chain.done(s);
  return s;
}

/** Loading `bytes` as `name` is refused (`check` looks at the error), and the generation that
 * served `name` before still does: same generation and version, and it answers a request
 * with `x-probe: <probeConfig>` (the serving module is probe.wasm). */
export async function assertRefusedKeepsServing(
  rt: WasmFilterRuntime,
  name: string,
  bytes: Uint8Array,
  probeConfig: string,
  check: (err: Error) => void,
): Promise<void> {
  const before = rt.list().find((f) => f.name === name)!;
  await assert.rejects(rt.loadBytes(name, bytes, { config: `${probeConfig}-next` }), (err: Error) => {
    check(err);
    return true;
  });
  const s = await requestThrough(rt, [name]);
  assert.equal(s.header('x-probe'), probeConfig, 'the previous generation answered');
  const now = rt.list().find((f) => f.name === name)!;
  assert.equal(now.generation, before.generation);
  assert.equal(now.version, before.version);
}
