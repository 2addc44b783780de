//! `AGG`: the server folds a stream into its current state (see [`crate::aggregate`]) and
//! answers with the state alone, in one round trip.
//!
//! # Syntax
//! ```text
//! AGG <stream> [from_snapshot] [foldl|foldr] [raw]␍␊
//! ```
//! Options, in any order, each at most once:
//! - `from_snapshot`: start from the stream's newest snapshot's `data` and fold only the events
//!   after it (without a snapshot, fold the whole stream);
//! - `foldr`: fold newest to oldest (default `foldl`, oldest to newest);
//! - `raw`: do not finalize: tagged values stay as `{"$sum": n}`.
//!
//! # Reply
//! `AGG <stream> <version> <#bytes>␍␊<state JSON object>␍␊`, where `<version>` is the stream's
//! current version, the newest event the state reflects.
//!
//! # Example
//! ```text
//! AGG account-1
//! AGG account-1 2 13
//! {"balance":4}
//! ```

use bytes::BytesMut;

use crate::aggregate::FoldOrder;
use crate::error::ProtocolError;
use crate::line::{snippet, Args};
use crate::ops::streams::validate_stream_id;
use crate::request::{put_line, Request};

/// One `AGG` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggRequest {
    pub stream: String,
    /// Start from the newest snapshot instead of `{}` at the first event.
    pub from_snapshot: bool,
    pub order: FoldOrder,
    /// Unwrap tagged values before replying (the default; `raw` turns it off).
    pub finalize: bool,
}

impl AggRequest {
    /// A plain `AGG <stream>`: the whole stream, `foldl`, finalized.
    pub fn new(stream: impl Into<String>) -> AggRequest {
        AggRequest {
            stream: stream.into(),
            from_snapshot: false,
            order: FoldOrder::Left,
            finalize: true,
        }
    }

    /// Encodes the request as a client sends it.
    pub fn encode(&self, dst: &mut BytesMut) {
        let mut line = format!("AGG {}", self.stream);
        if self.from_snapshot {
            line.push_str(" from_snapshot");
        }
        if self.order == FoldOrder::Right {
            line.push_str(" foldr");
        }
        if !self.finalize {
            line.push_str(" raw");
        }
        put_line(dst, &line);
    }
}

pub(crate) fn parse(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let mut request = AggRequest::new(validate_stream_id(args.required("stream id")?)?);
    let (mut seen_snapshot, mut seen_order, mut seen_raw) = (false, false, false);
    while let Some(option) = args.optional("option")? {
        let seen = match option.to_ascii_lowercase().as_str() {
            "from_snapshot" => {
                request.from_snapshot = true;
                &mut seen_snapshot
            }
            "foldl" => &mut seen_order,
            "foldr" => {
                request.order = FoldOrder::Right;
                &mut seen_order
            }
            "raw" => {
                request.finalize = false;
                &mut seen_raw
            }
            _ => {
                return Err(ProtocolError::invalid_argument(format!(
                    "unknown AGG option {} (from_snapshot, foldl, foldr, raw)",
                    snippet(option.as_bytes())
                )))
            }
        };
        if std::mem::replace(seen, true) {
            return Err(ProtocolError::invalid_argument(format!(
                "AGG option {} given twice (or foldl with foldr)",
                snippet(option.as_bytes())
            )));
        }
    }
    Ok(Request::Agg(request))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Request, ProtocolError> {
        let mut args = Args::new(text.as_bytes());
        args.next_token();
        parse(args)
    }

    #[test]
    fn options_parse_in_any_order() {
        assert_eq!(
            parse_text("AGG s").unwrap(),
            Request::Agg(AggRequest::new("s"))
        );
        let all = Request::Agg(AggRequest {
            stream: "s".into(),
            from_snapshot: true,
            order: FoldOrder::Right,
            finalize: false,
        });
        assert_eq!(parse_text("AGG s raw FOLDR from_snapshot").unwrap(), all);
        assert_eq!(parse_text("AGG s from_snapshot foldr raw").unwrap(), all);
        let mut encoded = BytesMut::new();
        let Request::Agg(request) = all else {
            unreachable!()
        };
        request.encode(&mut encoded);
        assert_eq!(&encoded[..], b"AGG s from_snapshot foldr raw\r\n");
    }

    #[test]
    fn bad_options_are_refused() {
        for bad in [
            "AGG",
            "AGG $all",
            "AGG s raw raw",
            "AGG s foldl foldr",
            "AGG s snapshot",
        ] {
            let error = parse_text(bad).unwrap_err();
            assert_eq!(error.code.as_str(), "invalid_argument", "{bad}");
        }
    }
}
