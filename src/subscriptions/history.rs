//! Reading a subscription's matching events from storage (catch-up), in position order.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use heed::RoTxn;
use serde::Deserialize;

use crate::store::clock::wall_clock_us;
use crate::store::read::{checked, record_at};
use crate::store::retention::{first_version_at_or_after, RetentionFilter};
use crate::store::schema::{
    stream_index_key, type_index_key, type_index_position, Databases, StreamMeta,
    META_NEXT_POSITION,
};
use crate::store::{CommittedEvent, StoreError};
use crate::subscriptions::selector::{Candidate, Delivery, IndexKey, Matcher};

/// Most events one catch-up read examines when it must scan `$all` (pattern, payload and
/// `$all` selectors): bounds the time one read transaction stays open.
pub const MAX_SCAN_EVENTS_PER_READ: usize = 4096;

/// A page of matching history.
#[derive(Debug)]
pub struct MatchPage {
    pub events: Vec<Delivery>,
    /// Where the next read starts: every matching event before it is in `events` or earlier.
    pub next_position: u64,
    /// `next_position` reached the limit (the head, or `until`).
    pub reached_limit: bool,
}

#[derive(Deserialize)]
struct RecordHead<'a> {
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    stream_id: Cow<'a, str>,
    version: u64,
}

fn committed_event(position: u64, record: &[u8]) -> Result<CommittedEvent, StoreError> {
    let head: RecordHead<'_> = serde_json::from_slice(record)
        .map_err(|e| StoreError::Corrupt(format!("record at {position}: {e}")))?;
    Ok(CommittedEvent {
        position,
        version: head.version,
        stream: Arc::from(head.stream_id.as_ref()),
        event_type: Arc::from(head.event_type.as_ref()),
        record: Bytes::copy_from_slice(record),
        hidden: false,
    })
}

/// Reads matching events with positions in `[from, min(until, head))`, at most `max_events`.
pub fn read_matching(
    txn: &RoTxn,
    dbs: &Databases,
    matcher: &Matcher,
    from: u64,
    until: Option<u64>,
    max_events: usize,
) -> Result<MatchPage, StoreError> {
    let head = dbs.meta.get(txn, META_NEXT_POSITION)?.unwrap_or(0);
    let limit = until.map_or(head, |until| until.min(head));
    if from >= limit {
        return Ok(MatchPage {
            events: Vec::new(),
            next_position: from,
            reached_limit: true,
        });
    }
    let (mut events, next_position) = match matcher.index_key() {
        IndexKey::Stream(stream) => matched(by_stream(txn, dbs, &stream, from, limit, max_events)?),
        IndexKey::Types(types) => matched(by_types(txn, dbs, &types, from, limit, max_events)?),
        IndexKey::Scan => by_scan(txn, dbs, matcher, from, limit, max_events)?,
    };
    // Index reads skip the matcher: the subscriber's stream scope (src/auth) applies here.
    events.retain(|delivery| matcher.in_scope(&delivery.event.stream));
    // Events their stream's limits hide are not delivered, as reads do not show them.
    if let Some(mut filter) = RetentionFilter::new(txn, dbs, wall_clock_us())? {
        let mut kept = Vec::with_capacity(events.len());
        for delivery in events {
            let event = &delivery.event;
            if filter.shows(txn, &event.stream, event.version)? {
                kept.push(delivery);
            }
        }
        events = kept;
    }
    debug_assert!(events
        .windows(2)
        .all(|w| w[0].event.position < w[1].event.position));
    Ok(MatchPage {
        events,
        next_position,
        reached_limit: next_position >= limit,
    })
}

/// Index reads only return events their key selects: every one is a match.
fn matched((events, next): (Vec<CommittedEvent>, u64)) -> (Vec<Delivery>, u64) {
    (events.into_iter().map(Delivery::matched).collect(), next)
}

/// A stream's events through its index. Versions hidden by a delete are not delivered, as
/// `READ` does not show them.
fn by_stream(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
    from: u64,
    limit: u64,
    max_events: usize,
) -> Result<(Vec<CommittedEvent>, u64), StoreError> {
    let Some(meta) = dbs
        .streams
        .get(txn, stream)?
        .map(StreamMeta::decode)
        .transpose()?
    else {
        return Ok((Vec::new(), limit));
    };
    // Positions grow with versions: the first version at or after `from` (a scavenge may have
    // left gaps in the index: see `retention::first_version_at_or_after`).
    let low = meta
        .first_visible_version
        .max(first_version_at_or_after(txn, dbs, &meta, from)?);
    let (low_key, high_key) = (
        stream_index_key(meta.stream_number, low),
        stream_index_key(meta.stream_number, u64::MAX),
    );
    let range = (
        std::ops::Bound::Included(&low_key[..]),
        std::ops::Bound::Included(&high_key[..]),
    );
    let mut events = Vec::new();
    for entry in dbs.stream_index.range(txn, &range)? {
        let (_, position) = entry?;
        if position >= limit {
            break;
        }
        if events.len() == max_events {
            return Ok((events, position));
        }
        events.push(committed_event(position, &record_at(txn, dbs, position)?)?);
    }
    Ok((events, limit))
}

fn by_types(
    txn: &RoTxn,
    dbs: &Databases,
    types: &[String],
    from: u64,
    limit: u64,
    max_events: usize,
) -> Result<(Vec<CommittedEvent>, u64), StoreError> {
    let mut positions = Vec::new();
    for event_type in types {
        let low = type_index_key(event_type, from);
        let high = type_index_key(event_type, limit);
        let range = (
            std::ops::Bound::Included(&low[..]),
            std::ops::Bound::Excluded(&high[..]),
        );
        for entry in dbs.type_index.range(txn, &range)?.take(max_events + 1) {
            positions.push(type_index_position(entry?.0)?);
        }
    }
    positions.sort_unstable();
    let next_position = match positions.get(max_events) {
        Some(&position) => position,
        None => limit,
    };
    positions.truncate(max_events);
    let events = positions
        .into_iter()
        .map(|position| committed_event(position, &record_at(txn, dbs, position)?))
        .collect::<Result<_, _>>()?;
    Ok((events, next_position))
}

fn by_scan(
    txn: &RoTxn,
    dbs: &Databases,
    matcher: &Matcher,
    from: u64,
    limit: u64,
    max_events: usize,
) -> Result<(Vec<Delivery>, u64), StoreError> {
    let mut events = Vec::new();
    let mut next_position = from;
    for entry in dbs
        .events
        .range(txn, &(from..limit))?
        .take(MAX_SCAN_EVENTS_PER_READ)
    {
        if events.len() == max_events {
            break;
        }
        let (position, stored) = entry?;
        let event = committed_event(position, &checked(txn, dbs, (position, stored))?)?;
        if let Some(delivery) = matcher.delivery(&Candidate::new(&event)) {
            events.push(delivery);
        }
        next_position = position + 1;
    }
    Ok((events, next_position))
}
