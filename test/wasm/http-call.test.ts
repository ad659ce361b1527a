// proxy_http_call: a filter pauses the request, the main thread makes the call against a
// real HTTP server, the answer resumes the chain in the same worker.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { type FilterHttpCall, type FilterHttpResponse, WasmFilterRuntime } from '../../proxy/filters/runtime.js';
import { startUpstream, type TestUpstream } from '../helpers/net.js';
import { filterConfig, fixture, header, TestStream } from './helpers.js';

let rt: WasmFilterRuntime;
let authz: TestUpstream;
const calls: FilterHttpCall[] = [];

function callUpstream(port: number, call: FilterHttpCall): Promise<FilterHttpResponse> {
  let method = 'GET';
  let path = '/';
  const headers: Record<string, string> = {};
  for (let i = 0; i < call.headers.length; i += 2) {
    const [k, v] = [call.headers[i], call.headers[i + 1]];
    if (k === ':method') method = v;
    else if (k === ':path') path = v;
    else if (!k.startsWith(':')) headers[k] = v;
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const out: string[] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) out.push(res.rawHeaders[i].toLowerCase(), res.rawHeaders[i + 1]);
        resolve({ status: res.statusCode ?? 0, headers: out, body: Buffer.concat(chunks) });
      });
    });
    req.on('error', reject);
    req.end(Buffer.from(call.body));
  });
}

before(async () => {
  authz = await startUpstream((req, res) => {
    if (req.url === '/allow') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('granted');
    } else {
      res.writeHead(403);
      res.end();
    }
  });
  rt = new WasmFilterRuntime({
    workers: 2,
    log: () => {},
    httpCall: (call) => {
      calls.push(call);
      if (call.cluster !== 'authz') return Promise.reject(new Error(`unknown cluster ${call.cluster}`));
      return callUpstream(authz.port, call);
    },
  });
  await rt.load(filterConfig('gate', fixture('probe.wasm'), { config: 'G' }));
  await rt.load(filterConfig('after', fixture('v010.wasm'), { config: 'B' }));
});

after(async () => {
  await rt.close();
  await authz.close();
});

test('callout allowed: the chain resumes after the pausing filter with its mutation', async () => {
  const chain = rt.chain(['gate', 'after']);
  const s = new TestStream(['x-action', 'callout', 'x-callout-path', '/allow']);
  chain.requestHeaders(s);
  const o = await s.next();
  assert.deepEqual(o, { kind: 'continue', phase: 'request_headers' });
  assert.equal(s.header('x-callout'), 'granted');
  // "after" (a 0.1.0 module adding x-abi) ran once the gate resumed.
  assert.equal(s.header('x-abi'), '0.1.0:B');
  const call = calls.at(-1)!;
  assert.equal(call.cluster, 'authz');
  assert.equal(header(call.headers, ':path'), '/allow');
  assert.equal(header(call.headers, ':method'), 'GET');
  assert.equal(authz.requests.at(-1)?.url, '/allow');
  // The context survived the pause: the response phase still runs in the same worker.
  s.responseStatus = 200;
  s.responseHeaders = [];
  chain.responseHeaders(s);
  await s.next();
  assert.equal(s.responseHeader('x-probe-response'), 'G');
  chain.done(s);
});

test('callout denied: the filter answers locally from its callback', async () => {
  const chain = rt.chain(['gate', 'after']);
  const s = new TestStream(['x-action', 'callout', 'x-callout-path', '/nope']);
  chain.requestHeaders(s);
  const o = await s.next();
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') {
    assert.equal(o.status, 403);
    assert.equal(o.body, 'callout said 403');
    assert.equal(header(o.headers, 'x-callout-status'), '403');
  }
  chain.done(s);
});

test('many paused streams across workers each get their own answer', async () => {
  const chain = rt.chain(['gate']);
  const streams: TestStream[] = [];
  for (let i = 0; i < 40; i++) {
    const s = new TestStream(['x-action', 'callout', 'x-callout-path', i % 2 === 0 ? '/allow' : '/deny']);
    streams.push(s);
    chain.requestHeaders(s);
  }
  const outcomes = await Promise.all(streams.map((s) => s.next()));
  outcomes.forEach((o, i) => assert.equal(o.kind, i % 2 === 0 ? 'continue' : 'local', `stream ${i}`));
  for (const s of streams) chain.done(s);
});

test('a failed call (handler rejects) reaches the filter as no response', async () => {
  await rt.load(filterConfig('gate', fixture('probe.wasm'), { config: 'G' }));
  // The probe asks cluster "authz"; make this call fail by closing the authz server first.
  const port = authz.port;
  await authz.close();
  const chain = rt.chain(['gate']);
  const s = new TestStream(['x-action', 'callout', 'x-callout-path', '/allow']);
  chain.requestHeaders(s);
  const o = await s.next();
  assert.equal(o.kind, 'local');
  if (o.kind === 'local') assert.equal(o.body, 'callout said nothing');
  chain.done(s);
  authz = await startUpstream((_req, res) => {
    res.writeHead(200);
    res.end('again');
  });
  assert.notEqual(authz.port, 0);
  void port;
});

test('without an httpCall handler proxy_http_call is Unimplemented (12)', async () => {
  const bare = new WasmFilterRuntime({ workers: 1, log: () => {} });
  try {
    await bare.load(filterConfig('gate', fixture('probe.wasm'), { config: 'G' }));
    const chain = bare.chain(['gate']);
    const s = new TestStream(['x-action', 'callout']);
    chain.requestHeaders(s);
    assert.equal((await s.next()).kind, 'continue');
    assert.equal(s.header('x-callout-error'), '12');
    chain.done(s);
  } finally {
    await bare.close();
  }
});

test('a call to a cluster the config does not define is refused at the call: BadArgument (2), logged with the reason', async () => {
  const logs: string[] = [];
  const handled: FilterHttpCall[] = [];
  const gated = new WasmFilterRuntime({
    workers: 2,
    log: (level, filter, msg) => logs.push(`${level} ${filter} ${msg}`),
    httpCall: (call) => {
      handled.push(call);
      return Promise.resolve({ status: 200, headers: [], body: new Uint8Array(0) });
    },
  });
  try {
    await gated.load(filterConfig('gate', fixture('probe.wasm'), { config: 'G' }));
    // The probe calls "authz"; this config knows only "api" and "web".
    gated.setHttpCallClusters(['api', 'web']);
    const chain = gated.chain(['gate']);
    for (let i = 0; i < 4; i++) {
      const s = new TestStream(['x-action', 'callout']);
      chain.requestHeaders(s);
      assert.equal((await s.next()).kind, 'continue', 'the filter goes on without a call');
      assert.equal(s.header('x-callout-error'), '2');
      chain.done(s);
    }
    assert.equal(handled.length, 0, 'nothing went out');
    assert.ok(logs.some((l) => l.includes('gate') && l.includes('proxy_http_call') && l.includes('BadArgument') && l.includes('unknown cluster "authz"')), logs.join('\n'));
    // Once the config defines it, the same call goes out.
    gated.setHttpCallClusters(['api', 'authz']);
    const s = new TestStream(['x-action', 'callout']);
    chain.requestHeaders(s);
    await s.next();
    assert.equal(s.header('x-callout-error'), undefined);
    chain.done(s);
    assert.equal(handled.length, 1);
    assert.equal(handled[0]!.cluster, 'authz');
  } finally {
    await gated.close();
  }
});
