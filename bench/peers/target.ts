// What run.ts needs from each thing it benchmarks: start it, know its port and pid, stop it.
import type { ManagedProcess } from './proc.js';

export interface TargetContext {
  /** Port of the shared bench upstream (hello world). */
  upstreamPort: number;
  /** A fresh temporary directory for this start (configs, pid files, logs). */
  dir: string;
  /** Repository root (for bin/wisp.js and filters/build). */
  root: string;
  /** Expected peak client connections, so peers size their connection limits. */
  connections: number;
  /** The streaming check: one long download, so whole-request timeouts must not cut it. */
  streaming: boolean;
  /** Node options for the Wisp process (its NODE_OPTIONS), e.g. "--max-semi-space-size=1". */
  wispNodeOptions?: string;
}

export interface RunningTarget {
  /** The port the load goes to. */
  port: number;
  /** Path and query of every request (default "/"). */
  path?: string;
  /** The process whose tree RSS is sampled; null for targets whose memory is not the point. */
  proc: ManagedProcess | null;
  /** Something to do while the measured load runs (e.g. hot-reload a filter); its counters
   * are added to the run's `extra` in the report. */
  duringMeasure?(): SideTask;
  stop(): Promise<void>;
}

export interface SideTask {
  /** Stop, wait for anything in flight, and return counters (summed over rounds). */
  stop(): Promise<Record<string, number>>;
}

export interface Target {
  name: string;
  /** Null when the target can run here, else why it is skipped. */
  unavailable(ctx: Pick<TargetContext, 'root'>): string | null;
  start(ctx: TargetContext): Promise<RunningTarget>;
}
