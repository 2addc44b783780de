// A subscription as an async iterator of events.
//
// Backpressure, per subscription: a catch-up subscription whose consumer falls `bufferSize`
// events behind is paused with UNSUB (events still in flight for it are dropped), and
// subscribed again from its last buffered position + 1 once the consumer has taken half of
// its buffer, so a slow consumer slows only itself and never the connection it shares. A
// persistent subscription is bounded by the server instead: at most `maxInFlight`
// unacknowledged events are delivered to it.
//
// Reconnecting: a catch-up subscription subscribes again from its last buffered position + 1
// (no gap, no duplicate); a persistent one subscribes again by name and the server resumes
// from its checkpoint, redelivering what was not acknowledged (events buffered but not yet
// taken are dropped, as they come again).
//
// Unreadable events: an `eventPayload` catch-up subscription that meets a stored record the
// server cannot parse gets `UNREADABLE` in place of its EVENT. It takes the event's place in
// the buffer, and `next()` rejects with an UnreadableEventError there; the subscription goes
// on, and a resubscribe starts after it, as after an event.

import { EsdbError, UnreadableEventError, invalidArgument } from './errors.js';
import { typeList, word, natural } from './protocol/encoder.js';
import { toEvent, int, unreadable } from './protocol/replies.js';

/** Events a catch-up subscription buffers before it is paused. */
export const DEFAULT_SUBSCRIPTION_BUFFER_EVENTS = 1024;

const LIVE = Symbol('live');
const SELECTOR_KEYS = { stream: 'stream', eventType: 'event_type', eventPattern: 'event_pattern', eventPayload: 'event_payload' };

/** The wire form `{type, selector}` of a selector given as `{stream}`, `{eventType}`, `{eventPattern}` or `{eventPayload}`. */
export function wireSelector(selector) {
  if (selector === null || typeof selector !== 'object') {
    throw invalidArgument('a selector is an object: {stream}, {eventType}, {eventPattern} or {eventPayload}');
  }
  if (typeof selector.type === 'string' && 'selector' in selector) {
    return { type: selector.type, selector: selector.selector };
  }
  const keys = Object.keys(selector);
  if (keys.length !== 1 || !(keys[0] in SELECTOR_KEYS)) {
    throw invalidArgument(
      `a selector has exactly one of stream, eventType, eventPattern, eventPayload; got ${JSON.stringify(keys)}`,
    );
  }
  const [key] = keys;
  const value = selector[key];
  switch (key) {
    case 'stream':
      return { type: 'stream', selector: word('stream', value) };
    case 'eventType':
      return { type: 'event_type', selector: typeList(value) };
    case 'eventPattern':
      return { type: 'event_pattern', selector: word('event pattern', value) };
    default:
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw invalidArgument('an eventPayload selector is an object');
      }
      return { type: 'event_payload', selector: value };
  }
}

function wireStart(start) {
  if (start === 'origin' || start === 'end') return start;
  return Number(natural('start', start));
}

export class Subscription {
  #client;
  #wire;
  #options;
  #start;
  #queue = [];
  #head = 0;
  // Pending next() calls (one, under for await), oldest first.
  #waiters = [];
  #error = null;
  #ended = false;
  #state = 'subscribing';
  #sid = null;
  #connection = null;
  #lastPosition = null;
  #liveQueued = false;
  #ready;
  #resolveReady;
  #rejectReady;
  #resolveLive;
  #lastYielded = null;
  #ackBatch = null;
  // ACK/NACK lines sent and not yet answered.
  #settling = new Set();

  /**
   * @param {object} client the Client (its internal subscription interface)
   * @param {{type: string, selector: unknown}} wire
   * @param {object} options
   */
  constructor(client, wire, options) {
    this.#client = client;
    this.#wire = wire;
    this.#options = options;
    this.#start = wireStart(options.start ?? 'origin');
    /** The persistent subscription's name, or null for a catch-up one. */
    this.name = options.name ?? null;
    this.bufferSize = options.bufferSize ?? DEFAULT_SUBSCRIPTION_BUFFER_EVENTS;
    if (!Number.isSafeInteger(this.bufferSize) || this.bufferSize < 2) {
      throw invalidArgument(`bufferSize must be an integer >= 2, got ${this.bufferSize}`);
    }
    this.autoAck = options.autoAck === true;
    /** Whether the consumer has taken every historical event (catch-up only). */
    this.isLive = false;
    /** Resolves when the consumer has taken every historical event (catch-up only). */
    this.live = new Promise((resolve) => {
      this.#resolveLive = resolve;
    });
    this.live.catch(() => {});
    /** Counters, for operators and tests. */
    this.stats = { delivered: 0, dropped: 0, pauses: 0, subscribes: 0, unreadable: 0 };
    this.#ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.#ready.catch(() => {});
  }

  /** Events received and not yet taken by the consumer. */
  get buffered() {
    return this.#bufferedCount();
  }

  get persistent() {
    return this.name !== null;
  }

  /** Resolves once the server has accepted the subscription the first time. */
  ready() {
    return this.#ready;
  }

  /** The SUB options (wire names) for the next subscribe. */
  #subOptions() {
    const options = { type: this.#wire.type, selector: this.#wire.selector };
    if (this.persistent) {
      options.name = this.name;
      options.start = this.#start;
      if (this.#options.maxInFlight !== undefined) options.max_in_flight = this.#options.maxInFlight;
      if (this.#options.ackTimeoutMs !== undefined) options.ack_timeout_ms = this.#options.ackTimeoutMs;
      if (this.#options.maxRetries !== undefined) options.max_retries = this.#options.maxRetries;
    } else {
      options.start = this.#lastPosition === null ? this.#start : this.#lastPosition + 1;
    }
    return options;
  }

  /** Called by the client on a (new) connection: subscribe unless paused or done. */
  _connected(connection) {
    if (this.#ended) return;
    if (this.#state === 'subscribing' || (this.#state === 'paused' && this.#bufferedCount() <= this.bufferSize / 2)) {
      this.#subscribe(connection);
    }
  }

  #subscribe(connection) {
    const sid = this.#client._newSid();
    let text;
    try {
      text = this.#client._encoder.sub(sid, this.#subOptions());
    } catch (error) {
      this.#fail(error);
      return;
    }
    this.#state = 'subscribing';
    this.#sid = sid;
    this.#connection = connection;
    connection.sids.set(sid, this);
    this.stats.subscribes += 1;
    this.#client._sendOn(connection, text, () => undefined).then(
      () => {
        if (this.#sid !== sid) return;
        this.#state = 'active';
        this.#resolveReady(this);
        this.#checkPause();
      },
      (error) => {
        if (this.#sid !== sid) return;
        connection.sids.delete(sid);
        this.#sid = null;
        // A lost connection is not the subscription's failure: it subscribes again on the next.
        if (error instanceof EsdbError && !error.fromServer && error.code === 'connection_lost') return;
        this.#fail(error);
      },
    );
  }

  /** Called by the client with this subscription's EVENT, UNREADABLE or LIVE frame. */
  _push(frame, sid) {
    if (sid !== this.#sid || this.#ended || this.#state === 'pausing' || this.#state === 'paused') {
      this.stats.dropped += 1;
      return;
    }
    if (frame.op === 'LIVE') {
      if (!this.#liveQueued && !this.persistent) {
        this.#liveQueued = true;
        this.#enqueue(LIVE);
      }
      return;
    }
    const report = frame.op === 'UNREADABLE' ? unreadable(frame) : null;
    const position = report === null ? int(frame, 3) : report.position;
    // History and live meet without overlap on the server; this guards a resubscribe too.
    if (!this.persistent && this.#lastPosition !== null && position <= this.#lastPosition) {
      this.stats.dropped += 1;
      return;
    }
    const item = report === null ? toEvent(frame.bodyJson()) : new UnreadableEventError(report);
    if (!this.persistent) this.#lastPosition = position;
    if (report === null) this.stats.delivered += 1;
    else this.stats.unreadable += 1;
    this.#enqueue(item);
    this.#checkPause();
  }

  /** Called by the client when the subscription's connection is gone. */
  _disconnected(connection) {
    if (this.#connection !== connection) return;
    this.#connection = null;
    this.#sid = null;
    if (this.#ended) return;
    if (this.#state === 'pausing' || this.#state === 'paused') {
      this.#state = 'paused';
    } else {
      this.#state = 'subscribing';
    }
    if (this.persistent) {
      // Not acknowledged, so delivered again on the next connection.
      this.#queue = [];
      this.#head = 0;
    }
  }

  /** Called by the client when it gives up reconnecting. */
  _failed(error) {
    this.#fail(error);
  }

  /** Called by the client when it is closed: the iteration ends after what is buffered. */
  _closed() {
    if (this.#ended) return;
    this.#rejectReady(new EsdbError('client_closed', 'the client is closed'));
    this.#finish();
  }

  #bufferedCount() {
    return this.#queue.length - this.#head;
  }

  #enqueue(item) {
    if (this.#waiters.length > 0) {
      if (item === LIVE) {
        // Nothing to hand over yet: the waiter keeps waiting for an event.
        this.#markLive();
        return;
      }
      if (item instanceof UnreadableEventError) {
        this.#waiters.shift().reject(item);
        return;
      }
      this.#lastYielded = item;
      this.#waiters.shift().resolve({ value: item, done: false });
      return;
    }
    this.#queue.push(item);
  }

  #markLive() {
    if (this.isLive) return;
    this.isLive = true;
    this.#resolveLive();
  }

  #checkPause() {
    if (this.persistent || this.#state !== 'active') return;
    if (this.#bufferedCount() < this.bufferSize) return;
    const connection = this.#connection;
    const sid = this.#sid;
    this.#state = 'pausing';
    this.stats.pauses += 1;
    this.#client._sendOn(connection, this.#client._encoder.unsub(sid), () => undefined).then(
      () => {
        connection.sids.delete(sid);
        if (this.#sid !== sid) return;
        this.#sid = null;
        this.#connection = null;
        this.#state = 'paused';
        this.#maybeResume();
      },
      (error) => {
        if (error instanceof EsdbError && error.fromServer) this.#fail(error);
        // Otherwise the connection is gone; _disconnected has marked it paused.
      },
    );
  }

  #maybeResume() {
    if (this.#ended || this.#state !== 'paused' || this.#bufferedCount() > this.bufferSize / 2) return;
    const connection = this.#client._currentConnection();
    if (connection !== null) this.#subscribe(connection);
    // Else the next connection subscribes it (_connected).
  }

  #fail(error) {
    if (this.#ended) return;
    this.#error = error;
    this.#rejectReady(error);
    this.#finish();
  }

  #finish() {
    this.#ended = true;
    this.#state = 'closed';
    this.#client._forget(this);
    if (this.#sid !== null && this.#connection !== null) this.#connection.sids.delete(this.#sid);
    // Waiters exist only while nothing is buffered.
    for (const waiter of this.#waiters.splice(0)) {
      if (this.#error !== null) waiter.reject(this.#error);
      else waiter.resolve({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** The next event; waits for one. Rejects with an UnreadableEventError in place of an event the server could not read, and goes on after it. */
  next() {
    if (this.autoAck && this.#lastYielded !== null && this.persistent) {
      this.ack(this.#lastYielded).catch(() => {});
    }
    this.#lastYielded = null;
    while (this.#head < this.#queue.length) {
      const item = this.#queue[this.#head];
      this.#queue[this.#head] = undefined;
      this.#head += 1;
      if (this.#head === this.#queue.length) {
        this.#queue = [];
        this.#head = 0;
      } else if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      if (item === LIVE) {
        this.#markLive();
        continue;
      }
      this.#maybeResume();
      if (item instanceof UnreadableEventError) return Promise.reject(item);
      this.#lastYielded = item;
      return Promise.resolve({ value: item, done: false });
    }
    this.#maybeResume();
    if (this.#ended) {
      if (this.#error !== null) return Promise.reject(this.#error);
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
  }

  /** Ends the iteration (a `break` out of `for await`): unsubscribes. */
  async return() {
    await this.unsubscribe();
    return { value: undefined, done: true };
  }

  /** Ends the subscription on this connection (a persistent one stays on the server). */
  async unsubscribe() {
    if (this.#ended) return;
    const connection = this.#connection;
    const sid = this.#sid;
    // Acknowledgements made before unsubscribing go out before the UNSUB.
    this.#flushSettlements();
    const subscribed = this.#state === 'active' || this.#state === 'subscribing';
    // What is buffered is not wanted any more.
    this.#queue = [];
    this.#head = 0;
    this.#finish();
    if (connection !== null && sid !== null && subscribed) {
      // The server may apply an UNSUB before an ACK pipelined just ahead of it (the consumer
      // leaves, the ACK then finds nothing in flight), so wait for their replies first.
      if (this.#settling.size > 0) await Promise.all([...this.#settling]);
      try {
        await this.#client._sendOn(connection, this.#client._encoder.unsub(sid), () => undefined);
      } catch (error) {
        // Already gone with its connection, or never accepted: nothing to end.
        if (!(error instanceof EsdbError) || (error.fromServer && error.code !== 'subscription_not_found')) throw error;
      }
    }
  }

  /**
   * Acknowledges events (or positions) of a persistent subscription. Resolves true when the
   * server took it, false when the connection was lost first (the events come again).
   * @param {...(object|number)} items events (with `position`) or positions
   */
  ack(...items) {
    return this.#settle('ACK', null, items);
  }

  /**
   * Retries, skips or parks events (or positions) of a persistent subscription.
   * @param {'retry'|'skip'|'park'} action
   * @param {...(object|number)} items
   */
  nack(action, ...items) {
    return this.#settle('NACK', action, items);
  }

  #settle(op, action, items) {
    if (!this.persistent) {
      return Promise.reject(invalidArgument(`${op} is for persistent subscriptions; this one is catch-up`));
    }
    const positions = items.flat().map((item) => (typeof item === 'object' && item !== null ? item.position : item));
    if (positions.length === 0) return Promise.resolve(true);
    if (action !== null && action !== 'retry' && action !== 'skip' && action !== 'park') {
      return Promise.reject(invalidArgument(`NACK action must be 'retry', 'skip' or 'park', got ${String(action)}`));
    }
    for (const position of positions) {
      if (!Number.isSafeInteger(position) || position < 0) {
        return Promise.reject(invalidArgument(`a position must be a non-negative integer, got ${String(position)}`));
      }
    }
    // Acknowledgements made in one tick go out as one line per kind.
    const key = action === null ? 'ACK' : `NACK ${action}`;
    if (this.#ackBatch === null) {
      this.#ackBatch = new Map();
      queueMicrotask(() => this.#flushSettlements());
    }
    let batch = this.#ackBatch.get(key);
    if (batch === undefined) {
      let resolve;
      let reject;
      const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
      });
      batch = { action, positions: [], promise, resolve, reject };
      this.#ackBatch.set(key, batch);
    }
    batch.positions.push(...positions);
    return batch.promise;
  }

  #flushSettlements() {
    const batches = this.#ackBatch;
    if (batches === null) return;
    this.#ackBatch = null;
    for (const batch of batches.values()) {
      const connection = this.#connection;
      const sid = this.#sid;
      if (connection === null || sid === null) {
        batch.resolve(false);
        continue;
      }
      const sends = [];
      const chunk = 1000;
      try {
        for (let i = 0; i < batch.positions.length; i += chunk) {
          const slice = batch.positions.slice(i, i + chunk);
          const text =
            batch.action === null
              ? this.#client._encoder.ack(sid, slice)
              : this.#client._encoder.nack(sid, batch.action, slice);
          sends.push(this.#client._sendOn(connection, text, () => undefined));
        }
      } catch (error) {
        batch.reject(error);
        continue;
      }
      const settled = Promise.allSettled(sends);
      this.#settling.add(settled);
      settled.then(() => this.#settling.delete(settled));
      Promise.all(sends).then(
        () => batch.resolve(true),
        (error) => {
          if (error instanceof EsdbError && !error.fromServer && error.code === 'connection_lost') batch.resolve(false);
          else batch.reject(error);
        },
      );
    }
  }
}
