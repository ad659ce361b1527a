// The report's arithmetic and formatting: medians over rounds, ratios to nginx and direct,
// the markdown table printed at the end and kept in bench/README.md.
import { readFileSync, writeFileSync } from 'node:fs';
import type { LoadResult } from './load.js';

export interface RunSummary {
  name: string;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  non2xx: number;
  errors: number;
  /** RSS right after the measured run (connections just closed). */
  rss_mb: number | null;
  /** RSS once started and ready, before any load. */
  rss_idle_mb: number | null;
  /** Peak RSS (sum of each process's high-water mark) up to the end of the measured run. */
  rss_peak_mb: number | null;
  /** CPU time of the target's processes per request during the measured run, µs. */
  cpu_us_per_req: number | null;
  /** Each round's rps, in round order (the medians above come from these). */
  rps_rounds: number[];
  rps_ratio_nginx: number | null;
  p99_ratio_nginx: number | null;
  rps_ratio_direct: number | null;
  /** Counters from the run's side task (e.g. hot reloads), summed over rounds. */
  extra?: Record<string, number>;
}

export interface Sample extends LoadResult {
  rss_bytes: number | null;
  rss_idle_bytes?: number | null;
  rss_peak_bytes?: number | null;
  cpu_us_per_req?: number | null;
  extra?: Record<string, number>;
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export const round2 = (n: number) => Math.round(n * 100) / 100;
export const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** Medians per target (rps, latencies, RSS, CPU per request); errors and non-2xx are totals over all rounds. */
export function summarise(name: string, samples: Sample[]): Omit<RunSummary, 'rps_ratio_nginx' | 'p99_ratio_nginx' | 'rps_ratio_direct'> {
  const mb = (values: (number | null | undefined)[]): number | null => {
    const known = values.filter((v): v is number => typeof v === 'number');
    return known.length > 0 ? round2(median(known) / (1024 * 1024)) : null;
  };
  const cpu = samples.map((s) => s.cpu_us_per_req).filter((v): v is number => typeof v === 'number');
  return {
    name,
    rps: Math.round(median(samples.map((s) => s.rps))),
    p50_ms: round3(median(samples.map((s) => s.p50_ms))),
    p99_ms: round3(median(samples.map((s) => s.p99_ms))),
    non2xx: samples.reduce((a, s) => a + s.non2xx, 0),
    errors: samples.reduce((a, s) => a + s.errors, 0),
    rss_mb: mb(samples.map((s) => s.rss_bytes)),
    rss_idle_mb: mb(samples.map((s) => s.rss_idle_bytes)),
    rss_peak_mb: mb(samples.map((s) => s.rss_peak_bytes)),
    cpu_us_per_req: cpu.length > 0 ? round2(median(cpu)) : null,
    rps_rounds: samples.map((s) => Math.round(s.rps)),
    ...sumExtras(samples),
  };
}

function sumExtras(samples: Sample[]): { extra?: Record<string, number> } {
  let extra: Record<string, number> | undefined;
  for (const s of samples) {
    if (!s.extra) continue;
    extra ??= {};
    for (const [k, v] of Object.entries(s.extra)) extra[k] = (extra[k] ?? 0) + v;
  }
  return extra ? { extra } : {};
}

export function addRatios(runs: Omit<RunSummary, 'rps_ratio_nginx' | 'p99_ratio_nginx' | 'rps_ratio_direct'>[]): RunSummary[] {
  const nginx = runs.find((r) => r.name === 'nginx');
  const direct = runs.find((r) => r.name === 'direct');
  return runs.map((r) => ({
    ...r,
    rps_ratio_nginx: nginx && nginx.rps > 0 ? round3(r.rps / nginx.rps) : null,
    p99_ratio_nginx: nginx && nginx.p99_ms > 0 ? round3(r.p99_ms / nginx.p99_ms) : null,
    rps_ratio_direct: direct && direct.rps > 0 ? round3(r.rps / direct.rps) : null,
  }));
}

export function formatTable(runs: RunSummary[]): string {
  const hasNginx = runs.some((r) => r.name === 'nginx');
  const head = ['run', 'rps', 'p50 ms', 'p99 ms', 'non2xx', 'errors', 'rss MB', 'idle MB', 'cpu µs/req'];
  if (hasNginx) head.push('rps/nginx', 'p99/nginx');
  head.push('rps/direct');
  const fmt = (n: number | null, digits = 2) => (n === null || Number.isNaN(n) ? '-' : n.toFixed(digits));
  const rows = runs.map((r) => {
    const row = [r.name, String(r.rps), fmt(r.p50_ms), fmt(r.p99_ms), String(r.non2xx), String(r.errors), fmt(r.rss_mb, 1), fmt(r.rss_idle_mb, 1), fmt(r.cpu_us_per_req, 1)];
    if (hasNginx) row.push(fmt(r.rps_ratio_nginx), fmt(r.p99_ratio_nginx));
    row.push(fmt(r.rps_ratio_direct));
    return row;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(' | ') + ' |';
  const sep = '|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 1) + '-' : '-'.repeat(w + 1) + ':')).join('|') + '|';
  return [line(head), sep, ...rows.map(line)].join('\n');
}

/** One line per run that has side-task counters: "wisp+hotload: reloads 10, reload_failures 0". */
export function formatExtras(runs: RunSummary[]): string[] {
  return runs
    .filter((r) => r.extra)
    .map((r) => `${r.name}: ${Object.entries(r.extra as Record<string, number>).map(([k, v]) => `${k} ${v}`).join(', ')}`);
}

/** "nginx version: nginx/1.22.1" → "nginx/1.22.1"; "HAProxy version 2.6.12-1 2026/10/17 - https://…" →
 * "HAProxy 2.6.12-1"; "wrk debian/4.1.0-3 [epoll] Copyright …" → "wrk debian/4.1.0-3". */
export function shortVersion(line: string): string {
  return line
    .replace(/^nginx version: /, '')
    .replace(/ version /, ' ')
    .replace(/ \d{4}\/\d{2}\/\d{2}.*$/, '')
    .replace(/ \[.*$/, '')
    .replace(/ Copyright.*$/, '')
    .trim();
}

/** The README markers a results file's table goes between: bench/results/<key>.json → bench:<key>. */
export function readmeMarkers(key: string): { start: string; end: string } {
  return { start: `<!-- bench:${key}:start -->`, end: `<!-- bench:${key}:end -->` };
}

export function readmeBlock(
  date: string,
  m: { cpus: number; model: string; node: string },
  settings: { tool: string; connections: number; duration_s: number; warmup_s: number; rounds: number; versions: Record<string, string>; loadavg?: number[] },
  runs: RunSummary[],
  skipped: { name: string; reason: string }[],
  streamTable?: string,
): string {
  const versions = Object.values(settings.versions).map(shortVersion).join(', ');
  const load = runs.length > 0
    ? `; ${settings.tool} -c${settings.connections}, ${settings.warmup_s} s warm-up + ${settings.duration_s} s, median of ${settings.rounds} round(s)`
    : '';
  const lines = [
    `${date.slice(0, 16).replace('T', ' ')} UTC, ${m.cpus} × ${m.model}, Node ${m.node}${load}` +
      `${settings.loadavg ? ` (load average ${settings.loadavg.join(' → ')})` : ''}. ${versions}.`,
  ];
  if (runs.length > 0) lines.push('', formatTable(runs));
  if (streamTable) lines.push('', streamTable);
  for (const e of formatExtras(runs)) lines.push('', `${e}.`);
  for (const s of skipped) lines.push('', `Skipped ${s.name}: ${s.reason}.`);
  return lines.join('\n');
}

/** Put `block` between the README's markers; false when the markers are missing. */
export function replaceReadmeBlock(file: string, key: string, block: string): boolean {
  const { start, end } = readmeMarkers(key);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return false;
  }
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) return false;
  writeFileSync(file, `${text.slice(0, a + start.length)}\n${block}\n${text.slice(b)}`);
  return true;
}

