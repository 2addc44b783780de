//! Subscriptions through the client against a real server: every selector type, catch-up to
//! live under a concurrent writer, slow consumers, persistent acks and nacks, and resuming
//! after the client is dropped and after the server is killed.

mod common;

use std::time::Duration;

use common::{client, options, within_timeout, Server};
use esdb_client::{
    CatchUpSubscription, Client, EventData, ExpectedVersion, NackAction, PersistentSubscription,
    RecordedEvent, Selector, StartFrom, SubscriptionEvent, SubscriptionOptions,
};
use futures::StreamExt;
use serde_json::json;

/// Checks of the parked list before giving up on a parked event being stored.
const PARKED_POLLS: usize = 400;

fn event(event_type: &str, data: serde_json::Value) -> EventData {
    EventData::json(event_type, &data).unwrap()
}

async fn append_n(client: &Client, stream: &str, n: usize) {
    for i in 0..n {
        client
            .append(
                stream,
                ExpectedVersion::Any,
                [event("Tick", json!({"i": i}))],
            )
            .await
            .unwrap();
    }
}

/// The positions of events up to `LIVE`.
async fn history(subscription: &mut CatchUpSubscription) -> Vec<u64> {
    let mut positions = Vec::new();
    loop {
        match subscription
            .next()
            .await
            .expect("subscription ended")
            .unwrap()
        {
            SubscriptionEvent::Event(event) => positions.push(event.position),
            SubscriptionEvent::Live => return positions,
            SubscriptionEvent::Unreadable(unreadable) => panic!("{unreadable}"),
        }
    }
}

/// The positions of the next `n` events, skipping `LIVE`.
async fn take_events(subscription: &mut CatchUpSubscription, n: usize) -> Vec<u64> {
    let mut positions = Vec::new();
    while positions.len() < n {
        match subscription
            .next()
            .await
            .expect("subscription ended")
            .unwrap()
        {
            SubscriptionEvent::Event(event) => positions.push(event.position),
            SubscriptionEvent::Live => {}
            SubscriptionEvent::Unreadable(unreadable) => panic!("{unreadable}"),
        }
    }
    positions
}

async fn next_persistent(subscription: &mut PersistentSubscription) -> RecordedEvent {
    subscription
        .next()
        .await
        .expect("subscription ended")
        .unwrap()
}

#[tokio::test]
async fn every_selector_type_selects_its_events() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        let writes = [
            ("user-1", "UserCreated", json!({"country": "NL"})),
            ("user-2", "UserCreated", json!({"country": "DE"})),
            (
                "order-1",
                "OrderPlaced",
                json!({"country": "NL", "total": 3}),
            ),
            ("user-1", "UserRenamed", json!({"name": "Ada"})),
        ];
        for (stream, event_type, data) in writes {
            client
                .append(stream, ExpectedVersion::Any, [event(event_type, data)])
                .await
                .unwrap();
        }
        let cases = [
            (Selector::Stream("user-1".into()), vec![0, 3]),
            (Selector::Stream("$all".into()), vec![0, 1, 2, 3]),
            (
                Selector::EventType(vec!["OrderPlaced".into(), "UserRenamed".into()]),
                vec![2, 3],
            ),
            (Selector::EventPattern("user-*".into()), vec![0, 1, 3]),
            (
                Selector::EventPayload(json!({"data": {"country": "NL"}})),
                vec![0, 2],
            ),
        ];
        for (selector, expected) in cases {
            let mut subscription = client
                .subscribe(selector.clone(), StartFrom::Origin)
                .await
                .unwrap();
            assert_eq!(history(&mut subscription).await, expected, "{selector:?}");
        }
        let mut from_two = client
            .subscribe(Selector::Stream("$all".into()), StartFrom::Position(2))
            .await
            .unwrap();
        assert_eq!(history(&mut from_two).await, [2, 3]);

        // A persistent one with a payload selector gets the same events.
        let mut persistent = client
            .subscribe_persistent(
                "nl",
                Selector::EventPayload(json!({"data": {"country": "NL"}})),
                SubscriptionOptions::default(),
            )
            .await
            .unwrap();
        for expected in [0, 2] {
            let event = next_persistent(&mut persistent).await;
            assert_eq!(event.position, expected);
            persistent.ack(&event).await.unwrap();
        }

        let error = client
            .subscribe(Selector::Stream("$nope".into()), StartFrom::Origin)
            .await
            .err()
            .expect("refused");
        assert_eq!(error.code(), Some(esdb_client::ErrorCode::InvalidSelector));
    })
    .await;
}

#[tokio::test]
async fn catch_up_then_live_with_a_concurrent_writer_has_no_gap() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        append_n(&client, "history", 100).await;
        let writer = {
            let writer = common::client(&server).await;
            tokio::spawn(async move { append_n(&writer, "live", 300).await })
        };
        let mut subscription = client
            .subscribe(Selector::Stream("$all".into()), StartFrom::Origin)
            .await
            .unwrap();
        let mut positions = Vec::new();
        let mut lives = 0;
        while positions.len() < 400 {
            match subscription.next().await.unwrap().unwrap() {
                SubscriptionEvent::Event(event) => positions.push(event.position),
                SubscriptionEvent::Live => lives += 1,
                SubscriptionEvent::Unreadable(unreadable) => panic!("{unreadable}"),
            }
        }
        writer.await.unwrap();
        assert_eq!(positions, (0..400).collect::<Vec<_>>());
        assert_eq!(lives, 1);

        // From the end: only what is committed after subscribing.
        let mut from_end = client
            .subscribe(Selector::Stream("live".into()), StartFrom::End)
            .await
            .unwrap();
        assert!(history(&mut from_end).await.is_empty());
        append_n(&client, "live", 2).await;
        assert_eq!(take_events(&mut from_end, 2).await, [400, 401]);
        from_end.unsubscribe().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_slow_consumer_slows_only_its_own_subscription() {
    within_timeout(async {
        let server = Server::start();
        let client = Client::connect(options(&[&server]).with_subscription_buffer_events(8))
            .await
            .unwrap();
        append_n(&client, "s", 300).await;
        let mut slow = client
            .subscribe(Selector::Stream("$all".into()), StartFrom::Origin)
            .await
            .unwrap();
        let mut prompt = client
            .subscribe(Selector::Stream("$all".into()), StartFrom::Origin)
            .await
            .unwrap();
        // While `slow` is not read at all, the other subscription and calls on the same
        // connection go on.
        assert_eq!(history(&mut prompt).await, (0..300).collect::<Vec<_>>());
        assert_eq!(client.version("s").await.unwrap(), Some(299));
        let writer = {
            let client = client.clone();
            tokio::spawn(async move { append_n(&client, "s", 200).await })
        };
        // The slow one, paused and resumed as its buffer filled, still sees every event once.
        let mut positions = Vec::new();
        while positions.len() < 500 {
            if let SubscriptionEvent::Event(event) = slow.next().await.unwrap().unwrap() {
                positions.push(event.position);
                if positions.len() % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        writer.await.unwrap();
        assert_eq!(positions, (0..500).collect::<Vec<_>>());
        assert!(slow.resumes() > 0, "the slow one was paused and resumed");
        assert_eq!(
            take_events(&mut prompt, 200).await,
            (300..500).collect::<Vec<_>>()
        );
    })
    .await;
}

#[tokio::test]
async fn persistent_acks_nacks_parking_and_management() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        append_n(&client, "jobs", 5).await;
        let options = SubscriptionOptions {
            max_retries: 1,
            ..SubscriptionOptions::default()
        };
        let mut subscription = client
            .subscribe_persistent("workers", Selector::Stream("jobs".into()), options)
            .await
            .unwrap();
        let mut first = Vec::new();
        for _ in 0..5 {
            first.push(next_persistent(&mut subscription).await);
        }
        assert_eq!(
            first.iter().map(|e| e.position).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let acker = subscription.acker();
        acker.ack(&first[0]).await.unwrap();
        subscription
            .nack(&first[1], NackAction::Retry)
            .await
            .unwrap();
        subscription
            .nack(&first[2], NackAction::Skip)
            .await
            .unwrap();
        subscription
            .nack(&first[3], NackAction::Park)
            .await
            .unwrap();
        acker.ack_positions(&[4]).await.unwrap();
        // Only the retried one comes back.
        let again = next_persistent(&mut subscription).await;
        assert_eq!(again.position, 1);
        assert_eq!(again.event_id, first[1].event_id);
        subscription.ack(&again).await.unwrap();

        let psub = client.persistent_subscriptions();
        // Parked events are stored with the next checkpoint (every 100 ms), not by the NACK.
        let mut parked = Vec::new();
        for _ in 0..PARKED_POLLS {
            parked = psub.parked("workers", 0, 100).await.unwrap();
            if !parked.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(parked.iter().map(|e| e.position).collect::<Vec<_>>(), [3]);
        let info = psub.get("workers").await.unwrap();
        assert_eq!(info.selector, Selector::Stream("jobs".into()));
        assert_eq!(info.options.max_retries, 1);
        assert_eq!(info.parked, 1);
        psub.replay("workers").await.unwrap();
        let replayed = next_persistent(&mut subscription).await;
        assert_eq!(replayed.position, 3);
        subscription.ack(&replayed).await.unwrap();

        let names: Vec<String> = psub
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["workers"]);
        assert!(psub.exists("workers").await.unwrap());
        let error = client
            .subscribe_persistent(
                "workers",
                Selector::Stream("other".into()),
                SubscriptionOptions::default(),
            )
            .await
            .err()
            .expect("refused");
        assert_eq!(
            error.code(),
            Some(esdb_client::ErrorCode::SubscriptionConflict)
        );
        subscription.unsubscribe().await.unwrap();
        psub.delete("workers").await.unwrap();
        assert!(!psub.exists("workers").await.unwrap());
        let error = psub.get("workers").await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(esdb_client::ErrorCode::SubscriptionNotFound)
        );
    })
    .await;
}

#[tokio::test]
async fn a_persistent_subscription_resumes_after_its_client_is_dropped() {
    within_timeout(async {
        let server = Server::start();
        {
            let client = client(&server).await;
            append_n(&client, "orders", 10).await;
            let mut subscription = client
                .subscribe_persistent(
                    "billing",
                    Selector::Stream("orders".into()),
                    SubscriptionOptions::default(),
                )
                .await
                .unwrap();
            for expected in 0..4 {
                let event = next_persistent(&mut subscription).await;
                assert_eq!(event.position, expected);
                subscription.ack(&event).await.unwrap();
            }
            // Dropped here with six events delivered and not acknowledged.
        }
        let client = client(&server).await;
        let mut subscription = client
            .subscribe_persistent(
                "billing",
                Selector::Stream("orders".into()),
                SubscriptionOptions::default(),
            )
            .await
            .unwrap();
        append_n(&client, "orders", 5).await;
        let mut positions = Vec::new();
        while positions.len() < 11 {
            let event = next_persistent(&mut subscription).await;
            positions.push(event.position);
            subscription.ack(&event).await.unwrap();
        }
        assert_eq!(positions, (4..15).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test]
async fn a_persistent_subscription_resumes_after_the_server_is_killed() {
    within_timeout(async {
        let mut server = Server::start();
        let client = client(&server).await;
        append_n(&client, "orders", 10).await;
        let mut subscription = client
            .subscribe_persistent(
                "billing",
                Selector::Stream("orders".into()),
                SubscriptionOptions::default(),
            )
            .await
            .unwrap();
        let mut positions = Vec::new();
        for _ in 0..5 {
            let event = next_persistent(&mut subscription).await;
            positions.push(event.position);
            subscription.ack(&event).await.unwrap();
        }
        server.kill9();
        server.restart();
        // The same client reconnects for the append and for the subscription.
        append_n(&client, "orders", 5).await;
        while positions.len() < 15 {
            let event = next_persistent(&mut subscription).await;
            positions.push(event.position);
            subscription.ack(&event).await.unwrap();
        }
        assert_eq!(positions, (0..15).collect::<Vec<_>>());
        assert!(subscription.resumes() >= 1);
    })
    .await;
}

#[tokio::test]
async fn a_catch_up_subscription_resumes_after_the_server_is_killed() {
    within_timeout(async {
        let mut server = Server::start();
        let client = client(&server).await;
        append_n(&client, "s", 10).await;
        let mut subscription = client
            .subscribe(Selector::Stream("$all".into()), StartFrom::Origin)
            .await
            .unwrap();
        let mut positions = take_events(&mut subscription, 5).await;
        server.kill9();
        server.restart();
        append_n(&client, "s", 5).await;
        positions.extend(take_events(&mut subscription, 10).await);
        assert_eq!(positions, (0..15).collect::<Vec<_>>());
        assert!(subscription.resumes() >= 1);
        assert_eq!(subscription.next_position(), 15);
    })
    .await;
}

#[tokio::test]
async fn a_catch_up_subscription_pauses_at_its_byte_budget_too() {
    within_timeout(async {
        let server = Server::start();
        let client = Client::connect(options(&[&server]).with_subscription_buffer_bytes(4096))
            .await
            .unwrap();
        let padding = "x".repeat(1000);
        for i in 0..100 {
            client
                .append(
                    "big",
                    ExpectedVersion::Any,
                    [event("Big", json!({"i": i, "pad": padding}))],
                )
                .await
                .unwrap();
        }
        let mut subscription = client
            .subscribe(Selector::Stream("big".into()), StartFrom::Origin)
            .await
            .unwrap();
        client.ping().await.unwrap();
        assert_eq!(
            history(&mut subscription).await,
            (0..100).collect::<Vec<_>>()
        );
        assert!(
            subscription.resumes() > 0,
            "4 KiB holds only a few of these events"
        );
    })
    .await;
}
