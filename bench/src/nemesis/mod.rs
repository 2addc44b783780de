//! The nemesis harness: three esdb processes, each in its own network namespace on one bridge,
//! rounds of faults (kill -9, SIGSTOP, partitions, delays) under concurrent clients, and a
//! checker after every round. Used by `esdb-bench nemesis` and by `tests/nemesis.rs` (which
//! includes this directory with `#[path]`, so it depends on nothing else in the bench crate).
//!
//! - `net`: namespaces, bridge, partitions (blackhole routes).
//! - `relay`: the inter-node relays that add delays (no netem on this kernel).
//! - `node`: the server processes.
//! - `client`: a blocking protocol connection.
//! - `workload`: writers, `after` readers, the subscriber.
//! - `history`: the JSON-lines history (invoke / ok / fail / info with times).
//! - `check`: the checks after each round.

pub mod check;
pub mod client;
pub mod history;
pub mod net;
pub mod node;
pub mod relay;
pub mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use history::History;
use net::Net;
use node::Node;
use relay::Delay;
use workload::{Addrs, AfterRead, Attempt, Outcome};

/// Nodes in the cluster.
const NODES: u32 = 3;
/// Healthy load before each fault.
const WARMUP_MS: u64 = 1_000;
/// How long a fault lasts: past the time a follower waits before it stands (about 1 s with the
/// default `--raft-election-timeout-ms`).
const FAULT_MS: u64 = 3_000;
/// How long a fault that takes the leader away lasts at most, waiting for a new one.
const ELECTION_LIMIT_MS: u64 = 15_000;
/// Healthy load after the fault is healed.
const COOLDOWN_MS: u64 = 1_000;
/// How long the subscriber may take to reach the end once the log is known.
const SUBSCRIBER_CATCH_UP_MS: u64 = 20_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// kill -9 of the leader, restarted after the fault.
    KillLeader,
    /// kill -9 of a follower, restarted after the fault.
    KillFollower,
    /// kill -9 of a follower, restart, then of the leader, restart.
    KillTwo,
    /// SIGSTOP of the leader past the election timeout, then SIGCONT.
    StopLeader,
    /// The leader cut off from both other nodes (clients still reach it).
    PartitionLeader,
    /// The leader cut off from one follower only: majorities overlap in the other follower.
    Bridge,
    /// 100 ms ± 50 ms on every inter-node link.
    Delay,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::KillLeader,
        Kind::KillFollower,
        Kind::KillTwo,
        Kind::StopLeader,
        Kind::PartitionLeader,
        Kind::Bridge,
        Kind::Delay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillLeader => "kill-leader",
            Kind::KillFollower => "kill-follower",
            Kind::KillTwo => "kill-two",
            Kind::StopLeader => "stop-leader",
            Kind::PartitionLeader => "partition-leader",
            Kind::Bridge => "bridge",
            Kind::Delay => "delay",
        }
    }

    /// A kind by name; `all` is every kind in turn.
    pub fn parse(text: &str) -> Result<Vec<Kind>, String> {
        if text == "all" {
            return Ok(Kind::ALL.to_vec());
        }
        text.split(',')
            .map(|name| {
                Kind::ALL
                    .into_iter()
                    .find(|k| k.name() == name.trim())
                    .ok_or_else(|| {
                        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                        format!(
                            "unknown nemesis {name:?}: one of {}, or all",
                            names.join(", ")
                        )
                    })
            })
            .collect()
    }

    /// Whether the leader stops answering: the round measures failover.
    fn loses_leader(self) -> bool {
        matches!(
            self,
            Kind::KillLeader | Kind::StopLeader | Kind::PartitionLeader
        )
    }
}

pub struct Config {
    pub esdb_bin: PathBuf,
    pub rounds: usize,
    /// Taken in turn, round after round.
    pub kinds: Vec<Kind>,
    pub writers: usize,
    pub streams: usize,
    /// Where data directories go (a temporary directory inside it, removed at the end).
    pub data_root: PathBuf,
    /// The JSON-lines history; none written when `None`.
    pub history: Option<PathBuf>,
}

#[derive(Debug)]
pub struct RoundReport {
    pub round: usize,
    pub kind: Kind,
    pub acknowledged: usize,
    pub refused: usize,
    pub unknown: usize,
    pub reads: usize,
    pub events: usize,
    /// Fault to the first acknowledged write sent after it (rounds that lose the leader).
    pub failover_ms: Option<f64>,
    pub violations: Vec<String>,
}

impl std::fmt::Display for RoundReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "round {:>3} {:<16} acknowledged {:>5}  refused {:>5}  unknown {:>3}  after-reads {:>5}  $all {:>6}",
            self.round, self.kind.name(), self.acknowledged, self.refused, self.unknown, self.reads,
            self.events
        )?;
        if let Some(ms) = self.failover_ms {
            write!(f, "  failover {ms:>6.0} ms")?;
        }
        if self.violations.is_empty() {
            write!(f, "  ok")
        } else {
            write!(f, "  {} VIOLATIONS", self.violations.len())?;
            for v in &self.violations {
                write!(f, "\n    {v}")?;
            }
            Ok(())
        }
    }
}

/// Whether this machine can run the harness (network namespaces, as root).
pub fn available() -> bool {
    Net::available()
}

/// Runs the rounds; `each` sees every round's report as it ends. Fails on a harness error
/// (a node that does not start, no leader); violations are in the reports.
pub fn run(
    config: &Config,
    each: &mut (dyn FnMut(&RoundReport) + Send),
) -> Result<Vec<RoundReport>, String> {
    assert!(!config.kinds.is_empty() && config.writers > 0 && config.streams > 0);
    let mut net = Net::make(NODES)?;
    let delay = StopRelays(Arc::new(Delay::default()));
    start_relays(&net, &delay.0)?;
    let temp = tempfile::tempdir_in(&config.data_root).map_err(|e| e.to_string())?;
    let client_ns = net.client_namespace();
    // The clients live in their own namespace; this thread (and so `net`'s teardown) stays in
    // the root one.
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                net::enter(&client_ns)?;
                rounds(config, &mut net, &delay.0, temp.path(), each)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    let failed = result.as_ref().map_or(true, |reports| {
        reports.iter().any(|r| !r.violations.is_empty())
    });
    if failed {
        // The nodes' data and logs (`node-N.stderr`) are the evidence: keep them.
        eprintln!(
            "nemesis: data and node logs kept in {}",
            temp.keep().display()
        );
    }
    result
}

/// Stops the relays when the run ends, however it ends.
struct StopRelays(Arc<Delay>);

impl Drop for StopRelays {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn start_relays(net: &Net, delay: &Arc<Delay>) -> Result<(), String> {
    for i in 1..=NODES {
        for j in (1..=NODES).filter(|&j| j != i) {
            let upstream = format!("{}:{}", net.ip(j), node::RAFT_PORT)
                .parse()
                .expect("address");
            relay::start(
                net.namespace(i),
                node::RELAY_PORT_BASE + j as u16,
                upstream,
                delay.clone(),
            )?;
        }
    }
    Ok(())
}

fn rounds(
    config: &Config,
    net: &mut Net,
    delay: &Delay,
    data: &std::path::Path,
    each: &mut (dyn FnMut(&RoundReport) + Send),
) -> Result<Vec<RoundReport>, String> {
    let mut nodes: Vec<Node> = (1..=NODES)
        .map(|i| {
            let peers: Vec<String> = (1..=NODES)
                .map(|j| match j == i {
                    true => format!("{j}={}:{}", net.ip(j), node::RAFT_PORT),
                    false => format!("{j}=127.0.0.1:{}", node::RELAY_PORT_BASE + j as u16),
                })
                .collect();
            Node::new(
                i,
                &net.ip(i),
                net.namespace(i),
                data.join(format!("node-{i}")),
                peers.join(","),
                config.esdb_bin.clone(),
            )
        })
        .collect();
    for node in &mut nodes {
        node.start()?;
    }
    node::wait_for_leader(&nodes, None)?;
    let addrs: Addrs = nodes.iter().map(|n| (n.id, n.addr)).collect();
    let history = History::new(config.history.as_deref())?;
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut reads: Vec<AfterRead> = Vec::new();
    let mut checked_len = 0u64;
    let mut reports = Vec::new();
    for round in 0..config.rounds {
        let kind = config.kinds[round % config.kinds.len()];
        let stop = AtomicBool::new(false);
        let target = AtomicU64::new(u64::MAX);
        let give_up = AtomicBool::new(false);
        let from = checked_len;
        let outcome = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..config.writers)
                .map(|p| {
                    let (addrs, stop, history) = (&addrs, &stop, &history);
                    scope.spawn(move || workload::writer(p, addrs, config.streams, stop, history))
                })
                .collect();
            let sub =
                scope.spawn(|| workload::subscriber(&addrs, from, &target, &give_up, &history));
            std::thread::sleep(Duration::from_millis(WARMUP_MS));
            let fault = nemesis(kind, net, &mut nodes, delay, &history);
            std::thread::sleep(Duration::from_millis(COOLDOWN_MS));
            stop.store(true, Ordering::Relaxed);
            let logs: Vec<_> = writers
                .into_iter()
                .map(|w| w.join().expect("writer thread"))
                .collect();
            let fault = fault.and_then(|fault_ns| {
                // Everyone up again: the checker needs an agreed leader.
                node::wait_for_leader(&nodes, None).map(|_| fault_ns)
            });
            let log = fault.as_ref().map_err(Clone::clone).and_then(|_| {
                let least = logs
                    .iter()
                    .flat_map(|l| &l.attempts)
                    .filter_map(|a| match a.outcome {
                        Outcome::Ok { position, .. } => Some(position as usize + 1),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                check::converge(&addrs, least)
            });
            match &log {
                Ok(log) => target.store(log.len() as u64, Ordering::Relaxed),
                Err(_) => give_up.store(true, Ordering::Relaxed),
            }
            // Bounded: the subscriber stops at the target or when told to give up.
            let waited = std::time::Instant::now();
            while !sub.is_finished() {
                if waited.elapsed() > Duration::from_millis(SUBSCRIBER_CATCH_UP_MS) {
                    give_up.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let sub = sub.join().expect("subscriber thread");
            (fault, log, logs, sub)
        });
        let (fault, log, logs, sub) = outcome;
        let fault_ns = fault?;
        let log = log?;
        let round_attempts: Vec<Attempt> = logs.iter().flat_map(|l| l.attempts.clone()).collect();
        let round_reads: Vec<AfterRead> = logs.iter().flat_map(|l| l.reads.clone()).collect();
        let failover_ms = fault_ns
            .filter(|_| kind.loses_leader())
            .and_then(|fault_ns| {
                round_attempts
                    .iter()
                    .filter(|a| a.invoked_ns >= fault_ns && matches!(a.outcome, Outcome::Ok { .. }))
                    .map(|a| a.completed_ns)
                    .min()
                    .map(|done| (done - fault_ns) as f64 / 1e6)
            });
        let counts = check::summary(&round_attempts);
        attempts.extend(round_attempts);
        reads.extend(round_reads.iter().cloned());
        let violations = check::check(&log, &attempts, &reads, &sub, from);
        checked_len = log.len() as u64;
        let report = RoundReport {
            round: round + 1,
            kind,
            acknowledged: counts.get("ok").copied().unwrap_or(0),
            refused: counts.get("refused").copied().unwrap_or(0),
            unknown: counts.get("unknown").copied().unwrap_or(0)
                + counts.get("wrong").copied().unwrap_or(0),
            reads: round_reads.len(),
            events: log.len(),
            failover_ms,
            violations,
        };
        history.flush();
        each(&report);
        reports.push(report);
    }
    history.flush();
    Ok(reports)
}

/// Applies one fault and heals it; the time the fault began (history clock), when the round
/// measures failover from it.
fn nemesis(
    kind: Kind,
    net: &mut Net,
    nodes: &mut [Node],
    delay: &Delay,
    history: &History,
) -> Result<Option<u64>, String> {
    let hold = || std::thread::sleep(Duration::from_millis(FAULT_MS));
    let leader = node::wait_for_leader(nodes, None)?;
    let index = |id: u32| (id - 1) as usize;
    let followers: Vec<u32> = nodes
        .iter()
        .map(|n| n.id)
        .filter(|&id| id != leader)
        .collect();
    let note =
        |what: &str, value: serde_json::Value| history.record("nemesis", "info", what, None, value);
    // Holds the fault, noting when the rest agree on a new leader (the history's `elected`).
    let watch = |nodes: &[Node], among: &[u32]| {
        let since = std::time::Instant::now();
        let elected = node::watch_election(
            nodes,
            among,
            leader,
            since,
            Duration::from_millis(FAULT_MS),
            Duration::from_millis(ELECTION_LIMIT_MS),
        );
        note(
            "elected",
            serde_json::json!({"among": among, "after_ms": elected.map(|d| d.as_millis() as u64)}),
        );
    };
    let started = match kind {
        Kind::KillLeader => {
            nodes[index(leader)].kill9();
            let at = note("kill", serde_json::json!({"node": leader}));
            watch(nodes, &followers);
            nodes[index(leader)].start()?;
            note("restart", serde_json::json!({"node": leader}));
            at
        }
        Kind::KillFollower => {
            let at = note("kill", serde_json::json!({"node": followers[0]}));
            nodes[index(followers[0])].kill9();
            hold();
            nodes[index(followers[0])].start()?;
            note("restart", serde_json::json!({"node": followers[0]}));
            at
        }
        Kind::KillTwo => {
            let at = note("kill", serde_json::json!({"node": followers[0]}));
            nodes[index(followers[0])].kill9();
            std::thread::sleep(Duration::from_millis(FAULT_MS / 2));
            nodes[index(followers[0])].start()?;
            note("restart", serde_json::json!({"node": followers[0]}));
            let leader = node::wait_for_leader(nodes, None)?;
            note("kill", serde_json::json!({"node": leader}));
            nodes[index(leader)].kill9();
            std::thread::sleep(Duration::from_millis(FAULT_MS / 2));
            nodes[index(leader)].start()?;
            note("restart", serde_json::json!({"node": leader}));
            at
        }
        Kind::StopLeader => {
            nodes[index(leader)].pause(true);
            let at = note("stop", serde_json::json!({"node": leader}));
            watch(nodes, &followers);
            nodes[index(leader)].pause(false);
            note("continue", serde_json::json!({"node": leader}));
            at
        }
        Kind::PartitionLeader => {
            for &f in &followers {
                net.set_cut(leader, f, true)?;
            }
            // After the routes are in: the fault's time is when it is complete.
            let at = note("partition", serde_json::json!({"isolated": leader}));
            watch(nodes, &followers);
            net.heal()?;
            note("heal", serde_json::json!(null));
            at
        }
        Kind::Bridge => {
            let at = note(
                "partition",
                serde_json::json!({"cut": [leader, followers[0]], "bridge": followers[1]}),
            );
            net.set_cut(leader, followers[0], true)?;
            hold();
            net.heal()?;
            note("heal", serde_json::json!(null));
            at
        }
        Kind::Delay => {
            let at = note("delay", serde_json::json!({"ms": 100, "jitter_ms": 50}));
            delay.set(100, 50);
            hold();
            delay.set(0, 0);
            note("heal", serde_json::json!(null));
            at
        }
    };
    Ok(Some(started))
}

/// A random number below `n` (from the v4 UUID generator: the test build has no RNG crate).
pub fn random_below(n: u64) -> u64 {
    assert!(n > 0);
    (uuid::Uuid::new_v4().as_u128() as u64) % n
}

/// The p-th percentile (0..=100) of `values`, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}
