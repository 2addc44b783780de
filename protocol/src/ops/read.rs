//! Reads: `READ`, `READALL`, `READTYPES`.
//!
//! # Syntax
//! ```text
//! READ <stream> <from_version> <count> [forward|backward]␍␊
//! READ <stream> from_time <time> <count> [forward|backward]␍␊
//! READALL <from_position> <count> [forward|backward]␍␊
//! READALL from_time <time> <count> [forward|backward]␍␊
//! READTYPES <type>[,<type>…] <from_position> <count>␍␊
//! READTAGS <tag>[,<tag>…] <from_position> <count>␍␊
//! ```
//! `READTAGS` returns the events carrying any of the tags (as `READTYPES` the events of any
//! of the types), in position order.
//! `<from_version>` / `<from_position>` is inclusive; `end` (or `-1`) starts at the newest
//! event, for reading backward. `from_time <time>` (epoch microseconds or RFC 3339, see
//! [`crate::time`]) starts at the first event committed at or after it (backward: the last
//! at or before it). `<count>` above `MAX_READ_COUNT` is clamped to it.
//!
//! # Reply
//! `EVENTS <count> <#bytes>␍␊<JSON array of event records>␍␊`
//!
//! # Example
//! ```text
//! READ user-1 0 10
//! EVENTS 1 171
//! [{"event_id":"…","event_type":"UserCreated","stream_id":"user-1","version":0,…}]
//! ```

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::limits::{MAX_READ_COUNT, MAX_TAGS_PER_READ, MAX_TYPES_PER_READ};
use crate::line::{parse_u64, Args};
use crate::ops::append::{validate_event_type, validate_tag};
use crate::ops::streams::validate_stream_id;
use crate::request::{put_line, Direction, ReadStart, Request};
use crate::time::parse_time;

pub(crate) fn parse_read(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let stream = validate_stream_id(args.required("stream id")?)?;
    let from = parse_start(&mut args, "from_version")?;
    let count = parse_count(args.required("count")?)?;
    let direction = parse_direction(args.optional("direction")?)?;
    args.finish("READ")?;
    Ok(Request::Read {
        stream,
        from,
        count,
        direction,
    })
}

pub(crate) fn parse_read_all(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let from = parse_start(&mut args, "from_position")?;
    let count = parse_count(args.required("count")?)?;
    let direction = parse_direction(args.optional("direction")?)?;
    args.finish("READALL")?;
    Ok(Request::ReadAll {
        from,
        count,
        direction,
    })
}

pub(crate) fn parse_read_types(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let list = args.required("event types")?;
    let mut types: Vec<String> = Vec::new();
    for event_type in list.split(',') {
        validate_event_type(event_type)?;
        if !types.iter().any(|t| t == event_type) {
            types.push(event_type.to_owned());
        }
    }
    if types.len() > MAX_TYPES_PER_READ {
        return Err(ProtocolError::invalid_argument(format!(
            "READTYPES takes at most {MAX_TYPES_PER_READ} types"
        )));
    }
    let from_position = parse_u64(args.required("from_position")?, "from_position")?;
    let count = parse_count(args.required("count")?)?;
    args.finish("READTYPES")?;
    Ok(Request::ReadTypes {
        types,
        from_position,
        count,
    })
}

pub(crate) fn parse_read_tags(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let list = args.required("tags")?;
    let mut tags: Vec<String> = Vec::new();
    for tag in list.split(',') {
        validate_tag(tag)?;
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    if tags.len() > MAX_TAGS_PER_READ {
        return Err(ProtocolError::invalid_argument(format!(
            "READTAGS takes at most {MAX_TAGS_PER_READ} tags"
        )));
    }
    let from_position = parse_u64(args.required("from_position")?, "from_position")?;
    let count = parse_count(args.required("count")?)?;
    args.finish("READTAGS")?;
    Ok(Request::ReadTags {
        tags,
        from_position,
        count,
    })
}

/// The start argument: a number, `end`/`-1`, or `from_time <time>` (two tokens).
fn parse_start(args: &mut Args<'_>, what: &str) -> Result<ReadStart, ProtocolError> {
    let text = args.required(what)?;
    if text.eq_ignore_ascii_case("end") || text == "-1" {
        return Ok(ReadStart::End);
    }
    if text.eq_ignore_ascii_case("from_time") {
        return parse_time(args.required("from_time")?).map(ReadStart::Time);
    }
    parse_u64(text, what).map(ReadStart::At)
}

/// Counts above the limit are clamped, not refused: a client asking for "everything" gets the
/// largest page and pages on.
fn parse_count(text: &str) -> Result<u64, ProtocolError> {
    Ok(parse_u64(text, "count")?.min(MAX_READ_COUNT))
}

fn parse_direction(text: Option<&str>) -> Result<Direction, ProtocolError> {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("forward") | Some("fwd") => Ok(Direction::Forward),
        Some("backward") | Some("bwd") => Ok(Direction::Backward),
        Some(other) => Err(ProtocolError::invalid_argument(format!(
            "direction must be forward or backward, got {other}"
        ))),
    }
}

fn start_text(start: ReadStart) -> String {
    match start {
        ReadStart::At(n) => n.to_string(),
        ReadStart::End => "end".to_owned(),
        ReadStart::Time(epoch_us) => format!("from_time {epoch_us}"),
    }
}

fn direction_text(direction: Direction) -> &'static str {
    match direction {
        Direction::Forward => "forward",
        Direction::Backward => "backward",
    }
}

pub(crate) fn encode(request: &Request, dst: &mut BytesMut) {
    let line = match request {
        Request::Read {
            stream,
            from,
            count,
            direction,
        } => format!(
            "READ {stream} {} {count} {}",
            start_text(*from),
            direction_text(*direction)
        ),
        Request::ReadAll {
            from,
            count,
            direction,
        } => {
            format!(
                "READALL {} {count} {}",
                start_text(*from),
                direction_text(*direction)
            )
        }
        Request::ReadTypes {
            types,
            from_position,
            count,
        } => {
            format!("READTYPES {} {from_position} {count}", types.join(","))
        }
        Request::ReadTags {
            tags,
            from_position,
            count,
        } => {
            format!("READTAGS {} {from_position} {count}", tags.join(","))
        }
        other => unreachable!("read::encode called with {}", other.operation()),
    };
    put_line(dst, &line);
}
