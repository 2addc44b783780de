//! The `<expected>` argument: what the writer believes the stream's version is.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

/// Optimistic-concurrency expectation of an `APPEND` or `DELETE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check (`any`, or the seed's `-2`).
    Any,
    /// The stream must not exist: never written, or deleted (`no_stream`, `-1`).
    NoStream,
    /// The stream must exist and not be deleted (`exists`, `-4`).
    Exists,
    /// The stream's current version must be exactly this (`n ≥ 0`).
    Exact(u64),
}

impl ExpectedVersion {
    /// Parses the wire form: a keyword, a version, or one of the seed's negative integers.
    pub fn parse(text: &str) -> Result<ExpectedVersion, ProtocolError> {
        match text.to_ascii_lowercase().as_str() {
            "any" | "-2" => Ok(ExpectedVersion::Any),
            "no_stream" | "-1" => Ok(ExpectedVersion::NoStream),
            "exists" | "stream_exists" | "-4" => Ok(ExpectedVersion::Exists),
            _ => text
                .parse::<u64>()
                .map(ExpectedVersion::Exact)
                .map_err(|_| {
                    ProtocolError::invalid_argument(format!(
                        "expected version must be any, no_stream, exists or a version >= 0, got \
                     {text}"
                    ))
                }),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no_stream"),
            ExpectedVersion::Exists => f.write_str("exists"),
            ExpectedVersion::Exact(version) => write!(f, "{version}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(ExpectedVersion::parse("any"), Ok(ExpectedVersion::Any));
        assert_eq!(ExpectedVersion::parse("ANY"), Ok(ExpectedVersion::Any));
        assert_eq!(ExpectedVersion::parse("-2"), Ok(ExpectedVersion::Any));
        assert_eq!(
            ExpectedVersion::parse("no_stream"),
            Ok(ExpectedVersion::NoStream)
        );
        assert_eq!(ExpectedVersion::parse("-1"), Ok(ExpectedVersion::NoStream));
        assert_eq!(
            ExpectedVersion::parse("exists"),
            Ok(ExpectedVersion::Exists)
        );
        assert_eq!(ExpectedVersion::parse("-4"), Ok(ExpectedVersion::Exists));
        assert_eq!(ExpectedVersion::parse("0"), Ok(ExpectedVersion::Exact(0)));
        assert_eq!(ExpectedVersion::parse("42"), Ok(ExpectedVersion::Exact(42)));
        for bad in ["-3", "-5", "x", "", "1.5", "99999999999999999999999"] {
            assert!(ExpectedVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for e in [
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::Exists,
            ExpectedVersion::Exact(7),
        ] {
            assert_eq!(ExpectedVersion::parse(&e.to_string()), Ok(e));
        }
    }
}
