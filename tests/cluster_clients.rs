//! What clients of a cluster get, against three real `esdb` processes on loopback: reads with
//! `after <position>` on a follower see a write acknowledged by the leader at once, and need
//! no leader; the client addresses nodes advertise (`--advertise`, wildcard listeners); the
//! Rust client given one node's address fails over to the ones `INFO` names when it dies; and
//! the Raft metrics and telemetry events a cluster shows.

mod common;

use std::time::{Duration, Instant};

use esdb_protocol::{ErrorCode, Reply};

use common::cluster::{append_ok, Cluster, LEADER_TIMEOUT};
use common::Client;

/// `READ … after <position>` and friends, on `client`: the events (or the error) of the reply.
fn events(client: &mut Client, line: &str) -> Result<Vec<serde_json::Value>, ErrorCode> {
    match client.request(line) {
        Reply::Events { body, .. } => Ok(serde_json::from_slice(&body).expect("json")),
        Reply::Err(error) => Err(error.code),
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn reads_after_a_position_on_a_follower_see_the_leaders_write_at_once() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(None);
    let mut on_leader = Client::connect(cluster.get(leader).addr);
    let mut followers: Vec<Client> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != leader)
        .map(|n| Client::connect(n.addr))
        .collect();
    for n in 0..40u64 {
        let payload = common::event("Counted", serde_json::json!({ "n": n }));
        let position = append_ok(&mut on_leader, "counter", &payload);
        let follower = &mut followers[n as usize % 2];
        // Right away, on a follower: the write is there, whichever read asks.
        let read = events(follower, &format!("READ counter {n} 1 after {position}")).unwrap();
        assert_eq!(read.len(), 1, "READ after {position}");
        assert_eq!(read[0]["position"], position);
        let all = events(follower, &format!("READALL {position} 1 after {position}")).unwrap();
        assert_eq!(all[0]["data"]["n"], n);
        let typed = events(
            follower,
            &format!("READTYPES Counted {position} 10 after {position}"),
        )
        .unwrap();
        assert_eq!(typed.len(), 1);
        match follower.request(&format!("AGG counter after {position}")) {
            Reply::Aggregate { version, body, .. } => {
                assert_eq!(version, n);
                let state: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(state["n"], n);
            }
            other => panic!("AGG after: {other:?}"),
        }
    }
    // SUB after a position: its history, delivered before LIVE, holds the position.
    let payload = common::event("Last", serde_json::json!({}));
    let position = append_ok(&mut on_leader, "last", &payload);
    let follower = &mut followers[0];
    assert_eq!(
        follower.request(&format!("SUB s1 stream last after {position}")),
        Reply::Ok
    );
    match follower.reply() {
        Reply::Event { position: at, .. } => assert_eq!(at, position),
        other => panic!("expected the event before LIVE, got {other:?}"),
    }
    assert!(matches!(follower.reply(), Reply::Live { .. }));
    // Malformed: a position that is not a number.
    assert_eq!(
        events(follower, "READ counter 0 1 after soon"),
        Err(ErrorCode::InvalidArgument)
    );
}

#[test]
fn a_read_after_a_position_needs_no_leader_and_waits_a_bounded_time() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(None);
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    let survivor = *ids.iter().find(|&&id| id != leader).expect("a follower");
    let other = *ids
        .iter()
        .find(|&&id| id != leader && id != survivor)
        .expect("another follower");
    let mut on_leader = Client::connect(cluster.get(leader).addr);
    let payload = common::event("T", serde_json::json!({}));
    let position = append_ok(&mut on_leader, "s", &payload);
    let mut on_survivor = Client::connect(cluster.get(survivor).addr);
    assert_eq!(
        events(&mut on_survivor, &format!("READ s 0 10 after {position}"))
            .unwrap()
            .len(),
        1
    );
    // No majority is left: no leader can confirm a read index.
    cluster.node(leader).kill9();
    cluster.node(other).kill9();
    let mut linearizable = Client::connect(cluster.get(survivor).addr);
    linearizable.send_line("READ s 0 10");
    linearizable.send_line(&format!("READ s 0 10 after {}", position + 1000));
    let started = Instant::now();
    // What it has applied it serves at once.
    let read = events(&mut on_survivor, &format!("READ s 0 10 after {position}")).unwrap();
    assert_eq!(read.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a read after an applied position waited {:?}",
        started.elapsed()
    );
    // A plain read, and one after a position never written, are unavailable in bounded time.
    for what in ["a linearizable read", "a read after an unwritten position"] {
        match linearizable.reply() {
            Reply::Err(error) => assert_eq!(error.code, ErrorCode::Unavailable, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(4_500) && waited < Duration::from_secs(15),
        "answered unavailable after {waited:?}"
    );
}

#[test]
fn nodes_advertise_the_client_address_they_are_told_or_a_reachable_one() {
    let advertised_port = common::cluster::free_port();
    let wildcard_port = common::cluster::free_port();
    let cluster = Cluster::start_with(3, |id| match id {
        // Listens on every address: advertises --raft's host (127.0.0.1) with its port.
        1 => vec!["--listen".into(), format!("0.0.0.0:{wildcard_port}")],
        // Told what to advertise: a name, as a proxy or a DNS entry would be.
        2 => vec!["--advertise".into(), format!("localhost:{advertised_port}")],
        _ => vec![],
    });
    cluster.wait_for_leader(None);
    for id in [1, 2, 3] {
        let info = cluster.wait_for_client_urls(id);
        let urls = &info["cluster"]["client_urls"];
        assert_eq!(urls["1"], format!("127.0.0.1:{wildcard_port}"), "{info}");
        assert_eq!(urls["2"], format!("localhost:{advertised_port}"), "{info}");
        assert_eq!(urls["3"], cluster.get(3).addr.to_string(), "{info}");
        assert_eq!(info["cluster"]["node_id"], id);
    }
}

#[test]
fn the_rust_client_given_one_node_keeps_appending_after_it_is_killed() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(None);
    // The node the client knows must have heard from the others, so its INFO names them.
    cluster.wait_for_client_urls(leader);
    let only = cluster.get(leader).addr.to_string();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime
        .block_on(esdb_client::Client::connect(
            esdb_client::ClientOptions::new([only.clone()]),
        ))
        .expect("connect");
    assert_eq!(client.servers().len(), 3, "learned from INFO");
    const BEFORE_KILL: u64 = 10;
    const TOTAL: u64 = 30;
    let mut ids = Vec::new();
    let started = Instant::now();
    for n in 0..TOTAL {
        if n == BEFORE_KILL {
            cluster.node(leader).kill9();
        }
        let event =
            esdb_client::EventData::json("Counted", &serde_json::json!({ "n": n })).expect("event");
        ids.push(event.event_id);
        let expected = match n {
            0 => esdb_client::ExpectedVersion::NoStream,
            n => esdb_client::ExpectedVersion::Exact(n - 1),
        };
        // Retried by the client (same event id, exact version): applied once.
        let appended = runtime
            .block_on(client.append("counter", expected, [event]))
            .unwrap_or_else(|e| panic!("append {n}: {e}"));
        assert_eq!(appended.last_version, n);
        assert!(started.elapsed() < LEADER_TIMEOUT * 2, "appends too slow");
    }
    let now_on = runtime.block_on(client.server_addr()).expect("connected");
    assert_ne!(now_on, only, "the client moved off the killed node");
    let survivor = cluster.nodes.iter().find(|n| n.id != leader).expect("node");
    let stored = Client::connect(survivor.addr).read_stream("counter", 0, 100);
    let stored_ids: Vec<String> = stored
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let sent: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    assert_eq!(stored_ids, sent, "every append once, in order");
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn scrape(cluster: &Cluster, id: u64) -> String {
    let http = cluster.get(id).http_addr.expect("http address");
    let (status, body) = common::http_get(http, "/metrics");
    assert_eq!(status, 200);
    body
}

#[test]
fn metrics_show_each_nodes_raft_group_and_telemetry_names_leaders_and_peers() {
    let telemetry = || {
        vec![
            "--log-level".to_owned(),
            "warn,openraft=error,esdb::telemetry=debug".to_owned(),
        ]
    };
    let mut cluster = Cluster::start_with(3, |_| telemetry());
    let leader = cluster.wait_for_leader(None);
    let mut client = Client::connect(cluster.get(leader).addr);
    for n in 0..5 {
        append_ok(
            &mut client,
            "s",
            &common::event("T", serde_json::json!({ "n": n })),
        );
    }
    let followers: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|&id| id != leader)
        .collect();
    let store = "store=\"default\"";
    // The leader: leads, every follower caught up (lag 0), both peers up.
    let started = Instant::now();
    loop {
        let metrics = scrape(&cluster, leader);
        let lags: Vec<Option<f64>> = followers
            .iter()
            .map(|f| {
                sample(
                    &metrics,
                    &format!("esdb_raft_replication_lag_entries{{follower=\"{f}\",{store}}}"),
                )
            })
            .collect();
        let settled = lags.iter().all(|lag| *lag == Some(0.0))
            && sample(&metrics, &format!("esdb_raft_applied_index{{{store}}}"))
                == sample(&metrics, &format!("esdb_raft_last_log_index{{{store}}}"));
        if settled {
            assert_eq!(
                sample(&metrics, &format!("esdb_raft_is_leader{{{store}}}")),
                Some(1.0)
            );
            assert!(sample(&metrics, &format!("esdb_raft_term{{{store}}}")) >= Some(1.0));
            assert!(
                sample(
                    &metrics,
                    &format!("esdb_raft_leader_changes_total{{{store}}}")
                ) >= Some(1.0)
            );
            // The initial membership, the leader's blank entry, five appends.
            assert!(
                sample(&metrics, &format!("esdb_raft_commit_index{{{store}}}")) >= Some(6.0),
                "{metrics}"
            );
            for f in &followers {
                assert_eq!(
                    sample(&metrics, &format!("esdb_cluster_peer_up{{peer=\"{f}\"}}")),
                    Some(1.0)
                );
            }
            break;
        }
        assert!(
            started.elapsed() < LEADER_TIMEOUT,
            "replication never settled: {lags:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A follower: does not lead, knows no lag, has applied what the leader committed.
    let metrics = scrape(&cluster, followers[0]);
    assert_eq!(
        sample(&metrics, &format!("esdb_raft_is_leader{{{store}}}")),
        Some(0.0)
    );
    assert!(!metrics.contains("esdb_raft_replication_lag_entries{"));
    assert!(
        sample(
            &metrics,
            &format!("esdb_raft_leader_changes_total{{{store}}}")
        ) >= Some(1.0)
    );
    // Telemetry: every node saw the leader elected and its peers come up.
    for node in &cluster.nodes {
        let log = node.stderr();
        assert!(
            log.contains("cluster.leader.elected"),
            "node {}: {log}",
            node.id
        );
        assert!(log.contains("cluster.node.up"), "node {}: {log}", node.id);
    }
    // A follower dies: the leader sees it down, in the gauge and an event.
    let dead = followers[1];
    cluster.node(dead).kill9();
    let started = Instant::now();
    loop {
        let metrics = scrape(&cluster, leader);
        let down = sample(
            &metrics,
            &format!("esdb_cluster_peer_up{{peer=\"{dead}\"}}"),
        );
        if down == Some(0.0) && cluster.get(leader).stderr().contains("cluster.node.down") {
            break;
        }
        assert!(started.elapsed() < LEADER_TIMEOUT, "peer {dead} never down");
        std::thread::sleep(Duration::from_millis(100));
    }
}
