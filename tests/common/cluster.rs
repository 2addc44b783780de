//! A cluster of real `esdb` processes on loopback (ports chosen at run time), for the
//! cluster tests: start, kill -9, SIGSTOP/SIGCONT, restart, and the leader all agree on.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use esdb_protocol::Reply;

use super::Client;

pub const SECRET: &str = "a test cluster secret, 32 bytes.";
/// How long the cluster may take to elect its first leader (or a new one).
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// A free loopback port: bound, read, released (the node binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub struct Node {
    pub id: u64,
    pub child: Option<Child>,
    pub addr: SocketAddr,
    /// The HTTP port (`/metrics`), as announced.
    pub http_addr: Option<SocketAddr>,
    pub args: Vec<String>,
    pub data_dir: PathBuf,
}

impl Node {
    /// Starts the node (its stderr in a file beside its data, shown if it fails to start).
    pub fn start(&mut self) {
        let log = self.stderr_path();
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
        let mut stdout = std::io::BufReader::new(stdout);
        let mut announced = |prefix: &str| -> Option<String> {
            let mut line = String::new();
            stdout.read_line(&mut line).ok()?;
            Some(
                line.strip_prefix(prefix)?
                    .split_whitespace()
                    .next()?
                    .to_owned(),
            )
        };
        let addr = announced("esdb listening on ");
        let http_addr = announced("esdb http on ");
        let (Some(addr), Some(http_addr)) = (addr, http_addr) else {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("node {} did not start: {stderr}", self.id);
        };
        self.addr = addr.parse().expect("addr");
        self.http_addr = Some(http_addr.parse().expect("http addr"));
        self.child = Some(child);
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.data_dir.with_extension("stderr")
    }

    /// What the node logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Starts the node again on its data, with a new client port.
    pub fn restart(&mut self) {
        let listen = self
            .args
            .iter()
            .position(|a| a == "--listen")
            .expect("--listen")
            + 1;
        self.args[listen] = format!("127.0.0.1:{}", free_port());
        self.start();
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        super::signal(pid, signal);
    }

    /// The inter-node address (`--raft`).
    pub fn raft_addr(&self) -> String {
        let at = self
            .args
            .iter()
            .position(|a| a == "--raft")
            .expect("--raft")
            + 1;
        self.args[at].clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a stopped (SIGSTOP) process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    _temp: tempfile::TempDir,
}

impl Cluster {
    pub fn start(size: u64) -> Cluster {
        Cluster::start_with(size, |_| Vec::new())
    }

    /// Starts `size` nodes; `extra(id)` adds arguments to node `id`'s command line.
    pub fn start_with(size: u64, extra: impl Fn(u64) -> Vec<String>) -> Cluster {
        let temp = tempfile::tempdir().expect("tempdir");
        let raft_ports: BTreeMap<u64, u16> = (1..=size).map(|id| (id, free_port())).collect();
        let peers: Vec<String> = raft_ports
            .iter()
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect();
        let mut nodes: Vec<Node> = raft_ports
            .iter()
            .map(|(&id, port)| {
                let extra = extra(id);
                let listen = extra
                    .iter()
                    .position(|a| a == "--listen")
                    .map(|at| extra[at + 1].clone())
                    .unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
                let mut args = vec![
                    "--listen".to_owned(),
                    listen.clone(),
                    "--node-id".to_owned(),
                    id.to_string(),
                    "--raft".to_owned(),
                    format!("127.0.0.1:{port}"),
                    "--peers".to_owned(),
                    peers.join(","),
                ];
                if !extra.iter().any(|a| a == "--log-level") {
                    // openraft warns at every unreachable peer, which a kill makes many of.
                    args.push("--log-level".to_owned());
                    args.push(
                        std::env::var("TEST_ESDB_LOG")
                            .unwrap_or_else(|_| "warn,openraft=error".into()),
                    );
                }
                let mut extra = extra.into_iter();
                while let Some(arg) = extra.next() {
                    // --listen is placed first (restart() rewrites it there).
                    if arg == "--listen" {
                        extra.next();
                        continue;
                    }
                    args.push(arg);
                }
                Node {
                    id,
                    child: None,
                    addr: listen.parse().expect("--listen is an address"),
                    http_addr: None,
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

    /// Starts one more node `id` beside the cluster's (its own ports, data in the cluster's
    /// temp dir), with `--node-id` and `--raft` and then `extra` (no `--peers`: it joins, or
    /// waits to be added).
    pub fn add_node(&mut self, id: u64, extra: &[String]) -> &mut Node {
        let mut args = vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{}", free_port()),
            "--node-id".to_owned(),
            id.to_string(),
            "--raft".to_owned(),
            format!("127.0.0.1:{}", free_port()),
        ];
        if !extra.iter().any(|a| a == "--log-level") {
            args.push("--log-level".to_owned());
            args.push(
                std::env::var("TEST_ESDB_LOG").unwrap_or_else(|_| "warn,openraft=error".into()),
            );
        }
        args.extend(extra.iter().cloned());
        let mut node = Node {
            id,
            child: None,
            addr: "127.0.0.1:0".parse().expect("addr"),
            http_addr: None,
            args,
            data_dir: self._temp.path().join(format!("node-{id}")),
        };
        node.start();
        self.nodes.push(node);
        self.nodes.last_mut().expect("pushed")
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node")
    }

    pub fn get(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("node")
    }

    /// The leader every running node in `among` (all running nodes: `None`) agrees on, from
    /// `INFO`'s `cluster` object; never `not`.
    pub fn wait_for_leader_among(&self, among: Option<&[u64]>, not: Option<u64>) -> u64 {
        let started = Instant::now();
        loop {
            let leaders: HashSet<Option<u64>> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .filter(|n| among.is_none_or(|among| among.contains(&n.id)))
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

    /// The leader every running node agrees on; never `not`.
    pub fn wait_for_leader(&self, not: Option<u64>) -> u64 {
        self.wait_for_leader_among(None, not)
    }

    /// Waits until `INFO` on node `id` names every node's client address.
    pub fn wait_for_client_urls(&self, id: u64) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let info = Client::connect(self.get(id).addr).info;
            let urls = &info["cluster"]["client_urls"];
            if urls
                .as_object()
                .is_some_and(|urls| urls.len() == self.nodes.len())
            {
                return info;
            }
            assert!(started.elapsed() < LEADER_TIMEOUT, "client urls: {info}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn append_ok(client: &mut Client, stream: &str, payload: &str) -> u64 {
    match client.append(stream, "any", payload) {
        Reply::Appended { last_position, .. } => last_position,
        other => panic!("expected APPENDED, got {other:?}"),
    }
}

/// (event id, stream id, position) of each record.
pub fn ids_and_streams(events: &[serde_json::Value]) -> Vec<(String, String, u64)> {
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
