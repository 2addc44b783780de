// Type declarations for esdb-client (hand-written; the package is plain ESM, no build step).

// ---- errors ----

/** A server error code (PROTOCOL.md's error table). */
export type ServerErrorCode =
  | 'wrong_expected_version'
  | 'stream_not_found'
  | 'stream_deleted'
  | 'invalid_argument'
  | 'invalid_json'
  | 'unknown_command'
  | 'payload_too_large'
  | 'line_too_long'
  | 'bad_frame'
  | 'store_not_found'
  | 'duplicate_event_id'
  | 'condition_failed'
  | 'unknown_selector_type'
  | 'invalid_selector'
  | 'subscription_not_found'
  | 'subscription_conflict'
  | 'snapshot_not_found'
  | 'read_only'
  | 'auth_required'
  | 'auth_failed'
  | 'permission_denied'
  | 'tls_required'
  | 'too_many_connections'
  | 'stale_connection'
  | 'shutting_down'
  | 'storage_error'
  | 'store_full'
  | 'quota_exceeded'
  | 'rate_limited'
  | 'unavailable'
  | 'unreadable_event'
  | 'corrupt'
  | 'internal';

/** A code the client raises itself. */
export type ClientErrorCode = 'connection_lost' | 'connection_failed' | 'bad_reply' | 'client_closed' | 'unsupported';

export type ErrorCode = ServerErrorCode | ClientErrorCode;

export const SERVER_ERROR_CODES: Readonly<Record<ServerErrorCode, { closes: boolean; retryable: boolean }>>;
export const CLIENT_ERROR_CODES: Readonly<Record<ClientErrorCode, { retryable: boolean }>>;

/** Every failure the client reports. */
export class EsdbError extends Error {
  constructor(code: ErrorCode | string, message: string, options?: { fromServer?: boolean; cause?: unknown });
  readonly name: 'EsdbError' | 'UnreadableEventError';
  /** Machine-readable code. */
  readonly code: ErrorCode | string;
  /** Whether the server sent it (`-ERR`). */
  readonly fromServer: boolean;
  /** Whether sending the same request again can succeed. */
  readonly retryable: boolean;
  /** Whether the server closed the connection after it. */
  readonly closesConnection: boolean;
}

/**
 * An `eventPayload` catch-up subscription met a stored record the server cannot parse (it breaks
 * the protocol's JSON rules): the subscription's `next()` rejects with this in place of the
 * event, and goes on after it (iterate the same subscription again).
 */
export class UnreadableEventError extends EsdbError {
  constructor(event: { streamId: string; version: number; position: number; reason: string });
  readonly name: 'UnreadableEventError';
  readonly code: 'unreadable_event';
  readonly streamId: string;
  readonly version: number;
  readonly position: number;
  /** Why the server cannot read it, in its words. */
  readonly reason: string;
}

// ---- records ----

/** JSON as the protocol carries it (bigints are written as integers). */
export type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json };

/** An event as reads and subscriptions return it. */
export interface RecordedEvent<Data = Json> {
  eventId: string;
  eventType: string;
  streamId: string;
  /** Its version in its stream (0, 1, …). */
  version: number;
  /** Its position in `$all` (0, 1, …). */
  position: number;
  /** When the server accepted the append, µs since the Unix epoch. */
  epochUs: number;
  data: Data;
  metadata: Record<string, Json>;
  /**
   * Only from `persistent.parked()`: why the server parked it when not for failed deliveries
   * (`'unreadable: …'`: its record breaks the JSON rules and is shown as stored).
   */
  parkedReason?: string;
  /** The event's tags; absent when it has none. */
  tags?: string[];
}

/** An event to append. */
export interface NewEvent<Data = Json> {
  eventType: string;
  data: Data;
  metadata?: Record<string, Json>;
  /** A UUID; the client assigns a v7 when absent, so retries are idempotent. */
  eventId?: string;
  /** Tags, indexed for `readTagsPage` and append conditions (at most 16). */
  tags?: string[];
}

/** One stream's share of `appendMulti`. */
export interface AppendPart {
  stream: string;
  events: NewEvent[];
  expectedVersion?: ExpectedVersion;
}

/** An append condition, as on the wire: no event matching `query` after `after`. */
export interface AppendCondition {
  query: { types?: string[]; tags?: string[]; payload?: Record<string, Json> }[];
  after?: number | null;
}

/** Where one part of `appendMulti` went. */
export interface PartResult {
  streamId: string;
  firstVersion: number;
  lastVersion: number;
  firstPosition: number;
  lastPosition: number;
}

/** `'any'`, `'no_stream'`, `'exists'`, a version ≥ 0, or the seed's -1 (no_stream), -2 (any), -4 (exists). */
export type ExpectedVersion = 'any' | 'no_stream' | 'exists' | 'stream_exists' | number | bigint;

export interface AppendResult {
  streamId: string;
  /** Version of the last event written. */
  version: number;
  /** Position of the last event written. */
  position: number;
}

export interface Snapshot<Data = Json> {
  streamId: string;
  version: number;
  data: Data;
  metadata: Record<string, Json>;
  epochUs: number;
}

export interface AggregateResult {
  streamId: string;
  /** The stream's current version: the newest event the state reflects. */
  version: number;
  state: Record<string, Json>;
}

export type SelectorType = 'stream' | 'event_type' | 'event_pattern' | 'event_payload';

export interface PersistentSubscriptionInfo {
  name: string;
  type: SelectorType;
  selector: Json;
  options: { start: 'origin' | 'end' | number; maxInFlight: number; ackTimeoutMs: number; maxRetries: number };
  createdEpochUs: number;
  /** The position delivery resumes from. */
  checkpoint: number;
  /** How many events are parked. */
  parked: number;
}

/** A store's Raft group as one node sees it (`raft` in INFO and STATS), as sent. */
export interface RaftStatus {
  node_id: number;
  /** `'leader'`, `'follower'`, `'candidate'` or `'learner'`. */
  state: string;
  term: number;
  /** null during an election. */
  leader_id: number | null;
  last_log_index: number;
  /** Reads see every entry up to it. */
  applied_index: number;
  /** null before the first checkpoint. */
  checkpoint_index: number | null;
  [field: string]: unknown;
}

/** The server's INFO, as sent (fields may be added: read it tolerantly). */
export interface ServerInfo {
  server_id: string;
  server_name: string;
  version: string;
  proto: number;
  max_payload: number;
  max_control_line: number;
  max_events_per_append: number;
  max_read_count: number;
  stores: string[];
  store: string;
  auth_required: boolean;
  ping_interval_ms: number;
  /** Each store's Raft group when the connection opened (absent from older servers). */
  raft?: Record<string, RaftStatus>;
  /** A cluster node's view: every member's client address by node id (absent on a single node). */
  cluster?: { node_id: number; leader_id: number | null; members: number[]; client_urls: Record<string, string>; [field: string]: unknown };
  [field: string]: unknown;
}

/** STATS, as sent. */
export interface ServerStats {
  stores: Record<
    string,
    { events: number; last_position: number; streams: number; subscriptions: number; raft?: RaftStatus; [field: string]: unknown }
  >;
  [field: string]: unknown;
}

// ---- reads ----

/** A paged read: iterate with `for await`, or collect with `toArray()`. */
export interface PagedIterable<T> extends AsyncIterable<T> {
  toArray(): Promise<T[]>;
}

export type Direction = 'forward' | 'backward';

export interface ReadOptions {
  /** First version (or position) to return; default 0 forward, `'end'` backward. */
  from?: number | 'end';
  direction?: Direction;
  /** Events per request (default 1000; the server clamps to 10000). */
  pageSize?: number;
  /** Most events to yield in all. */
  limit?: number;
}

export interface PageOptions {
  from?: number | 'end';
  count?: number;
  direction?: Direction;
}

// ---- subscriptions ----

export type Selector =
  | { stream: string }
  | { eventType: string | string[] }
  | { eventPattern: string }
  | { eventPayload: Record<string, Json> }
  | { type: SelectorType | string; selector: Json };

export interface SubscribeOptions {
  /** Makes it persistent (stored on the server, resumed by name). */
  name?: string;
  /** Where delivery starts: `'origin'` (default), `'end'` or a position. */
  start?: 'origin' | 'end' | number;
  /** Persistent: unacknowledged events one consumer may hold (server default 100). */
  maxInFlight?: number;
  /** Persistent: redelivery after this long without an ack (server default 30000). */
  ackTimeoutMs?: number;
  /** Persistent: deliveries before an event is parked, minus one (server default 5). */
  maxRetries?: number;
  /** Catch-up: events buffered before the subscription is paused (default 1024). */
  bufferSize?: number;
  /** Persistent: acknowledge each event when the consumer asks for the next one. */
  autoAck?: boolean;
}

export type NackAction = 'retry' | 'skip' | 'park';

/** A subscription: iterate it with `for await`; `break` unsubscribes. */
export class Subscription<Data = Json> implements AsyncIterableIterator<RecordedEvent<Data>> {
  private constructor();
  /** The persistent subscription's name, or null for catch-up. */
  readonly name: string | null;
  readonly persistent: boolean;
  readonly bufferSize: number;
  readonly autoAck: boolean;
  /** Whether the consumer has taken every historical event (catch-up). */
  readonly isLive: boolean;
  /** Resolves once the consumer has taken every historical event (catch-up). */
  readonly live: Promise<void>;
  /** Events received and not yet taken. */
  readonly buffered: number;
  readonly stats: { delivered: number; dropped: number; pauses: number; subscribes: number; unreadable: number };
  [Symbol.asyncIterator](): this;
  /** Rejects with an UnreadableEventError in place of an event the server cannot read; goes on after it. */
  next(): Promise<IteratorResult<RecordedEvent<Data>, undefined>>;
  return(): Promise<IteratorResult<RecordedEvent<Data>, undefined>>;
  unsubscribe(): Promise<void>;
  /** Persistent: true once the server took it, false if the connection was lost first. */
  ack(...events: Array<RecordedEvent | number | Array<RecordedEvent | number>>): Promise<boolean>;
  nack(action: NackAction, ...events: Array<RecordedEvent | number | Array<RecordedEvent | number>>): Promise<boolean>;
}

export const DEFAULT_SUBSCRIPTION_BUFFER_EVENTS: number;

// ---- the client ----

export interface ClientOptions {
  /** A name for the connection, in the server's logs. */
  name?: string;
  /** The store to start in (else the server's default). */
  store?: string;
  /** Opening a connection and getting its INFO (default 10000). */
  connectTimeoutMs?: number;
  /** User to authenticate as, with `password`, when the server requires authentication. */
  user?: string;
  password?: string;
  /** A token, instead of `user` and `password`. */
  token?: string;
  /** Node only: options of `tls.connect` (`ca`, `cert`, `key`, `servername`) for TLS. */
  tls?: Record<string, unknown>;
  /** Reconnect backoff base (default 100). */
  backoffBaseMs?: number;
  /** Reconnect backoff cap (default 30000). */
  backoffMaxMs?: number;
  /** Consecutive failed reconnects before giving up, and sends of one request (default 10). */
  maxRetries?: number;
  /** A WebSocket constructor, where there is no global one (Node 20: the `ws` package). */
  WebSocket?: unknown;
}

export interface Snapshots {
  save(stream: string, version: number, data: Json, options?: { metadata?: Record<string, Json>; keep?: number }): Promise<void>;
  /** The newest snapshot; rejects with snapshot_not_found when there is none. */
  load<Data = Json>(stream: string): Promise<Snapshot<Data>>;
  loadAt<Data = Json>(stream: string, version: number): Promise<Snapshot<Data>>;
  list<Data = Json>(stream: string, options?: { from?: number; count?: number }): Promise<Snapshot<Data>[]>;
  delete(stream: string, version?: number): Promise<void>;
  exists(stream: string, version?: number): Promise<boolean>;
}

export interface PersistentSubscriptions {
  list(): Promise<PersistentSubscriptionInfo[]>;
  get(name: string): Promise<PersistentSubscriptionInfo>;
  exists(name: string): Promise<boolean>;
  delete(name: string, options?: { type?: SelectorType }): Promise<void>;
  parked<Data = Json>(name: string, options?: { from?: number; count?: number }): Promise<RecordedEvent<Data>[]>;
  replay(name: string): Promise<void>;
}

/** Events: 'connecting' {address}, 'connect' {address, info}, 'disconnect' {address, error}, 'reconnecting' {retry, delayMs, error}. */
export class Client extends EventTarget {
  constructor(servers: string | string[], options?: ClientOptions);
  static connect(servers: string | string[], options?: ClientOptions): Promise<Client>;
  /** The INFO of the current (or last) connection. */
  readonly info: ServerInfo | null;
  readonly address: string | null;
  /** The servers tried in turn: the given ones, then (over TCP) those a cluster's INFO named (at most MAX_LEARNED_SERVERS). */
  readonly servers: string[];
  readonly store: string | null;
  readonly closed: boolean;
  readonly limits: { maxControlLineBytes: number; maxPayloadBytes: number };
  readonly snapshots: Snapshots;
  readonly persistent: PersistentSubscriptions;

  use(store: string): Promise<void>;
  ping(): Promise<void>;
  help(): Promise<string>;
  stats(): Promise<ServerStats>;
  close(): void;

  append(stream: string, events: NewEvent | NewEvent[], options?: { expectedVersion?: ExpectedVersion }): Promise<AppendResult>;
  appendMulti(parts: AppendPart[], options?: { condition?: AppendCondition }): Promise<PartResult[]>;
  readTagsPage<Data = Json>(tags: string | string[], options?: { from?: number; count?: number }): Promise<RecordedEvent<Data>[]>;
  read<Data = Json>(stream: string, options?: ReadOptions): PagedIterable<RecordedEvent<Data>>;
  readPage<Data = Json>(stream: string, options?: PageOptions): Promise<RecordedEvent<Data>[]>;
  readAll<Data = Json>(options?: ReadOptions): PagedIterable<RecordedEvent<Data>>;
  readAllPage<Data = Json>(options?: PageOptions): Promise<RecordedEvent<Data>[]>;
  readTypes<Data = Json>(types: string | string[], options?: { from?: number; pageSize?: number; limit?: number }): PagedIterable<RecordedEvent<Data>>;
  readTypesPage<Data = Json>(types: string | string[], options?: { from?: number; count?: number }): Promise<RecordedEvent<Data>[]>;
  version(stream: string): Promise<number>;
  exists(stream: string): Promise<boolean>;
  streams(options?: { after?: string; pageSize?: number; limit?: number }): PagedIterable<string>;
  streamsPage(options?: { after?: string; count?: number }): Promise<string[]>;
  delete(stream: string, options?: { expectedVersion?: ExpectedVersion }): Promise<void>;
  aggregate(stream: string, options?: { fromSnapshot?: boolean; order?: 'foldl' | 'foldr'; raw?: boolean }): Promise<AggregateResult>;
  subscribe<Data = Json>(selector: Selector, options?: SubscribeOptions): Promise<Subscription<Data>>;
}

/** Most server addresses a client learns from INFO `cluster.client_urls`. */
export const MAX_LEARNED_SERVERS: number;

/** Connects to the first reachable server of `servers`. */
export function connect(servers: string | string[], options?: ClientOptions): Promise<Client>;

export const CLIENT_VERSION: string;
export const DEFAULT_CONNECT_TIMEOUT_MS: number;
export const DEFAULT_READ_PAGE_SIZE: number;

// ---- the fold (AGG's aggregator, client-side) ----

export type State = Record<string, Json>;
export const SUM_TAG: '$sum';
export const OVERWRITE_TAG: '$overwrite';
export function initialState(snapshotData?: unknown): State;
export function applyData(state: State, data: unknown): State;
export function foldl(state: State | undefined, datas: Iterable<unknown>): State;
export function foldr(state: State | undefined, datas: Iterable<unknown>): State;
export function finalize(state: State): State;
export function aggregate(
  events: Iterable<{ data: unknown }>,
  options?: { order?: 'foldl' | 'foldr'; initial?: unknown; raw?: boolean },
): State;

// ---- backoff ----

export const DEFAULT_BACKOFF_BASE_MS: number;
export const DEFAULT_BACKOFF_MAX_MS: number;
export const DEFAULT_MAX_RETRIES: number;
export function backoffDelayMs(retry: number, options?: { baseMs?: number; maxMs?: number; random?: () => number }): number;

// ---- sans-IO codec (for other transports and tools) ----

export class Frame {
  readonly op: string;
  /** The control line, without its line break. */
  readonly line: string;
  /** The line after the operation and one space. */
  readonly rest: string;
  readonly body: Uint8Array | null;
  readonly args: string[];
  bodyText(): string;
  bodyJson(): unknown;
}

export class Decoder {
  constructor(limits?: { maxLineBytes?: number; maxBodyBytes?: number });
  /** Bytes received but not yet part of a complete frame. */
  readonly buffered: number;
  /** Feeds bytes (a string is taken as UTF-8); returns the frames they complete. */
  push(chunk: Uint8Array | ArrayBuffer | string): Frame[];
}

export class Limits {
  maxControlLineBytes: number;
  maxPayloadBytes: number;
  update(info: Partial<ServerInfo>): void;
}

/** Builds request text (control line, sized payload, CRLFs). */
export class Encoder {
  constructor(limits?: Limits);
  readonly limits: Limits;
  line(...words: string[]): string;
  sized(payload: string, ...words: string[]): string;
  append(stream: string, expected: ExpectedVersion, events: unknown): string;
  read(stream: string, from: number | 'end', count: number, direction?: Direction): string;
  readAll(from: number | 'end', count: number, direction?: Direction): string;
  readTypes(types: string | string[], from: number, count: number): string;
  sub(sid: string, options: Record<string, unknown>): string;
  ack(sid: string, positions: number[]): string;
  nack(sid: string, action: NackAction, positions: number[]): string;
  [operation: string]: unknown;
}

export function utf8Length(text: string): number;
export function uuidv7(nowMs?: number): string;
