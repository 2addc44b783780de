//! The store's persisted formats, pinned byte for byte.
//!
//! Commands are written to the Raft log as JSON and replayed after a restart; persistent
//! subscription definitions are stored as JSON in LMDB. Some of their fields are the protocol
//! crate's types (`ExpectedVersion`, `Selector`, `SubscriptionOptions`), so a change to the
//! wire's serde shapes would silently change what is on disk, and an older log or store would
//! no longer read back. These tests fail on any such change: when one fails, either keep the
//! old shape or bump `schema::FORMAT_VERSION` and upgrade the older format on open.

use std::str::FromStr;

use esdb_protocol::ops::subscribe::{Selector, StartFrom, SubscriptionOptions};
use esdb_protocol::ExpectedVersion;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::store::schema::StreamLimits;
use crate::store::subscriptions::{ParkedEvent, SubscriptionDefinition};
use crate::store::{AppendCommand, Command, NewEvent};

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

fn roundtrip(command: &Command, pinned: &str) {
    let written = serde_json::to_string(command).unwrap();
    assert_eq!(written, pinned, "a persisted command's format changed");
    let read: Command = serde_json::from_str(pinned).unwrap();
    assert_eq!(serde_json::to_string(&read).unwrap(), pinned);
}

#[test]
fn log_commands_keep_their_format() {
    let id = Uuid::from_str("0190f6b2-7c3e-7a55-8d2e-1f0a9b8c7d6e").unwrap();
    let append = |expected| {
        Command::Append(AppendCommand {
            sealed: false,
            stream: "order-1".into(),
            expected,
            epoch_us: 1_700_000_000_000_000,
            events: vec![NewEvent {
                event_id: id,
                event_type: "Placed".into(),
                data: raw(r#"{"total":3}"#),
                metadata: None,
                tags: Vec::new(),
            }],
        })
    };
    let event = r#""events":[{"event_id":"0190f6b2-7c3e-7a55-8d2e-1f0a9b8c7d6e","event_type":"Placed","data":{"total":3},"metadata":null}]"#;
    for (expected, text) in [
        (ExpectedVersion::Any, r#""Any""#),
        (ExpectedVersion::NoStream, r#""NoStream""#),
        (ExpectedVersion::Exists, r#""Exists""#),
        (ExpectedVersion::Exact(7), r#"{"Exact":7}"#),
    ] {
        roundtrip(
            &append(expected),
            &format!(
                r#"{{"Append":{{"stream":"order-1","expected":{text},"epoch_us":1700000000000000,{event}}}}}"#
            ),
        );
    }
    roundtrip(
        &Command::Delete {
            stream: "order-1".into(),
            expected: ExpectedVersion::Exact(2),
        },
        r#"{"Delete":{"stream":"order-1","expected":{"Exact":2}}}"#,
    );
    roundtrip(
        &Command::SaveSubscriptionState {
            name: "billing".into(),
            checkpoint: 42,
            park: vec![ParkedEvent {
                position: 40,
                reason: Some("bad".into()),
            }],
            unpark: vec![41],
        },
        r#"{"SaveSubscriptionState":{"name":"billing","checkpoint":42,"park":[{"position":40,"reason":"bad"}],"unpark":[41]}}"#,
    );
    roundtrip(
        &Command::Tombstone {
            stream: "order-1".into(),
            expected: ExpectedVersion::Any,
        },
        r#"{"Tombstone":{"stream":"order-1","expected":"Any"}}"#,
    );
    roundtrip(
        &Command::SetStreamLimits {
            stream: "order-1".into(),
            limits: StreamLimits {
                max_count: Some(3),
                max_age_ms: None,
                truncate_before: Some(2),
            },
        },
        r#"{"SetStreamLimits":{"stream":"order-1","limits":{"max_count":3,"max_age_ms":null,"truncate_before":2}}}"#,
    );
    roundtrip(
        &Command::ScavengeStart { epoch_us: 7 },
        r#"{"ScavengeStart":{"epoch_us":7}}"#,
    );
    roundtrip(
        &Command::ScavengeSlice {
            from_position: 0,
            to_position: 512,
            now_us: 9,
        },
        r#"{"ScavengeSlice":{"from_position":0,"to_position":512,"now_us":9}}"#,
    );
    roundtrip(
        &Command::Encrypt {
            stream: "user-1".into(),
            wrapped_key: vec![1, 2, 255],
        },
        r#"{"Encrypt":{"stream":"user-1","wrapped_key":[1,2,255]}}"#,
    );
    roundtrip(
        &Command::Shred {
            stream: "user-1".into(),
        },
        r#"{"Shred":{"stream":"user-1"}}"#,
    );
    let sealed = Command::Append(AppendCommand {
        sealed: true,
        stream: "user-1".into(),
        expected: ExpectedVersion::Any,
        epoch_us: 1,
        events: vec![NewEvent {
            event_id: Uuid::nil(),
            event_type: "T".into(),
            data: raw(r#""c2VhbGVk""#),
            metadata: None,
            tags: Vec::new(),
        }],
    });
    roundtrip(
        &sealed,
        r#"{"Append":{"stream":"user-1","expected":"Any","epoch_us":1,"events":[{"event_id":"00000000-0000-0000-0000-000000000000","event_type":"T","data":"c2VhbGVk","metadata":null}],"sealed":true}}"#,
    );
}

#[test]
fn subscription_definitions_keep_their_format() {
    let selectors = [
        (
            Selector::Stream("$all".into()),
            r#""type":"stream","selector":"$all""#,
        ),
        (
            Selector::EventType(vec!["A".into(), "B".into()]),
            r#""type":"event_type","selector":"A,B""#,
        ),
        (
            Selector::EventPattern("order-*".into()),
            r#""type":"event_pattern","selector":"order-*""#,
        ),
        (
            Selector::EventPayload(serde_json::json!({"data":{"k":1}})),
            r#""type":"event_payload","selector":{"data":{"k":1}}"#,
        ),
    ];
    for (selector, text) in selectors {
        let definition = SubscriptionDefinition {
            name: "billing".into(),
            selector,
            options: SubscriptionOptions {
                start: StartFrom::Position(5),
                max_in_flight: 10,
                ack_timeout_ms: 30_000,
                max_retries: 3,
            },
            created_epoch_us: 1,
        };
        let pinned = format!(
            r#"{{"name":"billing",{text},"options":{{"start":5,"max_in_flight":10,"ack_timeout_ms":30000,"max_retries":3}},"created_epoch_us":1}}"#
        );
        let written = serde_json::to_string(&definition).unwrap();
        assert_eq!(written, pinned, "a stored definition's format changed");
        let read: SubscriptionDefinition = serde_json::from_str(&pinned).unwrap();
        assert_eq!(read, definition);
    }
}

/// Format 5's commands: tagged events (an untagged event keeps the older shape, pinned above)
/// and `APPENDMULTI` with its condition.
#[test]
fn multi_append_and_tagged_commands_keep_their_format() {
    use crate::store::condition::{AppendCondition, ConditionItem};
    use crate::store::multi::{AppendMultiCommand, AppendPart};
    let id = Uuid::from_str("0190f6b2-7c3e-7a55-8d2e-1f0a9b8c7d6e").unwrap();
    let event = |tags: Vec<String>| NewEvent {
        event_id: id,
        event_type: "Placed".into(),
        data: raw("1"),
        metadata: None,
        tags,
    };
    roundtrip(
        &Command::AppendMulti(AppendMultiCommand {
            epoch_us: 7,
            parts: vec![
                AppendPart {
                    sealed: false,
                    stream: "a".into(),
                    expected: ExpectedVersion::NoStream,
                    events: vec![event(vec!["course:c1".into()])],
                },
                AppendPart {
                    sealed: false,
                    stream: "b".into(),
                    expected: ExpectedVersion::Exact(2),
                    events: vec![event(vec![])],
                },
            ],
            condition: Some(AppendCondition {
                query: vec![
                    ConditionItem {
                        types: vec!["Placed".into()],
                        tags: vec!["course:c1".into()],
                        payload: Some(serde_json::json!({"data": 1})),
                    },
                    ConditionItem {
                        types: vec![],
                        tags: vec!["t".into()],
                        payload: None,
                    },
                ],
                after: Some(41),
            }),
        }),
        concat!(
            r#"{"AppendMulti":{"epoch_us":7,"parts":["#,
            r#"{"stream":"a","expected":"NoStream","events":[{"event_id":"0190f6b2-7c3e-7a55-8d2e-1f0a9b8c7d6e","event_type":"Placed","data":1,"metadata":null,"tags":["course:c1"]}]},"#,
            r#"{"stream":"b","expected":{"Exact":2},"events":[{"event_id":"0190f6b2-7c3e-7a55-8d2e-1f0a9b8c7d6e","event_type":"Placed","data":1,"metadata":null}]}],"#,
            r#""condition":{"query":[{"types":["Placed"],"tags":["course:c1"],"payload":{"data":1}},{"tags":["t"]}],"after":41}}}"#
        ),
    );
    roundtrip(
        &Command::AppendMulti(AppendMultiCommand {
            epoch_us: 7,
            parts: vec![AppendPart {
                sealed: false,
                stream: "a".into(),
                expected: ExpectedVersion::Any,
                events: vec![event(vec![])],
            }],
            condition: None,
        }),
        r#"{"AppendMulti":{"epoch_us":7,"parts":[{"stream":"a","expected":"Any","events":[{"event_id":"0190f6b2-7c3e-7a55-8d2e-1f0a9b8c7d6e","event_type":"Placed","data":1,"metadata":null}]}]}}"#,
    );
}
