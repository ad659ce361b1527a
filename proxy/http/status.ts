import { STATUS_CODES } from 'node:http';

// "200 OK" strings for writeStatus, built once.
const LINES: string[] = [];
for (let s = 100; s < 600; s++) LINES[s] = `${s} ${STATUS_CODES[s] ?? 'Unknown'}`;

export function statusLine(status: number): string {
  return LINES[status] ?? `${status} Unknown`;
}
