//! Inter-node TLS, against real `esdb` processes on loopback: three nodes with certificates
//! from the cluster's CA elect a leader and replicate; a node whose certificate another CA
//! signed, and one speaking plain TCP, both know the cluster secret and still cannot join.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::certs::{self, CertFiles};
use common::cluster::{append_ok, Cluster};
use common::Client;
use esdb_protocol::Reply;

/// How long a refused node is given to (wrongly) become a member before the test checks.
const REFUSED_JOIN_WAIT: Duration = Duration::from_secs(5);
/// How long the good nodes may take to show every event.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(30);

fn tls_args(cert: &Path, key: &Path, ca: &Path) -> Vec<String> {
    [
        "--cluster-tls-cert",
        cert.to_str().unwrap(),
        "--cluster-tls-key",
        key.to_str().unwrap(),
        "--cluster-tls-ca",
        ca.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn members(addr: std::net::SocketAddr) -> Vec<u64> {
    match Client::connect(addr).request("CLUSTER") {
        Reply::Cluster { body } => {
            let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
            status["stores"]["default"]["members"]
                .as_array()
                .expect("members")
                .iter()
                .map(|m| m["node_id"].as_u64().unwrap())
                .collect()
        }
        other => panic!("expected CLUSTER, got {other:?}"),
    }
}

#[test]
fn nodes_speak_mutual_tls_and_refuse_peers_without_a_cluster_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let files: CertFiles = certs::write_all(dir.path());
    let good = tls_args(&files.server_cert, &files.server_key, &files.ca);
    let mut cluster = Cluster::start_with(3, |_| good.clone());
    let leader = cluster.wait_for_leader(None);
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap().addr;
    // A write on a follower is forwarded to the leader over TLS and replicated to all.
    let mut client = Client::connect(follower);
    let payload = common::event("Made", serde_json::json!({ "over": "tls" }));
    for _ in 0..5 {
        append_ok(&mut client, "secured", &payload);
    }
    let deadline = Instant::now() + REPLICATION_DEADLINE;
    for node in &cluster.nodes {
        loop {
            let events = Client::connect(node.addr).read_all();
            if events.len() == 5 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {}: {} events",
                node.id,
                events.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Both know the secret; one has a certificate from another CA, one no TLS at all.
    let leader_raft = cluster.get(leader).raft_addr();
    let join = |extra: Vec<String>| -> Vec<String> {
        let mut args = vec!["--join".to_owned(), leader_raft.clone()];
        args.extend(extra);
        args
    };
    let rogue = join(tls_args(&files.rogue_cert, &files.rogue_key, &files.ca));
    cluster.add_node(4, &rogue);
    cluster.add_node(5, &join(Vec::new()));
    std::thread::sleep(REFUSED_JOIN_WAIT);
    let leader_addr = cluster.get(leader).addr;
    let mut seen = members(leader_addr);
    seen.sort_unstable();
    assert_eq!(
        seen,
        vec![1, 2, 3],
        "a node without a cluster certificate joined"
    );
    // Each says why it is not in (a plain node waits out the handshake timeout first: the
    // TLS listener waits for a ClientHello that never comes).
    let deadline = Instant::now() + REPLICATION_DEADLINE;
    for id in [4, 5] {
        while !cluster
            .get(id)
            .stderr()
            .contains("joining the cluster: not yet")
        {
            assert!(
                Instant::now() < deadline,
                "node {id} says nothing of its refused join: {}",
                cluster.get(id).stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The cluster still works after the refused attempts.
    append_ok(&mut Client::connect(leader_addr), "secured", &payload);
}

#[test]
fn half_a_tls_setting_or_a_timeout_below_the_heartbeat_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let port = common::cluster::free_port().to_string();
    let raft = format!("127.0.0.1:{port}");
    let peers = format!("1={raft},2=127.0.0.1:1");
    let cluster = [
        "--node-id",
        "1",
        "--raft",
        raft.as_str(),
        "--peers",
        peers.as_str(),
    ];
    let cert = files.server_cert.to_str().unwrap();
    for (extra, complaint) in [
        (vec!["--cluster-tls-cert", cert], "needs all of"),
        (
            vec!["--raft-election-timeout-ms", "250"],
            "above the 250 ms heartbeat",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_esdb"))
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(cluster)
            .args(&extra)
            .env("ESDB_CLUSTER_SECRET", common::cluster::SECRET)
            .output()
            .expect("run esdb");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} started");
        assert!(stderr.contains(complaint), "{extra:?}: {stderr}");
    }
}
