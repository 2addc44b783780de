//! Three real `esdb` processes on loopback forming a cluster (ports chosen at run time): writes
//! on any node, the same events in the same order on every node, and a leader killed with
//! kill -9 while a client keeps appending (retrying with the same event ids when an outcome is
//! unknown), after which every acknowledged event is present exactly once on every node.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use esdb_protocol::{Reply, ReplyDecoder};

use common::Client;

const SECRET: &str = "a test cluster secret, 32 bytes.";
/// How long the cluster may take to elect its first leader (or a new one).
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// A free loopback port: bound, read, released (the node binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Node {
    id: u64,
    child: Option<Child>,
    addr: SocketAddr,
    args: Vec<String>,
    data_dir: PathBuf,
}

impl Node {
    /// Starts the node (its stderr in a file beside its data, shown if it fails to start).
    fn start(&mut self) {
        let log = self.data_dir.with_extension("stderr");
        let stderr = std::fs::File::create(&log).expect("stderr file");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_esdb"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--http", "127.0.0.1:0"])
            .args(&self.args)
            .env("ESDB_CLUSTER_SECRET", SECRET)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr);
        let mut child = command.spawn().expect("spawn esdb");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).ok();
        let Some(addr) = line
            .strip_prefix("esdb listening on ")
            .and_then(|rest| rest.split_whitespace().next())
        else {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("node {} did not start: {stderr}", self.id);
        };
        self.addr = addr.parse().expect("addr");
        self.child = Some(child);
    }

    /// Starts the node again on its data, with a new client port.
    fn restart(&mut self) {
        let listen = self
            .args
            .iter()
            .position(|a| a == "--listen")
            .expect("--listen")
            + 1;
        self.args[listen] = format!("127.0.0.1:{}", free_port());
        self.start();
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Cluster {
    nodes: Vec<Node>,
    _temp: tempfile::TempDir,
}

impl Cluster {
    fn start(size: u64) -> Cluster {
        let temp = tempfile::tempdir().expect("tempdir");
        let raft_ports: BTreeMap<u64, u16> = (1..=size).map(|id| (id, free_port())).collect();
        let peers: Vec<String> = raft_ports
            .iter()
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect();
        let mut nodes: Vec<Node> = raft_ports
            .iter()
            .map(|(&id, port)| {
                let listen = format!("127.0.0.1:{}", free_port());
                let args = vec![
                    "--listen".to_owned(),
                    listen.clone(),
                    "--node-id".to_owned(),
                    id.to_string(),
                    "--raft".to_owned(),
                    format!("127.0.0.1:{port}"),
                    "--peers".to_owned(),
                    peers.join(","),
                    // openraft warns at every unreachable peer, which a kill makes many of.
                    "--log-level".to_owned(),
                    std::env::var("TEST_ESDB_LOG").unwrap_or_else(|_| "warn,openraft=error".into()),
                ];
                Node {
                    id,
                    child: None,
                    addr: listen.parse().expect("addr"),
                    args,
                    data_dir: temp.path().join(format!("node-{id}")),
                }
            })
            .collect();
        for node in &mut nodes {
            node.start();
        }
        Cluster { nodes, _temp: temp }
    }

    fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node")
    }

    /// The leader every running node agrees on (from `INFO`'s `cluster` object).
    fn wait_for_leader(&self, not: Option<u64>) -> u64 {
        let started = Instant::now();
        loop {
            let leaders: HashSet<Option<u64>> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| {
                    let client = Client::connect(n.addr);
                    client.info["cluster"]["leader_id"].as_u64()
                })
                .collect();
            if leaders.len() == 1 {
                if let Some(Some(leader)) = leaders.into_iter().next() {
                    if Some(leader) != not {
                        return leader;
                    }
                }
            }
            assert!(
                started.elapsed() < LEADER_TIMEOUT,
                "no agreed leader within {LEADER_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn append_ok(client: &mut Client, stream: &str, payload: &str) -> u64 {
    match client.append(stream, "any", payload) {
        Reply::Appended { last_position, .. } => last_position,
        other => panic!("expected APPENDED, got {other:?}"),
    }
}

fn ids_and_streams(events: &[serde_json::Value]) -> Vec<(String, String, u64)> {
    events
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().expect("event_id").to_owned(),
                e["stream_id"].as_str().expect("stream_id").to_owned(),
                e["position"].as_u64().expect("position"),
            )
        })
        .collect()
}

#[test]
fn info_names_the_cluster_and_its_client_addresses() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(None);
    let started = Instant::now();
    loop {
        let info = Client::connect(cluster.nodes[1].addr).info;
        let urls = &info["cluster"]["client_urls"];
        if urls.as_object().is_some_and(|urls| urls.len() == 3) {
            assert_eq!(info["cluster"]["node_id"], 2);
            assert_eq!(info["cluster"]["leader_id"], leader);
            assert_eq!(info["cluster"]["members"], serde_json::json!([1, 2, 3]));
            for node in &cluster.nodes {
                assert_eq!(urls[node.id.to_string()], node.addr.to_string());
            }
            break;
        }
        assert!(started.elapsed() < LEADER_TIMEOUT, "client urls: {info}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cluster_status(addr: SocketAddr) -> serde_json::Value {
    match Client::connect(addr).request("CLUSTER") {
        Reply::Cluster { body } => serde_json::from_slice(&body).expect("CLUSTER json"),
        other => panic!("expected CLUSTER, got {other:?}"),
    }
}

#[test]
fn cluster_status_names_members_roles_the_leader_and_lag() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(None);
    let leader_addr = cluster
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .expect("leader")
        .addr;
    let mut client = Client::connect(cluster.nodes[0].addr);
    append_ok(&mut client, "s", &common::event("T", serde_json::json!({})));
    // The leader knows every member's lag; once replicated, it is 0 for all three.
    let started = Instant::now();
    loop {
        let status = cluster_status(leader_addr);
        let group = &status["stores"]["default"];
        assert_eq!(status["node_id"], leader);
        assert_eq!(group["leader_id"], leader);
        assert_eq!(group["state"], "leader");
        let members = group["members"].as_array().expect("members");
        let ids: Vec<u64> = members
            .iter()
            .map(|m| m["node_id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!(members.iter().all(|m| m["role"] == "voter"));
        let leaders: Vec<u64> = members
            .iter()
            .filter(|m| m["leader"] == true)
            .map(|m| m["node_id"].as_u64().unwrap())
            .collect();
        assert_eq!(leaders, [leader]);
        if members
            .iter()
            .all(|m| m["lag"] == 0 && m["reachable"] == true)
        {
            break;
        }
        assert!(started.elapsed() < LEADER_TIMEOUT, "lag never 0: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A follower names the leader but cannot know the lag.
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .expect("follower");
    let status = cluster_status(follower.addr);
    let group = &status["stores"]["default"];
    assert_eq!(group["state"], "follower");
    assert_eq!(group["leader_id"], leader);
    assert!(group["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["lag"].is_null()));
}

#[test]
fn a_single_server_answers_cluster_as_a_group_of_one() {
    let server = common::Server::start(&[]);
    let status = cluster_status(server.addr);
    let group = &status["stores"]["default"];
    assert_eq!(status["node_id"], 1);
    assert_eq!(group["leader_id"], 1);
    assert_eq!(group["members"][0]["client_url"], server.addr.to_string());
    assert_eq!(group["members"].as_array().unwrap().len(), 1);
}

#[test]
fn appends_on_any_node_read_the_same_in_the_same_order_everywhere() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(None);
    let mut clients: Vec<Client> = cluster
        .nodes
        .iter()
        .map(|n| Client::connect(n.addr))
        .collect();
    // Every node takes writes; each connection's pipelined writes keep their order.
    let mut expected_order = Vec::new();
    for round in 0..5 {
        for (index, client) in clients.iter_mut().enumerate() {
            let stream = format!("stream-{}", round % 2);
            let payload = common::event("Tick", serde_json::json!({"round": round, "node": index}));
            let position = append_ok(client, &stream, &payload);
            expected_order.push(position);
        }
    }
    // A pipelined burst on a follower comes back in order.
    let follower = cluster
        .nodes
        .iter()
        .position(|n| n.id != leader)
        .expect("follower");
    let client = &mut clients[follower];
    for n in 0..20 {
        let payload = common::event("Burst", serde_json::json!({ "n": n }));
        let mut frame = format!("APPEND burst {} {}\r\n", n as i64 - 1, payload.len()).into_bytes();
        frame.extend_from_slice(payload.as_bytes());
        frame.extend_from_slice(b"\r\n");
        client.send_raw(&frame);
    }
    for n in 0..20u64 {
        match client.reply() {
            Reply::Appended { last_version, .. } => assert_eq!(last_version, n),
            other => panic!("burst append {n}: {other:?}"),
        }
    }
    // Linearizable reads: right after the acks, every node returns everything, in one order.
    let reference = ids_and_streams(&clients[0].read_all());
    assert_eq!(reference.len(), 15 + 20);
    let positions: Vec<u64> = reference.iter().map(|(_, _, p)| *p).collect();
    assert_eq!(
        positions,
        (0..35).collect::<Vec<u64>>(),
        "gapless positions"
    );
    for client in &mut clients[1..] {
        assert_eq!(ids_and_streams(&client.read_all()), reference);
    }
    drop(clients);
    let leader_node = cluster.node(leader);
    assert!(leader_node.child.is_some());
}

/// A client that fails over between nodes and never panics on a broken connection.
struct FailoverClient {
    addrs: Vec<SocketAddr>,
    current: usize,
    connection: Option<(TcpStream, BytesMut, ReplyDecoder)>,
}

impl FailoverClient {
    fn connect(&mut self) -> std::io::Result<()> {
        if self.connection.is_some() {
            return Ok(());
        }
        let stream = TcpStream::connect_timeout(&self.addrs[self.current], Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        self.connection = Some((stream, BytesMut::new(), ReplyDecoder::new()));
        match self.reply()? {
            Reply::Info(_) => Ok(()),
            other => Err(std::io::Error::other(format!(
                "expected INFO, got {other:?}"
            ))),
        }
    }

    fn reply(&mut self) -> std::io::Result<Reply> {
        let (stream, buffer, decoder) = self.connection.as_mut().expect("connected");
        loop {
            if let Some(reply) = decoder.decode(buffer).map_err(std::io::Error::other)? {
                return Ok(reply);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    }

    fn append_once(&mut self, stream: &str, payload: &str) -> std::io::Result<Reply> {
        self.connect()?;
        let mut frame = format!("APPEND {stream} any {}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload.as_bytes());
        frame.extend_from_slice(b"\r\n");
        self.connection
            .as_mut()
            .expect("connected")
            .0
            .write_all(&frame)?;
        self.reply()
    }

    /// Appends until acknowledged, moving to the next node on a broken connection or a
    /// retryable error; the same payload (same event id) each time. Returns the tries taken.
    fn append(&mut self, stream: &str, payload: &str) -> u32 {
        let started = Instant::now();
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "append not acknowledged within 60 s ({tries} tries)"
            );
            match self.append_once(stream, payload) {
                Ok(Reply::Appended { .. }) => return tries,
                Ok(Reply::Err(error)) if error.code.is_retryable() => {}
                Ok(other) => panic!("append: {other:?}"),
                Err(_) => {}
            }
            self.connection = None;
            self.current = (self.current + 1) % self.addrs.len();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_client_keeps_appending_through_a_leader_killed_with_kill_9() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(None);
    // The client starts on a follower, so a write is forwarded until the leader dies, and
    // then fails over wherever it must.
    let mut addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let follower_index = cluster
        .nodes
        .iter()
        .position(|n| n.id != leader)
        .expect("follower");
    addrs.rotate_left(follower_index);
    let mut client = FailoverClient {
        addrs,
        current: 0,
        connection: None,
    };
    const BEFORE_KILL: usize = 30;
    const TOTAL: usize = 90;
    let mut acknowledged = Vec::new();
    let mut retried = 0;
    for n in 0..TOTAL {
        if n == BEFORE_KILL {
            cluster.node(leader).kill9();
        }
        let event_id = uuid::Uuid::new_v4();
        let payload = serde_json::json!({
            "event_id": event_id, "event_type": "Counted", "data": { "n": n }
        })
        .to_string();
        let tries = client.append(&format!("counter-{}", n % 3), &payload);
        retried += tries - 1;
        acknowledged.push(event_id.to_string());
    }
    // A client on a follower may never see the kill (its node waits for the new leader and
    // forwards there); one on the old leader retries elsewhere.
    eprintln!("appends retried after the kill: {retried}");
    let new_leader = cluster.wait_for_leader(Some(leader));
    assert_ne!(new_leader, leader);
    // The killed node comes back and catches up from the new leader's log.
    cluster.node(leader).restart();
    let started = Instant::now();
    let mut orders = Vec::new();
    for node in &cluster.nodes {
        let events = loop {
            let events = Client::connect(node.addr).read_all();
            if events.len() >= TOTAL || started.elapsed() > LEADER_TIMEOUT {
                break events;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let ids: Vec<String> = events
            .iter()
            .map(|e| e["event_id"].as_str().expect("id").to_owned())
            .collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "node {}: an event twice", node.id);
        for id in &acknowledged {
            assert!(
                unique.contains(id),
                "node {}: acknowledged {id} missing",
                node.id
            );
        }
        let positions: Vec<u64> = events
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect();
        assert_eq!(positions, (0..events.len() as u64).collect::<Vec<_>>());
        orders.push(ids);
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "one order on every node"
    );
    // Acknowledged events keep the order they were acknowledged in.
    let order = &orders[0];
    let mut last = None;
    for id in &acknowledged {
        let at = order.iter().position(|x| x == id).expect("present");
        assert!(
            last.is_none_or(|last| at > last),
            "acknowledged out of order"
        );
        last = Some(at);
    }
}

#[test]
fn a_peer_without_the_secret_is_refused() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(None);
    // Dial node 1's inter-node port as if node 2, with a wrong proof.
    let raft_addr = cluster.nodes[0].args[5].clone();
    let mut stream = TcpStream::connect(&raft_addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hello = [0u8; 40];
    stream.read_exact(&mut hello).expect("challenge");
    assert_eq!(&hello[..8], b"ESDBCL01");
    let mut reply = Vec::new();
    reply.extend_from_slice(b"ESDBCL01");
    reply.extend_from_slice(&2u64.to_be_bytes());
    reply.extend_from_slice(&[7u8; 32]);
    reply.extend_from_slice(&[9u8; 32]);
    stream.write_all(&reply).expect("send");
    let mut rest = Vec::new();
    let read = stream.read_to_end(&mut rest);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "refused without an answer, got {rest:?}"
    );
}
