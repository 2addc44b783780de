//! What the crash soak writes and remembers: self-describing event ids, payloads derived from
//! them, the streams, the record of every request sent, and the truth read back after each
//! restart.
//!
//! An event id encodes the request that carried it (round, connection, sequence number), the
//! event's index in it and the request's size, plus a tag of this run. So an event read back
//! names the request it came from, and its type and data can be recomputed and compared byte
//! for byte without storing them.

use esdb_protocol::ExpectedVersion;

/// Per-connection streams appended to with the exact version the writer predicts (its own
/// pipelined appends chain on each other).
pub const OWNED_STREAMS_PER_CONNECTION: usize = 3;
/// Streams every connection appends to with the version it last saw: they conflict.
pub const SHARED_EXACT_STREAMS: usize = 4;
/// Streams appended to with `any`.
pub const ANY_STREAMS: usize = 4;
/// Most events in one batch.
pub const MAX_BATCH_EVENTS: u16 = 8;
/// Most pad bytes in an event's data: sizes vary so that pages split at varying places.
const MAX_PAD_BYTES: u64 = 200;

/// Identifies one request of the soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    pub round: u32,
    pub conn: u16,
    pub seq: u32,
}

/// What an event id says about the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTag {
    pub key: RequestKey,
    pub index: u16,
    pub count: u16,
}

/// The event id of event `index` of a request of `count` events: round (4 bytes), connection
/// (2), sequence (4), index (2), count (2), run tag (2).
pub fn event_id(run: u16, tag: EventTag) -> u128 {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&tag.key.round.to_be_bytes());
    b[4..6].copy_from_slice(&tag.key.conn.to_be_bytes());
    b[6..10].copy_from_slice(&tag.key.seq.to_be_bytes());
    b[10..12].copy_from_slice(&tag.index.to_be_bytes());
    b[12..14].copy_from_slice(&tag.count.to_be_bytes());
    b[14..16].copy_from_slice(&run.to_be_bytes());
    u128::from_be_bytes(b)
}

/// The tag in an event id, if it is one of this run's.
pub fn decode_event_id(run: u16, id: u128) -> Option<EventTag> {
    let b = id.to_be_bytes();
    let field2 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let field4 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if field2(14) != run {
        return None;
    }
    let tag = EventTag {
        key: RequestKey {
            round: field4(0),
            conn: field2(4),
            seq: field4(6),
        },
        index: field2(10),
        count: field2(12),
    };
    (tag.count >= 1 && tag.index < tag.count).then_some(tag)
}

pub fn format_id(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}

pub fn event_type(count: u16) -> &'static str {
    if count == 1 {
        "ChaosOne"
    } else {
        "ChaosBatch"
    }
}

/// The event's data, as sent and as it must read back.
pub fn event_data(tag: EventTag) -> String {
    let k = tag.key;
    let mix = (k.round as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((k.conn as u64) << 32 | k.seq as u64)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9)
        .wrapping_add(tag.index as u64);
    let pad = "p".repeat((mix % MAX_PAD_BYTES) as usize);
    format!(
        r#"{{"r":{},"c":{},"s":{},"i":{},"pad":"{pad}"}}"#,
        k.round, k.conn, k.seq, tag.index
    )
}

/// The `APPEND` payload of a request: one object, or an array for a batch.
pub fn append_payload(run: u16, key: RequestKey, count: u16) -> String {
    let events: Vec<String> = (0..count)
        .map(|index| {
            let tag = EventTag { key, index, count };
            format!(
                r#"{{"event_type":"{}","event_id":"{}","data":{}}}"#,
                event_type(count),
                format_id(event_id(run, tag)),
                event_data(tag)
            )
        })
        .collect();
    if count == 1 {
        events.into_iter().next().expect("one event")
    } else {
        format!("[{}]", events.join(","))
    }
}

/// Every stream of a run, by index.
#[derive(Debug, Clone)]
pub struct Streams {
    pub names: Vec<String>,
    pub connections: usize,
}

/// How a stream is appended to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamClass {
    /// Owned by one connection, exact expected versions.
    Owned { conn: usize },
    /// Shared, exact expected versions (conflicts).
    SharedExact,
    /// Shared, `any`.
    Any,
}

impl Streams {
    pub fn new(connections: usize) -> Streams {
        let mut names = Vec::new();
        for c in 0..connections {
            for k in 0..OWNED_STREAMS_PER_CONNECTION {
                names.push(format!("own-{c}-{k}"));
            }
        }
        names.extend((0..SHARED_EXACT_STREAMS).map(|k| format!("shared-{k}")));
        names.extend((0..ANY_STREAMS).map(|k| format!("any-{k}")));
        Streams { names, connections }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn owned(&self, conn: usize, k: usize) -> u32 {
        (conn * OWNED_STREAMS_PER_CONNECTION + k) as u32
    }

    pub fn shared_exact(&self, k: usize) -> u32 {
        (self.connections * OWNED_STREAMS_PER_CONNECTION + k) as u32
    }

    pub fn any(&self, k: usize) -> u32 {
        (self.connections * OWNED_STREAMS_PER_CONNECTION + SHARED_EXACT_STREAMS + k) as u32
    }

    pub fn class(&self, stream: u32) -> StreamClass {
        let s = stream as usize;
        let owned = self.connections * OWNED_STREAMS_PER_CONNECTION;
        if s < owned {
            StreamClass::Owned {
                conn: s / OWNED_STREAMS_PER_CONNECTION,
            }
        } else if s < owned + SHARED_EXACT_STREAMS {
            StreamClass::SharedExact
        } else {
            StreamClass::Any
        }
    }
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `APPENDED`: must be present at exactly these.
    Acked {
        last_version: u64,
        last_position: u64,
    },
    /// An error that means nothing was written (`wrong_expected_version`, …): must be absent.
    Rejected { code: String },
    /// No reply (the server died), or an error that does not say whether it was written
    /// (`storage_error`): present wholly or not at all.
    Unknown,
}

/// One `APPEND` as sent, recorded before its bytes went to the socket.
#[derive(Debug, Clone)]
pub struct SentAppend {
    pub key: RequestKey,
    pub stream: u32,
    pub expected: ExpectedVersion,
    pub count: u16,
    pub outcome: Outcome,
}

/// One event as the store holds it, compactly: the verified history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownEvent {
    pub id: u128,
    pub stream: u32,
    pub version: u64,
}

/// Everything verified so far: `$all` in order (index = position) and each stream's current
/// version (-1: none).
#[derive(Debug, Clone)]
pub struct Truth {
    pub events: Vec<KnownEvent>,
    pub versions: Vec<i64>,
}

impl Truth {
    pub fn empty(streams: &Streams) -> Truth {
        Truth {
            events: Vec::new(),
            versions: vec![-1; streams.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_name_their_run() {
        let tag = EventTag {
            key: RequestKey {
                round: 7,
                conn: 3,
                seq: 123_456,
            },
            index: 2,
            count: 5,
        };
        let id = event_id(42, tag);
        assert_eq!(decode_event_id(42, id), Some(tag));
        assert_eq!(decode_event_id(43, id), None);
        let parsed = uuid::Uuid::parse_str(&format_id(id)).unwrap().as_u128();
        assert_eq!(parsed, id);
    }

    #[test]
    fn payloads_are_valid_json_carrying_every_id() {
        let key = RequestKey {
            round: 1,
            conn: 0,
            seq: 9,
        };
        let batch: serde_json::Value = serde_json::from_str(&append_payload(1, key, 3)).unwrap();
        assert_eq!(batch.as_array().unwrap().len(), 3);
        let one: serde_json::Value = serde_json::from_str(&append_payload(1, key, 1)).unwrap();
        assert_eq!(one["event_type"], "ChaosOne");
    }

    #[test]
    fn stream_classes_partition_the_streams() {
        let s = Streams::new(2);
        assert_eq!(s.class(s.owned(1, 2)), StreamClass::Owned { conn: 1 });
        assert_eq!(s.class(s.shared_exact(0)), StreamClass::SharedExact);
        assert_eq!(s.class(s.any(3)), StreamClass::Any);
        assert_eq!(
            s.len(),
            2 * OWNED_STREAMS_PER_CONNECTION + SHARED_EXACT_STREAMS + ANY_STREAMS
        );
    }
}
