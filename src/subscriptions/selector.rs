//! Matching events against a subscription's selector.
//!
//! - `stream`: the event's stream id equals the selector; `$all` matches every event.
//! - `event_type`: the event's type is one of the listed types.
//! - `event_pattern`: the stream id matches a pattern in which `*` matches any run of
//!   characters (including none) and every other character matches itself.
//! - `event_payload`: the selector, a JSON object, matches the event record partially: every
//!   key of a selector object must be present in the record's object with a matching value;
//!   objects match recursively (extra keys in the record are ignored); arrays match
//!   element-wise and must have the same length; numbers match by numeric value (`1` matches
//!   `1.0`); strings, booleans and null match by equality.

use std::cell::OnceCell;

use serde_json::Value;

use esdb_protocol::ops::subscribe::{Selector, ALL_STREAMS};

use crate::store::CommittedEvent;

/// How the emitters find a subscription's candidates without scanning every subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexKey {
    /// Only events of this stream can match.
    Stream(String),
    /// Only events of these types can match.
    Types(Vec<String>),
    /// Any event may match: checked against every event.
    Scan,
}

/// A compiled selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    selector: Selector,
}

/// An event being matched, with its record parsed at most once however many payload
/// selectors look at it.
pub struct Candidate<'a> {
    pub event: &'a CommittedEvent,
    parsed: OnceCell<Option<Value>>,
}

impl<'a> Candidate<'a> {
    pub fn new(event: &'a CommittedEvent) -> Candidate<'a> {
        Candidate {
            event,
            parsed: OnceCell::new(),
        }
    }

    fn record(&self) -> Option<&Value> {
        self.parsed
            .get_or_init(|| serde_json::from_slice(&self.event.record).ok())
            .as_ref()
    }
}

impl Matcher {
    pub fn new(selector: Selector) -> Matcher {
        Matcher { selector }
    }

    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    pub fn index_key(&self) -> IndexKey {
        match &self.selector {
            Selector::Stream(stream) if stream != ALL_STREAMS => IndexKey::Stream(stream.clone()),
            Selector::EventType(types) => IndexKey::Types(types.clone()),
            _ => IndexKey::Scan,
        }
    }

    pub fn matches(&self, candidate: &Candidate<'_>) -> bool {
        let event = candidate.event;
        match &self.selector {
            Selector::Stream(stream) => stream == ALL_STREAMS || **stream == *event.stream,
            Selector::EventType(types) => types.iter().any(|t| **t == *event.event_type),
            Selector::EventPattern(pattern) => wildcard_match(pattern, &event.stream),
            Selector::EventPayload(pattern) => candidate
                .record()
                .is_some_and(|record| partial_match(pattern, record)),
        }
    }
}

/// `*` matches any run of characters; everything else matches itself. Linear-time greedy
/// matching with backtracking to the last `*` only.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Whether `pattern` partially matches `value` (see the module doc).
pub fn partial_match(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(wanted), Value::Object(actual)) => wanted
            .iter()
            .all(|(key, sub)| actual.get(key).is_some_and(|v| partial_match(sub, v))),
        (Value::Array(wanted), Value::Array(actual)) => {
            wanted.len() == actual.len()
                && wanted.iter().zip(actual).all(|(w, a)| partial_match(w, a))
        }
        (Value::Number(wanted), Value::Number(actual)) => {
            match (wanted.as_i64(), actual.as_i64()) {
                (Some(w), Some(a)) => w == a,
                _ => wanted.as_f64() == actual.as_f64(),
            }
        }
        (wanted, actual) => wanted == actual,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("user-*", "user-1"));
        assert!(wildcard_match("user-*", "user-"));
        assert!(!wildcard_match("user-*", "users-1"));
        assert!(wildcard_match("*-eu-*", "order-eu-7"));
        assert!(!wildcard_match("*-eu-*", "order-us-7"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("exact", "exactly"));
        assert!(wildcard_match("a?c", "a?c"), "? is literal");
        assert!(!wildcard_match("a?c", "abc"));
    }

    #[test]
    fn partial_matches() {
        let record = json!({"data": {"country": "NL", "n": 1, "tags": ["a", "b"], "x": {"y": 2}},
                            "event_type": "T"});
        assert!(partial_match(&json!({"data": {"country": "NL"}}), &record));
        assert!(!partial_match(&json!({"data": {"country": "DE"}}), &record));
        assert!(partial_match(&json!({"data": {"n": 1.0}}), &record));
        assert!(partial_match(&json!({"data": {"x": {}}}), &record));
        assert!(partial_match(
            &json!({"data": {"tags": ["a", "b"]}}),
            &record
        ));
        assert!(!partial_match(&json!({"data": {"tags": ["a"]}}), &record));
        assert!(!partial_match(&json!({"data": {"missing": null}}), &record));
        assert!(partial_match(&json!({"event_type": "T"}), &record));
        assert!(!partial_match(&json!({"data": "NL"}), &record));
    }

    #[test]
    fn index_keys() {
        let key = |s: Selector| Matcher::new(s).index_key();
        assert_eq!(
            key(Selector::Stream("a".into())),
            IndexKey::Stream("a".into())
        );
        assert_eq!(key(Selector::Stream("$all".into())), IndexKey::Scan);
        assert_eq!(
            key(Selector::EventType(vec!["T".into()])),
            IndexKey::Types(vec!["T".into()])
        );
        assert_eq!(key(Selector::EventPattern("a*".into())), IndexKey::Scan);
    }

    #[test]
    fn matches_events() {
        let event = CommittedEvent {
            position: 3,
            version: 0,
            stream: Arc::from("order-eu-1"),
            event_type: Arc::from("Placed"),
            record: bytes::Bytes::from_static(br#"{"data":{"total":5}}"#),
        };
        let candidate = Candidate::new(&event);
        let matches = |s: Selector| Matcher::new(s).matches(&candidate);
        assert!(matches(Selector::Stream("$all".into())));
        assert!(matches(Selector::Stream("order-eu-1".into())));
        assert!(!matches(Selector::Stream("order-eu".into())));
        assert!(matches(Selector::EventType(vec![
            "X".into(),
            "Placed".into()
        ])));
        assert!(!matches(Selector::EventType(vec!["X".into()])));
        assert!(matches(Selector::EventPattern("*-eu-*".into())));
        assert!(matches(Selector::EventPayload(
            json!({"data": {"total": 5}})
        )));
        assert!(!matches(Selector::EventPayload(
            json!({"data": {"total": 6}})
        )));
    }
}
