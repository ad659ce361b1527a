// A route's ordered filter list. It holds no per-request state: every call goes to the
// runtime, which pins the stream to a worker and to the generations current at its first
// call, and batches the call with the rest of the event-loop turn.

import type { Generation } from '../wasm/module-registry.js';
import { Op } from '../wasm/wire.js';
import type { FilterChain, FilterStream } from './types.js';

export interface ChainHost {
  /** Registry version: when it changes, the chain re-resolves its generations. */
  readonly registryVersion: number;
  resolve(names: readonly string[]): Generation[];
  submit(chain: WasmFilterChain, stream: FilterStream, op: number): void;
  submitBody(stream: FilterStream, op: number, chunk: Uint8Array, endOfStream: boolean): void;
  bodyPhases(stream: FilterStream): number;
  handlesResponseHeaders(stream: FilterStream): boolean;
  handlesResponseTrailers(stream: FilterStream): boolean;
  finish(stream: FilterStream): void;
}

export class WasmFilterChain implements FilterChain {
  readonly names: readonly string[];
  private gens: Generation[] = [];
  private version = -1;

  constructor(private readonly host: ChainHost, names: readonly string[]) {
    this.names = Object.freeze([...names]);
  }

  /** The current generation of each filter, in chain order (removed filters are skipped). */
  generations(): Generation[] {
    if (this.version !== this.host.registryVersion) {
      this.gens = this.host.resolve(this.names);
      this.version = this.host.registryVersion;
    }
    return this.gens;
  }

  requestHeaders(stream: FilterStream): void {
    this.host.submit(this, stream, Op.RequestHeaders);
  }

  responseHeaders(stream: FilterStream): void {
    this.host.submit(this, stream, Op.ResponseHeaders);
  }

  bodyPhases(stream: FilterStream): number {
    return this.host.bodyPhases(stream);
  }

  requestBody(stream: FilterStream, chunk: Uint8Array, endOfStream: boolean): void {
    this.host.submitBody(stream, Op.RequestBody, chunk, endOfStream);
  }

  responseBody(stream: FilterStream, chunk: Uint8Array, endOfStream: boolean): void {
    this.host.submitBody(stream, Op.ResponseBody, chunk, endOfStream);
  }

  handlesResponseHeaders(stream: FilterStream): boolean {
    return this.host.handlesResponseHeaders(stream);
  }

  handlesResponseTrailers(stream: FilterStream): boolean {
    return this.host.handlesResponseTrailers(stream);
  }

  responseTrailers(stream: FilterStream): void {
    this.host.submit(this, stream, Op.ResponseTrailers);
  }

  done(stream: FilterStream): void {
    this.host.finish(stream);
  }
}
