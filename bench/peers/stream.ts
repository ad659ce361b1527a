// The streaming check: one large download through a proxy while its RSS is sampled, to show
// that the body is streamed with backpressure rather than buffered.
import http from 'node:http';
import { treeRssBytes } from './proc.js';
import { round2, round3 } from './report.js';
import type { RunningTarget } from './target.js';

export interface StreamResult {
  name: string;
  bytes: number;
  expected_bytes: number;
  complete: boolean;
  seconds: number;
  mb_per_s: number;
  rss_before_mb: number;
  rss_peak_mb: number;
  rss_growth_mb: number;
  error?: string;
}

const STREAM_STALL_MS = 10_000;
const STREAM_DEADLINE_MS = 300_000;

/** Download GET /stream through the target, sampling the target's RSS every 100 ms. */
export function streamThrough(target: RunningTarget, name: string, expected: number): Promise<StreamResult> {
  const pid = target.proc?.pid ?? -1;
  const before = treeRssBytes(pid);
  let peak = before;
  const started = process.hrtime.bigint();
  let bytes = 0;
  let lastDataAt = Date.now();
  return new Promise((resolveResult) => {
    let settled = false;
    const sampler = setInterval(() => {
      peak = Math.max(peak, treeRssBytes(pid));
      if (Date.now() - lastDataAt > STREAM_STALL_MS) {
        req.destroy();
        finish(`stalled: no data for ${STREAM_STALL_MS / 1000} s`);
      }
    }, 100);
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearInterval(sampler);
      clearTimeout(deadline);
      peak = Math.max(peak, treeRssBytes(pid));
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const mb = 1024 * 1024;
      resolveResult({
        name,
        bytes,
        expected_bytes: expected,
        complete: bytes === expected,
        seconds: round3(seconds),
        mb_per_s: round2(bytes / mb / seconds),
        rss_before_mb: round2(before / mb),
        rss_peak_mb: round2(peak / mb),
        rss_growth_mb: round2((peak - before) / mb),
        ...(error ? { error } : {}),
      });
    };
    const req = http.get({ host: '127.0.0.1', port: target.port, path: '/stream', agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        finish(`status ${res.statusCode}`);
        return;
      }
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        lastDataAt = Date.now();
      });
      res.on('end', () => finish());
      res.on('error', (err) => finish(err.message));
      res.on('close', () => finish(bytes === expected ? undefined : 'connection closed early'));
    });
    req.on('error', (err) => finish(err.message));
    const deadline = setTimeout(() => {
      req.destroy();
      finish(`timed out after ${STREAM_DEADLINE_MS / 1000} s`);
    }, STREAM_DEADLINE_MS);
  });
}

export function formatStreamTable(streams: StreamResult[]): string {
  const lines = ['| stream | bytes | complete | s | MB/s | RSS before MB | RSS peak MB | growth MB | error |', '|---|--:|---|--:|--:|--:|--:|--:|---|'];
  for (const r of streams) {
    lines.push(`| ${r.name} | ${r.bytes} | ${r.complete ? 'yes' : 'no'} | ${r.seconds} | ${r.mb_per_s} | ${r.rss_before_mb} | ${r.rss_peak_mb} | ${r.rss_growth_mb} | ${r.error ?? ''} |`);
  }
  return lines.join('\n');
}

