import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, closestMatch, formatPath } from '../../proxy/config/errors.js';

test('paths read the way the YAML is written', () => {
  assert.equal(formatPath([]), '(root)');
  assert.equal(formatPath(['listeners', 0, 'routes', 12, 'cluster']), 'listeners[0].routes[12].cluster');
  assert.equal(formatPath(['filters', 1, 'config', 'x-api-key']), 'filters[1].config["x-api-key"]');
});

test('typo suggestions: close words only', () => {
  assert.equal(closestMatch('adress', ['address', 'host', 'port']), 'address');
  assert.equal(closestMatch('wieght', ['address', 'host', 'port', 'weight']), 'weight');
  assert.equal(closestMatch('Endpoints', ['name', 'endpoints']), 'endpoints');
  assert.equal(closestMatch('colour', ['address', 'host', 'port']), undefined);
});

test('ConfigError lists every issue as file:line:col: path: message', () => {
  const err = new ConfigError([
    { file: 'a.yaml', line: 3, column: 7, path: 'clusters[0].lb', message: 'must be one of x, y (got "z")' },
    { file: 'a.yaml', path: '(root)', message: 'no line here' },
  ]);
  assert.equal(err.code, 'WISP_CONFIG_INVALID');
  assert.equal(err.issues.length, 2);
  assert.equal(err.message, [
    'invalid configuration (2 issues)',
    '  a.yaml:3:7: clusters[0].lb: must be one of x, y (got "z")',
    '  a.yaml: (root): no line here',
  ].join('\n'));
});
