// Reply frames → JavaScript values. The wire's snake_case record fields become camelCase
// properties; INFO and STATS stay as the server sends them (their fields grow over time).

import { EsdbError } from '../errors.js';

function bad(message) {
  return new EsdbError('bad_reply', message);
}

/** The EsdbError of a `-ERR <code> '<message>'` frame. */
export function serverError(frame) {
  const rest = frame.rest;
  const space = rest.indexOf(' ');
  const code = space < 0 ? rest : rest.slice(0, space);
  const first = rest.indexOf("'");
  const last = rest.lastIndexOf("'");
  const message = first >= 0 && last > first ? rest.slice(first + 1, last) : rest.slice(code.length + 1);
  return new EsdbError(code || 'internal', message, { fromServer: true });
}

/** An integer argument of a reply line. */
export function int(frame, index) {
  const text = frame.args[index];
  if (text === undefined || !/^-?[0-9]+$/.test(text)) {
    throw bad(`expected an integer at argument ${index + 1} of ${JSON.stringify(frame.line)}`);
  }
  return Number(text);
}

/** Checks the frame is the reply `op`, else throws bad_reply. */
export function expect(frame, op) {
  if (frame.op !== op) throw bad(`expected a ${op} reply, got ${JSON.stringify(frame.line.slice(0, 200))}`);
  return frame;
}

/**
 * @typedef {object} RecordedEvent
 * @property {string} eventId
 * @property {string} eventType
 * @property {string} streamId
 * @property {number} version
 * @property {number} position
 * @property {number} epochUs
 * @property {unknown} data
 * @property {Record<string, unknown>} metadata
 */

/**
 * An event record (wire JSON) as a RecordedEvent. A record of `PSUB PARKED` that was parked for
 * another reason than failed deliveries (an unreadable record) has `"parked_reason"` as its
 * first field: it becomes `parkedReason`.
 */
export function toEvent(raw) {
  const event = {
    eventId: raw.event_id,
    eventType: raw.event_type,
    streamId: raw.stream_id,
    version: raw.version,
    position: raw.position,
    epochUs: raw.epoch_us,
    data: raw.data,
    metadata: raw.metadata,
  };
  if (typeof raw.parked_reason === 'string') event.parkedReason = raw.parked_reason;
  if (Array.isArray(raw.tags)) event.tags = raw.tags;
  return event;
}

/**
 * `UNREADABLE <sid> <stream> <version> <position> '<reason>'` → its fields. The reason is the
 * rest of the line after the position, its quotes taken off (a stream id may hold a `'`).
 */
export function unreadable(frame) {
  const match = /^(\S+) +(\S+) +([0-9]+) +([0-9]+)(?: +(.*))?$/.exec(frame.rest);
  if (match === null) throw bad(`bad UNREADABLE line: ${JSON.stringify(frame.line.slice(0, 200))}`);
  let reason = (match[5] ?? '').trim();
  if (reason.length >= 2 && reason.startsWith("'") && reason.endsWith("'")) reason = reason.slice(1, -1);
  return {
    sid: match[1],
    streamId: match[2],
    version: Number(match[3]),
    position: Number(match[4]),
    reason,
  };
}

export function toSnapshot(raw) {
  return {
    streamId: raw.stream_id,
    version: raw.version,
    data: raw.data,
    metadata: raw.metadata,
    epochUs: raw.epoch_us,
  };
}

export function toSubscriptionInfo(raw) {
  const options = raw.options ?? {};
  return {
    name: raw.name,
    type: raw.type,
    selector: raw.selector,
    options: {
      start: options.start,
      maxInFlight: options.max_in_flight,
      ackTimeoutMs: options.ack_timeout_ms,
      maxRetries: options.max_retries,
    },
    createdEpochUs: raw.created_epoch_us,
    checkpoint: raw.checkpoint,
    parked: raw.parked,
  };
}

/** `EVENTS <count> <#bytes>` → RecordedEvent[]. */
export function events(frame) {
  expect(frame, 'EVENTS');
  const list = frame.bodyJson();
  if (!Array.isArray(list)) throw bad('EVENTS body is not an array');
  return list.map(toEvent);
}

/** `APPENDED <stream> <version> <position>`. */
export function appended(frame) {
  expect(frame, 'APPENDED');
  return { streamId: frame.args[0], version: int(frame, 1), position: int(frame, 2) };
}

/** `APPENDEDMULTI <parts> <#bytes>`: each part's result, in the parts' order. */
export function appendedMulti(frame) {
  const body = expect(frame, 'APPENDEDMULTI').bodyJson();
  if (!Array.isArray(body)) throw bad('APPENDEDMULTI body is not an array');
  return body.map((part) => ({
    streamId: part.stream,
    firstVersion: part.first_version,
    lastVersion: part.last_version,
    firstPosition: part.first_position,
    lastPosition: part.last_position,
  }));
}

export function ok(frame) {
  expect(frame, '+OK');
}

/** `<OP> <name> 1|0` → boolean. */
export function flag(op) {
  return (frame) => int(expect(frame, op), 1) === 1;
}

export function version(frame) {
  return int(expect(frame, 'VERSION'), 1);
}

/** A sized reply whose body is a JSON array (`STREAMS`, `SNAPSHOTS`, `SUBS`). */
export function list(op, map = (x) => x) {
  return (frame) => {
    const body = expect(frame, op).bodyJson();
    if (!Array.isArray(body)) throw bad(`${op} body is not an array`);
    return body.map(map);
  };
}

/** A sized reply whose body is a JSON value (`STATS`, `SUBINFO`). */
export function json(op, map = (x) => x) {
  return (frame) => map(expect(frame, op).bodyJson());
}

export function snapshot(frame) {
  return toSnapshot(expect(frame, 'SNAPSHOT').bodyJson());
}

export function aggregate(frame) {
  expect(frame, 'AGG');
  return { streamId: frame.args[0], version: int(frame, 1), state: frame.bodyJson() };
}

export function help(frame) {
  return expect(frame, 'HELP').bodyText();
}

export function pong(frame) {
  expect(frame, 'PONG');
}
