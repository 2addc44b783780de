//! Stream lifecycle end to end, against the real server binary over real sockets with its data
//! in a temporary directory: stream limits (`META`), hard deletes (tombstones) across a
//! restart, and `from_time` reads with a clock that steps back between two runs.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{event, spawn_with_http, Client, Server};
use esdb_protocol::{ErrorCode, Reply};

fn ok(reply: Reply) {
    assert_eq!(reply, Reply::Ok);
}

fn error_code(reply: Reply) -> ErrorCode {
    match reply {
        Reply::Err(error) => error.code,
        other => panic!("expected -ERR, got {other:?}"),
    }
}

fn events(reply: Reply) -> Vec<Value> {
    match reply {
        Reply::Events { count, body } => {
            let events: Vec<Value> = serde_json::from_slice(&body).expect("json");
            assert_eq!(events.len() as u64, count);
            events
        }
        other => panic!("expected EVENTS, got {other:?}"),
    }
}

fn numbers(events: &[Value], field: &str) -> Vec<u64> {
    events.iter().map(|e| e[field].as_u64().unwrap()).collect()
}

fn meta(client: &mut Client, stream: &str) -> Value {
    match client.request(&format!("META {stream}")) {
        Reply::Meta { stream: name, body } => {
            assert_eq!(name, stream);
            serde_json::from_slice(&body).expect("META json")
        }
        other => panic!("expected META, got {other:?}"),
    }
}

fn append_n(client: &mut Client, stream: &str, count: usize) {
    for n in 0..count {
        let reply = client.append(stream, "any", &event("Counted", json!(n)));
        assert!(matches!(reply, Reply::Appended { .. }), "{reply:?}");
    }
}

/// Reads pushed frames until `LIVE <sid>`, returning the versions of the `EVENT`s before it.
fn versions_until_live(client: &mut Client, sid: &str) -> Vec<u64> {
    let mut versions = Vec::new();
    loop {
        match client.reply() {
            Reply::Event {
                sid: got, version, ..
            } if got == sid => versions.push(version),
            Reply::Live { sid: got } if got == sid => return versions,
            other => panic!("expected EVENT or LIVE, got {other:?}"),
        }
    }
}

#[test]
fn limits_hide_events_from_reads_aggregates_and_subscriptions_at_once() {
    let server = Server::start(&[]);
    let mut client = server.client();
    // Limits may be set before the stream exists.
    ok(client.request(r#"META cart-1 {"max_count":3}"#));
    assert_eq!(meta(&mut client, "cart-1"), json!({"max_count": 3}));
    assert_eq!(meta(&mut client, "never"), json!({}));
    append_n(&mut client, "cart-1", 5); // versions 0..=4, positions 0..=4
    append_n(&mut client, "other", 1); // position 5
    let read = |client: &mut Client, line: &str| numbers(&events(client.request(line)), "version");
    assert_eq!(read(&mut client, "READ cart-1 0 100"), [2, 3, 4]);
    assert_eq!(read(&mut client, "READ cart-1 end 100 backward"), [4, 3, 2]);
    assert_eq!(
        numbers(&events(client.request("READALL 0 100")), "position"),
        [2, 3, 4, 5]
    );
    assert_eq!(
        numbers(
            &events(client.request("READTYPES Counted 0 100")),
            "position"
        ),
        [2, 3, 4, 5]
    );
    assert_eq!(
        client.request("VERSION cart-1"),
        Reply::Version {
            stream: "cart-1".into(),
            version: 4
        }
    );
    match client.request("AGG cart-1") {
        Reply::Aggregate { version, .. } => assert_eq!(version, 4),
        other => panic!("expected AGG, got {other:?}"),
    }
    // A catch-up subscription delivers what reads show.
    ok(client.request("SUB s1 stream cart-1"));
    assert_eq!(versions_until_live(&mut client, "s1"), [2, 3, 4]);
    ok(client.request("UNSUB s1"));

    // A change applies at once, to reads and to live delivery.
    let sized = r#"{"truncate_before":7,"max_count":null}"#;
    client.send_raw(format!("META cart-1 {}\r\n{sized}\r\n", sized.len()).as_bytes());
    ok(client.reply());
    assert_eq!(meta(&mut client, "cart-1"), json!({"truncate_before": 7}));
    assert_eq!(read(&mut client, "READ cart-1 0 100"), Vec::<u64>::new());
    ok(client.request("SUB s2 stream cart-1"));
    assert_eq!(versions_until_live(&mut client, "s2"), Vec::<u64>::new());
    append_n(&mut client, "cart-1", 2); // versions 5, 6: hidden, not pushed
                                        // Version 7 is shown: its EVENT and the APPENDED reply come in either order.
    let payload = event("Counted", json!(7));
    client.send_raw(format!("APPEND cart-1 6 {}\r\n{payload}\r\n", payload.len()).as_bytes());
    let mut frames = [client.reply(), client.reply()];
    frames.sort_by_key(|frame| matches!(frame, Reply::Event { .. }));
    assert!(
        matches!(
            frames[0],
            Reply::Appended {
                last_version: 7,
                ..
            }
        ),
        "{frames:?}"
    );
    match &frames[1] {
        Reply::Event { sid, version, .. } => assert_eq!((sid.as_str(), *version), ("s2", 7)),
        other => panic!("expected the live EVENT of version 7, got {other:?}"),
    }
    ok(client.request("UNSUB s2"));
    assert_eq!(read(&mut client, "READ cart-1 0 100"), [7]);
    // Expected versions still see the real current version.
    let reply = client.append("cart-1", "7", &event("Counted", json!(8)));
    assert!(
        matches!(
            reply,
            Reply::Appended {
                last_version: 8,
                ..
            }
        ),
        "{reply:?}"
    );
    // Removing the limits shows every event again: nothing was removed.
    ok(client.request("META cart-1 {}"));
    assert_eq!(
        read(&mut client, "READ cart-1 0 100"),
        (0..=8).collect::<Vec<_>>()
    );

    // Bad input is refused with an error, and the connection goes on.
    for (line, code) in [
        (r#"META cart-1 {"max_count":0}"#, ErrorCode::InvalidArgument),
        (r#"META cart-1 {"max_cont":1}"#, ErrorCode::InvalidJson),
        (r#"META cart-1 [1]"#, ErrorCode::InvalidJson),
        (r#"META $all {}"#, ErrorCode::InvalidArgument),
    ] {
        assert_eq!(error_code(client.request(line)), code, "{line}");
    }
    assert_eq!(client.request("PING"), Reply::Pong);
}

#[test]
fn max_age_hides_old_events() {
    let server = Server::start(&[]);
    let mut client = server.client();
    // The age is measured from each event's commit time to the time of the read.
    let started = Instant::now();
    append_n(&mut client, "old", 2);
    ok(client.request(r#"META old {"max_age_ms":400}"#));
    let first = events(client.request("READ old 0 10"));
    let elapsed = started.elapsed();
    if elapsed < Duration::from_millis(300) {
        assert_eq!(numbers(&first, "version"), [0, 1]);
    }
    // Bounded: the events are hidden once they are older than the limit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if events(client.request("READ old 0 10")).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "events still shown after 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    append_n(&mut client, "old", 1);
    assert_eq!(
        numbers(&events(client.request("READ old 0 10")), "version"),
        [2]
    );
}

#[test]
fn a_hard_delete_is_forever_and_survives_a_restart() {
    let mut server = Server::start(&[]);
    let mut client = server.client();
    append_n(&mut client, "gone", 2);
    append_n(&mut client, "soft", 1);
    assert_eq!(
        error_code(client.request("DELETE gone 0 hard")),
        ErrorCode::WrongExpectedVersion
    );
    ok(client.request("DELETE gone 1 hard"));
    ok(client.request("DELETE soft"));
    let refused = |client: &mut Client| {
        for expected in ["any", "no_stream", "1"] {
            let reply = client.append("gone", expected, &event("Again", json!(1)));
            match reply {
                Reply::Err(error) => {
                    assert_eq!(error.code, ErrorCode::StreamDeleted);
                    assert!(error.message.contains("hard-deleted"), "{}", error.message);
                }
                other => panic!("append to a tombstone answered {other:?}"),
            }
        }
        assert_eq!(
            error_code(client.request("READ gone 0 10")),
            ErrorCode::StreamDeleted
        );
        assert_eq!(
            error_code(client.request(r#"META gone {"max_count":1}"#)),
            ErrorCode::StreamDeleted
        );
        assert_eq!(
            client.request("VERSION gone"),
            Reply::Version {
                stream: "gone".into(),
                version: -1
            }
        );
        // A retried hard delete succeeds; the events stay in $all.
        ok(client.request("DELETE gone hard"));
        assert_eq!(
            numbers(&events(client.request("READALL 0 10")), "position")[..3],
            [0, 1, 2]
        );
    };
    refused(&mut client);
    // A soft-deleted stream is recreated by an append, as before.
    let reply = client.append("soft", "no_stream", &event("Again", json!(1)));
    assert!(matches!(reply, Reply::Appended { .. }), "{reply:?}");

    drop(client);
    assert!(server.terminate().success());
    server.restart();
    let mut client = server.client();
    refused(&mut client);
}

#[test]
fn meta_needs_write_to_set_and_read_to_get() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/protocol/transcripts/19-auth.toml"
    );
    let server = Server::start(&["--config", config]);
    let mut client = server.client();
    ok(client.request(r#"CONNECT {"token":"transcript-token-0123456789abcdef"}"#));
    // The token may read everything and write only orders-*.
    ok(client.request(r#"META orders-1 {"max_count":1}"#));
    assert_eq!(
        error_code(client.request(r#"META users-1 {"max_count":1}"#)),
        ErrorCode::PermissionDenied
    );
    assert_eq!(meta(&mut client, "users-1"), json!({}));
    assert_eq!(meta(&mut client, "orders-1"), json!({"max_count": 1}));
    assert_eq!(
        error_code(client.request("DELETE orders-1 hard")),
        ErrorCode::PermissionDenied,
        "a delete needs admin"
    );
}

/// The server's clock steps back an hour between two runs: commit times stay monotonic, and
/// `from_time` finds events by them.
#[test]
fn commit_times_stay_monotonic_when_the_clock_steps_back() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let hour_ahead = ("ESDB_TEST_CLOCK_OFFSET_MS", "3600000");
    let (mut child, addr, _) = spawn_with_http(&data_dir, &[], &[hour_ahead]);
    let mut client = Client::connect(addr);
    append_n(&mut client, "t", 2);
    drop(client);
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, addr, _) = spawn_with_http(&data_dir, &[], &[]);
    let mut client = Client::connect(addr);
    append_n(&mut client, "t", 2);
    let all = events(client.request("READALL 0 10"));
    let times = numbers(&all, "epoch_us");
    assert_eq!(times.len(), 4);
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "commit times went backwards: {times:?}"
    );
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(
        times[0] > now_us + 3_000_000_000,
        "the first run was an hour ahead"
    );
    assert_eq!(
        times[2], times[1],
        "after the step back, the last time repeats"
    );

    let positions =
        |client: &mut Client, line: &str| numbers(&events(client.request(line)), "position");
    let second = times[1];
    assert_eq!(
        positions(&mut client, &format!("READALL from_time {second} 10")),
        [1, 2, 3]
    );
    assert_eq!(
        positions(&mut client, &format!("READ t from_time {} 10", second + 1)),
        Vec::<u64>::new()
    );
    assert_eq!(
        positions(
            &mut client,
            &format!("READ t from_time {second} 10 backward")
        ),
        [3, 2, 1, 0]
    );
    assert_eq!(
        positions(&mut client, "READALL from_time 2000-01-01T00:00:00Z 10"),
        [0, 1, 2, 3]
    );
    assert_eq!(
        positions(
            &mut client,
            "READ t from_time 2000-01-01T00:00:00+02:00 10 backward"
        ),
        Vec::<u64>::new()
    );
    assert_eq!(
        error_code(client.request("READ t from_time yesterday 10")),
        ErrorCode::InvalidArgument
    );
    // Subscriptions start by time too: catch-up and persistent.
    for (sid, name) in [("c1", None), ("p1", Some("by-time"))] {
        let mut options = json!({"type": "stream", "selector": "$all",
                                 "start": {"from_time": second.to_string()}});
        if let Some(name) = name {
            options["name"] = json!(name);
        }
        let options = options.to_string();
        client.send_raw(format!("SUB {sid} {}\r\n{options}\r\n", options.len()).as_bytes());
        ok(client.reply());
        let mut delivered = Vec::new();
        while delivered.len() < 3 {
            match client.reply() {
                Reply::Event {
                    sid: got, position, ..
                } if got == sid => delivered.push(position),
                Reply::Live { .. } => {}
                other => panic!("expected EVENT, got {other:?}"),
            }
        }
        assert_eq!(delivered, [1, 2, 3], "{sid}");
        if name.is_none() {
            // A catch-up subscription says LIVE once history is delivered.
            assert_eq!(client.reply(), Reply::Live { sid: sid.into() });
        }
        ok(client.request(&format!("UNSUB {sid}")));
    }
    let bad = r#"{"type":"stream","selector":"$all","start":{"from_time":"soon"}}"#;
    client.send_raw(format!("SUB c2 {}\r\n{bad}\r\n", bad.len()).as_bytes());
    assert_eq!(error_code(client.reply()), ErrorCode::InvalidJson);
    drop(client);
    child.kill().unwrap();
    child.wait().unwrap();
}
