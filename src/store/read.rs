//! Reads, straight from LMDB inside one short read transaction each.
//!
//! Every read shows what the stream limits (`META`, [`crate::store::retention`]) still show
//! at the time of the read; `from_time` starts are found through the commit-time index
//! ([`crate::store::clock`]).

use std::borrow::Cow;
use std::ops::Bound;

use bytes::Bytes;
use heed::RoTxn;

use esdb_protocol::limits::MAX_READ_REPLY_BYTES;
use esdb_protocol::{Direction, ReadStart};

use crate::store::checksum;
use crate::store::clock::{first_position_at_or_after, wall_clock_us};
use crate::store::crypto;
use crate::store::record::RecordPlace;
use crate::store::retention::{first_shown, first_version_at_or_after, RetentionFilter};
use crate::store::schema::{
    stream_index_key, type_index_key, type_index_position, Databases, StreamLimits, StreamMeta,
    META_NEXT_POSITION,
};
use crate::store::{Rejection, StoreError};

/// A page of event records, ready to send: `body` is a JSON array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsPage {
    pub count: u64,
    pub body: Bytes,
}

/// Collects records into a JSON array, stopping at `count` or at the reply size limit (but
/// never before the first record, so a client always makes progress).
pub(crate) struct PageBuilder {
    body: Vec<u8>,
    count: u64,
    limit: u64,
}

impl PageBuilder {
    pub(crate) fn new(limit: u64) -> PageBuilder {
        PageBuilder {
            body: vec![b'['],
            count: 0,
            limit,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count >= self.limit || self.body.len() >= MAX_READ_REPLY_BYTES
    }

    /// Whether a record of `len` bytes keeps the body within the reply size limit (the first
    /// record always does, so a client always makes progress).
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.count == 0 || self.body.len() + len + 2 <= MAX_READ_REPLY_BYTES
    }

    pub(crate) fn push(&mut self, record: &[u8]) {
        if self.count > 0 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(record);
        self.count += 1;
    }

    pub(crate) fn finish(mut self) -> EventsPage {
        self.body.push(b']');
        EventsPage {
            count: self.count,
            body: Bytes::from(self.body),
        }
    }
}

/// An inclusive range of byte-string keys (`RangeInclusive` needs sized bounds).
pub(crate) fn inclusive<'k>(low: &'k [u8], high: &'k [u8]) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    (Bound::Included(low), Bound::Included(high))
}

pub(crate) fn live_meta(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
) -> Result<StreamMeta, StoreError> {
    let meta = dbs
        .streams
        .get(txn, stream)?
        .map(StreamMeta::decode)
        .transpose()?
        .ok_or_else(|| Rejection::StreamNotFound {
            stream: stream.to_owned(),
        })?;
    if meta.tombstoned {
        return Err(Rejection::StreamTombstoned {
            stream: stream.to_owned(),
        }
        .into());
    }
    if meta.deleted {
        return Err(Rejection::StreamDeleted {
            stream: stream.to_owned(),
        }
        .into());
    }
    Ok(meta)
}

/// Where a `from_time` read starts, as a position in `$all`: forward, the first position
/// committed at or after the time; backward, one past the last committed at or before it (so
/// the read starts just below it).
fn time_bound(
    txn: &RoTxn,
    dbs: &Databases,
    time_us: u64,
    direction: Direction,
) -> Result<u64, StoreError> {
    match direction {
        Direction::Forward => first_position_at_or_after(txn, dbs, time_us),
        Direction::Backward => match time_us.checked_add(1) {
            Some(after) => first_position_at_or_after(txn, dbs, after),
            None => Ok(dbs.meta.get(txn, META_NEXT_POSITION)?.unwrap_or(0)),
        },
    }
}

/// The record JSON at `position`, its checksum checked and, when sealed, opened (every read
/// of an event goes through here or [`checked`]).
pub(crate) fn record_at<'t>(
    txn: &'t RoTxn,
    dbs: &Databases,
    position: u64,
) -> Result<Cow<'t, [u8]>, StoreError> {
    let stored = dbs.events.get(txn, &position)?.ok_or_else(|| {
        StoreError::Corrupt(format!("index points at missing position {position}"))
    })?;
    checked(txn, dbs, (position, stored))
}

/// The record JSON of an `events` entry as readers get it: its checksum checked, and opened
/// when sealed ([`crypto::open_record`]).
pub(crate) fn checked<'r>(
    txn: &RoTxn,
    dbs: &Databases,
    (position, stored): (u64, &'r [u8]),
) -> Result<Cow<'r, [u8]>, StoreError> {
    crypto::open_record(txn, dbs, checksum::unseal_event(position, stored)?)
}

/// [`record_at`] for an entry of `stream`'s index: a damaged record is named by its stream and
/// version (from the index key, not from the damaged bytes) as well as its position.
pub(crate) fn stream_record_at<'t>(
    txn: &'t RoTxn,
    dbs: &Databases,
    stream: &str,
    index_key: &[u8],
    position: u64,
) -> Result<Cow<'t, [u8]>, StoreError> {
    record_at(txn, dbs, position).map_err(|error| match error {
        StoreError::Checksum(corruption) => {
            let version = index_key
                .get(8..16)
                .map_or(0, |v| u64::from_be_bytes(v.try_into().expect("8 bytes")));
            corruption.at(stream, version).into()
        }
        other => other,
    })
}

/// `READ`: events of one stream by version.
pub fn read_stream(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
    from: ReadStart,
    count: u64,
    direction: Direction,
) -> Result<EventsPage, StoreError> {
    read_stream_at(txn, dbs, stream, from, count, direction, wall_clock_us())
}

/// `READ` as of `now_us` (for `max_age_ms`). A stream whose events its limits all hide reads
/// as empty (it still exists, with its current version: an append continues after it).
pub fn read_stream_at(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
    from: ReadStart,
    count: u64,
    direction: Direction,
    now_us: u64,
) -> Result<EventsPage, StoreError> {
    let meta = live_meta(txn, dbs, stream)?;
    let mut page = PageBuilder::new(count);
    let Some(last) = meta.current_version() else {
        return Ok(page.finish());
    };
    let first = first_shown(txn, dbs, stream, &meta, now_us)?;
    if first > last {
        return Ok(page.finish());
    }
    let number = meta.stream_number;
    let from = match from {
        ReadStart::Time(time_us) => {
            let position = time_bound(txn, dbs, time_us, direction)?;
            let version = first_version_at_or_after(txn, dbs, &meta, position)?;
            match direction {
                Direction::Forward => ReadStart::At(version),
                // The last version before `position`: none when the stream starts there.
                Direction::Backward => match version.checked_sub(1) {
                    Some(version) => ReadStart::At(version),
                    None => return Ok(page.finish()),
                },
            }
        }
        other => other,
    };
    match direction {
        Direction::Forward => {
            let start = match from {
                ReadStart::At(version) => version.max(first),
                ReadStart::End | ReadStart::Time(_) => return Ok(page.finish()),
            };
            if start > last || count == 0 {
                return Ok(page.finish());
            }
            let (low, high) = (
                stream_index_key(number, start),
                stream_index_key(number, last),
            );
            for entry in dbs.stream_index.range(txn, &inclusive(&low, &high))? {
                if page.is_full() {
                    break;
                }
                let (key, position) = entry?;
                page.push(&stream_record_at(txn, dbs, stream, key, position)?);
            }
        }
        Direction::Backward => {
            let start = match from {
                ReadStart::At(version) => version.min(last),
                ReadStart::End | ReadStart::Time(_) => last,
            };
            if start < first || count == 0 {
                return Ok(page.finish());
            }
            let (low, high) = (
                stream_index_key(number, first),
                stream_index_key(number, start),
            );
            for entry in dbs.stream_index.rev_range(txn, &inclusive(&low, &high))? {
                if page.is_full() {
                    break;
                }
                let (key, position) = entry?;
                page.push(&stream_record_at(txn, dbs, stream, key, position)?);
            }
        }
    }
    Ok(page.finish())
}

/// `READALL`: every event in commit order (deleted streams' events included: `$all` is the
/// log), but those their stream's limits hide (positions are not renumbered: they just do not
/// appear).
pub fn read_all(
    txn: &RoTxn,
    dbs: &Databases,
    from: ReadStart,
    count: u64,
    direction: Direction,
) -> Result<EventsPage, StoreError> {
    read_all_at(txn, dbs, from, count, direction, wall_clock_us())
}

/// `READALL` as of `now_us` (for `max_age_ms`).
pub fn read_all_at(
    txn: &RoTxn,
    dbs: &Databases,
    from: ReadStart,
    count: u64,
    direction: Direction,
    now_us: u64,
) -> Result<EventsPage, StoreError> {
    let mut page = PageBuilder::new(count);
    if count == 0 {
        return Ok(page.finish());
    }
    let mut shown = Shown::new(txn, dbs, now_us)?;
    let from = match from {
        ReadStart::Time(time_us) => match (direction, time_bound(txn, dbs, time_us, direction)?) {
            (Direction::Forward, position) => ReadStart::At(position),
            (Direction::Backward, 0) => return Ok(page.finish()),
            (Direction::Backward, position) => ReadStart::At(position - 1),
        },
        other => other,
    };
    match (direction, from) {
        (Direction::Forward, ReadStart::End | ReadStart::Time(_)) => {}
        (Direction::Forward, ReadStart::At(start)) => {
            for entry in dbs.events.range(txn, &(start..))? {
                if page.is_full() {
                    break;
                }
                let (position, stored) = entry?;
                let record = checked(txn, dbs, (position, stored))?;
                if shown.shows(txn, position, &record)? {
                    page.push(&record);
                }
            }
        }
        (Direction::Backward, start) => {
            let upper = match start {
                ReadStart::At(position) => Bound::Included(position),
                ReadStart::End | ReadStart::Time(_) => Bound::Unbounded,
            };
            for entry in dbs.events.rev_range(txn, &(Bound::Unbounded, upper))? {
                if page.is_full() {
                    break;
                }
                let (position, stored) = entry?;
                let record = checked(txn, dbs, (position, stored))?;
                if shown.shows(txn, position, &record)? {
                    page.push(&record);
                }
            }
        }
    }
    Ok(page.finish())
}

/// The retention check of a read across streams: nothing at all when no stream has limits.
/// Hidden events never take a page's places, so an empty page still means "nothing more";
/// a read passes over every hidden event in its way (bounded by the store: nothing reclaims
/// them until scavenging exists).
struct Shown {
    filter: Option<RetentionFilter>,
}

impl Shown {
    fn new(txn: &RoTxn, dbs: &Databases, now_us: u64) -> Result<Shown, StoreError> {
        Ok(Shown {
            filter: RetentionFilter::new(txn, dbs, now_us)?,
        })
    }

    fn shows(&mut self, txn: &RoTxn, position: u64, record: &[u8]) -> Result<bool, StoreError> {
        let Some(filter) = &mut self.filter else {
            return Ok(true);
        };
        let place: RecordPlace = serde_json::from_slice(record)
            .map_err(|e| StoreError::Corrupt(format!("record at position {position}: {e}")))?;
        filter.shows(txn, &place.stream_id, place.version)
    }
}

/// `READTYPES`: events of any of `types`, in global order from `from_position`, but those
/// their stream's limits hide.
pub fn read_types(
    txn: &RoTxn,
    dbs: &Databases,
    types: &[String],
    from_position: u64,
    count: u64,
) -> Result<EventsPage, StoreError> {
    read_types_at(txn, dbs, types, from_position, count, wall_clock_us())
}

/// `READTYPES` as of `now_us` (for `max_age_ms`).
pub fn read_types_at(
    txn: &RoTxn,
    dbs: &Databases,
    types: &[String],
    from_position: u64,
    count: u64,
    now_us: u64,
) -> Result<EventsPage, StoreError> {
    read_index_at(
        txn,
        dbs,
        dbs.type_index,
        types,
        from_position,
        count,
        now_us,
    )
}

/// `READTAGS`: the events carrying any of `tags`, in position order, but those their stream's
/// limits hide (as `READTYPES`).
pub fn read_tags(
    txn: &RoTxn,
    dbs: &Databases,
    tags: &[String],
    from_position: u64,
    count: u64,
) -> Result<EventsPage, StoreError> {
    read_index_at(
        txn,
        dbs,
        dbs.tag_index,
        tags,
        from_position,
        count,
        wall_clock_us(),
    )
}

/// The events of `index` (`type_index` or `tag_index`: keys `name ++ 0x00 ++ position`) under
/// any of `names`, in position order. An event under several names (tags) is returned once.
fn read_index_at(
    txn: &RoTxn,
    dbs: &Databases,
    index: heed::Database<heed::types::Bytes, heed::types::Unit>,
    names: &[String],
    from_position: u64,
    count: u64,
    now_us: u64,
) -> Result<EventsPage, StoreError> {
    let mut shown = Shown::new(txn, dbs, now_us)?;
    let mut page = PageBuilder::new(count);
    let mut from_position = from_position;
    // Without limits one round does it. With them, hidden events take places in a round's
    // candidates, so go on from the last candidate until the page is full or the types are
    // exhausted (each round moves past its candidates, so this ends).
    loop {
        // Take up to `count` positions from each type's index, then merge: the smallest
        // `count` of the union are among them.
        let mut positions = Vec::new();
        let mut exhausted = true;
        for name in names {
            let low = type_index_key(name, from_position);
            let high = type_index_key(name, u64::MAX);
            let before = positions.len();
            for entry in index
                .range(txn, &inclusive(&low, &high))?
                .take(count as usize)
            {
                positions.push(type_index_position(entry?.0)?);
            }
            if positions.len() - before == count as usize {
                exhausted = false;
            }
        }
        positions.sort_unstable();
        positions.dedup();
        positions.truncate(count as usize);
        let Some(&last) = positions.last() else {
            break;
        };
        for position in positions {
            if page.is_full() {
                break;
            }
            let record = record_at(txn, dbs, position)?;
            if shown.shows(txn, position, &record)? {
                page.push(&record);
            }
        }
        if page.is_full() || exhausted || shown.filter.is_none() {
            break;
        }
        from_position = last + 1;
    }
    Ok(page.finish())
}

/// `META <stream>`: the stream's limits, `None` when it has none. A tombstone answers
/// `stream_deleted`; a stream never written (limits may be set before) or soft-deleted
/// answers its limits.
pub fn stream_limits(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
) -> Result<Option<StreamLimits>, StoreError> {
    let meta = dbs
        .streams
        .get(txn, stream)?
        .map(StreamMeta::decode)
        .transpose()?;
    if meta.is_some_and(|meta| meta.tombstoned) {
        return Err(Rejection::StreamTombstoned {
            stream: stream.to_owned(),
        }
        .into());
    }
    crate::store::retention::load_limits(txn, dbs, stream)
}

/// `VERSION`: the newest visible version, or -1.
pub fn stream_version(txn: &RoTxn, dbs: &Databases, stream: &str) -> Result<i64, StoreError> {
    let meta = dbs
        .streams
        .get(txn, stream)?
        .map(StreamMeta::decode)
        .transpose()?;
    Ok(meta
        .and_then(|m| m.current_version())
        .map_or(-1, |v| v as i64))
}

/// `STREAMS`: live stream ids after `after`, in byte order, as a JSON array.
pub fn list_streams(
    txn: &RoTxn,
    dbs: &Databases,
    after: Option<&str>,
    count: u64,
) -> Result<EventsPage, StoreError> {
    let lower = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Unbounded,
    };
    let mut names: Vec<&str> = Vec::new();
    for entry in dbs.streams.range(txn, &(lower, Bound::Unbounded))? {
        if names.len() as u64 >= count {
            break;
        }
        let (name, meta) = entry?;
        if StreamMeta::decode(meta)?.current_version().is_some() {
            names.push(name);
        }
    }
    let body = serde_json::to_vec(&names).expect("strings always serialise");
    Ok(EventsPage {
        count: names.len() as u64,
        body: Bytes::from(body),
    })
}
