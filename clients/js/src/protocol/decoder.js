// The incremental decoder of server output (sans-IO): bytes in, frames out. It is fed whatever
// the transport delivers (TCP chunks, WebSocket messages), split anywhere, even inside a
// multi-byte character, and frames control lines and their sized bodies.

import { EsdbError } from '../errors.js';
import { MAX_REPLY_BODY_BYTES, MAX_REPLY_LINE_BYTES } from './limits.js';

const LF = 0x0a;
const CR = 0x0d;
const INITIAL_BUFFER_BYTES = 64 * 1024;

/**
 * Where a sized reply's byte count is, by operation: the index of the argument after the
 * operation name, and how many arguments the line has. Every other line has no body.
 */
const SIZED_REPLIES = Object.freeze({
  EVENTS: { args: 2, sizeAt: 1 },
  APPENDEDMULTI: { args: 2, sizeAt: 1 },
  STREAMS: { args: 2, sizeAt: 1 },
  SNAPSHOTS: { args: 2, sizeAt: 1 },
  SUBS: { args: 2, sizeAt: 1 },
  SNAPSHOT: { args: 3, sizeAt: 2 },
  AGG: { args: 3, sizeAt: 2 },
  EVENT: { args: 5, sizeAt: 4 },
  HELP: { args: 1, sizeAt: 0 },
  STATS: { args: 1, sizeAt: 0 },
  SUBINFO: { args: 1, sizeAt: 0 },
  CLUSTER: { args: 1, sizeAt: 0 },
});

const utf8 = new TextDecoder('utf-8', { fatal: false });
const utf8Encoder = new TextEncoder();

function badReply(message) {
  return new EsdbError('bad_reply', message);
}

/**
 * One frame of server output.
 * - `op`: the operation (`INFO`, `+OK`, `-ERR`, `EVENTS`, `EVENT`, …)
 * - `line`: the control line as sent, without its line break
 * - `args`: the space-separated words after `op` (for `INFO` and `-ERR`, see `rest`)
 * - `rest`: the line after `op` and one space (the JSON of INFO, the code and message of -ERR)
 * - `body`: the sized body's bytes, or null
 */
export class Frame {
  constructor(op, line, rest, body) {
    this.op = op;
    this.line = line;
    this.rest = rest;
    this.body = body;
  }

  get args() {
    return this.rest === '' ? [] : this.rest.split(' ');
  }

  /** The body as text (UTF-8). */
  bodyText() {
    return this.body === null ? '' : utf8.decode(this.body);
  }

  /** The body parsed as JSON. */
  bodyJson() {
    try {
      return JSON.parse(this.bodyText());
    } catch (error) {
      throw new EsdbError('bad_reply', `${this.op} body is not JSON: ${error.message}`, {
        cause: error,
      });
    }
  }
}

export class Decoder {
  /**
   * @param {{maxLineBytes?: number, maxBodyBytes?: number}} [limits]
   */
  constructor(limits = {}) {
    this.maxLineBytes = limits.maxLineBytes ?? MAX_REPLY_LINE_BYTES;
    this.maxBodyBytes = limits.maxBodyBytes ?? MAX_REPLY_BODY_BYTES;
    this.buffer = new Uint8Array(INITIAL_BUFFER_BYTES);
    this.start = 0;
    this.end = 0;
    // Where the search for the next LF resumes, so a long line fed in pieces is scanned once.
    this.scanFrom = 0;
    // A control line whose body has not fully arrived yet.
    this.waiting = null;
  }

  /** Bytes received but not yet part of a complete frame. */
  get buffered() {
    return this.end - this.start;
  }

  /**
   * Feeds bytes (or a string, taken as UTF-8) and returns the frames they complete.
   * @param {Uint8Array | ArrayBuffer | string} chunk
   * @returns {Frame[]}
   */
  push(chunk) {
    const bytes =
      typeof chunk === 'string'
        ? utf8Encoder.encode(chunk)
        : chunk instanceof Uint8Array
          ? chunk
          : new Uint8Array(chunk);
    this.#append(bytes);
    const frames = [];
    for (;;) {
      const frame = this.waiting === null ? this.#nextLine() : this.#nextBody();
      if (frame === null) break;
      if (frame !== undefined) frames.push(frame);
    }
    return frames;
  }

  #append(bytes) {
    if (bytes.length === 0) return;
    if (this.end + bytes.length > this.buffer.length) {
      const live = this.end - this.start;
      const needed = live + bytes.length;
      if (needed <= this.buffer.length && this.start > 0) {
        this.buffer.copyWithin(0, this.start, this.end);
      } else {
        let size = this.buffer.length;
        while (size < needed) size *= 2;
        const grown = new Uint8Array(size);
        grown.set(this.buffer.subarray(this.start, this.end));
        this.buffer = grown;
      }
      this.scanFrom -= this.start;
      this.start = 0;
      this.end = live;
    }
    this.buffer.set(bytes, this.end);
    this.end += bytes.length;
  }

  /** The next control line's frame, undefined for a blank line, null when incomplete. */
  #nextLine() {
    const from = Math.max(this.scanFrom, this.start);
    const lf = this.buffer.subarray(from, this.end).indexOf(LF);
    if (lf < 0) {
      this.scanFrom = this.end;
      if (this.end - this.start > this.maxLineBytes) {
        throw badReply(`reply line longer than ${this.maxLineBytes} bytes`);
      }
      return null;
    }
    const lineEnd = from + lf;
    const textEnd = lineEnd > this.start && this.buffer[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
    if (textEnd - this.start > this.maxLineBytes) {
      throw badReply(`reply line longer than ${this.maxLineBytes} bytes`);
    }
    const line = utf8.decode(this.buffer.subarray(this.start, textEnd));
    this.start = lineEnd + 1;
    this.scanFrom = this.start;
    this.#compactIfEmpty();
    if (line === '') return undefined;
    const space = line.indexOf(' ');
    const op = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? '' : line.slice(space + 1);
    const sized = SIZED_REPLIES[op];
    if (sized === undefined) return new Frame(op, line, rest, null);
    const args = rest === '' ? [] : rest.split(' ');
    if (args.length !== sized.args) {
      throw badReply(`${op} reply needs ${sized.args} arguments: ${JSON.stringify(line)}`);
    }
    const size = args[sized.sizeAt];
    if (!/^[0-9]{1,10}$/.test(size) || Number(size) > this.maxBodyBytes) {
      throw badReply(`${op} reply has a bad or too large byte count: ${JSON.stringify(line)}`);
    }
    this.waiting = { op, line, rest, size: Number(size) };
    return this.#nextBody();
  }

  /** The waiting line's frame once its body and line break are in, else null. */
  #nextBody() {
    const { op, line, rest, size } = this.waiting;
    const available = this.end - this.start;
    if (available < size + 1) return null;
    const after = this.start + size;
    let terminator;
    if (this.buffer[after] === LF) {
      terminator = 1;
    } else if (this.buffer[after] === CR) {
      if (available < size + 2) return null;
      if (this.buffer[after + 1] !== LF) throw badReply(`${op} body is not followed by CRLF`);
      terminator = 2;
    } else {
      throw badReply(`${op} body is not followed by CRLF`);
    }
    const body = this.buffer.slice(this.start, after);
    this.start = after + terminator;
    this.scanFrom = this.start;
    this.waiting = null;
    this.#compactIfEmpty();
    return new Frame(op, line, rest, body);
  }

  #compactIfEmpty() {
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
      this.scanFrom = 0;
      // A body may have grown the buffer a lot; do not keep that much per idle connection.
      if (this.buffer.length > INITIAL_BUFFER_BYTES * 4) {
        this.buffer = new Uint8Array(INITIAL_BUFFER_BYTES);
      }
    }
  }
}
