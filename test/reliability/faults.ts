// Shared pieces for the reliability tests: a raw TCP upstream whose behaviour per request is a
// plain function (so each fault is written once, at the byte level), and fd counting.
import fs from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** What a fault upstream does once it has a whole request head on a socket. */
export type FaultBehaviour = (sock: net.Socket, head: string) => void;

export interface FaultUpstream {
  port: number;
  /** Requests (heads) that reached this upstream, in order. */
  arrivals: string[];
  /** Sockets currently open on the upstream side. */
  open(): number;
  behaviour: FaultBehaviour;
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1:0 that hands every complete request head to `behaviour`. */
export async function startFaultUpstream(behaviour: FaultBehaviour): Promise<FaultUpstream> {
  const sockets = new Set<net.Socket>();
  const up: FaultUpstream = {
    port: 0,
    arrivals: [],
    open: () => sockets.size,
    behaviour,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      let end = buf.indexOf('\r\n\r\n');
      while (end >= 0) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        // Bodies in these tests are small and announced with Content-Length.
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        const bodyLen = cl ? Number(cl[1]) : 0;
        buf = buf.slice(Math.min(bodyLen, buf.length));
        up.arrivals.push(head);
        up.behaviour(sock, head);
        end = buf.indexOf('\r\n\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as AddressInfo).port;
  return up;
}

/** Open file descriptors of this process (sockets included). */
export function openFds(pid: number | 'self' = 'self'): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

export const ok = (body = 'ok'): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nContent-Type: text/plain\r\n\r\n${body}`;
