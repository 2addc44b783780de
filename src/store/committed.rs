//! Events as published from the commit path, for subscriptions.
//!
//! After each group commit the writer thread publishes one [`CommittedBatch`] holding every
//! event the batch wrote, in position order. The record bytes are the ones stored, shared
//! (`Bytes`), so fan-out never re-serialises or copies them.

use std::sync::Arc;

use bytes::Bytes;

/// One committed event.
#[derive(Debug, Clone)]
pub struct CommittedEvent {
    pub position: u64,
    pub version: u64,
    pub stream: Arc<str>,
    pub event_type: Arc<str>,
    /// The record JSON, exactly as `READ` returns it.
    pub record: Bytes,
    /// Its stream's limits (`META`) hide it from the moment it is committed (a
    /// `truncate_before` ahead of the stream, an append longer than `max_count`): live
    /// subscriptions pass over it, as reads do.
    pub hidden: bool,
}

/// Every event of one committed write transaction, in position order, gapless.
#[derive(Debug)]
pub struct CommittedBatch {
    pub events: Vec<CommittedEvent>,
}

impl CommittedBatch {
    /// The position after the batch's last event.
    pub fn end_position(&self) -> Option<u64> {
        self.events.last().map(|event| event.position + 1)
    }
}

/// Batches a slow emitter may fall behind by before it must drop its live subscribers (they
/// then catch up from storage). Bounds the memory the broadcast channel pins.
pub const COMMITTED_BATCH_CHANNEL_CAPACITY: usize = 256;
