// Typed errors. Every failure the client reports is an EsdbError with a machine-readable `code`:
// either one the server sent (`-ERR <code> '<message>'`, the table below, which a test checks
// against PROTOCOL.md's error table) or one of the client's own (CLIENT_ERROR_CODES).

/**
 * The server's error codes, as PROTOCOL.md lists them: whether the server closes the
 * connection after sending it, and whether retrying the request can succeed.
 */
export const SERVER_ERROR_CODES = Object.freeze({
  wrong_expected_version: { closes: false, retryable: false },
  stream_not_found: { closes: false, retryable: false },
  stream_deleted: { closes: false, retryable: false },
  invalid_argument: { closes: false, retryable: false },
  invalid_json: { closes: false, retryable: false },
  unknown_command: { closes: false, retryable: false },
  payload_too_large: { closes: true, retryable: false },
  line_too_long: { closes: true, retryable: false },
  bad_frame: { closes: true, retryable: false },
  store_not_found: { closes: false, retryable: false },
  duplicate_event_id: { closes: false, retryable: false },
  condition_failed: { closes: false, retryable: false },
  unknown_selector_type: { closes: false, retryable: false },
  invalid_selector: { closes: false, retryable: false },
  subscription_not_found: { closes: false, retryable: false },
  subscription_conflict: { closes: false, retryable: false },
  snapshot_not_found: { closes: false, retryable: false },
  read_only: { closes: false, retryable: false },
  too_many_connections: { closes: true, retryable: true },
  stale_connection: { closes: true, retryable: false },
  shutting_down: { closes: true, retryable: true },
  storage_error: { closes: false, retryable: true },
  store_full: { closes: false, retryable: true },
  quota_exceeded: { closes: false, retryable: false },
  rate_limited: { closes: false, retryable: true },
  unavailable: { closes: false, retryable: true },
  unreadable_event: { closes: false, retryable: false },
  corrupt: { closes: false, retryable: false },
  auth_required: { closes: false, retryable: false },
  auth_failed: { closes: true, retryable: false },
  permission_denied: { closes: false, retryable: false },
  tls_required: { closes: true, retryable: false },
  internal: { closes: false, retryable: false },
});

/**
 * Codes the client raises itself. `invalid_argument` and `payload_too_large` (from the server
 * table) are also raised locally, before sending, for arguments that would break framing.
 */
export const CLIENT_ERROR_CODES = Object.freeze({
  /** The connection broke before the reply came; the request may or may not have taken effect. */
  connection_lost: { retryable: true },
  /** No server could be reached within the retry budget. */
  connection_failed: { retryable: false },
  /** The server sent bytes the client cannot frame or understand. */
  bad_reply: { retryable: false },
  /** The client was closed. */
  client_closed: { retryable: false },
  /** The operation needs something this environment lacks (e.g. TCP in a browser). */
  unsupported: { retryable: false },
});

/** An error from esdb or from this client. */
export class EsdbError extends Error {
  /**
   * @param {string} code machine-readable code (SERVER_ERROR_CODES or CLIENT_ERROR_CODES)
   * @param {string} message for people
   * @param {{fromServer?: boolean, cause?: unknown}} [options]
   */
  constructor(code, message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EsdbError';
    this.code = code;
    /** Whether the server sent it (`-ERR`), as opposed to the client raising it. */
    this.fromServer = options.fromServer === true;
  }

  /** Whether retrying the same request can succeed. */
  get retryable() {
    const entry = this.fromServer ? SERVER_ERROR_CODES[this.code] : CLIENT_ERROR_CODES[this.code];
    return entry?.retryable === true;
  }

  /** Whether the server closed the connection after this error. */
  get closesConnection() {
    return this.fromServer && SERVER_ERROR_CODES[this.code]?.closes === true;
  }
}

/**
 * A stored record the server cannot parse (it breaks the protocol's JSON rules: written by an
 * older server, or damaged on disk), met by an `eventPayload` catch-up subscription: the server
 * sends `UNREADABLE` in place of its event. The subscription's `next()` rejects with this
 * error where the event would have come, and goes on: the next `next()` (or a new `for await`
 * over the same subscription) gives the events after it. Code `unreadable_event`, as the `-ERR`
 * that `AGG` answers for such a record.
 */
export class UnreadableEventError extends EsdbError {
  /**
   * @param {{streamId: string, version: number, position: number, reason: string}} event
   */
  constructor({ streamId, version, position, reason }) {
    super('unreadable_event', `unreadable event ${streamId}@${version} (position ${position}): ${reason}`, {
      fromServer: true,
    });
    this.name = 'UnreadableEventError';
    this.streamId = streamId;
    this.version = version;
    this.position = position;
    /** Why the server cannot read it, in its words. */
    this.reason = reason;
  }
}

/** An invalid_argument raised before anything is sent. */
export function invalidArgument(message) {
  return new EsdbError('invalid_argument', message);
}
