// The client: one connection at a time to one of a list of servers, shared by every call
// (pipelined: replies come back in request order), reconnecting with backoff when it breaks.
//
// Retry rules: a request is sent again only after a connection failure (no reply came) or a
// reply whose code PROTOCOL.md marks retryable (storage_error, store_full, rate_limited,
// shutting_down, too_many_connections, unavailable); never after any other answer from the store, such as
// wrong_expected_version or stream_not_found. Appends are safe to send again because the
// client gives every event an id, which makes a repeated append idempotent on the server.

import { backoffDelayMs, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, DEFAULT_MAX_RETRIES } from './backoff.js';
import { Connection } from './connection.js';
import { EsdbError, invalidArgument } from './errors.js';
import { PagedIterable } from './iterables.js';
import { Encoder, expectedVersion as expectedVersionWord, Limits, word } from './protocol/encoder.js';
import * as replies from './protocol/replies.js';
import { DEFAULT_MAX_READ_COUNT, MAX_SNAPSHOT_LIST_COUNT } from './protocol/limits.js';
import { Subscription, wireSelector } from './subscription.js';
import { parseAddress } from './transport/index.js';
import { uuidv7 } from './uuid.js';

export const CLIENT_VERSION = '0.1.0';
/** How long opening a connection (and getting its INFO) may take. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Events per page of an iterating read. */
export const DEFAULT_READ_PAGE_SIZE = 1000;
/** Ids per page of an iterating stream listing. */
export const DEFAULT_STREAMS_PAGE_SIZE = 10000;

const EVENT_FIELDS = new Set(['eventType', 'data', 'metadata', 'eventId', 'tags']);

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** An event to append (`{eventType, data, metadata?, eventId?, tags?}`) in its wire form, with an id. */
function toWireEvent(event, index) {
  if (!isPlainObject(event)) throw invalidArgument(`event ${index} must be an object {eventType, data, metadata?, eventId?}`);
  for (const key of Object.keys(event)) {
    if (!EVENT_FIELDS.has(key)) {
      throw invalidArgument(`event ${index}: unknown field ${key} (use eventType, data, metadata, eventId, tags)`);
    }
  }
  if (typeof event.eventType !== 'string') throw invalidArgument(`event ${index}: eventType must be a string`);
  if (event.data === undefined) throw invalidArgument(`event ${index}: data is required (any JSON value)`);
  if (event.metadata !== undefined && !isPlainObject(event.metadata)) {
    throw invalidArgument(`event ${index}: metadata must be an object`);
  }
  if (event.eventId !== undefined && typeof event.eventId !== 'string') {
    throw invalidArgument(`event ${index}: eventId must be a UUID string`);
  }
  const wire = { event_type: event.eventType, data: event.data };
  if (event.metadata !== undefined) wire.metadata = event.metadata;
  wire.event_id = event.eventId ?? uuidv7();
  if (event.tags !== undefined) {
    if (!Array.isArray(event.tags) || event.tags.some((tag) => typeof tag !== 'string')) {
      throw invalidArgument(`event ${index}: tags must be an array of strings`);
    }
    if (event.tags.length > 0) wire.tags = event.tags;
  }
  return wire;
}

function positiveCount(what, value) {
  if (!Number.isSafeInteger(value) || value < 1) throw invalidArgument(`${what} must be an integer >= 1, got ${value}`);
  return value;
}

function limitOf(value) {
  if (value === undefined || value === Infinity) return Infinity;
  if (!Number.isSafeInteger(value) || value < 0) throw invalidArgument(`limit must be an integer >= 0, got ${value}`);
  return value;
}

/**
 * Most server addresses a client learns from greetings (INFO `cluster.client_urls`), so a
 * hostile or misconfigured server cannot grow a client's list without bound.
 */
export const MAX_LEARNED_SERVERS = 64;

export class Client extends EventTarget {
  #servers;
  #givenServers;
  #nextServer = 0;
  #options;
  #connection = null;
  #connecting = null;
  #queue = [];
  #subscriptions = new Set();
  #store;
  #closed = false;
  #sidCounter = 0;
  #backoffTimer = null;
  #wakeBackoff = null;

  /**
   * @param {string | string[]} servers addresses: `host:port` / `tcp://host:port` (Node), `ws://host:port/ws`
   * @param {object} [options] see index.d.ts (ClientOptions)
   */
  constructor(servers, options = {}) {
    super();
    const list = typeof servers === 'string' ? [servers] : servers;
    if (!Array.isArray(list) || list.length === 0) throw invalidArgument('give at least one server address');
    for (const address of list) parseAddress(address);
    this.#servers = [...list];
    this.#givenServers = list.length;
    this.#options = {
      name: options.name ?? 'esdb-js',
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      backoffBaseMs: options.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS,
      backoffMaxMs: options.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS,
      maxRetries: options.maxRetries ?? DEFAULT_MAX_RETRIES,
      WebSocket: options.WebSocket,
      // Credentials for CONNECT (user and password, or token) and TLS options (Node).
      user: options.user,
      password: options.password,
      token: options.token,
      tls: options.tls,
    };
    this.#store = options.store === undefined ? null : word('store', options.store);
    this.limits = new Limits();
    this._encoder = new Encoder(this.limits);
    /** The INFO of the current (or last) connection, as the server sent it. */
    this.info = null;
    this.snapshots = new Snapshots(this);
    this.persistent = new PersistentSubscriptions(this);
  }

  /** Connects to the first reachable server of `servers`. */
  static async connect(servers, options) {
    const client = new Client(servers, options);
    try {
      await client.#ensureConnected();
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  /** The address of the current connection, or null while disconnected. */
  get address() {
    return this.#connection?.address ?? null;
  }

  /** The store requests go to (null: the server's default). */
  get store() {
    return this.#store;
  }

  get closed() {
    return this.#closed;
  }

  // ---- requests ----

  /** @internal Sends a request; resolves with `parse(replyFrame)`. */
  _call(text, parse, { retry = true } = {}) {
    return new Promise((resolve, reject) => {
      this.#dispatch({ text, parse, retry, attempts: 0, resolve, reject });
    });
  }

  /** @internal Sends on one connection only (subscription traffic): fails if it is gone. */
  _sendOn(connection, text, parse) {
    return new Promise((resolve, reject) => {
      const request = { text, parse, retry: false, attempts: 0, resolve, reject };
      if (this.#closed) reject(new EsdbError('client_closed', 'the client is closed'));
      else if (connection === null || connection !== this.#connection || !connection.send(request)) {
        reject(new EsdbError('connection_lost', 'the subscription\'s connection is gone'));
      }
    });
  }

  /** @internal */
  _newSid() {
    this.#sidCounter += 1;
    return `s${this.#sidCounter}`;
  }

  /** @internal */
  _currentConnection() {
    return this.#connection;
  }

  /** @internal */
  _forget(subscription) {
    this.#subscriptions.delete(subscription);
  }

  #dispatch(request) {
    if (this.#closed) {
      request.reject(new EsdbError('client_closed', 'the client is closed'));
      return;
    }
    const connection = this.#connection;
    if (connection !== null && connection.send(request)) return;
    this.#queue.push(request);
    this.#ensureConnected().catch(() => {});
  }

  #onReply(connection, request, frame) {
    if (frame.op === '-ERR') {
      const error = replies.serverError(frame);
      if (error.retryable && request.retry && request.attempts <= this.#options.maxRetries && !this.#closed) {
        const delay = backoffDelayMs(request.attempts, this.#backoff());
        setTimeout(() => this.#dispatch(request), delay);
        return;
      }
      request.reject(error);
      return;
    }
    let value;
    try {
      value = request.parse(frame);
    } catch (error) {
      request.reject(error);
      return;
    }
    request.resolve(value);
  }

  #onPush(connection, frame) {
    const sid = frame.args[0];
    const subscription = connection.sids.get(sid);
    if (subscription !== undefined) subscription._push(frame, sid);
  }

  #onClose(connection, error) {
    const current = connection === this.#connection;
    if (current) this.#connection = null;
    const requeue = [];
    for (const request of connection.pending()) {
      if (this.#closed) request.reject(new EsdbError('client_closed', 'the client is closed'));
      else if (request.retry && request.attempts <= this.#options.maxRetries) requeue.push(request);
      else {
        request.reject(
          new EsdbError('connection_lost', `connection to ${connection.address} lost before the reply: ${error.message}`, {
            cause: error,
          }),
        );
      }
    }
    this.#queue.unshift(...requeue);
    if (!current) return;
    for (const subscription of this.#subscriptions) subscription._disconnected(connection);
    this.#emit('disconnect', { address: connection.address, error });
    if (!this.#closed && (this.#queue.length > 0 || this.#subscriptions.size > 0)) {
      this.#ensureConnected().catch(() => {});
    }
  }

  // ---- connecting ----

  #backoff() {
    return { baseMs: this.#options.backoffBaseMs, maxMs: this.#options.backoffMaxMs };
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #ensureConnected() {
    if (this.#connection !== null) return Promise.resolve();
    if (this.#connecting === null) {
      this.#connecting = this.#connectCycle().finally(() => {
        this.#connecting = null;
      });
    }
    return this.#connecting;
  }

  async #connectCycle() {
    let failures = 0;
    let lastError = null;
    while (!this.#closed) {
      if (failures > 0) {
        if (failures > this.#options.maxRetries) break;
        const delayMs = backoffDelayMs(failures, this.#backoff());
        this.#emit('reconnecting', { retry: failures, delayMs, error: lastError });
        await new Promise((resolve) => {
          this.#wakeBackoff = resolve;
          this.#backoffTimer = setTimeout(resolve, delayMs);
        });
        this.#backoffTimer = null;
        this.#wakeBackoff = null;
        if (this.#closed) break;
      }
      const address = this.#servers[this.#nextServer];
      this.#nextServer = (this.#nextServer + 1) % this.#servers.length;
      this.#emit('connecting', { address });
      try {
        const connection = await this.#open(address);
        if (this.#closed) {
          connection.close();
          break;
        }
        this.#adopt(connection);
        return;
      } catch (error) {
        lastError = error;
        // The store itself refused (store_not_found on CONNECT), or this environment cannot
        // open such a connection at all: trying again will not change it.
        if (error instanceof EsdbError && !error.retryable && (error.fromServer || error.code === 'unsupported')) {
          this.#giveUp(error);
          throw error;
        }
        failures += 1;
      }
    }
    const error = this.#closed
      ? new EsdbError('client_closed', 'the client is closed')
      : new EsdbError(
          'connection_failed',
          `no server reachable after ${failures} attempts (${this.#servers.join(', ')}): ${lastError?.message}`,
          { cause: lastError },
        );
    this.#giveUp(error);
    throw error;
  }

  async #open(address) {
    const connection = new Connection(address, {
      onReply: (c, request, frame) => this.#onReply(c, request, frame),
      onPush: (c, frame) => this.#onPush(c, frame),
      onClose: (c, error) => this.#onClose(c, error),
    });
    const info = await connection.open({
      connectTimeoutMs: this.#options.connectTimeoutMs,
      WebSocket: this.#options.WebSocket,
      tls: this.#options.tls,
    });
    this.limits.update(info);
    const hello = { name: this.#options.name, lang: 'js', version: CLIENT_VERSION };
    if (this.#options.user !== undefined) Object.assign(hello, { user: this.#options.user, pass: this.#options.password });
    if (this.#options.token !== undefined) hello.token = this.#options.token;
    if (this.#store !== null) hello.store = this.#store;
    try {
      // Awaited before anything else is sent, so no request reaches the wrong store.
      await new Promise((resolve, reject) => {
        const request = { text: this._encoder.connect(hello), parse: replies.ok, retry: false, attempts: 0, resolve, reject };
        if (!connection.send(request)) reject(connection.closeError);
      });
    } catch (error) {
      connection.close();
      throw error;
    }
    return connection;
  }

  #adopt(connection) {
    this.#connection = connection;
    this.info = connection.info;
    this.#learn(connection);
    this.#emit('connect', { address: connection.address, info: connection.info });
    for (const subscription of [...this.#subscriptions]) subscription._connected(connection);
    const queued = this.#queue;
    this.#queue = [];
    for (const request of queued) this.#dispatch(request);
  }

  /**
   * Adds the cluster's client addresses a TCP connection's greeting names to the servers to
   * try, after the given ones. Over WebSocket they are not learned: they are TCP addresses,
   * which a browser cannot open, and a node's HTTP address is not among them.
   */
  #learn(connection) {
    if (parseAddress(connection.address).kind !== 'tcp') return;
    const urls = connection.info?.cluster?.client_urls;
    if (urls === null || typeof urls !== 'object') return;
    const known = new Set(this.#servers.map((address) => parseAddress(address).text.replace(/^tcp:\/\//i, '')));
    for (const url of Object.values(urls)) {
      if (this.#servers.length - this.#givenServers >= MAX_LEARNED_SERVERS) return;
      if (typeof url !== 'string' || known.has(url)) continue;
      try {
        if (parseAddress(url).kind !== 'tcp') continue;
      } catch {
        continue;
      }
      known.add(url);
      this.#servers.push(url);
    }
  }

  /** The servers this client tries in turn: the given ones, then those learned from INFO. */
  get servers() {
    return [...this.#servers];
  }

  #giveUp(error) {
    const queued = this.#queue;
    this.#queue = [];
    for (const request of queued) request.reject(error);
    for (const subscription of [...this.#subscriptions]) subscription._failed(error);
  }

  /** Closes the connection; pending calls fail with client_closed, subscriptions end. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#backoffTimer !== null) clearTimeout(this.#backoffTimer);
    this.#wakeBackoff?.();
    const connection = this.#connection;
    this.#connection = null;
    const closedError = new EsdbError('client_closed', 'the client is closed');
    const queued = this.#queue;
    this.#queue = [];
    for (const request of queued) request.reject(closedError);
    for (const subscription of [...this.#subscriptions]) subscription._closed();
    if (connection !== null) {
      for (const request of connection.pending()) request.reject(closedError);
      connection.close();
    }
  }

  // ---- session ----

  /** Selects the store later requests go to. */
  async use(store) {
    await this._call(this._encoder.use(store), replies.ok);
    this.#store = store;
  }

  /** A round trip: resolves when every earlier request has been answered. */
  async ping() {
    await this._call(this._encoder.ping(), replies.pong);
  }

  /** The server's HELP text. */
  async help() {
    return this._call(this._encoder.help(), replies.help);
  }

  /** Per-store counts (the server's JSON as sent). */
  async stats() {
    return this._call(this._encoder.stats(), replies.json('STATS'));
  }

  // ---- streams ----

  /**
   * Appends one event or a batch, atomically. Events without an `eventId` get a UUID v7, so a
   * retry after a lost connection is idempotent.
   */
  async append(stream, events, { expectedVersion = 'any' } = {}) {
    const batch = Array.isArray(events);
    const list = batch ? events : [events];
    if (list.length === 0) throw invalidArgument('append at least one event');
    const wire = list.map(toWireEvent);
    return this._call(this._encoder.append(stream, expectedVersion, batch ? wire : wire[0]), replies.appended);
  }

  /**
   * Appends to several streams atomically: every part (`{stream, events, expectedVersion?}`)
   * or none. With `condition` (`{query: [{types?, tags?, payload?}], after?}`, as on the wire),
   * only if no event matching the query came after `after`: else it rejects with
   * `condition_failed`, whose message starts with the first matching position.
   */
  async appendMulti(parts, { condition } = {}) {
    if (!Array.isArray(parts) || parts.length === 0) throw invalidArgument('appendMulti needs at least one part');
    const wireParts = parts.map((part, index) => {
      if (!isPlainObject(part) || !Array.isArray(part.events) || part.events.length === 0) {
        throw invalidArgument(`part ${index} must be {stream, events: [at least one], expectedVersion?}`);
      }
      return {
        stream: word('stream', part.stream),
        expected: expectedVersionWord(part.expectedVersion ?? 'any'),
        events: part.events.map(toWireEvent),
      };
    });
    const body = { parts: wireParts };
    if (condition !== undefined) body.condition = condition;
    return this._call(this._encoder.appendMulti(body), replies.appendedMulti);
  }

  /** One page of the events carrying any of `tags`, in commit order. */
  async readTagsPage(tags, { from = 0, count = DEFAULT_READ_PAGE_SIZE } = {}) {
    return this._call(this._encoder.readTags(tags, from, count), replies.events);
  }

  /** One page of a stream's events. */
  async readPage(stream, { from, count = DEFAULT_READ_PAGE_SIZE, direction = 'forward' } = {}) {
    const start = from ?? (direction === 'backward' ? 'end' : 0);
    return this._call(this._encoder.read(stream, start, count, direction), replies.events);
  }

  /** A stream's events, paged, as an async iterable (with `toArray()`). */
  read(stream, { from, direction = 'forward', pageSize = DEFAULT_READ_PAGE_SIZE, limit } = {}) {
    const start = from ?? (direction === 'backward' ? 'end' : 0);
    this._encoder.read(stream, start, positiveCount('pageSize', pageSize), direction);
    return new PagedIterable(
      async (cursor, left) => {
        const items = await this.readPage(stream, { from: cursor, count: Math.min(pageSize, left), direction });
        return { items, next: nextCursor(items, 'version', direction) };
      },
      start,
      limitOf(limit),
    );
  }

  /** One page of `$all`. */
  async readAllPage({ from, count = DEFAULT_READ_PAGE_SIZE, direction = 'forward' } = {}) {
    const start = from ?? (direction === 'backward' ? 'end' : 0);
    return this._call(this._encoder.readAll(start, count, direction), replies.events);
  }

  /** `$all`, every stream's events in commit order, paged. */
  readAll({ from, direction = 'forward', pageSize = DEFAULT_READ_PAGE_SIZE, limit } = {}) {
    const start = from ?? (direction === 'backward' ? 'end' : 0);
    this._encoder.readAll(start, positiveCount('pageSize', pageSize), direction);
    return new PagedIterable(
      async (cursor, left) => {
        const items = await this.readAllPage({ from: cursor, count: Math.min(pageSize, left), direction });
        return { items, next: nextCursor(items, 'position', direction) };
      },
      start,
      limitOf(limit),
    );
  }

  /** One page of the events of some types, from a position. */
  async readTypesPage(types, { from = 0, count = DEFAULT_READ_PAGE_SIZE } = {}) {
    return this._call(this._encoder.readTypes(types, from, count), replies.events);
  }

  /** The events of some types in commit order, paged. */
  readTypes(types, { from = 0, pageSize = DEFAULT_READ_PAGE_SIZE, limit } = {}) {
    this._encoder.readTypes(types, from, positiveCount('pageSize', pageSize));
    return new PagedIterable(
      async (cursor, left) => {
        const items = await this.readTypesPage(types, { from: cursor, count: Math.min(pageSize, left) });
        return { items, next: nextCursor(items, 'position', 'forward') };
      },
      from,
      limitOf(limit),
    );
  }

  /** A stream's current version, -1 when it has no visible events. */
  async version(stream) {
    return this._call(this._encoder.version(stream), replies.version);
  }

  /** Whether a stream has visible events. */
  async exists(stream) {
    return this._call(this._encoder.exists(stream), replies.flag('EXISTS'));
  }

  /** One page of stream ids, in byte order, after `after`. */
  async streamsPage({ after, count } = {}) {
    return this._call(this._encoder.streams(after, count), replies.list('STREAMS'));
  }

  /** Every stream id with visible events, paged. */
  streams({ after, pageSize = DEFAULT_STREAMS_PAGE_SIZE, limit } = {}) {
    this._encoder.streams(after, positiveCount('pageSize', pageSize));
    return new PagedIterable(
      async (cursor, left) => {
        const items = await this.streamsPage({ after: cursor.after, count: Math.min(pageSize, left) });
        return { items, next: items.length === 0 ? null : { after: items[items.length - 1] } };
      },
      { after },
      limitOf(limit),
    );
  }

  /** Soft-deletes a stream (and its snapshots). */
  async delete(stream, { expectedVersion = 'any' } = {}) {
    await this._call(this._encoder.delete(stream, expectedVersion), replies.ok);
  }

  /** The stream's state folded on the server: `{streamId, version, state}`. */
  async aggregate(stream, { fromSnapshot = false, order = 'foldl', raw = false } = {}) {
    return this._call(this._encoder.agg(stream, { fromSnapshot, order, raw }), replies.aggregate);
  }

  // ---- subscriptions ----

  /**
   * Subscribes: catch-up without `name`, persistent with it. Resolves once the server accepted
   * it; iterate the result with `for await`.
   */
  async subscribe(selector, options = {}) {
    const wire = wireSelector(selector);
    if (options.name !== undefined) word('name', options.name);
    let start = options.start ?? 'origin';
    if (options.name === undefined && start === 'end') {
      // A position, so that a resubscribe after a reconnect starts where this one did.
      const [last] = await this.readAllPage({ from: 'end', count: 1, direction: 'backward' });
      start = last === undefined ? 0 : last.position + 1;
    }
    if (this.#closed) throw new EsdbError('client_closed', 'the client is closed');
    const subscription = new Subscription(this, wire, { ...options, start });
    this.#subscriptions.add(subscription);
    if (this.#connection !== null) subscription._connected(this.#connection);
    else this.#ensureConnected().catch(() => {});
    await subscription.ready();
    return subscription;
  }
}

function nextCursor(items, field, direction) {
  const last = items[items.length - 1];
  if (last === undefined) return null;
  const next = direction === 'forward' ? last[field] + 1 : last[field] - 1;
  return next < 0 ? null : next;
}

/** Snapshots of streams' states (`SNAP`). */
class Snapshots {
  #client;

  constructor(client) {
    this.#client = client;
  }

  /** Saves `data` as the state of `stream` at `version`; `keep` prunes to the newest N. */
  async save(stream, version, data, { metadata, keep } = {}) {
    if (data === undefined) throw invalidArgument('snapshot data is required (any JSON value)');
    const payload = { data };
    if (metadata !== undefined) payload.metadata = metadata;
    if (keep !== undefined) payload.keep = keep;
    await this.#client._call(this.#client._encoder.snapSave(stream, version, payload), replies.ok);
  }

  /** The newest snapshot; snapshot_not_found when there is none. */
  async load(stream) {
    return this.#client._call(this.#client._encoder.snapLoad(stream), replies.snapshot);
  }

  /** The snapshot at `version`; snapshot_not_found when there is none. */
  async loadAt(stream, version) {
    return this.#client._call(this.#client._encoder.snapLoad(stream, version), replies.snapshot);
  }

  /** Snapshots in ascending version order from `from`, at most `count` (≤ 1000). */
  async list(stream, { from = 0, count = MAX_SNAPSHOT_LIST_COUNT } = {}) {
    return this.#client._call(this.#client._encoder.snapList(stream, from, count), replies.list('SNAPSHOTS', replies.toSnapshot));
  }

  /** Deletes the snapshot at `version`, or all of the stream's. */
  async delete(stream, version) {
    await this.#client._call(this.#client._encoder.snapDelete(stream, version), replies.ok);
  }

  /** Whether there is a snapshot (at `version`, or at all). */
  async exists(stream, version) {
    return this.#client._call(this.#client._encoder.snapExists(stream, version), replies.flag('EXISTS'));
  }
}

/** Management of the store's persistent subscriptions (`PSUB`). */
class PersistentSubscriptions {
  #client;

  constructor(client) {
    this.#client = client;
  }

  #call(words, parse, options) {
    return this.#client._call(this.#client._encoder.psub(...words), parse, options);
  }

  async list() {
    return this.#call(['LIST'], replies.list('SUBS', replies.toSubscriptionInfo));
  }

  async get(name) {
    return this.#call(['GET', word('name', name)], replies.json('SUBINFO', replies.toSubscriptionInfo));
  }

  async exists(name) {
    return this.#call(['EXISTS', word('name', name)], replies.flag('SUBEXISTS'));
  }

  /** Removes it, its checkpoint and parked events (only if of `type`, when given). */
  async delete(name, { type } = {}) {
    const words = ['DELETE', word('name', name)];
    if (type !== undefined) words.push(word('type', type));
    // Not sent again after a lost connection: a second DELETE would answer not found.
    await this.#call(words, replies.ok, { retry: false });
  }

  /** Parked events in position order. */
  async parked(name, { from = 0, count = DEFAULT_MAX_READ_COUNT } = {}) {
    const words = ['PARKED', word('name', name), String(from), String(count)];
    if (!Number.isSafeInteger(from) || from < 0) throw invalidArgument(`from must be a position >= 0, got ${from}`);
    positiveCount('count', count);
    return this.#call(words, replies.events);
  }

  /** Delivers every parked event again. */
  async replay(name) {
    await this.#call(['REPLAY', word('name', name)], replies.ok, { retry: false });
  }
}
