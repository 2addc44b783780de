//! Stream lifecycle commands beside appends and soft deletes: hard deletes (tombstones) and
//! stream limits (`META`), applied by `command::apply`.
//!
//! A tombstone is a stream whose [`StreamMeta`] is deleted and tombstoned: it shows no events,
//! and every later write to it (an append, whatever its expected version, or `META`) is
//! refused with [`Rejection::StreamTombstoned`], forever. A stream that never existed can be
//! tombstoned too, which reserves its name. Its events stay in `$all`, as a soft delete's do.

use heed::RwTxn;

use esdb_protocol::ExpectedVersion;

use crate::store::command::{check_expected, load_meta, Outcome};
use crate::store::schema::{Databases, StreamLimits, StreamMeta, META_NEXT_STREAM_NUMBER};
use crate::store::snapshots;
use crate::store::{Rejection, StoreError};

/// A new stream's metadata, taking the next stream number.
pub(crate) fn new_stream_meta(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
) -> Result<StreamMeta, StoreError> {
    let stream_number = dbs.meta.get(txn, META_NEXT_STREAM_NUMBER)?.unwrap_or(0);
    dbs.meta
        .put(txn, META_NEXT_STREAM_NUMBER, &(stream_number + 1))?;
    Ok(StreamMeta {
        stream_number,
        next_version: 0,
        first_visible_version: 0,
        deleted: false,
        tombstoned: false,
    })
}

/// `DELETE … hard`. `expected` is checked as for a soft delete; a stream already tombstoned
/// shows no events, so `any` and `no_stream` succeed again (a retried hard delete succeeds)
/// and a version answers `wrong_expected_version`.
pub(crate) fn apply_tombstone(
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
    let mut meta = match meta {
        Some(meta) if meta.tombstoned => return Ok(Ok(Outcome::Deleted)),
        Some(meta) => meta,
        None => new_stream_meta(txn, dbs)?,
    };
    meta.deleted = true;
    meta.tombstoned = true;
    meta.first_visible_version = meta.next_version;
    dbs.streams.put(txn, stream, &meta.encode())?;
    // Nothing of the stream will be shown again: its snapshots and limits go with it.
    snapshots::delete(txn, dbs, stream, None)?;
    dbs.stream_limits.delete(txn, stream)?;
    Ok(Ok(Outcome::Deleted))
}

/// `META <stream> <json>`: replaces the stream's limits. Allowed before the stream exists
/// (the limits apply once it does) and after a soft delete (they apply to the recreated
/// stream); refused on a tombstone.
pub(crate) fn apply_set_limits(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    stream: &str,
    limits: &StreamLimits,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    if load_meta(txn, dbs, stream)?.is_some_and(|meta| meta.tombstoned) {
        return Ok(Err(Rejection::StreamTombstoned {
            stream: stream.to_owned(),
        }));
    }
    if limits.is_empty() {
        dbs.stream_limits.delete(txn, stream)?;
    } else {
        dbs.stream_limits.put(txn, stream, &limits.encode())?;
    }
    Ok(Ok(Outcome::Done))
}
