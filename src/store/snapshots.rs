//! Snapshots: the record each one is stored as, their reads, and the deletes `apply` runs.
//!
//! A snapshot is stored as its record's JSON, built once when saved and returned as is:
//! `{"stream_id":…,"version":n,"data":…,"metadata":{…},"epoch_us":n}` (fields in this order;
//! `data` and `metadata` are the client's own bytes). Keys are (stream id, version), see
//! [`crate::store::schema`], so one stream's snapshots are one key range, in version order.

use heed::{RoTxn, RwTxn};
use serde::Deserialize;
use serde_json::value::RawValue;

use esdb_protocol::json::{MAX_JSON_DEPTH, RECORD_WRAPPER_DEPTH};

use crate::store::checksum::{self, RecordKind};
use crate::store::read::{inclusive, EventsPage, PageBuilder};
use crate::store::schema::{snapshot_key, snapshot_key_version, Databases};
use crate::store::{Rejection, StoreError};

/// Builds a snapshot record's JSON bytes.
pub fn build_snapshot_record(
    stream: &str,
    version: u64,
    data: &RawValue,
    metadata: Option<&RawValue>,
    epoch_us: u64,
) -> Vec<u8> {
    let metadata = metadata.map(RawValue::get).unwrap_or("{}");
    let mut out = Vec::with_capacity(80 + stream.len() + data.get().len() + metadata.len());
    out.extend_from_slice(b"{\"stream_id\":");
    serde_json::to_writer(&mut out, stream).expect("writing to a Vec cannot fail");
    out.extend_from_slice(format!(",\"version\":{version},\"data\":").as_bytes());
    out.extend_from_slice(data.get().as_bytes());
    out.extend_from_slice(b",\"metadata\":");
    out.extend_from_slice(metadata.as_bytes());
    out.extend_from_slice(format!(",\"epoch_us\":{epoch_us}}}").as_bytes());
    out
}

/// The record JSON of a stored snapshot, its checksum checked; a damaged one is named by the
/// stream and version of its key.
fn checked<'t>(stream: &str, key: &[u8], stored: &'t [u8]) -> Result<&'t [u8], StoreError> {
    checksum::unseal(RecordKind::Snapshot, key, stored).map_err(|corruption| {
        let version = snapshot_key_version(key).unwrap_or(0);
        StoreError::from(corruption.at(stream, version))
    })
}

/// The first and last possible keys of a stream's snapshots.
fn stream_keys(stream: &str) -> (Vec<u8>, Vec<u8>) {
    (snapshot_key(stream, 0), snapshot_key(stream, u64::MAX))
}

/// The newest snapshot of `stream` as (version, record), if any.
pub fn load_latest<'t>(
    txn: &'t RoTxn,
    dbs: &Databases,
    stream: &str,
) -> Result<Option<(u64, &'t [u8])>, StoreError> {
    let (low, high) = stream_keys(stream);
    match dbs
        .snapshots
        .rev_range(txn, &inclusive(&low, &high))?
        .next()
    {
        Some(entry) => {
            let (key, stored) = entry?;
            Ok(Some((
                snapshot_key_version(key)?,
                checked(stream, key, stored)?,
            )))
        }
        None => Ok(None),
    }
}

/// `SNAP LOAD`: the snapshot at `version`, or the newest when `None`, as (version, record).
pub fn load<'t>(
    txn: &'t RoTxn,
    dbs: &Databases,
    stream: &str,
    version: Option<u64>,
) -> Result<(u64, &'t [u8]), StoreError> {
    let found = match version {
        None => load_latest(txn, dbs, stream)?,
        Some(version) => {
            let key = snapshot_key(stream, version);
            match dbs.snapshots.get(txn, &key)? {
                Some(stored) => Some((version, checked(stream, &key, stored)?)),
                None => None,
            }
        }
    };
    found.ok_or_else(|| {
        Rejection::SnapshotNotFound {
            stream: stream.to_owned(),
            version,
        }
        .into()
    })
}

/// `SNAP LIST`: snapshots of `stream` from `from_version` up, ascending, as a JSON array.
pub fn list(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
    from_version: u64,
    count: u64,
) -> Result<EventsPage, StoreError> {
    let (low, high) = (snapshot_key(stream, from_version), stream_keys(stream).1);
    let mut page = PageBuilder::new(count);
    for entry in dbs.snapshots.range(txn, &inclusive(&low, &high))? {
        let (key, stored) = entry?;
        let record = checked(stream, key, stored)?;
        // Snapshots can be as large as a payload: stop before the body passes the limit,
        // not after, so the reply stays within what clients accept.
        if page.is_full() || !page.fits(record.len()) {
            break;
        }
        page.push(record);
    }
    Ok(page.finish())
}

/// `SNAP EXISTS`: whether `stream` has a snapshot at `version` (any version when `None`).
pub fn exists(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
    version: Option<u64>,
) -> Result<bool, StoreError> {
    Ok(match version {
        Some(version) => dbs
            .snapshots
            .get(txn, &snapshot_key(stream, version))?
            .is_some(),
        None => load_latest(txn, dbs, stream)?.is_some(),
    })
}

/// Deletes the snapshot of `stream` at `version`, or all of them when `None`; returns how many
/// were deleted. Called by `apply` only.
pub(crate) fn delete(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    stream: &str,
    version: Option<u64>,
) -> Result<u64, StoreError> {
    let deleted = match version {
        Some(version) => u64::from(dbs.snapshots.delete(txn, &snapshot_key(stream, version))?),
        None => {
            let (low, high) = stream_keys(stream);
            dbs.snapshots.delete_range(txn, &inclusive(&low, &high))? as u64
        }
    };
    Ok(deleted)
}

/// Deletes all but the newest `keep` snapshots of `stream`; returns how many were deleted.
pub(crate) fn retain_newest(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    stream: &str,
    keep: u64,
) -> Result<u64, StoreError> {
    let (low, high) = stream_keys(stream);
    // The newest `keep` are skipped; the first version after them bounds what goes.
    let cutoff = dbs
        .snapshots
        .rev_range(txn, &inclusive(&low, &high))?
        .nth(keep as usize)
        .transpose()?
        .map(|(key, _)| snapshot_key_version(key))
        .transpose()?;
    let Some(cutoff) = cutoff else {
        return Ok(0);
    };
    let high = snapshot_key(stream, cutoff);
    Ok(dbs.snapshots.delete_range(txn, &inclusive(&low, &high))? as u64)
}

/// The `data` of a stored snapshot record, parsed.
pub fn record_data(record: &[u8]) -> Result<serde_json::Value, StoreError> {
    #[derive(Deserialize)]
    struct SnapshotData {
        data: serde_json::Value,
    }
    esdb_protocol::json::check(record, MAX_JSON_DEPTH + RECORD_WRAPPER_DEPTH)
        .map_err(|e| StoreError::Unreadable(format!("the snapshot cannot be read: {e}")))?;
    let mut deserializer = serde_json::Deserializer::from_slice(record);
    // Safe: the depth was bounded just above.
    deserializer.disable_recursion_limit();
    SnapshotData::deserialize(&mut deserializer)
        .map(|snapshot| snapshot.data)
        .map_err(|e| StoreError::Unreadable(format!("the snapshot cannot be read: {e}")))
}
