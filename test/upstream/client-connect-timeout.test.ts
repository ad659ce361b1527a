// connectTimeoutMs on loopback. A connect on 127.0.0.1 only hangs when the listener's accept
// queue is full: Linux then drops the SYN and the client keeps retransmitting. A child
// process listens with backlog 1 and is stopped (SIGSTOP) so it never accepts; two filler
// connections fill the queue; our connect then hangs until the pool's timer fires.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { EndpointPool } from '../../proxy/upstream/pool.js';
import { POOL_OPTS, send } from './client-helpers.js';

const LISTENER = `
const net = require('node:net');
const s = net.createServer(() => {});
s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => process.stdout.write(String(s.address().port) + '\\n'));
`;

test('connect that does not complete within connectTimeoutMs → connect-timeout', { skip: process.platform !== 'linux' ? 'relies on Linux SYN-drop when the accept queue is full' : false }, async () => {
  const child = spawn(process.execPath, ['-e', LISTENER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fillers: net.Socket[] = [];
  let pool: EndpointPool | null = null;
  try {
    const [data] = (await once(child.stdout!, 'data')) as [Buffer];
    const port = Number(data.toString().trim());
    assert.ok(port > 0);
    process.kill(child.pid!, 'SIGSTOP');
    // Fill the accept queue (backlog + 1 established connections).
    let connected = 0;
    for (let i = 0; i < 3; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => connected++);
      s.on('error', () => {});
      fillers.push(s);
    }
    const deadline = Date.now() + 3000;
    while (connected < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(connected >= 2, 'the accept queue filled');

    pool = new EndpointPool('127.0.0.1', port, { ...POOL_OPTS, connectTimeoutMs: 150 });
    const started = Date.now();
    const h = await send(pool, 'GET', '/');
    assert.equal(h.error?.kind, 'connect-timeout');
    assert.equal(h.error?.responseStarted, false);
    assert.ok(Date.now() - started >= 140, 'the timer, not an error, ended the attempt');
    assert.equal(pool.stats().open, 0);
  } finally {
    pool?.destroy();
    for (const s of fillers) s.destroy();
    child.kill('SIGKILL');
  }
});
