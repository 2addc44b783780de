//! Stream operations: `VERSION`, `EXISTS`, `STREAMS`, `DELETE`.
//!
//! # Syntax
//! ```text
//! VERSION <stream>␍␊                 → VERSION <stream> <n>      (-1 when absent or deleted)
//! EXISTS <stream>␍␊                  → EXISTS <stream> 1|0
//! STREAMS [<after>] [<count>]␍␊      → STREAMS <count> <#bytes>␍␊<JSON array of ids>␍␊
//! DELETE <stream> [<expected>] [hard]␍␊  → +OK
//! ```
//! `DELETE … hard` leaves a tombstone: the stream can never be written again.
//! `STREAMS` lists live stream ids in byte order, starting after `<after>` (use `-` or omit
//! it to start at the beginning), at most `<count>` (default and maximum 10 000).

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::expected::ExpectedVersion;
use crate::limits::{MAX_STREAMS_PAGE, MAX_STREAM_ID_BYTES};
use crate::line::{is_forbidden_in_name, parse_u64, snippet, Args};
use crate::request::{put_line, Request};

/// Checks a stream id: 1 to 255 bytes of UTF-8 without whitespace, control or format
/// characters ([`is_forbidden_in_name`]), not
/// starting with `$` (reserved for system streams such as `$all`), and not `-`.
pub fn validate_stream_id(stream: &str) -> Result<String, ProtocolError> {
    if stream.is_empty() || stream.len() > MAX_STREAM_ID_BYTES {
        return Err(ProtocolError::invalid_argument(format!(
            "stream id must be 1 to {MAX_STREAM_ID_BYTES} bytes"
        )));
    }
    if stream == "-" {
        return Err(ProtocolError::invalid_argument(
            "stream id - is reserved (STREAMS uses it for \"from the start\")",
        ));
    }
    if stream.starts_with('$') {
        return Err(ProtocolError::invalid_argument(format!(
            "stream ids starting with $ are reserved: {}",
            snippet(stream.as_bytes())
        )));
    }
    if let Some(c) = stream.chars().find(|&c| is_forbidden_in_name(c)) {
        return Err(ProtocolError::invalid_argument(format!(
            "stream id contains whitespace, a control or a format character (U+{:04X})",
            c as u32
        )));
    }
    Ok(stream.to_owned())
}

pub(crate) fn parse_version(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let stream = validate_stream_id(args.required("stream id")?)?;
    args.finish("VERSION")?;
    Ok(Request::Version { stream })
}

pub(crate) fn parse_exists(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let stream = validate_stream_id(args.required("stream id")?)?;
    args.finish("EXISTS")?;
    Ok(Request::Exists { stream })
}

pub(crate) fn parse_streams(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let after = match args.optional("after")? {
        None | Some("-") => None,
        Some(after) => Some(validate_stream_id(after)?),
    };
    let count = match args.optional("count")? {
        None => MAX_STREAMS_PAGE,
        Some(text) => parse_u64(text, "count")?.min(MAX_STREAMS_PAGE),
    };
    args.finish("STREAMS")?;
    Ok(Request::Streams { after, count })
}

pub(crate) fn parse_delete(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let stream = validate_stream_id(args.required("stream id")?)?;
    let is_hard = |text: &str| text.eq_ignore_ascii_case("hard");
    let (expected, hard) = match args.optional("expected version")? {
        None => (ExpectedVersion::Any, false),
        Some(text) if is_hard(text) => (ExpectedVersion::Any, true),
        Some(text) => {
            let expected = ExpectedVersion::parse(text)?;
            match args.optional("hard")? {
                None => (expected, false),
                Some(text) if is_hard(text) => (expected, true),
                Some(other) => {
                    return Err(ProtocolError::invalid_argument(format!(
                        "DELETE takes hard after the expected version, got {}",
                        snippet(other.as_bytes())
                    )))
                }
            }
        }
    };
    args.finish("DELETE")?;
    Ok(Request::Delete {
        stream,
        expected,
        hard,
    })
}

pub(crate) fn encode(request: &Request, dst: &mut BytesMut) {
    let line = match request {
        Request::Version { stream } => format!("VERSION {stream}"),
        Request::Exists { stream } => format!("EXISTS {stream}"),
        Request::Streams { after, count } => {
            format!("STREAMS {} {count}", after.as_deref().unwrap_or("-"))
        }
        Request::Delete {
            stream,
            expected,
            hard: false,
        } => format!("DELETE {stream} {expected}"),
        Request::Delete {
            stream,
            expected,
            hard: true,
        } => format!("DELETE {stream} {expected} hard"),
        other => unreachable!("streams::encode called with {}", other.operation()),
    };
    put_line(dst, &line);
}
