// Process log: one line per event on stderr, JSON when WISP_LOG_FORMAT=json.
// Callers pass messages that never contain secrets (tokens, keys, filter configs).
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export class Logger {
  private threshold: number;
  constructor(
    level: Level = (process.env.WISP_LOG_LEVEL as Level | undefined) ?? 'info',
    private readonly json = process.env.WISP_LOG_FORMAT === 'json',
  ) {
    this.threshold = ORDER[level] ?? 20;
  }

  enabled(level: Level): boolean {
    return ORDER[level] >= this.threshold;
  }

  log(level: Level, msg: string, fields?: Record<string, unknown>): void {
    if (ORDER[level] < this.threshold) return;
    const time = new Date().toISOString();
    if (this.json) {
      process.stderr.write(JSON.stringify({ time, level, msg, ...fields }) + '\n');
    } else {
      const extra = fields ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
      process.stderr.write(`${time} ${level.padEnd(5)} ${msg}${extra}\n`);
    }
  }
  debug(msg: string, f?: Record<string, unknown>): void { this.log('debug', msg, f); }
  info(msg: string, f?: Record<string, unknown>): void { this.log('info', msg, f); }
  warn(msg: string, f?: Record<string, unknown>): void { this.log('warn', msg, f); }
  error(msg: string, f?: Record<string, unknown>): void { this.log('error', msg, f); }
}

export const log = new Logger();
