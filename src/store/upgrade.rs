//! Upgrading an older store's format on open, before anything reads it.
//!
//! Format 3 seals every stored record with a checksum ([`crate::store::checksum`]). An older
//! store (format 1 or 2) has bare JSON records, so opening it rewrites each one sealed.
//!
//! Why rewrite rather than accept both formats with a flag per record: a per-record flag is
//! itself a byte on disk that damage can flip, and a record whose flag reads "old, unchecked"
//! would then be served without a check, which is exactly what checksums are for. After the
//! rewrite there is one format and every record is checked. The cost is once per store: one
//! pass over its records at the first open by a format-3 build, a few seconds per gigabyte.
//!
//! The rewrite runs in bounded transactions ([`MAX_UPGRADE_BATCH_RECORDS`],
//! [`MAX_UPGRADE_BATCH_BYTES`]), so it needs little map space beyond what the store holds,
//! and it resumes where it stopped if the process dies midway: `meta` keys record how far it
//! got ([`META_UPGRADE_SNAPSHOTS_SEALED`], then [`META_UPGRADE_EVENTS_SEALED_BEFORE`]), written
//! in the same transaction as the records they describe. The format version says 3 only once
//! every record is sealed.

use heed::{Env, WithoutTls};

use crate::store::checksum;
use crate::store::schema::{Databases, FORMAT_VERSION, META_FORMAT_VERSION};
use crate::store::StoreError;

/// Most records rewritten per transaction of the upgrade.
pub const MAX_UPGRADE_BATCH_RECORDS: usize = 10_000;
/// Most record bytes rewritten per transaction of the upgrade (one record more may pass it).
pub const MAX_UPGRADE_BATCH_BYTES: usize = 64 << 20;
/// `meta` key, during an upgrade to format 3: snapshots (in key order) already sealed.
pub const META_UPGRADE_SNAPSHOTS_SEALED: &str = "upgrade_snapshots_sealed";
/// `meta` key, during an upgrade to format 3: every snapshot is sealed, and so is every event
/// before this position.
pub const META_UPGRADE_EVENTS_SEALED_BEFORE: &str = "upgrade_events_sealed_before";
/// The first format whose records carry checksums.
pub const FIRST_SEALED_FORMAT: u64 = 4;

/// What an upgrade did, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Upgraded {
    pub events: u64,
    pub snapshots: u64,
}

/// Brings a store at format `found` (`None`: format 1, or a new store) to [`FORMAT_VERSION`].
pub fn upgrade(
    env: &Env<WithoutTls>,
    dbs: &Databases,
    found: Option<u64>,
) -> Result<Upgraded, StoreError> {
    debug_assert!(found.is_none_or(|version| version < FORMAT_VERSION));
    let mut upgraded = Upgraded::default();
    if found.is_none_or(|version| version < FIRST_SEALED_FORMAT) {
        upgraded.snapshots = seal_snapshots(env, dbs)?;
        upgraded.events = seal_events(env, dbs)?;
    }
    // Formats 1 and 2 need nothing else: format 1 differs from 2 only in having no Raft log,
    // so the log starts empty at its current state.
    let mut txn = env.write_txn()?;
    dbs.meta
        .delete(&mut txn, META_UPGRADE_EVENTS_SEALED_BEFORE)?;
    dbs.meta
        .put(&mut txn, META_FORMAT_VERSION, &FORMAT_VERSION)?;
    txn.commit()?;
    Ok(upgraded)
}

/// Seals every snapshot, a batch per transaction; then marks events as next.
fn seal_snapshots(env: &Env<WithoutTls>, dbs: &Databases) -> Result<u64, StoreError> {
    let mut sealed_now = 0;
    loop {
        let mut txn = env.write_txn()?;
        if dbs
            .meta
            .get(&txn, META_UPGRADE_EVENTS_SEALED_BEFORE)?
            .is_some()
        {
            return Ok(sealed_now);
        }
        let done = dbs
            .meta
            .get(&txn, META_UPGRADE_SNAPSHOTS_SEALED)?
            .unwrap_or(0);
        let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        // Nothing else writes during the upgrade, so the first `done` keys are the ones sealed.
        for entry in dbs.snapshots.iter(&txn)?.skip(done as usize) {
            if batch.len() == MAX_UPGRADE_BATCH_RECORDS || bytes >= MAX_UPGRADE_BATCH_BYTES {
                break;
            }
            let (key, record) = entry?;
            bytes += record.len();
            batch.push((key.to_vec(), checksum::seal(key, record.to_vec())));
        }
        let finished = batch.len() < MAX_UPGRADE_BATCH_RECORDS && bytes < MAX_UPGRADE_BATCH_BYTES;
        sealed_now += batch.len() as u64;
        let count = batch.len() as u64;
        for (key, sealed) in batch {
            dbs.snapshots.put(&mut txn, &key, &sealed)?;
        }
        if finished {
            dbs.meta.delete(&mut txn, META_UPGRADE_SNAPSHOTS_SEALED)?;
            dbs.meta
                .put(&mut txn, META_UPGRADE_EVENTS_SEALED_BEFORE, &0)?;
        } else {
            dbs.meta
                .put(&mut txn, META_UPGRADE_SNAPSHOTS_SEALED, &(done + count))?;
        }
        txn.commit()?;
        if finished {
            return Ok(sealed_now);
        }
    }
}

/// Seals every event from where the last run stopped, a batch per transaction.
fn seal_events(env: &Env<WithoutTls>, dbs: &Databases) -> Result<u64, StoreError> {
    let mut sealed_now = 0;
    loop {
        let mut txn = env.write_txn()?;
        let from = dbs
            .meta
            .get(&txn, META_UPGRADE_EVENTS_SEALED_BEFORE)?
            .expect("set once the snapshots are sealed");
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        for entry in dbs.events.range(&txn, &(from..))? {
            if batch.len() == MAX_UPGRADE_BATCH_RECORDS || bytes >= MAX_UPGRADE_BATCH_BYTES {
                break;
            }
            let (position, record) = entry?;
            bytes += record.len();
            batch.push((
                position,
                checksum::seal(&position.to_be_bytes(), record.to_vec()),
            ));
        }
        let Some(&(last, _)) = batch.last() else {
            return Ok(sealed_now);
        };
        sealed_now += batch.len() as u64;
        for (position, sealed) in batch {
            dbs.events.put(&mut txn, &position, &sealed)?;
        }
        dbs.meta
            .put(&mut txn, META_UPGRADE_EVENTS_SEALED_BEFORE, &(last + 1))?;
        txn.commit()?;
    }
}
