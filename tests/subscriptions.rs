//! Subscriptions, black-box: the real server over real sockets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use esdb_protocol::{ErrorCode, Reply};
use serde_json::{json, Value};

use common::{event, Client, Server};

/// One pushed event as a test sees it.
#[derive(Debug, Clone)]
struct Pushed {
    sid: String,
    stream: String,
    version: u64,
    position: u64,
    record: Value,
}

/// Reads pushes and replies; events go to `events`, `LIVE` markers to `live`, anything else
/// is returned.
struct Subscriber {
    client: Client,
    events: Vec<Pushed>,
    live: BTreeSet<String>,
}

impl Subscriber {
    fn new(client: Client) -> Subscriber {
        Subscriber {
            client,
            events: Vec::new(),
            live: BTreeSet::new(),
        }
    }

    /// Records a push (`EVENT`, `LIVE`); returns any other reply.
    fn record(&mut self, reply: Reply) -> Option<Reply> {
        match reply {
            Reply::Event {
                sid,
                stream,
                version,
                position,
                body,
            } => {
                let record = serde_json::from_slice(&body).expect("record json");
                self.events.push(Pushed {
                    sid,
                    stream,
                    version,
                    position,
                    record,
                });
                None
            }
            Reply::Live { sid } => {
                assert!(self.live.insert(sid.clone()), "LIVE twice for {sid}");
                None
            }
            other => Some(other),
        }
    }

    /// The next reply that is not a push.
    fn reply(&mut self) -> Reply {
        loop {
            let reply = self.client.reply();
            if let Some(other) = self.record(reply) {
                return other;
            }
        }
    }

    fn request(&mut self, line: &str) -> Reply {
        self.client.send_line(line);
        self.reply()
    }

    fn subscribe(&mut self, line: &str) {
        assert_eq!(self.request(line), Reply::Ok, "{line}");
    }

    /// Reads pushes until `done` holds (bounded by the client's reply timeout per read).
    fn until(&mut self, mut done: impl FnMut(&Subscriber) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out; have {} events",
                self.events.len()
            );
            let reply = self.client.reply();
            if let Some(other) = self.record(reply) {
                panic!("unexpected {other:?}");
            }
        }
    }

    fn positions(&self, sid: &str) -> Vec<u64> {
        self.events
            .iter()
            .filter(|e| e.sid == sid)
            .map(|e| e.position)
            .collect()
    }
}

fn append_ok(client: &mut Client, stream: &str, payload: &str) -> u64 {
    match client.append(stream, "any", payload) {
        Reply::Appended { last_position, .. } => last_position,
        other => panic!("append failed: {other:?}"),
    }
}

fn expect_error(reply: Reply, code: ErrorCode) {
    match reply {
        Reply::Err(e) if e.code == code => {}
        other => panic!("expected -ERR {code}, got {other:?}"),
    }
}

/// A little store: 8 events over streams, types and payloads the selectors tell apart.
fn seed(client: &mut Client) {
    let events = [
        ("user-1", "UserCreated", json!({"country": "NL", "age": 30})),
        ("user-2", "UserCreated", json!({"country": "DE", "age": 41})),
        (
            "order-eu-1",
            "OrderPlaced",
            json!({"country": "NL", "total": 10}),
        ),
        (
            "order-us-1",
            "OrderPlaced",
            json!({"country": "US", "total": 20}),
        ),
        (
            "user-1",
            "UserRenamed",
            json!({"name": "Ada", "tags": ["a", "b"]}),
        ),
        (
            "order-eu-2",
            "OrderShipped",
            json!({"country": "NL", "nested": {"x": 1}}),
        ),
        ("users", "UserCreated", json!({"country": "NL"})),
        ("user-2", "UserDeleted", json!(null)),
    ];
    for (stream, event_type, data) in events {
        append_ok(client, stream, &event(event_type, data));
    }
}

#[test]
fn each_selector_type_matches_what_it_says() {
    let server = Server::start(&[]);
    seed(&mut server.client());
    let mut subscriber = Subscriber::new(server.client());
    let cases: [(&str, &str, Vec<u64>); 9] = [
        ("all", "stream $all", (0..8).collect()),
        ("one", "stream user-1", vec![0, 4]),
        ("none", "stream nobody", vec![]),
        (
            "types",
            "event_type UserCreated,OrderShipped",
            vec![0, 1, 5, 6],
        ),
        ("pattern", "event_pattern user-*", vec![0, 1, 4, 7]),
        ("infix", "event_pattern *-eu-*", vec![2, 5]),
        (
            "payload",
            r#"event_payload {"data":{"country":"NL"}}"#,
            vec![0, 2, 5, 6],
        ),
        (
            "nested",
            r#"event_payload {"data":{"nested":{"x":1.0}},"event_type":"OrderShipped"}"#,
            vec![5],
        ),
        (
            "array",
            r#"event_payload {"data":{"tags":["a","b"]}}"#,
            vec![4],
        ),
    ];
    for (sid, selector, _) in &cases {
        subscriber.subscribe(&format!("SUB {sid} {selector}"));
    }
    subscriber.until(|s| s.live.len() == cases.len());
    for (sid, selector, expected) in &cases {
        assert_eq!(&subscriber.positions(sid), expected, "{selector}");
    }
    // Live events are matched the same way.
    let mut writer = server.client();
    append_ok(
        &mut writer,
        "user-9",
        &event("UserCreated", json!({"country": "NL"})),
    );
    subscriber.until(|s| {
        ["all", "types", "pattern", "payload"]
            .iter()
            .all(|sid| s.positions(sid).last() == Some(&8))
    });
    assert_eq!(
        subscriber.positions("one"),
        vec![0, 4],
        "user-9 is not user-1"
    );
    assert_eq!(subscriber.positions("infix"), vec![2, 5]);
    for pushed in &subscriber.events {
        assert_eq!(pushed.record["position"], pushed.position);
        assert_eq!(pushed.record["version"], pushed.version);
        assert_eq!(pushed.record["stream_id"], pushed.stream.as_str());
    }
}

#[test]
fn bad_subscriptions_are_refused_and_the_connection_goes_on() {
    let server = Server::start(&[]);
    let mut client = Subscriber::new(server.client());
    expect_error(
        client.request("SUB a bogus x"),
        ErrorCode::UnknownSelectorType,
    );
    expect_error(
        client.request("SUB a stream $nope"),
        ErrorCode::InvalidSelector,
    );
    expect_error(
        client.request("SUB a event_type a,,b"),
        ErrorCode::InvalidSelector,
    );
    expect_error(
        client.request("SUB a event_payload {not-json"),
        ErrorCode::InvalidSelector,
    );
    expect_error(
        client.request("SUB a event_payload [1,2]"),
        ErrorCode::InvalidSelector,
    );
    let spaced = r#"{"type":"event_pattern","selector":"has space"}"#;
    client
        .client
        .send_raw(format!("SUB a {}\r\n{spaced}\r\n", spaced.len()).as_bytes());
    expect_error(client.reply(), ErrorCode::InvalidSelector);
    expect_error(
        client.request("SUB bad/sid stream x"),
        ErrorCode::InvalidArgument,
    );
    expect_error(
        client.request("UNSUB nope"),
        ErrorCode::SubscriptionNotFound,
    );
    expect_error(
        client.request("ACK nope 1"),
        ErrorCode::SubscriptionNotFound,
    );
    client.subscribe("SUB a stream x");
    expect_error(
        client.request("SUB a stream y"),
        ErrorCode::SubscriptionConflict,
    );
    expect_error(client.request("ACK a 1"), ErrorCode::InvalidArgument);
    client.subscribe("SUB p stream x proj");
    expect_error(
        client.request("SUB q stream y proj"),
        ErrorCode::SubscriptionConflict,
    );
    expect_error(
        client.request("PSUB GET missing"),
        ErrorCode::SubscriptionNotFound,
    );
    expect_error(
        client.request("PSUB DELETE proj event_type"),
        ErrorCode::SubscriptionNotFound,
    );
    assert_eq!(client.request("PING"), Reply::Pong);
}

#[test]
fn catch_up_from_a_position_and_from_the_end() {
    let server = Server::start(&[]);
    seed(&mut server.client());
    let mut subscriber = Subscriber::new(server.client());
    let options = json!({"type": "stream", "selector": "$all", "start": 5}).to_string();
    subscriber
        .client
        .send_raw(format!("SUB from5 {}\r\n{options}\r\n", options.len()).as_bytes());
    assert_eq!(subscriber.reply(), Reply::Ok);
    let options = json!({"type": "stream", "selector": "$all", "start": "end"}).to_string();
    subscriber
        .client
        .send_raw(format!("SUB end {}\r\n{options}\r\n", options.len()).as_bytes());
    assert_eq!(subscriber.reply(), Reply::Ok);
    subscriber.until(|s| s.live.len() == 2);
    assert_eq!(subscriber.positions("from5"), vec![5, 6, 7]);
    assert!(subscriber.positions("end").is_empty());
    append_ok(&mut server.client(), "late", &event("Late", json!(1)));
    subscriber.until(|s| s.positions("end") == vec![8] && s.positions("from5").len() == 4);
}

/// A writer appends while a subscriber catches up from the origin: the subscriber sees every
/// position exactly once, in order, across the switch from history to live.
#[test]
fn catch_up_switches_to_live_without_gap_or_duplicate() {
    const TOTAL: u64 = 3000;
    let server = Server::start(&[]);
    let addr = server.addr;
    let writer = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        for n in 0..TOTAL / 10 {
            let batch: Vec<Value> = (0..10)
                .map(|i| json!({"event_type": "Tick", "data": n * 10 + i}))
                .collect();
            let payload = Value::Array(batch).to_string();
            append_ok(&mut client, &format!("s-{}", n % 7), &payload);
        }
    });
    // Subscribe while the writer is running.
    std::thread::sleep(Duration::from_millis(20));
    let mut subscriber = Subscriber::new(server.client());
    subscriber.subscribe("SUB all stream $all");
    subscriber.subscribe("SUB three stream s-3");
    subscriber.until(|s| s.positions("all").len() as u64 == TOTAL);
    writer.join().expect("writer");
    let all = subscriber.positions("all");
    assert_eq!(
        all,
        (0..TOTAL).collect::<Vec<_>>(),
        "contiguous, no gap, no duplicate"
    );
    assert!(subscriber.live.contains("all"));
    // s-3 got every 7th append (n % 7 == 3 for n in 0..300: 43 appends of 10 events).
    let expected_in_three = (0..TOTAL / 10).filter(|n| n % 7 == 3).count() as u64 * 10;
    subscriber.until(|s| s.positions("three").len() as u64 == expected_in_three);
    let versions: Vec<u64> = subscriber
        .events
        .iter()
        .filter(|e| e.sid == "three")
        .map(|e| e.version)
        .collect();
    assert_eq!(
        versions,
        (0..expected_in_three).collect::<Vec<_>>(),
        "stream gapless, in order"
    );
}

fn persistent_payloads(count: u64) -> Vec<String> {
    (0..count).map(|n| event("Job", json!({"n": n}))).collect()
}

/// A persistent subscriber acknowledges part of a stream and is killed; a new connection with
/// the same name resumes after what was acknowledged. Every event arrives at least once.
#[test]
fn persistent_subscription_resumes_after_the_client_dies() {
    let server = Server::start(&[]);
    let mut writer = server.client();
    for payload in persistent_payloads(50) {
        append_ok(&mut writer, "jobs", &payload);
    }
    let mut first = Subscriber::new(server.client());
    first.subscribe("SUB w stream jobs workers");
    first.until(|s| s.events.len() >= 50);
    assert_eq!(first.positions("w"), (0..50).collect::<Vec<_>>());
    assert_eq!(first.request("ACK w ..19"), Reply::Ok);
    drop(first); // the client dies with 20..49 unacknowledged
    for payload in persistent_payloads(10) {
        append_ok(&mut writer, "jobs", &payload);
    }
    let mut second = Subscriber::new(server.client());
    second.subscribe("SUB w2 stream jobs workers");
    second.until(|s| s.events.len() >= 40);
    assert_eq!(
        second.positions("w2"),
        (20..60).collect::<Vec<_>>(),
        "resumes after the acks"
    );
}

/// The only consumer acknowledges its event and disconnects, and a new one joins at once, again
/// and again: the new consumer never gets an acknowledged event again. (The stopping group
/// saves its checkpoint before a new group can load it.)
#[test]
fn a_consumer_joining_right_after_the_last_one_left_gets_nothing_acknowledged_again() {
    const ROUNDS: u64 = 30;
    let server = Server::start(&[]);
    let mut writer = server.client();
    // The next consumer is connected before the last one leaves, and subscribes right as it
    // leaves: its join lands while the old group is stopping.
    let mut next = Subscriber::new(server.client());
    let mut position = append_ok(&mut writer, "rejoin", &event("Job", json!({"n": 0})));
    for round in 0..ROUNDS {
        let mut consumer = next;
        consumer.subscribe("SUB c stream rejoin rejoiners");
        consumer.until(|s| !s.events.is_empty());
        assert_eq!(
            consumer.positions("c")[0],
            position,
            "round {round}: the first event is the one not yet acknowledged"
        );
        assert_eq!(consumer.request(&format!("ACK c {position}")), Reply::Ok);
        // Appended before it leaves, so the next consumer's join is all that is left to do.
        position = append_ok(
            &mut writer,
            "rejoin",
            &event("Job", json!({"n": round + 1})),
        );
        next = Subscriber::new(server.client());
        drop(consumer);
    }
}

/// Subscription operations sent in one go take effect in the order sent: an `ACK` pipelined
/// with the `UNSUB` after it is not lost, and `PSUB LIST` pipelined after a named `SUB` lists it.
#[test]
fn pipelined_subscription_operations_take_effect_in_the_order_sent() {
    const ROUNDS: u64 = 20;
    let server = Server::start(&[]);
    let mut writer = server.client();
    append_ok(&mut writer, "piped", &event("Job", json!({"n": 0})));
    for round in 0..ROUNDS {
        let mut consumer = Subscriber::new(server.client());
        let group = format!("listed-{round}");
        consumer
            .client
            .send_raw(format!("SUB c stream piped {group}\r\nPSUB LIST\r\n").as_bytes());
        assert_eq!(consumer.reply(), Reply::Ok);
        match consumer.reply() {
            Reply::Subs { body, .. } => {
                let listed: Value = serde_json::from_slice(&body).expect("json");
                let names: Vec<&str> = listed
                    .as_array()
                    .expect("array")
                    .iter()
                    .filter_map(|s| s["name"].as_str())
                    .collect();
                assert!(names.contains(&group.as_str()), "round {round}: {names:?}");
            }
            other => panic!("PSUB LIST: {other:?}"),
        }
    }
    // One group: every round acknowledges its event with ACK and UNSUB in one write, and the
    // next consumer never sees it again.
    for round in 0..ROUNDS {
        let position = append_ok(&mut writer, "piped2", &event("Job", json!({"n": round})));
        let mut consumer = Subscriber::new(server.client());
        consumer.subscribe("SUB c stream piped2 piped-acks");
        consumer.until(|s| !s.events.is_empty());
        assert_eq!(consumer.positions("c"), vec![position], "round {round}");
        consumer
            .client
            .send_raw(format!("ACK c {position}\r\nUNSUB c\r\n").as_bytes());
        assert_eq!(consumer.reply(), Reply::Ok, "ACK");
        assert_eq!(consumer.reply(), Reply::Ok, "UNSUB");
    }
}

/// The server is killed with SIGKILL while a persistent subscriber works; after restart the
/// subscription resumes from its stored checkpoint: nothing acknowledged is required again,
/// nothing unacknowledged is skipped.
#[test]
fn persistent_subscription_survives_kill_9() {
    let mut server = Server::start(&[]);
    let mut writer = server.client();
    for payload in persistent_payloads(100) {
        append_ok(&mut writer, "jobs", &payload);
    }
    let mut subscriber = Subscriber::new(server.client());
    subscriber.subscribe("SUB w stream jobs durable");
    subscriber.until(|s| s.events.len() >= 100);
    assert_eq!(subscriber.request("ACK w 0-59"), Reply::Ok);
    // The checkpoint is saved within CHECKPOINT_INTERVAL_MS; poll PSUB GET until it is.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match subscriber.request("PSUB GET durable") {
            Reply::SubInfo { body } => {
                let state: Value = serde_json::from_slice(&body).unwrap();
                if state["checkpoint"] == 60 {
                    break;
                }
                assert!(Instant::now() < deadline, "checkpoint never saved: {state}");
            }
            other => panic!("{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    server.restart();
    let mut resumed = Subscriber::new(server.client());
    resumed.subscribe("SUB again stream jobs durable");
    resumed.until(|s| s.events.len() >= 40);
    assert_eq!(resumed.positions("again"), (60..100).collect::<Vec<_>>());
    match resumed.request("PSUB GET durable") {
        Reply::SubInfo { body } => {
            let state: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(state["name"], "durable");
            assert_eq!(state["type"], "stream");
            assert_eq!(state["selector"], "jobs");
        }
        other => panic!("{other:?}"),
    }
}

/// Two consumers share a persistent subscription: together they get every event once, and
/// each stream's events go to one consumer, in version order.
#[test]
fn competing_consumers_keep_per_stream_order() {
    const STREAMS: u64 = 12;
    const PER_STREAM: u64 = 20;
    let server = Server::start(&[]);
    let mut consumers = [
        Subscriber::new(server.client()),
        Subscriber::new(server.client()),
    ];
    for (index, consumer) in consumers.iter_mut().enumerate() {
        let options = json!({"type": "event_pattern", "selector": "acct-*", "name": "billing",
                             "max_in_flight": 5})
        .to_string();
        consumer
            .client
            .send_raw(format!("SUB c{index} {}\r\n{options}\r\n", options.len()).as_bytes());
        assert_eq!(consumer.reply(), Reply::Ok);
    }
    let mut writer = server.client();
    for round in 0..PER_STREAM {
        for stream in 0..STREAMS {
            append_ok(
                &mut writer,
                &format!("acct-{stream}"),
                &event("Posted", json!(round)),
            );
        }
    }
    // Each consumer acknowledges everything it has, until all events are in.
    let total = (STREAMS * PER_STREAM) as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = [0usize; 2];
    while consumers.iter().map(|c| c.events.len()).sum::<usize>() < total {
        assert!(Instant::now() < deadline, "not all delivered");
        for (index, consumer) in consumers.iter_mut().enumerate() {
            let received = consumer.events.len();
            if received > acked[index] {
                // Events that arrive while this ACK is answered are acked next round.
                let last = consumer.events[received - 1].position;
                assert_eq!(
                    consumer.request(&format!("ACK c{index} ..{last}")),
                    Reply::Ok
                );
                acked[index] = received;
            } else {
                // Nothing new: a PING lets pushes arrive without blocking forever.
                assert_eq!(consumer.request("PING"), Reply::Pong);
            }
        }
    }
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (index, consumer) in consumers.iter().enumerate() {
        let mut last_version: BTreeMap<&str, u64> = BTreeMap::new();
        for pushed in &consumer.events {
            assert!(
                seen.insert(pushed.position),
                "position {} delivered twice",
                pushed.position
            );
            let previous = owner.insert(pushed.stream.clone(), index);
            assert!(
                previous.is_none() || previous == Some(index),
                "{} moved",
                pushed.stream
            );
            if let Some(last) = last_version.insert(&pushed.stream, pushed.version) {
                assert!(pushed.version > last, "{} out of order", pushed.stream);
            }
        }
    }
    assert_eq!(seen.len(), total);
    assert!(
        consumers.iter().all(|c| !c.events.is_empty()),
        "both consumers got work"
    );
}

/// NACK retry redelivers; after 1 + max_retries deliveries the next failure parks; NACK park
/// parks at once; parked events are listed and come back on PSUB REPLAY.
#[test]
fn nack_retry_park_and_replay() {
    let server = Server::start(&[]);
    let mut writer = server.client();
    for payload in persistent_payloads(3) {
        append_ok(&mut writer, "work", &payload);
    }
    let mut subscriber = Subscriber::new(server.client());
    let options = json!({"type": "stream", "selector": "work", "name": "flaky", "max_retries": 1})
        .to_string();
    subscriber
        .client
        .send_raw(format!("SUB f {}\r\n{options}\r\n", options.len()).as_bytes());
    assert_eq!(subscriber.reply(), Reply::Ok);
    subscriber.until(|s| s.events.len() == 3);
    assert_eq!(subscriber.request("ACK f 0"), Reply::Ok);
    assert_eq!(subscriber.request("NACK f park 2"), Reply::Ok);
    assert_eq!(subscriber.request("NACK f retry 1"), Reply::Ok);
    subscriber.until(|s| s.events.len() == 4);
    assert_eq!(subscriber.events[3].position, 1, "retried");
    // Second delivery failed too: with max_retries 1 it is now parked.
    assert_eq!(subscriber.request("NACK f retry 1"), Reply::Ok);
    let parked = |subscriber: &mut Subscriber| match subscriber.request("PSUB PARKED flaky") {
        Reply::Events { body, .. } => serde_json::from_slice::<Vec<Value>>(&body)
            .unwrap()
            .iter()
            .map(|r| r["position"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while parked(&mut subscriber) != vec![1, 2] {
        assert!(Instant::now() < deadline, "parked events never stored");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(subscriber.request("PSUB REPLAY flaky"), Reply::Ok);
    subscriber.until(|s| s.events.len() == 6);
    let replayed: BTreeSet<u64> = subscriber.events[4..].iter().map(|e| e.position).collect();
    assert_eq!(replayed, BTreeSet::from([1, 2]));
    assert_eq!(subscriber.request("ACK f 1,2"), Reply::Ok);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !parked(&mut subscriber).is_empty() {
        assert!(Instant::now() < deadline, "acked replays stay parked");
        std::thread::sleep(Duration::from_millis(20));
    }
    match subscriber.request("PSUB EXISTS flaky") {
        Reply::SubExists { exists: true, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(subscriber.request("PSUB DELETE flaky stream"), Reply::Ok);
    match subscriber.request("PSUB EXISTS flaky") {
        Reply::SubExists { exists: false, .. } => {}
        other => panic!("{other:?}"),
    }
    match subscriber.request("PSUB LIST") {
        Reply::Subs { count: 0, .. } => {}
        other => panic!("{other:?}"),
    }
}

/// A subscriber that stops reading while 100k events are appended: the writer is not held
/// back (all its appends complete), the server's memory stays bounded, and the subscriber
/// later receives every event, in order, exactly once.
#[test]
fn a_stalled_subscriber_neither_blocks_writers_nor_loses_events() {
    const EVENTS: u64 = 100_000;
    const PER_APPEND: u64 = 100;
    let server = Server::start(&["--write-stall-timeout-ms", "600000"]);
    let mut subscriber = Subscriber::new(server.client());
    // A small receive buffer (no autotuning up to tens of MiB), so the kernel cannot absorb the
    // whole backlog and the server really has to deal with a subscriber that does not read.
    set_receive_buffer(&subscriber.client.stream, 64 * 1024);
    subscriber.subscribe("SUB all stream $all");
    subscriber.until(|s| s.live.contains("all"));
    // The subscriber now reads nothing while the writer appends.
    let mut writer = server.client();
    let data = "x".repeat(100);
    let mut frames = Vec::new();
    for n in 0..EVENTS / PER_APPEND {
        let batch: Vec<Value> = (0..PER_APPEND)
            .map(|i| json!({"event_type": "Bulk", "data": {"n": n * PER_APPEND + i, "pad": data}}))
            .collect();
        let payload = Value::Array(batch).to_string();
        frames.extend_from_slice(
            format!(
                "APPEND bulk-{} any {}\r\n{payload}\r\n",
                n % 50,
                payload.len()
            )
            .as_bytes(),
        );
        if frames.len() > 1 << 20 {
            writer.send_raw(&frames);
            frames.clear();
        }
    }
    writer.send_raw(&frames);
    for _ in 0..EVENTS / PER_APPEND {
        assert!(matches!(writer.reply(), Reply::Appended { .. }));
    }
    let rss_kib = resident_kib(server.pid());
    assert!(rss_kib < 300 * 1024, "server memory grew to {rss_kib} KiB");
    // Now read everything.
    subscriber.until(|s| s.events.len() as u64 == EVENTS);
    assert_eq!(subscriber.positions("all"), (0..EVENTS).collect::<Vec<_>>());
    // It got there by falling back to storage, not by the server buffering it all.
    let (status, metrics) = common::http_get(server.http_addr, "/metrics");
    assert_eq!(status, 200);
    let fallbacks: f64 = metrics
        .lines()
        .find(|l| l.starts_with("esdb_subscription_catchup_fallbacks_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("fallback counter");
    let shown: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("subscription"))
        .collect();
    assert!(
        fallbacks >= 1.0,
        "no fallback to catch-up reads:\n{}",
        shown.join("\n")
    );
}

fn set_receive_buffer(stream: &std::net::TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
}

fn resident_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A subscriber that stops reading for good is disconnected once its writes stall past the
/// limit, and the server carries on.
#[test]
fn a_subscriber_that_never_reads_is_disconnected() {
    let server = Server::start(&["--write-stall-timeout-ms", "300"]);
    let mut subscriber = Subscriber::new(server.client());
    subscriber.subscribe("SUB all stream $all");
    let mut writer = server.client();
    let payload: Vec<Value> = (0..100)
        .map(|n| json!({"event_type": "Big", "data": "y".repeat(2000), "metadata": {"n": n}}))
        .collect();
    let payload = Value::Array(payload).to_string();
    // Enough to fill the socket buffers many times over.
    for _ in 0..200 {
        append_ok(&mut writer, "big", &payload);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let closed = loop {
        assert!(Instant::now() < deadline, "never disconnected");
        // Drain what the kernel buffered; the server must eventually close.
        match subscriber.client.try_reply() {
            None => break true,
            Some(_) => continue,
        }
    };
    assert!(closed);
    assert_eq!(writer.request("PING"), Reply::Pong, "the server carries on");
}

/// A browser-style subscriber over WebSocket receives events appended over TCP.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_subscriber_receives_events_appended_over_tcp() {
    let server = Server::start(&[]);
    let mut ws = common::ws::WsClient::connect(server.http_addr).await;
    assert!(matches!(ws.reply().await, Some(Reply::Info(_))));
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        "SUB live stream $all\r\n",
    ))
    .await;
    assert_eq!(ws.reply().await, Some(Reply::Ok));
    assert_eq!(ws.reply().await, Some(Reply::Live { sid: "live".into() }));
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let mut tcp = Client::connect(addr);
        for n in 0..5 {
            append_ok(&mut tcp, "from-tcp", &event("Hello", json!(n)));
        }
    })
    .await
    .unwrap();
    for n in 0..5u64 {
        match ws.reply().await {
            Some(Reply::Event {
                sid,
                stream,
                position,
                body,
                ..
            }) => {
                assert_eq!(
                    (sid.as_str(), stream.as_str(), position),
                    ("live", "from-tcp", n)
                );
                let record: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(record["data"], n);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// SIGTERM while subscribers (catch-up and persistent) are connected and idle: the server
/// still closes its stores cleanly (no subscription task keeps a store open) and exits 0.
#[test]
fn sigterm_with_idle_subscribers_closes_the_stores_cleanly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let temp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(temp.path())
        .env("ESDB_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, _) = common::read_announced_addrs(&mut child);
    append_ok(&mut Client::connect(addr), "x", &event("E", json!(1)));
    let mut subscriber = Subscriber::new(Client::connect(addr));
    subscriber.subscribe("SUB a stream $all");
    subscriber.subscribe("SUB p stream x durable");
    subscriber.until(|s| s.live.contains("a") && s.positions("p") == vec![0]);
    common::signal(child.id() as i32, libc::SIGTERM);
    let status = common::wait_with_timeout(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("store closed"), "{logs}");
    assert!(!logs.contains("still in use"), "{logs}");
}
