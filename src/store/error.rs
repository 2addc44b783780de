//! Store errors, and their mapping onto wire error codes (the one place that does it).

use esdb_protocol::{ErrorCode, ExpectedVersion, ProtocolError};
use uuid::Uuid;

use crate::store::checksum::Corruption;

/// A command or read the store refused; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Rejection {
    #[error("stream {stream}: expected version {expected}, actual {actual}")]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        actual: i64,
    },
    #[error("stream {stream} not found")]
    StreamNotFound { stream: String },
    #[error("stream {stream} is deleted")]
    StreamDeleted { stream: String },
    /// Hard-deleted: a tombstone, so the stream can never be written again.
    #[error("stream {stream} is hard-deleted (a tombstone): it can never be written again")]
    StreamTombstoned { stream: String },
    #[error("event_id {event_id} already written to {stream} at version {version}")]
    DuplicateEventId {
        event_id: Uuid,
        stream: String,
        version: u64,
    },
    #[error("no persistent subscription named {name}")]
    SubscriptionNotFound { name: String },
    #[error("persistent subscription {name} exists with another selector ({existing})")]
    SubscriptionConflict { name: String, existing: String },
    #[error("no snapshot of stream {stream}{}", at_version(.version))]
    SnapshotNotFound {
        stream: String,
        version: Option<u64>,
    },
    #[error(
        "snapshot version {version} is beyond the current version {current} of stream {stream}"
    )]
    SnapshotBeyondStream {
        stream: String,
        version: u64,
        current: u64,
    },
    #[error(
        "snapshot version {version} is before version {first}, where stream {stream} restarted \
         after a delete"
    )]
    SnapshotBeforeStream {
        stream: String,
        version: u64,
        first: u64,
    },
    /// `AGG` would go past one of its limits; the message says which and what to do.
    #[error("AGG {stream}: {reason}")]
    AggregateTooLarge { stream: String, reason: String },
    /// An append condition found a matching event after its position (`store::condition`).
    /// The message starts with the first matching position, for clients to read.
    #[error(
        "position {position} (stream {stream}, version {version}) matches the condition{}",
        after_text(.after)
    )]
    ConditionFailed {
        position: u64,
        stream: String,
        version: u64,
        after: Option<u64>,
    },
    /// An append condition would examine more candidates than the check may.
    #[error(
        "the condition selects more than {candidates} candidate events after its position: \
         give its items more tags or pass a later after"
    )]
    ConditionTooBroad { candidates: usize },
    /// `SHRED` destroyed the stream's data key: it can never be written again.
    #[error(
        "stream {stream} is shredded: its data key is destroyed, so it can never be written again"
    )]
    StreamShredded { stream: String },
    /// The append was sealed (or not) by a node that did not yet know the stream's data key
    /// as it is now: nothing was written, and a retry is sealed as the stream now needs.
    #[error("stream {stream} was encrypted while this append was in flight: retry it")]
    SealingChanged { stream: String },
    /// `ENCRYPT` of a stream that already held events (written unencrypted).
    #[error(
        "stream {stream} already holds events ({next_version} written unencrypted): only a new \
         stream can be encrypted"
    )]
    EncryptExisting { stream: String, next_version: u64 },
    /// `SHRED` of a stream without a data key.
    #[error("stream {stream} is not encrypted (only a stream made with ENCRYPT can be shredded)")]
    NotEncrypted { stream: String },
    /// One part of an `APPENDMULTI` failed (the first failing part), so nothing was written.
    #[error("part {part}: {rejection}")]
    InPart {
        part: usize,
        rejection: Box<Rejection>,
    },
}

fn after_text(after: &Option<u64>) -> String {
    match after {
        Some(after) => format!(" and comes after position {after}"),
        None => " (no after position: every event counts)".to_owned(),
    }
}

impl Rejection {
    /// The wire code this rejection is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Rejection::WrongExpectedVersion { .. } => ErrorCode::WrongExpectedVersion,
            Rejection::StreamNotFound { .. } => ErrorCode::StreamNotFound,
            Rejection::StreamDeleted { .. }
            | Rejection::StreamTombstoned { .. }
            | Rejection::StreamShredded { .. } => ErrorCode::StreamDeleted,
            Rejection::SealingChanged { .. } => ErrorCode::Unavailable,
            Rejection::EncryptExisting { .. } => ErrorCode::WrongExpectedVersion,
            Rejection::NotEncrypted { .. } => ErrorCode::InvalidArgument,
            Rejection::DuplicateEventId { .. } => ErrorCode::DuplicateEventId,
            Rejection::SubscriptionNotFound { .. } => ErrorCode::SubscriptionNotFound,
            Rejection::SubscriptionConflict { .. } => ErrorCode::SubscriptionConflict,
            Rejection::SnapshotNotFound { .. } => ErrorCode::SnapshotNotFound,
            Rejection::SnapshotBeyondStream { .. }
            | Rejection::SnapshotBeforeStream { .. }
            | Rejection::AggregateTooLarge { .. }
            | Rejection::ConditionTooBroad { .. } => ErrorCode::InvalidArgument,
            Rejection::ConditionFailed { .. } => ErrorCode::ConditionFailed,
            Rejection::InPart { rejection, .. } => rejection.code(),
        }
    }
}

fn at_version(version: &Option<u64>) -> String {
    version.map_or_else(String::new, |version| format!(" at version {version}"))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// LMDB failed. The whole batch was aborted.
    #[error("storage failure: {0}")]
    Storage(String),
    /// No room: the LMDB map is full, or the disk answered ENOSPC (or EIO, which full thin
    /// volumes and network disks give) on a write. Retryable once space is freed.
    #[error("{0}")]
    Full(String),
    /// The data on disk breaks an invariant of the schema (an index entry without its event, a
    /// short key): a bug or damage. Not called corruption, since no checksum says so.
    #[error("store invariant broken: {0}")]
    Corrupt(String),
    /// A stored record fails its checksum (see [`crate::store::checksum`]): damaged on disk. It
    /// is never served; the message names the record.
    #[error("{0}")]
    Checksum(#[from] Corruption),
    /// A stored record breaks the JSON rules every reader relies on, so it cannot be folded or
    /// matched; the message names it (position, or stream and version) and the rule.
    #[error("{0}")]
    Unreadable(String),
    #[error("store is shutting down")]
    ShuttingDown,
    /// A cluster node cannot serve this now (no leader, or the leader changed while the write
    /// was in flight: its outcome is unknown). Set by `crate::cluster`; retryable.
    #[error("{0}")]
    Unavailable(String),
    /// The store's quota refused the write (`crate::store::quota`); nothing was written.
    #[error("{}", quota_text(.0))]
    Quota(crate::store::quota::QuotaRefusal),
}

fn quota_text(refusal: &crate::store::quota::QuotaRefusal) -> &str {
    use crate::store::quota::QuotaRefusal;
    match refusal {
        QuotaRefusal::Exceeded(text) | QuotaRefusal::RateLimited(text) => text,
    }
}

impl From<heed::Error> for StoreError {
    fn from(error: heed::Error) -> StoreError {
        let full = match &error {
            heed::Error::Mdb(heed::MdbError::MapFull) => true,
            heed::Error::Io(io) => matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EIO)),
            _ => false,
        };
        if full {
            StoreError::Full(format!("store is full: {error}"))
        } else {
            StoreError::Storage(error.to_string())
        }
    }
}

impl StoreError {
    /// The `-ERR` this error is answered with.
    pub fn to_protocol_error(&self) -> ProtocolError {
        let code = match self {
            StoreError::Rejected(rejection) => rejection.code(),
            StoreError::Storage(_) => ErrorCode::StorageError,
            StoreError::Full(_) => ErrorCode::StoreFull,
            StoreError::Corrupt(_) => ErrorCode::Internal,
            StoreError::Checksum(_) => ErrorCode::Corrupt,
            StoreError::Unreadable(_) => ErrorCode::UnreadableEvent,
            StoreError::ShuttingDown => ErrorCode::ShuttingDown,
            StoreError::Unavailable(_) => ErrorCode::Unavailable,
            StoreError::Quota(crate::store::quota::QuotaRefusal::Exceeded(_)) => {
                ErrorCode::QuotaExceeded
            }
            StoreError::Quota(crate::store::quota::QuotaRefusal::RateLimited(_)) => {
                ErrorCode::RateLimited
            }
        };
        ProtocolError::new(code, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_room_is_store_full_and_other_failures_are_storage_errors() {
        let code = |error: heed::Error| StoreError::from(error).to_protocol_error().code;
        assert_eq!(
            code(heed::Error::Mdb(heed::MdbError::MapFull)),
            ErrorCode::StoreFull
        );
        for errno in [libc::ENOSPC, libc::EIO] {
            let io = std::io::Error::from_raw_os_error(errno);
            assert_eq!(
                code(heed::Error::Io(io)),
                ErrorCode::StoreFull,
                "errno {errno}"
            );
        }
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(code(heed::Error::Io(io)), ErrorCode::StorageError);
        assert_eq!(
            code(heed::Error::Mdb(heed::MdbError::Corrupted)),
            ErrorCode::StorageError
        );
    }
}
