// auth through the ABI. Digests and JWT signatures are made with node:crypto, so these
// tests also check the SDK's SHA-256 / SHA-384 / SHA-512 / HMAC against an independent one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { ACTION_CONTINUE, FilterHost, loadModule } from './harness.js';

const module = loadModule('auth');
const NOW_S = 1_700_000_000;
const REQ: [string, string][] = [[':method', 'GET'], [':path', '/x'], [':authority', 'a']];

function host(config: object): FilterHost {
  const h = new FilterHost(module);
  h.nowNs = BigInt(NOW_S) * 1_000_000_000n;
  assert.equal(h.start(JSON.stringify(config)), true, h.errors().join('\n'));
  return h;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');
function jwt(claims: object, secret: string, alg = 'HS256'): string {
  const head = b64url(JSON.stringify({ alg, typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg] ?? 'sha256';
  const sig = createHmac(hash, secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

test('API keys given as SHA-256 digests match keys of every padding length', () => {
  const keys = [1, 54, 55, 56, 63, 64, 65, 119, 120, 200].map((n) => 'k'.repeat(n - 1) + String(n % 10));
  const h = host({
    api_keys: keys.map((k, i) => ({ name: `n${i}`, key_sha256: createHash('sha256').update(k).digest('hex') })),
    forward_key_name: 'x-key-name',
  });
  keys.forEach((k, i) => {
    const id = h.newStream();
    assert.equal(h.onRequestHeaders(id, [...REQ, ['x-api-key', k]]), ACTION_CONTINUE, `key of length ${k.length}`);
    assert.equal(h.localResponse, null);
    assert.equal(h.header(h.requestHeaders, 'x-key-name'), `n${i}`);
    h.finish(id);
  });
});

test('a wrong or missing key gets 401 with www-authenticate', () => {
  const h = host({ keys: ['s3cret'] });
  const bad = h.request([...REQ, ['x-api-key', 's3cret2']]).local;
  assert.equal(bad?.status, 401);
  assert.match(bad!.headers.find(([k]) => k === 'www-authenticate')![1], /^ApiKey realm="wisp", error="invalid_key"/);
  const missing = h.request(REQ).local;
  assert.equal(missing?.status, 401);
  assert.equal(missing!.headers.find(([k]) => k === 'www-authenticate')![1], 'ApiKey realm="wisp"');
  assert.equal(h.request([...REQ, ['x-api-key', 's3cret']]).local, null);
});

test('keys from a configured header or query parameter', () => {
  const h = host({ keys: ['a b/ü'], header: 'X-Token', query_param: 'api_key' });
  assert.equal(h.request([...REQ, ['x-token', 'a b/ü']]).local, null);
  const q: [string, string][] = [[':method', 'GET'], [':path', '/p?x=1&api_key=a+b%2F%C3%BC'], [':authority', 'a']];
  assert.equal(h.request(q).local, null);
  const wrong: [string, string][] = [[':method', 'GET'], [':path', '/p?api_key=nope'], [':authority', 'a']];
  assert.equal(h.request(wrong).local?.status, 401);
});

test('JWT HS256/HS384/HS512: valid tokens pass and forward claims; a spoofed claim header is removed', () => {
  const secret = 'x'.repeat(150); // longer than a block: the HMAC key is hashed first
  const h = host({ jwt: { secret, algorithms: ['HS256', 'HS384', 'HS512'], forward_claims: { sub: 'x-user', tier: 'x-tier' } } });
  for (const alg of ['HS256', 'HS384', 'HS512']) {
    const token = jwt({ sub: 'alice', tier: 3, exp: NOW_S + 60 }, secret, alg);
    const id = h.newStream();
    assert.equal(h.onRequestHeaders(id, [...REQ, ['authorization', `Bearer ${token}`], ['x-user', 'mallory']]), ACTION_CONTINUE, alg);
    assert.equal(h.localResponse, null, `${alg}: ${h.localResponse?.body}`);
    assert.deepEqual(h.requestHeaders.filter(([k]) => k === 'x-user'), [['x-user', 'alice']]);
    assert.equal(h.header(h.requestHeaders, 'x-tier'), '3');
    h.finish(id);
  }
});

test('JWT failures: 401 for bad signature, alg, expiry and nbf; 403 for issuer and audience', () => {
  const secret = 'topsecret';
  const h = host({ jwt: { secret, issuer: 'https://idp', audiences: ['api'], clock_skew_s: 10 } });
  const good = { iss: 'https://idp', aud: ['other', 'api'], exp: NOW_S + 60 };
  const send = (token: string) => h.request([...REQ, ['authorization', `Bearer ${token}`]]).local;
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
  const none = h.request(REQ).local;
  assert.equal(none?.status, 401);
  assert.equal(none!.headers.find(([k]) => k === 'www-authenticate')![1], 'Bearer realm="wisp"');
});

test('JWT and API keys together: either credential is enough', () => {
  const h = host({ keys: ['k1'], jwt: { secret: 's' } });
  assert.equal(h.request([...REQ, ['x-api-key', 'k1']]).local, null);
  assert.equal(h.request([...REQ, ['authorization', `Bearer ${jwt({ sub: 'a' }, 's')}`]]).local, null);
  const none = h.request(REQ).local;
  assert.equal(none?.status, 401);
  assert.deepEqual(none!.headers.filter(([k]) => k === 'www-authenticate').map(([, v]) => v), ['Bearer realm="wisp"', 'ApiKey realm="wisp"']);
});

test('invalid configs are refused with a reason', () => {
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
    const h = new FilterHost(module);
    assert.equal(h.start(config), false, `accepted ${config}`);
    assert.match(h.errors().join('\n'), message);
  }
});
