//! Snapshots and `AGG` end to end: the real server over real sockets, with its data in a
//! temporary directory, restarted where persistence is the point.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use common::{event, Client, Server};
use esdb_protocol::aggregate::{finalize, foldl, foldr, State};
use esdb_protocol::limits::{MAX_AGGREGATE_EVENTS, MAX_EVENTS_PER_APPEND};
use esdb_protocol::{ErrorCode, Reply};

/// `SNAP SAVE` with a sized payload.
fn snap_save(client: &mut Client, stream: &str, version: u64, payload: &Value) -> Reply {
    let payload = payload.to_string();
    let mut frame = format!("SNAP SAVE {stream} {version} {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(payload.as_bytes());
    frame.extend_from_slice(b"\r\n");
    client.send_raw(&frame);
    client.reply()
}

/// `SNAP LOAD`: the snapshot record as JSON, checking the reply line agrees with it.
fn snap_load(client: &mut Client, stream: &str, version: Option<u64>) -> Value {
    let line = match version {
        Some(version) => format!("SNAP LOAD {stream} {version}"),
        None => format!("SNAP LOAD {stream}"),
    };
    match client.request(&line) {
        Reply::Snapshot {
            stream: reply_stream,
            version,
            body,
        } => {
            let record: Value = serde_json::from_slice(&body).expect("record JSON");
            assert_eq!(reply_stream, stream);
            assert_eq!(record["stream_id"], stream);
            assert_eq!(record["version"], version);
            record
        }
        other => panic!("expected SNAPSHOT, got {other:?}"),
    }
}

/// `SNAP LIST` (one page): the versions listed.
fn snap_list(client: &mut Client, line: &str) -> Vec<u64> {
    match client.request(line) {
        Reply::Snapshots { count, body } => {
            let records: Vec<Value> = serde_json::from_slice(&body).expect("array");
            assert_eq!(records.len() as u64, count);
            records
                .iter()
                .map(|r| r["version"].as_u64().expect("version"))
                .collect()
        }
        other => panic!("expected SNAPSHOTS, got {other:?}"),
    }
}

fn snap_exists(client: &mut Client, line: &str) -> bool {
    match client.request(line) {
        Reply::Exists { exists, .. } => exists,
        other => panic!("expected EXISTS, got {other:?}"),
    }
}

/// `AGG …`: (version, state).
fn agg(client: &mut Client, line: &str) -> (u64, Value) {
    match client.request(line) {
        Reply::Aggregate { version, body, .. } => {
            (version, serde_json::from_slice(&body).expect("state JSON"))
        }
        other => panic!("expected AGG after {line:?}, got {other:?}"),
    }
}

fn error_code(reply: Reply) -> ErrorCode {
    match reply {
        Reply::Err(error) => error.code,
        other => panic!("expected -ERR, got {other:?}"),
    }
}

fn appended_version(reply: Reply) -> u64 {
    match reply {
        Reply::Appended { last_version, .. } => last_version,
        other => panic!("expected APPENDED, got {other:?}"),
    }
}

fn append_sums(client: &mut Client, stream: &str, amounts: &[i64]) -> u64 {
    let events: Vec<Value> = amounts
        .iter()
        .map(|n| json!({"event_type": "Deposited", "data": {"balance": {"$sum": n}}}))
        .collect();
    appended_version(client.append(stream, "any", &Value::from(events).to_string()))
}

#[test]
fn snapshot_operations_end_to_end_and_across_restarts() {
    let mut server = Server::start(&[]);
    let mut client = server.client();
    assert_eq!(append_sums(&mut client, "acct-1", &[1, 5, -2, 10]), 3);
    for version in [0, 1, 3] {
        let payload = json!({"data": {"balance": version}, "metadata": {"v": version}});
        assert_eq!(
            snap_save(&mut client, "acct-1", version, &payload),
            Reply::Ok
        );
    }
    // Overwrite version 1.
    let payload = json!({"data": {"balance": {"$sum": 6}}});
    assert_eq!(snap_save(&mut client, "acct-1", 1, &payload), Reply::Ok);
    assert_eq!(
        error_code(snap_save(&mut client, "acct-1", 4, &payload)),
        ErrorCode::InvalidArgument
    );

    // Kill -9: every acknowledged save is durable.
    server.kill9();
    server.restart();
    let mut client = server.client();
    assert_eq!(snap_list(&mut client, "SNAP LIST acct-1"), [0, 1, 3]);
    let latest = snap_load(&mut client, "acct-1", None);
    assert_eq!(latest["data"], json!({"balance": 3}));
    assert_eq!(latest["metadata"], json!({"v": 3}));
    assert!(latest["epoch_us"].as_u64().unwrap() > 1_600_000_000_000_000);
    let one = snap_load(&mut client, "acct-1", Some(1));
    assert_eq!(one["data"], json!({"balance": {"$sum": 6}}));
    assert_eq!(one["metadata"], json!({}));
    assert!(snap_exists(&mut client, "SNAP EXISTS acct-1 0"));
    assert!(!snap_exists(&mut client, "SNAP EXISTS acct-1 2"));
    assert!(!snap_exists(&mut client, "SNAP EXISTS nobody"));
    assert_eq!(
        error_code(client.request("SNAP LOAD nobody")),
        ErrorCode::SnapshotNotFound
    );

    assert_eq!(client.request("SNAP DELETE acct-1 3"), Reply::Ok);
    assert_eq!(snap_load(&mut client, "acct-1", None)["version"], 1);

    // A clean stop keeps the delete too.
    assert!(server.terminate().success());
    server.restart();
    let mut client = server.client();
    assert_eq!(snap_list(&mut client, "SNAP LIST acct-1"), [0, 1]);
    assert_eq!(client.request("SNAP DELETE acct-1"), Reply::Ok);
    assert_eq!(
        snap_list(&mut client, "SNAP LIST acct-1"),
        Vec::<u64>::new()
    );
    assert!(!snap_exists(&mut client, "SNAP EXISTS acct-1"));
    assert_eq!(
        agg(&mut client, "AGG acct-1 from_snapshot"),
        (3, json!({"balance": 14}))
    );
}

#[test]
fn deleting_a_stream_deletes_its_snapshots_for_good() {
    let mut server = Server::start(&[]);
    let mut client = server.client();
    append_sums(&mut client, "cart-1", &[1, 2, 3]);
    append_sums(&mut client, "cart-2", &[7]);
    let snapshot = json!({"data": {"balance": {"$sum": 100}}});
    assert_eq!(snap_save(&mut client, "cart-1", 1, &snapshot), Reply::Ok);
    assert_eq!(snap_save(&mut client, "cart-1", 2, &snapshot), Reply::Ok);
    assert_eq!(snap_save(&mut client, "cart-2", 0, &snapshot), Reply::Ok);
    assert_eq!(client.request("DELETE cart-1"), Reply::Ok);

    server.kill9();
    server.restart();
    let mut client = server.client();
    assert_eq!(
        snap_list(&mut client, "SNAP LIST cart-1"),
        Vec::<u64>::new()
    );
    assert_eq!(
        error_code(client.request("SNAP LOAD cart-1")),
        ErrorCode::SnapshotNotFound
    );
    // Other streams keep theirs (keys of cart-1 and cart-2 share a prefix).
    assert_eq!(snap_list(&mut client, "SNAP LIST cart-2"), [0]);

    // Recreated: versions continue at 3, the old snapshots do not come back, and AGG folds
    // only the new events even when asked to start from a snapshot.
    assert_eq!(append_sums(&mut client, "cart-1", &[40]), 3);
    assert_eq!(
        agg(&mut client, "AGG cart-1 from_snapshot"),
        (3, json!({"balance": 40}))
    );
    assert_eq!(
        error_code(snap_save(&mut client, "cart-1", 2, &snapshot)),
        ErrorCode::InvalidArgument
    );
    assert_eq!(snap_save(&mut client, "cart-1", 3, &snapshot), Reply::Ok);
    assert_eq!(
        agg(&mut client, "AGG cart-1 from_snapshot"),
        (3, json!({"balance": 100}))
    );
}

#[test]
fn retention_keeps_the_newest_snapshots() {
    let server = Server::start(&[]);
    let mut client = server.client();
    append_sums(&mut client, "s", &[1; 10]);
    for version in 0..6 {
        let payload = json!({"data": {}, "keep": 3});
        assert_eq!(snap_save(&mut client, "s", version, &payload), Reply::Ok);
    }
    assert_eq!(snap_list(&mut client, "SNAP LIST s"), [3, 4, 5]);
    // Saving an older version than the newest three keeps the newest three.
    assert_eq!(
        snap_save(&mut client, "s", 1, &json!({"data": {}, "keep": 3})),
        Reply::Ok
    );
    assert_eq!(snap_list(&mut client, "SNAP LIST s"), [3, 4, 5]);
    // Without keep nothing is pruned.
    assert_eq!(
        snap_save(&mut client, "s", 9, &json!({"data": {}})),
        Reply::Ok
    );
    assert_eq!(snap_list(&mut client, "SNAP LIST s"), [3, 4, 5, 9]);
}

#[test]
fn snapshot_lists_page_by_count_and_by_size() {
    let server = Server::start(&[]);
    let mut client = server.client();
    append_sums(&mut client, "big", &[1; 40]);
    // 20 snapshots of about 1 MB: more than one 16 MiB page.
    let filler = "x".repeat(1_000_000);
    for version in 0..20 {
        let payload = json!({"data": {"filler": filler}});
        assert_eq!(snap_save(&mut client, "big", version, &payload), Reply::Ok);
    }
    let first = snap_list(&mut client, "SNAP LIST big");
    // At most 16 of them fit in 16 MiB: the page stops before passing the limit.
    assert!(!first.is_empty() && first.len() <= 16, "{first:?}");
    assert_eq!(first, (0..first.len() as u64).collect::<Vec<_>>());
    let next = first.len();
    let rest = snap_list(&mut client, &format!("SNAP LIST big {next}"));
    assert_eq!(rest, (next as u64..20).collect::<Vec<_>>());
    assert_eq!(snap_list(&mut client, "SNAP LIST big 5 2"), [5, 6]);
    assert_eq!(
        snap_list(&mut client, "SNAP LIST big 20"),
        Vec::<u64>::new()
    );
}

#[test]
fn pipelined_append_save_and_agg_take_effect_in_order() {
    let server = Server::start(&[]);
    let mut client = server.client();
    let append = event("Deposited", json!({"balance": {"$sum": 5}}));
    let snapshot = json!({"data": {"balance": {"$sum": 50}}}).to_string();
    let mut batch = String::new();
    batch.push_str(&format!("APPEND p no_stream {append}\r\n"));
    batch.push_str(&format!("SNAP SAVE p 0 {snapshot}\r\n"));
    batch.push_str(&format!("APPEND p 0 {append}\r\n"));
    batch.push_str("AGG p from_snapshot\r\nAGG p\r\nSNAP DELETE p\r\nAGG p from_snapshot\r\n");
    client.send_raw(batch.as_bytes());
    assert_eq!(appended_version(client.reply()), 0);
    assert_eq!(client.reply(), Reply::Ok);
    assert_eq!(appended_version(client.reply()), 1);
    let state = |client: &mut Client| match client.reply() {
        Reply::Aggregate { version, body, .. } => {
            (version, serde_json::from_slice::<Value>(&body).unwrap())
        }
        other => panic!("expected AGG, got {other:?}"),
    };
    assert_eq!(state(&mut client), (1, json!({"balance": 55})));
    assert_eq!(state(&mut client), (1, json!({"balance": 10})));
    assert_eq!(client.reply(), Reply::Ok);
    assert_eq!(state(&mut client), (1, json!({"balance": 10})));
}

#[test]
fn agg_refuses_more_events_than_its_limit_and_points_at_snapshots() {
    let server = Server::start(&[]);
    let mut client = server.client();
    let batch: Vec<Value> = (0..MAX_EVENTS_PER_APPEND)
        .map(|_| json!({"event_type": "T", "data": {"n": {"$sum": 1}}}))
        .collect();
    let batch = Value::from(batch).to_string();
    let appends = MAX_AGGREGATE_EVENTS as usize / MAX_EVENTS_PER_APPEND + 1;
    for _ in 0..appends {
        client.append("long", "any", &batch);
    }
    let total = (appends * MAX_EVENTS_PER_APPEND) as u64;
    match client.request("AGG long") {
        Reply::Err(error) => {
            assert_eq!(error.code, ErrorCode::InvalidArgument);
            assert!(error.message.contains("SNAP SAVE"), "{}", error.message);
            assert!(
                error.message.contains(&total.to_string()),
                "{}",
                error.message
            );
        }
        other => panic!("expected -ERR, got {other:?}"),
    }
    // Exactly at the limit is fine: a snapshot leaves MAX_AGGREGATE_EVENTS events after it.
    let at = total - MAX_AGGREGATE_EVENTS - 1;
    let snapshot = json!({"data": {"n": {"$sum": at + 1}}});
    assert_eq!(snap_save(&mut client, "long", at, &snapshot), Reply::Ok);
    assert_eq!(
        agg(&mut client, "AGG long from_snapshot"),
        (total - 1, json!({"n": total}))
    );
}

// ---------------------------------------------------------------------------------------------
// Property: AGG (with or without a snapshot) equals the library fold over the whole stream.

fn plain() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-1000i64..1000).prop_map(Value::from),
        (-400i32..400).prop_map(|q| Value::from(f64::from(q) / 4.0)),
        "[a-z]{0,3}".prop_map(Value::from),
        Just(Value::Null),
        (-9i64..9).prop_map(|n| json!({"nested": n, "t": {"$sum": n}})),
    ]
}

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (-1000i64..1000).prop_map(|n| json!({"$sum": n})),
        1 => (-400i32..400).prop_map(|q| json!({"$sum": f64::from(q) / 4.0})),
        2 => plain(),
        1 => plain().prop_map(|v| json!({"$overwrite": v})),
        1 => Just(json!({"$sum": "not a number"})),
    ]
}

fn event_data() -> impl Strategy<Value = Value> {
    prop_oneof![
        9 => proptest::collection::btree_map("[a-d]", field_value(), 0..4)
            .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        1 => plain(),
    ]
}

/// Appends `data` as events, `chunk` at a time; returns the last version.
fn append_data(client: &mut Client, stream: &str, data: &[Value], chunk: usize) -> u64 {
    let mut last = None;
    for part in data.chunks(chunk) {
        let events: Vec<Value> = part
            .iter()
            .map(|data| json!({"event_type": "E", "data": data}))
            .collect();
        last = Some(appended_version(client.append(
            stream,
            "any",
            &Value::from(events).to_string(),
        )));
    }
    last.expect("at least one event")
}

#[test]
fn agg_from_a_snapshot_equals_the_fold_over_the_full_stream() {
    let server = Server::start(&[]);
    // The runner takes an `Fn`: one connection and a case counter shared across cases.
    let client = std::cell::RefCell::new(server.client());
    let case = std::cell::Cell::new(0u32);
    let strategy = (
        proptest::collection::vec(event_data(), 1..30),
        any::<prop::sample::Index>(),
        1usize..8,
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(data, split, chunk, raw_snapshot)| {
        case.set(case.get() + 1);
        let stream = format!("prop-{}", case.get());
        let mut client = client.borrow_mut();
        // The events up to the snapshot, then the snapshot of the server's own state.
        let split = split.index(data.len());
        let (prefix, suffix) = data.split_at(split + 1);
        let at = append_data(&mut client, &stream, prefix, chunk);
        let agg_line = if raw_snapshot {
            format!("AGG {stream} raw")
        } else {
            format!("AGG {stream}")
        };
        let (version, state) = agg(&mut client, &agg_line);
        prop_assert_eq!(version, at);
        let payload = json!({"data": state});
        prop_assert_eq!(
            snap_save(&mut client, &stream, version, &payload),
            Reply::Ok
        );
        let last = if suffix.is_empty() {
            at
        } else {
            append_data(&mut client, &stream, suffix, chunk)
        };

        let expected = Value::Object(finalize(foldl(State::new(), &data)));
        let (version, whole) = agg(&mut client, &format!("AGG {stream}"));
        prop_assert_eq!(version, last);
        prop_assert_eq!(&whole, &expected);
        let (version, from_snapshot) = agg(&mut client, &format!("AGG {stream} from_snapshot"));
        prop_assert_eq!(version, last);
        prop_assert_eq!(&from_snapshot, &expected);
        let (_, raw) = agg(&mut client, &format!("AGG {stream} raw"));
        prop_assert_eq!(raw, Value::Object(foldl(State::new(), &data)));
        let (_, right) = agg(&mut client, &format!("AGG {stream} foldr"));
        prop_assert_eq!(right, Value::Object(finalize(foldr(State::new(), &data))));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
