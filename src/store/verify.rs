//! The offline check of one store's LMDB environment, for `esdb verify` (src/cli/verify.rs).
//!
//! Opens the environment read-only (it changes nothing, not even an old format) and walks it:
//! every event record's checksum, that it parses as an event record at its own position, and
//! that each index (`stream_index`, `event_ids`, `type_index`, and `tag_index` for each of its
//! tags) has its entry for it; then each index from its side, that every entry points at an
//! event (no dangling entries) and that no index holds more entries than there are events (tag
//! entries than there are tags); every stream's metadata; every snapshot's checksum. The caller holds the data directory's lock, so no server writes meanwhile.

use std::path::Path;

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, Unit, U64};
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, RoTxn};
use serde::Deserialize;
use uuid::Uuid;

use crate::store::checksum::{self, RecordKind};
use crate::store::schema::{
    stream_index_key, tag_index_key, type_index_key, type_index_position, StreamMeta,
    DATABASE_COUNT, FORMAT_VERSION, META_FORMAT_VERSION, META_NEXT_POSITION,
};
use crate::store::upgrade::FIRST_SEALED_FORMAT;

/// Problems listed per store; past it they are only counted (a store damaged throughout
/// would otherwise print millions of lines).
pub const MAX_LISTED_PROBLEMS: usize = 1000;

/// What the check of one store found.
#[derive(Debug, Default)]
pub struct StoreReport {
    /// The store's format (`None`: format 1).
    pub format: Option<u64>,
    pub events: u64,
    pub snapshots: u64,
    pub streams: u64,
    /// Index entries checked, `stream_index`, `event_ids` and `type_index` together.
    pub index_entries: u64,
    /// Whether records carry checksums (format 3 on); older ones are checked for structure.
    pub checksummed: bool,
    /// Every problem found, up to [`MAX_LISTED_PROBLEMS`].
    pub problems: Vec<String>,
    /// Problems found, listed or not.
    pub problem_count: u64,
}

impl StoreReport {
    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(text);
        }
    }
}

type Db<K, V> = Database<'static, K, V>;
type Position = U64<BigEndian>;

/// The fields of an event record the check compares with the indexes.
#[derive(Deserialize)]
struct Head {
    event_id: Uuid,
    event_type: String,
    stream_id: String,
    version: u64,
    position: u64,
    #[serde(default)]
    tags: Vec<String>,
}

/// Checks the store whose environment is in `dir`. `Err` only when it cannot be read at all.
pub fn verify_store(dir: &Path) -> Result<StoreReport, String> {
    let data = dir.join("data.mdb");
    let size = std::fs::metadata(&data)
        .map_err(|e| format!("{}: {e}", data.display()))?
        .len();
    let mut options = EnvOpenOptions::new();
    // LMDB raises a map smaller than what the file holds to what it needs.
    options
        .map_size((size as usize).max(1 << 20).next_multiple_of(1 << 16))
        .max_dbs(DATABASE_COUNT + 8);
    // SAFETY: opened once in this process, read-only, while the data directory's lock keeps
    // any server away.
    let env = unsafe {
        options.flags(EnvFlags::READ_ONLY);
        options.open(dir)
    }
    .map_err(|e| format!("opening {} read-only: {e}", dir.display()))?;
    let report = open_and_check(&env).map_err(|e| format!("reading {}: {e}", dir.display()));
    env.prepare_for_closing().wait();
    report
}

/// The databases the check reads; `None` where one is missing.
type Opened = (
    Option<Db<Str, Position>>,
    Option<Db<Position, Bytes>>,
    Option<Db<Str, Bytes>>,
    Option<Db<Bytes, Position>>,
    Option<Db<Bytes, Position>>,
    Option<Db<Bytes, Unit>>,
    Option<Db<Bytes, Bytes>>,
    // `tag_index`: absent before format 5.
    Option<Db<Bytes, Unit>>,
);

fn open_and_check(env: &Env) -> heed::Result<StoreReport> {
    let rtxn = env.read_txn()?;
    let opened: Opened = env
        .open_databases_and_commit(rtxn, |opener, rtxn| -> heed::Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit((
                opener.open_database(rtxn, Some("meta"))?,
                opener.open_database(rtxn, Some("events"))?,
                opener.open_database(rtxn, Some("streams"))?,
                opener.open_database(rtxn, Some("stream_index"))?,
                opener.open_database(rtxn, Some("event_ids"))?,
                opener.open_database(rtxn, Some("type_index"))?,
                opener.open_database(rtxn, Some("snapshots"))?,
                opener.open_database(rtxn, Some("tag_index"))?,
            )))
        })?
        .unwrap_commit();
    let txn = env.read_txn()?;
    check(&txn, opened)
}

fn check(txn: &RoTxn, opened: Opened) -> heed::Result<StoreReport> {
    let mut report = StoreReport::default();
    let (meta, events, streams, stream_index, event_ids, type_index, snapshots, tag_index) = opened;
    let mut tags_seen = 0u64;
    let (
        Some(meta),
        Some(events),
        Some(streams),
        Some(stream_index),
        Some(event_ids),
        Some(type_index),
    ) = (meta, events, streams, stream_index, event_ids, type_index)
    else {
        report.problem("the events, streams, meta or an index database is missing".into());
        return Ok(report);
    };
    report.format = meta.get(txn, META_FORMAT_VERSION)?;
    report.checksummed = report.format.is_some_and(|f| f >= FIRST_SEALED_FORMAT);
    if report.format.is_some_and(|f| f > FORMAT_VERSION) {
        report.problem(format!(
            "format {} is newer than this build reads ({FORMAT_VERSION})",
            report.format.unwrap_or(0)
        ));
        return Ok(report);
    }
    let next_position = meta.get(txn, META_NEXT_POSITION)?.unwrap_or(0);

    // Each event, and its index entries.
    for entry in events.iter(txn)? {
        let (position, stored) = entry?;
        report.events += 1;
        if position >= next_position {
            report.problem(format!(
                "event at position {position} is past next_position {next_position}"
            ));
        }
        let record = if report.checksummed {
            match checksum::unseal_event(position, stored) {
                Ok(record) => record,
                Err(corruption) => {
                    report.problem(corruption.to_string());
                    continue;
                }
            }
        } else {
            stored
        };
        let head: Head = match serde_json::from_slice(record) {
            Ok(head) => head,
            Err(error) => {
                report.problem(format!(
                    "the event at position {position} is not an event record: {error}"
                ));
                continue;
            }
        };
        if head.position != position {
            report.problem(format!(
                "the event at position {position} says it is at position {}",
                head.position
            ));
        }
        let place = format!(
            "event at position {position} (stream {}, version {})",
            head.stream_id, head.version
        );
        match streams.get(txn, &head.stream_id)?.map(StreamMeta::decode) {
            Some(Ok(stream)) => {
                let key = stream_index_key(stream.stream_number, head.version);
                if stream_index.get(txn, &key)? != Some(position) {
                    report.problem(format!("{place}: the stream index does not point at it"));
                }
                if head.version >= stream.next_version {
                    report.problem(format!(
                        "{place}: past its stream's next version {}",
                        stream.next_version
                    ));
                }
            }
            Some(Err(error)) => report.problem(format!("{place}: its stream's metadata: {error}")),
            None => report.problem(format!("{place}: its stream has no metadata")),
        }
        if event_ids.get(txn, head.event_id.as_bytes())? != Some(position) {
            report.problem(format!(
                "{place}: the event id index does not point at it ({})",
                head.event_id
            ));
        }
        if type_index
            .get(txn, &type_index_key(&head.event_type, position))?
            .is_none()
        {
            report.problem(format!("{place}: the type index lacks it"));
        }
        for tag in &head.tags {
            tags_seen += 1;
            let indexed = match tag_index {
                Some(tag_index) => tag_index.get(txn, &tag_index_key(tag, position))?.is_some(),
                None => false,
            };
            if !indexed {
                report.problem(format!("{place}: the tag index lacks its tag {tag}"));
            }
        }
    }

    // Each index from its side: nothing dangling, nothing extra.
    let dangling = |report: &mut StoreReport, index: &str, key: String, position: u64| {
        report.problem(format!(
            "{index} entry {key} points at position {position}, which holds no event"
        ));
    };
    let mut counts = [0u64; 3];
    for entry in stream_index.iter(txn)? {
        let (key, position) = entry?;
        counts[0] += 1;
        if events.get(txn, &position)?.is_none() {
            dangling(&mut report, "stream_index", format!("{key:02x?}"), position);
        }
    }
    for entry in event_ids.iter(txn)? {
        let (key, position) = entry?;
        counts[1] += 1;
        if events.get(txn, &position)?.is_none() {
            let id =
                Uuid::from_slice(key).map_or_else(|_| format!("{key:02x?}"), |id| id.to_string());
            dangling(&mut report, "event_ids", id, position);
        }
    }
    for entry in type_index.iter(txn)? {
        let (key, ()) = entry?;
        counts[2] += 1;
        match type_index_position(key) {
            Ok(position) if events.get(txn, &position)?.is_some() => {}
            Ok(position) => {
                let event_type = key.get(..key.len().saturating_sub(9)).unwrap_or_default();
                let event_type = String::from_utf8_lossy(event_type).into_owned();
                dangling(&mut report, "type_index", event_type, position)
            }
            Err(error) => report.problem(format!("type_index: {error}")),
        }
    }
    if let Some(tag_index) = tag_index {
        let mut count = 0u64;
        for entry in tag_index.iter(txn)? {
            let (key, ()) = entry?;
            count += 1;
            match type_index_position(key) {
                Ok(position) if events.get(txn, &position)?.is_some() => {}
                Ok(position) => {
                    let tag = key.get(..key.len().saturating_sub(9)).unwrap_or_default();
                    let tag = String::from_utf8_lossy(tag).into_owned();
                    dangling(&mut report, "tag_index", tag, position)
                }
                Err(error) => report.problem(format!("tag_index: {error}")),
            }
        }
        report.index_entries += count;
        if count != tags_seen {
            report.problem(format!(
                "tag_index has {count} entries for {tags_seen} tags of events"
            ));
        }
    }
    for (name, count) in ["stream_index", "event_ids", "type_index"]
        .iter()
        .zip(counts)
    {
        report.index_entries += count;
        if count != report.events {
            report.problem(format!(
                "{name} has {count} entries for {} events",
                report.events
            ));
        }
    }

    for entry in streams.iter(txn)? {
        let (name, value) = entry?;
        report.streams += 1;
        if let Err(error) = StreamMeta::decode(value) {
            report.problem(format!("stream {name}: {error}"));
        }
    }

    if let Some(snapshots) = snapshots {
        for entry in snapshots.iter(txn)? {
            let (key, stored) = entry?;
            report.snapshots += 1;
            if report.checksummed {
                if let Err(corruption) = checksum::unseal(RecordKind::Snapshot, key, stored) {
                    report.problem(corruption.at_snapshot_key(key).to_string());
                }
            }
        }
    }
    Ok(report)
}
