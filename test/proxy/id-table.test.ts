// IdTable: the stream-id table of the filter runtime (proxy/id-table.ts), checked against a Map
// on the id patterns the proxy produces: increasing ids with short and long lives, ids past
// 2^32, growth.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdTable } from '../../proxy/id-table.js';

function same<T>(t: IdTable<T>, m: Map<number, T>): void {
  assert.equal(t.size, m.size);
  for (const [k, v] of m) assert.equal(t.get(k), v, `id ${k}`);
  assert.deepEqual(new Map(t.entries()), m);
}

test('increasing ids, most short-lived, some living across many turns of the slots', () => {
  const t = new IdTable<string>(16);
  const m = new Map<number, string>();
  const live: number[] = [];
  // Deterministic: every 7th id is long-lived (kept to the end), the rest end 5 ids later.
  for (let id = 1; id <= 5000; id++) {
    t.set(id, `v${id}`);
    m.set(id, `v${id}`);
    if (id % 7 === 0) live.push(id);
    const old = id - 5;
    if (old > 0 && old % 7 !== 0) {
      assert.equal(t.delete(old), m.delete(old));
    }
    if (id % 500 === 0) same(t, m);
  }
  same(t, m);
  for (const id of live) assert.equal(t.get(id), `v${id}`);
  for (const id of live) assert.equal(t.delete(id), true);
  assert.equal(t.delete(live[0]), false, 'deleting twice');
});

test('a slot holder that is still alive moves aside, and both stay reachable', () => {
  const t = new IdTable<number>(16);
  t.set(3, 3);
  t.set(3 + 16, 19); // same slot while 3 lives
  assert.equal(t.get(3), 3);
  assert.equal(t.get(19), 19);
  t.set(3, 33); // update in the overflow
  assert.equal(t.get(3), 33);
  assert.equal(t.delete(19), true);
  assert.equal(t.get(19), undefined);
  assert.equal(t.get(3), 33);
  assert.equal(t.size, 1);
});

test('ids past 2^32, the ids WebSocket and TCP streams start at, and negative ids (worker sniffs)', () => {
  const t = new IdTable<number>();
  const ids = [2 ** 32 + 5, 2 ** 32 + 5 + 1024, 1_000_000_000, 4_000_000_000, 2 ** 53 - 1, 0, -1, -2, -1025];
  ids.forEach((id, i) => t.set(id, i));
  ids.forEach((id, i) => assert.equal(t.get(id), i));
  assert.equal(t.get(5), undefined);
  ids.forEach((id) => assert.equal(t.delete(id), true));
  assert.equal(t.size, 0);
});

test('grows past half full without losing entries', () => {
  const t = new IdTable<number>(16);
  const m = new Map<number, number>();
  for (let id = 100; id < 1100; id++) {
    t.set(id, id * 2);
    m.set(id, id * 2);
  }
  same(t, m);
});
