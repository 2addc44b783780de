//! Clusters: several esdb nodes, each store one Raft group across them.
//!
//! - [`wire`]: the inter-node handshake (HMAC-SHA256 challenge on the cluster secret) and
//!   frames, with the calls and answers they carry.
//! - [`peer`]: the connection to one peer, many calls in flight.
//! - [`listener`]: the inter-node port: Raft RPCs into each store's group, forwarded writes
//!   and read-index requests for the leader.
//! - [`router`]: where a store's writes go: the local proposer when this node leads, the
//!   leader (forwarded) otherwise, `unavailable` when no leader is known in time.
//! - [`reads`]: linearizable reads: the leader's read index (a quorum round, coalesced across
//!   the reads waiting), then this node waits until it has applied that far; and reads
//!   `after <position>`, which wait for this node to apply that `$all` position instead.
//! - [`membership`]: `CLUSTER ADD`/`REMOVE` and `--join`: learner, then voter; removal.
//! - [`discovery`]: `--discovery multicast|dns` and `--expect`: finding the nodes, and who
//!   initializes a new cluster.
//!
//! A node is a cluster node with `--node-id` and `--raft`: its peers come from `--peers`,
//! discovery, and each group's membership (a node added later is known by it alone).

pub mod discovery;
pub mod listener;
pub mod membership;
pub mod peer;
pub mod reads;
pub mod router;
pub mod transport;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::raft::types::{NodeId, Raft};
use crate::store::WriteRequest;
use peer::Peer;
use wire::{Answer, Call, PeerInfo, Secret};

/// How long a request waits for a leader to be known (an election, a partition healing)
/// before it is answered `unavailable` (PROTOCOL.md, `leader_wait_ms`).
pub const LEADER_WAIT_TIMEOUT_MS: u64 = 5_000;
/// How long a write waits for its outcome once proposed or forwarded; past it the outcome is
/// unknown (a leader cut off from its followers cannot commit) and the client gets
/// `unavailable`. Longer than an election, so a leader change normally answers first.
pub const WRITE_OUTCOME_TIMEOUT_MS: u64 = 10_000;
/// Time between pings to each peer (who is up, their client address, initialized groups).
pub const PEER_PING_INTERVAL_MS: u64 = 500;
/// Longest a ping waits for its pong.
pub const PING_TIMEOUT_MS: u64 = 1_000;
/// Bytes of forwarded write payloads the leader holds for one store at once; a follower's
/// forwards wait (backpressure on the inter-node connection) beyond it.
pub const MAX_FORWARDED_BYTES: usize = 256 << 20;
/// The shortest cluster secret accepted.
pub const MIN_SECRET_BYTES: usize = 16;

/// `--node-id`, `--raft`, `--peers`, `--cluster-secret`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// The inter-node address this node listens on (and peers dial).
    pub raft_addr: std::net::SocketAddr,
    /// Every other voter: node id → inter-node address.
    pub peers: BTreeMap<NodeId, String>,
    pub secret: Vec<u8>,
    /// `--advertise`: the client address this node tells others (see
    /// [`ClusterConfig::client_url`]).
    pub advertise: Option<String>,
    /// `--join`: members' inter-node addresses to ask to add this node.
    pub join: Vec<String>,
    /// `--raft-log-kept-entries`: log entries kept behind a checkpoint.
    pub log_kept_entries: u64,
    /// `--raft-election-timeout-ms`: the election timeout's lower bound.
    pub election_timeout_min_ms: u64,
    /// `--cluster-tls-*`: mutual TLS between nodes ([`transport`]).
    pub tls: Option<ClusterTlsPaths>,
    /// `--discovery` and its settings.
    pub discovery: Option<discovery::DiscoveryConfig>,
}

/// The files of inter-node TLS.
#[derive(Debug, Clone)]
pub struct ClusterTlsPaths {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
}

impl ClusterConfig {
    /// Every voter, this node included: id → inter-node address.
    pub fn voters(&self) -> BTreeMap<NodeId, String> {
        let mut voters = self.peers.clone();
        voters.insert(self.node_id, self.raft_addr.to_string());
        voters
    }

    /// The client address this node advertises: `--advertise`, else the address the
    /// protocol port listens on; a wildcard host there (0.0.0.0, ::) is nobody's address, so
    /// it becomes `--raft`'s host, which the peers reach already.
    pub fn client_url(&self, listening: std::net::SocketAddr) -> String {
        if let Some(advertise) = &self.advertise {
            return advertise.clone();
        }
        if !listening.ip().is_unspecified() {
            return listening.to_string();
        }
        if self.raft_addr.ip().is_unspecified() {
            tracing::warn!(
                %listening,
                "--listen and --raft are wildcard addresses: clients are told {listening}, \
                 which they cannot reach; give --advertise HOST:PORT"
            );
            return listening.to_string();
        }
        std::net::SocketAddr::new(self.raft_addr.ip(), listening.port()).to_string()
    }

    /// Parses `--advertise HOST:PORT` (a host name or an IP address, a port other than 0).
    pub fn parse_advertise(text: &str) -> Result<String, String> {
        let text = text.trim();
        let bad = || format!("--advertise: {text:?} is not HOST:PORT (a port from 1 to 65535)");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if port == 0 || host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        Ok(text.to_owned())
    }

    /// Parses `--join host:port,…`: a member's inter-node address, which reaches this node
    /// back at `--raft`, so `--raft` must name a reachable address.
    pub fn parse_join(text: &str, raft_addr: std::net::SocketAddr) -> Result<Vec<String>, String> {
        if raft_addr.ip().is_unspecified() {
            return Err(format!(
                "--join: the members dial this node back at --raft, and {raft_addr} is no \
                 node's address; give --raft the address they reach"
            ));
        }
        let addrs: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect();
        if addrs.is_empty() {
            return Err("--join names no member".into());
        }
        for addr in &addrs {
            let port = addr
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok());
            if !matches!(port, Some(port) if port != 0) {
                return Err(format!("--join: {addr:?} is not HOST:PORT"));
            }
        }
        Ok(addrs)
    }

    /// Parses `--peers id=host:port,…` (this node's own entry, if present, must match).
    pub fn parse_peers(
        text: &str,
        node_id: NodeId,
        raft_addr: std::net::SocketAddr,
    ) -> Result<BTreeMap<NodeId, String>, String> {
        let mut peers = BTreeMap::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (id, addr) = item
                .split_once('=')
                .ok_or_else(|| format!("--peers: {item:?} is not <id>=<host:port>"))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| format!("--peers: {id:?} is not a node id (a number)"))?;
            let addr = addr.trim();
            if !addr.contains(':') {
                return Err(format!("--peers: {addr:?} is not host:port"));
            }
            if id == node_id {
                if addr != raft_addr.to_string() {
                    return Err(format!(
                        "--peers names this node ({id}) at {addr}, but --raft is {raft_addr}"
                    ));
                }
                continue;
            }
            if peers.insert(id, addr.to_owned()).is_some() {
                return Err(format!("--peers names node {id} twice"));
            }
        }
        if peers.is_empty() {
            return Err("--peers names no other node".into());
        }
        Ok(peers)
    }
}

/// One store's group on this node, as the listener and the router reach it.
pub struct Group {
    pub raft: Raft,
    /// The local proposer's queue (used only while this node leads).
    pub local: mpsc::Sender<WriteRequest>,
    /// Bytes of forwarded writes held ([`MAX_FORWARDED_BYTES`]).
    pub forward_budget: Arc<Semaphore>,
    pub reads: reads::Linearizer,
}

impl Group {
    /// Whether this node leads the group now (as far as it knows).
    pub fn leads(&self, me: NodeId) -> bool {
        let metrics = self.raft.metrics();
        let now = metrics.borrow();
        now.current_leader == Some(me) && now.state == openraft::ServerState::Leader
    }
}

/// The cluster, as every part of this node sees it.
pub struct Cluster {
    pub config: ClusterConfig,
    pub secret: Secret,
    /// Inter-node TLS (`--cluster-tls-*`), if configured.
    pub tls: Option<Arc<transport::ClusterTls>>,
    /// Connects to peers as this node (TLS if configured, then the secret's challenge).
    pub dialer: Arc<transport::Dialer>,
    /// Where this node's clients connect.
    pub client_url: String,
    /// The connections to each peer this node knows of (`--peers`, discovery, and every
    /// member of a store's group), by node id.
    peers: RwLock<BTreeMap<NodeId, PeerLinks>>,
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
    /// What each peer last said about itself (absent: not heard from lately).
    heard: Mutex<BTreeMap<NodeId, PeerInfo>>,
    /// Client addresses given with `CLUSTER ADD`, until the node answers a ping itself.
    client_url_hints: Mutex<BTreeMap<NodeId, String>>,
    /// Peers with a ping loop running.
    pinging: Mutex<std::collections::BTreeSet<NodeId>>,
    pub stop: CancellationToken,
}

/// Two connections per peer: Raft RPCs, and forwarded writes and reads (so a slow leader
/// applying forwarded writes never delays heartbeats).
struct PeerLinks {
    addr: String,
    raft: Arc<Peer>,
    client: Arc<Peer>,
}

impl Cluster {
    pub fn new(
        config: ClusterConfig,
        client_url: String,
        tls: Option<Arc<transport::ClusterTls>>,
    ) -> Arc<Cluster> {
        let secret = Secret::new(&config.secret);
        let dialer = Arc::new(transport::Dialer {
            me: config.node_id,
            secret: secret.clone(),
            tls: tls.clone(),
        });
        let cluster = Arc::new(Cluster {
            peers: RwLock::default(),
            secret,
            tls,
            dialer,
            client_url,
            groups: RwLock::default(),
            heard: Mutex::default(),
            client_url_hints: Mutex::default(),
            pinging: Mutex::default(),
            stop: CancellationToken::new(),
            config,
        });
        for (&id, addr) in &cluster.config.peers {
            cluster.learn_peer(id, addr);
        }
        cluster
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// Records (or updates) where peer `id` listens; its connections are dialed lazily.
    pub fn learn_peer(&self, id: NodeId, addr: &str) {
        if id == self.node_id() || addr.is_empty() {
            return;
        }
        let mut peers = self.peers.write().expect("peers lock");
        if peers.get(&id).is_some_and(|links| links.addr == addr) {
            return;
        }
        let links = PeerLinks {
            addr: addr.to_owned(),
            raft: Arc::new(Peer::new(id, addr.to_owned(), self.dialer.clone())),
            client: Arc::new(Peer::new(id, addr.to_owned(), self.dialer.clone())),
        };
        peers.insert(id, links);
    }

    /// Learns every member of `raft`'s group (their addresses are in the membership).
    fn learn_members(&self, raft: &Raft) {
        let nodes: Vec<(NodeId, String)> = {
            let metrics = raft.metrics();
            let now = metrics.borrow();
            now.membership_config
                .membership()
                .nodes()
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect()
        };
        for (id, addr) in nodes {
            self.learn_peer(id, &addr);
        }
    }

    /// Every peer this node knows of, with its inter-node address.
    pub fn known_peers(&self) -> BTreeMap<NodeId, String> {
        for group in self.groups() {
            self.learn_members(&group.raft);
        }
        self.peers
            .read()
            .expect("peers lock")
            .iter()
            .map(|(id, links)| (*id, links.addr.clone()))
            .collect()
    }

    fn links(&self, target: NodeId) -> Option<(Arc<Peer>, Arc<Peer>)> {
        let find = || {
            self.peers
                .read()
                .expect("peers lock")
                .get(&target)
                .map(|links| (links.raft.clone(), links.client.clone()))
        };
        if let Some(found) = find() {
            return Some(found);
        }
        for group in self.groups() {
            self.learn_members(&group.raft);
        }
        find()
    }

    /// The connection for Raft RPCs to `target`.
    pub fn raft_peer(&self, target: NodeId) -> Option<Arc<Peer>> {
        self.links(target).map(|(raft, _)| raft)
    }

    /// The connection for forwarded writes and reads to `target`.
    pub fn client_peer(&self, target: NodeId) -> Option<Arc<Peer>> {
        self.links(target).map(|(_, client)| client)
    }

    /// Every store's group on this node.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.groups
            .read()
            .expect("groups lock")
            .values()
            .cloned()
            .collect()
    }

    /// Every store's group on this node, by store name.
    pub fn groups_by_name(&self) -> BTreeMap<String, Arc<Group>> {
        self.groups.read().expect("groups lock").clone()
    }

    /// Remembers the client address given for `id` (`CLUSTER ADD`), until it answers.
    pub fn hint_client_url(&self, id: NodeId, url: String) {
        self.client_url_hints
            .lock()
            .expect("hints lock")
            .insert(id, url);
    }

    pub fn register(&self, store: &str, group: Arc<Group>) {
        self.groups
            .write()
            .expect("groups lock")
            .insert(store.to_owned(), group);
    }

    pub fn group(&self, store: &str) -> Option<Arc<Group>> {
        self.groups.read().expect("groups lock").get(store).cloned()
    }

    /// What this node says about itself in a pong.
    pub async fn info(&self) -> PeerInfo {
        let groups: Vec<(String, Arc<Group>)> = self
            .groups
            .read()
            .expect("groups lock")
            .iter()
            .map(|(name, group)| (name.clone(), group.clone()))
            .collect();
        let mut initialized = BTreeMap::new();
        let mut applied = BTreeMap::new();
        for (name, group) in groups {
            let last_applied = group
                .raft
                .metrics()
                .borrow()
                .last_applied
                .map(|id| id.index);
            applied.insert(name.clone(), last_applied);
            initialized.insert(name, group.raft.is_initialized().await.unwrap_or(true));
        }
        PeerInfo {
            node_id: self.node_id(),
            client_url: self.client_url.clone(),
            initialized,
            applied,
        }
    }

    /// The peers heard from lately.
    pub fn heard(&self) -> BTreeMap<NodeId, PeerInfo> {
        self.heard.lock().expect("heard lock").clone()
    }

    /// Client addresses by node id: this node's, and every peer's heard from.
    pub fn client_urls(&self) -> BTreeMap<NodeId, String> {
        let mut urls = self.client_url_hints.lock().expect("hints lock").clone();
        urls.extend(
            self.heard()
                .into_iter()
                .map(|(id, info)| (id, info.client_url)),
        );
        urls.insert(self.node_id(), self.client_url.clone());
        urls
    }

    /// Pings every peer this node knows of every [`PEER_PING_INTERVAL_MS`] until the cluster
    /// stops: one loop per peer, started when the peer becomes known (from `--peers`,
    /// discovery, or a group's membership), ended when it is forgotten.
    pub fn spawn_pinger(self: &Arc<Self>) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(PEER_PING_INTERVAL_MS));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = cluster.stop.cancelled() => return,
                }
                for id in cluster.known_peers().into_keys() {
                    if cluster.pinging.lock().expect("pinging lock").insert(id) {
                        tokio::spawn(cluster.clone().ping_loop(id));
                    }
                }
            }
        });
    }

    async fn ping_loop(self: Arc<Self>, target: NodeId) {
        let mut ticks = tokio::time::interval(Duration::from_millis(PEER_PING_INTERVAL_MS));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.stop.cancelled() => break,
            }
            let Some(peer) = self.client_peer(target) else {
                break;
            };
            let answer = peer
                .call(&Call::Ping, Duration::from_millis(PING_TIMEOUT_MS))
                .await;
            let (was_up, now_up) = {
                let mut heard = self.heard.lock().expect("heard lock");
                let was_up = heard.contains_key(&target);
                match answer {
                    Ok(Answer::Pong(info)) if info.node_id == target => {
                        heard.insert(target, info);
                        (was_up, Ok(()))
                    }
                    Ok(other) => {
                        heard.remove(&target);
                        (
                            was_up,
                            Err(format!("unexpected answer to a ping: {other:?}")),
                        )
                    }
                    Err(error) => {
                        heard.remove(&target);
                        (was_up, Err(error.to_string()))
                    }
                }
            };
            self.peer_seen(target, was_up, now_up);
        }
        self.heard.lock().expect("heard lock").remove(&target);
        self.pinging.lock().expect("pinging lock").remove(&target);
    }

    /// Forgets peer `id` once no store's group has it as a member (after `CLUSTER REMOVE`):
    /// no more pings, no client address.
    pub fn forget_peer_unless_member(&self, id: NodeId) {
        let member = self.groups().iter().any(|group| {
            let metrics = group.raft.metrics();
            let now = metrics.borrow();
            now.membership_config.membership().get_node(&id).is_some()
        });
        if !member {
            self.peers.write().expect("peers lock").remove(&id);
            self.client_url_hints
                .lock()
                .expect("hints lock")
                .remove(&id);
            self.heard.lock().expect("heard lock").remove(&id);
        }
    }

    /// A peer's ping was answered (`Ok`) or not: `cluster.node.up`/`down` on a change, and
    /// the `esdb_cluster_peer_up` gauge. A peer never heard from starts as down, silently.
    fn peer_seen(&self, peer: NodeId, was_up: bool, now: Result<(), String>) {
        let members = self.known_peers().len() as u64 + 1;
        let gauge = crate::metrics::metrics()
            .cluster_peer_up
            .with_label_values(&[&peer.to_string()]);
        match now {
            Ok(()) => {
                gauge.set(1);
                if !was_up {
                    crate::telemetry::cluster_node_up(peer, members);
                    tracing::info!(peer, "peer up");
                }
            }
            Err(reason) => {
                gauge.set(0);
                if was_up {
                    crate::telemetry::cluster_node_down(peer, members, &reason);
                    tracing::warn!(peer, %reason, "peer down");
                }
            }
        }
    }

    /// Initializes `store`'s new group if this node is the one to: the lowest node id, once
    /// a majority of the voters (itself included) answers and none of them holds the group
    /// already. Every other node waits to hear from the leader. A node started without
    /// `--peers` (joining, or waiting for `CLUSTER ADD`) never initializes a group: it
    /// receives one from the leader. Ends when done or stopped.
    pub async fn initialize_when_ready(self: Arc<Self>, store: String, raft: Raft) {
        if self.config.peers.is_empty() {
            return;
        }
        let voters = self.config.voters();
        let lowest = *voters.keys().next().expect("at least this node");
        if lowest != self.node_id() {
            return;
        }
        let majority = voters.len() / 2 + 1;
        loop {
            match raft.is_initialized().await {
                Ok(false) => {}
                _ => return,
            }
            let heard = self.heard();
            let held_elsewhere = heard
                .values()
                .any(|info| info.initialized.get(&store).copied().unwrap_or(false));
            if held_elsewhere {
                tracing::info!(%store, "the group exists on a peer: not initializing it here");
                return;
            }
            let answering = heard
                .values()
                .filter(|info| info.initialized.contains_key(&store))
                .count()
                + 1;
            if answering >= majority {
                let members: BTreeMap<NodeId, openraft::BasicNode> = voters
                    .iter()
                    .map(|(&id, addr)| (id, openraft::BasicNode::new(addr)))
                    .collect();
                match raft.initialize(members).await {
                    Ok(()) => tracing::info!(%store, voters = voters.len(), "cluster initialized"),
                    Err(error) => tracing::info!(%store, %error, "not initialized here"),
                }
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(PEER_PING_INTERVAL_MS)) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }

    /// One store's entry in `CLUSTER`.
    pub fn group_json(&self, store: &str, metrics: &RaftMetrics) -> serde_json::Value {
        let heard = self.heard();
        let urls = self.client_urls();
        group_json(store, metrics, &heard, |id| urls.get(&id).cloned())
    }

    /// The `cluster` object of `INFO`, as `store`'s group sees it.
    pub fn info_json(&self, store: &str) -> serde_json::Value {
        let (leader, members) = match self.group(store) {
            Some(group) => {
                let metrics = group.raft.metrics();
                let now = metrics.borrow();
                let members: Vec<NodeId> = now.membership_config.membership().voter_ids().collect();
                (now.current_leader, members)
            }
            None => (None, Vec::new()),
        };
        let members = if members.is_empty() {
            self.config.voters().keys().copied().collect()
        } else {
            members
        };
        let urls: BTreeMap<String, String> = self
            .client_urls()
            .into_iter()
            .map(|(id, url)| (id.to_string(), url))
            .collect();
        serde_json::json!({
            "node_id": self.node_id(),
            "leader_id": leader,
            "members": members,
            "client_urls": urls,
        })
    }
}

type RaftMetrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;

/// One store's entry in `CLUSTER`: the group as this node sees it (`heard`: what peers said
/// lately; `client_url`: where a member takes clients, if known).
pub fn group_json(
    store: &str,
    metrics: &RaftMetrics,
    heard: &BTreeMap<NodeId, PeerInfo>,
    client_url: impl Fn(NodeId) -> Option<String>,
) -> serde_json::Value {
    let membership = metrics.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let learners: Vec<NodeId> = membership.learner_ids().collect();
    let last_log_index = metrics.last_log_index;
    let members: Vec<serde_json::Value> = voters
        .iter()
        .map(|id| (*id, "voter"))
        .chain(learners.iter().map(|id| (*id, "learner")))
        .map(|(id, role)| {
            let me = id == metrics.id;
            let applied = if me {
                metrics.last_applied.map(|log_id| log_id.index)
            } else {
                heard
                    .get(&id)
                    .and_then(|info| info.applied.get(store).copied().flatten())
            };
            // What the leader has replicated to each member (only the leader knows).
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(&id).copied())
                .map(|matched| matched.map(|log_id| log_id.index));
            let lag = matched.map(|matched| {
                last_log_index
                    .unwrap_or(0)
                    .saturating_sub(matched.unwrap_or(0))
            });
            serde_json::json!({
                "node_id": id,
                "role": role,
                "leader": metrics.current_leader == Some(id),
                "reachable": me || heard.contains_key(&id),
                "client_url": client_url(id),
                "applied_index": applied,
                "matched_index": matched.flatten(),
                "lag": lag,
            })
        })
        .collect();
    serde_json::json!({
        "leader_id": metrics.current_leader,
        "term": metrics.current_term,
        "state": format!("{:?}", metrics.state).to_lowercase(),
        "last_log_index": last_log_index,
        "applied_index": metrics.last_applied.map(|log_id| log_id.index),
        "checkpoint_index": metrics.snapshot.map(|log_id| log_id.index),
        "purged_index": metrics.purged.map(|log_id| log_id.index),
        "members": members,
    })
}

/// The file in the data directory recording which node it belongs to.
pub const NODE_ID_FILE: &str = "cluster-node-id";

/// Records this node's id in its data directory, or refuses a directory another node's id
/// wrote: two nodes sharing a data directory's history would break Raft's promises.
pub fn check_node_id(data_dir: &std::path::Path, node_id: NodeId) -> Result<(), String> {
    let path = data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<NodeId>() {
            Ok(found) if found == node_id => Ok(()),
            Ok(found) => Err(format!(
                "{} belongs to cluster node {found}, not {node_id}",
                data_dir.display()
            )),
            Err(_) => Err(format!("{} is not a node id", path.display())),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let write = || -> std::io::Result<()> {
                let temp = data_dir.join(format!("{NODE_ID_FILE}.tmp"));
                let file = std::fs::File::create(&temp)?;
                std::io::Write::write_all(&mut &file, format!("{node_id}\n").as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&temp, &path)?;
                crate::raft::segments::sync_dir(data_dir)
            };
            write().map_err(|e| format!("writing {}: {e}", path.display()))
        }
        Err(error) => Err(format!("reading {}: {error}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(raft: &str, advertise: Option<&str>) -> ClusterConfig {
        ClusterConfig {
            node_id: 1,
            raft_addr: raft.parse().unwrap(),
            peers: BTreeMap::from([(2, "10.0.0.2:7350".to_owned())]),
            secret: vec![0; MIN_SECRET_BYTES],
            advertise: advertise.map(str::to_owned),
            join: Vec::new(),
            log_kept_entries: 1,
            election_timeout_min_ms: 400,
            tls: None,
            discovery: None,
        }
    }

    #[test]
    fn the_client_url_is_advertise_else_a_reachable_listen_address() {
        let listening: std::net::SocketAddr = "0.0.0.0:4350".parse().unwrap();
        let told = config("10.0.0.1:7350", Some("db-1.example:4350"));
        assert_eq!(told.client_url(listening), "db-1.example:4350");
        let wildcard = config("10.0.0.1:7350", None);
        assert_eq!(wildcard.client_url(listening), "10.0.0.1:4350");
        let specific = config("10.0.0.1:7350", None);
        assert_eq!(
            specific.client_url("10.0.0.9:4351".parse().unwrap()),
            "10.0.0.9:4351"
        );
    }

    #[test]
    fn advertise_must_be_host_and_port() {
        assert_eq!(
            ClusterConfig::parse_advertise("db-1:4350").unwrap(),
            "db-1:4350"
        );
        assert_eq!(
            ClusterConfig::parse_advertise("[::1]:4350").unwrap(),
            "[::1]:4350"
        );
        for bad in [
            "db-1",
            "db-1:0",
            ":4350",
            "db-1:99999",
            "db 1:4350",
            "db-1:x",
        ] {
            assert!(ClusterConfig::parse_advertise(bad).is_err(), "{bad}");
        }
    }
}
