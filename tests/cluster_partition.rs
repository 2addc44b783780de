//! A real network partition: three `esdb` nodes, each in its own network namespace, joined by
//! a bridge the test makes (traffic only to addresses inside those namespaces). The leader's
//! link is cut: the majority elects a new leader and takes writes; the cut-off old leader
//! acknowledges no write and serves no stale read (both answer `unavailable`); once the link is
//! back the old leader follows, and every node holds the same events, the cut-off write not
//! among them.
//!
//! Needs root (`ip netns`); skipped with a message when namespaces cannot be made.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use esdb_protocol::{ErrorCode, Reply};

use common::Client;

const SECRET: &str = "a partition test secret, 32 byte";
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT_PORT: u16 = 4350;
const RAFT_PORT: u16 = 7350;

fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(args: &[&str]) {
    assert!(run(args), "{}", args.join(" "));
}

/// The namespaces, veth pairs and bridge of one test, removed on drop.
struct Net {
    tag: String,
    subnet: String,
    size: u32,
}

impl Net {
    fn namespace(&self, n: u32) -> String {
        format!("esdb-{}-{n}", self.tag)
    }

    fn outer_link(&self, n: u32) -> String {
        format!("ev{}n{n}", self.tag)
    }

    fn bridge(&self) -> String {
        format!("eb{}", self.tag)
    }

    fn ip(&self, n: u32) -> String {
        format!("{}.{n}", self.subnet)
    }

    fn make(size: u32) -> Option<Net> {
        let pid = std::process::id();
        let net = Net {
            tag: format!("{}", pid % 100_000),
            subnet: format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250),
            size,
        };
        if !run(&["ip", "netns", "add", &net.namespace(0)]) {
            return None;
        }
        must(&["ip", "netns", "del", &net.namespace(0)]);
        let bridge = net.bridge();
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        let host = format!("{}/24", net.ip(254));
        must(&["ip", "addr", "add", &host, "dev", &bridge]);
        must(&["ip", "link", "set", &bridge, "up"]);
        for n in 1..=size {
            let ns = net.namespace(n);
            let outer = net.outer_link(n);
            must(&["ip", "netns", "add", &ns]);
            must(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            must(&["ip", "link", "set", &outer, "master", &bridge]);
            must(&["ip", "link", "set", &outer, "up"]);
            let inner = format!("{}/24", net.ip(n));
            must(&[
                "ip", "netns", "exec", &ns, "ip", "addr", "add", &inner, "dev", "eth0",
            ]);
            must(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up",
            ]);
            must(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        Some(net)
    }

    /// Cuts node `n` off (its link down) or joins it again.
    fn set_link(&self, n: u32, up: bool) {
        let state = if up { "up" } else { "down" };
        must(&["ip", "link", "set", &self.outer_link(n), state]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in 1..=self.size {
            // The pair goes with either end; deleting the outer one does not wait for the
            // kernel to free the namespace.
            run(&["ip", "link", "del", &self.outer_link(n)]);
            run(&["ip", "netns", "del", &self.namespace(n)]);
        }
        run(&["ip", "link", "del", &self.bridge()]);
    }
}

struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(net: &Net, n: u32, data_dir: &std::path::Path) -> Node {
    let peers: Vec<String> = (1..=net.size)
        .map(|m| format!("{m}={}:{RAFT_PORT}", net.ip(m)))
        .collect();
    let listen = format!("{}:{CLIENT_PORT}", net.ip(n));
    let raft = format!("{}:{RAFT_PORT}", net.ip(n));
    let log = std::env::var("TEST_ESDB_LOG").unwrap_or_else(|_| "warn,openraft=error".into());
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.namespace(n),
            env!("CARGO_BIN_EXE_esdb"),
            "serve",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--listen",
            &listen,
            "--http",
            "127.0.0.1:0",
            "--node-id",
            &n.to_string(),
        ])
        .args([
            "--raft",
            &raft,
            "--peers",
            &peers.join(","),
            "--log-level",
            &log,
        ])
        .env("ESDB_CLUSTER_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn esdb in its namespace");
    let (addr, _) = common::read_announced_addrs(&mut child);
    Node { child, addr }
}

fn leader_seen_by(addr: SocketAddr) -> Option<u64> {
    Client::connect(addr).info["cluster"]["leader_id"].as_u64()
}

fn wait_for_leader(nodes: &BTreeMap<u32, Node>, ask: &[u32], not: Option<u64>) -> u64 {
    let started = Instant::now();
    loop {
        let seen: Vec<Option<u64>> = ask.iter().map(|n| leader_seen_by(nodes[n].addr)).collect();
        if let Some(Some(leader)) = seen.first() {
            if seen.iter().all(|s| *s == Some(*leader)) && Some(*leader) != not {
                return *leader;
            }
        }
        assert!(
            started.elapsed() < LEADER_TIMEOUT,
            "no new leader: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn payload(id: uuid::Uuid, n: u64) -> String {
    serde_json::json!({"event_id": id, "event_type": "Counted", "data": {"n": n}}).to_string()
}

/// Every event id in `$all` on the node, or `None` while it cannot serve a read.
fn event_ids(addr: SocketAddr) -> Option<Vec<String>> {
    match Client::connect(addr).request("READALL 0 10000") {
        Reply::Events { body, .. } => {
            let events: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("json");
            Some(
                events
                    .iter()
                    .map(|e| e["event_id"].as_str().expect("id").to_owned())
                    .collect(),
            )
        }
        Reply::Err(error) if error.code == ErrorCode::Unavailable => None,
        other => panic!("READALL: {other:?}"),
    }
}

/// Appends until acknowledged (retrying `unavailable` with the same event id).
fn append_acknowledged(addr: SocketAddr, id: uuid::Uuid, n: u64) {
    let started = Instant::now();
    loop {
        let mut client = Client::connect(addr);
        match client.append("counter", "any", &payload(id, n)) {
            Reply::Appended { .. } => return,
            Reply::Err(error) if error.code == ErrorCode::Unavailable => {}
            other => panic!("append {n}: {other:?}"),
        }
        assert!(
            started.elapsed() < LEADER_TIMEOUT,
            "append {n} never acknowledged"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_leader_cut_off_by_a_partition_acknowledges_nothing_and_serves_no_stale_read() {
    let Some(net) = Net::make(3) else {
        eprintln!("skipped: cannot create network namespaces (needs root)");
        return;
    };
    let temp = tempfile::tempdir().expect("tempdir");
    let nodes: BTreeMap<u32, Node> = (1..=3)
        .map(|n| {
            (
                n,
                start_node(&net, n, &temp.path().join(format!("node-{n}"))),
            )
        })
        .collect();
    let leader = wait_for_leader(&nodes, &[1, 2, 3], None) as u32;
    let majority: Vec<u32> = (1..=3).filter(|&n| n != leader).collect();
    let mut acknowledged = Vec::new();
    for n in 0..10 {
        let id = uuid::Uuid::new_v4();
        append_acknowledged(nodes[&majority[0]].addr, id, n);
        acknowledged.push(id.to_string());
    }
    // Once its only link is down, the old leader is reachable only from inside its own
    // namespace: a client thread moves there.
    let old_leader_addr = nodes[&leader].addr;
    let ns_path = format!("/var/run/netns/{}", net.namespace(leader));
    let cut_off_write = uuid::Uuid::new_v4();
    net.set_link(leader, false);
    let inside = std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).expect("namespace handle");
        // SAFETY: moves only this thread into the old leader's network namespace.
        let joined =
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
        assert_eq!(joined, 0, "setns");
        let mut client = Client::connect(old_leader_addr);
        let write = client.append("counter", "any", &payload(cut_off_write, 999));
        let read = client.request("READALL 0 100");
        (write, read)
    });
    // Meanwhile the majority elects a new leader and takes writes.
    let new_leader = wait_for_leader(&nodes, &majority, Some(leader as u64));
    assert_ne!(new_leader, leader as u64);
    for n in 10..20 {
        let id = uuid::Uuid::new_v4();
        append_acknowledged(nodes[&majority[1]].addr, id, n);
        acknowledged.push(id.to_string());
    }
    let (write, read) = inside.join().expect("client inside the cut-off namespace");
    match write {
        Reply::Err(error) => assert_eq!(error.code, ErrorCode::Unavailable, "{error:?}"),
        other => panic!("the cut-off leader acknowledged a write: {other:?}"),
    }
    match read {
        Reply::Err(error) => assert_eq!(error.code, ErrorCode::Unavailable, "{error:?}"),
        other => panic!("the cut-off leader served a read it cannot vouch for: {other:?}"),
    }
    // Healed: the old leader follows the new one and holds what the majority holds.
    net.set_link(leader, true);
    let started = Instant::now();
    let mut orders = Vec::new();
    for n in 1..=3 {
        let ids = loop {
            let ids = event_ids(nodes[&n].addr).unwrap_or_default();
            if ids.len() >= acknowledged.len() || started.elapsed() > LEADER_TIMEOUT {
                break ids;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            !ids.contains(&cut_off_write.to_string()),
            "node {n}: the cut-off write"
        );
        assert_eq!(
            ids, acknowledged,
            "node {n}: every acknowledged event once, in order"
        );
        orders.push(ids);
    }
    assert_eq!(wait_for_leader(&nodes, &[1, 2, 3], None), new_leader);
    drop(nodes);
}
