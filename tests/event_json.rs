//! The JSON rules of events and snapshots, end to end: what `APPEND` and `SNAP SAVE` refuse
//! (nothing written), and how every reader reports a stored record that breaks the rules
//! (seeded around the door, as an older version or a lying disk would leave it) instead of
//! skipping it.

mod common;

use std::time::{Duration, Instant};

use esdb_protocol::{ErrorCode, Reply};
use serde_json::json;

use common::{http_get, Client, Server};

fn nested_array(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn data_event(data: &str) -> String {
    format!(r#"{{"event_type":"T","data":{data}}}"#)
}

fn head_position(client: &mut Client) -> i64 {
    match client.request("STATS") {
        Reply::Stats { body } => {
            let stats: serde_json::Value = serde_json::from_slice(&body).expect("stats");
            stats["stores"]["default"]["last_position"]
                .as_i64()
                .unwrap_or_else(|| panic!("last_position in {stats}"))
        }
        other => panic!("expected STATS, got {other:?}"),
    }
}

fn expect_invalid_json(reply: Reply, fragment: &str, case: &str) {
    match reply {
        Reply::Err(error) => {
            assert_eq!(error.code, ErrorCode::InvalidJson, "{case}: {error:?}");
            assert!(
                error.message.contains(fragment),
                "{case}: message {:?} should contain {fragment:?}",
                error.message
            );
        }
        other => panic!("{case}: expected -ERR invalid_json, got {other:?}"),
    }
}

#[test]
fn appends_beyond_the_rules_are_refused_and_write_nothing() {
    let server = Server::start(&[]);
    let mut client = server.client();
    let refused: Vec<(String, &str)> = vec![
        (
            format!(r#"{{"x":1,"d":{}}}"#, nested_array(200)),
            "nest deeper than 128",
        ),
        (nested_array(129), "nest deeper than 128"),
        (
            format!("{}1{}", r#"{"a":"#.repeat(129), "}".repeat(129)),
            "nest deeper than 128",
        ),
        (nested_array(100_000), "nest deeper than 128"),
        (r#"{"x":1,"s":"\ud800"}"#.into(), "surrogate"),
        (r#"{"x":1,"s":"\udc00"}"#.into(), "at line 1"),
        (r#"{"x":1,"s":"\ud800\u0041"}"#.into(), "at line 1"),
        (r#"{"x":1,"s":"\u12G4"}"#.into(), "escape"),
        (r#"{"x":1,"n":1e400}"#.into(), "number out of range"),
        (r#"{"x":1,"n":-1e400}"#.into(), "number out of range"),
        (
            r#"{"x":1,"n":1.7976931348623159e308}"#.into(),
            "number out of range",
        ),
    ];
    for (data, fragment) in &refused {
        let reply = client.append("s", "any", &data_event(data));
        expect_invalid_json(reply, fragment, &data[..data.len().min(60)]);
        expect_invalid_json(
            client.append("s", "any", &format!("[{}]", data_event(data))),
            fragment,
            "array form",
        );
    }
    // Metadata obeys the same rules, and the error names it.
    let deep_metadata = format!(
        r#"{{"event_type":"T","data":1,"metadata":{{"m":{}}}}}"#,
        nested_array(128)
    );
    expect_invalid_json(
        client.append("s", "any", &deep_metadata),
        "event 0: metadata",
        "metadata",
    );
    // The second event of a batch is the one named; the first is not written either.
    let batch = format!("[{},{}]", data_event("1"), data_event(r#""\ud800""#));
    expect_invalid_json(client.append("s", "any", &batch), "event 1: data", "batch");
    assert_eq!(head_position(&mut client), -1, "nothing was written");
    assert_eq!(
        client.request("VERSION s"),
        Reply::Version {
            stream: "s".into(),
            version: -1
        }
    );
    // The connection is still usable.
    assert_eq!(client.request("PING"), Reply::Pong);
}

#[test]
fn appends_at_the_edges_of_the_rules_are_accepted_and_readable() {
    let server = Server::start(&[]);
    let mut client = server.client();
    let accepted = [
        format!(r#"{{"x":1,"d":{}}}"#, nested_array(126)),
        nested_array(127),
        nested_array(128),
        "1.7976931348623157e308".into(),
        "-1.7976931348623157e308".into(),
        "5e-324".into(),
        "1e-400".into(),
        "18446744073709551616".into(),
        r#""\ud83d\ude00 \u00e9 \n\t\r\b\f\/\\\"""#.into(),
        r#"{"\u0041":"😀"}"#.into(),
    ];
    for (index, data) in accepted.iter().enumerate() {
        match client.append("edges", "any", &data_event(data)) {
            Reply::Appended { last_version, .. } => assert_eq!(last_version, index as u64),
            other => panic!("{data:.60}: expected APPENDED, got {other:?}"),
        }
    }
    // Every reader can read them: AGG folds them all (the state is the last data).
    match client.request("AGG edges") {
        Reply::Aggregate { version, body, .. } => {
            assert_eq!(version, accepted.len() as u64 - 1);
            let state: serde_json::Value = serde_json::from_slice(&body).expect("state");
            // Objects merge key by key: the last object's key, and one from earlier events.
            assert_eq!(state["A"], json!("😀"));
            assert_eq!(state["x"], json!(1));
        }
        other => panic!("expected AGG, got {other:?}"),
    }
    // A payload subscription reads every one of them (no UNREADABLE).
    client.send_line(r#"SUB p event_payload {"stream_id":"edges"}"#);
    assert_eq!(client.reply(), Reply::Ok);
    for index in 0..accepted.len() {
        match client.reply() {
            Reply::Event { version, .. } => assert_eq!(version, index as u64),
            other => panic!("event {index}: expected EVENT, got {other:?}"),
        }
    }
    assert_eq!(client.reply(), Reply::Live { sid: "p".into() });
}

#[test]
fn snapshots_beyond_the_rules_are_refused() {
    let server = Server::start(&[]);
    let mut client = server.client();
    assert!(matches!(
        client.append("s", "any", &data_event("1")),
        Reply::Appended { .. }
    ));
    for (data, fragment) in [
        (nested_array(100_000), "nest deeper than 128"),
        (nested_array(129), "nest deeper than 128"),
        (r#""\ud800""#.to_string(), "surrogate"),
        ("1e400".to_string(), "number out of range"),
    ] {
        let payload = format!(r#"{{"data":{data}}}"#);
        let mut frame = format!("SNAP SAVE s 0 {}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload.as_bytes());
        frame.extend_from_slice(b"\r\n");
        client.send_raw(&frame);
        expect_invalid_json(client.reply(), fragment, "snapshot");
    }
    match client.request("SNAP LOAD s") {
        Reply::Err(error) => assert_eq!(error.code, ErrorCode::SnapshotNotFound),
        other => panic!("nothing was saved, got {other:?}"),
    }
}

/// Waits (bounded) until `PSUB PARKED name` lists `count` events; returns the body (as text:
/// the records are the unreadable ones, which no strict JSON parser takes).
fn parked(client: &mut Client, name: &str, count: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.request(&format!("PSUB PARKED {name}")) {
            Reply::Events { count: n, body } if n == count => {
                return String::from_utf8(body.to_vec()).expect("UTF-8");
            }
            Reply::Events { .. } if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("expected {count} parked events, got {other:?}"),
        }
    }
}

#[test]
fn unreadable_records_are_reported_never_skipped() {
    let temp = tempfile::tempdir().expect("tempdir");
    let data_dir = temp.path().join("data");
    let deep = format!(r#"{{"x":1,"d":{}}}"#, nested_array(200));
    esdb::testing::append_unchecked(
        &data_dir,
        "default",
        "acct",
        &[
            ("T", r#"{"x":1,"balance":{"$sum":5}}"#),
            ("T", &deep),
            ("T", r#"{"x":1,"n":1e400}"#),
            ("T", r#"{"x":1,"s":"\ud800"}"#),
            ("T", r#"{"x":1,"balance":{"$sum":2}}"#),
        ],
    )
    .expect("seeding the store");
    let server = Server::start_in(&data_dir, &[]);
    let mut client = server.client();

    // AGG names the position of the first record it cannot fold.
    match client.request("AGG acct") {
        Reply::Err(error) => {
            assert_eq!(error.code, ErrorCode::UnreadableEvent, "{error:?}");
            assert!(error.message.contains("position 1"), "{}", error.message);
            assert!(!error.message.contains("corrupt"), "{}", error.message);
        }
        other => panic!("expected -ERR unreadable_event, got {other:?}"),
    }

    // A catch-up payload subscription: every matching event, and an UNREADABLE for each record
    // it cannot read, in position order; then live, and it goes on.
    client.send_line(r#"SUB c event_payload {"data":{"x":1}}"#);
    assert_eq!(client.reply(), Reply::Ok);
    let mut seen = Vec::new();
    loop {
        match client.reply() {
            Reply::Event { position, .. } => seen.push(format!("event {position}")),
            Reply::Unreadable {
                sid,
                position,
                reason,
                stream,
                version,
            } => {
                assert_eq!((sid.as_str(), stream.as_str()), ("c", "acct"));
                assert_eq!(version, position, "one stream from position 0");
                assert!(reason.contains(&format!("position {position}")), "{reason}");
                seen.push(format!("unreadable {position}"));
            }
            Reply::Live { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            "event 0",
            "unreadable 1",
            "unreadable 2",
            "unreadable 3",
            "event 4"
        ]
    );
    let mut writer = server.client();
    assert!(matches!(
        writer.append("acct", "any", &data_event(r#"{"x":1}"#)),
        Reply::Appended { .. }
    ));
    assert!(matches!(client.reply(), Reply::Event { position: 5, .. }));

    // A persistent one parks each with the reason, delivers the rest, and moves on.
    let mut consumer = server.client();
    let form = r#"{"type":"event_payload","selector":{"data":{"x":1}},"name":"worker"}"#;
    consumer.send_line(&format!("SUB w {}", form.len()));
    consumer.send_line(form);
    assert_eq!(consumer.reply(), Reply::Ok);
    let mut delivered = Vec::new();
    while delivered.len() < 3 {
        match consumer.reply() {
            Reply::Event { position, .. } => delivered.push(position),
            other => panic!("persistent: unexpected {other:?}"),
        }
    }
    assert_eq!(delivered, [0, 4, 5]);
    consumer.send_line("ACK w 0,4,5");
    assert_eq!(consumer.reply(), Reply::Ok);
    let parked = parked(&mut writer, "worker", 3);
    let records: Vec<&str> = parked
        .split(r#"{"parked_reason":"unreadable: record at position "#)
        .skip(1)
        .collect();
    assert_eq!(records.len(), 3, "{parked:.300}");
    for (record, position) in records.iter().zip(1..) {
        assert!(
            record.starts_with(&format!("{position}: ")),
            "{record:.200}"
        );
        assert!(
            record.contains(&format!(r#""position":{position},"#)),
            "{record:.200}"
        );
    }

    // Every report was counted.
    let (status, metrics) = http_get(server.http_addr, "/metrics");
    assert_eq!(status, 200);
    let count: f64 = metrics
        .lines()
        .find(|l| l.starts_with("esdb_unreadable_events_total{store=\"default\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("esdb_unreadable_events_total");
    assert!(count >= 7.0, "1 AGG + 3 catch-up + 3 parked, got {count}");
}
