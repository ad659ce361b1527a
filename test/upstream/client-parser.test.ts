// The response parser on its own, fed the same bytes in every possible split: heads that
// span chunks, chunk-size lines cut anywhere, trailers cut anywhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ResponseParser, PARSE_COMPLETE, PARSE_ERROR, PARSE_NEED_MORE, PARSE_PAUSED } from '../../proxy/upstream/response-parser.js';
import type { ResponseSink } from '../../proxy/upstream/response-parser.js';

class Sink implements ResponseSink {
  status = 0;
  headers: string[] = [];
  contentLength = -2;
  body: Buffer[] = [];
  heads = 0;
  pauseEvery = false;
  onParsedHead(status: number, _reason: string, headers: string[], contentLength: number): boolean {
    this.heads++;
    this.status = status;
    this.headers = headers;
    this.contentLength = contentLength;
    return true;
  }
  onParsedBody(chunk: Buffer): boolean {
    this.body.push(Buffer.from(chunk));
    return !this.pauseEvery;
  }
}

/** Feed `pieces` in order, resuming after every pause; returns the final result. */
function feed(parser: ResponseParser, pieces: Buffer[]): number {
  let result = PARSE_NEED_MORE;
  for (const piece of pieces) {
    let at = 0;
    for (let guard = 0; guard < 1_000_000; guard++) {
      result = parser.execute(piece, at);
      if (result !== PARSE_PAUSED) break;
      at = parser.offset;
      if (at >= piece.length) {
        result = PARSE_NEED_MORE;
        break;
      }
    }
    if (result === PARSE_COMPLETE || result === PARSE_ERROR) return result;
  }
  return result;
}

const CHUNKED =
  'HTTP/1.1 100 Continue\r\n\r\n' +
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nX-Y: z\r\n\r\n' +
  '4;a=b\r\nwiki\r\n5 \r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n';

test('chunked response parses identically for every two-way split', () => {
  const bytes = Buffer.from(CHUNKED, 'latin1');
  for (let cut = 0; cut <= bytes.length; cut++) {
    const sink = new Sink();
    const parser = new ResponseParser(sink, 1024);
    parser.reset(false);
    const r = feed(parser, [bytes.subarray(0, cut), bytes.subarray(cut)]);
    assert.equal(r, PARSE_COMPLETE, `cut at ${cut}: ${parser.error}`);
    assert.equal(sink.heads, 1);
    assert.equal(sink.status, 200);
    assert.deepEqual(sink.headers, ['x-y', 'z']);
    assert.equal(Buffer.concat(sink.body).toString(), 'wikipedia in\r\n\r\nchunks.');
    assert.equal(parser.keepAlive, true);
  }
});

test('byte-at-a-time feeding with a consumer that pauses on every chunk', () => {
  const bytes = Buffer.from(CHUNKED, 'latin1');
  const sink = new Sink();
  sink.pauseEvery = true;
  const parser = new ResponseParser(sink, 1024);
  parser.reset(false);
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) pieces.push(bytes.subarray(i, i + 1));
  assert.equal(feed(parser, pieces), PARSE_COMPLETE);
  assert.equal(Buffer.concat(sink.body).toString(), 'wikipedia in\r\n\r\nchunks.');
});

test('content-length body: complete at the exact byte; trailing bytes are left unconsumed', () => {
  const sink = new Sink();
  const parser = new ResponseParser(sink, 1024);
  parser.reset(false);
  const bytes = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA');
  assert.equal(parser.execute(bytes, 0), PARSE_COMPLETE);
  assert.equal(parser.offset, bytes.length - 5);
  assert.equal(sink.contentLength, 5);
  assert.equal(Buffer.concat(sink.body).toString(), 'hello');
});

test('the same parser is reused across responses', () => {
  const sink = new Sink();
  const parser = new ResponseParser(sink, 1024);
  for (let i = 0; i < 3; i++) {
    sink.body = [];
    parser.reset(i === 1);
    const r = parser.execute(Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n${i === 1 ? '' : 'abc'}`), 0);
    assert.equal(r, PARSE_COMPLETE);
    assert.equal(Buffer.concat(sink.body).toString(), i === 1 ? '' : 'abc');
    assert.equal(sink.contentLength, i === 1 ? 0 : 3);
  }
});

test('EOF: completes a close-delimited body, reports truncation otherwise', () => {
  const sink = new Sink();
  const parser = new ResponseParser(sink, 1024);
  parser.reset(false);
  assert.equal(parser.execute(Buffer.from('HTTP/1.1 200 OK\r\n\r\nabc'), 0), PARSE_NEED_MORE);
  assert.equal(parser.keepAlive, false);
  assert.equal(parser.finishEof(), PARSE_COMPLETE);

  parser.reset(false);
  assert.equal(parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc'), 0), PARSE_NEED_MORE);
  assert.equal(parser.finishEof(), PARSE_ERROR);
  assert.match(parser.error, /before the body was complete/);

  parser.reset(false);
  assert.equal(parser.execute(Buffer.from('HTTP/1.1 200 O'), 0), PARSE_NEED_MORE);
  assert.equal(parser.finishEof(), PARSE_ERROR);
  assert.equal(parser.anyBytes, true);
});

test('head size limit counts bytes across chunks', () => {
  const sink = new Sink();
  const parser = new ResponseParser(sink, 120);
  parser.reset(false);
  assert.equal(parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nX-A: ' + 'a'.repeat(40)), 0), PARSE_NEED_MORE);
  assert.equal(parser.execute(Buffer.from('b'.repeat(40)), 0), PARSE_NEED_MORE);
  assert.equal(parser.execute(Buffer.from('c'.repeat(40)), 0), PARSE_ERROR);
  assert.match(parser.error, /too large/);
});
