// Child processes of the benchmark: each in its own process group so one signal stops it and
// everything it forked (nginx workers, a proxy's children); every one is remembered so an
// error or Ctrl-C still stops them all.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';

const OUTPUT_TAIL_BYTES = 8192;
const live = new Set<ManagedProcess>();

export class ManagedProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  hasExited = false;
  private output = '';

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
  ) {
    this.child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true, // own process group: kill(-pid) reaches its workers too
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this);
    const keep = (d: Buffer) => {
      this.output = (this.output + d.toString('utf8')).slice(-OUTPUT_TAIL_BYTES);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => {
        this.output += `\nspawn error: ${err.message}`;
        this.hasExited = true;
        live.delete(this);
        resolve();
      });
      this.child.on('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        this.hasExited = true;
        live.delete(this);
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** The last few KB the process wrote to stdout/stderr, for error messages. */
  tail(): string {
    return this.output.trim();
  }

  describeExit(): string {
    return `${this.name} exited (code ${this.exitCode}, signal ${this.exitSignal})${this.output ? `:\n${this.tail()}` : ''}`;
  }

  /** SIGTERM the group, then SIGKILL it if it has not exited within `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.hasExited) return;
    signalGroup(this.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      signalGroup(this.pid, 'SIGKILL');
      await this.exited;
    }
    // Workers that ignored the leader's exit (nginx workers orphaned by a SIGKILLed master).
    signalGroup(this.pid, 'SIGKILL');
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // group already gone
  }
}

/** Stop every process still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

let cleanupInstalled = false;
/** On Ctrl-C, SIGTERM or a crash, stop every child before exiting. */
export function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping ${live.size} benchmark process(es)\n`);
    stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Last resort when the event loop is gone: synchronous SIGKILL of each group.
  process.on('exit', () => {
    for (const p of live) signalGroup(p.pid, 'SIGKILL');
  });
}

/** Pids of `root` and all its descendants (from /proc; empty when /proc is absent). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const e of entries) {
    const c = e.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue;
    }
    // The command name is in parentheses and may itself contain spaces or parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    const list = children.get(ppid);
    if (list) list.push(Number(e));
    else children.set(ppid, [Number(e)]);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0 && out.length < 10_000) {
    const pid = queue.shift() as number;
    out.push(pid);
    for (const child of children.get(pid) ?? []) queue.push(child);
  }
  return out;
}

/** Resident set size of one process in bytes, or 0 when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const at = status.indexOf('VmRSS:');
    if (at < 0) return 0;
    const kb = Number.parseInt(status.slice(at + 6).trim(), 10);
    return Number.isFinite(kb) ? kb * 1024 : 0;
  } catch {
    return 0;
  }
}

/** What a process tree uses: current and peak resident memory, and CPU time so far. */
export interface TreeUsage {
  rssBytes: number;
  /** Sum of each process's VmHWM (its own peak RSS): an upper bound of the tree's peak. */
  peakRssBytes: number;
  /** User + system CPU seconds of every thread of every process in the tree. */
  cpuSeconds: number;
}

/** Clock ticks per second in /proc/PID/stat: USER_HZ, 100 on every Linux ABI Node runs on. */
const USER_HZ = 100;

function statusKb(status: string, field: string): number {
  const at = status.indexOf(field);
  if (at < 0) return 0;
  const kb = Number.parseInt(status.slice(at + field.length).trim(), 10);
  return Number.isFinite(kb) ? kb : 0;
}

/** Memory and CPU of `root` and its descendants; zeros for processes that are gone. */
export function treeUsage(root: number): TreeUsage {
  const usage: TreeUsage = { rssBytes: 0, peakRssBytes: 0, cpuSeconds: 0 };
  for (const pid of processTree(root)) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      usage.rssBytes += statusKb(status, 'VmRSS:') * 1024;
      usage.peakRssBytes += statusKb(status, 'VmHWM:') * 1024;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // After the parenthesised command name: fields 14 and 15 (utime, stime) are 11 and 12 here.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      usage.cpuSeconds += (Number(fields[11]) + Number(fields[12])) / USER_HZ;
    } catch {
      // exited between listing and reading
    }
  }
  return usage;
}

/** RSS of a process and all its descendants (nginx master + workers), in bytes. */
export function treeRssBytes(root: number): number {
  let sum = 0;
  for (const pid of processTree(root)) sum += rssBytes(pid);
  return sum;
}

/** One GET on a fresh connection; resolves with the status, or 0 on any error. */
export function probe(port: number, path = '/', timeoutMs = 1000): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/** Poll until GET returns 200, the process dies, or `timeoutMs` passes. */
export async function waitReady(proc: ManagedProcess | null, port: number, timeoutMs = 15_000, path = '/'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 0;
  while (Date.now() < deadline) {
    if (proc?.hasExited) throw new Error(proc.describeExit());
    last = await probe(port, path);
    if (last === 200) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `${proc?.name ?? 'target'} on port ${port} not ready after ${timeoutMs} ms (last status ${last || 'no answer'})` +
      (proc?.tail() ? `:\n${proc.tail()}` : ''),
  );
}

/** Absolute path of an executable on PATH (also the sbin dirs, where nginx/haproxy live), or null. */
export function findExecutable(name: string): string | null {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin', '/sbin']);
  for (const dir of dirs) {
    if (!dir) continue;
    const full = `${dir}/${name}`;
    try {
      accessSync(full, constants.X_OK);
      return full;
    } catch {
      // not here
    }
  }
  return null;
}

/** First line of `<exe> -v` (nginx prints on stderr, haproxy on stdout). */
export function versionOf(exe: string): string {
  const r = spawnSync(exe, ['-v'], { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '';
}
