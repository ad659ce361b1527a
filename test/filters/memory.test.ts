// Built-in filters run on AssemblyScript's minimal runtime, which collects only when the SDK
// tells it to (sdk-as/assembly/runtime.ts: at the end of the host's outermost callback).
// These tests drive many requests, including the allocating paths (401s, JWTs, local
// replies, many requests in flight at once), and check that linear memory stops growing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { type FilterHarness, load, type HeaderPairs } from './harness.js';

const REQ: HeaderPairs = [[':method', 'GET'], [':path', '/?api_key=k-1'], [':authority', 'a'], ['user-agent', 't']];
const NOW_S = 1_700_000_000;

function jwt(secret: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: 'alice', exp: NOW_S + 3600 })}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

/** Runs `rounds` batches of `send`; memory after the first batch must hold to the end. */
function flat(h: FilterHarness, send: (i: number) => void, rounds = 10, perRound = 2000): void {
  let i = 0;
  for (let n = 0; n < perRound; n++) send(i++);
  const warm = h.memoryBytes;
  for (let r = 1; r < rounds; r++) {
    for (let n = 0; n < perRound; n++) send(i++);
    assert.equal(h.memoryBytes, warm, `memory grew from ${warm} to ${h.memoryBytes} bytes after ${i} requests`);
  }
}

test('auth: valid keys, wrong keys (401) and JWTs leave memory flat', async () => {
  const h = await load('auth', { config: { keys: ['k-1'], query_param: 'api_key', jwt: { secret: 's', forward_claims: { sub: 'x-user' } } }, nowMs: NOW_S * 1000 });
  const token = jwt('s');
  const bad: HeaderPairs = [[':method', 'GET'], [':path', '/?api_key=nope'], [':authority', 'a']];
  const bearer: HeaderPairs = [...bad, ['authorization', `Bearer ${token}`]];
  let denied = 0;
  flat(h, (i) => {
    const r = h.exchange({ headers: i % 3 === 0 ? REQ : i % 3 === 1 ? bad : bearer });
    if (r.status === 401) denied++;
    h.logs.length = 0;
  });
  assert.ok(denied > 6000, `${denied} 401s`);
});

test('ratelimit and breaker (allowing, limiting, tripping) leave memory flat', async () => {
  const rl = await load('ratelimit', { config: { rate: 10, per: '1s', burst: 20 }, properties: { 'source.address': '10.0.0.1:5' } });
  let limited = 0;
  flat(rl, (i) => {
    if (i % 100 === 0) rl.advance(1000);
    if (rl.exchange({ headers: REQ, clientAddress: `10.0.${i % 2}.1:9` }).status === 429) limited++;
    rl.logs.length = 0;
  });
  assert.ok(limited > 0);
  const br = await load('breaker', { config: { consecutive_failures: 3, cooldown: '1s' }, properties: { cluster_name: 'up' } });
  let rejected = 0;
  flat(br, (i) => {
    if (i % 50 === 0) br.advance(1100);
    if (br.exchange({ headers: REQ, cluster: i % 2 === 0 ? 'up' : 'down' }, { status: i % 2 === 1 ? 503 : 200 }).status === 503) rejected++;
    br.logs.length = 0;
  });
  assert.ok(rejected > 0);
});

test('headers and add-header leave memory flat', async () => {
  const hd = await load('headers', { config: { request: { set: { 'x-client': '%CLIENT_IP%', 'x-route': '%ROUTE%' }, remove: ['user-agent'] }, response: { set: { 'x-cluster': '%PROPERTY(cluster_name)%' } } } });
  flat(hd, () => { hd.exchange({ headers: REQ, route: 'r', cluster: 'c' }, { status: 200, headers: [['content-type', 'text/plain']] }); });
  const ah = await load('add-header', { config: 'edge' });
  flat(ah, () => { ah.exchange({ headers: REQ }); });
});

test('many requests in flight: memory grows with them, then is reused', async () => {
  const h = await load('auth', { config: { keys: ['k-1'], query_param: 'api_key' } });
  const round = () => {
    const open: number[] = [];
    for (let i = 0; i < 3000; i++) open.push(h.request({ headers: REQ }).stream);
    for (const s of open) h.done(s);
  };
  round();
  const after = h.memoryBytes;
  for (let r = 0; r < 5; r++) round();
  assert.equal(h.memoryBytes, after);
});
