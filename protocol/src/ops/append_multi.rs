//! `APPENDMULTI`: one atomic append to several streams, optionally conditional (a Dynamic
//! Consistency Boundary check).
//!
//! # Syntax
//! ```text
//! APPENDMULTI <#bytes>␍␊<json>␍␊
//! APPENDMULTI <json>␍␊                 (inline: the JSON is the rest of the line)
//! ```
//! The JSON body:
//! ```text
//! {"parts": [{"stream": "<id>", "expected": "any"|"no_stream"|"exists"|<n>, "events": [<event>, …]}, …],
//!  "condition": {"query": [{"types": [..]?, "tags": [..]?, "payload": {..}?}, …], "after": <position>?}?}
//! ```
//! Events are `APPEND`'s event objects (tags included). Every limit is checked while the body
//! is parsed: at most [`MAX_APPEND_MULTI_PARTS`] parts (a sequence longer than that stops the
//! parse at the first element too many), [`MAX_APPEND_MULTI_EVENTS`] events in all, the body at
//! most [`MAX_APPEND_MULTI_BYTES`]; a stream in two parts and an event id twice are refused.
//!
//! # Reply
//! `APPENDEDMULTI <parts> <#bytes>␍␊<json array>␍␊`, one object per part, in the parts' order:
//! `{"stream":…,"first_version":…,"last_version":…,"first_position":…,"last_position":…}`.

use std::fmt;
use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::error::ProtocolError;
use crate::expected::ExpectedVersion;
use crate::limits::{
    MAX_APPEND_MULTI_BYTES, MAX_APPEND_MULTI_EVENTS, MAX_APPEND_MULTI_PARTS, MAX_CONDITION_ITEMS,
    MAX_TAGS_PER_EVENT, MAX_TYPES_PER_READ,
};
use crate::line::{snippet, Args};
use crate::ops::append::{
    json_error, validate_event, validate_event_type, validate_tag, EventInput, EventInputWire,
};
use crate::ops::streams::validate_stream_id;
use crate::ops::subscribe::Selector;
use crate::request::{sized_payload, LineOutcome, PayloadHeader, Request};

/// One parsed `APPENDMULTI`. Compared by its body's bytes (the events' raw JSON has no
/// equality of its own).
#[derive(Debug, Clone)]
pub struct AppendMultiRequest {
    /// The body as received, for encoding the request again.
    pub payload: Bytes,
    pub parts: Vec<AppendPart>,
    pub condition: Option<AppendCondition>,
}

impl PartialEq for AppendMultiRequest {
    fn eq(&self, other: &AppendMultiRequest) -> bool {
        self.payload == other.payload
    }
}

/// One stream's share of an `APPENDMULTI`.
#[derive(Debug, Clone)]
pub struct AppendPart {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<EventInput>,
}

/// Append only if no event matching `query` has a position after `after` (every position
/// when `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct AppendCondition {
    pub query: Vec<QueryItem>,
    pub after: Option<u64>,
}

/// One item of a condition's query. An event matches it when its type is one of `types`
/// (any type when empty), it carries every tag of `tags`, and its record matches `payload`
/// partially (as an `event_payload` selector). An event matches the query when it matches
/// any item. Every item names types or tags, so the check goes through an index.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryItem {
    pub types: Vec<String>,
    pub tags: Vec<String>,
    pub payload: Option<Value>,
}

pub(crate) fn parse(line: &Bytes, args: Args<'_>) -> LineOutcome {
    let body = args.remainder();
    if !body.is_empty() && body.iter().all(u8::is_ascii_digit) {
        return sized_payload(body, Ok(PayloadHeader::AppendMulti));
    }
    if body.is_empty() {
        return LineOutcome::Done(Err(ProtocolError::invalid_argument(
            "APPENDMULTI needs a payload: a byte count, or the JSON on the same line",
        )));
    }
    let start = body.as_ptr() as usize - line.as_ptr() as usize;
    LineOutcome::Done(parse_body(line.slice(start..start + body.len())))
}

/// Encodes an `APPENDMULTI` with a sized body.
pub fn encode(payload: &[u8], dst: &mut BytesMut) {
    let header = format!("APPENDMULTI {}\r\n", payload.len());
    dst.reserve(header.len() + payload.len() + 2);
    dst.put_slice(header.as_bytes());
    dst.put_slice(payload);
    dst.put_slice(b"\r\n");
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyWire {
    #[serde(deserialize_with = "bounded::<_, PartWire, MAX_APPEND_MULTI_PARTS>")]
    parts: Vec<PartWire>,
    #[serde(default)]
    condition: Option<ConditionWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartWire {
    stream: String,
    #[serde(default)]
    expected: Option<Value>,
    #[serde(deserialize_with = "bounded::<_, EventInputWire, MAX_APPEND_MULTI_EVENTS>")]
    events: Vec<EventInputWire>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionWire {
    #[serde(deserialize_with = "bounded::<_, ItemWire, MAX_CONDITION_ITEMS>")]
    query: Vec<ItemWire>,
    #[serde(default)]
    after: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemWire {
    #[serde(default, deserialize_with = "bounded::<_, String, MAX_TYPES_PER_READ>")]
    types: Vec<String>,
    #[serde(default, deserialize_with = "bounded::<_, String, MAX_TAGS_PER_EVENT>")]
    tags: Vec<String>,
    #[serde(default)]
    payload: Option<Value>,
}

/// Deserializes a sequence of at most `MAX` elements, failing at the first one past it, so a
/// long array is refused before it is built.
fn bounded<'de, D, T, const MAX: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T, const MAX: usize>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for Bounded<T, MAX> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of at most {MAX} elements")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(element) = seq.next_element()? {
                if out.len() == MAX {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX} elements (the limit)"
                    )));
                }
                out.push(element);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Bounded::<T, MAX>(PhantomData))
}

/// Parses and validates an `APPENDMULTI` body.
pub fn parse_body(payload: Bytes) -> Result<Request, ProtocolError> {
    debug_assert!(payload.len() <= MAX_APPEND_MULTI_BYTES);
    let wire: BodyWire = serde_json::from_slice(&payload).map_err(|e| {
        let message = e.to_string();
        if message.contains("(the limit)") {
            ProtocolError::invalid_argument(format!("APPENDMULTI: {message}"))
        } else {
            json_error(e)
        }
    })?;
    if wire.parts.is_empty() {
        return Err(ProtocolError::invalid_argument(
            "APPENDMULTI needs at least one part",
        ));
    }
    let total: usize = wire.parts.iter().map(|part| part.events.len()).sum();
    if total > MAX_APPEND_MULTI_EVENTS {
        return Err(ProtocolError::invalid_argument(format!(
            "{total} events in one APPENDMULTI exceed the limit of {MAX_APPEND_MULTI_EVENTS}"
        )));
    }
    let mut parts: Vec<AppendPart> = Vec::with_capacity(wire.parts.len());
    for (index, part) in wire.parts.into_iter().enumerate() {
        let in_part =
            |e: ProtocolError| ProtocolError::new(e.code, format!("part {index}: {}", e.message));
        let stream = validate_stream_id(&part.stream).map_err(in_part)?;
        if parts.iter().any(|p| p.stream == stream) {
            return Err(in_part(ProtocolError::invalid_argument(format!(
                "stream {stream} is in two parts (one part per stream)"
            ))));
        }
        let expected = match part.expected {
            None => ExpectedVersion::Any,
            Some(Value::String(text)) => ExpectedVersion::parse(&text).map_err(in_part)?,
            Some(Value::Number(n)) => ExpectedVersion::parse(&n.to_string()).map_err(in_part)?,
            Some(other) => {
                return Err(in_part(ProtocolError::invalid_json(format!(
                    "expected must be a string or a number, got {}",
                    snippet(other.to_string().as_bytes())
                ))))
            }
        };
        if part.events.is_empty() {
            return Err(in_part(ProtocolError::invalid_argument(
                "a part needs at least one event",
            )));
        }
        let mut events = Vec::with_capacity(part.events.len());
        for (event_index, event) in part.events.into_iter().enumerate() {
            events.push(validate_event(event_index, event).map_err(in_part)?);
        }
        parts.push(AppendPart {
            stream,
            expected,
            events,
        });
    }
    let mut ids: Vec<Uuid> = parts
        .iter()
        .flat_map(|part| part.events.iter().filter_map(|e| e.event_id))
        .collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(ProtocolError::invalid_argument(format!(
            "event_id {} appears twice in one APPENDMULTI",
            pair[0]
        )));
    }
    let condition = wire.condition.map(parse_condition).transpose()?;
    Ok(Request::AppendMulti(AppendMultiRequest {
        payload,
        parts,
        condition,
    }))
}

fn parse_condition(wire: ConditionWire) -> Result<AppendCondition, ProtocolError> {
    if wire.query.is_empty() {
        return Err(ProtocolError::invalid_argument(
            "condition: the query needs at least one item",
        ));
    }
    let mut query = Vec::with_capacity(wire.query.len());
    for (index, item) in wire.query.into_iter().enumerate() {
        let in_item = |e: ProtocolError| {
            ProtocolError::new(e.code, format!("condition item {index}: {}", e.message))
        };
        if item.types.is_empty() && item.tags.is_empty() {
            return Err(in_item(ProtocolError::invalid_argument(
                "an item names types or tags (or both), so the check goes through an index",
            )));
        }
        for event_type in &item.types {
            validate_event_type(event_type).map_err(in_item)?;
        }
        for tag in &item.tags {
            validate_tag(tag).map_err(in_item)?;
        }
        let payload = match item.payload {
            None => None,
            // The same checks as an `event_payload` selector: an object, nesting bounded.
            Some(value) => match Selector::from_value("event_payload", value).map_err(in_item)? {
                Selector::EventPayload(value) => Some(value),
                _ => unreachable!("an event_payload selector"),
            },
        };
        query.push(QueryItem {
            types: item.types,
            tags: item.tags,
            payload,
        });
    }
    Ok(AppendCondition {
        query,
        after: wire.after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<AppendMultiRequest, ProtocolError> {
        match parse_body(Bytes::copy_from_slice(text.as_bytes()))? {
            Request::AppendMulti(request) => Ok(request),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parts_and_condition_parse() {
        let request = parse_text(
            r#"{"parts":[{"stream":"a","expected":"no_stream","events":[{"event_type":"A","data":1,"tags":["t:1"]}]},
                         {"stream":"b","expected":3,"events":[{"event_type":"B","data":{}}]},
                         {"stream":"c","events":[{"event_type":"C","data":null}]}],
                "condition":{"query":[{"types":["A"],"tags":["t:1"],"payload":{"data":{"x":1}}}],"after":7}}"#,
        )
        .unwrap();
        assert_eq!(request.parts.len(), 3);
        assert_eq!(request.parts[0].expected, ExpectedVersion::NoStream);
        assert_eq!(request.parts[0].events[0].tags, vec!["t:1".to_owned()]);
        assert_eq!(request.parts[1].expected, ExpectedVersion::Exact(3));
        assert_eq!(request.parts[2].expected, ExpectedVersion::Any);
        let condition = request.condition.unwrap();
        assert_eq!(condition.after, Some(7));
        assert_eq!(condition.query[0].types, vec!["A".to_owned()]);
    }

    #[test]
    fn bad_bodies_are_refused() {
        let event = r#"{"event_type":"A","data":1}"#;
        let many_parts = format!(
            r#"{{"parts":[{}]}}"#,
            (0..=MAX_APPEND_MULTI_PARTS)
                .map(|i| format!(r#"{{"stream":"s{i}","events":[{event}]}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let cases: Vec<(String, &str)> = vec![
            ("{}".into(), "invalid_json"),
            (r#"{"parts":[]}"#.into(), "invalid_argument"),
            (
                r#"{"parts":[{"stream":"a","events":[]}]}"#.into(),
                "invalid_argument",
            ),
            (
                format!(
                    r#"{{"parts":[{{"stream":"a","events":[{event}]}},{{"stream":"a","events":[{event}]}}]}}"#
                ),
                "invalid_argument",
            ),
            (
                format!(r#"{{"parts":[{{"stream":"$a","events":[{event}]}}]}}"#),
                "invalid_argument",
            ),
            (
                format!(
                    r#"{{"parts":[{{"stream":"a","expected":"sometimes","events":[{event}]}}]}}"#
                ),
                "invalid_argument",
            ),
            (
                format!(r#"{{"parts":[{{"stream":"a","expected":[1],"events":[{event}]}}]}}"#),
                "invalid_json",
            ),
            (
                format!(r#"{{"parts":[{{"stream":"a","events":[{event}]}}],"typo":1}}"#),
                "invalid_json",
            ),
            (
                r#"{"parts":[{"stream":"a","events":[{"event_type":"A","data":1,"tags":["a b"]}]}]}"#
                    .to_string(),
                "invalid_argument",
            ),
            (
                r#"{"parts":[{"stream":"a","events":[{"event_type":"A","data":1,"tags":["x","x"]}]}]}"#
                    .to_string(),
                "invalid_argument",
            ),
            (
                format!(
                    r#"{{"parts":[{{"stream":"a","events":[{event}]}}],"condition":{{"query":[]}}}}"#
                ),
                "invalid_argument",
            ),
            (
                format!(
                    r#"{{"parts":[{{"stream":"a","events":[{event}]}}],"condition":{{"query":[{{"payload":{{"data":1}}}}]}}}}"#
                ),
                "invalid_argument",
            ),
            (
                format!(
                    r#"{{"parts":[{{"stream":"a","events":[{event}]}}],"condition":{{"query":[{{"tags":["t"],"payload":[1]}}]}}}}"#
                ),
                "invalid_selector",
            ),
            (many_parts, "invalid_argument"),
        ];
        for (body, code) in cases {
            let error = parse_text(&body).unwrap_err();
            assert_eq!(error.code.as_str(), code, "{body}: {}", error.message);
        }
        let id = r#""event_id":"6f1c1a5e-8f55-4e2a-9a4a-0d5f7b1f2c3d""#;
        let twice = format!(
            r#"{{"parts":[{{"stream":"a","events":[{{"event_type":"A","data":1,{id}}}]}},{{"stream":"b","events":[{{"event_type":"A","data":1,{id}}}]}}]}}"#
        );
        assert!(parse_text(&twice).unwrap_err().message.contains("twice"));
    }
}
