//! Per-store quotas, black-box against the real server: each limit refuses with its documented
//! code, writes nothing when it refuses, leaves other stores alone, shows in `STATS` and
//! `/metrics`, and follows a SIGHUP that changes it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{event, http_get, signal, Client, Server};
use esdb_protocol::{ErrorCode, Reply};

/// How long a test waits for a released quota place (a closed connection, an ended
/// subscription, a scavenge) before it fails.
const RELEASE_DEADLINE: Duration = Duration::from_secs(30);

fn start_with_config(config: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("esdb.toml");
    std::fs::write(&path, config).expect("write config");
    let server = Server::start(&["--config", path.to_str().unwrap()]);
    (server, dir)
}

fn config_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("esdb.toml")
}

fn expect_error(reply: Reply, code: ErrorCode) -> String {
    match reply {
        Reply::Err(error) if error.code == code => error.message,
        other => panic!("expected -ERR {code}, got {other:?}"),
    }
}

fn appended(reply: &Reply) -> bool {
    matches!(reply, Reply::Appended { .. })
}

fn stats(client: &mut Client) -> Value {
    match client.request("STATS") {
        Reply::Stats { body } => serde_json::from_slice(&body).expect("STATS json"),
        other => panic!("expected STATS, got {other:?}"),
    }
}

fn refusals_metric(server: &Server, store: &str, limit: &str) -> u64 {
    let (code, body) = http_get(server.http_addr, "/metrics");
    assert_eq!(code, 200);
    let labels = format!("limit=\"{limit}\",store=\"{store}\"");
    body.lines()
        .find(|line| line.starts_with("esdb_quota_refusals_total") && line.contains(&labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// A request's reply, passing over the `LIVE` markers the connection's subscriptions push.
fn request_past_pushes(client: &mut Client, line: &str) -> Reply {
    client.send_line(line);
    loop {
        match client.reply() {
            Reply::Live { .. } => continue,
            reply => return reply,
        }
    }
}

fn use_store(client: &mut Client, store: &str) -> Reply {
    client.request(&format!("USE {store}"))
}

fn stream_missing(client: &mut Client, stream: &str) -> bool {
    matches!(
        client.request(&format!("READ {stream} 0 10")),
        Reply::Err(error) if error.code == ErrorCode::StreamNotFound
    )
}

#[test]
fn max_streams_refuses_new_streams_only_in_its_store_and_follows_sighup() {
    let (server, dir) = start_with_config(
        r#"
stores = ["default", "tenant"]
[quotas.tenant]
max_streams = 2
"#,
    );
    let mut client = server.client();
    assert_eq!(use_store(&mut client, "tenant"), Reply::Ok);
    let one = event("Made", json!({}));
    assert!(appended(&client.append("s1", "any", &one)));
    assert!(appended(&client.append("s2", "any", &one)));
    let message = expect_error(client.append("s3", "any", &one), ErrorCode::QuotaExceeded);
    assert!(message.contains("max_streams"), "{message}");
    assert!(
        stream_missing(&mut client, "s3"),
        "a refused append wrote nothing"
    );
    // An existing stream takes more events; an APPENDMULTI creating one is refused whole.
    assert!(appended(&client.append("s1", "any", &one)));
    let multi = json!({"parts": [
        {"stream": "s2", "expected": "any", "events": [{"event_type": "Made", "data": {}}]},
        {"stream": "s4", "expected": "any", "events": [{"event_type": "Made", "data": {}}]},
    ]})
    .to_string();
    client.send_raw(format!("APPENDMULTI {}\r\n{multi}\r\n", multi.len()).as_bytes());
    expect_error(client.reply(), ErrorCode::QuotaExceeded);
    assert_eq!(
        client.read_stream("s2", 0, 10).len(),
        1,
        "the refused APPENDMULTI wrote none of its parts"
    );
    // Another store is not limited.
    assert_eq!(use_store(&mut client, "default"), Reply::Ok);
    for n in 0..5 {
        assert!(appended(&client.append(&format!("free-{n}"), "any", &one)));
    }
    let shown = stats(&mut client);
    assert_eq!(
        shown["stores"]["tenant"]["quota"]["limits"]["max_streams"],
        2
    );
    assert_eq!(
        shown["stores"]["tenant"]["quota"]["refused"]["max_streams"],
        2
    );
    assert!(shown["stores"]["default"].get("quota").is_none(), "{shown}");
    assert_eq!(refusals_metric(&server, "tenant", "max_streams"), 2);
    // A SIGHUP with a raised quota lets the next stream in without a restart.
    std::fs::write(
        config_path(&dir),
        "stores = [\"default\", \"tenant\"]\n[quotas.tenant]\nmax_streams = 3\n",
    )
    .unwrap();
    signal(server.pid(), libc::SIGHUP);
    assert_eq!(use_store(&mut client, "tenant"), Reply::Ok);
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        match client.append("s3", "any", &one) {
            reply if appended(&reply) => break,
            reply => {
                expect_error(reply, ErrorCode::QuotaExceeded);
                assert!(Instant::now() < deadline, "the reload never took effect");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    expect_error(client.append("s5", "any", &one), ErrorCode::QuotaExceeded);
}

/// A 60 KiB event: a few of them fill a small byte quota.
fn big_event() -> String {
    event("Big", json!({ "pad": "x".repeat(60 * 1024) }))
}

#[test]
fn max_bytes_refuses_appends_until_a_hard_delete_and_scavenge_free_space() {
    let (server, _dir) = start_with_config(
        r#"
stores = ["default"]
[quotas.default]
max_bytes = 1048576
"#,
    );
    let mut client = server.client();
    let mut accepted = 0u64;
    let refusal = loop {
        assert!(accepted < 100, "1 MiB quota never reached after 6 MB");
        match client.append("fill", "any", &big_event()) {
            reply if appended(&reply) => accepted += 1,
            reply => break expect_error(reply, ErrorCode::QuotaExceeded),
        }
    };
    assert!(
        accepted >= 5,
        "a 1 MiB quota took only {accepted} 60 KiB events"
    );
    assert!(refusal.contains("max_bytes"), "{refusal}");
    assert_eq!(
        client.read_stream("fill", 0, 1000).len() as u64,
        accepted,
        "every acknowledged event is there, the refused one is not"
    );
    // Small writes are refused too (the store is at its limit), but reads and deletes go on.
    let small = event("Small", json!({}));
    expect_error(
        client.append("other", "any", &small),
        ErrorCode::QuotaExceeded,
    );
    assert_eq!(client.request("DELETE fill any hard"), Reply::Ok);
    match client.request("SCAVENGE") {
        Reply::Scavenge { .. } => {}
        other => panic!("expected SCAVENGE, got {other:?}"),
    }
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        let reply = client.append("other", "any", &small);
        if appended(&reply) {
            break;
        }
        expect_error(reply, ErrorCode::QuotaExceeded);
        assert!(
            Instant::now() < deadline,
            "the scavenge never brought the store under its quota"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        stats(&mut client)["stores"]["default"]["quota"]["limits"]["max_bytes"],
        1048576
    );
}

/// The wait a `rate_limited` message names ("retry in N ms").
fn retry_in_ms(message: &str) -> u64 {
    let after = message
        .split("retry in ")
        .nth(1)
        .expect("a wait in the message");
    after
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number of ms")
}

#[test]
fn rates_refuse_with_a_retryable_wait_and_admit_after_it() {
    let (server, _dir) = start_with_config(
        r#"
stores = ["default", "slow", "narrow"]
[quotas.slow]
appends_per_sec = 5
[quotas.narrow]
bytes_per_sec = 1000
"#,
    );
    let mut client = server.client();
    assert_eq!(use_store(&mut client, "slow"), Reply::Ok);
    let one = event("Tick", json!({}));
    let started = Instant::now();
    // Pipelined: 40 appends at once, far faster than 5 per second.
    let frame = format!("APPEND ticks any {}\r\n{one}\r\n", one.len());
    client.send_raw(frame.repeat(40).as_bytes());
    let mut accepted = 0u64;
    let mut wait_ms = None;
    for _ in 0..40 {
        match client.reply() {
            reply if appended(&reply) => accepted += 1,
            reply => wait_ms = Some(retry_in_ms(&expect_error(reply, ErrorCode::RateLimited))),
        }
    }
    let elapsed_secs = started.elapsed().as_secs_f64();
    // The burst (5), plus what refilled meanwhile, plus the one that may take the bucket
    // into debt.
    let bound = 5 + (elapsed_secs * 5.0).ceil() as u64 + 1;
    assert!(
        accepted >= 5 && accepted <= bound,
        "{accepted} accepted in {elapsed_secs:.2} s"
    );
    assert_eq!(
        client.read_stream("ticks", 0, 100).len() as u64,
        accepted,
        "refused appends wrote nothing"
    );
    assert!(esdb_protocol::ErrorCode::RateLimited.is_retryable());
    let wait_ms = wait_ms.expect("some appends were refused");
    std::thread::sleep(Duration::from_millis(wait_ms.min(5_000) + 250));
    assert!(
        appended(&client.append("ticks", "any", &one)),
        "admitted after the wait"
    );
    // Bytes per second: one 900-byte event passes, the next is refused.
    assert_eq!(use_store(&mut client, "narrow"), Reply::Ok);
    let sized = event("Sized", json!({ "pad": "y".repeat(880) }));
    assert!(appended(&client.append("bytes", "any", &sized)));
    assert!(
        appended(&client.append("bytes", "any", &sized)),
        "into debt"
    );
    let message = expect_error(
        client.append("bytes", "any", &sized),
        ErrorCode::RateLimited,
    );
    assert!(message.contains("bytes per second"), "{message}");
    // The default store is not slowed.
    assert_eq!(use_store(&mut client, "default"), Reply::Ok);
    for _ in 0..20 {
        assert!(appended(&client.append("fast", "any", &one)));
    }
    assert!(refusals_metric(&server, "slow", "appends_per_sec") >= 1);
    assert_eq!(refusals_metric(&server, "narrow", "bytes_per_sec"), 1);
}

#[test]
fn connection_and_subscription_quotas_count_places_and_release_them() {
    let (server, _dir) = start_with_config(
        r#"
stores = ["default", "tenant"]
[quotas.tenant]
max_connections = 2
max_subscriptions = 2
"#,
    );
    let mut first = server.client();
    let mut second = server.client();
    let mut third = server.client();
    assert_eq!(use_store(&mut first, "tenant"), Reply::Ok);
    assert_eq!(use_store(&mut second, "tenant"), Reply::Ok);
    let message = expect_error(use_store(&mut third, "tenant"), ErrorCode::QuotaExceeded);
    assert!(message.contains("max_connections"), "{message}");
    // The refused USE leaves the connection open, in its old store.
    let one = event("Made", json!({}));
    assert!(appended(&third.append("in-default", "any", &one)));
    assert!(stream_missing(&mut first, "in-default"));
    // Leaving the store frees its place.
    assert_eq!(use_store(&mut second, "default"), Reply::Ok);
    assert_eq!(use_store(&mut third, "tenant"), Reply::Ok);
    // Closing a connection frees its place (once the server has seen the close).
    drop(third);
    let mut fourth = server.client();
    let deadline = Instant::now() + RELEASE_DEADLINE;
    while use_store(&mut fourth, "tenant") != Reply::Ok {
        assert!(
            Instant::now() < deadline,
            "a closed connection kept its place"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Subscriptions: two of every kind together, the third refused until one ends.
    assert_eq!(
        request_past_pushes(&mut first, "SUB a stream orders"),
        Reply::Ok
    );
    assert_eq!(
        request_past_pushes(&mut fourth, "SUB b event_pattern order-*"),
        Reply::Ok
    );
    let message = expect_error(
        request_past_pushes(&mut first, "SUB c stream other"),
        ErrorCode::QuotaExceeded,
    );
    assert!(message.contains("max_subscriptions"), "{message}");
    assert_eq!(request_past_pushes(&mut first, "UNSUB a"), Reply::Ok);
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        match request_past_pushes(&mut first, "SUB c stream other") {
            Reply::Ok => break,
            reply => {
                expect_error(reply, ErrorCode::QuotaExceeded);
                assert!(
                    Instant::now() < deadline,
                    "an ended subscription kept its place"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let shown = match request_past_pushes(&mut first, "STATS") {
        Reply::Stats { body } => serde_json::from_slice::<Value>(&body).unwrap(),
        other => panic!("expected STATS, got {other:?}"),
    };
    assert_eq!(shown["stores"]["tenant"]["quota"]["connections"], 2);
    assert_eq!(shown["stores"]["tenant"]["quota"]["subscriptions"], 2);
    assert!(refusals_metric(&server, "tenant", "max_subscriptions") >= 1);
}

#[test]
fn a_full_starting_store_refuses_new_connections_and_bad_quotas_refuse_to_start() {
    let (server, _dir) = start_with_config(
        r#"
stores = ["default"]
[quotas."*"]
max_connections = 1
"#,
    );
    let mut first = server.client();
    assert_eq!(first.request("PING"), Reply::Pong);
    let mut second = Client::connect(server.addr);
    let error = expect_error(second.reply(), ErrorCode::TooManyConnections);
    assert!(error.contains("max_connections"), "{error}");
    assert!(second.try_reply().is_none(), "closed after the error");
    assert_eq!(
        first.request("PING"),
        Reply::Pong,
        "the first connection is untouched"
    );

    for (config, complaint) in [
        ("[quotas.nope]\nmax_streams = 1\n", "no such store"),
        ("[quotas.default]\nappends_per_sec = 0\n", "at least 1"),
        ("[quotas.default]\nmax_widgets = 1\n", "unknown field"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esdb.toml");
        std::fs::write(&path, config).unwrap();
        let output = refused_start(&path, dir.path());
        assert!(output.contains(complaint), "{config}: {output}");
    }
}

/// Starts the binary with `config` and returns its stderr once it exits (it must).
fn refused_start(config: &Path, data: &Path) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .arg("--data-dir")
        .arg(data.join("data"))
        .output()
        .expect("run esdb");
    assert!(!output.status.success(), "started with a bad quota");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
