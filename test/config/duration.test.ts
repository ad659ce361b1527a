import { test } from 'node:test';
import assert from 'node:assert/strict';
import schema from '../../proxy/config/schema.json' with { type: 'json' };
import { DURATION_PATTERN, SIZE_PATTERN, parseDuration, parseSize } from '../../proxy/config/duration.js';

test('durations: units, fractions, compounds and plain milliseconds', () => {
  const cases: [string | number, number][] = [
    ['1.5s', 1500], ['100ms', 100], ['2m', 120_000], ['1h', 3_600_000], ['1d', 86_400_000],
    ['1m30s', 90_000], ['1h 2m', 3_720_000], [' 15s ', 15_000], ['.5s', 500], ['250', 250],
    [250, 250], [0, 0], ['0s', 0], [1.2, 2], ['0.1ms', 1],
  ];
  for (const [input, ms] of cases) assert.equal(parseDuration(input), ms, `parseDuration(${JSON.stringify(input)})`);
});

test('durations: rejects what a person would not mean', () => {
  for (const bad of ['15 secs', '', 's', '10S', '-5s', '1.2.3s', 'abc', -1, Number.NaN, Infinity, true, null, {}]) {
    assert.throws(() => parseDuration(bad), (err: Error) => err instanceof RangeError && /must be a duration/.test(err.message), `parseDuration(${String(bad)})`);
  }
  assert.equal(parseDuration('1.5'), 2, 'a fractional bare number is milliseconds, rounded up');
});

test('sizes: binary units whatever the spelling, and plain bytes', () => {
  const cases: [string | number, number][] = [
    ['64KB', 65_536], ['64kb', 65_536], ['64K', 65_536], ['64KiB', 65_536], ['1MiB', 1_048_576], ['1MB', 1_048_576],
    ['1.5MiB', 1_572_864], ['2GB', 2 * 1024 ** 3], ['100B', 100], ['100', 100], [100, 100], [0, 0], ['8 KB', 8192],
  ];
  for (const [input, bytes] of cases) assert.equal(parseSize(input), bytes, `parseSize(${JSON.stringify(input)})`);
  for (const bad of ['1XB', 'KB', '-1KB', '1 MB B', -5, false]) {
    assert.throws(() => parseSize(bad), /must be a size/, `parseSize(${String(bad)})`);
  }
});

test('the schema and the parser accept the same duration and size language', () => {
  const defs = (schema as unknown as { definitions: Record<string, { pattern: string }> }).definitions;
  assert.equal(defs.duration!.pattern, DURATION_PATTERN);
  assert.equal(defs.size!.pattern, SIZE_PATTERN);
  const durationRe = new RegExp(DURATION_PATTERN, 'u');
  for (const s of ['1.5s', '100ms', '2m', '1h', '1m30s', '250', ' 3d ']) {
    assert.ok(durationRe.test(s), s);
    assert.doesNotThrow(() => parseDuration(s));
  }
  const sizeRe = new RegExp(SIZE_PATTERN, 'u');
  for (const s of ['64KB', '1MiB', '2g', '100']) {
    assert.ok(sizeRe.test(s), s);
    assert.doesNotThrow(() => parseSize(s));
  }
});
