//! Scavenging end to end, against the real server binary over real sockets with its data in a
//! temporary directory: `SCAVENGE` and `SCAVENGE STATUS`, a scavenge killed with SIGKILL midway
//! that resumes where it stood after the restart, appends answered while it runs, the metrics,
//! and `esdb scavenge --wait`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{http_get, Client, Server};
use esdb_protocol::{ErrorCode, Reply};

/// How long a test waits for a scavenge to reach a state before it fails.
const SCAVENGE_DEADLINE: Duration = Duration::from_secs(30);
/// Between two `SCAVENGE STATUS` polls (the state changes once per slice, every ~1 s here).
const POLL_MS: u64 = 25;
/// The rate the tests run scavenges at: a 512-event slice about once a second, so a walk of a
/// few thousand events takes seconds and can be killed midway.
const SLOW_RATE: &str = "500";
/// An append answered later than this while a scavenge runs would mean the scavenge blocks it.
const APPEND_DURING_SCAVENGE_MAX: Duration = Duration::from_secs(2);

fn scavenge(client: &mut Client, line: &str) -> Value {
    match client.request(line) {
        Reply::Scavenge { body } => serde_json::from_slice(&body).expect("SCAVENGE json"),
        other => panic!("expected SCAVENGE, got {other:?}"),
    }
}

fn status(client: &mut Client) -> Value {
    scavenge(client, "SCAVENGE STATUS")
}

/// Polls the state until `done(state)` holds, or fails at the deadline.
fn wait_for(client: &mut Client, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SCAVENGE_DEADLINE;
    loop {
        let state = status(client);
        if done(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} by the deadline: {state}"
        );
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// Appends `count` events to `stream`, 100 per request.
fn append_many(client: &mut Client, stream: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"event_type": "Counted", "data": {"n": n, "pad": "x".repeat(200)}}))
            .collect();
        let reply = client.append(stream, "any", &Value::Array(events).to_string());
        assert!(matches!(reply, Reply::Appended { .. }), "{reply:?}");
    }
}

/// Every position `$all` shows, paging on from the last position seen (positions have gaps
/// where events were removed, so a page's length says nothing about where the next starts).
fn all_positions(client: &mut Client) -> Vec<u64> {
    let mut all: Vec<u64> = Vec::new();
    for _ in 0..1000 {
        let from = all.last().map_or(0, |last| last + 1);
        let page = match client.request(&format!("READALL {from} 100")) {
            Reply::Events { body, .. } => serde_json::from_slice::<Vec<Value>>(&body).unwrap(),
            other => panic!("expected EVENTS, got {other:?}"),
        };
        if page.is_empty() {
            return all;
        }
        all.extend(positions(&page));
    }
    panic!("$all did not end in 1000 pages");
}

fn positions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect()
}

fn metric(server: &Server, name: &str) -> u64 {
    let (code, body) = http_get(server.http_addr, "/metrics");
    assert_eq!(code, 200);
    body.lines()
        .find(|line| line.starts_with(name) && line.contains("store=\"default\""))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map_or_else(|| panic!("no {name} in /metrics"), |value| value as u64)
}

#[test]
fn a_scavenge_killed_midway_resumes_where_it_stood_after_the_restart() {
    let mut server = Server::start(&["--scavenge-events-per-sec", SLOW_RATE]);
    let mut client = server.client();
    assert_eq!(status(&mut client)["state"], "none");
    append_many(&mut client, "gone", 3000); // positions 0..3000
    append_many(&mut client, "kept", 10); // 3000..3010
    assert_eq!(client.request("DELETE gone any hard"), Reply::Ok);

    let started = scavenge(&mut client, "SCAVENGE");
    assert_eq!(started["state"], "running", "{started}");
    assert_eq!(started["runs"], 1);
    assert_eq!(started["up_to_position"], 3010);
    // A second SCAVENGE while one runs starts nothing: the same run answers.
    assert_eq!(scavenge(&mut client, "SCAVENGE")["runs"], 1);

    // Appends are answered while the scavenge runs.
    let midway = wait_for(&mut client, "progress", |state| {
        state["position"].as_u64().unwrap() > 0
    });
    assert_eq!(
        midway["state"], "running",
        "too fast to kill midway: {midway}"
    );
    let sent = Instant::now();
    let reply = client.append("during", "any", &common::event("Counted", json!(1)));
    assert!(matches!(reply, Reply::Appended { .. }), "{reply:?}");
    assert!(sent.elapsed() < APPEND_DURING_SCAVENGE_MAX);
    let before_kill = status(&mut client);
    assert_eq!(before_kill["state"], "running", "{before_kill}");
    let removed_before = before_kill["events_removed"].as_u64().unwrap();
    assert!(removed_before > 0 && removed_before < 3000, "{before_kill}");

    server.kill9();
    server.restart();
    let mut client = server.client();
    let resumed = status(&mut client);
    assert!(
        resumed["position"].as_u64() >= before_kill["position"].as_u64(),
        "the walk went back: {before_kill} then {resumed}"
    );
    let done = wait_for(&mut client, "end", |state| state["state"] == "done");
    assert_eq!(done["runs"], 1, "resumed, not restarted: {done}");
    assert_eq!(done["events_removed"], 3000, "{done}");
    assert_eq!(done["position"], 3010);
    let reclaimed = done["bytes_reclaimed"].as_u64().unwrap();
    assert!(reclaimed > 3000 * 200, "{done}");

    // $all keeps its positions and skips the removed ones; the kept stream reads as before.
    let mut expected: Vec<u64> = (3000..3010).collect();
    expected.push(3010); // the append while the scavenge ran
    assert_eq!(all_positions(&mut client), expected);
    assert_eq!(client.read_stream("kept", 0, 100).len(), 10);
    assert!(matches!(
        client.request("APPEND gone any {\"event_type\":\"X\",\"data\":1}"),
        Reply::Err(error) if error.code == ErrorCode::StreamDeleted
    ));
    // This process's job removed the rest; its bytes are counted.
    assert!(metric(&server, "esdb_scavenge_events_removed_total") > 0);
    assert!(metric(&server, "esdb_scavenge_reclaimed_bytes_total") > 0);
    let live = metric(&server, "esdb_storage_live_bytes");
    let used = metric(&server, "esdb_storage_used_bytes");
    assert!(live < used, "live {live}, high-water mark {used}");
}

#[test]
fn bad_scavenge_requests_get_errors_and_the_cli_waits_for_the_end() {
    let server = Server::start(&[]);
    let mut client = server.client();
    for bad in ["SCAVENGE NOW", "SCAVENGE STATUS please"] {
        match client.request(bad) {
            Reply::Err(error) => assert_eq!(error.code, ErrorCode::InvalidArgument, "{bad}"),
            other => panic!("{bad}: expected -ERR, got {other:?}"),
        }
    }
    append_many(&mut client, "s", 5);
    let limits = client.request("META s {\"max_count\":2}");
    assert_eq!(limits, Reply::Ok);

    let output = Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args([
            "scavenge",
            "--wait",
            "--json",
            "--server",
            &server.addr.to_string(),
        ])
        .env_remove("ESDB_SERVER")
        .env_remove("ESDB_CONTEXT")
        .env("XDG_CONFIG_HOME", server.data_dir.join("no-config"))
        .stdin(Stdio::null())
        .output()
        .expect("run esdb scavenge");
    assert!(output.status.success(), "{output:?}");
    let state: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["events_removed"], 3);
    assert_eq!(all_positions(&mut client), [3, 4]);
}

/// The removals are commands in the Raft log: every node of a cluster removes the same events
/// and ends in the same state, byte counts included, and only the leader's job proposed them.
#[test]
fn every_node_of_a_cluster_removes_the_same_events() {
    let cluster = common::cluster::Cluster::start(3);
    let leader = cluster.wait_for_leader(None);
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .expect("a follower");
    let mut client = Client::connect(follower.addr);
    append_many(&mut client, "gone", 1200);
    append_many(&mut client, "counted", 10);
    assert_eq!(client.request("META counted {\"max_count\":3}"), Reply::Ok);
    assert_eq!(client.request("DELETE gone any hard"), Reply::Ok);
    assert_eq!(scavenge(&mut client, "SCAVENGE")["up_to_position"], 1210);

    let mut states = Vec::new();
    let mut all = Vec::new();
    for node in &cluster.nodes {
        let mut client = Client::connect(node.addr);
        let done = wait_for(&mut client, "end", |state| state["state"] == "done");
        assert_eq!(done["events_removed"], 1200 + 7, "node {}: {done}", node.id);
        states.push(done);
        all.push(all_positions(&mut client));
    }
    assert!(states.windows(2).all(|w| w[0] == w[1]), "{states:?}");
    assert!(all.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(all[0], (1207..1210).collect::<Vec<u64>>());
    for node in &cluster.nodes {
        let http = node.http_addr.expect("announced");
        let (_, body) = http_get(http, "/metrics");
        let removed = body
            .lines()
            .find(|line| line.starts_with("esdb_scavenge_events_removed_total"))
            .and_then(|line| line.rsplit(' ').next())
            .map_or(0, |value| value.parse::<u64>().unwrap_or(0));
        let expected = if node.id == leader { 1207 } else { 0 };
        assert_eq!(removed, expected, "node {} (leader {leader})", node.id);
    }
}
