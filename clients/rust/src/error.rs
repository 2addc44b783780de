//! The client's one error type.
//!
//! An answer from the server (`-ERR <code> '<message>'`) is [`Error::Server`], carrying the wire
//! code from the protocol crate's table; a request the client refuses before sending (it would
//! break a protocol limit) is [`Error::Invalid`], with the code the server would have answered.
//! Everything else is about reaching the server.

use esdb_protocol::{ErrorCode, ProtocolError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered `-ERR`: the store's own answer, never retried by the client unless
    /// the code is retryable in the protocol's table.
    #[error("{code}: {message}")]
    Server { code: ErrorCode, message: String },
    /// Refused by the client before sending, because the server would refuse it (and, for
    /// `payload_too_large`, close the connection shared with other calls).
    #[error("{code}: {message}")]
    Invalid { code: ErrorCode, message: String },
    /// No server of the list could be reached, after every retry.
    #[error("no esdb server reachable ({servers}) after {attempts} attempts: {last}")]
    Unavailable {
        servers: String,
        attempts: u32,
        last: String,
    },
    /// A server could not be connected to (refused, unreachable, closed before its greeting).
    #[error("{0}")]
    Connect(String),
    /// The connection was lost before the reply arrived (only seen once retries are spent).
    #[error("connection lost: {0}")]
    Disconnected(String),
    /// No reply within the request timeout; the connection was closed.
    #[error("no reply within {0} ms")]
    Timeout(u64),
    /// The server sent something that is not the protocol, or not the reply the request calls
    /// for: a bug in the server or the client, or not an esdb server.
    #[error("bad reply from server: {0}")]
    Protocol(String),
    /// A JSON value could not be encoded or a record decoded.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The subscription was ended by [`crate::CatchUpSubscription::unsubscribe`] or the like.
    #[error("subscription closed")]
    Closed,
}

impl Error {
    /// The wire code, for an answer of the server or a request refused for the same reason.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } | Error::Invalid { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again (on a new connection, after a pause) can succeed: a lost
    /// connection, a timeout, or a code the protocol's table marks retryable. Answers of the
    /// store (`wrong_expected_version`, …) are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Server { code, .. } => code.is_retryable(),
            Error::Connect(_)
            | Error::Disconnected(_)
            | Error::Timeout(_)
            | Error::Unavailable { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn server(error: ProtocolError) -> Error {
        Error::Server {
            code: error.code,
            message: error.message,
        }
    }

    pub(crate) fn invalid(error: ProtocolError) -> Error {
        Error::Invalid {
            code: error.code,
            message: error.message,
        }
    }

    pub(crate) fn unexpected(request: &str, reply: &esdb_protocol::Reply) -> Error {
        let mut text = format!("{reply:?}");
        text.truncate(200);
        Error::Protocol(format!("unexpected reply to {request}: {text}"))
    }
}
