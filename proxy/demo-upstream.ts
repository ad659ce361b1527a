// The small upstream `npm start` runs next to the demo gateway: echoes the request as JSON.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export async function startDemoUpstream(port: number): Promise<{ port: number; close(): void }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://demo');
      const body = JSON.stringify(
        {
          hello: url.searchParams.get('name') ?? 'world',
          method: req.method,
          path: url.pathname,
          headers: req.headers,
          body_bytes: Buffer.concat(chunks).length,
        },
        null,
        2,
      );
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body + '');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}
