//! Stored records that break the protocol's JSON rules (as an older server or a damaged disk
//! may have left them), seeded with the server crate's test tool before the server starts: a
//! catch-up `event_payload` subscription yields `SubscriptionEvent::Unreadable` in their place
//! and goes on (also after the server is killed and restarted), a persistent one parks them
//! with a `parked_reason`, `AGG` answers `unreadable_event`, and plain reads return them as
//! stored. And `raft` in `INFO` and `STATS`.

mod common;

use std::time::Duration;

use common::{client, within_timeout, Server};
use esdb_client::{
    AggregateOptions, CatchUpSubscription, ErrorCode, EventData, ExpectedVersion, ReadOptions,
    Selector, StartFrom, SubscriptionEvent, SubscriptionOptions,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

/// Checks of the parked list before giving up on the parked events being stored.
const PARKED_POLLS: usize = 400;

/// Stream `acct`, positions 0 to 4: readable, out-of-range number, lone surrogate, readable,
/// nesting past the limit. The last one is unreadable, so resuming after it is tested.
fn seeded() -> Server {
    let deep = format!(r#"{{"x":1,"d":{}{}}}"#, "[".repeat(200), "]".repeat(200));
    Server::start_seeded(
        "acct",
        &[
            r#"{"x":1,"n":0}"#,
            r#"{"x":1,"n":1e400}"#,
            r#"{"x":1,"s":"\ud800"}"#,
            r#"{"x":1,"n":3}"#,
            &deep,
        ],
    )
}

fn payload() -> Selector {
    Selector::EventPayload(json!({"data": {"x": 1}}))
}

/// The next item that is not `Live`, as `event <position>` or `unreadable <position>`, with
/// the unreadable event's fields checked.
async fn next_item(subscription: &mut CatchUpSubscription) -> String {
    loop {
        match subscription
            .next()
            .await
            .expect("subscription ended")
            .unwrap()
        {
            SubscriptionEvent::Event(event) => return format!("event {}", event.position),
            SubscriptionEvent::Unreadable(unreadable) => {
                assert_eq!(unreadable.stream, "acct");
                assert_eq!(unreadable.version, unreadable.position, "one stream from 0");
                let position = format!("position {}", unreadable.position);
                assert!(unreadable.reason.contains(&position), "{unreadable}");
                return format!("unreadable {}", unreadable.position);
            }
            SubscriptionEvent::Live => {}
        }
    }
}

#[tokio::test]
async fn a_catch_up_subscription_yields_unreadable_events_and_resumes_after_them() {
    within_timeout(async {
        let mut server = seeded();
        let client = client(&server).await;
        let mut subscription = client
            .subscribe(payload(), StartFrom::Origin)
            .await
            .unwrap();
        let mut items = Vec::new();
        for _ in 0..5 {
            items.push(next_item(&mut subscription).await);
        }
        assert_eq!(
            items,
            [
                "event 0",
                "unreadable 1",
                "unreadable 2",
                "event 3",
                "unreadable 4"
            ]
        );
        assert_eq!(subscription.next_position(), 5, "past the unreadable event");

        // After kill -9 and a restart it subscribes again from 5: event 4 is not reported twice.
        server.kill9();
        server.restart();
        let written = client
            .append(
                "acct",
                ExpectedVersion::Any,
                [EventData::json("T", &json!({"x": 1, "n": 5})).unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(written.last_position, 5);
        assert_eq!(next_item(&mut subscription).await, "event 5");
        assert!(subscription.resumes() >= 1);
        subscription.unsubscribe().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_persistent_subscription_parks_them_with_the_reason() {
    within_timeout(async {
        let server = seeded();
        let client = client(&server).await;
        let mut subscription = client
            .subscribe_persistent("worker", payload(), SubscriptionOptions::default())
            .await
            .unwrap();
        for expected in [0, 3] {
            let event = subscription.next().await.unwrap().unwrap();
            assert_eq!(event.position, expected);
            subscription.ack(&event).await.unwrap();
        }
        let psub = client.persistent_subscriptions();
        let mut parked = Vec::new();
        for _ in 0..PARKED_POLLS {
            parked = psub.parked("worker", 0, 100).await.unwrap();
            if parked.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let positions: Vec<u64> = parked.iter().map(|event| event.position).collect();
        assert_eq!(positions, [1, 2, 4]);
        for event in &parked {
            let reason = event.parked_reason.as_deref().expect("a parked_reason");
            let prefix = format!("unreadable: record at position {}", event.position);
            assert!(reason.starts_with(&prefix), "{reason}");
            assert_eq!(
                (event.stream_id.as_str(), event.event_type.as_str()),
                ("acct", "Seeded")
            );
        }
        assert_eq!(parked[0].data.get(), r#"{"x":1,"n":1e400}"#, "as stored");
        assert_eq!(psub.get("worker").await.unwrap().parked, 3);
    })
    .await;
}

#[tokio::test]
async fn aggregate_refuses_and_plain_reads_return_the_records_as_stored() {
    within_timeout(async {
        let server = seeded();
        let client = client(&server).await;
        let error = client
            .aggregate("acct", AggregateOptions::default())
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::UnreadableEvent), "{error}");
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("position 1"), "{error}");

        let events: Vec<_> = client
            .read_stream("acct", ReadOptions::forward())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(events.len(), 5);
        assert_eq!(events[2].data.get(), r#"{"x":1,"s":"\ud800"}"#);
        assert!(events.iter().all(|event| event.parked_reason.is_none()));
        assert!(events[0].data_value().is_ok());
        assert!(events[1].data_value().is_err(), "1e400 is no f64");
        assert!(
            events[4].data.get().len() > 400,
            "deep nesting read as stored"
        );
    })
    .await;
}

#[tokio::test]
async fn info_and_stats_carry_each_stores_raft_group() {
    within_timeout(async {
        let server = Server::start_with(&["--store", "default", "--store", "audit"]);
        let client = client(&server).await;
        client
            .append(
                "s",
                ExpectedVersion::Any,
                [EventData::json("T", &json!(1)).unwrap()],
            )
            .await
            .unwrap();
        let info = client.server_info().await.unwrap();
        assert_eq!(
            info.raft.keys().map(String::as_str).collect::<Vec<_>>(),
            ["audit", "default"]
        );
        let stats = client.stats().await.unwrap();
        let raft = stats.stores["default"].raft.clone().expect("raft in STATS");
        assert_eq!(raft.state, "leader");
        assert_eq!(raft.leader_id, Some(raft.node_id));
        assert!(raft.applied_index >= 1 && raft.last_log_index >= raft.applied_index);
    })
    .await;
}
