//! Commands and the one deterministic function that applies them.
//!
//! Every write to a store is a [`Command`]. [`apply`] checks it against the current state and
//! writes it inside the caller's write transaction; it reads no clock and no randomness (the
//! timestamp and event ids travel in the command), so replaying the same commands in the same
//! order on another node (Raft) yields the same bytes. A command is all-or-nothing: every check
//! happens before the first write.

use std::sync::Arc;

use bytes::Bytes;
use heed::{PutFlags, RwTxn};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use esdb_protocol::ExpectedVersion;

use crate::store::checksum;
use crate::store::clock::{commit_time, index_commit};
use crate::store::committed::CommittedEvent;
use crate::store::crypto::{self, KeyState};
use crate::store::lifecycle;
use crate::store::multi::{self, AppendMultiCommand};
use crate::store::record::{build_record, RecordPlace};
use crate::store::retention::{load_limits, shown_on_commit};
use crate::store::scavenge;
use crate::store::schema::{
    snapshot_key, stream_index_key, tag_index_key, type_index_key, Databases, StreamLimits,
    StreamMeta, META_NEXT_POSITION,
};
use crate::store::snapshots::{self, build_snapshot_record};
use crate::store::subscriptions::{self, ParkedEvent, SubscriptionDefinition};
use crate::store::{Rejection, StoreError};

/// A write, as the writer thread (and later Raft) carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Append(AppendCommand),
    Delete {
        stream: String,
        expected: ExpectedVersion,
    },
    CreateSubscription(SubscriptionDefinition),
    DeleteSubscription {
        name: String,
        type_name: Option<String>,
    },
    SaveSubscriptionState {
        name: String,
        checkpoint: u64,
        park: Vec<ParkedEvent>,
        unpark: Vec<u64>,
    },
    RequestReplay {
        name: String,
    },
    SaveSnapshot(SaveSnapshotCommand),
    /// Deletes the stream's snapshot at `version`, or every snapshot of it when `None`.
    DeleteSnapshots {
        stream: String,
        version: Option<u64>,
    },
    /// `DELETE … hard`: deletes the stream and leaves a tombstone, so it is never written again.
    Tombstone {
        stream: String,
        expected: ExpectedVersion,
    },
    /// `META <stream> <json>`: replaces the stream's limits (none left: removes them).
    SetStreamLimits {
        stream: String,
        limits: StreamLimits,
    },
    /// `APPENDMULTI`: several streams at once, all or nothing, optionally conditional
    /// ([`crate::store::multi`]).
    AppendMulti(AppendMultiCommand),
    /// `SCAVENGE`: starts a scavenge of every position before the head (see [`scavenge`]).
    ScavengeStart {
        epoch_us: u64,
    },
    /// One slice of the running scavenge, proposed by its job (see [`scavenge`]).
    ScavengeSlice {
        from_position: u64,
        to_position: u64,
        /// The time limits are judged at (`max_age_ms`), taken by the proposing node.
        now_us: u64,
    },
    /// `ENCRYPT`: gives a new stream its data key, made and wrapped by the proposing node
    /// ([`crypto`]).
    Encrypt {
        stream: String,
        wrapped_key: Vec<u8>,
    },
    /// `SHRED`: destroys the stream's data key and deletes its snapshots.
    Shred {
        stream: String,
    },
}

impl Command {
    /// Approximate size, for bounding a group-commit batch.
    pub fn size_bytes(&self) -> usize {
        match self {
            Command::Append(append) => events_size_bytes(&append.events),
            Command::AppendMulti(multi) => multi
                .parts
                .iter()
                .map(|part| events_size_bytes(&part.events))
                .sum::<usize>(),
            Command::SaveSubscriptionState { park, unpark, .. } => {
                let reasons: usize = park
                    .iter()
                    .filter_map(|p| p.reason.as_ref())
                    .map(String::len)
                    .sum();
                64 + 8 * (park.len() + unpark.len()) + reasons
            }
            Command::Delete { .. }
            | Command::Tombstone { .. }
            | Command::SetStreamLimits { .. }
            | Command::CreateSubscription(_)
            | Command::DeleteSubscription { .. }
            | Command::RequestReplay { .. }
            | Command::ScavengeStart { .. }
            | Command::ScavengeSlice { .. }
            | Command::Encrypt { .. }
            | Command::Shred { .. } => 64,
            Command::DeleteSnapshots { .. } => 64,
            Command::SaveSnapshot(save) => {
                save.data.get().len() + save.metadata.as_ref().map_or(2, |m| m.get().len())
            }
        }
    }
}

fn events_size_bytes(events: &[NewEvent]) -> usize {
    events
        .iter()
        .map(|e| {
            e.data.get().len()
                + e.metadata.as_ref().map_or(2, |m| m.get().len())
                + e.tags.iter().map(String::len).sum::<usize>()
        })
        .sum()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendCommand {
    pub stream: String,
    pub expected: ExpectedVersion,
    /// Taken once per append by the node that accepted it, so every event of the append (and
    /// every replica) records the same time.
    pub epoch_us: u64,
    pub events: Vec<NewEvent>,
    /// Every event's `data` is sealed under the stream's data key ([`crypto`]). Left out of
    /// the log entry when false, so appends to streams that are not encrypted keep the shape
    /// older logs have.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaveSnapshotCommand {
    pub stream: String,
    pub version: u64,
    /// Taken by the node that accepted the save, like an append's.
    pub epoch_us: u64,
    pub data: Box<RawValue>,
    pub metadata: Option<Box<RawValue>>,
    /// After saving, keep only the stream's newest `keep` snapshots.
    pub keep: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub data: Box<RawValue>,
    pub metadata: Option<Box<RawValue>>,
    /// Indexed in `tag_index`. Left out of the log entry when empty, so untagged appends keep
    /// the shape older logs have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// What a command did when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Appended {
        last_version: u64,
        last_position: u64,
        event_count: u64,
    },
    /// The append repeated an earlier one (same event ids at the same place): nothing written.
    AlreadyAppended {
        last_version: u64,
        last_position: u64,
    },
    Deleted,
    /// A persistent subscription exists now (`created`: it did not before).
    SubscriptionReady {
        created: bool,
    },
    /// A command without a result of its own succeeded.
    Done,
    /// A snapshot was saved (overwriting one at the same version); `pruned` older ones were
    /// deleted by retention.
    SnapshotSaved {
        pruned: u64,
    },
    SnapshotsDeleted {
        count: u64,
    },
    /// `APPENDMULTI`: each part's result, in the parts' order; `replayed`: the command was a
    /// retry of one that succeeded, and nothing was written.
    AppendedMulti {
        parts: Vec<crate::store::multi::PartResult>,
        replayed: bool,
    },
    /// `started`: false when a scavenge was already running (nothing changed).
    ScavengeStarted {
        started: bool,
    },
    /// A scavenge slice removed `removed` events (`bytes` of keys and values); `done`: this
    /// slice ended the walk. A slice that did not start where the walk stood did nothing.
    ScavengeSliced {
        removed: u64,
        bytes: u64,
        done: bool,
    },
}

/// Applies one command inside `txn`. `Ok(Err(_))` is a rejection that wrote nothing;
/// `Err(_)` is a storage failure, after which the caller must abort the transaction.
///
/// Events written are pushed onto `committed` (in position order) for subscriptions; the
/// caller publishes them only once the transaction has committed.
pub fn apply(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    command: &Command,
    committed: &mut Vec<CommittedEvent>,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    match command {
        Command::Append(append) => apply_append(txn, dbs, append, committed),
        Command::AppendMulti(multi) => multi::apply_append_multi(txn, dbs, multi, committed),
        Command::Delete { stream, expected } => apply_delete(txn, dbs, stream, *expected),
        Command::Tombstone { stream, expected } => {
            lifecycle::apply_tombstone(txn, dbs, stream, *expected)
        }
        Command::SetStreamLimits { stream, limits } => {
            lifecycle::apply_set_limits(txn, dbs, stream, limits)
        }
        Command::ScavengeStart { epoch_us } => scavenge::apply_start(txn, dbs, *epoch_us),
        Command::ScavengeSlice {
            from_position,
            to_position,
            now_us,
        } => scavenge::apply_slice(txn, dbs, *from_position, *to_position, *now_us),
        Command::CreateSubscription(definition) => {
            subscriptions::apply_create(txn, dbs, definition)
        }
        Command::DeleteSubscription { name, type_name } => {
            subscriptions::apply_delete(txn, dbs, name, type_name.as_deref())
        }
        Command::SaveSubscriptionState {
            name,
            checkpoint,
            park,
            unpark,
        } => subscriptions::apply_save_state(txn, dbs, name, *checkpoint, park, unpark),
        Command::RequestReplay { name } => subscriptions::apply_request_replay(txn, dbs, name),
        Command::SaveSnapshot(save) => apply_save_snapshot(txn, dbs, save),
        Command::DeleteSnapshots { stream, version } => {
            let count = snapshots::delete(txn, dbs, stream, *version)?;
            Ok(Ok(Outcome::SnapshotsDeleted { count }))
        }
        Command::Encrypt {
            stream,
            wrapped_key,
        } => apply_encrypt(txn, dbs, stream, wrapped_key),
        Command::Shred { stream } => apply_shred(txn, dbs, stream),
    }
}

/// A data key for a stream that has never held an event (or the same stream again: a no-op).
fn apply_encrypt(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    stream: &str,
    wrapped_key: &[u8],
) -> Result<Result<Outcome, Rejection>, StoreError> {
    let stream_owned = || stream.to_owned();
    match crypto::key_state(txn, dbs, stream)? {
        Some(KeyState::Wrapped(_)) => return Ok(Ok(Outcome::Done)),
        Some(KeyState::Shredded) => {
            return Ok(Err(Rejection::StreamShredded {
                stream: stream_owned(),
            }))
        }
        None => {}
    }
    if let Some(meta) = load_meta(txn, dbs, stream)? {
        if meta.tombstoned {
            return Ok(Err(Rejection::StreamTombstoned {
                stream: stream_owned(),
            }));
        }
        // Even deleted, its events are still in `$all`, unencrypted: a key now would promise
        // an erasure SHRED could not keep.
        return Ok(Err(Rejection::EncryptExisting {
            stream: stream_owned(),
            next_version: meta.next_version,
        }));
    }
    if wrapped_key.len() != crypto::WRAPPED_KEY_BYTES {
        return Err(StoreError::Corrupt(format!(
            "ENCRYPT {stream} carries a {}-byte key",
            wrapped_key.len()
        )));
    }
    let state = KeyState::Wrapped(wrapped_key.to_vec()).encode();
    dbs.data_keys.put(txn, stream, &state)?;
    Ok(Ok(Outcome::Done))
}

/// Destroys the stream's data key and its snapshots, which were folded from data that is gone
/// now. (LMDB copies a page on write, so the freed page keeps the wrapped key until it is
/// reused: see [`crypto`] on what shredding does not erase.)
fn apply_shred(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    stream: &str,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    match crypto::key_state(txn, dbs, stream)? {
        None => Ok(Err(Rejection::NotEncrypted {
            stream: stream.to_owned(),
        })),
        Some(KeyState::Shredded) => Ok(Ok(Outcome::Done)),
        Some(KeyState::Wrapped(_)) => {
            dbs.data_keys
                .put(txn, stream, &KeyState::Shredded.encode())?;
            snapshots::delete(txn, dbs, stream, None)?;
            Ok(Ok(Outcome::Done))
        }
    }
}

pub(crate) fn load_meta(
    txn: &RwTxn<'_>,
    dbs: &Databases,
    stream: &str,
) -> Result<Option<StreamMeta>, StoreError> {
    dbs.streams
        .get(txn, stream)?
        .map(StreamMeta::decode)
        .transpose()
}

pub(crate) fn check_expected(
    stream: &str,
    expected: ExpectedVersion,
    current: Option<u64>,
) -> Result<(), Rejection> {
    let ok = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current.is_none(),
        ExpectedVersion::Exists => current.is_some(),
        ExpectedVersion::Exact(version) => current == Some(version),
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::WrongExpectedVersion {
            stream: stream.to_owned(),
            expected,
            actual: current.map_or(-1, |v| v as i64),
        })
    }
}

fn apply_append(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    append: &AppendCommand,
    committed: &mut Vec<CommittedEvent>,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    match check_append(
        txn,
        dbs,
        &append.stream,
        append.expected,
        &append.events,
        append.sealed,
    )? {
        Err(rejection) => Ok(Err(rejection)),
        Ok(Checked::Retry(outcome)) => Ok(Ok(outcome)),
        Ok(Checked::Write(meta)) => Ok(Ok(write_append(
            txn,
            dbs,
            &append.stream,
            append.epoch_us,
            &append.events,
            append.sealed,
            meta,
            committed,
        )?)),
    }
}

/// What the checks of one append decided.
pub(crate) enum Checked {
    /// A retry of an append that succeeded: answer this, write nothing.
    Retry(Outcome),
    /// Every check passed: write, over this metadata (`None`: a new stream).
    Write(Option<StreamMeta>),
}

/// Every check of an append to one stream, in order: tombstone, idempotency, shredding and
/// sealing, expected version, duplicate event ids. Writes nothing.
pub(crate) fn check_append(
    txn: &RwTxn<'_>,
    dbs: &Databases,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
    sealed: bool,
) -> Result<Result<Checked, Rejection>, StoreError> {
    assert!(!events.is_empty(), "the protocol refuses empty appends");
    let meta = load_meta(txn, dbs, stream)?;
    if meta.is_some_and(|meta| meta.tombstoned) {
        // Before the idempotency check too: a tombstoned stream answers every write alike.
        return Ok(Err(Rejection::StreamTombstoned {
            stream: stream.to_owned(),
        }));
    }
    if let Some(meta) = meta {
        if let Some(outcome) = earlier_identical_append(txn, dbs, stream, expected, events, &meta)?
        {
            return Ok(Ok(Checked::Retry(outcome)));
        }
    }
    // The proposing node sealed by what it knew of the stream's key; the log decides.
    let stream_owned = || stream.to_owned();
    match (crypto::key_state(txn, dbs, stream)?, sealed) {
        (Some(KeyState::Shredded), _) => {
            return Ok(Err(Rejection::StreamShredded {
                stream: stream_owned(),
            }))
        }
        (Some(KeyState::Wrapped(_)), true) | (None, false) => {}
        (Some(KeyState::Wrapped(_)), false) | (None, true) => {
            return Ok(Err(Rejection::SealingChanged {
                stream: stream_owned(),
            }))
        }
    }
    let current = meta.and_then(|m| m.current_version());
    if let Err(rejection) = check_expected(stream, expected, current) {
        return Ok(Err(rejection));
    }
    for event in events {
        if let Some(position) = dbs.event_ids.get(txn, event.event_id.as_bytes())? {
            let place = record_place(txn, dbs, position)?;
            return Ok(Err(Rejection::DuplicateEventId {
                event_id: event.event_id,
                stream: place.stream_id,
                version: place.version,
            }));
        }
    }
    Ok(Ok(Checked::Write(meta)))
}

/// Writes an append that passed [`check_append`]: the records and every index.
// The arguments are the append's parts, shared by APPEND and APPENDMULTI's parts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_append(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    stream_id: &str,
    proposed_epoch_us: u64,
    events: &[NewEvent],
    sealed: bool,
    meta: Option<StreamMeta>,
    committed: &mut Vec<CommittedEvent>,
) -> Result<Outcome, StoreError> {
    let mut meta = match meta {
        Some(meta) => meta,
        None => lifecycle::new_stream_meta(txn, dbs)?,
    };
    meta.deleted = false;
    let mut position = dbs.meta.get(txn, META_NEXT_POSITION)?.unwrap_or(0);
    // Never before the store's last commit, whoever built the command (see `clock`).
    let epoch_us = commit_time(txn, dbs, proposed_epoch_us)?;
    index_commit(txn, dbs, epoch_us, position)?;
    let limits = load_limits(txn, dbs, stream_id)?;
    let first_shown = shown_on_commit(limits.as_ref(), meta.next_version + events.len() as u64);
    let stream: Arc<str> = Arc::from(stream_id);
    for event in events {
        let version = meta.next_version;
        let record = build_record(
            &event.event_id,
            &event.event_type,
            stream_id,
            version,
            position,
            epoch_us,
            &event.data,
            event.metadata.as_deref(),
            &event.tags,
        );
        // Subscribers get the record as reads give it: opened, for a sealed one.
        let (record, opened) = if sealed {
            let record = crypto::mark_sealed(&record);
            // Never a reason to stop applying: what is stored does not depend on it. A node
            // without the master key (or with another) publishes the sealed form, and its
            // reads say why they cannot open it (not logged here: a log replay would say it
            // once per event).
            let opened = match crypto::open_record(txn, dbs, &record) {
                Ok(opened) => Bytes::from(opened.into_owned()),
                Err(_) => Bytes::from(record.clone()),
            };
            (record, Some(opened))
        } else {
            (record, None)
        };
        let json_len = record.len();
        let record = checksum::seal(&position.to_be_bytes(), record);
        // Positions only grow, so APPEND fills pages completely; a KEYEXIST here would mean
        // `next_position` went backwards, which is corruption.
        dbs.events
            .put_with_flags(txn, PutFlags::APPEND, &position, &record)?;
        dbs.stream_index.put(
            txn,
            &stream_index_key(meta.stream_number, version),
            &position,
        )?;
        dbs.event_ids
            .put(txn, event.event_id.as_bytes(), &position)?;
        dbs.type_index
            .put(txn, &type_index_key(&event.event_type, position), &())?;
        for tag in &event.tags {
            dbs.tag_index.put(txn, &tag_index_key(tag, position), &())?;
        }
        committed.push(CommittedEvent {
            position,
            version,
            stream: stream.clone(),
            event_type: Arc::from(event.event_type.as_str()),
            // The JSON without its checksum, sharing the buffer.
            record: opened.unwrap_or_else(|| Bytes::from(record).slice(..json_len)),
            hidden: version < first_shown,
        });
        meta.next_version += 1;
        position += 1;
    }
    dbs.meta.put(txn, META_NEXT_POSITION, &position)?;
    dbs.streams.put(txn, stream_id, &meta.encode())?;
    Ok(Outcome::Appended {
        last_version: meta.next_version - 1,
        last_position: position - 1,
        event_count: events.len() as u64,
    })
}

/// Idempotency: when every event id of the append is already stored, in this stream, at
/// consecutive versions in the same order, and the expectation held at that place, the append
/// is a retry of one that succeeded. Answer as it was answered; write nothing.
fn earlier_identical_append(
    txn: &RwTxn<'_>,
    dbs: &Databases,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
    meta: &StreamMeta,
) -> Result<Option<Outcome>, StoreError> {
    let mut first_version = None;
    let mut last = (0, 0);
    for (index, event) in events.iter().enumerate() {
        let Some(position) = dbs.event_ids.get(txn, event.event_id.as_bytes())? else {
            return Ok(None);
        };
        let place = record_place(txn, dbs, position)?;
        if place.stream_id != stream {
            return Ok(None);
        }
        let first = *first_version.get_or_insert(place.version);
        if place.version != first + index as u64 {
            return Ok(None);
        }
        last = (place.version, position);
    }
    let Some(first) = first_version else {
        return Ok(None);
    };
    let held_there = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => first == meta.first_visible_version,
        ExpectedVersion::Exists => first > meta.first_visible_version,
        // Like `Exists`: at `first_visible_version` the stream showed no events.
        ExpectedVersion::Exact(version) => {
            version + 1 == first && first > meta.first_visible_version
        }
    };
    Ok(held_there.then_some(Outcome::AlreadyAppended {
        last_version: last.0,
        last_position: last.1,
    }))
}

pub(crate) fn record_place(
    txn: &RwTxn<'_>,
    dbs: &Databases,
    position: u64,
) -> Result<RecordPlace, StoreError> {
    let stored = dbs.events.get(txn, &position)?.ok_or_else(|| {
        StoreError::Corrupt(format!("event id points at missing position {position}"))
    })?;
    // A damaged record stops the apply (a storage failure) rather than decide an idempotency
    // or duplicate check on bytes no other replica has.
    let record = checksum::unseal_event(position, stored)?;
    serde_json::from_slice(record)
        .map_err(|e| StoreError::Corrupt(format!("record at position {position}: {e}")))
}

fn apply_delete(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    let meta = load_meta(txn, dbs, stream)?;
    let current = meta.and_then(|m| m.current_version());
    if let Err(rejection) = check_expected(stream, expected, current) {
        return Ok(Err(rejection));
    }
    // Deleting what shows no events is a no-op, so a retried DELETE succeeds.
    if let (Some(mut meta), Some(_)) = (meta, current) {
        meta.deleted = true;
        meta.first_visible_version = meta.next_version;
        dbs.streams.put(txn, stream, &meta.encode())?;
    }
    // The snapshots go with the stream: they fold events that are now hidden, so a recreated
    // stream must not start from them. (A stream showing no events has none; this is cheap.)
    snapshots::delete(txn, dbs, stream, None)?;
    Ok(Ok(Outcome::Deleted))
}

/// A snapshot must be of a version the stream shows: not beyond its current version, and not
/// before the version where it restarted after a delete.
fn apply_save_snapshot(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    save: &SaveSnapshotCommand,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    let stream = save.stream.clone();
    // What it would fold is erased: a snapshot of it must not bring the data back.
    if crypto::key_state(txn, dbs, &save.stream)? == Some(KeyState::Shredded) {
        return Ok(Err(Rejection::StreamShredded { stream }));
    }
    let Some(meta) = load_meta(txn, dbs, &save.stream)? else {
        return Ok(Err(Rejection::StreamNotFound { stream }));
    };
    let Some(current) = meta.current_version() else {
        return Ok(Err(Rejection::StreamDeleted { stream }));
    };
    if save.version > current {
        let version = save.version;
        return Ok(Err(Rejection::SnapshotBeyondStream {
            stream,
            version,
            current,
        }));
    }
    if save.version < meta.first_visible_version {
        let (version, first) = (save.version, meta.first_visible_version);
        return Ok(Err(Rejection::SnapshotBeforeStream {
            stream,
            version,
            first,
        }));
    }
    let record = build_snapshot_record(
        &save.stream,
        save.version,
        &save.data,
        save.metadata.as_deref(),
        save.epoch_us,
    );
    let key = snapshot_key(&save.stream, save.version);
    let record = checksum::seal(&key, record);
    dbs.snapshots.put(txn, &key, &record)?;
    let pruned = match save.keep {
        Some(keep) => snapshots::retain_newest(txn, dbs, &save.stream, keep)?,
        None => 0,
    };
    Ok(Ok(Outcome::SnapshotSaved { pruned }))
}
