// breaker's failure-ratio trigger through a running Wisp (two filter workers, one shared
// breaker) in front of a real upstream that fails every second request: the consecutive
// trigger is out of reach, so only the window can open the circuit.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Wisp } from '../../proxy/server.js';
import { filterMetric, httpGet, type TestUpstream, waitFor } from '../helpers/net.js';
import { startWispWithFilters } from '../helpers/wisp.js';
import { wasmPath } from './harness.js';

const MIN_REQUESTS = 10;
let up: TestUpstream;
let wisp: Wisp;
let port: number;
let stop: (() => Promise<void>) | undefined;

before(async () => {
  let n = 0;
  ({ wisp, port, upstream: up, stop } = await startWispWithFilters({
    file: 'breaker-wisp.test',
    workers: 2,
    upstream: (_req, res) => {
      n++;
      const status = n % 2 === 0 ? 503 : 200;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(`upstream ${status}\n`);
    },
    chain: ['breaker'],
    // Outlier detection would eject the endpoint on its own schedule: out of the way.
    cluster: { name: 'app', outlier: { consecutive_5xx: 1000 } },
    filters: [
      {
        name: 'breaker',
        wasm: wasmPath('breaker'),
        config: JSON.stringify({ consecutive_failures: 1000, failure_ratio: 0.5, min_requests: MIN_REQUESTS, window: '60s', cooldown: '60s' }),
      },
    ],
  }));
});

after(async () => {
  await stop?.();
});

function metric(name: string): Promise<number | undefined> {
  return filterMetric(wisp.adminPort(), 'breaker', name);
}

test('half the requests failing opens the breaker once the window holds min_requests', async () => {
  // One at a time, so the upstream's count is the order the breaker sees them in.
  for (let i = 1; i <= MIN_REQUESTS; i++) {
    const r = await httpGet(port, `/r${i}`);
    assert.equal(r.status, i % 2 === 0 ? 503 : 200, `request ${i} went to the upstream`);
    assert.equal(r.headers['x-wisp-breaker'], undefined, `request ${i}: closed below the minimum volume`);
  }
  assert.equal(up.requests.length, MIN_REQUESTS);
  // Successes are counted in the log phase, after the client has its response.
  await waitFor(async () => (await metric('breaker_state.app')) === 1, 5000, 'breaker_state.app = 1');
  const rejected = await httpGet(port, '/after');
  assert.equal(rejected.status, 503);
  assert.equal(rejected.headers['x-wisp-breaker'], 'open');
  assert.ok(Number(rejected.headers['retry-after']) > 0);
  assert.equal(up.requests.length, MIN_REQUESTS, 'the open breaker answered without the upstream');
  assert.equal(await metric('breaker_opened'), 1);
  assert.equal(await metric('breaker_rejected'), 1);
});
