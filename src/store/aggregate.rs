//! `AGG`: folds a stream into its state inside one read transaction, so the state reflects
//! exactly one version of the stream, and no event leaves the server.
//!
//! The fold itself is [`esdb_protocol::aggregate`] (pure, shared with the clients); this file
//! only feeds it the newest snapshot's `data` and the events' `data`, within the limits
//! `MAX_AGGREGATE_*`.

use bytes::Bytes;
use heed::RoTxn;

use esdb_protocol::aggregate::{apply_data, finalize, initial_state, FoldOrder, State};
use esdb_protocol::limits::{
    MAX_AGGREGATE_EVENTS, MAX_AGGREGATE_EVENT_BYTES, MAX_AGGREGATE_STATE_BYTES,
};
use esdb_protocol::ops::agg::AggRequest;

use crate::store::clock::wall_clock_us;
use crate::store::read::{inclusive, live_meta, stream_record_at};
use crate::store::retention::first_shown;
use crate::store::schema::{stream_index_key, Databases, StreamMeta};
use crate::store::snapshots::{load_latest, record_data};
use crate::store::{Rejection, StoreError};

/// The folded state, as JSON, and the stream version it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregated {
    pub version: u64,
    pub body: Bytes,
}

/// `AGG`: the stream's state at its current version.
pub fn aggregate(
    txn: &RoTxn,
    dbs: &Databases,
    request: &AggRequest,
) -> Result<Aggregated, StoreError> {
    let stream = &request.stream;
    let meta = live_meta(txn, dbs, stream)?;
    let current = meta
        .current_version()
        .ok_or_else(|| Rejection::StreamDeleted {
            stream: stream.clone(),
        })?;
    let (mut state, first) = starting_point(txn, dbs, request, &meta, current)?;
    // Events the stream's limits hide are not folded, even after a snapshot.
    let first = first.max(first_shown(txn, dbs, stream, &meta, wall_clock_us())?);
    if first <= current {
        fold_events(txn, dbs, request, &meta, first..=current, &mut state)?;
    }
    let state = if request.finalize {
        finalize(state)
    } else {
        state
    };
    let body = serde_json::to_vec(&state).expect("a JSON map always serialises");
    if body.len() > MAX_AGGREGATE_STATE_BYTES {
        return Err(too_large(
            stream,
            format!(
                "the state is {} bytes, over the limit of {MAX_AGGREGATE_STATE_BYTES}",
                body.len()
            ),
        ));
    }
    Ok(Aggregated {
        version: current,
        body: Bytes::from(body),
    })
}

/// The state to start from and the first version to fold: the newest snapshot's (when asked
/// and there is one), else `{}` at the first visible event.
fn starting_point(
    txn: &RoTxn,
    dbs: &Databases,
    request: &AggRequest,
    meta: &StreamMeta,
    current: u64,
) -> Result<(State, u64), StoreError> {
    if !request.from_snapshot {
        return Ok((State::new(), meta.first_visible_version));
    }
    match load_latest(txn, dbs, &request.stream)? {
        None => Ok((State::new(), meta.first_visible_version)),
        Some((version, record)) => {
            // SAVE refuses versions the stream does not show and DELETE removes snapshots.
            if version > current || version < meta.first_visible_version {
                return Err(StoreError::Corrupt(format!(
                    "snapshot of {} at version {version} outside its visible versions",
                    request.stream
                )));
            }
            let data = record_data(record)?;
            Ok((initial_state(Some(&data)), version + 1))
        }
    }
}

fn fold_events(
    txn: &RoTxn,
    dbs: &Databases,
    request: &AggRequest,
    meta: &StreamMeta,
    versions: std::ops::RangeInclusive<u64>,
    state: &mut State,
) -> Result<(), StoreError> {
    let count = versions.end() - versions.start() + 1;
    if count > MAX_AGGREGATE_EVENTS {
        let advice = if request.from_snapshot {
            "save a newer snapshot (SNAP SAVE)"
        } else {
            "save a snapshot (SNAP SAVE) and use AGG from_snapshot"
        };
        return Err(too_large(
            &request.stream,
            format!("{count} events to fold, over the limit of {MAX_AGGREGATE_EVENTS}: {advice}"),
        ));
    }
    let number = meta.stream_number;
    let low = stream_index_key(number, *versions.start());
    let high = stream_index_key(number, *versions.end());
    let range = inclusive(&low, &high);
    let entries: Box<dyn Iterator<Item = heed::Result<(&[u8], u64)>>> = match request.order {
        FoldOrder::Left => Box::new(dbs.stream_index.range(txn, &range)?),
        FoldOrder::Right => Box::new(dbs.stream_index.rev_range(txn, &range)?),
    };
    let mut folded_bytes = 0usize;
    for entry in entries {
        let (key, position) = entry?;
        let record = stream_record_at(txn, dbs, &request.stream, key, position)?;
        folded_bytes += record.len();
        if folded_bytes > MAX_AGGREGATE_EVENT_BYTES {
            return Err(too_large(
                &request.stream,
                format!(
                    "over {MAX_AGGREGATE_EVENT_BYTES} bytes of events to fold: save a snapshot \
                     (SNAP SAVE) and use AGG from_snapshot"
                ),
            ));
        }
        apply_data(state, &event_data(&record, position)?);
    }
    Ok(())
}

/// The `data` of a stored event record, read under the rules the door applied.
fn event_data(record: &[u8], position: u64) -> Result<serde_json::Value, StoreError> {
    let unreadable = |reason: String| {
        StoreError::Unreadable(format!(
            "AGG cannot fold the record at position {position}: {reason}"
        ))
    };
    match esdb_protocol::json::parse_record(record) {
        Ok(serde_json::Value::Object(mut fields)) => fields
            .remove("data")
            .ok_or_else(|| unreadable("it has no data".into())),
        Ok(_) => Err(unreadable("it is not an object".into())),
        Err(error) => Err(unreadable(error.to_string())),
    }
}

fn too_large(stream: &str, reason: String) -> StoreError {
    Rejection::AggregateTooLarge {
        stream: stream.to_owned(),
        reason,
    }
    .into()
}
