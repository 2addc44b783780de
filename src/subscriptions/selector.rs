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
//!
//! A record that `event_payload` matching cannot parse (it breaks the JSON rules of
//! `esdb_protocol::json`: an older version wrote it, or the disk damaged it) is neither a match
//! nor a miss: it is [`Verdict::Unreadable`], and the subscription reports it (an `UNREADABLE`
//! frame, or a park with the reason) instead of passing over it.

use std::cell::OnceCell;
use std::sync::Arc;

use serde_json::Value;

use esdb_protocol::ops::subscribe::{Selector, ALL_STREAMS};

use crate::store::CommittedEvent;

/// What a selector makes of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Match,
    NoMatch,
    /// The record cannot be matched; the reason names the rule it breaks and where.
    Unreadable(Arc<str>),
}

/// An event handed to a subscription: a match, or a record it could not read (reported, never
/// skipped).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: CommittedEvent,
    pub unreadable: Option<Arc<str>>,
}

impl Delivery {
    pub fn matched(event: CommittedEvent) -> Delivery {
        Delivery {
            event,
            unreadable: None,
        }
    }
}

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
    /// The streams the subscriber may read (`None`: all); others never match (src/auth).
    scope: Option<Arc<crate::auth::StreamScope>>,
}

/// An event being matched, with its record parsed at most once however many payload
/// selectors look at it.
pub struct Candidate<'a> {
    pub event: &'a CommittedEvent,
    parsed: OnceCell<Result<Value, Arc<str>>>,
}

impl<'a> Candidate<'a> {
    pub fn new(event: &'a CommittedEvent) -> Candidate<'a> {
        Candidate {
            event,
            parsed: OnceCell::new(),
        }
    }

    fn record(&self) -> Result<&Value, &Arc<str>> {
        self.parsed
            .get_or_init(|| {
                esdb_protocol::json::parse_record(&self.event.record).map_err(|e| {
                    Arc::from(format!("record at position {}: {e}", self.event.position))
                })
            })
            .as_ref()
    }
}

impl Matcher {
    pub fn new(selector: Selector) -> Matcher {
        Matcher {
            selector,
            scope: None,
        }
    }

    /// Whether the subscriber may read `stream`.
    pub fn in_scope(&self, stream: &str) -> bool {
        self.scope.as_ref().is_none_or(|scope| scope.allows(stream))
    }

    /// Limits the matcher to the streams `scope` allows.
    pub fn scoped(mut self, scope: Option<Arc<crate::auth::StreamScope>>) -> Matcher {
        self.scope = scope;
        self
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

    pub fn judge(&self, candidate: &Candidate<'_>) -> Verdict {
        let event = candidate.event;
        if !self.in_scope(&event.stream) {
            return Verdict::NoMatch;
        }
        let matched = match &self.selector {
            Selector::Stream(stream) => stream == ALL_STREAMS || **stream == *event.stream,
            Selector::EventType(types) => types.iter().any(|t| **t == *event.event_type),
            Selector::EventPattern(pattern) => wildcard_match(pattern, &event.stream),
            Selector::EventPayload(pattern) => match candidate.record() {
                Ok(record) => partial_match(pattern, record),
                Err(reason) => return Verdict::Unreadable(reason.clone()),
            },
        };
        if matched {
            Verdict::Match
        } else {
            Verdict::NoMatch
        }
    }

    /// The delivery for `event`, if this selector delivers it (matched or unreadable).
    pub fn delivery(&self, candidate: &Candidate<'_>) -> Option<Delivery> {
        match self.judge(candidate) {
            Verdict::Match => Some(Delivery::matched(candidate.event.clone())),
            Verdict::NoMatch => None,
            Verdict::Unreadable(reason) => Some(Delivery {
                event: candidate.event.clone(),
                unreadable: Some(reason),
            }),
        }
    }
}

/// `*` matches any run of characters; everything else matches itself. Greedy matching that
/// backtracks to the last `*` only (O(pattern × text) at worst).
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

/// The one partial matcher, shared with append conditions (`esdb_protocol::matching`).
pub use esdb_protocol::matching::partial_match;

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
            hidden: false,
        };
        let candidate = Candidate::new(&event);
        let matches = |s: Selector| Matcher::new(s).judge(&candidate) == Verdict::Match;
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

    #[test]
    fn unreadable_records_are_neither_match_nor_miss() {
        let deep = format!(
            r#"{{"data":{{"x":1,"d":{}1{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        for record in [
            deep.as_str(),
            r#"{"data":{"x":1,"n":1e400}}"#,
            r#"{"data":{"x":1,"s":"\ud800"}}"#,
        ] {
            let event = CommittedEvent {
                position: 9,
                version: 0,
                stream: Arc::from("s"),
                event_type: Arc::from("T"),
                record: bytes::Bytes::copy_from_slice(record.as_bytes()),
                hidden: false,
            };
            let candidate = Candidate::new(&event);
            let payload = Matcher::new(Selector::EventPayload(json!({"data": {"x": 1}})));
            match payload.judge(&candidate) {
                Verdict::Unreadable(reason) => assert!(reason.contains("position 9"), "{reason}"),
                other => panic!("{record}: {other:?}"),
            }
            // Selectors that do not parse the record still match it.
            let by_stream = Matcher::new(Selector::Stream("s".into()));
            assert_eq!(by_stream.judge(&candidate), Verdict::Match);
        }
    }
}
