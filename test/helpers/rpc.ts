// Real SOFA Bolt and Dubbo 2 endpoints for tests, built on the npm protocol libraries
// sofa-bolt-node and dubbo-remoting (the codecs sofa-rpc-node uses on both sides of a call).
// The libraries ship no types; the small interfaces below name only what the tests call.
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** A decoded packet as both libraries emit it. */
export interface RpcPacket {
  packetId: number;
  packetType: string;
  data: { args?: unknown[]; methodName?: string; appResponse?: unknown; error?: unknown };
}

interface RpcEncoder extends Readable {
  writeRequest(id: number, req: object, callback?: (err: Error | null) => void): void;
  writeResponse(req: RpcPacket, res: object, callback?: (err: Error | null) => void): void;
  writeHeartbeat(id: number, hb: object): void;
  writeHeartbeatAck(hb: RpcPacket): void;
}

/** sofa-bolt-node encoder settings: protocolType 'bolt2' with boltVersion 2 and crcEnable is
 * Bolt v2 with a CRC32 trailer (proto 0x02, ver1 0x02). */
export interface EncoderSettings {
  protocolType?: string;
  boltVersion?: number;
  crcEnable?: boolean;
}

/** Emits 'request', 'response', 'heartbeat' with an RpcPacket, and 'error'. */
type RpcDecoder = Writable;

export interface RpcCodec {
  encoder(options: { sentReqs: Map<number, unknown> }): RpcEncoder;
  decoder(options: { sentReqs: Map<number, unknown> }): RpcDecoder;
}

interface BoltRpcClientInstance {
  ready(): Promise<void>;
  invoke(req: object): Promise<RpcPacket>;
  close(): Promise<void>;
}

export const bolt = require('sofa-bolt-node') as RpcCodec & {
  RpcClient: new (options: { address: URL; logger: Record<'info' | 'warn' | 'error' | 'debug', (...args: unknown[]) => void>; connectTimeout?: number }) => BoltRpcClientInstance;
};
export const dubbo = require('dubbo-remoting') as RpcCodec;

/** The request both tests send: HelloService.sayHello(String). */
export function helloRequest(name: string): object {
  return {
    args: [{ $class: 'java.lang.String', $: name }],
    serverSignature: 'com.example.HelloService:1.0',
    interfaceName: 'com.example.HelloService',
    version: '1.0',
    methodName: 'sayHello',
    timeout: 3000,
  };
}

export interface RpcUpstream {
  port: number;
  /** Connections accepted so far. */
  connections: number;
  /** Requests answered so far. */
  requests: number;
  close(): Promise<void>;
}

/** A HelloService server speaking `codec`: sayHello(x) answers `${tag}: hello ${x}`, so a test
 * sees which upstream answered. Heartbeats are acknowledged. */
export async function startRpcUpstream(codec: RpcCodec, tag: string): Promise<RpcUpstream> {
  const sockets = new Set<net.Socket>();
  const up: RpcUpstream = { port: 0, connections: 0, requests: 0, close: () => Promise.resolve() };
  const server = net.createServer((socket) => {
    up.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const options = { sentReqs: new Map<number, unknown>() };
    const encoder = codec.encoder(options);
    const decoder = codec.decoder(options);
    decoder.on('error', () => socket.destroy());
    encoder.pipe(socket).pipe(decoder);
    decoder.on('request', (req: RpcPacket) => {
      up.requests++;
      encoder.writeResponse(req, {
        isError: false,
        appResponse: { $class: 'java.lang.String', $: `${tag}: hello ${String(req.data.args?.[0])}` },
      });
    });
    decoder.on('heartbeat', (hb: RpcPacket) => encoder.writeHeartbeatAck(hb));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  up.port = (server.address() as net.AddressInfo).port;
  up.close = () => new Promise<void>((r) => {
    for (const s of sockets) s.destroy();
    server.close(() => r());
  });
  return up;
}

/** One client connection speaking `codec` directly over a socket (how sofa-rpc-node's
 * connection drives the library): requests are matched to responses by packet id. */
export class RpcCodecClient {
  private readonly socket: net.Socket;
  private readonly encoder: RpcEncoder;
  private readonly pending = new Map<number, { resolve: (p: RpcPacket) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  constructor(codec: RpcCodec, port: number, settings: EncoderSettings = {}) {
    const options = { sentReqs: new Map<number, unknown>() };
    this.encoder = Object.assign(codec.encoder(options), settings);
    const decoder = codec.decoder(options);
    this.socket = net.connect(port, '127.0.0.1');
    this.encoder.pipe(this.socket).pipe(decoder);
    const settle = (res: RpcPacket): void => {
      const waiter = this.pending.get(res.packetId);
      this.pending.delete(res.packetId);
      waiter?.resolve(res);
    };
    decoder.on('response', settle);
    decoder.on('heartbeat_ack', settle);
    const failAll = (err: Error): void => {
      for (const w of this.pending.values()) w.reject(err);
      this.pending.clear();
    };
    decoder.on('error', failAll);
    this.socket.on('error', failAll);
    this.socket.on('close', () => failAll(new Error('connection closed before the response')));
  }

  invoke(req: object): Promise<RpcPacket> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.encoder.writeRequest(id, req, (err) => {
        if (err) {
          this.pending.delete(id);
          reject(err);
        }
      });
    });
  }

  /** Sends a heartbeat; resolves with its acknowledgement. */
  heartbeat(): Promise<RpcPacket> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.encoder.writeHeartbeat(id, { clientUrl: `test://127.0.0.1/${id}` });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
