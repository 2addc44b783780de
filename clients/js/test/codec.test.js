// The sans-IO codec: the decoder frames replies however the bytes are split, and the encoder
// refuses what would break framing before anything is sent.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Decoder, Encoder, EsdbError, Limits, UnreadableEventError, utf8Length } from '../src/index.js';
import { toEvent, unreadable } from '../src/protocol/replies.js';
import { positionList } from '../src/protocol/encoder.js';
import { parseAddress } from '../src/transport/address.js';
import { backoffDelayMs } from '../src/index.js';

const record = '{"event_id":"1b4e28ba-2fa1-41d2-883f-0016d3cca427","event_type":"Ünïcödé","data":"日本 €"}';
const recordBytes = Buffer.byteLength(record);
const stream = [
  'INFO {"proto":1,"max_payload":10}\r\n',
  '+OK\r\n',
  `EVENT s1 user-1 0 0 ${recordBytes}\r\n${record}\r\n`,
  'LIVE s1\r\n',
  `EVENTS 1 ${recordBytes + 2}\r\n[${record}]\r\n`,
  "-ERR wrong_expected_version 'stream a: expected version 0, actual 1'\r\n",
  'PING\r\n',
  'HELP 12\r\nline1\r\nline2\r\n',
  '\r\n',
  'APPENDED a 1 2\n',
  'STATS 2\n{}\n',
].join('');
const bytes = Buffer.from(stream, 'utf8');

function summary(frames) {
  return frames.map((frame) => [frame.op, frame.rest, frame.body === null ? null : frame.bodyText()]);
}

test('the decoder frames a reply stream fed whole', () => {
  const frames = new Decoder().push(bytes);
  assert.deepEqual(summary(frames), [
    ['INFO', '{"proto":1,"max_payload":10}', null],
    ['+OK', '', null],
    ['EVENT', `s1 user-1 0 0 ${recordBytes}`, record],
    ['LIVE', 's1', null],
    ['EVENTS', `1 ${recordBytes + 2}`, `[${record}]`],
    ['-ERR', "wrong_expected_version 'stream a: expected version 0, actual 1'", null],
    ['PING', '', null],
    ['HELP', '12', 'line1\r\nline2'],
    ['APPENDED', 'a 1 2', null],
    ['STATS', '2', '{}'],
  ]);
});

test('the decoder gives the same frames for every split of the bytes, even inside characters', () => {
  const whole = summary(new Decoder().push(bytes));
  for (let cut = 1; cut < bytes.length; cut++) {
    const decoder = new Decoder();
    const frames = [...decoder.push(bytes.subarray(0, cut)), ...decoder.push(bytes.subarray(cut))];
    assert.deepEqual(summary(frames), whole, `split at byte ${cut}`);
    assert.equal(decoder.buffered, 0);
  }
  const decoder = new Decoder();
  const frames = [];
  for (let i = 0; i < bytes.length; i++) frames.push(...decoder.push(bytes.subarray(i, i + 1)));
  assert.deepEqual(summary(frames), whole, 'a byte at a time');
});

test('the decoder takes strings (WebSocket text messages) as UTF-8', () => {
  const decoder = new Decoder();
  const frames = [];
  for (let i = 0; i < stream.length; i += 7) frames.push(...decoder.push(stream.slice(i, i + 7)));
  assert.deepEqual(summary(frames), summary(new Decoder().push(bytes)));
});

test('the decoder refuses what it cannot frame', () => {
  const bad = (input, pattern) => {
    assert.throws(
      () => new Decoder({ maxLineBytes: 64 }).push(input),
      (error) => error instanceof EsdbError && error.code === 'bad_reply' && pattern.test(error.message),
    );
  };
  bad('EVENTS 1 2\r\n[]xx\r\n', /not followed by CRLF/);
  bad('EVENTS 2\r\n', /needs 2 arguments/);
  bad('EVENTS 1 abc\r\n', /byte count/);
  bad('EVENTS 1 99999999999\r\n', /byte count/);
  bad(`+OK${'x'.repeat(100)}`, /longer than 64/);
  bad(`-ERR ${'x'.repeat(100)}\r\n`, /longer than 64/);
  // An unknown reply without a body is passed on (newer servers), not an error.
  assert.deepEqual(summary(new Decoder().push('NEWTHING a b\r\n')), [['NEWTHING', 'a b', null]]);
});

test('the decoder does not keep a huge buffer after a large body', () => {
  const decoder = new Decoder();
  const body = 'x'.repeat(2 * 1024 * 1024);
  const frames = decoder.push(`HELP ${body.length}\r\n${body}\r\n`);
  assert.equal(frames[0].bodyText().length, body.length);
  assert.ok(decoder.buffer.length <= 256 * 1024);
});

test('the encoder sizes payloads in UTF-8 bytes and uses the sized form', () => {
  const encoder = new Encoder();
  const text = encoder.append('s-1', 'any', { event_type: 'T', data: 'é😀' });
  const [line, payload] = text.split('\r\n');
  assert.equal(line, `APPEND s-1 any ${Buffer.byteLength(payload)}`);
  assert.ok(text.endsWith('\r\n'));
  assert.equal(utf8Length('é😀a'), Buffer.byteLength('é😀a'));
  assert.equal(utf8Length('\ud800x'), Buffer.byteLength('\ud800x'));
});

test('the encoder refuses words that would split or end the control line', () => {
  const encoder = new Encoder();
  for (const stream of ['a b', 'a\r\nPING', 'a\tb', '', 'a\u00a0b', 'a\u0000']) {
    assert.throws(() => encoder.read(stream, 0, 10, 'forward'), { code: 'invalid_argument' }, JSON.stringify(stream));
  }
  assert.throws(() => encoder.readTypes(['A,B'], 0, 1), { code: 'invalid_argument' });
  assert.throws(() => encoder.read('s', -1, 10, 'forward'), { code: 'invalid_argument' });
  assert.throws(() => encoder.read('s', 0, 10, 'sideways'), { code: 'invalid_argument' });
  assert.throws(() => encoder.append('s', -3, {}), { code: 'invalid_argument' });
  assert.throws(() => encoder.append('s', 'maybe', {}), { code: 'invalid_argument' });
  assert.equal(encoder.append('s', -1, {}).split(' ')[2], '-1');
  assert.throws(() => encoder.read('x'.repeat(5000), 0, 1, 'forward'), { code: 'invalid_argument' });
});

test('the encoder takes its limits from INFO', () => {
  const limits = new Limits();
  const encoder = new Encoder(limits);
  limits.update({ max_payload: 10, max_control_line: 4096, raft: { term: 3 } });
  assert.throws(() => encoder.append('s', 'any', { data: 'more than ten bytes' }), { code: 'payload_too_large' });
  limits.update({ something_new: true });
  assert.equal(limits.maxPayloadBytes, 10);
});

test('positions are compressed into ranges for ACK', () => {
  assert.equal(positionList([5, 1, 2, 3, 7, 8, 3]), '1-3,5,7-8');
  assert.throws(() => positionList([]), { code: 'invalid_argument' });
  assert.throws(() => positionList(Array.from({ length: 1001 }, (_, i) => i * 2)), { code: 'invalid_argument' });
});

test('addresses: tcp, host:port, IPv6, ws', () => {
  assert.deepEqual(parseAddress('127.0.0.1:4350'), { kind: 'tcp', host: '127.0.0.1', port: 4350, text: '127.0.0.1:4350' });
  assert.equal(parseAddress('tcp://localhost:1').host, 'localhost');
  assert.equal(parseAddress('[::1]:4350').host, '::1');
  assert.equal(parseAddress('ws://127.0.0.1:8350/ws').kind, 'ws');
  for (const bad of ['', 'nohost', 'a:99999', 'http://x:1', 'a b:1']) {
    assert.throws(() => parseAddress(bad), { code: 'invalid_argument' }, bad);
  }
});

test('backoff grows exponentially to its cap, with jitter in the upper half', () => {
  const options = { baseMs: 100, maxMs: 30_000 };
  assert.equal(backoffDelayMs(1, { ...options, random: () => 1 }), 100);
  assert.equal(backoffDelayMs(1, { ...options, random: () => 0 }), 50);
  assert.equal(backoffDelayMs(4, { ...options, random: () => 1 }), 800);
  assert.equal(backoffDelayMs(30, { ...options, random: () => 1 }), 30_000);
  assert.equal(backoffDelayMs(30, { ...options, random: () => 0 }), 15_000);
  for (let retry = 1; retry <= 12; retry++) {
    const cap = Math.min(30_000, 100 * 2 ** (retry - 1));
    const delay = backoffDelayMs(retry, options);
    assert.ok(delay >= cap / 2 && delay <= cap, `retry ${retry}: ${delay}`);
  }
});

test('UNREADABLE frames decode with their fields; the reason may hold quotes, the stream too', () => {
  const line = "UNREADABLE s1 o'neil 3 17 'record at position 17: bad ' quote at line 1 column 9'";
  const frames = new Decoder().push(`${line}\r\nLIVE s1\r\n`);
  assert.deepEqual(frames.map((frame) => frame.op), ['UNREADABLE', 'LIVE']);
  assert.equal(frames[0].body, null);
  assert.deepEqual(unreadable(frames[0]), {
    sid: 's1',
    streamId: "o'neil",
    version: 3,
    position: 17,
    reason: "record at position 17: bad ' quote at line 1 column 9",
  });
  for (const bad of ['UNREADABLE s1 user-1 3', "UNREADABLE s1 user-1 x 17 'r'"]) {
    const [frame] = new Decoder().push(`${bad}\r\n`);
    assert.throws(() => unreadable(frame), (error) => error instanceof EsdbError && error.code === 'bad_reply');
  }
  const error = new UnreadableEventError(unreadable(frames[0]));
  assert.equal(error.code, 'unreadable_event');
  assert.equal(error.retryable, false);
  assert.equal(error.closesConnection, false);
  assert.match(error.message, /o'neil@3 \(position 17\)/);
});

test('parked records carry parkedReason; other records do not', () => {
  const parked = toEvent({ parked_reason: 'unreadable: record at position 4: …', event_id: 'e', position: 4 });
  assert.equal(parked.parkedReason, 'unreadable: record at position 4: …');
  assert.equal(parked.position, 4);
  assert.equal('parkedReason' in toEvent({ event_id: 'e', position: 1 }), false);
});
