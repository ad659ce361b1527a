import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfigFile, normalizeConfig, parseConfig, type ConfigIssue } from '../../proxy/config/load.js';

// dist/test/config → repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLES = path.join(ROOT, 'examples');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-config-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
fs.mkdirSync(path.join(tmp, 'filters'));
for (const name of ['auth', 'ratelimit', 'breaker']) fs.writeFileSync(path.join(tmp, 'filters', `${name}.wasm`), '');
const CONFIG_FILE = path.join(tmp, 'wisp.yaml');

function issuesOf(fn: () => unknown): ConfigIssue[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  assert.fail('expected a ConfigError');
}

function issueAt(issues: ConfigIssue[], path: string): ConfigIssue {
  const found = issues.find((i) => i.path === path);
  assert.ok(found, `no issue at ${path}; got:\n${issues.map((i) => `${i.path}: ${i.message}`).join('\n')}`);
  return found;
}

/** 1-based line of the first line of `text` containing `needle`. */
function lineOf(text: string, needle: string): number {
  const index = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(index >= 0, `"${needle}" not in the text`);
  return index + 1;
}

const MINIMAL = `
listeners:
  - name: main
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:3000]
`;

test('every example config loads', () => {
  const gateway = loadConfigFile(path.join(EXAMPLES, 'gateway.yaml'));
  assert.deepEqual(gateway.listeners.map((l) => [l.name, l.host, l.port]), [['public', '0.0.0.0', 8080], ['public-tls', '0.0.0.0', 8443]]);
  const tls = gateway.listeners[1]!.tls!;
  assert.equal(tls.cert, path.join(EXAMPLES, 'certs', 'localhost.crt'));
  assert.ok(fs.readFileSync(tls.key, 'utf8').includes('PRIVATE KEY'));
  assert.deepEqual(gateway.clusters.map((c) => c.name), ['api', 'web']);
  assert.deepEqual(gateway.clusters[0]!.endpoints, [
    { host: '127.0.0.1', port: 3000, weight: 1 },
    { host: '127.0.0.1', port: 3001, weight: 2 },
  ]);
  const routes = gateway.listeners[0]!.routes;
  assert.ok(routes.some((r) => r.direct_response?.status === 200));
  assert.ok(routes.some((r) => r.redirect !== undefined));

  const sidecar = loadConfigFile(path.join(EXAMPLES, 'sidecar.yaml'));
  const outbound = sidecar.listeners.find((l) => l.name === 'outbound')!;
  assert.equal(outbound.host, '127.0.0.1');
  assert.equal(outbound.port, 15001);
  const toUsers = outbound.routes.find((r) => r.cluster === 'users')!;
  assert.deepEqual(toUsers.match.host, ['users.svc']);
  const inbound = sidecar.listeners.find((l) => l.name === 'inbound')!;
  assert.equal(inbound.port, 15006);
  assert.deepEqual(sidecar.clusters.find((c) => c.name === 'local-app')!.endpoints, [{ host: '127.0.0.1', port: 3000, weight: 1 }]);

  const demo = loadConfigFile(path.join(EXAMPLES, 'demo.yaml'));
  assert.deepEqual([demo.admin.host, demo.admin.port], ['127.0.0.1', 9901]);
  assert.deepEqual([demo.listeners[0]!.host, demo.listeners[0]!.port], ['127.0.0.1', 8080]);
  assert.deepEqual(demo.clusters[0]!.endpoints, [{ host: '127.0.0.1', port: 8081, weight: 1 }]);
  assert.equal(demo.listeners[0]!.routes.at(-1)!.cluster, 'demo');
  assert.deepEqual(demo.filters.map((f) => f.name), ['auth', 'ratelimit', 'breaker', 'headers']);
  for (const f of demo.filters) assert.equal(f.wasm, path.join(EXAMPLES, '..', 'filters', 'build', `${f.name}.wasm`));
});

test('the config sketch in DESIGN.md is valid as written', () => {
  const sketch = `
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: public
    address: 0.0.0.0:8080
    routes:
      - match: { host: api.example.com, prefix: /v1 }
        cluster: api
        filters: [auth, ratelimit, breaker]
        timeout: 15s
        retry: { attempts: 2, on: [connect-failure, reset, 503] }
clusters:
  - name: api
    endpoints: [127.0.0.1:3000, 127.0.0.1:3001]
    lb: least_request
    health_check: { path: /healthz, interval: 5s }
filters:
  - name: ratelimit
    wasm: filters/ratelimit.wasm
    config: { key: client_ip, rate: 100, per: 1s, burst: 200 }
    failure: open
`;
  // As written it names two filters it does not define: exactly those are reported.
  const issues = issuesOf(() => parseConfig(sketch, CONFIG_FILE));
  assert.deepEqual(issues.map((i) => [i.path, i.line, i.message]), [
    ['listeners[0].routes[0].filters[0]', lineOf(sketch, 'filters: [auth'), 'unknown filter "auth" (defined: ratelimit)'],
    ['listeners[0].routes[0].filters[2]', lineOf(sketch, 'filters: [auth'), 'unknown filter "breaker" (defined: ratelimit)'],
  ]);

  const complete = sketch + `
  - { name: auth, wasm: filters/auth.wasm }
  - { name: breaker, wasm: filters/breaker.wasm }
`;
  const cfg = parseConfig(complete, CONFIG_FILE);
  const route = cfg.listeners[0]!.routes[0]!;
  assert.equal(route.name, 'public#0');
  assert.deepEqual(route.match, { host: ['api.example.com'], prefix: '/v1', headers: [], query: [] });
  assert.equal(route.timeout_ms, 15_000);
  assert.deepEqual(route.retry, { attempts: 2, on: ['connect-failure', 'reset', 'status'], statuses: [503], non_idempotent: false, budget_ratio: 1 });
  assert.deepEqual(route.filters, ['auth', 'ratelimit', 'breaker']);
  assert.equal(cfg.clusters[0]!.health_check!.interval_ms, 5000);
  const ratelimit = cfg.filters[0]!;
  assert.equal(ratelimit.wasm, path.join(tmp, 'filters', 'ratelimit.wasm'));
  assert.deepEqual(JSON.parse(ratelimit.config), { key: 'client_ip', rate: 100, per: '1s', burst: 200 });
  assert.equal(ratelimit.failure, 'open');
});

test('defaults: every field the types document is filled', () => {
  const cfg = parseConfig(MINIMAL + `
filters:
  - name: f
    wasm: filters/auth.wasm
`, CONFIG_FILE);
  assert.equal(cfg.source, CONFIG_FILE);
  assert.deepEqual(cfg.admin, { host: '127.0.0.1', port: 9901 });
  assert.equal(cfg.workers, Math.max(1, os.availableParallelism() - 1));
  assert.equal(cfg.drain_timeout_ms, 15_000);
  assert.deepEqual(cfg.listeners[0], {
    name: 'main', host: '127.0.0.1', port: 0, proxy_protocol: false, access_log: false, via: '1.1 wisp',
    limits: {
      max_request_line_bytes: 8192, max_header_bytes: 65536, max_headers: 100, header_timeout_ms: 10_000,
      body_timeout_ms: 30_000, idle_timeout_ms: 60_000, max_body_bytes: 0,
    },
    routes: [{
      name: 'main#0', match: { prefix: '/', headers: [], query: [] }, cluster: 'app', timeout_ms: 15_000, per_try_timeout_ms: 0,
      retry: { attempts: 1, on: ['connect-failure'], statuses: [], non_idempotent: false, budget_ratio: 1 }, filters: [],
    }],
  });
  assert.deepEqual(cfg.clusters[0], {
    name: 'app', endpoints: [{ host: '127.0.0.1', port: 3000, weight: 1 }], dns_refresh_ms: 30_000, lb: 'round_robin',
    outlier: { consecutive_5xx: 5, consecutive_connect_failure: 3, base_ejection_ms: 30_000, max_ejection_ms: 300_000, max_ejection_percent: 50 },
    limits: { max_connections: 1024, max_pending: 1024, max_requests: 4096 },
    connect_timeout_ms: 2000, idle_timeout_ms: 60_000, max_idle_per_endpoint: 1024,
  });
  assert.deepEqual(cfg.filters[0], {
    name: 'f', wasm: path.join(tmp, 'filters', 'auth.wasm'), config: '', root_id: '', vm_config: '', failure: 'closed',
    deadline_ms: 50, max_memory_bytes: 64 * 1024 * 1024, max_body_bytes: 1024 * 1024,
  });
});

test('friendly spellings normalise: addresses, endpoints, matches, retries, durations, sizes', () => {
  const cfg = normalizeConfig({
    admin: { host: '::1', port: 0, token: 's3cret' },
    workers: 3,
    drain_timeout: '1m',
    listeners: [{
      name: 'l', address: ':8080', via: '',
      limits: { max_header: '32KB', max_body_bytes: '1MiB', header_timeout_ms: 500, idle_timeout: '1.5s' },
      routes: [{
        name: 'r',
        match: {
          host: ['API.Example.com', '*.example.com'], methods: 'get', regex: '^/v[0-9]+/.*',
          headers: [{ name: 'X-Env', exact: 'canary' }, { name: 'X-Debug' }, { name: 'X-Old', present: false }],
          query: [{ name: 'Page', regex: '^[0-9]+$' }],
        },
        cluster: 'c', timeout: 0, per_try_timeout: '250ms',
        retry: { on: ['reset', 'gateway-error', 429], non_idempotent: true, budget_ratio: 0.2 },
      }],
    }],
    clusters: [{
      name: 'c', lb: 'ring_hash', hash_header: 'X-User',
      endpoints: ['[::1]:3000', { address: 'a.internal:80', weight: 3 }, { host: 'b.internal', port: 81 }],
      health_check: { path: '/hc', host: 'hc.local', interval: '2s', expected_statuses: [200, '301-302'] },
      outlier: { base_ejection: '10s', max_ejection_ms: 60_000 },
    }],
  }, CONFIG_FILE);
  assert.deepEqual(cfg.admin, { host: '::1', port: 0, token: 's3cret' });
  assert.equal(cfg.workers, 3);
  assert.equal(cfg.drain_timeout_ms, 60_000);
  const l = cfg.listeners[0]!;
  assert.deepEqual([l.host, l.port, l.via], ['0.0.0.0', 8080, '']);
  assert.equal(l.limits.max_header_bytes, 32 * 1024);
  assert.equal(l.limits.max_body_bytes, 1024 * 1024);
  assert.equal(l.limits.header_timeout_ms, 500);
  assert.equal(l.limits.idle_timeout_ms, 1500);
  const r = l.routes[0]!;
  assert.deepEqual(r.match, {
    host: ['api.example.com', '*.example.com'], regex: '^/v[0-9]+/.*', methods: ['GET'],
    headers: [{ name: 'x-env', exact: 'canary' }, { name: 'x-debug', present: true }, { name: 'x-old', present: false }],
    query: [{ name: 'Page', regex: '^[0-9]+$' }],
  });
  assert.equal(r.timeout_ms, 0);
  assert.equal(r.per_try_timeout_ms, 250);
  assert.deepEqual(r.retry, { attempts: 1, on: ['reset', 'status'], statuses: [429, 502, 503, 504], non_idempotent: true, budget_ratio: 0.2 });
  const c = cfg.clusters[0]!;
  assert.deepEqual(c.endpoints, [
    { host: '::1', port: 3000, weight: 1 }, { host: 'a.internal', port: 80, weight: 3 }, { host: 'b.internal', port: 81, weight: 1 },
  ]);
  assert.equal(c.hash_header, 'x-user');
  assert.deepEqual(c.health_check, {
    path: '/hc', host: 'hc.local', interval_ms: 2000, timeout_ms: 1000, healthy_threshold: 2, unhealthy_threshold: 3,
    expected_statuses: [200, 301, 302],
  });
  assert.equal(c.outlier.base_ejection_ms, 10_000);
  assert.equal(c.outlier.max_ejection_ms, 60_000);
});

test('a normalised config is valid input and normalises to itself', () => {
  const gateway = loadConfigFile(path.join(EXAMPLES, 'gateway.yaml'));
  const again = normalizeConfig(JSON.parse(JSON.stringify(gateway)), gateway.source);
  assert.deepEqual(again, gateway);
  const sidecar = loadConfigFile(path.join(EXAMPLES, 'sidecar.yaml'));
  assert.deepEqual(normalizeConfig(JSON.parse(JSON.stringify(sidecar)), sidecar.source), sidecar);
});

test('an unknown cluster is reported at its line, naming the defined clusters', () => {
  const text = [
    'admin:',                          // 1
    '  address: 127.0.0.1:9901',       // 2
    'listeners:',                      // 3
    '  - name: public',                // 4
    '    address: 0.0.0.0:8080',       // 5
    '    routes:',                     // 6
    '      - match: { path: /a }',     // 7
    '        cluster: api',            // 8
    '      - match: { path: /b }',     // 9
    '        cluster: web',            // 10
    '      - match: { prefix: / }',    // 11
    '        cluster: apii',           // 12
    'clusters:',
    '  - { name: api, endpoints: [127.0.0.1:3000] }',
    '  - { name: web, endpoints: [127.0.0.1:4000] }',
  ].join('\n');
  const err = (() => {
    try {
      parseConfig(text, 'gw.yaml');
    } catch (e) {
      return e as ConfigError;
    }
    assert.fail('expected a ConfigError');
  })();
  assert.ok(err instanceof ConfigError);
  assert.equal(err.issues.length, 1);
  assert.deepEqual(err.issues[0], {
    file: 'gw.yaml', line: 12, column: 18, path: 'listeners[0].routes[2].cluster',
    message: 'unknown cluster "apii" (defined: api, web)',
  });
  assert.match(err.message, /^  gw\.yaml:12:18: listeners\[0\]\.routes\[2\]\.cluster: unknown cluster "apii" \(defined: api, web\)$/m);
});

test('schema errors: wrong enum, wrong type, unknown key with a suggestion, missing key — each at its line', () => {
  const text = `
admin: { adress: 127.0.0.1:9901 }
workers: many
listeners:
  - name: public
    address: 0.0.0.0:8080
    limits: { header_timeout: 10 secs, max_body: 1XB }
    routes:
      - match: { prefix: v2 }
        cluster: api
clusters:
  - name: api
    endpoints: [127.0.0.1:3000, { address: "api.internal:80", wieght: 2 }, nohost]
    lb: roundrobin
  - endpoints: [127.0.0.1:3001]
`;
  const issues = issuesOf(() => parseConfig(text, 'bad.yaml'));
  const lb = issueAt(issues, 'clusters[0].lb');
  assert.equal(lb.message, 'must be one of round_robin, least_request, random, ring_hash (got "roundrobin")');
  assert.equal(lb.line, lineOf(text, 'lb: roundrobin'));
  const adress = issueAt(issues, 'admin.adress');
  assert.equal(adress.message, 'unknown key "adress" (did you mean "address"?)');
  assert.deepEqual([adress.line, adress.column], [lineOf(text, 'adress'), 10]);
  assert.equal(issueAt(issues, 'clusters[0].endpoints[1].wieght').message, 'unknown key "wieght" (did you mean "weight"?)');
  assert.match(issueAt(issues, 'clusters[0].endpoints[2]').message, /must be "host:port".*\(got "nohost"\)/);
  assert.equal(issueAt(issues, 'workers').message, 'must be an integer (got "many")');
  assert.match(issueAt(issues, 'listeners[0].limits.header_timeout').message, /must be a duration like "15s".*\(got "10 secs"\)/);
  assert.match(issueAt(issues, 'listeners[0].limits.max_body').message, /must be a size like "64KB".*\(got "1XB"\)/);
  assert.equal(issueAt(issues, 'listeners[0].routes[0].match.prefix').message, 'must be a path starting with / (got "v2")');
  const missing = issueAt(issues, 'clusters[1]');
  assert.equal(missing.message, 'missing required key "name"');
  assert.equal(missing.line, lineOf(text, 'endpoints: [127.0.0.1:3001]'));
  // Issues come sorted by line, every one located.
  const lines = issues.map((i) => i.line!);
  assert.deepEqual(lines, [...lines].sort((a, b) => a - b));
});

test('YAML syntax errors and duplicate keys report their line', () => {
  const broken = 'listeners:\n  - name: a\n    routes: [\n  - name: b\n';
  const issues = issuesOf(() => parseConfig(broken, 'broken.yaml'));
  assert.ok(issues.length >= 1);
  assert.equal(issues[0]!.path, '(yaml)');
  assert.equal(typeof issues[0]!.line, 'number');
  assert.ok(issues[0]!.line! >= 3, `line ${issues[0]!.line}`);

  const badIndent = 'listeners:\n  - name: a\n   address: x\n';
  const indentIssue = issuesOf(() => parseConfig(badIndent, 'i.yaml'))[0]!;
  assert.equal(indentIssue.line, 3);

  const dup = issuesOf(() => parseConfig('workers: 1\nlisteners: []\nworkers: 2\n', 'dup.yaml'));
  assert.deepEqual([dup[0]!.line, dup[0]!.path], [3, '(yaml)']);
  assert.match(dup[0]!.message, /unique/);

  assert.match(issuesOf(() => parseConfig('', 'empty.yaml'))[0]!.message, /empty/);
});

test('duplicate names are rejected, pointing at the second one', () => {
  const text = `
listeners:
  - name: public
    address: 127.0.0.1:8080
    routes:
      - { name: r1, match: { path: /a }, cluster: api }
      - { name: r1, match: { path: /b }, cluster: api }
  - name: public
    address: 127.0.0.1:8081
    routes: [{ cluster: api }]
clusters:
  - { name: api, endpoints: [127.0.0.1:3000, 127.0.0.1:3000] }
  - { name: api, endpoints: [127.0.0.1:3001] }
filters:
  - { name: f, wasm: filters/auth.wasm }
  - { name: f, wasm: filters/breaker.wasm }
`;
  const issues = issuesOf(() => parseConfig(text, CONFIG_FILE));
  assert.equal(issueAt(issues, 'listeners[1].name').message, 'duplicate listener name "public" (also listeners[0])');
  assert.equal(issueAt(issues, 'listeners[0].routes[1].name').message, 'duplicate route name "r1" (also listeners[0].routes[0])');
  assert.equal(issueAt(issues, 'clusters[1].name').message, 'duplicate cluster name "api" (also clusters[0])');
  assert.equal(issueAt(issues, 'filters[1].name').message, 'duplicate filter name "f" (also filters[0])');
  assert.equal(issueAt(issues, 'clusters[0].endpoints[1]').message, 'duplicate endpoint 127.0.0.1:3000 (also clusters[0].endpoints[0])');
  assert.equal(issueAt(issues, 'filters[1].name').line, lineOf(text, 'breaker.wasm'));
  assert.equal(issues.length, 5);
});

test('invalid regexes are rejected, naming the regex', () => {
  const text = `
listeners:
  - name: l
    port: 0
    routes:
      - match:
          regex: "/v(1|2"
          headers: [{ name: x-a, regex: "[a-" }]
          query: [{ name: q, regex: "*x" }]
        cluster: c
clusters: [{ name: c, endpoints: [127.0.0.1:1] }]
`;
  const issues = issuesOf(() => parseConfig(text, CONFIG_FILE));
  const path = issueAt(issues, 'listeners[0].routes[0].match.regex');
  assert.match(path.message, /^invalid regex "\/v\(1\|2": /);
  assert.equal(path.line, lineOf(text, '/v(1|2'));
  assert.match(issueAt(issues, 'listeners[0].routes[0].match.headers[0].regex').message, /^invalid regex "\[a-": /);
  assert.match(issueAt(issues, 'listeners[0].routes[0].match.query[0].regex').message, /^invalid regex "\*x": /);
});

test('a route needs exactly one of cluster, direct_response, redirect, and known filters', () => {
  const text = `
listeners:
  - name: l
    port: 0
    routes:
      - match: { path: /none }
      - { match: { path: /two }, cluster: c, redirect: { scheme: https } }
      - { match: { path: /f }, cluster: c, filters: [auth, autj, auth] }
      - { match: { path: /r }, redirect: { prefix: /new } }
      - { match: { path: /w }, cluster: c, rewrite: { prefix: /x } }
clusters: [{ name: c, endpoints: [127.0.0.1:1] }]
filters: [{ name: auth, wasm: filters/auth.wasm }]
`;
  const issues = issuesOf(() => parseConfig(text, CONFIG_FILE));
  const none = issueAt(issues, 'listeners[0].routes[0]');
  assert.equal(none.message, 'needs exactly one of cluster, direct_response, redirect (got none)');
  assert.equal(none.line, lineOf(text, '/none'));
  assert.equal(issueAt(issues, 'listeners[0].routes[1]').message,
    'needs exactly one of cluster, direct_response, redirect (got cluster and redirect)');
  assert.equal(issueAt(issues, 'listeners[0].routes[2].filters[1]').message, 'unknown filter "autj" (defined: auth)');
  assert.equal(issueAt(issues, 'listeners[0].routes[2].filters[2]').message, 'filter "auth" is listed twice');
  assert.match(issueAt(issues, 'listeners[0].routes[3].redirect.prefix').message, /match\.prefix is required/);
  assert.match(issueAt(issues, 'listeners[0].routes[4].rewrite.prefix').message, /match\.prefix is required/);
  assert.equal(issues.length, 6);
});

test('two listeners (or the admin API) on one port and host are rejected; port 0 never clashes', () => {
  const issues = issuesOf(() => normalizeConfig({
    admin: { address: '127.0.0.1:9000' },
    listeners: [
      { name: 'a', address: '127.0.0.1:8080', routes: [{ direct_response: {} }] },
      { name: 'b', host: '127.0.0.1', port: 8080, routes: [{ direct_response: {} }] },
      { name: 'c', address: '127.0.0.2:8080', routes: [{ direct_response: {} }] },
      { name: 'd', address: '0.0.0.0:9000', routes: [{ direct_response: {} }] },
      { name: 'e', address: '127.0.0.1:0', routes: [{ direct_response: {} }] },
      { name: 'f', address: '127.0.0.1:0', routes: [{ direct_response: {} }] },
      { name: 'g', address: '127.0.0.3:7000', routes: [{ direct_response: {} }] },
    ],
  }, 'ports.yaml'));
  assert.deepEqual(issues.map((i) => [i.path, i.message]), [
    ['listeners[1].port', 'port 8080 on 127.0.0.1 is already used by listener "a" (listeners[0])'],
    ['listeners[3].address', 'port 9000 on 0.0.0.0 is already used by the admin API (admin)'],
  ]);
  // Configs given as objects have no lines.
  assert.equal(issues[0]!.line, undefined);
});

test('TLS, wasm and token files must exist; paths are relative to the config file', () => {
  const text = `
admin: { token_file: missing-token }
listeners:
  - name: l
    port: 8443
    tls:
      cert: certs/nope.crt
      key: ${path.join(EXAMPLES, 'certs', 'localhost.key')}
      sni: [{ hostname: a.example.com, cert: nope2.crt, key: nope2.key }]
    routes: [{ direct_response: {} }]
filters: [{ name: f, wasm: filters/missing.wasm }]
`;
  const issues = issuesOf(() => parseConfig(text, CONFIG_FILE));
  const cert = issueAt(issues, 'listeners[0].tls.cert');
  assert.equal(cert.message, `file not found: certs/nope.crt (looked for ${path.join(tmp, 'certs', 'nope.crt')})`);
  assert.equal(cert.line, lineOf(text, 'nope.crt'));
  issueAt(issues, 'listeners[0].tls.sni[0].cert');
  issueAt(issues, 'listeners[0].tls.sni[0].key');
  issueAt(issues, 'filters[0].wasm');
  issueAt(issues, 'admin.token_file');
  assert.equal(issues.length, 5);

  // checkFiles: false validates everything else.
  const cfg = parseConfig(text.replace('token_file: missing-token', 'token: t'), CONFIG_FILE, { checkFiles: false });
  assert.equal(cfg.listeners[0]!.tls!.cert, path.join(tmp, 'certs', 'nope.crt'));
  assert.equal(cfg.filters[0]!.wasm, path.join(tmp, 'filters', 'missing.wasm'));
});

test('admin token from a file; token and token_file together are rejected', () => {
  fs.writeFileSync(path.join(tmp, 'token'), 'abc123\n');
  const cfg = parseConfig(`admin: { address: 127.0.0.1:0, token_file: token }\n${MINIMAL}`, CONFIG_FILE);
  assert.equal(cfg.admin.token, 'abc123');
  const issues = issuesOf(() => parseConfig(`admin: { token: x, token_file: token }\n${MINIMAL}`, CONFIG_FILE));
  assert.equal(issueAt(issues, 'admin.token_file').message, 'give either token or token_file, not both');
});

test('a duration given twice (friendly and normalised spelling) is rejected', () => {
  const issues = issuesOf(() => parseConfig(MINIMAL.replace('cluster: app', 'cluster: app\n        timeout: 1s\n        timeout_ms: 1000'), CONFIG_FILE));
  assert.equal(issueAt(issues, 'listeners[0].routes[0].timeout_ms').message, 'give either timeout or timeout_ms, not both');
});

test('filter config: a string stays as is, anything else becomes JSON', () => {
  const cfg = normalizeConfig({
    listeners: [{ name: 'l', port: 0, routes: [{ direct_response: {} }] }],
    filters: [
      { name: 'a', wasm: 'filters/auth.wasm', config: 'plain text', vm_config: { n: 1 } },
      { name: 'b', wasm: 'filters/auth.wasm', config: [1, 'two'], root_id: 'root' },
      { name: 'c', wasm: 'filters/auth.wasm', config: 42 },
    ],
  }, CONFIG_FILE);
  assert.deepEqual(cfg.filters.map((f) => [f.config, f.vm_config, f.root_id]), [
    ['plain text', '{"n":1}', ''], ['[1,"two"]', '', 'root'], ['42', '', ''],
  ]);
});

test('YAML anchors, merge keys and x- extension keys let a config reuse parts', () => {
  const text = `
x-retry: &retry { attempts: 2, on: [503] }
listeners:
  - name: l
    port: 0
    routes:
      - { match: { prefix: /a }, cluster: c, retry: *retry }
      - match: { prefix: /b }
        cluster: c
        retry: { <<: *retry, attempts: 3 }
clusters: [{ name: c, endpoints: [127.0.0.1:1] }]
filters:
`;
  const cfg = parseConfig(text, CONFIG_FILE);
  assert.deepEqual(cfg.listeners[0]!.routes.map((r) => [r.retry.attempts, r.retry.statuses]), [[2, [503]], [3, [503]]]);
  assert.deepEqual(cfg.filters, [], 'an empty `filters:` is no filters');
  const typo = issuesOf(() => parseConfig(text.replace('x-retry', 'retry'), CONFIG_FILE));
  assert.equal(typo[0]!.path, 'retry');
  assert.match(typo[0]!.message, /^unknown key "retry"/);
});
