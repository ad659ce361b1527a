import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { normalizeConfig, redactConfig } from '../../proxy/config/load.js';
import type { WispConfig } from '../../proxy/config/types.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-redact-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
for (const f of ['a.wasm', 'c.crt', 'c.key']) fs.writeFileSync(path.join(tmp, f), '');

function configWithSecrets(): WispConfig {
  return normalizeConfig({
    admin: { address: '127.0.0.1:0', token: 'admin-token-value' },
    listeners: [{
      name: 'l', port: 0,
      tls: { cert: 'c.crt', key: 'c.key', passphrase: 'pem-pass', sni: [{ hostname: 'a.test', cert: 'c.crt', key: 'c.key', passphrase: 'sni-pass' }] },
      routes: [{ direct_response: {} }],
    }],
    filters: [
      {
        name: 'auth', wasm: 'a.wasm',
        config: {
          issuer: 'https://id.example', api_key: 'k1',
          upstream: { clientSecret: 'shh', retries: 3, credentials: [{ Password: 'p', user: 'u' }] },
          jwks: { keys: [{ kid: 1 }] },
        },
        vm_config: { access_token: 't' },
      },
      { name: 'plain-secret', wasm: 'a.wasm', config: 'token=abcdef' },
      { name: 'plain', wasm: 'a.wasm', config: 'mode=strict' },
      { name: 'scalar', wasm: 'a.wasm', config: '"a password here"' },
    ],
  }, path.join(tmp, 'wisp.yaml'));
}

test('redactConfig hides every secret and nothing else', () => {
  const cfg = configWithSecrets();
  const before = JSON.stringify(cfg);
  const red = redactConfig(cfg) as WispConfig;
  assert.equal(JSON.stringify(cfg), before, 'the live config is not touched');

  assert.equal(red.admin.token, '[redacted]');
  assert.equal(red.listeners[0]!.tls!.passphrase, '[redacted]');
  assert.equal(red.listeners[0]!.tls!.sni[0]!.passphrase, '[redacted]');
  assert.equal(red.listeners[0]!.tls!.cert, cfg.listeners[0]!.tls!.cert);

  assert.deepEqual(JSON.parse(red.filters[0]!.config), {
    issuer: 'https://id.example', api_key: '[redacted]',
    upstream: { clientSecret: '[redacted]', retries: 3, credentials: [{ Password: '[redacted]', user: 'u' }] },
    jwks: { keys: '[redacted]' },
  });
  assert.deepEqual(JSON.parse(red.filters[0]!.vm_config), { access_token: '[redacted]' });
  assert.equal(red.filters[1]!.config, '[redacted]');
  assert.equal(red.filters[2]!.config, 'mode=strict');
  assert.equal(red.filters[3]!.config, '[redacted]');

  const text = JSON.stringify(red);
  for (const secret of ['admin-token-value', 'pem-pass', 'sni-pass', 'k1', 'shh', '"p"', 'abcdef']) {
    assert.ok(!text.includes(secret), `${secret} leaked`);
  }
});

test('redactConfig leaves a config without secrets unchanged', () => {
  const cfg = normalizeConfig({ listeners: [{ name: 'l', port: 0, routes: [{ direct_response: {} }] }] }, path.join(tmp, 'x.yaml'));
  assert.deepEqual(redactConfig(cfg), cfg);
});
