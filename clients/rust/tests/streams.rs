//! Appends, reads, deletes, snapshots, AGG and STATS through the client, against a real server.

mod common;

use common::{client, within_timeout, Server};
use esdb_client::{
    fold_events, AggregateOptions, Client, EventData, ExpectedVersion, FoldOrder, ReadOptions,
    SnapshotData,
};
use esdb_client::{Direction, Error, ErrorCode, ReadStart};
use futures::TryStreamExt;
use serde_json::json;

fn event(event_type: &str, data: serde_json::Value) -> EventData {
    EventData::json(event_type, &data).unwrap()
}

async fn collect(stream: esdb_client::EventStream) -> Vec<esdb_client::RecordedEvent> {
    stream.try_collect().await.expect("read")
}

#[tokio::test]
async fn append_read_and_conflict() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        let first = event("UserCreated", json!({"name": "Ada"}));
        let first_id = first.event_id;
        let appended = client
            .append("user-1", ExpectedVersion::NoStream, [first])
            .await
            .unwrap();
        assert_eq!((appended.last_version, appended.last_position), (0, 0));
        let batch = vec![
            event("UserRenamed", json!({"name": "Ada L"}))
                .with_metadata(&json!({"by": "me"}))
                .unwrap(),
            event("UserRenamed", json!({"name": "Ada Lovelace"})),
        ];
        let appended = client
            .append("user-1", ExpectedVersion::Exact(0), batch)
            .await
            .unwrap();
        assert_eq!(appended.last_version, 2);

        let events = collect(client.read_stream("user-1", ReadOptions::forward())).await;
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event_id, first_id);
        assert_eq!(events[0].data.get(), r#"{"name":"Ada"}"#);
        assert_eq!(events[1].metadata.get(), r#"{"by":"me"}"#);
        assert_eq!(events[2].version, 2);

        let error = client
            .append("user-1", ExpectedVersion::Exact(0), [event("X", json!({}))])
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::WrongExpectedVersion));
        assert!(!error.is_retryable());
        assert!(
            error.to_string().starts_with("wrong_expected_version: "),
            "{error}"
        );
        let error = client
            .append("user-1", ExpectedVersion::NoStream, [event("X", json!({}))])
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::WrongExpectedVersion));
        client
            .append("user-1", ExpectedVersion::Exists, [event("X", json!({}))])
            .await
            .unwrap();
        assert_eq!(client.version("user-1").await.unwrap(), Some(3));
    })
    .await;
}

#[tokio::test]
async fn the_same_events_appended_twice_are_written_once() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        let events = vec![event("A", json!(1)), event("B", json!(2))];
        let first = client
            .append("s", ExpectedVersion::NoStream, events.clone())
            .await
            .unwrap();
        let again = client
            .append("s", ExpectedVersion::NoStream, events)
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(client.version("s").await.unwrap(), Some(1));
        // The same id in another stream is not a retry.
        let copy = event("C", json!(3));
        client
            .append("s", ExpectedVersion::Any, [copy.clone()])
            .await
            .unwrap();
        let error = client
            .append("other", ExpectedVersion::Any, [copy])
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::DuplicateEventId));
    })
    .await;
}

#[tokio::test]
async fn reads_page_both_ways_and_across_streams() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        for i in 0..7 {
            let stream = if i % 2 == 0 { "even" } else { "odd" };
            let event_type = if i % 3 == 0 { "Third" } else { "Other" };
            client
                .append(
                    stream,
                    ExpectedVersion::Any,
                    [event(event_type, json!({"i": i}))],
                )
                .await
                .unwrap();
        }
        let forward =
            collect(client.read_stream("even", ReadOptions::forward().page_size(2))).await;
        assert_eq!(
            forward.iter().map(|e| e.version).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        let backward =
            collect(client.read_stream("even", ReadOptions::backward().page_size(3))).await;
        assert_eq!(
            backward.iter().map(|e| e.version).collect::<Vec<_>>(),
            [3, 2, 1, 0]
        );
        let limited =
            collect(client.read_stream("even", ReadOptions::forward().from(1).limit(2))).await;
        assert_eq!(
            limited.iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2]
        );

        let all = collect(client.read_all(ReadOptions::forward().page_size(3))).await;
        assert_eq!(
            all.iter().map(|e| e.position).collect::<Vec<_>>(),
            (0..7).collect::<Vec<_>>()
        );
        let newest = collect(client.read_all(ReadOptions::backward().limit(2))).await;
        assert_eq!(
            newest.iter().map(|e| e.position).collect::<Vec<_>>(),
            [6, 5]
        );

        let thirds = collect(client.read_types(vec!["Third".into()], 0, None)).await;
        assert_eq!(
            thirds.iter().map(|e| e.position).collect::<Vec<_>>(),
            [0, 3, 6]
        );
        let page = client
            .read_types_page(&["Third".into()], 1, 1)
            .await
            .unwrap();
        assert_eq!(page[0].position, 3);
        let page = client
            .read_stream_page("odd", ReadStart::End, 1, Direction::Backward)
            .await
            .unwrap();
        assert_eq!(page[0].version, 2);

        let missing: Result<Vec<_>, _> = client
            .read_stream("nope", ReadOptions::forward())
            .try_collect()
            .await;
        assert_eq!(missing.unwrap_err().code(), Some(ErrorCode::StreamNotFound));
    })
    .await;
}

#[tokio::test]
async fn versions_existence_listing_and_delete() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        assert_eq!(client.version("a").await.unwrap(), None);
        assert!(!client.exists("a").await.unwrap());
        for stream in ["b", "a", "c"] {
            client
                .append(stream, ExpectedVersion::NoStream, [event("T", json!({}))])
                .await
                .unwrap();
        }
        let streams: Vec<String> = client.streams().try_collect().await.unwrap();
        assert_eq!(streams, ["a", "b", "c"]);
        assert_eq!(client.streams_page(Some("a"), 1).await.unwrap(), ["b"]);

        let error = client
            .delete("a", ExpectedVersion::Exact(5))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::WrongExpectedVersion));
        client.delete("a", ExpectedVersion::Exact(0)).await.unwrap();
        assert!(!client.exists("a").await.unwrap());
        assert_eq!(client.version("a").await.unwrap(), None);
        let read: Result<Vec<_>, _> = client
            .read_stream("a", ReadOptions::forward())
            .try_collect()
            .await;
        assert_eq!(read.unwrap_err().code(), Some(ErrorCode::StreamDeleted));
        let streams: Vec<String> = client.streams().try_collect().await.unwrap();
        assert_eq!(streams, ["b", "c"]);
    })
    .await;
}

#[tokio::test]
async fn calls_from_many_tasks_share_one_connection() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        let addr = client.server_addr().await.unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .append(
                            "shared",
                            ExpectedVersion::Any,
                            [event("T", json!({"i": i}))],
                        )
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut versions = Vec::new();
        for task in tasks {
            versions.push(task.await.unwrap().last_version);
        }
        versions.sort_unstable();
        assert_eq!(versions, (0..200).collect::<Vec<_>>());
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.stores["default"].events, 200);
        assert_eq!(client.server_addr().await.unwrap(), addr);
    })
    .await;
}

#[tokio::test]
async fn refused_requests_leave_the_connection_usable() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        let huge = "x".repeat(esdb_client::protocol::limits::MAX_PAYLOAD_BYTES);
        let error = client
            .append("s", ExpectedVersion::Any, [event("Big", json!(huge))])
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::Invalid {
                    code: ErrorCode::PayloadTooLarge,
                    ..
                }
            ),
            "{error}"
        );
        let error = client.version("has space").await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::InvalidArgument));
        // The server's own refusal of a bad argument.
        let error = client
            .append("s", ExpectedVersion::Any, [event("bad,type", json!({}))])
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::Server {
                    code: ErrorCode::InvalidArgument,
                    ..
                }
            ),
            "{error}"
        );
        client.ping().await.unwrap();
        assert_eq!(client.version("s").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn stores_are_selected_per_client() {
    within_timeout(async {
        let server = Server::start_with(&["--store", "main,audit"]);
        let client = client(&server).await;
        assert_eq!(client.store().await.unwrap(), "main");
        let audit = client.use_store("audit").await.unwrap();
        audit
            .append("log", ExpectedVersion::Any, [event("T", json!({}))])
            .await
            .unwrap();
        assert_eq!(audit.version("log").await.unwrap(), Some(0));
        assert_eq!(client.version("log").await.unwrap(), None);
        let error = client.use_store("nope").await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::StoreNotFound));
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.stores["audit"].events, 1);
        assert_eq!(stats.stores["main"].events, 0);
    })
    .await;
}

#[tokio::test]
async fn snapshots_and_aggregation() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        let events = vec![
            event("Opened", json!({"owner": "Ada", "balance": {"$sum": 10}})),
            event("Deposited", json!({"balance": {"$sum": 5}})),
            event("Withdrawn", json!({"balance": {"$sum": -3}})),
        ];
        client
            .append("acct-1", ExpectedVersion::NoStream, events)
            .await
            .unwrap();
        let state = client
            .aggregate("acct-1", AggregateOptions::default())
            .await
            .unwrap();
        assert_eq!(state.version, 2);
        assert_eq!(
            serde_json::Value::Object(state.state.clone()),
            json!({"balance": 12, "owner": "Ada"})
        );

        // The client folds what it reads exactly as the server does.
        let read = collect(client.read_stream("acct-1", ReadOptions::forward())).await;
        let local = fold_events(FoldOrder::Left, Default::default(), &read).unwrap();
        assert_eq!(esdb_client::finalize(local.clone()), state.state);
        let raw = client
            .aggregate(
                "acct-1",
                AggregateOptions {
                    raw: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(raw.state, local);

        let snapshots = client.snapshots();
        assert!(snapshots.load("acct-1").await.unwrap().is_none());
        let raw_state = serde_json::Value::Object(raw.state);
        snapshots
            .save(
                "acct-1",
                1,
                &SnapshotData::json(&json!({"balance": {"$sum": 15}, "owner": "Ada"})).unwrap(),
            )
            .await
            .unwrap();
        snapshots
            .save(
                "acct-1",
                2,
                &SnapshotData::json(&raw_state).unwrap().with_keep(5),
            )
            .await
            .unwrap();
        let newest = snapshots.load("acct-1").await.unwrap().unwrap();
        assert_eq!(newest.version, 2);
        assert_eq!(newest.data_as::<serde_json::Value>().unwrap(), raw_state);
        assert_eq!(
            snapshots
                .load_at("acct-1", 1)
                .await
                .unwrap()
                .unwrap()
                .version,
            1
        );
        assert!(snapshots.load_at("acct-1", 0).await.unwrap().is_none());
        assert!(snapshots.exists("acct-1").await.unwrap());
        assert!(!snapshots.exists_at("acct-1", 0).await.unwrap());
        let listed: Vec<u64> = snapshots
            .list("acct-1")
            .await
            .unwrap()
            .iter()
            .map(|s| s.version)
            .collect();
        assert_eq!(listed, [1, 2]);
        let from_snapshot = client
            .aggregate(
                "acct-1",
                AggregateOptions {
                    from_snapshot: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(from_snapshot, state);
        let error = snapshots
            .save("acct-1", 9, &SnapshotData::json(&json!({})).unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::InvalidArgument));
        snapshots.delete_at("acct-1", 1).await.unwrap();
        assert!(!snapshots.exists_at("acct-1", 1).await.unwrap());
        snapshots.delete("acct-1").await.unwrap();
        assert!(!snapshots.exists("acct-1").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn a_client_made_lazily_connects_on_first_call() {
    within_timeout(async {
        let server = Server::start();
        let client = Client::lazy(common::options(&[&server])).unwrap();
        assert_eq!(client.server_info().await.unwrap().server_name, "esdb");
        assert!(Client::lazy(esdb_client::ClientOptions::new(Vec::<String>::new())).is_err());
    })
    .await;
}
