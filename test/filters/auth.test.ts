// auth on Wisp's host (wisp/testing). Digests and JWT signatures are made with node:crypto, so these
// tests also check the SDK's SHA-256 / SHA-384 / SHA-512 / HMAC against an independent one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { type FilterHarness, load, type HeaderPairs } from './harness.js';

const NOW_S = 1_700_000_000;
const REQ: HeaderPairs = [[':method', 'GET'], [':path', '/x'], [':authority', 'a']];

function host(config: object): Promise<FilterHarness> {
  return load('auth', { config, nowMs: NOW_S * 1000 });
}
const req = (headers: HeaderPairs) => ({ headers });

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');
function jwt(claims: object, secret: string, alg = 'HS256'): string {
  const head = b64url(JSON.stringify({ alg, typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg] ?? 'sha256';
  const sig = createHmac(hash, secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

test('API keys given as SHA-256 digests match keys of every padding length', async () => {
  const keys = [1, 54, 55, 56, 63, 64, 65, 119, 120, 200].map((n) => 'k'.repeat(n - 1) + String(n % 10));
  const h = await host({
    api_keys: keys.map((k, i) => ({ name: `n${i}`, key_sha256: createHash('sha256').update(k).digest('hex') })),
    forward_key_name: 'x-key-name',
  });
  keys.forEach((k, i) => {
    const r = h.request(req([...REQ, ['x-api-key', k]]));
    assert.equal(r.action, 'continue', `key of length ${k.length}`);
    assert.equal(r.local, null);
    assert.equal(r.header('x-key-name'), `n${i}`);
    h.done();
  });
});

test('a wrong or missing key gets 401 with www-authenticate', async () => {
  const h = await host({ keys: ['s3cret'] });
  const bad = h.exchange(req([...REQ, ['x-api-key', 's3cret2']])).local;
  assert.equal(bad?.status, 401);
  assert.match(bad!.headers.find(([k]) => k === 'www-authenticate')![1], /^ApiKey realm="wisp", error="invalid_key"/);
  const missing = h.exchange(req(REQ)).local;
  assert.equal(missing?.status, 401);
  assert.equal(missing!.headers.find(([k]) => k === 'www-authenticate')![1], 'ApiKey realm="wisp"');
  assert.equal(h.exchange(req([...REQ, ['x-api-key', 's3cret']])).local, null);
});

test('keys from a configured header or query parameter', async () => {
  const h = await host({ keys: ['a b/ü'], header: 'X-Token', query_param: 'api_key' });
  assert.equal(h.exchange(req([...REQ, ['x-token', 'a b/ü']])).local, null);
  const q: HeaderPairs = [[':method', 'GET'], [':path', '/p?x=1&api_key=a+b%2F%C3%BC'], [':authority', 'a']];
  assert.equal(h.exchange(req(q)).local, null);
  const wrong: HeaderPairs = [[':method', 'GET'], [':path', '/p?api_key=nope'], [':authority', 'a']];
  assert.equal(h.exchange(req(wrong)).local?.status, 401);
});

test('JWT HS256/HS384/HS512: valid tokens pass and forward claims; a spoofed claim header is removed', async () => {
  const secret = 'x'.repeat(150); // longer than a block: the HMAC key is hashed first
  const h = await host({ jwt: { secret, algorithms: ['HS256', 'HS384', 'HS512'], forward_claims: { sub: 'x-user', tier: 'x-tier' } } });
  for (const alg of ['HS256', 'HS384', 'HS512']) {
    const token = jwt({ sub: 'alice', tier: 3, exp: NOW_S + 60 }, secret, alg);
    const r = h.request(req([...REQ, ['authorization', `Bearer ${token}`], ['x-user', 'mallory']]));
    assert.equal(r.action, 'continue', alg);
    assert.equal(r.local, null, `${alg}: ${r.body}`);
    assert.deepEqual(r.headers.filter(([k]) => k === 'x-user'), [['x-user', 'alice']]);
    assert.equal(r.header('x-tier'), '3');
    h.done();
  }
});

test('JWT failures: 401 for bad signature, alg, expiry and nbf; 403 for issuer and audience', async () => {
  const secret = 'topsecret';
  const h = await host({ jwt: { secret, issuer: 'https://idp', audiences: ['api'], clock_skew_s: 10 } });
  const good = { iss: 'https://idp', aud: ['other', 'api'], exp: NOW_S + 60 };
  const send = (token: string) => h.exchange(req([...REQ, ['authorization', `Bearer ${token}`]])).local;
  assert.equal(send(jwt(good, secret)), null);
  assert.equal(send(jwt({ ...good, exp: NOW_S - 5 }, secret)), null, 'within clock skew');

  const cases: [string, number, RegExp][] = [
    [jwt(good, 'wrong'), 401, /bad signature/],
    [jwt(good, secret, 'HS512'), 401, /algorithm not allowed/],
    [`${b64url('{"alg":"none"}')}.${b64url(JSON.stringify(good))}.`, 401, /algorithm not allowed|malformed/],
    [jwt({ ...good, exp: NOW_S - 11 }, secret), 401, /expired/],
    [jwt({ ...good, nbf: NOW_S + 30 }, secret), 401, /not yet valid/],
    ['abc.def', 401, /malformed/],
    [jwt({ ...good, iss: 'https://evil' }, secret), 403, /issuer/],
    [jwt({ ...good, aud: 'web' }, secret), 403, /audience/],
  ];
  for (const [token, status, why] of cases) {
    const local = send(token);
    assert.equal(local?.status, status, `${why}: got ${local?.status} ${local?.body}`);
    assert.match(local!.body, why);
    if (status === 401) assert.match(local!.headers.find(([k]) => k === 'www-authenticate')![1], /^Bearer realm="wisp", error="invalid_token"/);
  }
  const none = h.exchange(req(REQ)).local;
  assert.equal(none?.status, 401);
  assert.equal(none!.headers.find(([k]) => k === 'www-authenticate')![1], 'Bearer realm="wisp"');
});

test('JWT and API keys together: either credential is enough', async () => {
  const h = await host({ keys: ['k1'], jwt: { secret: 's' } });
  assert.equal(h.exchange(req([...REQ, ['x-api-key', 'k1']])).local, null);
  assert.equal(h.exchange(req([...REQ, ['authorization', `Bearer ${jwt({ sub: 'a' }, 's')}`]])).local, null);
  const none = h.exchange(req(REQ)).local;
  assert.equal(none?.status, 401);
  assert.deepEqual(none!.headers.filter(([k]) => k === 'www-authenticate').map(([, v]) => v), ['Bearer realm="wisp"', 'ApiKey realm="wisp"']);
});

test('invalid configs are refused with a reason', async () => {
  const cases: [string, RegExp][] = [
    ['{}', /at least one of/],
    ['{"keys": "k"}', /keys must be an array/],
    ['{"api_keys": [{"name": "a", "key_sha256": "abc"}]}', /64 hex characters/],
    ['{"jwt": {"issuer": "x"}}', /jwt\.secret/],
    ['{"jwt": {"secret": "s", "algorithms": ["RS256"]}}', /only HS256, HS384 and HS512/],
    ['{"keys": ["a"], "mode": "x"}', /unknown key "mode"/],
    ['nope', /not valid JSON/],
  ];
  for (const [config, message] of cases) {
    await assert.rejects(load('auth', { config }), message, `accepted ${config}`);
  }
});
