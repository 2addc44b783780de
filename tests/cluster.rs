//! Three real `esdb` processes on loopback forming a cluster (ports chosen at run time): writes
//! on any node, the same events in the same order on every node, and a leader killed with
//! kill -9 while a client keeps appending (retrying with the same event ids when an outcome is
//! unknown), after which every acknowledged event is present exactly once on every node; and
//! a leader stopped (SIGSTOP) past the election timeout, which steps down once continued.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use esdb_protocol::{Reply, ReplyDecoder};

use common::cluster::{append_ok, ids_and_streams, Cluster, LEADER_TIMEOUT};
use common::Client;

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

fn counted(n: usize) -> (String, String) {
    let event_id = uuid::Uuid::new_v4().to_string();
    let payload = serde_json::json!({
        "event_id": event_id, "event_type": "Counted", "data": { "n": n }
    })
    .to_string();
    (event_id, payload)
}

fn group_state(addr: SocketAddr) -> (String, u64) {
    let status = cluster_status(addr);
    let group = &status["stores"]["default"];
    (
        group["state"].as_str().expect("state").to_owned(),
        group["term"].as_u64().expect("term"),
    )
}

/// The leader is stopped (SIGSTOP) past the election timeout: the other two elect a leader and
/// take writes; once it runs again (SIGCONT) the old leader hears the higher term and steps
/// down, and every node holds the same events in the same order, each acknowledged one once.
/// A write that reached the old leader's socket while it was stopped is answered: applied, or
/// `unavailable` (its outcome unknown); either way it is never applied twice.
#[test]
fn a_leader_stopped_past_the_election_timeout_steps_down_when_continued() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(None);
    let (_, term_before) = group_state(cluster.get(leader).addr);
    let others: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|&id| id != leader)
        .collect();
    let mut acknowledged = Vec::new();
    let mut on_old_leader = Client::connect(cluster.get(leader).addr);
    for n in 0..5 {
        let (id, payload) = counted(n);
        append_ok(&mut on_old_leader, "before", &payload);
        acknowledged.push(id);
    }
    cluster.get(leader).signal(libc::SIGSTOP);
    // Sent to the stopped leader: it sits in the socket until the process runs again.
    let (stuck_id, stuck_payload) = counted(100);
    let mut frame = format!("APPEND stuck any {}\r\n", stuck_payload.len()).into_bytes();
    frame.extend_from_slice(stuck_payload.as_bytes());
    frame.extend_from_slice(b"\r\n");
    on_old_leader.send_raw(&frame);
    let new_leader = cluster.wait_for_leader_among(Some(&others), Some(leader));
    assert_ne!(new_leader, leader);
    for (round, &id) in others.iter().cycle().take(6).enumerate() {
        let mut client = Client::connect(cluster.get(id).addr);
        let (event_id, payload) = counted(10 + round);
        append_ok(&mut client, "during", &payload);
        acknowledged.push(event_id);
    }
    cluster.get(leader).signal(libc::SIGCONT);
    match on_old_leader.reply() {
        Reply::Appended { .. } => acknowledged.push(stuck_id.clone()),
        Reply::Err(error) => assert_eq!(error.code, esdb_protocol::ErrorCode::Unavailable),
        other => panic!("the stuck append: {other:?}"),
    }
    // Every node, the old leader included, agrees on one leader of a later term.
    let agreed = cluster.wait_for_leader(None);
    let started = Instant::now();
    loop {
        let (state, term) = group_state(cluster.get(leader).addr);
        if term > term_before && (agreed == leader || state == "follower") {
            break;
        }
        assert!(
            started.elapsed() < LEADER_TIMEOUT,
            "the old leader did not step down: {state} in term {term}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The old leader takes writes again (forwarded, or as leader).
    for n in 0..3 {
        let (id, payload) = counted(20 + n);
        append_ok(&mut on_old_leader, "after", &payload);
        acknowledged.push(id);
    }
    let mut orders = Vec::new();
    for node in &cluster.nodes {
        let events = Client::connect(node.addr).read_all();
        let ids: Vec<String> = events
            .iter()
            .map(|e| e["event_id"].as_str().expect("id").to_owned())
            .collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "node {}: an event twice", node.id);
        for id in &acknowledged {
            assert!(unique.contains(id), "node {}: {id} missing", node.id);
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
}
