// The protocol's limits (PROTOCOL.md, "Limits"), as the client uses them. The server's INFO
// announces the ones it enforces; these are the defaults until it has.

/** Longest request control line, CRLF included (INFO `max_control_line`). */
export const DEFAULT_MAX_CONTROL_LINE_BYTES = 4096;
/** Largest request payload (INFO `max_payload`). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1048576;
/** Most events in one APPEND (INFO `max_events_per_append`). */
export const DEFAULT_MAX_EVENTS_PER_APPEND = 10000;
/** Largest `count` a read honours (INFO `max_read_count`). */
export const DEFAULT_MAX_READ_COUNT = 10000;
/** Largest `count` of one SNAP LIST page. */
export const MAX_SNAPSHOT_LIST_COUNT = 1000;
/** Most items (positions or ranges) in one ACK or NACK line. */
export const MAX_ACK_ITEMS = 1000;
/** Most types in one READTYPES or event_type selector. */
export const MAX_TYPES_PER_REQUEST = 32;

/**
 * Longest control line the client accepts from the server. Server lines are short (an EVENT
 * line with two 255-byte ids, an INFO, an error message), so this is generous; beyond it the
 * reply cannot be framed and the connection is dropped.
 */
export const MAX_REPLY_LINE_BYTES = 1024 * 1024;
/**
 * Largest reply body the client accepts. A read reply stops before 16 MiB but always holds one
 * event (up to 1 MiB of payload plus its record), an AGG state is at most 16 MiB; PSUB LIST
 * has no page limit, so leave room.
 */
export const MAX_REPLY_BODY_BYTES = 64 * 1024 * 1024;
