// Filter faults under concurrent load through a running Wisp (probe.wasm, real workers): the
// failure policy is applied to every faulting request, and routes without the faulting filter
// see no errors at all. Counts are printed for docs/reliability.md.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Wisp } from '../../proxy/server.js';
import { httpGet, metricIn, type TestUpstream } from '../helpers/net.js';
import { type FilterSpec, type RouteSpec, startWispWithFilters } from '../helpers/wisp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PROBE = path.join(ROOT, 'test', 'fixtures', 'probe.wasm');
const FAULTS = ['trap', 'loop', 'grow'] as const;
const MISUSE = ['bad-header', 'bad-name', 'bad-status'] as const;
const PER_GROUP = 40;

let up: TestUpstream;
let wisp: Wisp;
let port: number;
let stop: (() => Promise<void>) | undefined;

before(async () => {
  const filters: FilterSpec[] = [{ name: 'other', wasm: PROBE, config: 'other', failure: 'closed' }];
  const routes: RouteSpec[] = [
    { match: { prefix: '/plain/' } },
    { match: { prefix: '/other/' }, filters: ['other'] },
  ];
  // One filter instance per action and policy, so one action's quarantine never colours the next.
  for (const action of [...FAULTS, 'misuse']) {
    for (const policy of ['closed', 'open']) {
      const name = `${policy}-${action}`;
      filters.push({ name, wasm: PROBE, config: name, failure: policy, deadline: '100ms', max_memory: '8MiB' });
      routes.push({ match: { prefix: `/${name}/` }, filters: [name] });
    }
  }
  ({ wisp, port, upstream: up, stop } = await startWispWithFilters({ file: 'filter-faults.test', workers: 2, routes, filters }));
});

after(async () => {
  await stop?.();
});

type Group = 'faulting-closed' | 'faulting-open' | 'clean-same-filter' | 'plain' | 'other-filter';

/** 40 requests per group at once (fewer faulting ones when `faulting` is given); returns
 * status counts per group. */
async function burst(action: string, filterKey: string, faulting = PER_GROUP): Promise<Record<Group, Map<number, number>>> {
  const plan: Array<[Group, string, Record<string, string>]> = [];
  for (let i = 0; i < PER_GROUP; i++) {
    if (i < faulting) {
      plan.push(['faulting-closed', `/closed-${filterKey}/${action}-${i}`, { 'x-action': action }]);
      plan.push(['faulting-open', `/open-${filterKey}/${action}-${i}`, { 'x-action': action }]);
    }
    plan.push(['clean-same-filter', `/closed-${filterKey}/clean-${action}-${i}`, {}]);
    plan.push(['plain', `/plain/${action}-${i}`, {}]);
    plan.push(['other-filter', `/other/${action}-${i}`, {}]);
  }
  const results = await Promise.all(plan.map(([, url, headers]) => httpGet(port, url, { headers }).then((r) => r.status, () => 0)));
  const out = {} as Record<Group, Map<number, number>>;
  plan.forEach(([g], i) => {
    const m = (out[g] ??= new Map());
    m.set(results[i]!, (m.get(results[i]!) ?? 0) + 1);
  });
  process.stdout.write(`# filter-faults ${action} (${faulting} faulting per policy): ${JSON.stringify(Object.fromEntries(Object.entries(out).map(([g, m]) => [g, Object.fromEntries(m)])))}\n`);
  return out;
}

// When a filter runs past its deadline its worker is terminated; the other requests of that
// batch whose chains don't include the culprit are run again on the replacement worker (they
// used to get their own filter's failure policy: 40/40 503s on a healthy fail-closed route).

/** The other-filter route's outcome during the light loop burst (before any quarantine). */
let lightLoopOther: Array<[number, number]> = [];

for (const action of FAULTS) {
  // A light fault rate first (3 faulting per policy among 200: below the 5-in-10-s quarantine),
  // then a heavy one (40 per policy: the filter is quarantined part-way).
  for (const faulting of [3, PER_GROUP]) {
    test(`filter fault "${action}", ${faulting} of ${faulting * 2 + PER_GROUP * 3} requests faulting: policy on 100% of them, routes without the filter unaffected`, async () => {
      const r = await burst(action, action, faulting);
      // failure: closed → every faulting request is a 503 from Wisp (for grow: the request whose
      // call grew the memory too, fixed in 28716e4).
      assert.deepEqual([...r['faulting-closed']], [[503, faulting]]);
      // failure: open → every faulting request goes on to the upstream as if the filter said Continue.
      assert.deepEqual([...r['faulting-open']], [[200, faulting]]);
      // The route without any filter: zero errors.
      assert.deepEqual([...r.plain], [[200, PER_GROUP]]);
      // Clean requests through the same (closed) filter may share its fate (quarantine after 5
      // faults in 10 s, or a batch whose worker was replaced): only 200 or 503, never anything else.
      for (const s of r['clean-same-filter'].keys()) assert.ok(s === 200 || s === 503, `clean request got ${s}`);
      if (action !== 'loop') assert.deepEqual([...r['other-filter']], [[200, PER_GROUP]], 'route with a different filter');
      else if (faulting < 5) lightLoopOther = [...r['other-filter']];
      const info = JSON.parse((await httpGet(wisp.adminPort(), '/filters')).body) as Array<{ name: string; faults: number; quarantined: boolean }>;
      const closed = info.find((f) => f.name === `closed-${action}`)!;
      assert.ok(closed.faults >= 1);
      // /metrics reports what /filters does, for alerting.
      const page = (await httpGet(wisp.adminPort(), '/metrics')).body;
      const faults = metricIn(page, 'wisp_filter_faults_total', { filter: `closed-${action}` });
      assert.ok(faults !== undefined && faults >= closed.faults, `wisp_filter_faults_total ${faults}, /filters ${closed.faults}`);
      const quarantined = metricIn(page, 'wisp_filter_quarantined', { filter: `closed-${action}` });
      assert.equal(quarantined, closed.quarantined ? 1 : 0);
      // 40 traps in one burst: far past 5 faults in 10 s.
      if (action === 'trap' && faulting === PER_GROUP) assert.equal(quarantined, 1);
      assert.equal(metricIn(page, 'wisp_filter_quarantined', { filter: 'other' }), 0, 'a healthy filter is not quarantined');
      assert.equal(metricIn(page, 'wisp_filter_faults_total', { filter: 'other' }), 0);
      assert.ok(metricIn(page, 'wisp_filter_streams', { filter: 'other' }) !== undefined);
    });
  }
}

test('filter fault "loop": a route with a different, healthy filter sees zero errors', () => {
  assert.deepEqual(lightLoopOther, [[200, PER_GROUP]]);
});

test('invalid host calls (CR in a header value, bad header name, status 99) under load: refused to the filter, requests succeed', async () => {
  for (const action of MISUSE) {
    const r = await burst(action, 'misuse');
    for (const g of ['faulting-closed', 'faulting-open', 'clean-same-filter', 'plain', 'other-filter'] as const) {
      assert.deepEqual([...r[g]], [[200, PER_GROUP]], `${action} ${g}`);
    }
    const seen = up.requests.filter((q) => q.url.includes(`/${action}-`) && q.url.includes('-misuse/'));
    assert.equal(seen.length, PER_GROUP * 2);
    assert.ok(seen.every((q) => q.headers['x-bad-result'] === '2' && q.headers['x-bad'] === undefined));
  }
});

test('a filter that denies (local 403) under load: every denied request gets 403, everything else 200', async () => {
  const r = await burst('deny', 'misuse');
  assert.deepEqual([...r['faulting-closed']], [[403, PER_GROUP]]);
  assert.deepEqual([...r['faulting-open']], [[403, PER_GROUP]]);
  for (const g of ['clean-same-filter', 'plain', 'other-filter'] as const) assert.deepEqual([...r[g]], [[200, PER_GROUP]], g);
  assert.equal(up.requests.filter((q) => q.url.includes('/deny-') && q.url.includes('-misuse/deny')).length, 0, 'no denied request reached the upstream');
});
