import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, normalizeConfig, parseConfig } from '../../proxy/config/load.js';

const BASE = `
clusters:
  - name: redis
    endpoints: ["127.0.0.1:6379"]
  - name: web
    endpoints: ["127.0.0.1:8443"]
filters:
  - name: sniff
    wasm: ../../filters/build/sniff.wasm
`;

function issues(text: string): string[] {
  try {
    parseConfig(text, '/tmp/wisp-tcp.yaml', { checkFiles: false });
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
}

test('tcp listener: defaults, sizes and durations normalised, http listeners unchanged', () => {
  const cfg = parseConfig(`${BASE}
listeners:
  - name: l4
    address: 127.0.0.1:0
    protocol: tcp
    tcp:
      cluster: web
      sniff: sniff
      first_bytes: 2KB
      first_bytes_timeout: 250ms
      routes:
        - match: { protocol: redis }
          cluster: redis
        - match: { protocol: [tls], sni: ["*.Example.com", api.test] }
          cluster: web
  - name: http
    address: 127.0.0.1:0
    routes: [{ match: { prefix: / }, cluster: web }]
`, '/tmp/wisp-tcp.yaml', { checkFiles: false });
  const l4 = cfg.listeners[0]!;
  assert.equal(l4.protocol, 'tcp');
  assert.deepEqual(l4.routes, []);
  assert.deepEqual(l4.tcp, {
    cluster: 'web', sniff: 'sniff', first_bytes: 2048, first_bytes_timeout_ms: 250,
    idle_timeout_ms: 3_600_000, connect_timeout_ms: 2000, sniff_inline: false,
    routes: [
      { match: { protocol: ['redis'] }, cluster: 'redis' },
      { match: { protocol: ['tls'], sni: ['*.example.com', 'api.test'] }, cluster: 'web' },
    ],
  });
  const http = cfg.listeners[1]!;
  assert.equal(http.protocol, undefined);
  assert.equal(http.tcp, undefined);
  assert.equal(http.routes.length, 1);
  // The normalised form goes through validation again unchanged.
  assert.deepEqual(normalizeConfig(JSON.parse(JSON.stringify(cfg)), cfg.source, { checkFiles: false }), cfg);
});

test('tcp listener: only a default cluster is enough; no sniff needed', () => {
  const cfg = parseConfig(`${BASE}
listeners:
  - { name: l4, port: 0, protocol: tcp, tcp: { cluster: redis, idle_timeout: 0, connect_timeout: 500ms } }
`, '/tmp/wisp-tcp.yaml', { checkFiles: false });
  assert.deepEqual(cfg.listeners[0]!.tcp, {
    cluster: 'redis', routes: [], first_bytes: 1024, first_bytes_timeout_ms: 1000, idle_timeout_ms: 0, connect_timeout_ms: 500, sniff_inline: false,
  });
});

test('tcp listener: unknown names, missing pieces and misplaced keys are reported together', () => {
  const found = issues(`${BASE}
listeners:
  - name: a
    port: 0
    protocol: tcp
    tcp:
      cluster: webb
      sniff: sniffer
      routes: [{ match: { protocol: redis }, cluster: nope }]
  - name: b
    port: 0
    protocol: tcp
    tcp:
      routes: [{ match: { protocol: http2 }, cluster: web }]
  - name: c
    port: 0
    protocol: tcp
  - name: d
    port: 0
    protocol: tcp
    tcp: { cluster: web }
    routes: [{ match: { prefix: / }, cluster: web }]
  - name: e
    port: 0
  - name: f
    port: 0
    tcp: { cluster: web }
    routes: [{ match: { prefix: / }, cluster: web }]
  - name: g
    port: 0
    protocol: tcp
    tcp: { cluster: web, first_bytes: 0, routes: [{ match: { protocol: Gopher }, cluster: web }] }
`);
  const has = (re: RegExp): void => assert.ok(found.some((f) => re.test(f)), `expected ${re} in:\n${found.join('\n')}`);
  has(/listeners\[0\]\.tcp\.cluster: unknown cluster "webb" \(did you mean "web"\?\)/);
  has(/listeners\[0\]\.tcp\.sniff: unknown filter "sniffer"/);
  has(/listeners\[0\]\.tcp\.routes\[0\]\.cluster: unknown cluster "nope"/);
  has(/listeners\[1\]\.tcp\.routes: routes match on what `sniff` finds/);
  has(/listeners\[2\]: a tcp listener needs a `tcp` block/);
  has(/listeners\[3\]\.routes: HTTP routes do not apply to a tcp listener/);
  has(/listeners\[4\]: missing required key "routes"/);
  has(/listeners\[5\]\.tcp: only a listener with `protocol: tcp`/);
  has(/listeners\[6\]\.tcp\.first_bytes: must be 1 byte to 64KB/);
  has(/listeners\[6\]\.tcp\.routes\[0\]\.match\.protocol.*(lower-case|pattern)/);
});

test('tcp routes: alpn lists and http_listener hand-offs are normalised', () => {
  const cfg = parseConfig(`${BASE}
listeners:
  - name: site
    port: 0
    routes: [{ match: { prefix: / }, cluster: web }]
  - name: l4
    port: 0
    protocol: tcp
    tcp:
      sniff: sniff
      routes:
        - { match: { protocol: http1 }, http_listener: site }
        - { match: { protocol: tls, alpn: h2 }, cluster: web }
        - { match: { protocol: tls, alpn: [http/1.1, http/1.0] }, cluster: redis }
`, '/tmp/wisp-tcp.yaml', { checkFiles: false });
  assert.deepEqual(cfg.listeners[1]!.tcp!.routes, [
    { match: { protocol: ['http1'] }, http_listener: 'site' },
    { match: { protocol: ['tls'], alpn: ['h2'] }, cluster: 'web' },
    { match: { protocol: ['tls'], alpn: ['http/1.1', 'http/1.0'] }, cluster: 'redis' },
  ]);
  // The normalised form validates to itself.
  assert.deepEqual(normalizeConfig(cfg, '/tmp/wisp-tcp.yaml', { checkFiles: false }).listeners, cfg.listeners);
});

test('tcp routes: a bad http_listener or alpn is refused with its path', () => {
  const found = issues(`${BASE}
listeners:
  - name: site
    port: 0
    routes: [{ match: { prefix: / }, cluster: web }]
  - name: secure
    port: 0
    tls: { cert: a.crt, key: a.key }
    routes: [{ match: { prefix: / }, cluster: web }]
  - name: l4
    port: 0
    protocol: tcp
    tcp:
      sniff: sniff
      routes:
        - { match: { protocol: http1 }, http_listener: sitee }
        - { match: { protocol: http1 }, http_listener: l4 }
        - { match: { protocol: http1 }, http_listener: secure }
        - { match: { protocol: [http1, http2] }, http_listener: site }
        - { match: { sni: a.example }, http_listener: site }
        - { match: { protocol: http1 }, http_listener: site, cluster: web }
        - { match: { protocol: redis } }
        - { match: { alpn: ["", "a,b"] }, cluster: web }
  - name: l5
    port: 0
    protocol: tcp
    tcp: { cluster: web, sniff_inline: true }
`);
  const has = (re: RegExp): void => assert.ok(found.some((f) => re.test(f)), `expected ${re} in:\n${found.join('\n')}`);
  has(/listeners\[2\]\.tcp\.routes\[0\]\.http_listener: unknown listener "sitee" \(did you mean "site"\?\)/);
  has(/listeners\[2\]\.tcp\.routes\[1\]\.http_listener: "l4" is a tcp listener/);
  has(/listeners\[2\]\.tcp\.routes\[2\]\.http_listener: listener "secure" terminates TLS/);
  has(/listeners\[2\]\.tcp\.routes\[3\]\.match\.protocol: a route with http_listener takes HTTP\/1\.x only/);
  has(/listeners\[2\]\.tcp\.routes\[4\]\.match\.protocol: a route with http_listener takes HTTP\/1\.x only/);
  has(/listeners\[2\]\.tcp\.routes\[5\]\.cluster: give either cluster or http_listener/);
  has(/listeners\[2\]\.tcp\.routes\[6\]: needs a `cluster`/);
  has(/listeners\[2\]\.tcp\.routes\[7\]\.match\.alpn\[0\]: must be an ALPN protocol id/);
  has(/listeners\[2\]\.tcp\.routes\[7\]\.match\.alpn\[1\]: must be an ALPN protocol id/);
  has(/listeners\[3\]\.tcp\.sniff_inline: runs the `sniff` filter on the main thread/);
});
