//! Retention: which of a stream's events reads still show, under its limits (`META`:
//! `max_count`, `max_age_ms`, `truncate_before`).
//!
//! Limits hide events, they do not remove them (a scavenge does, [`crate::store::scavenge`])
//! nor renumber anything: a stream's versions and current version, and every position in
//! `$all`, stay as they were. Because a stream's events have growing versions, positions and commit times, every limit
//! hides a prefix of the stream: what is shown is every version from [`retained_from`] on. The
//! age limit is turned into that boundary through the commit-time index (the first position
//! committed within the age, then the first version at or after that position), so no record
//! is parsed to apply it.

use std::collections::HashMap;

use heed::RoTxn;

use crate::store::clock::first_position_at_or_after;
use crate::store::schema::{stream_index_key, Databases, StreamLimits, StreamMeta};
use crate::store::StoreError;

/// The stream's limits, if any are set.
pub fn load_limits(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
) -> Result<Option<StreamLimits>, StoreError> {
    dbs.stream_limits
        .get(txn, stream)?
        .map(StreamLimits::decode)
        .transpose()
}

/// The first version of the stream its limits still show, at `now_us` (may be past its last
/// version: then it shows none). 0 when it has no limits. Deletes are not counted here (see
/// [`StreamMeta::first_visible_version`]).
pub fn retained_from(
    txn: &RoTxn,
    dbs: &Databases,
    meta: &StreamMeta,
    limits: &StreamLimits,
    now_us: u64,
) -> Result<u64, StoreError> {
    let mut first = limits.truncate_before.unwrap_or(0);
    if let Some(max_count) = limits.max_count {
        first = first.max(meta.next_version.saturating_sub(max_count));
    }
    if let Some(max_age_ms) = limits.max_age_ms {
        let cutoff_us = now_us.saturating_sub(max_age_ms.saturating_mul(1000));
        let position = first_position_at_or_after(txn, dbs, cutoff_us)?;
        first = first.max(first_version_at_or_after(txn, dbs, meta, position)?);
    }
    Ok(first)
}

/// The first version of the stream a read shows at `now_us`: after its delete boundary and
/// its retention boundary.
pub fn first_shown(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
    meta: &StreamMeta,
    now_us: u64,
) -> Result<u64, StoreError> {
    let retained = match load_limits(txn, dbs, stream)? {
        Some(limits) => retained_from(txn, dbs, meta, &limits, now_us)?,
        None => 0,
    };
    Ok(meta.first_visible_version.max(retained))
}

/// The first version of the stream at or after `position` in `$all` (`next_version` when
/// none is). Positions grow with versions: a binary search over the stream index. A scavenge
/// leaves gaps in the index (not always a prefix: it removes what was hidden when each slice
/// ran), so a probed version stands for the first stored version at or after it: that is still
/// monotone, and the answer is the version after the last stored one before `position`.
pub fn first_version_at_or_after(
    txn: &RoTxn,
    dbs: &Databases,
    meta: &StreamMeta,
    position: u64,
) -> Result<u64, StoreError> {
    let (mut low, mut high) = (0, meta.next_version);
    while low < high {
        let middle = low + (high - low) / 2;
        match stored_at_or_after(txn, dbs, meta, middle)? {
            Some((_, found)) if found < position => low = middle + 1,
            _ => high = middle,
        }
    }
    Ok(low)
}

/// The first version of the stream still stored at or after `version`, with its position
/// (`None`: none is).
pub fn stored_at_or_after(
    txn: &RoTxn,
    dbs: &Databases,
    meta: &StreamMeta,
    version: u64,
) -> Result<Option<(u64, u64)>, StoreError> {
    let low = stream_index_key(meta.stream_number, version);
    let high = stream_index_key(meta.stream_number, u64::MAX);
    let range = (
        std::ops::Bound::Included(&low[..]),
        std::ops::Bound::Included(&high[..]),
    );
    let Some(entry) = dbs.stream_index.range(txn, &range)?.next() else {
        return Ok(None);
    };
    let (key, position) = entry?;
    let found = key
        .get(8..16)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "stream index key of {} bytes for stream number {}",
                key.len(),
                meta.stream_number
            ))
        })?;
    Ok(Some((found, position)))
}

/// Most streams one [`RetentionFilter`] remembers; past it, it forgets them all and looks
/// them up again (a read visits at most a page of events, so this is rarely reached).
pub const MAX_FILTER_STREAMS: usize = 4096;

/// Decides, event by event, whether a read across streams (`READALL`, `READTYPES`,
/// subscriptions) shows an event under its stream's limits. Built once per read; remembers
/// each stream's boundary. Deleted streams' events are shown, as `$all` always showed them.
/// Pass the same read transaction to every call.
pub struct RetentionFilter {
    dbs: Databases,
    now_us: u64,
    boundaries: HashMap<String, u64>,
}

impl RetentionFilter {
    /// `None` when no stream of the store has limits: nothing to hide, nothing to check.
    pub fn new(
        txn: &RoTxn,
        dbs: &Databases,
        now_us: u64,
    ) -> Result<Option<RetentionFilter>, StoreError> {
        if dbs.stream_limits.is_empty(txn)? {
            return Ok(None);
        }
        Ok(Some(RetentionFilter {
            dbs: *dbs,
            now_us,
            boundaries: HashMap::new(),
        }))
    }

    /// Whether the event at `version` of `stream` is shown.
    pub fn shows(&mut self, txn: &RoTxn, stream: &str, version: u64) -> Result<bool, StoreError> {
        if let Some(&first) = self.boundaries.get(stream) {
            return Ok(version >= first);
        }
        let first = self.boundary(txn, stream)?;
        if self.boundaries.len() >= MAX_FILTER_STREAMS {
            self.boundaries.clear();
        }
        self.boundaries.insert(stream.to_owned(), first);
        Ok(version >= first)
    }

    fn boundary(&self, txn: &RoTxn, stream: &str) -> Result<u64, StoreError> {
        let Some(limits) = load_limits(txn, &self.dbs, stream)? else {
            return Ok(0);
        };
        let Some(meta) = self
            .dbs
            .streams
            .get(txn, stream)?
            .map(StreamMeta::decode)
            .transpose()?
        else {
            return Ok(0);
        };
        retained_from(txn, &self.dbs, &meta, &limits, self.now_us)
    }
}

/// Which events of one append its stream's limits hide as soon as they are committed
/// (`truncate_before` set ahead of the stream, or an append longer than `max_count`): the
/// first version of the append that is shown. Age is not checked: a new event is the newest.
pub(crate) fn shown_on_commit(limits: Option<&StreamLimits>, next_version_after: u64) -> u64 {
    let Some(limits) = limits else {
        return 0;
    };
    let by_count = limits
        .max_count
        .map_or(0, |count| next_version_after.saturating_sub(count));
    by_count.max(limits.truncate_before.unwrap_or(0))
}
