//! The one table of wire error codes.
//!
//! Every error the server sends is `-ERR <code> '<message>'`. The code is machine-readable and
//! listed here with whether it closes the connection and whether retrying can succeed;
//! PROTOCOL.md carries the same table (a test checks they agree).

use std::fmt;

/// Machine-readable error code sent after `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The stream's version is not the one the request expected.
    WrongExpectedVersion,
    /// The stream has never been written.
    StreamNotFound,
    /// The stream was deleted (and not recreated since); or it was hard-deleted (a tombstone),
    /// and then every write to it, forever, is answered with this code.
    StreamDeleted,
    /// An argument is malformed or out of range.
    InvalidArgument,
    /// A JSON payload does not parse or has the wrong shape.
    InvalidJson,
    /// The operation name is not known.
    UnknownCommand,
    /// A payload's declared size exceeds `max_payload`.
    PayloadTooLarge,
    /// A control line exceeds the maximum length.
    LineTooLong,
    /// A payload is not followed by CRLF: the byte count was wrong, framing is lost.
    BadFrame,
    /// The named store is not served here.
    StoreNotFound,
    /// An event id was already written somewhere other than this append's place.
    DuplicateEventId,
    /// A conditional append found an event matching its condition after the given position
    /// (a Dynamic Consistency Boundary conflict); the message names the first such position.
    ConditionFailed,
    /// No snapshot of the stream (at that version).
    SnapshotNotFound,
    /// The connection is read-only (a WebSocket opened with `readonly=1`, as the web console
    /// does) and the request would change the store.
    ReadOnly,
    /// The server is at its connection limit.
    TooManyConnections,
    /// The subscription type is not one of the four.
    UnknownSelectorType,
    /// A subscription selector is malformed (bad pattern, bad JSON, bad stream id).
    InvalidSelector,
    /// No persistent subscription (or no subscription with that sid) exists.
    SubscriptionNotFound,
    /// A persistent subscription of that name exists with another type or selector, or the
    /// sid is already used on this connection.
    SubscriptionConflict,
    /// The client did not answer the server's PINGs.
    StaleConnection,
    /// The server is shutting down.
    ShuttingDown,
    /// The storage engine failed; nothing was written.
    StorageError,
    /// The store has no room (its LMDB map is full, or the disk answered ENOSPC or EIO on a
    /// write); nothing was written. Retryable once space is freed or the map is raised.
    StoreFull,
    /// The store is at one of its quotas (bytes, streams, connections, subscriptions; the
    /// message names it): nothing was done. Not retryable as is: delete and scavenge, close
    /// something, or have the quota raised.
    QuotaExceeded,
    /// The store is at its write rate (events or bytes per second): nothing was written.
    /// Retryable after the wait the message names.
    RateLimited,
    /// A cluster node cannot serve the request now: no leader was known within the wait
    /// (an election, a partition), or the leader changed while a write was in flight, so its
    /// outcome is unknown. Retry (an append with the same event ids, or an exact expected
    /// version, is safe to retry).
    Unavailable,
    /// A stored record breaks the rules every reader relies on (written by an older version,
    /// or damaged on disk): it cannot be folded or matched. The message names its position.
    UnreadableEvent,
    /// A stored record fails its checksum (damaged on disk): it is never served. The message
    /// names the store's record (position, or stream and version).
    Corrupt,
    /// The server requires authentication and the connection has not authenticated: only
    /// `CONNECT`, `PING`, `PONG`, `HELP` and `INFO` are accepted before a successful `CONNECT`.
    AuthRequired,
    /// `CONNECT`'s credentials are wrong (or were revoked): the connection is closed.
    AuthFailed,
    /// The authenticated user lacks the permission the request needs (the message names it).
    PermissionDenied,
    /// The port speaks TLS and the client sent plain text.
    TlsRequired,
    /// A bug: the server hit a state it did not expect.
    Internal,
}

/// Every code, in the order PROTOCOL.md lists them.
pub const ALL_ERROR_CODES: [ErrorCode; 33] = [
    ErrorCode::WrongExpectedVersion,
    ErrorCode::StreamNotFound,
    ErrorCode::StreamDeleted,
    ErrorCode::InvalidArgument,
    ErrorCode::InvalidJson,
    ErrorCode::UnknownCommand,
    ErrorCode::PayloadTooLarge,
    ErrorCode::LineTooLong,
    ErrorCode::BadFrame,
    ErrorCode::StoreNotFound,
    ErrorCode::DuplicateEventId,
    ErrorCode::ConditionFailed,
    ErrorCode::UnknownSelectorType,
    ErrorCode::InvalidSelector,
    ErrorCode::SubscriptionNotFound,
    ErrorCode::SubscriptionConflict,
    ErrorCode::SnapshotNotFound,
    ErrorCode::ReadOnly,
    ErrorCode::TooManyConnections,
    ErrorCode::StaleConnection,
    ErrorCode::ShuttingDown,
    ErrorCode::StorageError,
    ErrorCode::StoreFull,
    ErrorCode::QuotaExceeded,
    ErrorCode::RateLimited,
    ErrorCode::Unavailable,
    ErrorCode::UnreadableEvent,
    ErrorCode::Corrupt,
    ErrorCode::AuthRequired,
    ErrorCode::AuthFailed,
    ErrorCode::PermissionDenied,
    ErrorCode::TlsRequired,
    ErrorCode::Internal,
];

impl ErrorCode {
    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::WrongExpectedVersion => "wrong_expected_version",
            ErrorCode::StreamNotFound => "stream_not_found",
            ErrorCode::StreamDeleted => "stream_deleted",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::StoreNotFound => "store_not_found",
            ErrorCode::DuplicateEventId => "duplicate_event_id",
            ErrorCode::ConditionFailed => "condition_failed",
            ErrorCode::UnknownSelectorType => "unknown_selector_type",
            ErrorCode::InvalidSelector => "invalid_selector",
            ErrorCode::SubscriptionNotFound => "subscription_not_found",
            ErrorCode::SubscriptionConflict => "subscription_conflict",
            ErrorCode::SnapshotNotFound => "snapshot_not_found",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::StaleConnection => "stale_connection",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::StorageError => "storage_error",
            ErrorCode::StoreFull => "store_full",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::UnreadableEvent => "unreadable_event",
            ErrorCode::Corrupt => "corrupt",
            ErrorCode::AuthRequired => "auth_required",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::TlsRequired => "tls_required",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the server closes the connection after sending this error. Only errors after
    /// which the byte stream can no longer be framed, or the connection is refused, close it.
    pub const fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::PayloadTooLarge
                | ErrorCode::LineTooLong
                | ErrorCode::BadFrame
                | ErrorCode::TooManyConnections
                | ErrorCode::StaleConnection
                | ErrorCode::ShuttingDown
                | ErrorCode::AuthFailed
                | ErrorCode::TlsRequired
        )
    }

    /// Whether sending the same request again may succeed without changing it.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::TooManyConnections
                | ErrorCode::ShuttingDown
                | ErrorCode::StorageError
                | ErrorCode::StoreFull
                | ErrorCode::RateLimited
                | ErrorCode::Unavailable
        )
    }

    /// Parses a wire code.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ALL_ERROR_CODES
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with its wire code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} '{message}'")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ProtocolError {
        ProtocolError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> ProtocolError {
        ProtocolError::new(ErrorCode::InvalidArgument, message)
    }

    pub fn invalid_json(message: impl Into<String>) -> ProtocolError {
        ProtocolError::new(ErrorCode::InvalidJson, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ALL_ERROR_CODES {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }
}
