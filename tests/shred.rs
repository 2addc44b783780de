//! Encrypted streams and crypto-shredding, black-box (PROTOCOL.md `ENCRYPT`, `SHRED`): the real
//! server, its data on disk searched byte for byte, kill -9 restarts, a restart without the
//! key and with another, and a three-node cluster sharing one key.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use esdb_protocol::Reply;

use common::cluster::{Cluster, LEADER_TIMEOUT};
use common::{Client, Server};

fn write_key(dir: &Path, name: &str, hex_digit: char) -> String {
    let path = dir.join(name);
    std::fs::write(&path, hex_digit.to_string().repeat(64)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Every byte under `dir`: the LMDB files and the Raft log's segments.
fn disk_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn ok(reply: Reply) {
    assert_eq!(reply, Reply::Ok);
}

fn error_code(reply: Reply) -> String {
    match reply {
        Reply::Err(error) => error.code.as_str().to_owned(),
        other => panic!("expected -ERR, got {other:?}"),
    }
}

fn person(name: &str) -> String {
    serde_json::json!({"event_type": "Registered", "data": {"name": name}}).to_string()
}

#[test]
fn shredded_data_is_gone_from_disk_reads_and_subscriptions_across_restarts() {
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), "master.key", 'a');
    let mut server = Server::start(&["--encryption-key-file", &key]);
    let mut client = server.client();
    // Unique markers, so finding one on disk can only mean this test's plaintext.
    let secret = format!("Ada-{}", uuid::Uuid::new_v4().simple());
    let public = format!("Bob-{}", uuid::Uuid::new_v4().simple());

    ok(client.request("ENCRYPT user-1"));
    // A live payload subscription matches on the data as written.
    let mut watcher = server.client();
    let selector = serde_json::json!({"data": {"name": secret}}).to_string();
    ok(watcher.request(&format!("SUB w event_payload {selector}")));
    assert!(matches!(watcher.reply(), Reply::Live { .. }));
    assert!(matches!(
        client.append("user-1", "no_stream", &person(&secret)),
        Reply::Appended { .. }
    ));
    assert!(matches!(
        client.append("plain", "no_stream", &person(&public)),
        Reply::Appended { .. }
    ));
    match watcher.reply() {
        Reply::Event { body, .. } => {
            let record: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(record["data"]["name"], secret);
        }
        other => panic!("expected EVENT, got {other:?}"),
    }
    assert_eq!(
        client.read_stream("user-1", 0, 10)[0]["data"]["name"],
        secret
    );

    server.kill9();
    let disk = disk_bytes(&server.data_dir);
    assert!(
        contains(&disk, &public),
        "the search finds plaintext where there is some"
    );
    assert!(
        !contains(&disk, &secret),
        "the encrypted stream's data is on disk only sealed"
    );
    server.restart();
    let mut client = server.client();
    assert_eq!(
        client.read_stream("user-1", 0, 10)[0]["data"]["name"],
        secret
    );

    ok(client.request("SHRED user-1"));
    server.kill9();
    server.restart();
    let mut client = server.client();
    let events = client.read_stream("user-1", 0, 10);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"], serde_json::Value::Null);
    assert_eq!(events[0]["shredded"], true);
    assert_eq!(events[0]["event_type"], "Registered");
    let all = client.read_all();
    assert_eq!(all.len(), 2, "$all keeps every position");
    assert_eq!(all[0]["shredded"], true);
    assert_eq!(all[1]["data"]["name"], public);
    assert_eq!(
        error_code(client.append("user-1", "any", &person(&secret))),
        "stream_deleted"
    );

    // Without the key: nothing new can be encrypted, and what is sealed is refused, not served
    // sealed; shredded and plain streams read as before.
    drop(client);
    server.kill9();
    let data_dir = server.data_dir.clone();
    let _keep = server;
    let keyless = Server::start_in(&data_dir, &[]);
    let mut client = keyless.client();
    assert_eq!(
        error_code(client.request("ENCRYPT user-2")),
        "invalid_argument"
    );
    assert_eq!(client.read_stream("user-1", 0, 10)[0]["shredded"], true);
    assert_eq!(
        client.read_stream("plain", 0, 10)[0]["data"]["name"],
        public
    );
}

#[test]
fn without_the_right_key_an_encrypted_stream_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), "master.key", 'b');
    let other = write_key(keys.path(), "other.key", 'c');
    let mut server = Server::start(&["--encryption-key-file", &key]);
    let mut client = server.client();
    ok(client.request("ENCRYPT user-1"));
    assert!(matches!(
        client.append("user-1", "no_stream", &person("Grace")),
        Reply::Appended { .. }
    ));
    drop(client);
    server.kill9();
    let data_dir = server.data_dir.clone();
    let _keep = server;

    let keyless = Server::start_in(&data_dir, &[]);
    let mut client = keyless.client();
    assert_eq!(
        error_code(client.request("READ user-1 0 10")),
        "unavailable"
    );
    // A write a keyless node cannot seal is refused, never stored in the clear.
    assert_eq!(
        error_code(client.append("user-1", "any", &person("Grace"))),
        "unavailable"
    );
    drop(client);
    drop(keyless);

    let wrong = Server::start_in(&data_dir, &["--encryption-key-file", &other]);
    let mut client = wrong.client();
    assert_eq!(
        error_code(client.request("READ user-1 0 10")),
        "unreadable_event"
    );
    drop(client);
    drop(wrong);

    let bad = keys.path().join("bad.key");
    std::fs::write(&bad, "not hex").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args(["serve", "--data-dir"])
        .arg(&data_dir)
        .arg("--encryption-key-file")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("64 hexadecimal digits"), "{stderr}");
}

/// Reads `stream` on `addr` until `check` holds (a follower applies a moment after the leader).
fn wait_for_read(
    addr: std::net::SocketAddr,
    stream: &str,
    check: impl Fn(&[serde_json::Value]) -> bool,
) {
    let started = Instant::now();
    loop {
        let mut client = Client::connect(addr);
        if let Reply::Events { body, .. } = client.request(&format!("READ {stream} 0 10")) {
            let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            if check(&events) {
                return;
            }
        }
        assert!(
            started.elapsed() < LEADER_TIMEOUT,
            "{stream} never read as expected on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cluster_sharing_a_key_encrypts_replicates_and_shreds_everywhere() {
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), "master.key", 'd');
    let args = ["--encryption-key-file".to_owned(), key.clone()];
    let cluster = Cluster::start_with(3, |_| args.to_vec());
    let leader = cluster.wait_for_leader(None);
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let (leader_addr, follower_addr) = (cluster.get(leader).addr, cluster.get(follower).addr);

    let mut on_leader = Client::connect(leader_addr);
    ok(on_leader.request("ENCRYPT user-1"));
    assert!(matches!(
        on_leader.append("user-1", "no_stream", &person("Hedy")),
        Reply::Appended { .. }
    ));
    wait_for_read(follower_addr, "user-1", |events| {
        events.len() == 1 && events[0]["data"]["name"] == "Hedy"
    });
    // A write through the follower, once it knows the key, is sealed there and forwarded.
    let mut on_follower = Client::connect(follower_addr);
    assert!(matches!(
        on_follower.append("user-1", "0", &person("Hedy L.")),
        Reply::Appended { .. }
    ));
    ok(on_follower.request("SHRED user-1"));
    for id in 1..=3 {
        wait_for_read(cluster.get(id).addr, "user-1", |events| {
            events.len() == 2 && events.iter().all(|e| e["shredded"] == true)
        });
    }
}
