//! Reads, straight from LMDB inside one short read transaction each.

use std::ops::Bound;

use bytes::Bytes;
use heed::RoTxn;

use esdb_protocol::limits::MAX_READ_REPLY_BYTES;
use esdb_protocol::{Direction, ReadStart};

use crate::store::checksum;
use crate::store::schema::{
    stream_index_key, type_index_key, type_index_position, Databases, StreamMeta,
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
    if meta.deleted {
        return Err(Rejection::StreamDeleted {
            stream: stream.to_owned(),
        }
        .into());
    }
    Ok(meta)
}

/// The record JSON at `position`, its checksum checked (every read of an event goes through
/// here or [`checked`]).
pub(crate) fn record_at<'t>(
    txn: &'t RoTxn,
    dbs: &Databases,
    position: u64,
) -> Result<&'t [u8], StoreError> {
    let stored = dbs.events.get(txn, &position)?.ok_or_else(|| {
        StoreError::Corrupt(format!("index points at missing position {position}"))
    })?;
    checked((position, stored))
}

/// The record JSON of an `events` entry, its checksum checked.
pub(crate) fn checked((position, stored): (u64, &[u8])) -> Result<&[u8], StoreError> {
    Ok(checksum::unseal_event(position, stored)?)
}

/// [`record_at`] for an entry of `stream`'s index: a damaged record is named by its stream and
/// version (from the index key, not from the damaged bytes) as well as its position.
pub(crate) fn stream_record_at<'t>(
    txn: &'t RoTxn,
    dbs: &Databases,
    stream: &str,
    index_key: &[u8],
    position: u64,
) -> Result<&'t [u8], StoreError> {
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
    let meta = live_meta(txn, dbs, stream)?;
    let mut page = PageBuilder::new(count);
    let Some(last) = meta.current_version() else {
        return Ok(page.finish());
    };
    let first = meta.first_visible_version;
    let number = meta.stream_number;
    match direction {
        Direction::Forward => {
            let start = match from {
                ReadStart::At(version) => version.max(first),
                ReadStart::End => return Ok(page.finish()),
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
                page.push(stream_record_at(txn, dbs, stream, key, position)?);
            }
        }
        Direction::Backward => {
            let start = match from {
                ReadStart::At(version) => version.min(last),
                ReadStart::End => last,
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
                page.push(stream_record_at(txn, dbs, stream, key, position)?);
            }
        }
    }
    Ok(page.finish())
}

/// `READALL`: every event in commit order (deleted streams' events included: `$all` is the
/// log).
pub fn read_all(
    txn: &RoTxn,
    dbs: &Databases,
    from: ReadStart,
    count: u64,
    direction: Direction,
) -> Result<EventsPage, StoreError> {
    let mut page = PageBuilder::new(count);
    if count == 0 {
        return Ok(page.finish());
    }
    match (direction, from) {
        (Direction::Forward, ReadStart::End) => {}
        (Direction::Forward, ReadStart::At(start)) => {
            for entry in dbs.events.range(txn, &(start..))? {
                if page.is_full() {
                    break;
                }
                page.push(checked(entry?)?);
            }
        }
        (Direction::Backward, start) => {
            let upper = match start {
                ReadStart::At(position) => Bound::Included(position),
                ReadStart::End => Bound::Unbounded,
            };
            for entry in dbs.events.rev_range(txn, &(Bound::Unbounded, upper))? {
                if page.is_full() {
                    break;
                }
                page.push(checked(entry?)?);
            }
        }
    }
    Ok(page.finish())
}

/// `READTYPES`: events of any of `types`, in global order from `from_position`.
pub fn read_types(
    txn: &RoTxn,
    dbs: &Databases,
    types: &[String],
    from_position: u64,
    count: u64,
) -> Result<EventsPage, StoreError> {
    // Take up to `count` positions from each type's index, then merge: the smallest `count`
    // of the union are among them.
    let mut positions = Vec::new();
    for event_type in types {
        let low = type_index_key(event_type, from_position);
        let high = type_index_key(event_type, u64::MAX);
        for entry in dbs
            .type_index
            .range(txn, &inclusive(&low, &high))?
            .take(count as usize)
        {
            positions.push(type_index_position(entry?.0)?);
        }
    }
    positions.sort_unstable();
    let mut page = PageBuilder::new(count);
    for position in positions {
        if page.is_full() {
            break;
        }
        page.push(record_at(txn, dbs, position)?);
    }
    Ok(page.finish())
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
