// Unit tests for the canary filter on Wisp's own proxy-wasm host (wisp/testing), in-process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FilterHarness } from 'wisp/testing';

const WASM = new URL('../build/canary.wasm', import.meta.url);
const load = (config) => FilterHarness.load(WASM, { name: 'canary', config });

test('x-canary: 1 and cookie canary=1 opt in; the upstream gets x-wisp-canary: 1', async () => {
  const h = await load({});
  const byHeader = h.request({ path: '/', headers: { 'x-canary': '1' } });
  assert.equal(byHeader.action, 'continue');
  assert.equal(byHeader.header('x-wisp-canary'), '1');
  assert.equal(h.response({ status: 200 }).header('x-wisp-canary'), '1', 'the client sees its cohort');
  h.done();
  const byCookie = h.exchange({ headers: { cookie: 'session=abc; canary=1' } });
  assert.equal(byCookie.header('x-wisp-canary'), '1');
  assert.equal(h.request({ headers: { cookie: 'canary=0; x=1' } }).header('x-wisp-canary'), '0');
  assert.equal(h.request({ path: '/' }).header('x-wisp-canary'), '0', 'no opt-in, percent 0: stable');
  assert.deepEqual(h.metrics(), { canary_requests: 2, stable_requests: 2 });
  assert.deepEqual(h.errors(), []);
});

test('a client-sent tag is replaced, never forwarded', async () => {
  const h = await load({});
  const r = h.request({ headers: [['x-wisp-canary', '1'], ['x-wisp-canary', '1']] });
  assert.deepEqual(r.headers.filter(([k]) => k === 'x-wisp-canary'), [['x-wisp-canary', '0']]);
});

test('percent splits clients by IP, and each client stays in its cohort', async () => {
  const h = await load({ percent: 20 });
  let canary = 0;
  for (let i = 0; i < 1000; i++) {
    const ip = `10.${(i >> 8) & 255}.${i & 255}.7`;
    const first = h.exchange({ clientAddress: `${ip}:4000` }).header('x-wisp-canary');
    const again = h.exchange({ clientAddress: `${ip}:5123` }).header('x-wisp-canary');
    assert.equal(again, first, `client ${ip} changed cohort`);
    if (first === '1') canary++;
  }
  assert.ok(canary > 120 && canary < 280, `${canary} of 1000 clients in the canary at 20%`);
  assert.equal(h.exchange({ clientAddress: '10.0.0.1:1', headers: { 'x-canary': '0' } }).header('x-wisp-canary'), '0', 'opt-out wins over percent');
});

test('custom header, cookie and tag names', async () => {
  const h = await load({ header: 'X-Beta', cookie: 'beta', tag: 'x-cohort' });
  assert.equal(h.request({ headers: { 'x-beta': '1' } }).header('x-cohort'), '1');
  assert.equal(h.request({ headers: { cookie: 'beta=1' } }).header('x-cohort'), '1');
  assert.equal(h.request({ headers: { 'x-canary': '1' } }).header('x-cohort'), '0');
});

test('bad configs are refused with the reason', async () => {
  await assert.rejects(load({ percent: 150 }), /percent must be a number from 0 to 100/);
  await assert.rejects(load({ precent: 5 }), /unknown key "precent"/);
  await assert.rejects(load({ tag: '' }), /tag must be a non-empty string/);
  await assert.rejects(load('{"percent": '), /not valid JSON/);
});
