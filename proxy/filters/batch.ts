// Main-thread side of the batch wire format: encode a turn's calls for one worker, and turn
// the worker's answer back into stream callbacks. See wasm/wire.ts for the layout.

import type { StreamEntry, WorkerHandle } from '../wasm/pool.js';
import type { Generation } from '../wasm/module-registry.js';
import { BinReader, type BinWriter, BodyFlag, type BodyChunk, CallFlag, type CallPayload, type HttpCallAnswer, NetOp, Op, Phase, ResultKind } from '../wasm/wire.js';
import type { FilterPhase, FilterStream } from './types.js';

export interface ReplyHandler {
  continueStream(entry: StreamEntry, phase: FilterPhase): void;
  localResponse(entry: StreamEntry, status: number, headers: string[], body: Uint8Array): void;
  /** The answer to a body call: bytes to forward (maybe none) and whether they end the body. */
  body(entry: StreamEntry, request: boolean, data: Uint8Array, endOfStream: boolean): void;
  /** A Done call went out: the stream's generations can be released. */
  released(entry: StreamEntry): void;
  filterLog(genId: number, level: number, message: string): void;
  filterFault(genId: number, kind: number, reason: string): void;
  /** A filter enqueued to shared queue `id` (ids come deduplicated per batch). */
  queueReady(id: number): void;
  /** A filter instance in this worker asked for ticks every periodMs (0 = stop). */
  tickPeriod(handle: WorkerHandle, genId: number, periodMs: number): void;
  /** The worker lost the state of a paused stream: apply failure policies. */
  lost(entry: StreamEntry): void;
  /** A filter called proxy_http_call; answer it with handle.enqueue(..., Op.HttpCallResponse). */
  httpCallIssued(
    handle: WorkerHandle,
    token: number,
    streamId: number,
    cluster: string,
    headers: string[],
    body: Uint8Array,
    timeoutMs: number,
  ): void;
}

const NO_TRAILERS: readonly string[] = [];

export function encodeCalls(
  handle: WorkerHandle,
  w: BinWriter,
  entries: StreamEntry[],
  ops: number[],
  answers: CallPayload[],
): void {
  w.u32(entries.length);
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    const op = ops[i];
    const s = entry.stream;
    if (op === Op.QueueReady) {
      w.u8(op);
      w.f64(-1);
      w.u8(0);
      w.u8(0);
      w.u32(answers[i] as number);
      continue;
    }
    if (op === Op.HttpCallResponse) {
      const a = answers[i] as HttpCallAnswer;
      writeCallHead(w, op, s.streamId, 0, entry.gens);
      w.u32(a.token);
      w.u32(a.status);
      w.strList(a.headers);
      w.bytes(a.body);
      continue;
    }
    if (op === Op.RequestBody || op === Op.ResponseBody) {
      encodeBodyCall(handle, w, entry, op, answers[i] as BodyChunk);
      continue;
    }
    if (op === NetOp.DownstreamData || op === NetOp.UpstreamData) {
      encodeNetworkCall(handle, w, entry, op, answers[i] as BodyChunk);
      continue;
    }
    let flags = 0;
    if (op === Op.RequestHeaders || ((op === Op.ResponseHeaders || op === Op.ResponseTrailers) && entry.epoch !== handle.epoch)) flags |= CallFlag.StreamInfo;
    writeCallHead(w, op, s.streamId, flags, entry.gens);
    if ((flags & CallFlag.StreamInfo) !== 0) writeStreamInfo(handle, w, entry);
    if (op === Op.RequestHeaders) {
      w.strList(s.requestHeaders);
    } else if (op === Op.ResponseHeaders) {
      if ((flags & CallFlag.StreamInfo) !== 0) w.strList(s.requestHeaders);
      w.u32(s.responseStatus);
      w.strList(s.responseHeaders);
    } else if (op === Op.ResponseTrailers) {
      // A worker that replaced the one holding the stream gets the heads too.
      if ((flags & CallFlag.StreamInfo) !== 0) {
        w.strList(s.requestHeaders);
        w.u32(s.responseStatus);
        w.strList(s.responseHeaders);
      }
      w.strList(s.responseTrailers ?? NO_TRAILERS);
    } else if (op === Op.Done) {
      w.u32(s.responseStatus);
    }
  }
}

/** What starts every call: op, stream id, CallFlag bits and the pinned generation ids. */
function writeCallHead(w: BinWriter, op: number, streamId: number, flags: number, gens: readonly Generation[]): void {
  w.u8(op);
  w.f64(streamId);
  w.u8(flags);
  w.u8(gens.length);
  for (let k = 0; k < gens.length; k++) w.u32(gens[k].id);
}

function writeStreamInfo(handle: WorkerHandle, w: BinWriter, entry: StreamEntry): void {
  const s = entry.stream;
  // Layout: wire.ts STREAM_INFO_STRINGS.
  w.u32(s.clientPort);
  w.f64(s.connectionId ?? 0);
  w.str(s.method);
  w.str(s.scheme);
  w.str(s.authority);
  w.str(s.path);
  w.str(s.clientAddress);
  w.str(s.listenerName);
  w.str(s.routeName);
  w.str(s.clusterName);
  w.str(s.requestId);
  w.str(s.destinationAddress ?? '');
  entry.epoch = handle.epoch;
}

/** A body chunk; a worker that never saw the stream (it was replaced) gets its heads too. */
function encodeBodyCall(handle: WorkerHandle, w: BinWriter, entry: StreamEntry, op: number, chunk: BodyChunk): void {
  let flags = chunk.endOfStream ? CallFlag.EndOfStream : 0;
  if (entry.epoch !== handle.epoch) flags |= CallFlag.StreamInfo;
  writeCallHead(w, op, entry.stream.streamId, flags, entry.gens);
  if ((flags & CallFlag.StreamInfo) !== 0) {
    writeStreamInfo(handle, w, entry);
    w.strList(entry.stream.requestHeaders);
    if (op === Op.ResponseBody) {
      w.u32(entry.stream.responseStatus);
      w.strList(entry.stream.responseHeaders);
    }
  }
  w.bytes(chunk.data);
}

/** A connection's chunk; its info (client address, listener, cluster: the properties filters
 * read) goes with the first call to a worker (a new connection's entry starts at epoch -1). */
function encodeNetworkCall(handle: WorkerHandle, w: BinWriter, entry: StreamEntry, op: number, chunk: BodyChunk): void {
  let flags = chunk.endOfStream ? CallFlag.EndOfStream : 0;
  if (entry.epoch !== handle.epoch) flags |= CallFlag.StreamInfo;
  writeCallHead(w, op, entry.stream.streamId, flags, entry.gens);
  if ((flags & CallFlag.StreamInfo) !== 0) writeStreamInfo(handle, w, entry);
  w.bytes(chunk.data);
}

/** Reused: replies are decoded one at a time (never re-entered), mostly from the same region. */
let replyReader: BinReader | null = null;

export function decodeReply(handle: WorkerHandle, buf: ArrayBufferLike, entries: StreamEntry[], ops: number[], h: ReplyHandler): void {
  const total = new DataView(buf, 0, 4).getUint32(0, true);
  const r = replyReader ?? (replyReader = new BinReader(buf, total));
  r.reset(buf, total);
  r.pos = 4;
  const results = r.u32();
  for (let i = 0; i < results; i++) {
    const index = r.u32();
    const kind = r.u8();
    const request = r.u8() === Phase.Request;
    const entry = entries[index];
    const phase: FilterPhase = request ? 'request_headers' : 'response_headers';
    if (kind === ResultKind.ContinueMutated) {
      const list = r.strList();
      if (!entry.done) {
        if (request) applyRequestHeaders(entry.stream, list);
        else applyResponseHeaders(entry.stream, list);
        h.continueStream(entry, phase);
      }
    } else if (kind === ResultKind.ContinueAppended) {
      const added = r.strList();
      if (!entry.done) {
        // A new array, as the contract promises (the request path may still hold the old one).
        if (request) entry.stream.requestHeaders = entry.stream.requestHeaders.concat(added);
        else entry.stream.responseHeaders = entry.stream.responseHeaders.concat(added);
        h.continueStream(entry, phase);
      }
    } else if (kind === ResultKind.LocalResponse) {
      const status = r.u32();
      const headers = r.strList();
      const body = r.bytes();
      r.str(); // details, for logs later
      if (!entry.done) h.localResponse(entry, status, headers, body);
    } else if (kind === ResultKind.Body) {
      const data = r.bytes();
      const flags = r.u8();
      if (!entry.done) {
        const held = (flags & BodyFlag.Held) !== 0;
        if (request) entry.requestBodyHeld = held;
        else entry.responseBodyHeld = held;
        h.body(entry, request, data, (flags & BodyFlag.End) !== 0);
      }
    } else if (kind === ResultKind.Lost) {
      if (!entry.done) h.lost(entry);
    } else if (kind === ResultKind.Continue && !entry.done) {
      h.continueStream(entry, phase);
    }
    // Paused: the answer comes with a later batch (after the filter's http call).
  }
  for (let i = 0; i < entries.length; i++) if (ops[i] === Op.Done) h.released(entries[i]);
  const ticks = r.u32();
  for (let i = 0; i < ticks; i++) {
    const genId = r.u32();
    h.tickPeriod(handle, genId, r.u32());
  }
  const queues = r.u32();
  for (let i = 0; i < queues; i++) h.queueReady(r.u32());
  const calls = r.u32();
  for (let i = 0; i < calls; i++) {
    const token = r.u32();
    const streamId = r.f64();
    const cluster = r.str();
    const headers = r.strList();
    const body = r.bytes();
    h.httpCallIssued(handle, token, streamId, cluster, headers, body, r.u32());
  }
  const logs = r.u32();
  for (let i = 0; i < logs; i++) {
    const gen = r.u32();
    const level = r.u8();
    h.filterLog(gen, level, r.str());
  }
  const faults = r.u32();
  for (let i = 0; i < faults; i++) {
    const gen = r.u32();
    const kind = r.u8();
    h.filterFault(gen, kind, r.str());
  }
}

/** Filters see pseudo-headers; the request path sees `path` and a `host` header. */
export function applyRequestHeaders(stream: FilterStream, list: string[]): void {
  const out: string[] = [];
  let authority: string | null = null;
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i];
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':path') {
        if (list[i + 1] !== stream.path && list[i + 1].length > 0) stream.path = list[i + 1];
      } else if (name === ':authority') {
        authority = list[i + 1];
      }
      continue;
    }
    out.push(name, list[i + 1]);
  }
  if (authority !== null && authority !== stream.authority && authority.length > 0) {
    let replaced = false;
    for (let i = 0; i < out.length; i += 2) {
      if (out[i] === 'host') {
        out[i + 1] = authority;
        replaced = true;
        break;
      }
    }
    if (!replaced) out.push('host', authority);
  }
  stream.requestHeaders = out;
}

export function applyResponseHeaders(stream: FilterStream, list: string[]): void {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i];
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':status') {
        const code = Number(list[i + 1]);
        if (Number.isInteger(code) && code >= 100 && code <= 599) stream.responseStatus = code;
      }
      continue;
    }
    out.push(name, list[i + 1]);
  }
  stream.responseHeaders = out;
}
