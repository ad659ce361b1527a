// TLS termination and SNI: a Wisp listener with a default certificate (localhost) and an SNI
// certificate (other.test); real TLS clients check which certificate they got and that the
// request was proxied with x-forwarded-proto: https. Certificates: test/fixtures/certs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import uWS from 'uWebSockets.js';
import type { us_listen_socket } from 'uWebSockets.js';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { connectWebSocket, type WsHandler } from '../../proxy/upstream/ws-client.js';
import { startUpstream, waitFor, type TestUpstream } from '../helpers/net.js';

// dist/test/proxy/ → the repository's test/fixtures/certs/
const certDir = fileURLToPath(new URL('../../../test/fixtures/certs/', import.meta.url));
const localhostCert = `${certDir}localhost.crt`;
const localhostKey = `${certDir}localhost.key`;
const otherCert = `${certDir}other.test.crt`;
const otherKey = `${certDir}other.test.key`;
const localhostCa = fs.readFileSync(localhostCert);
const otherCa = fs.readFileSync(otherCert);

let main: TestUpstream;
let other: TestUpstream;
let wsUpstream: { port: number; close(): void };
let wisp: Wisp;
let port: number;

/** A uWS WebSocket echo upstream (uWS is a real, widely used WebSocket server). */
function startWsEcho(): Promise<{ port: number; close(): void }> {
  return new Promise((resolve, reject) => {
    let ls: us_listen_socket | null = null;
    // The returned closure holds the App: an App the GC collects takes its sockets with it.
    const app = uWS.App().ws('/*', { message: (ws, msg, isBinary) => void ws.send(msg, isBinary) });
    app.listen('127.0.0.1', 0, (s) => {
      if (!s) return reject(new Error('ws upstream cannot listen'));
      ls = s;
      resolve({
        port: uWS.us_socket_local_port(s),
        close: () => {
          uWS.us_listen_socket_close(ls!);
          void app;
        },
      });
    });
  });
}

before(async () => {
  main = await startUpstream();
  other = await startUpstream();
  wsUpstream = await startWsEcho();
  wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [
          {
            name: 'tls',
            address: '127.0.0.1:0',
            tls: { cert: localhostCert, key: localhostKey, sni: [{ hostname: 'other.test', cert: otherCert, key: otherKey }] },
            routes: [
              { match: { prefix: '/ws' }, cluster: 'ws' },
              { match: { host: ['other.test'], prefix: '/' }, cluster: 'other' },
              { match: { prefix: '/' }, cluster: 'main' },
            ],
          },
        ],
        clusters: [
          { name: 'main', endpoints: [`127.0.0.1:${main.port}`] },
          { name: 'other', endpoints: [`127.0.0.1:${other.port}`] },
          { name: 'ws', endpoints: [`127.0.0.1:${wsUpstream.port}`] },
        ],
      },
      'tls.test',
    ),
  );
  port = wisp.listenerPort('tls');
});

after(async () => {
  await wisp.stop(0);
  await main.close();
  await other.close();
  wsUpstream.close();
});

interface TlsAnswer {
  status: number;
  body: string;
  peerCN: string;
}

function httpsGet(servername: string, ca: Buffer, path: string, host: string): Promise<TlsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path, servername, ca, agent: false, headers: { host } },
      (res) => {
        const cert = (res.socket as tls.TLSSocket).getPeerCertificate();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), peerCN: String(cert.subject.CN) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('SNI localhost: the localhost certificate verifies, proxied 200 with x-forwarded-proto https', async () => {
  const before = main.requests.length;
  const r = await httpsGet('localhost', localhostCa, '/hello', 'localhost');
  assert.equal(r.status, 200);
  assert.equal(r.peerCN, 'localhost');
  assert.equal(main.requests.length, before + 1);
  const seen = main.requests[main.requests.length - 1]!;
  assert.equal(seen.url, '/hello');
  assert.equal(seen.headers['x-forwarded-proto'], 'https');
});

test('SNI other.test: the other.test certificate verifies and the host route answers', async () => {
  const before = other.requests.length;
  const r = await httpsGet('other.test', otherCa, '/there', 'other.test');
  assert.equal(r.status, 200);
  assert.equal(r.peerCN, 'other.test');
  assert.equal(other.requests.length, before + 1);
  const seen = other.requests[other.requests.length - 1]!;
  assert.equal(seen.url, '/there');
  assert.equal(seen.headers['x-forwarded-proto'], 'https');
  assert.equal(seen.headers['x-forwarded-host'], 'other.test');
});

test('a client that trusts only localhost refuses the other.test certificate', async () => {
  await assert.rejects(httpsGet('other.test', localhostCa, '/', 'other.test'));
});

test('an unknown server name gets the default certificate', async () => {
  const cn = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'unknown.test', rejectUnauthorized: false }, () => {
      const cert = s.getPeerCertificate();
      s.destroy();
      resolve(String(cert.subject.CN));
    });
    s.on('error', reject);
  });
  assert.equal(cn, 'localhost');
});

test('wss through the SNI domain other.test: upgrade and echo over TLS', async () => {
  const r = await connectWebSocket({
    host: '127.0.0.1',
    port,
    path: '/ws/echo',
    headers: ['host', 'other.test'],
    tls: { servername: 'other.test', ca: otherCa },
    handshakeTimeoutMs: 5000,
  });
  assert.equal(r.status, 101);
  assert.ok(r.upgraded);
  const conn = r.connection;
  const got: string[] = [];
  let closed = 0;
  const handler: WsHandler = {
    onMessage: (data) => void got.push(data.toString()),
    onClose: (code) => void (closed = code),
    onDrain: () => {},
  };
  conn.start(handler);
  assert.equal((conn.socket as tls.TLSSocket).getPeerCertificate().subject.CN, 'other.test');
  conn.send('over tls', false);
  await waitFor(() => got.length === 1, 5000, 'echo');
  assert.equal(got[0], 'over tls');
  conn.close(1000, 'bye');
  await waitFor(() => closed !== 0, 5000, 'close');
  assert.equal(closed, 1000);
});
