//! `APPEND`: write events to a stream.
//!
//! # Syntax
//! ```text
//! APPEND <stream> <expected> <#bytes>␍␊<payload>␍␊
//! APPEND <stream> <expected> <json>␍␊          (inline: the JSON is the rest of the line)
//! ```
//! `<expected>` is `any`, `no_stream`, `exists` or a version `n ≥ 0` (the seed's `-2`, `-1`
//! and `-4` are accepted too). The payload is one event object or a JSON array of them:
//! `{"event_type": "...", "data": <json>, "metadata": {...}?, "event_id": "<uuid>"?,
//! "tags": ["..."]?}`.
//!
//! # Reply
//! `APPENDED <stream> <last_version> <last_position>`
//!
//! # Example
//! ```text
//! APPEND user-1 no_stream {"event_type":"UserCreated","data":{"name":"Ada"}}
//! APPENDED user-1 0 0
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::ProtocolError;
use crate::expected::ExpectedVersion;
use crate::json::check_payload_value as check_json_rules;
use crate::limits::{
    MAX_EVENTS_PER_APPEND, MAX_EVENT_TYPE_BYTES, MAX_PAYLOAD_BYTES, MAX_TAGS_PER_EVENT,
    MAX_TAG_BYTES,
};
use crate::line::{snippet, Args};
use crate::ops::streams::validate_stream_id;
use crate::request::{sized_or_inline, LineOutcome, Request};

pub(crate) fn parse(line: &Bytes, mut args: Args<'_>) -> LineOutcome {
    let stream = args.required("stream id").and_then(validate_stream_id);
    let expected = args
        .required("expected version")
        .and_then(ExpectedVersion::parse);
    let body = args.remainder();
    let header = stream.and_then(|stream| {
        expected.map(|expected| Request::Append {
            stream,
            expected,
            payload: Bytes::new(),
        })
    });
    sized_or_inline(line, body, header, "APPEND")
}

/// Encodes an `APPEND` with a sized payload.
pub fn encode(stream: &str, expected: ExpectedVersion, payload: &[u8], dst: &mut BytesMut) {
    let header = format!("APPEND {stream} {expected} {}\r\n", payload.len());
    dst.reserve(header.len() + payload.len() + 2);
    dst.put_slice(header.as_bytes());
    dst.put_slice(payload);
    dst.put_slice(b"\r\n");
}

/// One event as a client submits it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventInputWire {
    event_type: String,
    data: Box<RawValue>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// One validated event of an `APPEND` payload.
#[derive(Debug, Clone)]
pub struct EventInput {
    /// The client's id for the event; the server assigns a UUID v7 when absent.
    pub event_id: Option<Uuid>,
    pub event_type: String,
    /// Any JSON value, kept as the client's bytes.
    pub data: Box<RawValue>,
    /// A JSON object, kept as the client's bytes; `None` means `{}`.
    pub metadata: Option<Box<RawValue>>,
    /// Tags (`"tags": [..]`), indexed for `READTAGS` and append conditions; empty when absent.
    pub tags: Vec<String>,
}

/// Parses and validates an `APPEND` payload: one event object or an array of them.
pub fn parse_events(payload: &[u8]) -> Result<Vec<EventInput>, ProtocolError> {
    debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES);
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    let wire: Vec<EventInputWire> = match first {
        Some(b'[') => serde_json::from_slice(payload).map_err(json_error)?,
        Some(b'{') => vec![serde_json::from_slice(payload).map_err(json_error)?],
        _ => {
            return Err(ProtocolError::invalid_json(format!(
                "payload must be an event object or an array of them, got {}",
                snippet(payload)
            )))
        }
    };
    if wire.is_empty() {
        return Err(ProtocolError::invalid_argument(
            "APPEND needs at least one event",
        ));
    }
    if wire.len() > MAX_EVENTS_PER_APPEND {
        return Err(ProtocolError::invalid_argument(format!(
            "{} events in one APPEND exceeds the limit of {MAX_EVENTS_PER_APPEND}",
            wire.len()
        )));
    }
    let mut events = Vec::with_capacity(wire.len());
    for (index, event) in wire.into_iter().enumerate() {
        events.push(validate_event(index, event)?);
    }
    let mut ids: Vec<Uuid> = events.iter().filter_map(|e| e.event_id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(ProtocolError::invalid_argument(format!(
            "event_id {} appears twice in one APPEND",
            pair[0]
        )));
    }
    Ok(events)
}

pub(crate) fn validate_event(
    index: usize,
    event: EventInputWire,
) -> Result<EventInput, ProtocolError> {
    validate_event_type(&event.event_type)
        .map_err(|e| ProtocolError::invalid_argument(format!("event {index}: {}", e.message)))?;
    check_json_rules(&format!("event {index}: data"), &event.data)?;
    if let Some(metadata) = &event.metadata {
        if !metadata.get().starts_with('{') {
            return Err(ProtocolError::invalid_json(format!(
                "event {index}: metadata must be a JSON object"
            )));
        }
        check_json_rules(&format!("event {index}: metadata"), metadata)?;
    }
    let event_id = match event.event_id {
        None => None,
        Some(text) => Some(Uuid::parse_str(&text).map_err(|_| {
            ProtocolError::invalid_argument(format!(
                "event {index}: event_id must be a UUID, got {}",
                snippet(text.as_bytes())
            ))
        })?),
    };
    validate_tags(&event.tags)
        .map_err(|e| ProtocolError::invalid_argument(format!("event {index}: {}", e.message)))?;
    Ok(EventInput {
        event_id,
        event_type: event.event_type,
        data: event.data,
        metadata: event.metadata,
        tags: event.tags,
    })
}

/// Checks an event's tags: at most [`MAX_TAGS_PER_EVENT`], each a valid tag, none twice.
pub fn validate_tags(tags: &[String]) -> Result<(), ProtocolError> {
    if tags.len() > MAX_TAGS_PER_EVENT {
        return Err(ProtocolError::invalid_argument(format!(
            "{} tags exceed the limit of {MAX_TAGS_PER_EVENT} per event",
            tags.len()
        )));
    }
    for (index, tag) in tags.iter().enumerate() {
        validate_tag(tag)?;
        if tags[..index].contains(tag) {
            return Err(ProtocolError::invalid_argument(format!(
                "tag {} appears twice",
                snippet(tag.as_bytes())
            )));
        }
    }
    Ok(())
}

/// Checks a tag: 1 to [`MAX_TAG_BYTES`] bytes, no whitespace, commas, control or format
/// characters (commas separate tags in `READTAGS`), as event types.
pub fn validate_tag(tag: &str) -> Result<(), ProtocolError> {
    if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
        return Err(ProtocolError::invalid_argument(format!(
            "a tag must be 1 to {MAX_TAG_BYTES} bytes"
        )));
    }
    if tag
        .chars()
        .any(|c| crate::line::is_forbidden_in_name(c) || c == ',')
    {
        return Err(ProtocolError::invalid_argument(format!(
            "tag {} contains whitespace, a comma, a control or a format character",
            snippet(tag.as_bytes())
        )));
    }
    Ok(())
}

/// Checks an event type: 1 to 255 bytes, no whitespace, commas, control or format characters
/// (commas separate types in `READTYPES`).
pub fn validate_event_type(event_type: &str) -> Result<(), ProtocolError> {
    if event_type.is_empty() || event_type.len() > MAX_EVENT_TYPE_BYTES {
        return Err(ProtocolError::invalid_argument(format!(
            "event_type must be 1 to {MAX_EVENT_TYPE_BYTES} bytes"
        )));
    }
    if event_type
        .chars()
        .any(|c| crate::line::is_forbidden_in_name(c) || c == ',')
    {
        return Err(ProtocolError::invalid_argument(format!(
            "event_type {} contains whitespace, a comma, a control or a format character",
            snippet(event_type.as_bytes())
        )));
    }
    Ok(())
}

pub(crate) fn json_error(error: serde_json::Error) -> ProtocolError {
    ProtocolError::invalid_json(format!("bad event JSON: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_object_and_array_are_accepted() {
        let one = parse_events(br#"{"event_type":"A","data":1}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].data.get(), "1");
        let many = parse_events(
            br#" [{"event_type":"A","data":{"x":[1,2]},"metadata":{"m":1}},
                 {"event_type":"B","data":null,"event_id":"6f1c1a5e-8f55-4e2a-9a4a-0d5f7b1f2c3d"}]"#,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].metadata.as_ref().unwrap().get(), r#"{"m":1}"#);
        assert!(many[1].event_id.is_some());
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "invalid_json"),
            (b"42", "invalid_json"),
            (b"{", "invalid_json"),
            (br#"{"data":1}"#, "invalid_json"),
            (br#"{"event_type":"A"}"#, "invalid_json"),
            (br#"{"event_type":"A","data":1,"typo":2}"#, "invalid_json"),
            (br#"{"event_type":"A","data":1,"metadata":[1]}"#, "invalid_json"),
            (br#"{"event_type":"","data":1}"#, "invalid_argument"),
            (br#"{"event_type":"a b","data":1}"#, "invalid_argument"),
            (br#"{"event_type":"A","data":1,"event_id":"nope"}"#, "invalid_argument"),
            (b"[]", "invalid_argument"),
            (
                br#"[{"event_type":"A","data":1,"event_id":"6f1c1a5e-8f55-4e2a-9a4a-0d5f7b1f2c3d"},
                    {"event_type":"A","data":1,"event_id":"6f1c1a5e-8f55-4e2a-9a4a-0d5f7b1f2c3d"}]"#,
                "invalid_argument",
            ),
        ];
        for (payload, code) in cases {
            let error = parse_events(payload).unwrap_err();
            assert_eq!(
                error.code.as_str(),
                *code,
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
