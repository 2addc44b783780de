//! Size limits of the protocol. Each is enforced while parsing, before any buffer grows.

/// Longest control line, CRLF included. NATS uses 4 KiB too: long enough for an inline
/// `APPEND` a person types, short enough that a client that never sends a newline cannot make
/// the server buffer much.
pub const MAX_CONTROL_LINE_BYTES: usize = 4096;

/// Largest payload of one request (`APPEND`'s `#bytes`). Announced as `max_payload` in `INFO`.
/// 1 MiB like NATS: events are facts, not blobs, and LMDB stores values over ~2 KiB in overflow
/// pages.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Most events in one `APPEND`. An append is one atomic write; bounding it bounds the time the
/// writer thread spends on one request.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;

/// Largest `count` a read honours; a larger count is clamped to this (documented in
/// PROTOCOL.md). Bounds the memory and time of one read.
pub const MAX_READ_COUNT: u64 = 10_000;

/// Largest `EVENTS` reply body. A read stops early (returning fewer events than asked, never
/// zero when one is available) rather than build a larger reply.
pub const MAX_READ_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Longest stream id, in bytes. LMDB keys are limited to 511 bytes; the id is part of keys.
pub const MAX_STREAM_ID_BYTES: usize = 255;

/// Longest event type, in bytes (it is part of the by-type index key).
pub const MAX_EVENT_TYPE_BYTES: usize = 255;

/// Most event types one `READTYPES` may name.
pub const MAX_TYPES_PER_READ: usize = 32;

/// Longest store name, in bytes. Store names are also directory names.
pub const MAX_STORE_NAME_BYTES: usize = 64;

/// Largest `STREAMS` page.
pub const MAX_STREAMS_PAGE: u64 = 10_000;

/// Longest subscription id (`sid`), chosen by the client per connection.
pub const MAX_SID_BYTES: usize = 64;

/// Longest persistent subscription name.
pub const MAX_SUBSCRIPTION_NAME_BYTES: usize = 128;

/// Most items (positions, ranges) in one `ACK` or `NACK` line.
pub const MAX_ACK_ITEMS: usize = 1000;

/// Largest `max_in_flight` a persistent subscriber may ask for: bounds what the server tracks
/// per subscriber.
pub const MAX_IN_FLIGHT_LIMIT: u32 = 10_000;

/// Deepest nesting of an `event_payload` selector (matching recurses this deep at most).
pub const MAX_PAYLOAD_SELECTOR_DEPTH: usize = 16;

// The payload must fit its own header's byte count, and an append of the maximum number of
// events must be expressible within the payload limit (about 100 bytes an event).
const _: () = assert!(MAX_PAYLOAD_BYTES >= MAX_EVENTS_PER_APPEND * 100);
const _: () = assert!(MAX_STREAM_ID_BYTES + 64 < MAX_CONTROL_LINE_BYTES);

/// Largest `SNAP LIST` page (count), before the reply size limit. A snapshot may be as large as
/// a payload, so pages stop at `MAX_READ_REPLY_BYTES` too (never before the first snapshot).
pub const MAX_SNAPSHOTS_PAGE: u64 = 1_000;

/// Most events one `AGG` folds (after its snapshot, when it starts from one). Bounds the time
/// one `AGG` holds a read transaction and a blocking thread; beyond it the client is told to
/// save a snapshot and fold from it.
pub const MAX_AGGREGATE_EVENTS: u64 = 100_000;

/// Most bytes of event records one `AGG` folds. The state can only be as large as what was
/// folded into it, so this bounds the server's memory for one `AGG`.
pub const MAX_AGGREGATE_EVENT_BYTES: usize = 64 * 1024 * 1024;

/// Largest `AGG` reply body (the state JSON), like a read reply.
pub const MAX_AGGREGATE_STATE_BYTES: usize = MAX_READ_REPLY_BYTES;

/// Most parts (streams) in one `APPENDMULTI`. One multi-stream append is one atomic write
/// checked and applied by the one apply thread; bounding its parts bounds the checks it makes.
pub const MAX_APPEND_MULTI_PARTS: usize = 64;

/// Most events in one `APPENDMULTI`, all parts together: the same bound as one `APPEND`, since
/// both are one atomic write.
pub const MAX_APPEND_MULTI_EVENTS: usize = MAX_EVENTS_PER_APPEND;

/// Largest `APPENDMULTI` body: the payload limit, like every request.
pub const MAX_APPEND_MULTI_BYTES: usize = MAX_PAYLOAD_BYTES;

/// Most tags on one event. Each tag is one entry of the tag index, written with the event.
pub const MAX_TAGS_PER_EVENT: usize = 16;

/// Longest tag, in bytes (it is part of the tag index key, with a position: well within
/// LMDB's 511-byte keys).
pub const MAX_TAG_BYTES: usize = 128;

/// Most tags one `READTAGS` may name.
pub const MAX_TAGS_PER_READ: usize = 32;

/// Most query items in one append condition (`APPENDMULTI`'s `condition.query`).
pub const MAX_CONDITION_ITEMS: usize = 16;

/// Most candidate events one append condition examines (index entries after its `after`
/// position that an item's first tag or its types select, checked for the item's other
/// criteria). The check runs on the apply thread, inside the write; past this many it refuses
/// the append (`invalid_argument`: narrow the query or pass a later `after`) rather than hold
/// every other write back.
pub const MAX_CONDITION_CANDIDATES: usize = 100_000;

const _: () = assert!(MAX_TAG_BYTES + 9 < 511);
