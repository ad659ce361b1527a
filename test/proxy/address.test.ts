import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv6 } from '../../proxy/listener/client.js';
import { Wisp } from '../../proxy/server.js';
import { normalizeConfig } from '../../proxy/config/load.js';
import { startUpstream, httpGet, rawRequest } from '../helpers/net.js';

function bytes(...groups: number[]): Uint8Array {
  const b = new Uint8Array(16);
  groups.forEach((g, i) => {
    b[2 * i] = g >> 8;
    b[2 * i + 1] = g & 255;
  });
  return b;
}

test('IPv6 addresses are written in RFC 5952 form', () => {
  assert.equal(formatIPv6(bytes(0, 0, 0, 0, 0, 0, 0, 1)), '::1');
  assert.equal(formatIPv6(bytes(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), '2001:db8::1');
  assert.equal(formatIPv6(bytes(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1)), '2001:db8:0:1::1');
  assert.equal(formatIPv6(bytes(0xfe80, 0, 0, 0, 0x1, 0x2, 0x3, 0x4)), 'fe80::1:2:3:4');
  assert.equal(formatIPv6(bytes(1, 2, 3, 4, 5, 6, 7, 8)), '1:2:3:4:5:6:7:8');
  assert.equal(formatIPv6(bytes(0, 0, 0, 0, 0, 0, 0, 0)), '::');
});

test('an IPv6 client on an IPv6 listener is forwarded as ::1', async () => {
  const up = await startUpstream();
  const wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'v6', address: '[::1]:0', routes: [{ match: { prefix: '/' }, cluster: 'up' }] }],
        clusters: [{ name: 'up', endpoints: [`127.0.0.1:${up.port}`] }],
      },
      'v6.test',
    ),
  );
  try {
    const r = await httpGet(wisp.listenerPort('v6'), '/six', { host: '::1' });
    assert.equal(r.status, 200);
    assert.equal(up.requests[0]!.headers['x-forwarded-for'], '::1');
  } finally {
    await wisp.stop(0);
    await up.close();
  }
});

test('an IPv6 client address carried by PROXY v2 is forwarded in RFC 5952 form', async () => {
  const up = await startUpstream();
  const wisp = await Wisp.start(
    normalizeConfig(
      {
        admin: { address: '127.0.0.1:0' },
        listeners: [{ name: 'pp6', address: '127.0.0.1:0', proxy_protocol: true, routes: [{ match: { prefix: '/' }, cluster: 'up' }] }],
        clusters: [{ name: 'up', endpoints: [`127.0.0.1:${up.port}`] }],
      },
      'pp6.test',
    ),
  );
  try {
    // PROXY v2, PROXY command, TCP over IPv6: 2001:db8::1 port 4000 -> ::1 port 80.
    const header = Buffer.alloc(16 + 36);
    Buffer.from('0d0a0d0a000d0a515549540a', 'hex').copy(header, 0);
    header[12] = 0x21;
    header[13] = 0x21;
    header.writeUInt16BE(36, 14);
    Buffer.from(bytes(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)).copy(header, 16);
    Buffer.from(bytes(0, 0, 0, 0, 0, 0, 0, 1)).copy(header, 32);
    header.writeUInt16BE(4000, 48);
    header.writeUInt16BE(80, 50);
    const r = await rawRequest(wisp.listenerPort('pp6'), Buffer.concat([header, Buffer.from('GET /pp6 HTTP/1.1\r\nHost: a\r\n\r\n')]));
    assert.equal(r.status, 200);
    assert.equal(up.requests[0]!.headers['x-forwarded-for'], '2001:db8::1');
  } finally {
    await wisp.stop(0);
    await up.close();
  }
});
