//! Subscriptions: `SUB`, `UNSUB`, `ACK`, `NACK`, and the server's `EVENT` and `LIVE`.
//!
//! # Syntax
//! ```text
//! SUB <sid> <type> <selector> [<name>]␍␊         short form, for people typing
//! SUB <sid> <#bytes>␍␊<json options>␍␊           full form
//! UNSUB <sid>␍␊                                   → +OK
//! ACK <sid> <positions>␍␊                         → +OK   (persistent subscriptions)
//! NACK <sid> retry|skip|park <positions>␍␊        → +OK   (persistent subscriptions)
//!
//! EVENT <sid> <stream> <version> <position> <#bytes>␍␊<record>␍␊     server → client
//! LIVE <sid>␍␊                                     server → client, once caught up
//! ```
//! `<type>` is `stream` (selector: a stream id or `$all`), `event_type` (a comma-separated
//! list), `event_pattern` (a stream id pattern where `*` matches any run of characters) or
//! `event_payload` (a JSON object matched partially against the event record). A `<name>`
//! makes the subscription persistent. `<positions>` is a comma-separated list of positions
//! `N`, inclusive ranges `A-B`, or `..N` (every event delivered to this subscriber up to `N`).
//!
//! Full-form options: `{"type": "...", "selector": "..." | {...}, "name": "...",
//! "start": "origin" | "end" | <position>, "max_in_flight": n, "ack_timeout_ms": n,
//! "max_retries": n}`; only `type` and `selector` are required.

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ProtocolError;
use crate::limits::{
    MAX_ACK_ITEMS, MAX_EVENT_TYPE_BYTES, MAX_IN_FLIGHT_LIMIT, MAX_PAYLOAD_SELECTOR_DEPTH,
    MAX_SID_BYTES, MAX_STREAM_ID_BYTES, MAX_SUBSCRIPTION_NAME_BYTES, MAX_TYPES_PER_READ,
};
use crate::line::{parse_u64, snippet, Args};
use crate::ops::append::validate_event_type;
use crate::ops::streams::validate_stream_id;
use crate::request::{put_line, sized_payload, LineOutcome, PayloadHeader, Request};

/// Default in-flight window of a persistent subscriber.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 100;
/// Default time a persistent subscriber has to ack an event before it is redelivered.
pub const DEFAULT_ACK_TIMEOUT_MS: u64 = 30_000;
/// Default deliveries of one event before it is parked.
pub const DEFAULT_MAX_RETRIES: u32 = 5;

/// The stream selector that matches every stream.
pub const ALL_STREAMS: &str = "$all";

/// What a subscription selects.
///
/// As JSON (the full form of `SUB`, stored definitions, `PSUB GET`) it is
/// `{"type": "<type>", "selector": <text, or an object for event_payload>}`, the event types of
/// an `event_type` selector comma-separated as on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "SelectorJson", try_from = "SelectorJson")]
pub enum Selector {
    /// One stream by id, or `$all`.
    Stream(String),
    /// Events of any of these types.
    EventType(Vec<String>),
    /// Streams whose id matches the pattern (`*` = any run of characters).
    EventPattern(String),
    /// Events whose record partially matches this JSON object.
    EventPayload(Value),
}

impl Selector {
    /// The selector's type name on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            Selector::Stream(_) => "stream",
            Selector::EventType(_) => "event_type",
            Selector::EventPattern(_) => "event_pattern",
            Selector::EventPayload(_) => "event_payload",
        }
    }

    /// Builds and validates a selector from its type name and text.
    pub fn parse(type_name: &str, text: &str) -> Result<Selector, ProtocolError> {
        match type_name.to_ascii_lowercase().as_str() {
            "stream" => Selector::from_value("stream", Value::String(text.to_owned())),
            "event_type" => Selector::from_value("event_type", Value::String(text.to_owned())),
            "event_pattern" => {
                Selector::from_value("event_pattern", Value::String(text.to_owned()))
            }
            "event_payload" => {
                let value: Value = serde_json::from_str(text).map_err(|e| {
                    ProtocolError::new(
                        crate::ErrorCode::InvalidSelector,
                        format!("event_payload selector is not JSON: {e}"),
                    )
                })?;
                Selector::from_value("event_payload", value)
            }
            other => Err(unknown_type(other)),
        }
    }

    /// Builds and validates a selector from the full form's JSON values.
    pub fn from_value(type_name: &str, selector: Value) -> Result<Selector, ProtocolError> {
        let text = |selector: &Value| -> Result<String, ProtocolError> {
            selector
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| invalid_selector(format!("a {type_name} selector is a string")))
        };
        match type_name {
            "stream" => {
                let stream = text(&selector)?;
                if stream != ALL_STREAMS {
                    validate_stream_id(&stream).map_err(|e| invalid_selector(e.message))?;
                }
                Ok(Selector::Stream(stream))
            }
            "event_type" => {
                let list = text(&selector)?;
                let mut types: Vec<String> = Vec::new();
                for event_type in list.split(',') {
                    validate_event_type(event_type).map_err(|e| invalid_selector(e.message))?;
                    if !types.iter().any(|t| t == event_type) {
                        types.push(event_type.to_owned());
                    }
                }
                if types.len() > MAX_TYPES_PER_READ {
                    return Err(invalid_selector(format!(
                        "at most {MAX_TYPES_PER_READ} event types"
                    )));
                }
                Ok(Selector::EventType(types))
            }
            "event_pattern" => {
                let pattern = text(&selector)?;
                validate_pattern(&pattern)?;
                Ok(Selector::EventPattern(pattern))
            }
            "event_payload" => {
                if !selector.is_object() {
                    return Err(invalid_selector(
                        "an event_payload selector is a JSON object",
                    ));
                }
                if depth(&selector) > MAX_PAYLOAD_SELECTOR_DEPTH {
                    return Err(invalid_selector(format!(
                        "event_payload selector nests deeper than {MAX_PAYLOAD_SELECTOR_DEPTH}"
                    )));
                }
                Ok(Selector::EventPayload(selector))
            }
            other => Err(unknown_type(other)),
        }
    }

    /// The selector's text as the short form writes it.
    pub fn text(&self) -> String {
        match self {
            Selector::Stream(stream) => stream.clone(),
            Selector::EventType(types) => types.join(","),
            Selector::EventPattern(pattern) => pattern.clone(),
            Selector::EventPayload(value) => value.to_string(),
        }
    }
}

/// The JSON form of a [`Selector`].
#[derive(Serialize, Deserialize)]
struct SelectorJson {
    #[serde(rename = "type")]
    type_name: String,
    selector: Value,
}

impl From<Selector> for SelectorJson {
    fn from(selector: Selector) -> SelectorJson {
        let type_name = selector.type_name().to_owned();
        let selector = match selector {
            Selector::EventPayload(value) => value,
            other => Value::String(other.text()),
        };
        SelectorJson {
            type_name,
            selector,
        }
    }
}

impl TryFrom<SelectorJson> for Selector {
    type Error = String;

    fn try_from(json: SelectorJson) -> Result<Selector, String> {
        Selector::from_value(&json.type_name, json.selector).map_err(|e| e.message)
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn unknown_type(name: &str) -> ProtocolError {
    ProtocolError::new(
        crate::ErrorCode::UnknownSelectorType,
        format!(
            "unknown subscription type {}: use stream, event_type, event_pattern or \
             event_payload",
            snippet(name.as_bytes())
        ),
    )
}

fn invalid_selector(message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(crate::ErrorCode::InvalidSelector, message)
}

/// A pattern is 1 to 255 bytes without whitespace, control or format characters; `*` is the only
/// special character.
pub fn validate_pattern(pattern: &str) -> Result<(), ProtocolError> {
    if pattern.is_empty() || pattern.len() > MAX_STREAM_ID_BYTES {
        return Err(invalid_selector(format!(
            "event_pattern must be 1 to {MAX_STREAM_ID_BYTES} bytes"
        )));
    }
    if pattern.chars().any(crate::line::is_forbidden_in_name) {
        return Err(invalid_selector(
            "event_pattern contains whitespace, a control or a format character",
        ));
    }
    Ok(())
}

/// Where a subscription starts the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// From the first event of the store.
    #[default]
    Origin,
    /// Only events committed after the subscription is made.
    End,
    /// From this position (inclusive).
    Position(u64),
    /// From the first event committed at or after this time (µs since the epoch), resolved to
    /// a position when the subscription is made: `{"from_time": <RFC 3339 or epoch_us>}`.
    Time(u64),
}

impl Serialize for StartFrom {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StartFrom::Origin => serializer.serialize_str("origin"),
            StartFrom::End => serializer.serialize_str("end"),
            StartFrom::Position(position) => serializer.serialize_u64(*position),
            StartFrom::Time(epoch_us) => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("from_time", epoch_us)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for StartFrom {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) if text == "origin" => Ok(StartFrom::Origin),
            Value::String(text) if text == "end" => Ok(StartFrom::End),
            Value::Number(number) if number.as_u64().is_some() => {
                Ok(StartFrom::Position(number.as_u64().unwrap()))
            }
            Value::Object(fields) if fields.len() == 1 && fields.contains_key("from_time") => {
                let time = match &fields["from_time"] {
                    Value::String(text) => crate::time::parse_time(text),
                    // A number that is not a u64 (negative, a fraction) is refused as text is.
                    other => match other.as_u64() {
                        Some(epoch_us) => Ok(epoch_us),
                        None => crate::time::parse_time(&other.to_string()),
                    },
                };
                time.map(StartFrom::Time)
                    .map_err(|e| serde::de::Error::custom(e.message))
            }
            other => Err(serde::de::Error::custom(format!(
                "start must be \"origin\", \"end\", a position or {{\"from_time\": <time>}}, \
                 got {other}"
            ))),
        }
    }
}

/// A validated `SUB`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeRequest {
    pub sid: String,
    pub selector: Selector,
    /// Set for persistent subscriptions.
    pub name: Option<String>,
    pub options: SubscriptionOptions,
}

/// Options of a subscription (the full form's JSON, minus type, selector and name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionOptions {
    pub start: StartFrom,
    pub max_in_flight: u32,
    pub ack_timeout_ms: u64,
    pub max_retries: u32,
}

impl Default for SubscriptionOptions {
    fn default() -> SubscriptionOptions {
        SubscriptionOptions {
            start: StartFrom::Origin,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            ack_timeout_ms: DEFAULT_ACK_TIMEOUT_MS,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullForm {
    #[serde(rename = "type")]
    type_name: String,
    selector: Value,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    start: Option<StartFrom>,
    #[serde(default)]
    max_in_flight: Option<u32>,
    #[serde(default)]
    ack_timeout_ms: Option<u64>,
    #[serde(default)]
    max_retries: Option<u32>,
}

pub(crate) fn parse_sub(mut args: Args<'_>) -> LineOutcome {
    let sid = match args.required("sid").and_then(validate_sid) {
        Ok(sid) => sid,
        Err(e) => return LineOutcome::Done(Err(e)),
    };
    let second = match args.required("subscription type or #bytes") {
        Ok(second) => second,
        Err(e) => return LineOutcome::Done(Err(e)),
    };
    if second.bytes().all(|b| b.is_ascii_digit()) {
        if let Err(e) = args.finish("SUB") {
            return LineOutcome::Done(Err(e));
        }
        return sized_payload(second.as_bytes(), Ok(PayloadHeader::Subscribe { sid }));
    }
    LineOutcome::Done(parse_short_form(sid, second, args))
}

fn parse_short_form(
    sid: String,
    type_name: &str,
    mut args: Args<'_>,
) -> Result<Request, ProtocolError> {
    let selector_text = args.required("selector")?;
    let selector = Selector::parse(type_name, selector_text)?;
    let name = args.optional("name")?.map(validate_name).transpose()?;
    args.finish("SUB")?;
    Ok(Request::Subscribe(SubscribeRequest {
        sid,
        selector,
        name,
        options: SubscriptionOptions::default(),
    }))
}

/// Completes a full-form `SUB` once its JSON payload has arrived.
pub(crate) fn complete_full_form(sid: String, payload: &[u8]) -> Result<Request, ProtocolError> {
    let form: FullForm = serde_json::from_slice(payload)
        .map_err(|e| ProtocolError::invalid_json(format!("bad SUB options: {e}")))?;
    let selector = Selector::from_value(&form.type_name.to_ascii_lowercase(), form.selector)?;
    let name = form.name.as_deref().map(validate_name).transpose()?;
    let defaults = SubscriptionOptions::default();
    let options = SubscriptionOptions {
        start: form.start.unwrap_or(defaults.start),
        max_in_flight: form.max_in_flight.unwrap_or(defaults.max_in_flight),
        ack_timeout_ms: form.ack_timeout_ms.unwrap_or(defaults.ack_timeout_ms),
        max_retries: form.max_retries.unwrap_or(defaults.max_retries),
    };
    if options.max_in_flight == 0 || options.max_in_flight > MAX_IN_FLIGHT_LIMIT {
        return Err(ProtocolError::invalid_argument(format!(
            "max_in_flight must be 1 to {MAX_IN_FLIGHT_LIMIT}"
        )));
    }
    if options.ack_timeout_ms == 0 {
        return Err(ProtocolError::invalid_argument(
            "ack_timeout_ms must be > 0",
        ));
    }
    Ok(Request::Subscribe(SubscribeRequest {
        sid,
        selector,
        name,
        options,
    }))
}

pub(crate) fn encode_sub(request: &SubscribeRequest, dst: &mut BytesMut) {
    let selector = SelectorJson::from(request.selector.clone());
    let mut options = serde_json::json!({
        "type": selector.type_name,
        "selector": selector.selector,

        "start": request.options.start,
        "max_in_flight": request.options.max_in_flight,
        "ack_timeout_ms": request.options.ack_timeout_ms,
        "max_retries": request.options.max_retries,
    });
    if let Some(name) = &request.name {
        options["name"] = Value::String(name.clone());
    }
    let json = options.to_string();
    put_line(dst, &format!("SUB {} {}", request.sid, json.len()));
    put_line(dst, &json);
}

/// A subscription id: 1 to 64 ASCII letters, digits, `_`, `-` or `.`, chosen by the client.
pub fn validate_sid(sid: &str) -> Result<String, ProtocolError> {
    validate_identifier(sid, "sid", MAX_SID_BYTES)
}

/// A persistent subscription name: 1 to 128 ASCII letters, digits, `_`, `-` or `.`.
pub fn validate_name(name: &str) -> Result<String, ProtocolError> {
    validate_identifier(name, "subscription name", MAX_SUBSCRIPTION_NAME_BYTES)
}

fn validate_identifier(text: &str, what: &str, max: usize) -> Result<String, ProtocolError> {
    let ok = !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(ProtocolError::invalid_argument(format!(
            "{what} must be 1 to {max} letters, digits, _, - or ., got {}",
            snippet(text.as_bytes())
        )))
    }
}

pub(crate) fn parse_unsub(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let sid = validate_sid(args.required("sid")?)?;
    args.finish("UNSUB")?;
    Ok(Request::Unsubscribe { sid })
}

/// One item of an ACK/NACK position list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckItem {
    Position(u64),
    /// Inclusive.
    Range(u64, u64),
    /// Every event delivered to this subscriber up to this position, inclusive.
    UpTo(u64),
}

impl AckItem {
    pub fn contains(&self, position: u64) -> bool {
        match *self {
            AckItem::Position(p) => p == position,
            AckItem::Range(low, high) => (low..=high).contains(&position),
            AckItem::UpTo(high) => position <= high,
        }
    }
}

/// What a NACK asks the server to do with the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackAction {
    /// Deliver again (counts as a retry; parked after `max_retries`).
    Retry,
    /// Give up on the event: treat it as handled.
    Skip,
    /// Park the event now; it can be listed and replayed later.
    Park,
}

fn parse_positions(text: &str) -> Result<Vec<AckItem>, ProtocolError> {
    let mut items = Vec::new();
    for part in text.split(',') {
        if items.len() == MAX_ACK_ITEMS {
            return Err(ProtocolError::invalid_argument(format!(
                "at most {MAX_ACK_ITEMS} items per ACK or NACK"
            )));
        }
        let item = if let Some(high) = part.strip_prefix("..") {
            AckItem::UpTo(parse_u64(high, "position")?)
        } else if let Some((low, high)) = part.split_once('-') {
            let (low, high) = (parse_u64(low, "position")?, parse_u64(high, "position")?);
            if low > high {
                return Err(ProtocolError::invalid_argument(format!(
                    "range {low}-{high} is empty"
                )));
            }
            AckItem::Range(low, high)
        } else {
            AckItem::Position(parse_u64(part, "position")?)
        };
        items.push(item);
    }
    Ok(items)
}

fn positions_text(items: &[AckItem]) -> String {
    items
        .iter()
        .map(|item| match item {
            AckItem::Position(p) => p.to_string(),
            AckItem::Range(low, high) => format!("{low}-{high}"),
            AckItem::UpTo(high) => format!("..{high}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn parse_ack(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let sid = validate_sid(args.required("sid")?)?;
    let positions = parse_positions(args.required("positions")?)?;
    args.finish("ACK")?;
    Ok(Request::Ack { sid, positions })
}

pub(crate) fn parse_nack(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let sid = validate_sid(args.required("sid")?)?;
    let action = match args.required("action")?.to_ascii_lowercase().as_str() {
        "retry" => NackAction::Retry,
        "skip" => NackAction::Skip,
        "park" => NackAction::Park,
        other => {
            return Err(ProtocolError::invalid_argument(format!(
                "NACK action must be retry, skip or park, got {}",
                snippet(other.as_bytes())
            )))
        }
    };
    let positions = parse_positions(args.required("positions")?)?;
    args.finish("NACK")?;
    Ok(Request::Nack {
        sid,
        action,
        positions,
    })
}

pub(crate) fn encode(request: &Request, dst: &mut BytesMut) {
    let line = match request {
        Request::Subscribe(sub) => return encode_sub(sub, dst),
        Request::Unsubscribe { sid } => format!("UNSUB {sid}"),
        Request::Ack { sid, positions } => format!("ACK {sid} {}", positions_text(positions)),
        Request::Nack {
            sid,
            action,
            positions,
        } => {
            let action = match action {
                NackAction::Retry => "retry",
                NackAction::Skip => "skip",
                NackAction::Park => "park",
            };
            format!("NACK {sid} {action} {}", positions_text(positions))
        }
        other => unreachable!("subscribe::encode called with {}", other.operation()),
    };
    put_line(dst, &line);
}

const _: () = assert!(MAX_EVENT_TYPE_BYTES <= MAX_STREAM_ID_BYTES);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_validate() {
        assert_eq!(
            Selector::parse("stream", "$all").unwrap(),
            Selector::Stream("$all".into())
        );
        assert_eq!(
            Selector::parse("STREAM", "user-1").unwrap(),
            Selector::Stream("user-1".into())
        );
        assert!(Selector::parse("stream", "$other").is_err());
        assert_eq!(
            Selector::parse("event_type", "A,B,A").unwrap(),
            Selector::EventType(vec!["A".into(), "B".into()])
        );
        assert!(Selector::parse("event_type", "A,,B").is_err());
        assert!(Selector::parse("event_pattern", "user-*").is_ok());
        assert!(Selector::parse("event_payload", r#"{"data":{"x":1}}"#).is_ok());
        let code = |r: Result<Selector, ProtocolError>| r.unwrap_err().code;
        assert_eq!(
            code(Selector::parse("event_payload", "[1]")),
            crate::ErrorCode::InvalidSelector
        );
        assert_eq!(
            code(Selector::parse("event_payload", "{")),
            crate::ErrorCode::InvalidSelector
        );
        assert_eq!(
            code(Selector::parse("nope", "x")),
            crate::ErrorCode::UnknownSelectorType
        );
    }

    #[test]
    fn selectors_as_json_read_as_they_are_typed() {
        let types = Selector::EventType(vec!["A".into(), "B".into()]);
        let json = serde_json::to_value(&types).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "event_type", "selector": "A,B"})
        );
        assert_eq!(serde_json::from_value::<Selector>(json).unwrap(), types);
        let payload = Selector::EventPayload(serde_json::json!({"data": {"x": 1}}));
        let json = serde_json::to_value(&payload).unwrap();
        assert_eq!(json["selector"]["data"]["x"], 1);
        assert_eq!(serde_json::from_value::<Selector>(json).unwrap(), payload);
        let bad = serde_json::json!({"type": "stream", "selector": "$nope"});
        assert!(serde_json::from_value::<Selector>(bad).is_err());
    }

    #[test]
    fn positions_parse() {
        assert_eq!(
            parse_positions("1,3-5,..9").unwrap(),
            vec![AckItem::Position(1), AckItem::Range(3, 5), AckItem::UpTo(9)]
        );
        assert!(parse_positions("5-3").is_err());
        assert!(parse_positions("x").is_err());
        assert!(parse_positions("").is_err());
        assert_eq!(
            positions_text(&parse_positions("1,3-5,..9").unwrap()),
            "1,3-5,..9"
        );
    }

    #[test]
    fn full_form_options() {
        let request = complete_full_form(
            "s1".into(),
            br#"{"type":"event_payload","selector":{"data":{"country":"NL"}},"name":"nl",
                "start":5,"max_in_flight":10}"#,
        )
        .unwrap();
        let Request::Subscribe(sub) = request else {
            panic!()
        };
        assert_eq!(sub.name.as_deref(), Some("nl"));
        assert_eq!(sub.options.start, StartFrom::Position(5));
        for (start, want) in [
            (
                r#"{"from_time":"2026-12-02T17:00:00Z"}"#,
                Some(1_796_230_800_000_000),
            ),
            (r#"{"from_time":7}"#, Some(7)),
            (r#"{"from_time":-7}"#, None),
            (r#"{"from_time":"soon"}"#, None),
            (r#"{"from_time":1,"x":2}"#, None),
        ] {
            let json = format!(r#"{{"type":"stream","selector":"a","start":{start}}}"#);
            let parsed = complete_full_form("s".into(), json.as_bytes());
            match want {
                Some(epoch_us) => {
                    let Ok(Request::Subscribe(sub)) = parsed else {
                        panic!("{start}: {parsed:?}")
                    };
                    assert_eq!(sub.options.start, StartFrom::Time(epoch_us));
                    let round = serde_json::to_string(&sub.options.start).unwrap();
                    assert_eq!(round, format!(r#"{{"from_time":{epoch_us}}}"#));
                }
                None => assert!(parsed.is_err(), "{start}"),
            }
        }
        assert_eq!(sub.options.max_in_flight, 10);
        assert_eq!(sub.options.ack_timeout_ms, DEFAULT_ACK_TIMEOUT_MS);
        assert!(complete_full_form("s".into(), br#"{"type":"stream"}"#).is_err());
        assert!(
            complete_full_form("s".into(), br#"{"type":"stream","selector":"a","x":1}"#).is_err()
        );
        assert!(complete_full_form(
            "s".into(),
            br#"{"type":"stream","selector":"a","max_in_flight":0}"#
        )
        .is_err());
    }
}
