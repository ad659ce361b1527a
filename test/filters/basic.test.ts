// noop, add-header and headers driven through the proxy-wasm ABI with the built modules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ACTION_CONTINUE, FilterHost, loadModule } from './harness.js';

const REQ: [string, string][] = [[':method', 'GET'], [':path', '/a'], [':authority', 'example.com'], ['x-request-id', 'rid-7']];

test('noop continues both phases and leaves headers alone', () => {
  const host = new FilterHost(loadModule('noop'));
  assert.equal(host.start(''), true);
  const id = host.newStream();
  assert.equal(host.onRequestHeaders(id, REQ), ACTION_CONTINUE);
  assert.deepEqual(host.requestHeaders, REQ);
  assert.equal(host.onResponseHeaders(id, [[':status', '200']]), ACTION_CONTINUE);
  host.finish(id);
  assert.deepEqual(host.errors(), []);
});

test('noop survives many requests (memory is reclaimed, not grown without bound)', () => {
  const host = new FilterHost(loadModule('noop'));
  assert.equal(host.start(''), true);
  for (let i = 0; i < 20000; i++) host.request(REQ);
  const pages = (host.instance.exports.memory as WebAssembly.Memory).buffer.byteLength / 65536;
  assert.ok(pages < 64, `memory grew to ${pages} pages`);
});

test('add-header adds x-wisp-filter: 1 by default', () => {
  const host = new FilterHost(loadModule('add-header'));
  assert.equal(host.start(''), true);
  const id = host.newStream();
  assert.equal(host.onRequestHeaders(id, REQ), ACTION_CONTINUE);
  assert.equal(host.header(host.requestHeaders, 'x-wisp-filter'), '1');
  host.finish(id);
});

test('add-header takes the value from plain or JSON config', () => {
  const plain = new FilterHost(loadModule('add-header'));
  assert.equal(plain.start('edge-7'), true);
  plain.onRequestHeaders(plain.newStream(), REQ);
  assert.equal(plain.header(plain.requestHeaders, 'x-wisp-filter'), 'edge-7');

  const json = new FilterHost(loadModule('add-header'));
  assert.equal(json.start('{"name":"X-Via-Wisp","value":"é2"}'), true);
  json.onRequestHeaders(json.newStream(), REQ);
  assert.equal(json.header(json.requestHeaders, 'x-via-wisp'), 'é2');
});

test('add-header refuses invalid config with a logged reason', () => {
  const host = new FilterHost(loadModule('add-header'));
  assert.equal(host.start('{"value": 3}'), false);
  assert.match(host.errors().join('\n'), /config\.value must be a string/);
});

test('headers sets, adds and removes request and response headers with placeholders', () => {
  const host = new FilterHost(loadModule('headers'));
  host.properties.set('source.address', '10.1.2.3:5555');
  host.properties.set('route_name', 'api-v1');
  host.properties.set('node.id', 'wisp-1');
  const config = JSON.stringify({
    request: {
      set: { 'x-client': '%CLIENT_IP%', 'x-route': 'r=%ROUTE%', 'x-a': '1' },
      add: { 'x-node': '%PROPERTY(node.id)%/%REQUEST_ID%', 'x-pct': '100%' },
      remove: ['x-remove-me'],
    },
    response: { set: { 'x-request-id': '%REQUEST_ID%' }, remove: ['server'] },
  });
  assert.equal(host.start(config), true, host.errors().join('\n'));
  const id = host.newStream();
  assert.equal(host.onRequestHeaders(id, [...REQ, ['x-remove-me', 'x'], ['x-a', 'old']]), ACTION_CONTINUE);
  const req = host.requestHeaders;
  assert.equal(host.header(req, 'x-remove-me'), undefined);
  assert.equal(host.header(req, 'x-client'), '10.1.2.3');
  assert.equal(host.header(req, 'x-route'), 'r=api-v1');
  assert.equal(req.filter(([k]) => k === 'x-a').length, 1);
  assert.equal(host.header(req, 'x-a'), '1');
  assert.equal(host.header(req, 'x-node'), 'wisp-1/rid-7');
  assert.equal(host.header(req, 'x-pct'), '100%');

  assert.equal(host.onResponseHeaders(id, [[':status', '200'], ['server', 'up']]), ACTION_CONTINUE);
  assert.equal(host.header(host.responseHeaders, 'server'), undefined);
  assert.equal(host.header(host.responseHeaders, 'x-request-id'), 'rid-7');
  host.finish(id);
  assert.deepEqual(host.errors(), []);
});

test('headers falls back to the request.id property when x-request-id is absent', () => {
  const host = new FilterHost(loadModule('headers'));
  host.properties.set('request.id', 'host-id-1');
  assert.equal(host.start('{"request":{"set":{"x-id":"%REQUEST_ID%"}}}'), true);
  host.onRequestHeaders(host.newStream(), [[':path', '/']]);
  assert.equal(host.header(host.requestHeaders, 'x-id'), 'host-id-1');
});

test('config JSON: escapes, unicode and nesting are decoded', () => {
  const host = new FilterHost(loadModule('add-header'));
  assert.equal(host.start(' {"name": "x-e", "value": "a\\\"b\\u00e9\\ud83d\\ude00\\t/\\/"} '), true, host.errors().join());
  host.onRequestHeaders(host.newStream(), REQ);
  assert.equal(host.header(host.requestHeaders, 'x-e'), 'a"bé😀\t//');
  for (const bad of ['{"value": "x"', '{"value": "\\q"}', '{"value": 1e}', '{"a": [1,]}', '{"value": "x"} extra']) {
    const h = new FilterHost(loadModule('add-header'));
    assert.equal(h.start(bad), false, `accepted ${bad}`);
    assert.match(h.errors().join(), /not valid JSON: .* at offset \d+|not valid JSON: trailing/);
  }
});

test('headers handles IPv6 client addresses', () => {
  const host = new FilterHost(loadModule('headers'));
  host.properties.set('source.address', '[::1]:4000');
  assert.equal(host.start('{"request":{"set":{"x-client":"%CLIENT_IP%"}}}'), true);
  host.onRequestHeaders(host.newStream(), REQ);
  assert.equal(host.header(host.requestHeaders, 'x-client'), '::1');
});

test('headers refuses invalid configs, naming the field', () => {
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
    const host = new FilterHost(loadModule('headers'));
    assert.equal(host.start(config), false, `accepted ${config}`);
    assert.match(host.errors().join('\n'), message);
  }
});
