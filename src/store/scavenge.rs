//! Scavenging: removing, from `events` and every index, the events reads no longer show
//! (hidden by a delete, soft or hard, or by the stream's limits: `max_count`, `max_age_ms`,
//! `truncate_before`), so their pages are freed for later writes.
//!
//! A scavenge is a walk over `$all` in position order, in slices. Both the start and every
//! slice are [`Command`](crate::store::Command)s, applied by the deterministic `apply` on every
//! node: each replica removes exactly the same events, and the scavenge's state (how far it got,
//! what it removed) lives in `meta`, written in the same transaction as the removals and the
//! applied log id. The background job ([`crate::store::scavenger`]) only proposes the slices;
//! after a crash the state on disk says where the walk stands, and the job goes on from there.
//!
//! - [`Command::ScavengeStart`](crate::store::Command::ScavengeStart) fixes the end of the walk
//!   (the head when it starts: what is appended later is left for the next scavenge) and resets
//!   the counters; while a scavenge runs, another start changes nothing.
//! - [`Command::ScavengeSlice`](crate::store::Command::ScavengeSlice) removes what is invisible
//!   among the positions `[from, to)`, at the slice's `now_us` (for `max_age_ms`). It examines at
//!   most [`MAX_SLICE_EVENTS`] events, the bound on the write work one slice adds to an apply
//!   (and so on how long it holds up the appends behind it). A slice that does not start where
//!   the walk stands (a duplicate, or one proposed by another node's job) changes nothing.
//!
//! Positions are never reused or renumbered: a removed event leaves a gap in `$all`, which
//! readers pass over as they pass over events hidden by limits. The commit-time index keeps
//! its entries (one per commit, not per event): a `from_time` read that lands on a removed
//! position starts at the next event there is.
//!
//! LMDB never shrinks its file: the bytes reclaimed are pages on LMDB's free list, which later
//! writes reuse before the file grows. [`live_bytes`] measures the pages the databases still
//! hold, so the reclaimed space shows as the gap between it and the file's high-water mark.

use std::collections::HashMap;

use heed::{RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use crate::store::command::Outcome;
use crate::store::retention::first_shown;
use crate::store::schema::{
    parked_key, stream_index_key, tag_index_key, type_index_key, Databases, StreamMeta,
    META_NEXT_POSITION,
};
use crate::store::{Rejection, StoreError};

/// Most events one slice examines (and so removes): each costs a handful of B-tree deletes in
/// the apply's transaction, so a slice adds at most a few milliseconds to the commit it joins.
pub const MAX_SLICE_EVENTS: u64 = 512;

/// `meta` keys of the scavenge's state. `started_us` is absent until the first scavenge.
const META_STARTED_US: &str = "scavenge_started_us";
/// The position the walk ends before (the head when it started).
const META_UP_TO: &str = "scavenge_up_to";
/// The next position the walk examines.
const META_POSITION: &str = "scavenge_position";
const META_EVENTS_REMOVED: &str = "scavenge_events_removed";
const META_BYTES_RECLAIMED: &str = "scavenge_bytes_reclaimed";
/// 1 once the walk reached `up_to`.
const META_DONE: &str = "scavenge_done";
/// Scavenges started in this store, ever (for tests and operators: which run this is).
const META_RUNS: &str = "scavenge_runs";

/// Where the store's scavenge stands, as `SCAVENGE STATUS` answers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScavengeStatus {
    /// `none` (never scavenged), `running` or `done`.
    pub state: ScavengeState,
    /// Scavenges started in this store, this one included.
    pub runs: u64,
    /// When the current (or last) scavenge started, µs since the epoch (0: never).
    pub started_us: u64,
    /// The walk ends before this position (the head when it started).
    pub up_to_position: u64,
    /// The next position the walk examines (`up_to_position` once done).
    pub position: u64,
    /// Events removed by this scavenge so far.
    pub events_removed: u64,
    /// Bytes of records and index entries removed by this scavenge so far (keys and values).
    pub bytes_reclaimed: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScavengeState {
    #[default]
    None,
    Running,
    Done,
}

impl ScavengeStatus {
    pub fn running(&self) -> bool {
        self.state == ScavengeState::Running
    }
}

/// The scavenge's state from `meta`.
pub fn status(txn: &RoTxn, dbs: &Databases) -> Result<ScavengeStatus, StoreError> {
    let get = |key: &str| -> Result<u64, StoreError> { Ok(dbs.meta.get(txn, key)?.unwrap_or(0)) };
    let Some(started_us) = dbs.meta.get(txn, META_STARTED_US)? else {
        return Ok(ScavengeStatus::default());
    };
    let state = if get(META_DONE)? == 1 {
        ScavengeState::Done
    } else {
        ScavengeState::Running
    };
    Ok(ScavengeStatus {
        state,
        runs: get(META_RUNS)?,
        started_us,
        up_to_position: get(META_UP_TO)?,
        position: get(META_POSITION)?,
        events_removed: get(META_EVENTS_REMOVED)?,
        bytes_reclaimed: get(META_BYTES_RECLAIMED)?,
    })
}

/// `ScavengeStart`: starts a walk of every position before the head, unless one runs.
pub(crate) fn apply_start(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    epoch_us: u64,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    let current = status(txn, dbs)?;
    if current.running() {
        return Ok(Ok(Outcome::ScavengeStarted { started: false }));
    }
    let head = dbs.meta.get(txn, META_NEXT_POSITION)?.unwrap_or(0);
    let runs = current.runs + 1;
    for (key, value) in [
        (META_STARTED_US, epoch_us),
        (META_UP_TO, head),
        (META_POSITION, 0),
        (META_EVENTS_REMOVED, 0),
        (META_BYTES_RECLAIMED, 0),
        (META_DONE, u64::from(head == 0)),
        (META_RUNS, runs),
    ] {
        dbs.meta.put(txn, key, &value)?;
    }
    Ok(Ok(Outcome::ScavengeStarted { started: true }))
}

/// `ScavengeSlice`: removes the invisible events among `[from, to)` as of `now_us`, examining
/// at most [`MAX_SLICE_EVENTS`] (the walk then stands after the last one examined).
pub(crate) fn apply_slice(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    from: u64,
    to: u64,
    now_us: u64,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    let mut state = status(txn, dbs)?;
    if !state.running() || from != state.position || to <= from {
        return Ok(Ok(Outcome::ScavengeSliced {
            removed: 0,
            bytes: 0,
            done: false,
        }));
    }
    let to = to.min(state.up_to_position);
    let (examined, next) = examine(txn, dbs, from, to)?;
    let mut boundaries = Boundaries::new(now_us);
    let (mut removed, mut bytes) = (0, 0);
    for event in examined {
        let Some(meta) = boundaries.meta(txn, dbs, &event.stream)? else {
            return Err(StoreError::Corrupt(format!(
                "the event at position {} has no stream metadata",
                event.position
            )));
        };
        if event.version >= boundaries.first_shown(txn, dbs, &event.stream, &meta)? {
            continue;
        }
        bytes += remove(txn, dbs, &event, meta.stream_number)?;
        removed += 1;
    }
    state.position = next;
    state.events_removed += removed;
    state.bytes_reclaimed += bytes;
    let done = next >= state.up_to_position;
    dbs.meta.put(txn, META_POSITION, &next)?;
    dbs.meta
        .put(txn, META_EVENTS_REMOVED, &state.events_removed)?;
    dbs.meta
        .put(txn, META_BYTES_RECLAIMED, &state.bytes_reclaimed)?;
    dbs.meta.put(txn, META_DONE, &u64::from(done))?;
    Ok(Ok(Outcome::ScavengeSliced {
        removed,
        bytes,
        done,
    }))
}

/// One stored event the walk looked at.
struct Examined {
    position: u64,
    stream: String,
    version: u64,
    event_id: uuid::Uuid,
    event_type: String,
    tags: Vec<String>,
    stored_bytes: usize,
}

#[derive(Deserialize)]
struct Head {
    event_id: uuid::Uuid,
    event_type: String,
    stream_id: String,
    version: u64,
    /// Only tagged events (format 5) carry the field.
    #[serde(default)]
    tags: Vec<String>,
}

/// The events stored in `[from, to)`, at most [`MAX_SLICE_EVENTS`], and where the walk stands
/// after them.
fn examine(
    txn: &RoTxn,
    dbs: &Databases,
    from: u64,
    to: u64,
) -> Result<(Vec<Examined>, u64), StoreError> {
    let mut examined = Vec::new();
    for entry in dbs.events.range(txn, &(from..to))? {
        let (position, stored) = entry?;
        if examined.len() as u64 == MAX_SLICE_EVENTS {
            return Ok((examined, position));
        }
        // A damaged record stops the apply (as any apply that meets one): no replica may
        // decide on bytes the others may not have.
        let record = crate::store::checksum::unseal_event(position, stored)?;
        let head: Head = serde_json::from_slice(record)
            .map_err(|e| StoreError::Corrupt(format!("record at position {position}: {e}")))?;
        examined.push(Examined {
            position,
            stream: head.stream_id,
            version: head.version,
            event_id: head.event_id,
            event_type: head.event_type,
            tags: head.tags,
            stored_bytes: stored.len(),
        });
    }
    Ok((examined, to))
}

/// Removes one event from `events` and every index; returns the bytes of keys and values gone.
fn remove(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    event: &Examined,
    stream_number: u64,
) -> Result<u64, StoreError> {
    const POSITION_BYTES: usize = 8;
    let position = event.position;
    let mut bytes = 0;
    assert!(dbs.events.delete(txn, &position)?, "examined just now");
    bytes += POSITION_BYTES + event.stored_bytes;
    if dbs
        .stream_index
        .delete(txn, &stream_index_key(stream_number, event.version))?
    {
        bytes += 16 + POSITION_BYTES;
    }
    // Only the id's entry if it points here (it always should; never someone else's).
    if dbs.event_ids.get(txn, event.event_id.as_bytes())? == Some(position) {
        dbs.event_ids.delete(txn, event.event_id.as_bytes())?;
        bytes += 16 + POSITION_BYTES;
    }
    let type_key = type_index_key(&event.event_type, position);
    if dbs.type_index.delete(txn, &type_key)? {
        bytes += type_key.len();
    }
    for tag in &event.tags {
        let tag_key = tag_index_key(tag, position);
        if dbs.tag_index.delete(txn, &tag_key)? {
            bytes += tag_key.len();
        }
    }
    // Parked deliveries of the event: nothing is left to redeliver.
    let names: Vec<String> = dbs
        .psubs
        .iter(txn)?
        .map(|entry| entry.map(|(name, _)| name.to_owned()))
        .collect::<Result<_, _>>()?;
    for name in names {
        let key = parked_key(&name, position);
        if dbs.psub_parked.delete(txn, &key)? {
            bytes += key.len() + 1;
        }
    }
    Ok(bytes as u64)
}

/// Each stream's metadata and first shown version, looked up once per slice.
struct Boundaries {
    now_us: u64,
    streams: HashMap<String, Option<(StreamMeta, Option<u64>)>>,
}

impl Boundaries {
    fn new(now_us: u64) -> Boundaries {
        Boundaries {
            now_us,
            streams: HashMap::new(),
        }
    }

    fn meta(
        &mut self,
        txn: &RoTxn,
        dbs: &Databases,
        stream: &str,
    ) -> Result<Option<StreamMeta>, StoreError> {
        if let Some(known) = self.streams.get(stream) {
            return Ok(known.map(|(meta, _)| meta));
        }
        let meta = dbs
            .streams
            .get(txn, stream)?
            .map(StreamMeta::decode)
            .transpose()?;
        self.streams
            .insert(stream.to_owned(), meta.map(|meta| (meta, None)));
        Ok(meta)
    }

    /// The first version reads show (a deleted stream shows none: `first_visible_version` is
    /// its `next_version`).
    fn first_shown(
        &mut self,
        txn: &RoTxn,
        dbs: &Databases,
        stream: &str,
        meta: &StreamMeta,
    ) -> Result<u64, StoreError> {
        let entry = self
            .streams
            .get_mut(stream)
            .and_then(|entry| entry.as_mut())
            .expect("meta() looked the stream up first");
        if let Some(first) = entry.1 {
            return Ok(first);
        }
        let first = if meta.deleted {
            meta.next_version
        } else {
            first_shown(txn, dbs, stream, meta, self.now_us)?
        };
        entry.1 = Some(first);
        Ok(first)
    }
}

/// Where the next slice of the running walk ends: after [`MAX_SLICE_EVENTS`] stored events
/// from `position`, or at `up_to`. For the job; the slice's apply bounds itself again.
pub fn next_slice_end(
    txn: &RoTxn,
    dbs: &Databases,
    position: u64,
    up_to: u64,
) -> Result<u64, StoreError> {
    let mut keys = dbs.events.range(txn, &(position..up_to))?;
    match keys.nth(MAX_SLICE_EVENTS as usize) {
        Some(entry) => Ok(entry?.0),
        None => Ok(up_to),
    }
}

/// Bytes of the pages the store's databases hold now (branch, leaf and overflow pages of
/// every database): what the data takes, as opposed to the file's high-water mark, which
/// never goes down. Pages between the two are free and reused by later writes.
pub fn live_bytes(txn: &RoTxn, dbs: &Databases) -> Result<u64, StoreError> {
    let mut pages = 0u64;
    let mut page_size = 0u64;
    let mut add = |stat: heed::DatabaseStat| {
        page_size = stat.page_size as u64;
        pages += (stat.branch_pages + stat.leaf_pages + stat.overflow_pages) as u64;
    };
    add(dbs.events.stat(txn)?);
    add(dbs.streams.stat(txn)?);
    add(dbs.stream_index.stat(txn)?);
    add(dbs.event_ids.stat(txn)?);
    add(dbs.type_index.stat(txn)?);
    add(dbs.meta.stat(txn)?);
    add(dbs.psubs.stat(txn)?);
    add(dbs.psub_checkpoints.stat(txn)?);
    add(dbs.psub_parked.stat(txn)?);
    add(dbs.snapshots.stat(txn)?);
    add(dbs.raft.stat(txn)?);
    add(dbs.stream_limits.stat(txn)?);
    add(dbs.time_index.stat(txn)?);
    add(dbs.tag_index.stat(txn)?);
    Ok(pages * page_size)
}
