//! The esdb server processes, one per namespace: start, kill -9, SIGSTOP/SIGCONT, restart on
//! the same data, and which leader they agree on.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::client::Conn;

/// Every node's client port (each node has its own address, so one port for all).
pub const CLIENT_PORT: u16 = 4350;
/// Every node's inter-node port.
pub const RAFT_PORT: u16 = 7350;
/// Node `i` reaches peer `j` at `127.0.0.1:RELAY_PORT_BASE + j` in its own namespace.
pub const RELAY_PORT_BASE: u16 = 7400;
/// How long a node may take to announce its listeners.
const START_TIMEOUT_MS: u64 = 30_000;
/// How long the running nodes may take to agree on a leader.
pub const LEADER_TIMEOUT_MS: u64 = 30_000;
pub const SECRET: &str = "the nemesis harness cluster secret";

pub struct Node {
    pub id: u32,
    pub addr: SocketAddr,
    namespace: String,
    data_dir: PathBuf,
    args: Vec<String>,
    bin: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

impl Node {
    pub fn new(
        id: u32,
        ip: &str,
        namespace: String,
        data_dir: PathBuf,
        peers: String,
        bin: PathBuf,
    ) -> Node {
        let args = vec![
            "--listen".into(),
            format!("{ip}:{CLIENT_PORT}"),
            "--http".into(),
            "127.0.0.1:0".into(),
            "--node-id".into(),
            id.to_string(),
            "--raft".into(),
            format!("{ip}:{RAFT_PORT}"),
            "--peers".into(),
            peers,
            "--log-level".into(),
            std::env::var("NEMESIS_ESDB_LOG").unwrap_or_else(|_| "warn,openraft=error".into()),
        ];
        Node {
            id,
            addr: format!("{ip}:{CLIENT_PORT}").parse().expect("node address"),
            namespace,
            data_dir,
            args,
            bin,
            child: None,
            stopped: false,
        }
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.data_dir.with_extension("stderr")
    }

    /// Starts the server (again, on its data) and waits for it to listen.
    pub fn start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "node {} runs already", self.id);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .map_err(|e| e.to_string())?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(&self.bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("ESDB_CLUSTER_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn node {}: {e}", self.id))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = std::io::BufReader::new(stdout);
            let mut lines = 0;
            let mut line = String::new();
            while lines < 2 && stdout.read_line(&mut line).is_ok_and(|n| n > 0) {
                lines += 1;
            }
            let _ = tx.send(lines == 2 && line.contains("esdb"));
            // Keep reading so the server never writes into a closed pipe.
            let mut sink = String::new();
            while stdout.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let started = rx
            .recv_timeout(Duration::from_millis(START_TIMEOUT_MS))
            .unwrap_or(false);
        if !started {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(self.stderr_path()).unwrap_or_default();
            return Err(format!("node {} did not start: {log}", self.id));
        }
        self.child = Some(child);
        self.stopped = false;
        Ok(())
    }

    /// Running and not stopped: it can answer.
    pub fn answering(&self) -> bool {
        self.child.is_some() && !self.stopped
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`).
    pub fn pause(&mut self, stop: bool) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: a signal to a child we spawned and have not reaped.
        unsafe { libc::kill(pid, signal) };
        self.stopped = stop;
    }

    /// The leader this node names in `INFO`, if it answers.
    pub fn leader_seen(&self) -> Option<u32> {
        let conn = Conn::connect(self.addr).ok()?;
        conn.info["cluster"]["leader_id"].as_u64().map(|l| l as u32)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill9();
    }
}

/// The leader every answering node agrees on (and which is itself answering), never `not`.
pub fn wait_for_leader(nodes: &[Node], not: Option<u32>) -> Result<u32, String> {
    let started = Instant::now();
    loop {
        let seen: Vec<Option<u32>> = nodes
            .iter()
            .filter(|n| n.answering())
            .map(|n| n.leader_seen())
            .collect();
        if let Some(&Some(leader)) = seen.first() {
            let agreed = seen.iter().all(|s| *s == Some(leader));
            let up = nodes.iter().any(|n| n.id == leader && n.answering());
            if agreed && up && Some(leader) != not {
                return Ok(leader);
            }
        }
        if started.elapsed() > Duration::from_millis(LEADER_TIMEOUT_MS) {
            return Err(format!(
                "no agreed leader in {LEADER_TIMEOUT_MS} ms: {seen:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Watches `among` for at least `hold` and at most `limit`: the time (from `since`) at which
/// they all first named one leader other than `old`, if they did by `limit`.
pub fn watch_election(
    nodes: &[Node],
    among: &[u32],
    old: u32,
    since: Instant,
    hold: Duration,
    limit: Duration,
) -> Option<Duration> {
    let mut elected = None;
    while since.elapsed() < hold || (elected.is_none() && since.elapsed() < limit) {
        if elected.is_none() {
            let seen: Vec<Option<u32>> = nodes
                .iter()
                .filter(|n| among.contains(&n.id))
                .map(|n| n.leader_seen())
                .collect();
            if let Some(&Some(leader)) = seen.first() {
                if leader != old && seen.iter().all(|s| *s == Some(leader)) {
                    elected = Some(since.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    elected
}
