//! Membership changes on real `esdb` processes (loopback, ports chosen at run time): a fourth
//! node added to a running three-node cluster with `CLUSTER ADD` (sent to a follower, which
//! passes it to the leader) becomes a voter holding every event; a voter removed with
//! `CLUSTER REMOVE` stops being a member while appends go on; a node started with `--join`
//! after the log was purged behind a checkpoint catches up from a snapshot of the state
//! machine; a single server refuses membership changes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use esdb_protocol::Reply;

use common::cluster::{append_ok, ids_and_streams, Cluster, LEADER_TIMEOUT};
use common::Client;

fn cluster_status(addr: SocketAddr) -> serde_json::Value {
    match Client::connect(addr).request("CLUSTER") {
        Reply::Cluster { body } => serde_json::from_slice(&body).expect("CLUSTER json"),
        other => panic!("expected CLUSTER, got {other:?}"),
    }
}

/// Runs `esdb <args>` (the command line client) to its end; its stdout as JSON.
fn cli(args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args(args)
        .env_remove("ESDB_SERVER")
        .env_remove("ESDB_CONTEXT")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .expect("run esdb");
    assert!(
        output.status.success(),
        "esdb {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// (id, role) of every member in `status`'s default store.
fn roles(status: &serde_json::Value) -> Vec<(u64, String)> {
    let mut roles: Vec<(u64, String)> = status["stores"]["default"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["node_id"].as_u64().expect("id"),
                m["role"].as_str().expect("role").to_owned(),
            )
        })
        .collect();
    roles.sort();
    roles
}

fn voters(ids: &[u64]) -> Vec<(u64, String)> {
    ids.iter().map(|&id| (id, "voter".to_owned())).collect()
}

/// Waits until node `addr` has every event of `expected` (by id, stream and position).
fn wait_for_events(addr: SocketAddr, expected: &[(String, String, u64)]) {
    let started = Instant::now();
    loop {
        let mut client = Client::connect(addr);
        let found = ids_and_streams(&client.read_all());
        if found == expected {
            return;
        }
        assert!(
            started.elapsed() < LEADER_TIMEOUT,
            "node {addr} has {} events, expected {}",
            found.len(),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_added_becomes_a_voter_with_every_event_and_a_removed_one_stops_voting() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader_among(Some(&[1, 2, 3]), None);
    let mut client = Client::connect(cluster.get(leader).addr);
    for i in 0..20 {
        append_ok(
            &mut client,
            &format!("s-{}", i % 3),
            &common::event("T", serde_json::json!({ "i": i })),
        );
    }
    // Node 4 starts with no peers and waits to be added.
    let fourth = cluster.add_node(4, &[]);
    let (fourth_addr, fourth_raft) = (fourth.addr, fourth.raft_addr());
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let add = format!("CLUSTER ADD 4 {fourth_raft} {fourth_addr}");
    let status = match Client::connect(cluster.get(follower).addr).request(&add) {
        Reply::Cluster { body } => serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        other => panic!("expected CLUSTER, got {other:?}"),
    };
    assert_eq!(roles(&status), voters(&[1, 2, 3, 4]), "{status}");
    // Sent again, the same change is a no-op.
    match Client::connect(cluster.get(leader).addr).request(&add) {
        Reply::Cluster { .. } => {}
        other => panic!("a repeated ADD: {other:?}"),
    }
    // A node id already used at another address is refused.
    match Client::connect(cluster.get(leader).addr).request("CLUSTER ADD 4 127.0.0.1:1") {
        Reply::Err(error) => assert_eq!(error.code.as_str(), "invalid_argument", "{error:?}"),
        other => panic!("expected -ERR, got {other:?}"),
    }

    let expected = ids_and_streams(&Client::connect(cluster.get(leader).addr).read_all());
    assert_eq!(expected.len(), 20);
    wait_for_events(fourth_addr, &expected);
    assert_eq!(roles(&cluster_status(fourth_addr)), voters(&[1, 2, 3, 4]));

    // Remove a voter other than the leader, asking node 4 from the command line.
    let removed = (1..=3).find(|&id| id != leader).expect("a follower");
    let status = cli(&[
        "cluster",
        "remove",
        &removed.to_string(),
        "--server",
        &fourth_addr.to_string(),
        "--json",
    ]);
    let remaining: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|&id| id != removed)
        .collect();
    assert_eq!(roles(&status), voters(&remaining), "{status}");
    assert_eq!(
        roles(&cluster_status(cluster.get(leader).addr)),
        voters(&remaining)
    );
    // Removing it again: it is not a member.
    match Client::connect(fourth_addr).request(&format!("CLUSTER REMOVE {removed}")) {
        Reply::Err(error) => assert_eq!(error.code.as_str(), "invalid_argument", "{error:?}"),
        other => panic!("expected -ERR, got {other:?}"),
    }
    // Appends still work, on the new node too, and it holds them.
    let mut on_fourth = Client::connect(fourth_addr);
    let position = append_ok(
        &mut on_fourth,
        "after-remove",
        &common::event("T", serde_json::json!({})),
    );
    assert_eq!(position, 20);
    // With the removed node stopped, the three voters left still commit.
    cluster.node(removed).kill9();
    let position = append_ok(
        &mut on_fourth,
        "after-remove",
        &common::event("T", serde_json::json!({})),
    );
    assert_eq!(position, 21);
    let leader_now = cluster.wait_for_leader_among(Some(&remaining), None);
    assert_ne!(leader_now, removed);
}

#[test]
fn a_single_server_refuses_membership_changes() {
    let server = common::Server::start(&[]);
    let mut client = server.client();
    match client.request("CLUSTER ADD 2 127.0.0.1:7351") {
        Reply::Err(error) => assert_eq!(error.code.as_str(), "invalid_argument", "{error:?}"),
        other => panic!("expected -ERR, got {other:?}"),
    }
    match client.request("CLUSTER REMOVE x") {
        Reply::Err(error) => assert_eq!(error.code.as_str(), "invalid_argument", "{error:?}"),
        other => panic!("expected -ERR, got {other:?}"),
    }
    // The connection still works.
    assert!(matches!(client.request("CLUSTER"), Reply::Cluster { .. }));
}

/// The default store's entry in `CLUSTER` on `addr`.
fn group(addr: SocketAddr) -> serde_json::Value {
    cluster_status(addr)["stores"]["default"].clone()
}

#[test]
fn a_node_joining_after_the_log_was_purged_catches_up_from_a_snapshot() {
    let keep = [
        "--raft-log-kept-entries".to_owned(),
        "2".to_owned(),
        "--log-level".to_owned(),
        "info,openraft=error".to_owned(),
    ];
    let mut cluster = Cluster::start_with(3, |_| keep.to_vec());
    let leader = cluster.wait_for_leader_among(Some(&[1, 2, 3]), None);
    let leader_addr = cluster.get(leader).addr;
    let mut client = Client::connect(leader_addr);
    // One entry per append (each waits for the one before). Every third event is tagged, so
    // the install is seen to carry the tag index too.
    for i in 0..30 {
        let payload = serde_json::json!({
            "event_type": "T",
            "data": { "i": i },
            "tags": if i % 3 == 0 { vec!["third"] } else { vec![] },
        });
        append_ok(&mut client, &format!("s-{}", i % 4), &payload.to_string());
    }
    // A checkpoint (at most a second away) purges the log behind it but for 2 entries.
    let started = Instant::now();
    let purged = loop {
        let group = group(leader_addr);
        let applied = group["applied_index"].as_u64().unwrap_or(0);
        if let Some(purged) = group["purged_index"].as_u64() {
            if purged + 2 >= applied && purged > 20 {
                break purged;
            }
        }
        assert!(started.elapsed() < LEADER_TIMEOUT, "no purge: {group}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let expected = ids_and_streams(&client.read_all());
    assert_eq!(expected.len(), 30);

    // Node 4 joins through a follower's inter-node address.
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let join = [
        "--join".to_owned(),
        cluster.get(follower).raft_addr(),
        // Info shows the install.
        "--log-level".to_owned(),
        "info,openraft=error".to_owned(),
    ];
    let fourth_addr = cluster.add_node(4, &join).addr;
    wait_for_events(fourth_addr, &expected);
    let tagged = |events: &[serde_json::Value]| -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| e["position"].as_u64())
            .collect()
    };
    let read_tagged = |addr| match Client::connect(addr).request("READTAGS third 0 100") {
        Reply::Events { body, .. } => {
            tagged(&serde_json::from_slice::<Vec<serde_json::Value>>(&body).expect("json"))
        }
        other => panic!("expected EVENTS, got {other:?}"),
    };
    let on_leader = read_tagged(leader_addr);
    assert_eq!(on_leader.len(), 10);
    assert_eq!(
        read_tagged(fourth_addr),
        on_leader,
        "the tag index came with the snapshot"
    );
    let fourth = group(fourth_addr);
    // It never had the purged entries: it holds them from the snapshot, its own log starts
    // after it.
    assert!(
        fourth["purged_index"].as_u64().is_some_and(|p| p >= purged),
        "{fourth}"
    );
    let log = cluster.get(4).stderr();
    assert!(
        log.contains("installed a snapshot from the leader"),
        "{log}"
    );
    let (code, metrics) = common::http_get(cluster.get(4).http_addr.expect("http"), "/metrics");
    assert_eq!(code, 200);
    let installed = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("esdb_raft_snapshots_installed_total{store=\"default\"} ")
        })
        .and_then(|count| count.parse::<u64>().ok());
    assert!(
        installed.is_some_and(|n| n >= 1),
        "installed: {installed:?}"
    );
    let started = Instant::now();
    while roles(&cluster_status(fourth_addr)) != voters(&[1, 2, 3, 4]) {
        assert!(started.elapsed() < LEADER_TIMEOUT, "not promoted: {fourth}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // It takes part in what comes next.
    let mut on_fourth = Client::connect(fourth_addr);
    let position = append_ok(
        &mut on_fourth,
        "later",
        &common::event("T", serde_json::json!({})),
    );
    assert_eq!(position, 30);
    let read = on_fourth.read_stream("later", 0, 10);
    assert_eq!(read.len(), 1);
    // Restarted on its data, it does not ask to join again and still serves everything.
    cluster.node(4).kill9();
    cluster.node(4).restart();
    let fourth_addr = cluster.get(4).addr;
    let mut expected = expected;
    expected.push(ids_and_streams(&read)[0].clone());
    wait_for_events(fourth_addr, &expected);

    // A follower down while the log moves past what is kept catches up from a snapshot too
    // (before snapshots it stopped, loudly).
    let leader = cluster.wait_for_leader_among(Some(&[1, 2, 3, 4]), None);
    let behind = (1..=3).find(|&id| id != leader).expect("a follower");
    cluster.node(behind).kill9();
    let mut client = Client::connect(cluster.get(leader).addr);
    for i in 0..10 {
        append_ok(
            &mut client,
            "while-down",
            &common::event("T", serde_json::json!({ "i": i })),
        );
    }
    let last = group(cluster.get(leader).addr)["applied_index"]
        .as_u64()
        .expect("applied");
    let started = Instant::now();
    while group(cluster.get(leader).addr)["purged_index"].as_u64() < Some(last - 2) {
        assert!(
            started.elapsed() < LEADER_TIMEOUT,
            "no purge past {}",
            last - 2
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its log file starts anew with the restart.
    cluster.node(behind).restart();
    let expected = ids_and_streams(&client.read_all());
    assert_eq!(expected.len(), 41);
    wait_for_events(cluster.get(behind).addr, &expected);
    let log = cluster.get(behind).stderr();
    assert!(
        log.contains("installed a snapshot from the leader"),
        "{log}"
    );
}
