// The hostile corpus against a real Wisp in front of a real recording upstream: every
// malformed request is refused (by Wisp with a 4xx/5xx and a close, or by uWS before Wisp
// sees it) and the upstream records none of them, nor anything pipelined behind them.
// Good requests in the same run prove the harness forwards what it should.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { startUpstream, rawRequest, httpGet, type RawResult, type TestUpstream } from '../helpers/net.js';
import { hostileCases, wsHostileCases, goodCases, CORPUS_LIMITS, type HostileCase } from './corpus.js';

let upstream: TestUpstream;
/** WebSocket handshakes that reached the upstream (node:http emits them as 'upgrade', not 'request'). */
const upgrades: string[] = [];
let wisp: Wisp;
let port = 0;

before(async () => {
  upstream = await startUpstream();
  upstream.server.on('upgrade', (req: { url?: string }, socket: { destroy(): void }) => {
    upgrades.push(req.url ?? '');
    socket.destroy();
  });
  wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [
          {
            name: 'l',
            address: '127.0.0.1:0',
            limits: {
              max_request_line_bytes: CORPUS_LIMITS.max_request_line_bytes,
              max_header_bytes: CORPUS_LIMITS.max_header_bytes,
              max_headers: CORPUS_LIMITS.max_headers,
              max_body_bytes: CORPUS_LIMITS.max_body_bytes,
            },
            routes: [{ match: { prefix: '/' }, cluster: 'up' }],
          },
        ],
        clusters: [{ name: 'up', endpoints: ['127.0.0.1:' + upstream.port] }],
      },
      'test',
    ),
  );
  port = wisp.listenerPort('l');
});

after(async () => {
  if (wisp) await wisp.stop(0);
  if (upstream) await upstream.close();
});

/** Final status of the first response, skipping interim 1xx (uWS writes 100 Continue itself). */
function finalStatus(text: string): number {
  let i = 0;
  for (let guard = 0; guard < 8; guard++) {
    if (!text.startsWith('HTTP/1.1 ', i)) return 0;
    const status = Number(text.slice(i + 9, i + 12));
    if (status >= 200) return status;
    const end = text.indexOf('\r\n\r\n', i);
    if (end < 0) return 0;
    i = end + 4;
  }
  return 0;
}

/** Send and never throw: a reset after Wisp or uWS refused is an outcome, not a failure. */
async function send(raw: string | Buffer, timeoutMs: number, idleMs: number): Promise<RawResult> {
  try {
    return await rawRequest(port, raw, { timeoutMs, idleMs });
  } catch {
    return { text: '', status: 0, closedByServer: true };
  }
}

let sentinels = 0;
/** A good request on a fresh connection, answered end to end: whatever a previous case got
 * forwarded was sent to the upstream before this one was, so counting after it is meaningful. */
async function sentinel(): Promise<string> {
  const url = `/sentinel/${++sentinels}`;
  const r = await httpGet(port, url);
  assert.equal(r.status, 200, `sentinel ${url}: ${r.body}`);
  return url;
}

function upstreamUrlsSince(index: number): string[] {
  return upstream.requests.slice(index).map((r) => r.url);
}

/** One refused case: the answer Wisp gave, and that nothing but a sentinel reached the upstream. */
async function assertRefused(c: HostileCase): Promise<void> {
  const before = upstream.requests.length;
  const upgradesBefore = upgrades.length;
  const r = await send(c.raw, 3000, 1000);
  const s = await sentinel();
  assert.deepEqual(upstreamUrlsSince(before), [s], `${c.name}: the upstream must record nothing but the sentinel`);
  assert.deepEqual(upgrades.slice(upgradesBefore), [], `${c.name}: no WebSocket handshake may reach the upstream`);
  const status = finalStatus(r.text);
  if (status === 0) {
    assert.ok(c.expect.orClosed, `${c.name}: expected ${c.expect.status}, got no answer (${JSON.stringify(r.text.slice(0, 80))})`);
  } else {
    assert.equal(status, c.expect.status, `${c.name}: ${JSON.stringify(r.text.slice(0, 120))}`);
  }
  assert.ok(r.closedByServer, `${c.name}: Wisp must close the connection after refusing`);
}

const WISP_ANSWERS = hostileCases.filter((c) => !c.expect.closedByUws);
const UWS_DROPS = hostileCases.filter((c) => c.expect.closedByUws);

test('the corpus is big enough and every case says what must happen', () => {
  assert.ok(hostileCases.length >= 50, `${hostileCases.length} hostile cases`);
  for (const c of hostileCases) {
    assert.equal(c.forwarded, false);
    assert.ok(c.expect.closedByUws === true || (c.expect.status !== undefined && c.expect.status >= 400), c.name);
  }
  assert.equal(new Set(hostileCases.map((c) => c.name)).size, hostileCases.length, 'names are unique');
});

test('good requests are forwarded (the harness can see forwarding)', async () => {
  for (const g of goodCases) {
    const before = upstream.requests.length;
    const r = await send(g.raw, 3000, 200);
    assert.equal(finalStatus(r.text), g.status, `${g.name}: ${JSON.stringify(r.text.slice(0, 120))}`);
    const got = upstream.requests.slice(before);
    assert.deepEqual(got.map((q) => q.url), g.forwardedUrls, g.name);
    if (g.body !== undefined) assert.equal(got[0].body.toString('latin1'), g.body, `${g.name}: body`);
    for (const h of g.absentUpstreamHeaders ?? []) assert.equal(got[0].headers[h], undefined, `${g.name}: upstream saw ${h}`);
  }
});

test('Wisp refuses every malformed request uWS hands over, closes, and forwards nothing', async () => {
  for (const c of WISP_ANSWERS) await assertRefused(c);
});

// uWS hands a GET with Sec-WebSocket-Key to the .ws() upgrade handler, not the HTTP one:
// that entry point must refuse the same heads.
test('hostile heads dressed as WebSocket upgrades are refused the same way', async () => {
  for (const c of wsHostileCases) await assertRefused(c);
});

test('requests uWS drops never get an answer and are never forwarded', async () => {
  const before = upstream.requests.length;
  // uWS waits ~10 s on most of these; no answer within a short window is the outcome.
  const results = await Promise.all(UWS_DROPS.map((c) => send(c.raw, 500, 200)));
  for (let i = 0; i < UWS_DROPS.length; i++) {
    const c: HostileCase = UWS_DROPS[i];
    assert.equal(results[i].text, '', `${c.name}: no response bytes`);
  }
  const s = await sentinel();
  assert.deepEqual(upstreamUrlsSince(before), [s], 'the upstream must record nothing but the sentinel');
});

test('over the whole run the upstream saw only good requests and sentinels', async () => {
  const s = await sentinel();
  const allowed = new Set<string>([s]);
  for (const g of goodCases) for (const u of g.forwardedUrls) allowed.add(u);
  for (let i = 1; i <= sentinels; i++) allowed.add(`/sentinel/${i}`);
  const unexpected = upstream.requests.map((r) => r.url).filter((u) => !allowed.has(u));
  assert.deepEqual(unexpected, [], 'malformed or smuggled requests reached the upstream');
  assert.equal(upstream.requests.length, goodCases.reduce((n, g) => n + g.forwardedUrls.length, 0) + sentinels);
  assert.ok(!upstream.requests.some((r) => r.url.includes('smuggled') || r.url.includes('after-bad')));
});
