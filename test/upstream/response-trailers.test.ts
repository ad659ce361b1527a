// Trailers of a chunked upstream response: the parser keeps them (for filters'
// proxy_on_response_trailers), whatever way the bytes are split, and leaves out the fields a
// trailer must not carry.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PARSE_COMPLETE, PARSE_ERROR, PARSE_NEED_MORE, ResponseParser, type ResponseSink } from '../../proxy/upstream/response-parser.js';

class Sink implements ResponseSink {
  body = '';
  trailers: string[][] = [];
  onParsedHead(): boolean {
    return true;
  }
  onParsedBody(chunk: Buffer): boolean {
    this.body += chunk.toString('latin1');
    return true;
  }
  onParsedTrailers(trailers: string[]): void {
    this.trailers.push([...trailers]);
  }
}

function parse(pieces: Buffer[]): { r: number; sink: Sink; parser: ResponseParser } {
  const sink = new Sink();
  const parser = new ResponseParser(sink, 1024);
  parser.reset(false);
  let r = PARSE_NEED_MORE;
  for (const p of pieces) {
    r = parser.execute(p, 0);
    if (r !== PARSE_NEED_MORE) break;
  }
  return { r, sink, parser };
}

const RESPONSE =
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, Grpc-Status\r\n\r\n' +
  '5\r\nhello\r\n0\r\nX-Checksum:  abc123 \r\nContent-Length: 99\r\ngrpc-status: 0\r\nX-Empty:\r\n\r\n';
const EXPECTED = ['x-checksum', 'abc123', 'grpc-status', '0', 'x-empty', ''];

test('trailers are kept for every two-way split (and byte at a time); forbidden fields left out', () => {
  const bytes = Buffer.from(RESPONSE, 'latin1');
  for (let cut = 0; cut <= bytes.length; cut++) {
    const { r, sink, parser } = parse([bytes.subarray(0, cut), bytes.subarray(cut)]);
    assert.equal(r, PARSE_COMPLETE, `cut at ${cut}: ${parser.error}`);
    assert.equal(sink.body, 'hello');
    assert.deepEqual(sink.trailers, [EXPECTED], `cut at ${cut}`);
    assert.deepEqual(parser.trailers, EXPECTED);
  }
  const single: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) single.push(bytes.subarray(i, i + 1));
  assert.deepEqual(parse(single).sink.trailers, [EXPECTED]);
});

test('no trailers: no callback, an empty list; the next exchange starts clean', () => {
  const sink = new Sink();
  const parser = new ResponseParser(sink, 1024);
  parser.reset(false);
  assert.equal(parser.execute(Buffer.from(RESPONSE, 'latin1'), 0), PARSE_COMPLETE);
  parser.reset(false);
  const plain = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n';
  assert.equal(parser.execute(Buffer.from(plain, 'latin1'), 0), PARSE_COMPLETE);
  assert.deepEqual(parser.trailers, []);
  assert.equal(sink.trailers.length, 1, 'only the first exchange had trailers');
});

test('malformed trailer lines fail the exchange', () => {
  for (const bad of ['no colon here', ': empty name', 'bad name: v', 'x-a: a\u0001b']) {
    const { r, parser } = parse([Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n${bad}\r\n\r\n`, 'latin1')]);
    assert.equal(r, PARSE_ERROR, JSON.stringify(bad));
    assert.equal(parser.error, 'invalid trailer');
  }
});

test('trailers are bounded by max header bytes', () => {
  const big = `x-big: ${'a'.repeat(2000)}`;
  const { r, parser } = parse([Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n${big}\r\n\r\n`, 'latin1')]);
  assert.equal(r, PARSE_ERROR);
  assert.equal(parser.error, 'trailers too large');
});
