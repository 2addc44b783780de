// Request encoding (sans-IO): each function returns one request as the text to send, control
// line and sized payload with their CRLFs. Arguments are checked only as far as framing needs
// (a word must not hold whitespace or control characters, or it would split or end the line);
// the server checks the rest and answers -ERR.

import { invalidArgument, EsdbError } from '../errors.js';
import {
  DEFAULT_MAX_CONTROL_LINE_BYTES,
  DEFAULT_MAX_PAYLOAD_BYTES,
  MAX_ACK_ITEMS,
} from './limits.js';

const CRLF = '\r\n';
// Whitespace (any Unicode space, as the server splits on ASCII ones and rejects the others in
// ids) and control characters.
const NOT_A_WORD = /[\s\p{Cc}]/u;

/** UTF-8 length of a string, without encoding it. */
export function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/** Checks that `value` can be sent as one word of a control line. */
export function word(what, value) {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalidArgument(`${what} must be a non-empty string, got ${describe(value)}`);
  }
  if (NOT_A_WORD.test(value)) {
    throw invalidArgument(`${what} must not contain whitespace or control characters: ${JSON.stringify(value)}`);
  }
  return value;
}

/** A non-negative integer argument (versions, positions, counts). */
export function natural(what, value) {
  if (typeof value === 'bigint' && value >= 0n) return value.toString();
  if (!Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(`${what} must be a non-negative integer, got ${describe(value)}`);
  }
  return String(value);
}

function describe(value) {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** The wire form of an expected version: any, no_stream, exists, a version n ≥ 0 (or the seed's -1, -2, -4). */
export function expectedVersion(value) {
  if (value === 'any' || value === 'no_stream' || value === 'exists' || value === 'stream_exists') {
    return value;
  }
  if (value === -1 || value === -2 || value === -4) return String(value);
  if ((typeof value === 'bigint' && value >= 0n) || (Number.isSafeInteger(value) && value >= 0)) {
    return String(value);
  }
  throw invalidArgument(
    `expected version must be 'any', 'no_stream', 'exists' or a version >= 0, got ${describe(value)}`,
  );
}

/** Sizes and limits the encoder enforces; updated from the server's INFO. */
export class Limits {
  constructor() {
    this.maxControlLineBytes = DEFAULT_MAX_CONTROL_LINE_BYTES;
    this.maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES;
  }

  /** Takes the limits an INFO announces (ignoring what it does not carry). */
  update(info) {
    if (Number.isSafeInteger(info?.max_control_line)) this.maxControlLineBytes = info.max_control_line;
    if (Number.isSafeInteger(info?.max_payload)) this.maxPayloadBytes = info.max_payload;
  }
}

/** Builds request text, checked against `limits`. */
export class Encoder {
  /** @param {Limits} [limits] */
  constructor(limits = new Limits()) {
    this.limits = limits;
  }

  /** A control line of words (each checked by the caller), without payload. */
  line(...words) {
    const line = words.join(' ');
    const bytes = utf8Length(line) + CRLF.length;
    if (bytes > this.limits.maxControlLineBytes) {
      throw invalidArgument(
        `request line of ${bytes} bytes exceeds max_control_line ${this.limits.maxControlLineBytes}`,
      );
    }
    return line + CRLF;
  }

  /** A control line ending in the payload's byte count, then the payload. */
  sized(payload, ...words) {
    const size = utf8Length(payload);
    if (size > this.limits.maxPayloadBytes) {
      throw new EsdbError(
        'payload_too_large',
        `payload of ${size} bytes exceeds max_payload ${this.limits.maxPayloadBytes} (not sent)`,
      );
    }
    return this.line(...words, String(size)) + payload + CRLF;
  }

  connect(options) {
    return this.line('CONNECT', json('CONNECT options', options));
  }

  ping() {
    return this.line('PING');
  }

  pong() {
    return this.line('PONG');
  }

  use(store) {
    return this.line('USE', word('store', store));
  }

  append(stream, expected, events) {
    return this.sized(json('events', events), 'APPEND', word('stream', stream), expectedVersion(expected));
  }

  read(stream, from, count, direction) {
    const start = from === 'end' ? 'end' : natural('from', from);
    return this.line('READ', word('stream', stream), start, natural('count', count), direct(direction));
  }

  readAll(from, count, direction) {
    const start = from === 'end' ? 'end' : natural('from', from);
    return this.line('READALL', start, natural('count', count), direct(direction));
  }

  readTypes(types, from, count) {
    return this.line('READTYPES', typeList(types), natural('from', from), natural('count', count));
  }

  readTags(tags, from, count) {
    return this.line('READTAGS', tagList(tags), natural('from', from), natural('count', count));
  }

  appendMulti(body) {
    return this.sized(json('APPENDMULTI body', body), 'APPENDMULTI');
  }

  version(stream) {
    return this.line('VERSION', word('stream', stream));
  }

  exists(stream) {
    return this.line('EXISTS', word('stream', stream));
  }

  streams(after, count) {
    const words = ['STREAMS', after === undefined || after === null ? '-' : word('after', after)];
    if (count !== undefined) words.push(natural('count', count));
    return this.line(...words);
  }

  delete(stream, expected) {
    return this.line('DELETE', word('stream', stream), expectedVersion(expected));
  }

  snapSave(stream, version, payload) {
    return this.sized(json('snapshot', payload), 'SNAP', 'SAVE', word('stream', stream), natural('version', version));
  }

  snapLoad(stream, version) {
    const words = ['SNAP', 'LOAD', word('stream', stream)];
    if (version !== undefined) words.push(natural('version', version));
    return this.line(...words);
  }

  snapList(stream, from, count) {
    return this.line('SNAP', 'LIST', word('stream', stream), natural('from', from), natural('count', count));
  }

  snapDelete(stream, version) {
    const words = ['SNAP', 'DELETE', word('stream', stream)];
    if (version !== undefined) words.push(natural('version', version));
    return this.line(...words);
  }

  snapExists(stream, version) {
    const words = ['SNAP', 'EXISTS', word('stream', stream)];
    if (version !== undefined) words.push(natural('version', version));
    return this.line(...words);
  }

  agg(stream, { fromSnapshot = false, order = 'foldl', raw = false } = {}) {
    if (order !== 'foldl' && order !== 'foldr') {
      throw invalidArgument(`order must be 'foldl' or 'foldr', got ${describe(order)}`);
    }
    const words = ['AGG', word('stream', stream)];
    if (fromSnapshot) words.push('from_snapshot');
    if (order === 'foldr') words.push('foldr');
    if (raw) words.push('raw');
    return this.line(...words);
  }

  help() {
    return this.line('HELP');
  }

  stats() {
    return this.line('STATS');
  }

  /** The full form of SUB: options as JSON (wire names). */
  sub(sid, options) {
    return this.sized(json('subscription options', options), 'SUB', word('sid', sid));
  }

  unsub(sid) {
    return this.line('UNSUB', word('sid', sid));
  }

  ack(sid, positions) {
    return this.line('ACK', word('sid', sid), positionList(positions));
  }

  nack(sid, action, positions) {
    if (action !== 'retry' && action !== 'skip' && action !== 'park') {
      throw invalidArgument(`NACK action must be 'retry', 'skip' or 'park', got ${describe(action)}`);
    }
    return this.line('NACK', word('sid', sid), action, positionList(positions));
  }

  psub(...words) {
    return this.line('PSUB', ...words);
  }
}

function direct(direction = 'forward') {
  if (direction !== 'forward' && direction !== 'backward') {
    throw invalidArgument(`direction must be 'forward' or 'backward', got ${describe(direction)}`);
  }
  return direction;
}

/** `A,B,C` from a type or a list of types. */
export function typeList(types) {
  const list = typeof types === 'string' ? [types] : types;
  if (!Array.isArray(list) || list.length === 0) {
    throw invalidArgument('event types must be a type or a non-empty array of types');
  }
  for (const type of list) {
    word('event type', type);
    if (type.includes(',')) throw invalidArgument(`event types cannot contain commas: ${JSON.stringify(type)}`);
  }
  return list.join(',');
}

export function tagList(tags) {
  const list = typeof tags === 'string' ? [tags] : tags;
  if (!Array.isArray(list) || list.length === 0) {
    throw invalidArgument('tags must be a tag or a non-empty array of tags');
  }
  for (const tag of list) {
    word('tag', tag);
    if (tag.includes(',')) throw invalidArgument(`tags cannot contain commas: ${JSON.stringify(tag)}`);
  }
  return list.join(',');
}

/** Positions compressed into ACK's list form: single positions and `A-B` ranges. */
export function positionList(positions) {
  if (!Array.isArray(positions) || positions.length === 0) {
    throw invalidArgument('acknowledge at least one position');
  }
  const sorted = [...new Set(positions.map((p) => Number(natural('position', p))))].sort((a, b) => a - b);
  const items = [];
  let first = sorted[0];
  let last = first;
  for (const position of sorted.slice(1)) {
    if (position === last + 1) {
      last = position;
      continue;
    }
    items.push(first === last ? String(first) : `${first}-${last}`);
    first = last = position;
  }
  items.push(first === last ? String(first) : `${first}-${last}`);
  if (items.length > MAX_ACK_ITEMS) {
    throw invalidArgument(`at most ${MAX_ACK_ITEMS} positions or ranges per ACK/NACK, got ${items.length}`);
  }
  return items.join(',');
}

// JSON.stringify refuses bigints; they are written as the integers they are (the fold returns
// bigints for exact sums beyond 2^53), through a marker string no JSON text otherwise holds.
const BIGINT_MARKER = '\u0000esdb-bigint:';
const BIGINT_MARKED = /"\\u0000esdb-bigint:(-?[0-9]+)"/g;

function bigintReplacer(_key, value) {
  return typeof value === 'bigint' ? BIGINT_MARKER + value.toString() : value;
}

/** JSON text of a value, bigints as integers. */
export function stringify(value) {
  const text = JSON.stringify(value, bigintReplacer);
  return text === undefined || !text.includes('esdb-bigint:') ? text : text.replace(BIGINT_MARKED, '$1');
}

function json(what, value) {
  let text;
  try {
    text = stringify(value);
  } catch (error) {
    throw new EsdbError('invalid_argument', `${what} cannot be serialised as JSON: ${error.message}`, {
      cause: error,
    });
  }
  if (text === undefined) throw invalidArgument(`${what} cannot be serialised as JSON`);
  return text;
}
