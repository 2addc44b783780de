//! The on-disk layout of one store: its LMDB databases, keys and fixed-width values.
//!
//! | database       | key                                   | value                          |
//! |----------------|---------------------------------------|--------------------------------|
//! | `events`       | global position (u64 BE)              | the event record's JSON bytes, sealed (see below) |
//! | `streams`      | stream id (UTF-8)                     | [`StreamMeta`] (25 bytes)      |
//! | `stream_index` | stream number (u64 BE) ++ version (u64 BE) | global position (u64 BE)  |
//! | `event_ids`    | event id (16 bytes)                   | global position (u64 BE)       |
//! | `type_index`   | event type ++ `0x00` ++ position (u64 BE) | nothing                    |
//! | `meta`         | a name (`next_position`, `scavenge_position`, …) | u64 BE              |
//! | `psubs`        | persistent subscription name          | its definition (JSON)          |
//! | `psub_checkpoints` | subscription name                 | next position to deliver (u64 BE) |
//! | `psub_parked`  | name ++ `0x00` ++ position (u64 BE)   | 0 parked, 1 replay requested   |
//! | `snapshots`    | stream id ++ `0x00` ++ version (u64 BE) | the snapshot record's JSON, sealed |
//! | `raft`         | `applied`                             | the Raft state machine's applied state (opaque bytes from `raft`) |
//! | `stream_limits` | stream id (UTF-8)                    | [`StreamLimits`] (25 bytes): the retention of `META` |
//! | `time_index`   | commit time, µs since the epoch (u64 BE) | the first position committed at that time (u64 BE) |
//! | `tag_index`    | tag ++ `0x00` ++ position (u64 BE)    | nothing (format 5: event tags, for `READTAGS` and append conditions) |
//! | `data_keys`    | stream id (UTF-8)                     | the stream's wrapped data key, or the mark `SHRED` leaves (format 7, [`crate::store::crypto`]) |
//!
//! Sealed: the JSON followed by `crc32c(key ++ JSON)` as u32 LE (format 3,
//! [`crate::store::checksum`]), checked on every read.
//!
//! Big-endian integers sort numerically, so ranges are key ranges. Streams are interned to a
//! number so the per-stream index has fixed-width, prefix-free keys. Event types cannot contain
//! `0x00` (control characters are refused), so the type index keys are prefix-free too, and so
//! are the snapshot keys (stream ids cannot contain `0x00` either). Snapshots are keyed by
//! stream id, not number, so a stream's snapshots need no lookup of its metadata.
//!
//! Commit times never go backwards within a store (`store::clock`), so the time index is
//! sorted both by time and by position: the first entry at or after a time gives the first
//! position committed at or after it. Stream limits are keyed by stream id because `META` may
//! be set before the stream exists.

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, Unit, U64};
use heed::{CommitOrAbort, Database, Env, WithoutTls};

use crate::store::StoreError;

pub type PositionCodec = U64<BigEndian>;

/// Handles to the named databases of one environment (they are plain integers; `Copy`), and
/// the master key that opens its sealed records.
#[derive(Clone, Copy)]
pub struct Databases {
    pub events: Database<'static, PositionCodec, Bytes>,
    pub streams: Database<'static, Str, Bytes>,
    pub stream_index: Database<'static, Bytes, PositionCodec>,
    pub event_ids: Database<'static, Bytes, PositionCodec>,
    pub type_index: Database<'static, Bytes, Unit>,
    pub meta: Database<'static, Str, PositionCodec>,
    pub psubs: Database<'static, Str, Bytes>,
    pub psub_checkpoints: Database<'static, Str, PositionCodec>,
    pub psub_parked: Database<'static, Bytes, Bytes>,
    pub snapshots: Database<'static, Bytes, Bytes>,
    /// What the Raft layer asks to keep with the data (its last applied log id and membership),
    /// written in the same transaction as the entries it describes.
    pub raft: Database<'static, Str, Bytes>,
    pub stream_limits: Database<'static, Str, Bytes>,
    pub time_index: Database<'static, PositionCodec, PositionCodec>,
    pub tag_index: Database<'static, Bytes, Unit>,
    pub data_keys: Database<'static, Str, Bytes>,
    /// The server's `--encryption-key-file`, if it has one: every read of a sealed record and
    /// every append to an encrypted stream needs it. Set once when the store opens (a
    /// `'static` reference, so the handles stay `Copy`: one key per process, never freed).
    pub master_key: Option<&'static crate::store::crypto::MasterKey>,
}

impl Databases {
    /// Creates (or opens) every database of a store's environment.
    pub fn create(env: &Env<WithoutTls>) -> Result<Databases, heed::Error> {
        let wtxn = env.write_txn()?;
        let (core, subscriptions, lifecycle) = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, heed::Error> {
                let core = (
                    opener.create_database(wtxn, Some("events"))?,
                    opener.create_database(wtxn, Some("streams"))?,
                    opener.create_database(wtxn, Some("stream_index"))?,
                    opener.create_database(wtxn, Some("event_ids"))?,
                    opener.create_database(wtxn, Some("type_index"))?,
                    opener.create_database(wtxn, Some("meta"))?,
                );
                let subscriptions = (
                    opener.create_database(wtxn, Some("psubs"))?,
                    opener.create_database(wtxn, Some("psub_checkpoints"))?,
                    opener.create_database(wtxn, Some("psub_parked"))?,
                    opener.create_database(wtxn, Some("snapshots"))?,
                    opener.create_database(wtxn, Some("raft"))?,
                );
                let lifecycle = (
                    opener.create_database(wtxn, Some("stream_limits"))?,
                    opener.create_database(wtxn, Some("time_index"))?,
                    opener.create_database(wtxn, Some("tag_index"))?,
                    opener.create_database(wtxn, Some("data_keys"))?,
                );
                Ok(CommitOrAbort::<_, ()>::Commit((
                    core,
                    subscriptions,
                    lifecycle,
                )))
            })?
            .unwrap_commit();
        Ok(Databases {
            events: core.0,
            streams: core.1,
            stream_index: core.2,
            event_ids: core.3,
            type_index: core.4,
            meta: core.5,
            psubs: subscriptions.0,
            psub_checkpoints: subscriptions.1,
            psub_parked: subscriptions.2,
            snapshots: subscriptions.3,
            raft: subscriptions.4,
            stream_limits: lifecycle.0,
            time_index: lifecycle.1,
            tag_index: lifecycle.2,
            data_keys: lifecycle.3,
            master_key: None,
        })
    }
}

impl Databases {
    /// Every database with its name, as raw bytes: for copying a whole environment's contents
    /// (installing a snapshot received from another node, `store::install`). Sized by
    /// [`DATABASE_COUNT`], so a database added to the schema but not here does not compile
    /// (format 5's `tag_index` was once left out, and installs dropped every tag).
    pub fn raw(
        &self,
    ) -> [(&'static str, Database<'static, Bytes, Bytes>); DATABASE_COUNT as usize] {
        [
            ("events", self.events.remap_types()),
            ("streams", self.streams.remap_types()),
            ("stream_index", self.stream_index.remap_types()),
            ("event_ids", self.event_ids.remap_types()),
            ("type_index", self.type_index.remap_types()),
            ("meta", self.meta.remap_types()),
            ("psubs", self.psubs.remap_types()),
            ("psub_checkpoints", self.psub_checkpoints.remap_types()),
            ("psub_parked", self.psub_parked.remap_types()),
            ("snapshots", self.snapshots.remap_types()),
            ("raft", self.raft.remap_types()),
            ("stream_limits", self.stream_limits.remap_types()),
            ("time_index", self.time_index.remap_types()),
            ("tag_index", self.tag_index.remap_types()),
            ("data_keys", self.data_keys.remap_types()),
        ]
    }
}

/// Number of named databases, for `max_dbs`.
pub const DATABASE_COUNT: u32 = 15;

/// `raft` key: the applied state blob.
pub const RAFT_APPLIED: &str = "applied";
/// `meta` key: the on-disk format version of the store (see [`FORMAT_VERSION`]).
pub const META_FORMAT_VERSION: &str = "format_version";
/// The format this build writes. 1: before the Raft log (no `raft` database, no version key);
/// 2: applied behind the Raft log, parked values may carry a reason; 3: stream limits
/// (`META`), tombstones (hard delete) in [`StreamMeta`], the commit-time index; 4: every
/// event and snapshot record sealed with a checksum (older stores are rewritten on open,
/// [`crate::store::upgrade`]); 5: event tags, in the records and the `tag_index` (older
/// stores have no tagged events, so their upgrade creates the empty index).
/// 6: scavenging ([`crate::store::scavenge`]): `events` and its
/// indexes may have gaps (positions and versions that no longer hold an event, which an older
/// build would take for corruption), and `meta` holds the scavenge's state. A format 5 store
/// is a format 6 store that was never scavenged: its upgrade only writes the new version.
/// 7: encrypted streams ([`crate::store::crypto`]): sealed records, which an older build would
/// serve as they are stored, and `data_keys`; a format 6 store has neither, so again only the
/// version moves.
pub const FORMAT_VERSION: u64 = 7;

/// `meta` key: the position the next event will get (= number of events ever written).
pub const META_NEXT_POSITION: &str = "next_position";
/// `meta` key: the number the next new stream will get.
pub const META_NEXT_STREAM_NUMBER: &str = "next_stream_number";

/// What the store knows of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamMeta {
    /// The interned number used in `stream_index` keys.
    pub stream_number: u64,
    /// The version the next event will get (= events ever written to the stream).
    pub next_version: u64,
    /// The first version reads show: events before it were hidden by a delete.
    pub first_visible_version: u64,
    /// Deleted and not recreated since.
    pub deleted: bool,
    /// Hard-deleted: a tombstone, never written again (always `deleted` too).
    pub tombstoned: bool,
}

const STREAM_META_BYTES: usize = 25;
/// Bits of a [`StreamMeta`]'s last byte. Format 2 had only 0 and 1 there.
const DELETED_BIT: u8 = 1;
const TOMBSTONED_BIT: u8 = 2;

impl StreamMeta {
    /// The newest visible version, or `None` when the stream shows no events (deleted).
    pub fn current_version(&self) -> Option<u64> {
        if self.deleted || self.next_version == self.first_visible_version {
            None
        } else {
            Some(self.next_version - 1)
        }
    }

    pub fn encode(&self) -> [u8; STREAM_META_BYTES] {
        debug_assert!(self.first_visible_version <= self.next_version);
        let mut out = [0u8; STREAM_META_BYTES];
        out[0..8].copy_from_slice(&self.stream_number.to_be_bytes());
        out[8..16].copy_from_slice(&self.next_version.to_be_bytes());
        out[16..24].copy_from_slice(&self.first_visible_version.to_be_bytes());
        debug_assert!(!self.tombstoned || self.deleted, "a tombstone is deleted");
        out[24] =
            (u8::from(self.deleted) * DELETED_BIT) | (u8::from(self.tombstoned) * TOMBSTONED_BIT);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<StreamMeta, StoreError> {
        if bytes.len() != STREAM_META_BYTES || bytes[24] & !(DELETED_BIT | TOMBSTONED_BIT) != 0 {
            return Err(StoreError::Corrupt(format!(
                "stream meta of {} bytes",
                bytes.len()
            )));
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        let meta = StreamMeta {
            stream_number: u64_at(0),
            next_version: u64_at(8),
            first_visible_version: u64_at(16),
            deleted: bytes[24] & DELETED_BIT != 0,
            tombstoned: bytes[24] & TOMBSTONED_BIT != 0,
        };
        if meta.tombstoned && !meta.deleted {
            return Err(StoreError::Corrupt(
                "stream meta: a tombstone that is not deleted".into(),
            ));
        }
        if meta.first_visible_version > meta.next_version {
            return Err(StoreError::Corrupt(
                "stream meta: first visible past next".into(),
            ));
        }
        Ok(meta)
    }
}

/// A stream's retention limits (`META`): which of its events reads still show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamLimits {
    pub max_count: Option<u64>,
    pub max_age_ms: Option<u64>,
    pub truncate_before: Option<u64>,
}

const STREAM_LIMITS_BYTES: usize = 25;

impl StreamLimits {
    pub fn is_empty(&self) -> bool {
        *self == StreamLimits::default()
    }

    /// A flags byte (bit i: field i is set), then the three fields as u64 BE (0 when unset).
    pub fn encode(&self) -> [u8; STREAM_LIMITS_BYTES] {
        let mut out = [0u8; STREAM_LIMITS_BYTES];
        for (index, field) in self.fields().into_iter().enumerate() {
            if let Some(value) = field {
                out[0] |= 1 << index;
                out[1 + 8 * index..9 + 8 * index].copy_from_slice(&value.to_be_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<StreamLimits, StoreError> {
        if bytes.len() != STREAM_LIMITS_BYTES || bytes[0] > 0b111 {
            return Err(StoreError::Corrupt(format!(
                "stream limits of {} bytes",
                bytes.len()
            )));
        }
        let field = |index: usize| {
            (bytes[0] & (1 << index) != 0).then(|| {
                u64::from_be_bytes(bytes[1 + 8 * index..9 + 8 * index].try_into().unwrap())
            })
        };
        Ok(StreamLimits {
            max_count: field(0),
            max_age_ms: field(1),
            truncate_before: field(2),
        })
    }

    fn fields(&self) -> [Option<u64>; 3] {
        [self.max_count, self.max_age_ms, self.truncate_before]
    }
}

/// `stream_index` key of (stream number, version).
pub fn stream_index_key(stream_number: u64, version: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&stream_number.to_be_bytes());
    key[8..].copy_from_slice(&version.to_be_bytes());
    key
}

/// `psub_parked` key of (subscription name, position).
pub fn parked_key(name: &str, position: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 9);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// `snapshots` key of (stream, version).
pub fn snapshot_key(stream: &str, version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 9);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// The version in a `snapshots` key.
pub fn snapshot_key_version(key: &[u8]) -> Result<u64, StoreError> {
    let tail = key
        .len()
        .checked_sub(8)
        .map(|at| &key[at..])
        .ok_or_else(|| StoreError::Corrupt("short snapshot key".into()))?;
    Ok(u64::from_be_bytes(tail.try_into().unwrap()))
}

/// `type_index` key of (event type, position).
pub fn type_index_key(event_type: &str, position: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(event_type.len() + 9);
    key.extend_from_slice(event_type.as_bytes());
    key.push(0);
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// `tag_index` key of (tag, position): the `type_index` layout (tags cannot contain `0x00`
/// either, so the keys are prefix-free).
pub fn tag_index_key(tag: &str, position: u64) -> Vec<u8> {
    type_index_key(tag, position)
}

/// The position in a `type_index` (or `tag_index`) key.
pub fn type_index_position(key: &[u8]) -> Result<u64, StoreError> {
    let tail = key
        .len()
        .checked_sub(8)
        .map(|at| &key[at..])
        .ok_or_else(|| StoreError::Corrupt("short type index key".into()))?;
    Ok(u64::from_be_bytes(tail.try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_meta_round_trips() {
        let meta = StreamMeta {
            stream_number: 7,
            next_version: 10,
            first_visible_version: 4,
            deleted: true,
            tombstoned: false,
        };
        assert_eq!(StreamMeta::decode(&meta.encode()).unwrap(), meta);
        assert!(StreamMeta::decode(&[0u8; 3]).is_err());
        let tombstone = StreamMeta {
            tombstoned: true,
            ..meta
        };
        assert_eq!(tombstone.encode()[24], 3);
        assert_eq!(StreamMeta::decode(&tombstone.encode()).unwrap(), tombstone);
        // Format 2 wrote 0 or 1 in the last byte: they read back as before.
        let mut old = meta.encode();
        old[24] = 0;
        assert!(!StreamMeta::decode(&old).unwrap().deleted);
        old[24] = 2;
        assert!(
            StreamMeta::decode(&old).is_err(),
            "tombstone without delete"
        );
        old[24] = 4;
        assert!(StreamMeta::decode(&old).is_err());
    }

    #[test]
    fn stream_limits_round_trip() {
        for limits in [
            StreamLimits::default(),
            StreamLimits {
                max_count: Some(3),
                max_age_ms: None,
                truncate_before: Some(0),
            },
            StreamLimits {
                max_count: Some(u64::MAX),
                max_age_ms: Some(1),
                truncate_before: Some(9),
            },
        ] {
            assert_eq!(StreamLimits::decode(&limits.encode()).unwrap(), limits);
        }
        assert!(StreamLimits::default().is_empty());
        assert!(StreamLimits::decode(&[8u8; 25]).is_err());
        assert!(StreamLimits::decode(&[0u8; 24]).is_err());
    }

    #[test]
    fn keys_sort_numerically() {
        assert!(stream_index_key(1, 255) < stream_index_key(1, 256));
        assert!(stream_index_key(1, u64::MAX) < stream_index_key(2, 0));
        assert!(type_index_key("A", 255) < type_index_key("A", 256));
        assert_eq!(
            type_index_position(&type_index_key("Type", 42)).unwrap(),
            42
        );
        assert!(snapshot_key("a", 255) < snapshot_key("a", 256));
        assert!(snapshot_key("a", u64::MAX) < snapshot_key("a-", 0));
        assert_eq!(snapshot_key_version(&snapshot_key("s", 42)).unwrap(), 42);
    }
}
