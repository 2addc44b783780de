//! `META`: a stream's metadata, which holds its retention limits.
//!
//! # Syntax
//! ```text
//! META <stream>␍␊                      → META <stream> <json>
//! META <stream> <#bytes>␍␊<json>␍␊     → +OK
//! META <stream> <json>␍␊               → +OK   (inline: the JSON is the rest of the line)
//! ```
//! The JSON is `{"max_count": n ≥ 1, "max_age_ms": n ≥ 1, "truncate_before": version}`, every
//! field optional (absent or `null`: no such limit). Setting replaces the whole object, so
//! `{}` removes every limit. The reply to a get carries the object on its line, as `INFO`
//! does (it is a few dozen bytes), with the limits that are set, in this order.
//!
//! # Example
//! ```text
//! META cart-1 {"max_count":2}
//! +OK
//! META cart-1
//! META cart-1 {"max_count":2}
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;
use crate::line::{snippet, Args};
use crate::ops::streams::validate_stream_id;
use crate::request::{put_line, sized_or_inline, LineOutcome, Request};

/// A stream's limits as the wire carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamMetadata {
    /// Only the newest `max_count` events are shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    /// Only events committed within the last `max_age_ms` are shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_ms: Option<u64>,
    /// Events before this version are not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_before: Option<u64>,
}

impl StreamMetadata {
    /// The object as `META <stream>` answers it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("integers always serialise")
    }
}

pub(crate) fn parse(line: &Bytes, mut args: Args<'_>) -> LineOutcome {
    let stream = args.required("stream id").and_then(validate_stream_id);
    let body = args.remainder();
    if body.is_empty() {
        return LineOutcome::Done(stream.map(|stream| Request::Meta {
            stream,
            payload: None,
        }));
    }
    let header = stream.map(|stream| Request::Meta {
        stream,
        payload: Some(Bytes::new()),
    });
    sized_or_inline(line, body, header, "META")
}

/// Parses and checks a `META` set payload.
pub fn parse_metadata(payload: &[u8]) -> Result<StreamMetadata, ProtocolError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ProtocolError::invalid_json(format!(
            "META takes a JSON object, got {}",
            snippet(payload)
        )));
    }
    let metadata: StreamMetadata = serde_json::from_slice(payload)
        .map_err(|e| ProtocolError::invalid_json(format!("bad META JSON: {e}")))?;
    for (name, value) in [
        ("max_count", metadata.max_count),
        ("max_age_ms", metadata.max_age_ms),
    ] {
        if value == Some(0) {
            return Err(ProtocolError::invalid_argument(format!(
                "{name} must be at least 1 (leave it out for no limit)"
            )));
        }
    }
    if metadata.max_age_ms.is_some_and(|ms| ms > MAX_AGE_MS) {
        return Err(ProtocolError::invalid_argument(format!(
            "max_age_ms must be at most {MAX_AGE_MS}"
        )));
    }
    Ok(metadata)
}

/// The largest `max_age_ms`: about 292 000 years, so it fits in microseconds as a u64.
pub const MAX_AGE_MS: u64 = u64::MAX / 1000;

/// Encodes `META <stream>` (`payload` `None`) or a sized `META` set.
pub fn encode(stream: &str, payload: Option<&[u8]>, dst: &mut BytesMut) {
    match payload {
        None => put_line(dst, &format!("META {stream}")),
        Some(payload) => {
            let header = format!("META {stream} {}\r\n", payload.len());
            dst.reserve(header.len() + payload.len() + 2);
            dst.put_slice(header.as_bytes());
            dst.put_slice(payload);
            dst.put_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_bad_ones_are_refused() {
        let all =
            parse_metadata(br#"{"max_count":3,"max_age_ms":1000,"truncate_before":2}"#).unwrap();
        assert_eq!(all.max_count, Some(3));
        assert_eq!(all.max_age_ms, Some(1000));
        assert_eq!(all.truncate_before, Some(2));
        assert_eq!(
            all.to_json(),
            r#"{"max_count":3,"max_age_ms":1000,"truncate_before":2}"#
        );
        let none = parse_metadata(br#" {"max_count":null}"#).unwrap();
        assert_eq!(none, StreamMetadata::default());
        assert_eq!(none.to_json(), "{}");
        for (payload, code) in [
            (&b"[]"[..], "invalid_json"),
            (b"", "invalid_json"),
            (br#"{"max_count":-1}"#, "invalid_json"),
            (br#"{"max_count":1.5}"#, "invalid_json"),
            (br#"{"maxcount":1}"#, "invalid_json"),
            (br#"{"max_count":0}"#, "invalid_argument"),
            (br#"{"max_age_ms":0}"#, "invalid_argument"),
            (br#"{"max_age_ms":18446744073709552}"#, "invalid_argument"),
        ] {
            let error = parse_metadata(payload).unwrap_err();
            assert_eq!(
                error.code.as_str(),
                code,
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
