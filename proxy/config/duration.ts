// Durations and sizes as people write them in YAML ("1m30s", "250ms", "64KB") turned into
// the plain numbers the normalised config carries (milliseconds, bytes). The patterns here
// and the ones in schema.json describe the same language; test/config/duration.test.ts
// checks they agree.

const MS_PER_UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

// Sizes are binary whatever the spelling (KB = KiB = 1024), as in nginx and haproxy:
// someone writing "64KB" for a header limit means 65536.
const BYTES_PER_UNIT: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
};

const NUMBER = String.raw`(?:\d+(?:\.\d+)?|\.\d+)`;
/** One or more `<number><unit>` parts ("1m30s"), or a bare number of milliseconds. */
export const DURATION_PATTERN = String.raw`^\s*(?:(?:${NUMBER}\s*(?:ms|s|m|h|d)\s*)+|${NUMBER})\s*$`;
export const SIZE_PATTERN = String.raw`^\s*${NUMBER}\s*(?:[kKmMgG](?:[iI]?[bB])?|[bB])?\s*$`;

const DURATION_PART = new RegExp(String.raw`(${NUMBER})\s*(ms|s|m|h|d)`, 'g');
const DURATION_RE = new RegExp(DURATION_PATTERN);
const SIZE_RE = new RegExp(String.raw`^\s*(${NUMBER})\s*([kKmMgG](?:[iI]?[bB])?|[bB])?\s*$`);

export const DURATION_HINT = 'must be a duration like "15s", "250ms", "1m30s" or a number of milliseconds';
export const SIZE_HINT = 'must be a size like "64KB", "1MiB", "2MB" or a number of bytes';

/**
 * Milliseconds for a duration ("1.5s" → 1500, "1m30s" → 90000, 250 → 250, "250" → 250).
 * Fractions round up so that a tiny positive duration never becomes 0, which means "none".
 * Throws RangeError with a message meant for the user.
 */
export function parseDuration(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`${DURATION_HINT} (got ${value})`);
    return Math.ceil(value);
  }
  if (typeof value !== 'string' || !DURATION_RE.test(value)) {
    throw new RangeError(`${DURATION_HINT} (got ${JSON.stringify(value)})`);
  }
  const trimmed = value.trim();
  if (/^[\d.]+$/.test(trimmed)) return Math.ceil(Number(trimmed));
  let total = 0;
  for (const m of trimmed.matchAll(DURATION_PART)) total += Number(m[1]) * MS_PER_UNIT[m[2]!]!;
  return Math.ceil(total);
}

/** Bytes for a size ("64KB" → 65536, "1.5MiB" → 1572864, 100 → 100). Throws RangeError. */
export function parseSize(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`${SIZE_HINT} (got ${value})`);
    return Math.floor(value);
  }
  const m = typeof value === 'string' ? SIZE_RE.exec(value) : null;
  if (!m) throw new RangeError(`${SIZE_HINT} (got ${JSON.stringify(value)})`);
  return Math.floor(Number(m[1]) * BYTES_PER_UNIT[(m[2] ?? '').toLowerCase()]!);
}
