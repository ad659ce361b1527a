// noop, add-header and headers driven through Wisp's proxy-wasm host (wisp/testing) with the
// built modules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { load, type HeaderPairs } from './harness.js';

const REQ: HeaderPairs = [[':method', 'GET'], [':path', '/a'], [':authority', 'example.com'], ['x-request-id', 'rid-7']];
/** REQ as the filter sees it: Wisp's pseudo-headers first, then the rest. */
const REQ_SEEN: HeaderPairs = [[':authority', 'example.com'], [':path', '/a'], [':method', 'GET'], [':scheme', 'http'], ['x-request-id', 'rid-7']];

test('noop continues both phases and leaves headers alone', async () => {
  const h = await load('noop');
  const req = h.request({ headers: REQ });
  assert.equal(req.action, 'continue');
  assert.deepEqual(req.headers, REQ_SEEN);
  assert.equal(h.response({ status: 200 }).action, 'continue');
  h.done();
  assert.deepEqual(h.errors(), []);
});

test('noop survives many requests (memory is reclaimed, not grown without bound)', async () => {
  const h = await load('noop');
  for (let i = 0; i < 20000; i++) h.exchange({ headers: REQ });
  const pages = h.memoryBytes / 65536;
  assert.ok(pages < 64, `memory grew to ${pages} pages`);
});

test('add-header adds x-wisp-filter: 1 by default', async () => {
  const h = await load('add-header');
  const r = h.request({ headers: REQ });
  assert.equal(r.action, 'continue');
  assert.equal(r.header('x-wisp-filter'), '1');
  h.done();
});

test('add-header takes the value from plain or JSON config', async () => {
  const plain = await load('add-header', { config: 'edge-7' });
  assert.equal(plain.request({ headers: REQ }).header('x-wisp-filter'), 'edge-7');

  const json = await load('add-header', { config: '{"name":"X-Via-Wisp","value":"é2"}' });
  assert.equal(json.request({ headers: REQ }).header('x-via-wisp'), 'é2');
});

test('add-header refuses invalid config with a logged reason', async () => {
  await assert.rejects(load('add-header', { config: '{"value": 3}' }), /config\.value must be a string/);
});

test('headers sets, adds and removes request and response headers with placeholders', async () => {
  const config = {
    request: {
      set: { 'x-client': '%CLIENT_IP%', 'x-route': 'r=%ROUTE%', 'x-a': '1' },
      add: { 'x-node': '%PROPERTY(node.id)%/%REQUEST_ID%', 'x-pct': '100%' },
      remove: ['x-remove-me'],
    },
    response: { set: { 'x-request-id': '%REQUEST_ID%' }, remove: ['server'] },
  };
  const h = await load('headers', { config, properties: { 'source.address': '10.1.2.3:5555', route_name: 'api-v1', 'node.id': 'wisp-1' } });
  const r = h.request({ headers: [...REQ, ['x-remove-me', 'x'], ['x-a', 'old']] });
  assert.equal(r.action, 'continue');
  assert.equal(r.header('x-remove-me'), undefined);
  assert.equal(r.header('x-client'), '10.1.2.3');
  assert.equal(r.header('x-route'), 'r=api-v1');
  assert.equal(r.headers.filter(([k]) => k === 'x-a').length, 1);
  assert.equal(r.header('x-a'), '1');
  assert.equal(r.header('x-node'), 'wisp-1/rid-7');
  assert.equal(r.header('x-pct'), '100%');

  const res = h.response({ status: 200, headers: { server: 'up' } });
  assert.equal(res.action, 'continue');
  assert.equal(res.header('server'), undefined);
  assert.equal(res.header('x-request-id'), 'rid-7');
  h.done();
  assert.deepEqual(h.errors(), []);
});

test('headers falls back to the request.id property when x-request-id is absent', async () => {
  const h = await load('headers', { config: '{"request":{"set":{"x-id":"%REQUEST_ID%"}}}', properties: { 'request.id': 'host-id-1' } });
  assert.equal(h.request({ path: '/' }).header('x-id'), 'host-id-1');
});

test('config JSON: escapes, unicode and nesting are decoded', async () => {
  const h = await load('add-header', { config: ' {"name": "x-e", "value": "a\\"b\\u00e9\\ud83d\\ude00\\t/\\/"} ' });
  assert.equal(h.request({ headers: REQ }).header('x-e'), 'a"bé😀\t//');
  for (const bad of ['{"value": "x"', '{"value": "\\q"}', '{"value": 1e}', '{"a": [1,]}', '{"value": "x"} extra']) {
    await assert.rejects(load('add-header', { config: bad }), /not valid JSON: .* at offset \d+|not valid JSON: trailing/, `accepted ${bad}`);
  }
});

test('headers handles IPv6 client addresses', async () => {
  const h = await load('headers', { config: '{"request":{"set":{"x-client":"%CLIENT_IP%"}}}', properties: { 'source.address': '[::1]:4000' } });
  assert.equal(h.request({ headers: REQ }).header('x-client'), '::1');
});

test('headers: %CLIENT_IP% in both phases of interleaved requests is each request\'s own', async () => {
  const config = { request: { set: { 'x-client': 'ip=%CLIENT_IP%' } }, response: { add: { 'x-client': '%CLIENT_IP%;%PROPERTY(cluster_name)%' } } };
  const h = await load('headers', { config });
  const a = h.request({ headers: REQ, clientAddress: '10.0.0.1:1000', cluster: 'up-a' });
  const b = h.request({ headers: REQ, clientAddress: '[fe80::1]:2000', cluster: 'up-b' });
  assert.equal(a.header('x-client'), 'ip=10.0.0.1');
  assert.equal(b.header('x-client'), 'ip=fe80::1');
  assert.equal(h.response({ status: 200 }, a.stream).header('x-client'), '10.0.0.1;up-a');
  assert.equal(h.response({ status: 200 }, b.stream).header('x-client'), 'fe80::1;up-b');
  h.done(a.stream);
  h.done(b.stream);
  const c = h.request({ headers: REQ, clientAddress: '10.0.0.3:3000' });
  assert.equal(c.header('x-client'), 'ip=10.0.0.3');
});

test('headers refuses invalid configs, naming the field', async () => {
  const cases: [string, RegExp][] = [
    ['', /config is empty/],
    ['{"request": {"set": {"x-a": 1}', /not valid JSON/],
    ['{"request": {"sett": {}}}', /unknown key "sett"/],
    ['{"request": {"set": {"x-a": "%NOPE%"}}}', /unknown placeholder %NOPE%/],
    ['{"response": {"remove": "x-a"}}', /response\.remove must be an array/],
    ['{"request": {"set": {"bad header": "1"}}}', /invalid header name/],
    ['{"upstream": {}}', /unknown key "upstream"/],
  ];
  for (const [config, message] of cases) {
    await assert.rejects(load('headers', { config }), message, `accepted ${config}`);
  }
});
