// The built-in filters (filters/build/*.wasm, built with sdk-as) on this host.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { filterConfig, header, TestStream } from './helpers.js';

const buildDir = fileURLToPath(new URL('../../../filters/build/', import.meta.url));
const built = ['noop', 'add-header', 'headers', 'ratelimit'].every((n) => existsSync(`${buildDir}${n}.wasm`));
const skip = built ? false : 'filters/build/*.wasm not built (node filters/build.mjs)';
let rt: WasmFilterRuntime;

before(async () => {
  rt = new WasmFilterRuntime({ workers: 2, log: () => {} });
  if (!built) return;
  const wasm = (n: string) => `${buildDir}${n}.wasm`;
  await rt.load(filterConfig('noop', wasm('noop'), { config: '' }));
  await rt.load(filterConfig('add-header', wasm('add-header'), { config: 'edge-7' }));
  await rt.load(
    filterConfig('headers', wasm('headers'), {
      config: JSON.stringify({
        request: { set: { 'x-client-ip': '%CLIENT_IP%' }, remove: ['user-agent'] },
        response: { set: { 'x-route': '%ROUTE%' } },
      }),
    }),
  );
  await rt.load(filterConfig('ratelimit', wasm('ratelimit'), { config: JSON.stringify({ rate: 2, per: '1h', burst: 2, key: 'route' }) }));
  await rt.load(filterConfig('auth', wasm('auth'), { config: JSON.stringify({ keys: ['k1'], query_param: 'api_key' }) }));
  await rt.load(filterConfig('ratelimit-wide', wasm('ratelimit'), { config: JSON.stringify({ rate: 1e8, per: '1s', burst: 1e8, key: 'client_ip' }) }));
  await rt.load(filterConfig('ratelimit-shadow', wasm('ratelimit'), { config: JSON.stringify({ rate: 1e8, per: '1s', burst: 1e8, key: 'client_ip', shadow: true }) }));
  await rt.load(filterConfig('breaker', wasm('breaker'), { config: JSON.stringify({ consecutive_failures: 5, cooldown: '10s' }) }));
  await rt.load(filterConfig('breaker-429', wasm('breaker'), { config: JSON.stringify({ failure_statuses: [429, 503], name: 'b429' }) }));
  await rt.load(filterConfig('headers-req', wasm('headers'), { config: JSON.stringify({ request: { set: { 'x-edge': '1' } } }) }));
});

after(async () => {
  await rt.close();
});

async function request(names: string[], s = new TestStream()): Promise<TestStream> {
  rt.chain(names).requestHeaders(s);
  await s.next();
  return s;
}

test('which built-in chains hold the response for the workers (wisp.skip_phases, wisp.response_headers_statuses)', { skip }, async () => {
  const holds = async (names: string[], status = 200): Promise<boolean> => {
    const s = new TestStream(['host', 'example.test']);
    s.path = '/?api_key=k1';
    const chain = rt.chain(names);
    chain.requestHeaders(s);
    assert.equal((await s.next()).kind, 'continue');
    s.responseStatus = status;
    const answer = chain.handlesResponseHeaders(s);
    chain.done(s);
    return answer;
  };
  // auth, add-header and a ratelimit outside shadow mode decide on the request alone.
  assert.equal(await holds(['auth', 'ratelimit-wide', 'add-header']), false);
  assert.equal(await holds(['headers-req']), false, 'headers with request rules only');
  // The breaker needs a failure before the client sees it, a success only in onLog.
  assert.equal(await holds(['auth', 'breaker'], 200), false);
  assert.equal(await holds(['auth', 'breaker'], 404), false);
  assert.equal(await holds(['auth', 'breaker'], 500), true);
  assert.equal(await holds(['auth', 'breaker'], 599), true);
  assert.equal(await holds(['breaker-429'], 429), true, 'its own failure_statuses');
  assert.equal(await holds(['breaker-429'], 500), false);
  // Shadow mode marks responses; noop is the benchmark's filter that runs in both phases;
  // headers has response rules here.
  assert.equal(await holds(['auth', 'ratelimit-shadow']), true);
  assert.equal(await holds(['breaker', 'noop'], 200), true, 'one filter that wants it is enough');
  assert.equal(await holds(['noop']), true);
  assert.equal(await holds(['headers']), true);
});

test('noop and add-header', { skip }, async () => {
  const s = await request(['noop', 'add-header']);
  assert.deepEqual(s.outcomes[0], { kind: 'continue', phase: 'request_headers' });
  assert.equal(s.header('x-wisp-filter'), 'edge-7');
  rt.chain(['noop', 'add-header']).done(s);
});

test('headers: request and response rewrites with placeholders', { skip }, async () => {
  const chain = rt.chain(['headers']);
  const s = await request(['headers']);
  assert.equal(s.header('x-client-ip'), '127.0.0.1');
  assert.equal(s.header('user-agent'), undefined);
  s.responseStatus = 200;
  s.responseHeaders = ['content-type', 'text/plain'];
  chain.responseHeaders(s);
  await s.next();
  assert.equal(s.responseHeader('x-route'), 'route-a');
  chain.done(s);
});

test('ratelimit: the shared bucket holds across workers (burst 2: two of four are 429)', { skip }, async () => {
  const chain = rt.chain(['ratelimit']);
  // The first request creates the bucket alone: creating a shared key is not atomic (Envoy
  // semantics: cas 0 writes unconditionally), updating it with CAS is.
  const first = new TestStream();
  chain.requestHeaders(first);
  assert.equal((await first.next()).kind, 'continue');
  chain.done(first);
  const streams = [new TestStream(), new TestStream(), new TestStream()];
  for (const s of streams) chain.requestHeaders(s);
  const outcomes = await Promise.all(streams.map((s) => s.next()));
  const limited = outcomes.filter((o) => o.kind === 'local');
  assert.equal(limited.length, 2);
  const o = limited[0];
  if (o.kind === 'local') {
    assert.equal(o.status, 429);
    assert.ok(header(o.headers, 'retry-after'));
  }
  for (const s of streams) chain.done(s);
  const m = rt.metricsSnapshot().filter((x) => x.filter === 'ratelimit');
  assert.equal(m.find((x) => x.name === 'ratelimit_limited.route')?.value, 2);
  assert.equal(m.find((x) => x.name === 'ratelimit_allowed.route')?.value, 2);
});
