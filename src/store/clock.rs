//! Commit time: the `epoch_us` every event carries, never going backwards within a store, and
//! the index that finds the first event committed at or after a time (`from_time`, `max_age_ms`).
//!
//! Time is taken where a command is built, never inside `apply` (which must be deterministic):
//! [`CommitClock::stamp`] gives max(now, the last time it gave), so a clock that steps back
//! (NTP, a VM restored) repeats the last time instead of going back. `apply` then clamps once
//! more to the last time the store committed ([`commit_time`]): that reads only replicated
//! state, so it is deterministic, and it keeps the order when commands built on different nodes
//! (forwarded writes) or before a restart meet in the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use heed::{RoTxn, RwTxn};
use serde::Deserialize;

use crate::store::schema::{Databases, META_NEXT_POSITION};
use crate::store::StoreError;

/// Environment variable, for tests only: milliseconds (may be negative) added to the wall
/// clock, so a test can restart a server with its clock stepped back.
pub const TEST_CLOCK_OFFSET_ENV: &str = "ESDB_TEST_CLOCK_OFFSET_MS";

/// Now, in microseconds since the Unix epoch (plus the test offset, when set).
pub fn wall_clock_us() -> u64 {
    static OFFSET_US: OnceLock<i64> = OnceLock::new();
    let offset_us = *OFFSET_US.get_or_init(|| {
        std::env::var(TEST_CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .map_or(0, |ms| ms.saturating_mul(1000))
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64);
    now.saturating_add_signed(offset_us)
}

/// The per-store source of commit times for commands built on this node.
#[derive(Debug, Default)]
pub struct CommitClock {
    last_us: AtomicU64,
}

impl CommitClock {
    /// A clock that will never give less than `last_us` (the store's last commit time).
    pub fn starting_at(last_us: u64) -> CommitClock {
        CommitClock {
            last_us: AtomicU64::new(last_us),
        }
    }

    /// max(`now_us`, the last time given): never less than any earlier stamp.
    pub fn stamp(&self, now_us: u64) -> u64 {
        let previous = self.last_us.fetch_max(now_us, Ordering::AcqRel);
        previous.max(now_us)
    }
}

/// The time an append carrying `proposed_us` commits at: never before the store's last commit.
pub(crate) fn commit_time(
    txn: &RwTxn<'_>,
    dbs: &Databases,
    proposed_us: u64,
) -> Result<u64, StoreError> {
    Ok(proposed_us.max(last_commit_time(txn, dbs)?.unwrap_or(0)))
}

/// The newest commit time in the index, if any event was ever written.
pub fn last_commit_time(txn: &RoTxn, dbs: &Databases) -> Result<Option<u64>, StoreError> {
    Ok(dbs.time_index.last(txn)?.map(|(time, _)| time))
}

/// Records that events from `first_position` on were committed at `commit_us` (a time already
/// in the index keeps its earlier, first position).
pub(crate) fn index_commit(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    commit_us: u64,
    first_position: u64,
) -> Result<(), StoreError> {
    match last_commit_time(txn, dbs)? {
        Some(last) if last > commit_us => Err(StoreError::Corrupt(format!(
            "commit time {commit_us} before the last one, {last}"
        ))),
        Some(last) if last == commit_us => Ok(()),
        _ => Ok(dbs.time_index.put(txn, &commit_us, &first_position)?),
    }
}

/// The first position committed at or after `time_us`; the head (the next position) when none
/// was.
pub fn first_position_at_or_after(
    txn: &RoTxn,
    dbs: &Databases,
    time_us: u64,
) -> Result<u64, StoreError> {
    match dbs.time_index.range(txn, &(time_us..))?.next() {
        Some(entry) => Ok(entry?.1),
        None => Ok(dbs.meta.get(txn, META_NEXT_POSITION)?.unwrap_or(0)),
    }
}

/// Builds the time index of a store written before it existed (format 2): times in order of
/// position, each the running maximum of the records' `epoch_us` (an older store's clock may
/// have stepped back). One pass over the events, at the upgrade.
pub(crate) fn build_index(txn: &mut RwTxn<'_>, dbs: &Databases) -> Result<u64, StoreError> {
    #[derive(Deserialize)]
    struct RecordTime {
        epoch_us: u64,
    }
    dbs.time_index.clear(txn)?;
    let mut entries: Vec<(u64, u64)> = Vec::new();
    let mut last: Option<u64> = None;
    for entry in dbs.events.iter(txn)? {
        let (position, stored) = entry?;
        // Records of a format before 3 are plain JSON; a store whose checksum upgrade (format
        // 4) was interrupted before this index existed may hold sealed ones too.
        let record = crate::store::checksum::unseal_event(position, stored).unwrap_or(stored);
        let time: RecordTime = serde_json::from_slice(record)
            .map_err(|e| StoreError::Corrupt(format!("record at {position}: {e}")))?;
        if last.is_none_or(|last| time.epoch_us > last) {
            entries.push((time.epoch_us, position));
            last = Some(time.epoch_us);
        }
    }
    for (time, position) in &entries {
        dbs.time_index.put(txn, time, position)?;
    }
    Ok(entries.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_never_go_backwards() {
        let clock = CommitClock::starting_at(1_000);
        assert_eq!(clock.stamp(500), 1_000, "before the store's last commit");
        assert_eq!(clock.stamp(2_000), 2_000);
        assert_eq!(clock.stamp(1_999), 2_000, "the clock stepped back");
        assert_eq!(clock.stamp(2_000), 2_000, "equal times are allowed");
        assert_eq!(clock.stamp(2_001), 2_001);
        let fresh = CommitClock::default();
        assert_eq!(fresh.stamp(7), 7);
    }

    #[test]
    fn concurrent_stamps_are_each_at_least_every_earlier_one() {
        let clock = std::sync::Arc::new(CommitClock::starting_at(0));
        let threads: Vec<_> = (0..4u64)
            .map(|thread| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    let mut previous = 0;
                    for step in 0..1_000u64 {
                        // Each thread's "clock" jumps around.
                        let now = (step * 7 + thread * 13) % 500;
                        let stamp = clock.stamp(now);
                        assert!(stamp >= previous && stamp >= now);
                        previous = stamp;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
