import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { ValidateFunction } from 'ajv';
import { compileSchemaValidator, generatedIsCurrent, schemaValidator } from '../../proxy/config/schema-validator.js';
import { validate as generated } from '../../proxy/config/schema-validator.generated.js';

// dist/test/config → repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Configs that break the schema in every way the loader turns into a sentence. */
const INVALID: unknown[] = [
  {},
  { listeners: 'nope' },
  { listeners: [], workers: 0, drain_timeout: true, extra: 1 },
  { listenrs: [] },
  {
    admin: { address: 9901, token: 5 },
    listeners: [
      { name: '', address: 'x', protocol: 'gopher', routes: [{ match: { prefix: 3, methods: [1] }, cluster: 7, timeout: -1, filters: 'a' }] },
      { name: 'l2', port: 70000, limits: { max_header_bytes: 'lots' }, tls: { cert: 1 } },
      { name: 'tcp', address: '127.0.0.1:0', protocol: 'tcp', tcp: { cluster: 1, routes: [{ match: { protocol: 5 } }] } },
    ],
    clusters: [
      { name: 'c', endpoints: [], lb: 'random-ish', health_check: { interval: [], expected_statuses: ['abc'] }, limits: { max_connections: -5 } },
      { endpoints: [{ host: 1, port: 'x', weight: 0 }], outlier: { consecutive_5xx: 'five' } },
    ],
    filters: [{ name: 'f', wasm: 3, failure: 'maybe', deadline: {}, max_memory: '1 potato' }, { wasm: 'x.wasm', unknown_key: 1 }],
  },
];

function errorsOf(validate: ValidateFunction, config: unknown): unknown {
  validate(config);
  // A deep copy: errors are overwritten by the next call.
  return structuredClone(validate.errors ?? null);
}

test('the generated validator was built from the current schema.json (else run: node dist/proxy/config/schema-validator.js)', () => {
  assert.equal(generatedIsCurrent(), true);
  assert.equal(schemaValidator() as unknown, generated as unknown);
});

test('the generated validator reports exactly what ajv.compile reports, error for error', () => {
  const compiled = compileSchemaValidator();
  const precompiled = generated as unknown as ValidateFunction;
  for (const config of INVALID) {
    const expected = errorsOf(compiled, config);
    assert.ok(Array.isArray(expected) && expected.length > 0, `expected errors for ${JSON.stringify(config)}`);
    assert.deepEqual(errorsOf(precompiled, config), expected);
  }
});

test('the generated validator accepts every example config, like ajv.compile', () => {
  const compiled = compileSchemaValidator();
  const precompiled = generated as unknown as ValidateFunction;
  const files = ['demo.yaml', 'gateway.yaml', 'sidecar.yaml', 'canary-filter/wisp.yaml', 'custom-protocol/wisp.yaml'].map((f) => path.join(ROOT, 'examples', f));
  for (const file of files) {
    const config = parse(fs.readFileSync(file, 'utf8')) as unknown;
    assert.equal(compiled(config), true, `${file}: ${JSON.stringify(compiled.errors)}`);
    assert.equal(precompiled(config), true, `${file}: ${JSON.stringify(precompiled.errors)}`);
  }
});
