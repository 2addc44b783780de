//! Multicast discovery between real `esdb` processes, each in a network namespace of its own
//! joined by a bridge (made and removed by the test; addresses only inside them): three nodes
//! started with only `--discovery multicast --expect 3` and the secret form one cluster (one of
//! them initializes it); a fourth with the wrong secret is ignored; a fifth with the right one,
//! started later, joins it as a voter and holds every event.
//!
//! The same with `--discovery dns`: a name with three A records (a hosts file `ip netns exec`
//! mounts inside the node's namespace, as a headless service's name resolves in Kubernetes).
//!
//! Needs root (`ip netns`); without it each test says so and returns.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use esdb_protocol::Reply;

use common::cluster::{append_ok, ids_and_streams, SECRET};
use common::Client;

/// How long the nodes may take to find each other and elect a leader.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// Announcements every 200 ms, so the test waits little.
const INTERVAL_MS: &str = "200";
const SUBNET: &str = "10.99.0";
const RAFT_PORT: u16 = 7350;
const CLIENT_PORT: u16 = 4350;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn ip_ok(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A hub namespace with a bridge, and one namespace per node with a veth on the bridge at
/// `10.99.0.<id>`; removed (with everything in them) on drop.
struct Net {
    prefix: String,
    namespaces: Vec<String>,
}

/// The name `--discovery dns` resolves, and the nodes it names.
const DNS_NAME: &str = "esdb-peers.test";

impl Net {
    fn new(tag: &str, nodes: &[u64]) -> Net {
        let prefix = format!("esdb{tag}{}", std::process::id());
        let hub = format!("{prefix}-hub");
        let mut net = Net {
            prefix: prefix.clone(),
            namespaces: vec![hub.clone()],
        };
        ip_ok(&["netns", "add", &hub]);
        ip_ok(&["-n", &hub, "link", "set", "lo", "up"]);
        ip_ok(&[
            "-n",
            &hub,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip_ok(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{SUBNET}.254/24"),
            "dev",
            "br0",
        ]);
        ip_ok(&["-n", &hub, "link", "set", "br0", "up"]);
        for id in nodes {
            let ns = format!("{prefix}-n{id}");
            ip_ok(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
            let (inner, outer) = (format!("eth{id}"), format!("v{id}"));
            ip_ok(&[
                "-n", &hub, "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns",
                &ns,
            ]);
            ip_ok(&["-n", &hub, "link", "set", &outer, "master", "br0"]);
            ip_ok(&["-n", &hub, "link", "set", &outer, "up"]);
            ip_ok(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{SUBNET}.{id}/24"),
                "dev",
                &inner,
            ]);
            ip_ok(&["-n", &ns, "link", "set", &inner, "up"]);
            ip_ok(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", &inner]);
            // `ip netns exec` mounts /etc/netns/<ns>/hosts on /etc/hosts for the node.
            let etc = format!("/etc/netns/{ns}");
            std::fs::create_dir_all(&etc).expect("/etc/netns dir");
            let hosts: String = [1, 2, 3]
                .iter()
                .map(|id| format!("{SUBNET}.{id} {DNS_NAME}\n"))
                .collect();
            std::fs::write(format!("{etc}/hosts"), hosts).expect("hosts file");
        }
        net
    }

    fn node_ns(&self, id: u64) -> String {
        format!("{}-n{id}", self.prefix)
    }

    /// Moves the calling thread (only it) into the hub namespace, from which every node's
    /// address is reachable.
    fn enter_hub(&self) {
        let file = std::fs::File::open(format!("/run/netns/{}-hub", self.prefix)).expect("netns");
        // SAFETY: setns on an open namespace file descriptor; it changes this thread's network
        // namespace only.
        let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(done, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            ip(&["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
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

fn start(net: &Net, data: &std::path::Path, id: u64, secret: &str) -> Node {
    start_with(net, data, id, secret, &["--discovery", "multicast"])
}

fn start_with(
    net: &Net,
    data: &std::path::Path,
    id: u64,
    secret: &str,
    discovery: &[&str],
) -> Node {
    let host = format!("{SUBNET}.{id}");
    let log = std::fs::File::create(data.join(format!("node-{id}.stderr"))).expect("log");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.node_ns(id)])
        .arg(env!("CARGO_BIN_EXE_esdb"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data.join(format!("node-{id}")))
        .args(["--listen", &format!("{host}:{CLIENT_PORT}")])
        .args(["--http", "127.0.0.1:0"])
        .args(["--node-id", &id.to_string()])
        .args(["--raft", &format!("{host}:{RAFT_PORT}")])
        .args(discovery)
        .args(["--expect", "3"])
        .args(["--discovery-interval-ms", INTERVAL_MS])
        .args(["--log-level", "warn,openraft=error"])
        .env("ESDB_CLUSTER_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn esdb in its namespace");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("announce line");
    let stderr =
        || std::fs::read_to_string(data.join(format!("node-{id}.stderr"))).unwrap_or_default();
    let addr = line
        .strip_prefix("esdb listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("node {id} did not start: {line:?} {}", stderr()))
        .parse()
        .expect("addr");
    Node { child, addr }
}

fn status(addr: SocketAddr) -> serde_json::Value {
    match Client::connect(addr).request("CLUSTER") {
        Reply::Cluster { body } => {
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["stores"]["default"].clone()
        }
        other => panic!("expected CLUSTER, got {other:?}"),
    }
}

fn voters(group: &serde_json::Value) -> Vec<u64> {
    let mut ids: Vec<u64> = group["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter(|m| m["role"] == "voter")
                .filter_map(|m| m["node_id"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// Waits until every node at `addrs` sees exactly `expected` as voters and one leader.
fn wait_for_cluster(addrs: &[SocketAddr], expected: &[u64]) -> u64 {
    let started = Instant::now();
    loop {
        let groups: Vec<serde_json::Value> = addrs.iter().map(|a| status(*a)).collect();
        let leaders: Vec<Option<u64>> = groups.iter().map(|g| g["leader_id"].as_u64()).collect();
        if groups.iter().all(|g| voters(g) == expected)
            && leaders[0].is_some()
            && leaders.iter().all(|l| *l == leaders[0])
        {
            return leaders[0].expect("checked");
        }
        assert!(
            started.elapsed() < FORM_TIMEOUT,
            "no cluster of {expected:?}: {groups:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn nodes_with_the_secret_find_each_other_by_multicast_and_a_wrong_secret_is_ignored() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !ip(&["netns", "list"]) {
        eprintln!("skipped: network namespaces need root and iproute2");
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let net = Net::new("mc", &[1, 2, 3, 4, 5]);
    let nodes: Vec<Node> = [1, 2, 3]
        .iter()
        .map(|&id| start(&net, data.path(), id, SECRET))
        .collect();
    let stranger = start(&net, data.path(), 4, "another cluster's secret, 32 b.");
    net.enter_hub();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let leader = wait_for_cluster(&addrs, &[1, 2, 3]);
    assert!((1..=3).contains(&leader));

    let mut client = Client::connect(addrs[1]);
    for i in 0..5 {
        append_ok(
            &mut client,
            "s",
            &common::event("T", serde_json::json!({ "i": i })),
        );
    }
    let expected = ids_and_streams(&client.read_all());
    assert_eq!(
        ids_and_streams(&Client::connect(addrs[2]).read_all()),
        expected
    );

    // A fifth node with the secret joins the running cluster as a voter.
    let fifth = start(&net, data.path(), 5, SECRET);
    let mut all = addrs.clone();
    all.push(fifth.addr);
    wait_for_cluster(&all, &[1, 2, 3, 5]);
    let started = Instant::now();
    while ids_and_streams(&Client::connect(fifth.addr).read_all()) != expected {
        assert!(started.elapsed() < FORM_TIMEOUT, "node 5 lacks events");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The stranger heard every announcement and was heard by none: no member knows it, and
    // it holds no group.
    for addr in &all {
        let group = status(*addr);
        assert!(
            group["members"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["node_id"] != 4),
            "{group}"
        );
    }
    let alone = status(stranger.addr);
    assert!(alone["leader_id"].is_null(), "{alone}");
    assert_eq!(voters(&alone), Vec::<u64>::new(), "{alone}");
    let info = Client::connect(addrs[0]).info;
    assert!(info["cluster"]["client_urls"].get("4").is_none(), "{info}");
}

#[test]
fn nodes_find_each_other_by_the_records_of_a_dns_name() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !ip(&["netns", "list"]) {
        eprintln!("skipped: network namespaces need root and iproute2");
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let net = Net::new("dns", &[1, 2, 3]);
    let dns = ["--discovery", "dns", "--dns-name", DNS_NAME];
    let nodes: Vec<Node> = [1, 2, 3]
        .iter()
        .map(|&id| start_with(&net, data.path(), id, SECRET, &dns))
        .collect();
    net.enter_hub();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    wait_for_cluster(&addrs, &[1, 2, 3]);
    let mut client = Client::connect(addrs[2]);
    append_ok(&mut client, "s", &common::event("T", serde_json::json!({})));
    let expected = ids_and_streams(&client.read_all());
    assert_eq!(
        ids_and_streams(&Client::connect(addrs[0]).read_all()),
        expected
    );
}
