//! One store's Raft group on this server: start (initializing a new single-node group), wait
//! until the log is replayed onto the store, report status, shut down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::raft::log_store::LogStore;
use crate::raft::network::SingleNodeNetwork;
use crate::raft::proposer;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{NodeId, Raft};
use crate::store::Store;

/// The node id of a single server. Clusters (issue 11) give each node its own.
pub const SINGLE_NODE_ID: NodeId = 1;
/// The log directory, inside the store's directory.
pub const LOG_DIR: &str = "raft-log";
/// How long start-up waits for the node to lead and replay its log before giving up.
pub const STARTUP_TIMEOUT_MS: u64 = 60_000;
/// Log entries between checkpoints (LMDB synced, log purged behind it).
pub const CHECKPOINT_EVERY_ENTRIES: u64 = 10_000;
/// Time between checkpoints while writes go on. One entry may carry a thousand appends, so an
/// entry count alone would let a crash leave minutes of writes to replay; a checkpoint a second
/// bounds the replay after a crash to about a second of writes (it costs a meta-page fsync and
/// a small file).
pub const CHECKPOINT_INTERVAL_MS: u64 = 1_000;
/// Entries kept in the log behind a checkpoint (for followers, once there are any).
pub const LOG_ENTRIES_KEPT_AFTER_CHECKPOINT: u64 = 1_000;
/// Raft timing. The heartbeat is also openraft 0.9's AppendEntries timeout, so it must outlast
/// a batch's fsync on a slow disk; elections must outlast the leader's worst fsync stall.
pub const HEARTBEAT_INTERVAL_MS: u64 = 250;
/// The election timeout's lower bound (`--raft-election-timeout-ms`); its upper bound is a
/// quarter more ([`election_timeout_max_ms`]). A follower of openraft 0.9 whose leader fell
/// silent waits out the leader's lease (the upper bound) *and then* its own randomized timeout
/// before it stands (`RaftCore::handle_tick_election`), so a leader's loss is noticed after
/// max + [min, max] since its last heartbeat: 0.9-1.0 s here, for the 1 s failover. The
/// range is narrow for that reason; a split vote costs one more round.
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 400;

/// The election timeout's upper bound for a lower bound of `min_ms`.
pub fn election_timeout_max_ms(min_ms: u64) -> u64 {
    min_ms + min_ms / 4
}
/// Most entries one AppendEntries carries (entries are batches already).
pub const MAX_PAYLOAD_ENTRIES: u64 = 256;

/// A store's Raft group, running.
pub struct Node {
    raft: Raft,
    stop: CancellationToken,
    proposer: JoinHandle<()>,
    /// On a cluster node, the task routing writes to the proposer or the leader.
    router: Option<JoinHandle<()>>,
    /// The store's apply thread stopped (it could not apply or commit a committed entry).
    apply_failure: watch::Receiver<Option<String>>,
}

/// What `INFO` and `STATS` show of a group.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RaftStatus {
    pub node_id: NodeId,
    pub state: String,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub checkpoint_index: Option<u64>,
}

/// Entries a cluster keeps in its log behind a checkpoint by default (`--raft-log-kept-entries`):
/// a follower less far behind catches up from the log; one further behind, or a new node,
/// gets a copy of the state machine (install_snapshot, `state_machine`), then the log.
pub const CLUSTER_LOG_ENTRIES_KEPT_AFTER_CHECKPOINT: u64 = 10_000;

fn config(store: &str, election_timeout_min_ms: u64) -> Result<Config, String> {
    Config {
        cluster_name: format!("esdb-{store}"),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: election_timeout_min_ms,
        election_timeout_max: election_timeout_max_ms(election_timeout_min_ms),
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(CHECKPOINT_EVERY_ENTRIES),
        max_in_snapshot_log_to_keep: LOG_ENTRIES_KEPT_AFTER_CHECKPOINT,
        replication_lag_threshold: CHECKPOINT_EVERY_ENTRIES * 2,
        install_snapshot_timeout: 30_000,
        snapshot_max_chunk_size: crate::raft::state_machine::SNAPSHOT_CHUNK_BYTES,
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("raft config: {e}"))
}

/// Refuses to start a group whose log ends before what the store has applied: the log lost
/// entries it had made durable (a damaged or truncated segment, cut on open), and openraft
/// would panic on the inconsistency. A clear refusal instead; `esdb verify` names the damage.
fn check_log_covers_applied(
    name: &str,
    log: &LogStore,
    state_machine: &StateMachine,
) -> Result<(), String> {
    let (log_end, applied) = (log.last_log_id(), state_machine.last_applied());
    if log_end < applied {
        let index = |id: Option<crate::raft::types::LogId>| id.map_or(0, |id| id.index);
        return Err(format!(
            "store {name}: its Raft log ends at index {}, but the store has applied entries \
             through {}: the log lost entries it had made durable (damaged or truncated on \
             disk); refusing to start. Run `esdb verify` on the data directory, and restore it \
             from a backup or a healthy node",
            index(log_end),
            index(applied)
        ));
    }
    Ok(())
}

impl Node {
    /// Opens the store's log, starts its group (initializing a new one), and returns once this
    /// node leads and has applied its whole log; then starts draining the store's write queue.
    pub async fn start(store: &Store) -> Result<Node, String> {
        let name = store.name().to_owned();
        let log_dir = store.path().join(LOG_DIR);
        let log = LogStore::open(&log_dir)
            .map_err(|e| format!("opening the raft log in {}: {e}", log_dir.display()))?;
        let applier = store.applier().map_err(|e| e.to_string())?;
        let state_machine = StateMachine::open(applier, log_dir.clone())
            .map_err(|e| format!("state machine: {e}"))?;
        check_log_covers_applied(&name, &log, &state_machine)?;
        let raft = Raft::new(
            SINGLE_NODE_ID,
            // A single voter elects itself at once; the timeout never runs.
            Arc::new(config(&name, ELECTION_TIMEOUT_MIN_MS)?),
            SingleNodeNetwork,
            log,
            state_machine,
        )
        .await
        .map_err(|e| format!("starting raft for store {name}: {e}"))?;
        let initialized = raft.is_initialized().await.map_err(|e| e.to_string())?;
        if !initialized {
            let members = BTreeMap::from([(SINGLE_NODE_ID, BasicNode::new(""))]);
            raft.initialize(members)
                .await
                .map_err(|e| format!("initializing raft for store {name}: {e}"))?;
        } else {
            // A single voter need not wait out an election timeout to lead again.
            let _ = raft.trigger().elect().await;
        }
        raft.wait(Some(Duration::from_millis(STARTUP_TIMEOUT_MS)))
            .metrics(
                |m| {
                    m.state == ServerState::Leader
                        && m.last_applied.map(|id| id.index) == m.last_log_index
                },
                "leading with the whole log applied",
            )
            .await
            .map_err(|e| format!("store {name}: raft did not become ready: {e}"))?;
        let queue = store
            .take_write_queue()
            .ok_or_else(|| format!("store {name}: write queue already taken"))?;
        let stop = CancellationToken::new();
        // openraft counts entries as applied once queued for the apply thread; the store
        // serves only once the replay is committed too.
        let replayed = raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |id| id.index);
        store
            .progress()
            .wait_committed(replayed)
            .await
            .map_err(|e| format!("store {name}: replaying the raft log: {e}"))?;
        let proposer = tokio::spawn(proposer::run(
            raft.clone(),
            store.waiters(),
            queue,
            stop.clone(),
        ));
        tokio::spawn(checkpoint_periodically(raft.clone(), stop.clone()));
        tokio::spawn(crate::raft::observe::run(
            name,
            raft.clone(),
            store.progress().clone(),
            stop.clone(),
        ));
        Ok(Node {
            raft,
            stop,
            proposer,
            router: None,
            apply_failure: store.progress().failure(),
        })
    }

    /// Starts the store's group as one member of a cluster: opens the log, joins the group
    /// (the lowest node id initializes a new one, `Cluster::initialize_when_ready`), and
    /// routes the store's writes to the leader from now on. Does not wait for a leader:
    /// requests wait for one ([`crate::cluster::router`]).
    pub async fn start_clustered(
        store: &Store,
        cluster: &Arc<crate::cluster::Cluster>,
    ) -> Result<Node, String> {
        let name = store.name().to_owned();
        let log_dir = store.path().join(LOG_DIR);
        let log = LogStore::open(&log_dir)
            .map_err(|e| format!("opening the raft log in {}: {e}", log_dir.display()))?;
        let applier = store.applier().map_err(|e| e.to_string())?;
        let state_machine = StateMachine::open(applier, log_dir.clone())
            .map_err(|e| format!("state machine: {e}"))?;
        check_log_covers_applied(&name, &log, &state_machine)?;
        let mut raft_config = config(&name, cluster.config.election_timeout_min_ms)?;
        raft_config.max_in_snapshot_log_to_keep = cluster.config.log_kept_entries;
        let network = crate::raft::network::ClusterNetwork {
            cluster: cluster.clone(),
            store: name.clone(),
        };
        let raft = Raft::new(
            cluster.node_id(),
            Arc::new(raft_config),
            network,
            log,
            state_machine,
        )
        .await
        .map_err(|e| format!("starting raft for store {name}: {e}"))?;
        let queue = store
            .take_write_queue()
            .ok_or_else(|| format!("store {name}: write queue already taken"))?;
        let replayed = raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |id| id.index);
        store
            .progress()
            .wait_committed(replayed)
            .await
            .map_err(|e| format!("store {name}: replaying the raft log: {e}"))?;
        let stop = CancellationToken::new();
        let (local, local_queue) =
            tokio::sync::mpsc::channel(crate::store::writer::WRITE_QUEUE_CAPACITY);
        let proposer = tokio::spawn(proposer::run(
            raft.clone(),
            store.waiters(),
            local_queue,
            stop.clone(),
        ));
        let group = Arc::new(crate::cluster::Group {
            raft: raft.clone(),
            local: local.clone(),
            forward_budget: Arc::new(tokio::sync::Semaphore::new(
                crate::cluster::MAX_FORWARDED_BYTES,
            )),
            reads: crate::cluster::reads::Linearizer::start(
                cluster.clone(),
                name.clone(),
                raft.clone(),
            ),
        });
        cluster.register(&name, group);
        let router = tokio::spawn(crate::cluster::router::run(
            cluster.clone(),
            name.clone(),
            raft.clone(),
            queue,
            local,
            stop.clone(),
        ));
        match &cluster.config.discovery {
            Some(discovery) => tokio::spawn(cluster.clone().form_or_join(
                name.clone(),
                raft.clone(),
                discovery.expect,
            )),
            None => tokio::spawn(
                cluster
                    .clone()
                    .initialize_when_ready(name.clone(), raft.clone()),
            ),
        };
        tokio::spawn(checkpoint_periodically(raft.clone(), stop.clone()));
        tokio::spawn(crate::raft::observe::run(
            name,
            raft.clone(),
            store.progress().clone(),
            stop.clone(),
        ));
        Ok(Node {
            raft,
            stop,
            proposer,
            router: Some(router),
            apply_failure: store.progress().failure(),
        })
    }

    /// A live view of the group's state.
    pub fn status(&self) -> watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// Resolves if the group stops on its own: a storage error (the log could not be written,
    /// or a committed entry could not be applied) is fatal to openraft. Returns why.
    pub fn failure(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut metrics = self.raft.metrics();
        let mut apply_failure = self.apply_failure.clone();
        async move {
            let raft_failure = async move {
                loop {
                    {
                        let now = metrics.borrow();
                        if let Err(fatal) = &now.running_state {
                            return fatal.to_string();
                        }
                        if now.state == ServerState::Shutdown {
                            return "the raft group stopped".to_owned();
                        }
                    }
                    if metrics.changed().await.is_err() {
                        return "the raft group stopped".to_owned();
                    }
                }
            };
            tokio::select! {
                reason = raft_failure => reason,
                Ok(reason) = apply_failure.wait_for(Option::is_some) => {
                    format!("applying to the store failed: {}", reason.clone().unwrap_or_default())
                }
            }
        }
    }

    /// Stops proposing (after what is in flight), then stops the group. The store's apply
    /// thread can end once this returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Some(router) = self.router {
            if let Err(error) = router.await {
                tracing::error!(%error, "router task failed");
            }
        }
        if let Err(error) = self.proposer.await {
            tracing::error!(%error, "proposer task failed");
        }
        if let Err(error) = self.raft.shutdown().await {
            tracing::error!(%error, "raft shutdown");
        }
    }
}

/// Asks for a checkpoint every [`CHECKPOINT_INTERVAL_MS`] while entries were applied since the
/// last one; ends when `stop` fires.
async fn checkpoint_periodically(raft: Raft, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_millis(CHECKPOINT_INTERVAL_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        let (applied, checkpoint) = {
            let metrics = raft.metrics();
            let now = metrics.borrow();
            (
                now.last_applied.map(|id| id.index),
                now.snapshot.map(|id| id.index),
            )
        };
        if applied > checkpoint {
            if let Err(error) = raft.trigger().snapshot().await {
                tracing::warn!(%error, "checkpoint not started");
                return;
            }
        }
    }
}

impl RaftStatus {
    pub fn of(metrics: &openraft::RaftMetrics<NodeId, BasicNode>) -> RaftStatus {
        RaftStatus {
            node_id: metrics.id,
            state: format!("{:?}", metrics.state).to_lowercase(),
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|id| id.index),
            checkpoint_index: metrics.snapshot.map(|id| id.index),
        }
    }
}
