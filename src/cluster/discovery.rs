//! Finding the other nodes without `--peers`: `--discovery multicast` (the seed's way: UDP
//! announcements to a multicast group) and `--discovery dns` (a name whose A/AAAA records are
//! the nodes, as a Kubernetes headless service gives).
//!
//! # Multicast announcements
//! Every [`DiscoveryConfig::interval_ms`] a node sends one datagram to the group:
//! `ESDBDS01` ‖ HMAC-SHA256(secret, `ESDBDS01` ‖ body) ‖ body, the body being JSON
//! `{"node_id","raft_addr","client_url","sent_ms","nonce"}`. The secret never travels. A
//! receiver drops a datagram whose MAC does not verify (another cluster, or a forger), one sent
//! more than [`MAX_ANNOUNCEMENT_AGE_MS`] from its own clock (stale, or replayed later), and one
//! not newer than the last it accepted from that node (replayed within the window). What it
//! accepts tells it a node's id and addresses: it becomes a known peer (pinged, dialed by Raft),
//! and the handshake on the inter-node port proves the secret again before anything is served.
//!
//! # DNS
//! Every interval the name is resolved; each address found, at this node's `--raft` port, is
//! dialed (the handshake proves the secret and names the node), and becomes a known peer.
//!
//! # Forming a new cluster
//! Exactly one node initializes each store's group, deterministically: the lowest id among
//! the nodes discovered (itself included), once `--expect N` of them are known, all of them
//! answer pings, and none holds the group yet; the members are those N lowest ids. A node that
//! finds the group held by a peer asks that peer to add it (learner, then voter), as `--join`
//! does. A node with data never initializes again.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::cluster::membership::Change;
use crate::cluster::{Cluster, PEER_PING_INTERVAL_MS};
use crate::raft::types::{NodeId, Raft};

/// The datagram's magic, with the announcement format's version.
const MAGIC: &[u8; 8] = b"ESDBDS01";
const MAC_BYTES: usize = 32;
/// The largest announcement sent or read (an id, two addresses, a time and a nonce).
pub const MAX_ANNOUNCEMENT_BYTES: usize = 1_024;
/// The oldest (or most future) announcement accepted, by the receiver's clock.
pub const MAX_ANNOUNCEMENT_AGE_MS: u64 = 30_000;
/// The seed's group, port and interval.
pub const DEFAULT_MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 0, 1);
pub const DEFAULT_MULTICAST_PORT: u16 = 45_892;
pub const DEFAULT_INTERVAL_MS: u64 = 5_000;
/// Nodes a discovering node keeps track of at most (announcements beyond are dropped).
pub const MAX_DISCOVERED_NODES: usize = 256;

/// How this node finds the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Multicast {
        group: Ipv4Addr,
        port: u16,
        /// The interface (its IPv4 address) to send on and join the group on; unspecified:
        /// the system's choice.
        interface: Ipv4Addr,
    },
    Dns {
        name: String,
    },
}

/// `--discovery`, `--expect` and their settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub method: Method,
    pub interval_ms: u64,
    /// Voters of a new cluster: the group is initialized once this many nodes are known.
    pub expect: usize,
}

/// What a node announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub node_id: NodeId,
    pub raft_addr: String,
    pub client_url: String,
    pub sent_ms: u64,
    pub nonce: u64,
}

/// Why an announcement was dropped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("not an announcement")]
    Malformed,
    #[error("the MAC does not verify (wrong secret, or forged)")]
    BadMac,
    #[error("sent {0} ms away from this node's clock")]
    Stale(u64),
    #[error("not newer than the last accepted from node {0} (replayed)")]
    Replayed(NodeId),
    #[error("this node's own")]
    Own,
}

/// Seals and opens announcements with the cluster secret.
pub struct Announcer {
    key: hmac::Key,
}

impl Announcer {
    pub fn new(secret: &[u8]) -> Announcer {
        Announcer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn seal(&self, announcement: &Announcement) -> Vec<u8> {
        let body = serde_json::to_vec(announcement).expect("an announcement serialises");
        let mut signed = Vec::with_capacity(MAGIC.len() + body.len());
        signed.extend_from_slice(MAGIC);
        signed.extend_from_slice(&body);
        let tag = hmac::sign(&self.key, &signed);
        let mut datagram = Vec::with_capacity(MAGIC.len() + MAC_BYTES + body.len());
        datagram.extend_from_slice(MAGIC);
        datagram.extend_from_slice(tag.as_ref());
        datagram.extend_from_slice(&body);
        datagram
    }

    /// The announcement in `datagram`, if its MAC verifies.
    pub fn open(&self, datagram: &[u8]) -> Result<Announcement, Dropped> {
        if datagram.len() < MAGIC.len() + MAC_BYTES
            || datagram.len() > MAX_ANNOUNCEMENT_BYTES
            || &datagram[..MAGIC.len()] != MAGIC
        {
            return Err(Dropped::Malformed);
        }
        let (tag, body) = datagram[MAGIC.len()..].split_at(MAC_BYTES);
        let mut signed = Vec::with_capacity(MAGIC.len() + body.len());
        signed.extend_from_slice(MAGIC);
        signed.extend_from_slice(body);
        hmac::verify(&self.key, &signed, tag).map_err(|_| Dropped::BadMac)?;
        serde_json::from_slice(body).map_err(|_| Dropped::Malformed)
    }
}

/// The last announcement accepted from each node: what makes replays and stale ones fail.
#[derive(Default)]
pub struct Freshness {
    last: BTreeMap<NodeId, (u64, u64)>,
}

impl Freshness {
    /// Accepts `announcement` (at `now_ms`) if it is fresh and newer than the last from its
    /// node; `me` is this node's id.
    pub fn accept(
        &mut self,
        announcement: &Announcement,
        me: NodeId,
        now_ms: u64,
    ) -> Result<(), Dropped> {
        if announcement.node_id == me {
            return Err(Dropped::Own);
        }
        let skew = now_ms.abs_diff(announcement.sent_ms);
        if skew > MAX_ANNOUNCEMENT_AGE_MS {
            return Err(Dropped::Stale(skew));
        }
        let stamp = (announcement.sent_ms, announcement.nonce);
        match self.last.get(&announcement.node_id) {
            Some(last) if *last >= stamp => return Err(Dropped::Replayed(announcement.node_id)),
            None if self.last.len() >= MAX_DISCOVERED_NODES => return Err(Dropped::Malformed),
            _ => {}
        }
        self.last.insert(announcement.node_id, stamp);
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u64::from_be_bytes(bytes)
}

/// The multicast socket: bound to the group's port (shared with other nodes on this host),
/// joined to the group on the interface, looping datagrams back to this host's other nodes.
fn multicast_socket(
    group: Ipv4Addr,
    port: u16,
    interface: Ipv4Addr,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    socket.join_multicast_v4(&group, &interface)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(1)?;
    if !interface.is_unspecified() {
        socket.set_multicast_if_v4(&interface)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl Cluster {
    /// Starts discovery (announcing and listening, or resolving), and, per store, the task
    /// that initializes or joins its group. Fails if the socket cannot be set up.
    pub fn start_discovery(self: &Arc<Self>, discovery: &DiscoveryConfig) -> Result<(), String> {
        match &discovery.method {
            Method::Multicast {
                group,
                port,
                interface,
            } => {
                let socket = multicast_socket(*group, *port, *interface).map_err(|e| {
                    format!("--discovery multicast: the socket on {group}:{port}: {e}")
                })?;
                let socket = tokio::net::UdpSocket::from_std(socket).map_err(|e| e.to_string())?;
                let socket = Arc::new(socket);
                tokio::spawn(self.clone().announce(
                    socket.clone(),
                    SocketAddr::from((*group, *port)),
                    discovery.interval_ms,
                ));
                tokio::spawn(self.clone().listen(socket));
            }
            Method::Dns { name } => {
                tokio::spawn(self.clone().resolve(name.clone(), discovery.interval_ms));
            }
        }
        Ok(())
    }

    async fn announce(
        self: Arc<Self>,
        socket: Arc<tokio::net::UdpSocket>,
        to: SocketAddr,
        interval_ms: u64,
    ) {
        let announcer = Announcer::new(&self.config.secret);
        let mut ticks = tokio::time::interval(Duration::from_millis(interval_ms));
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.stop.cancelled() => return,
            }
            let datagram = announcer.seal(&Announcement {
                node_id: self.node_id(),
                raft_addr: self.config.raft_addr.to_string(),
                client_url: self.client_url.clone(),
                sent_ms: now_ms(),
                nonce: random_u64(),
            });
            if let Err(error) = socket.send_to(&datagram, to).await {
                tracing::warn!(%error, %to, "sending a discovery announcement");
            }
        }
    }

    async fn listen(self: Arc<Self>, socket: Arc<tokio::net::UdpSocket>) {
        let announcer = Announcer::new(&self.config.secret);
        let mut freshness = Freshness::default();
        let mut buffer = vec![0u8; MAX_ANNOUNCEMENT_BYTES + 1];
        loop {
            let received = tokio::select! {
                received = socket.recv_from(&mut buffer) => received,
                _ = self.stop.cancelled() => return,
            };
            let (length, from) = match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::warn!(%error, "receiving discovery announcements");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let accepted = announcer.open(&buffer[..length]).and_then(|announcement| {
                freshness
                    .accept(&announcement, self.node_id(), now_ms())
                    .map(|()| announcement)
            });
            match accepted {
                Ok(announcement) => self.discovered(announcement),
                Err(Dropped::Own) => {}
                Err(dropped) => tracing::debug!(%from, %dropped, "discovery announcement dropped"),
            }
        }
    }

    fn discovered(&self, announcement: Announcement) {
        let new = !self.known_peers().contains_key(&announcement.node_id);
        self.learn_peer(announcement.node_id, &announcement.raft_addr);
        self.hint_client_url(announcement.node_id, announcement.client_url);
        if new {
            tracing::info!(
                node = announcement.node_id,
                raft = %announcement.raft_addr,
                "discovered a node"
            );
        }
    }

    async fn resolve(self: Arc<Self>, name: String, interval_ms: u64) {
        let port = self.config.raft_addr.port();
        let mut ticks = tokio::time::interval(Duration::from_millis(interval_ms));
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.stop.cancelled() => return,
            }
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((name.as_str(), port)).await
            {
                Ok(addrs) => addrs.take(MAX_DISCOVERED_NODES).collect(),
                Err(error) => {
                    tracing::warn!(%name, %error, "--discovery dns: resolving");
                    continue;
                }
            };
            let known: Vec<String> = self.known_peers().into_values().collect();
            for addr in addrs {
                if addr == self.config.raft_addr || known.contains(&addr.to_string()) {
                    continue;
                }
                match crate::cluster::membership::identify(&self, &addr.to_string()).await {
                    Ok(id) if id != self.node_id() => {
                        tracing::info!(node = id, %addr, "discovered a node (dns)");
                        self.learn_peer(id, &addr.to_string());
                    }
                    Ok(_) => {}
                    Err(error) => tracing::debug!(%addr, %error, "--discovery dns: not a node yet"),
                }
            }
        }
    }

    /// With discovery: initializes `store`'s group if this node is the one to (see the module
    /// doc), or asks a peer that holds it to add this node. Ends when the group here is
    /// initialized or the cluster stops.
    pub async fn form_or_join(self: Arc<Self>, store: String, raft: Raft, expect: usize) {
        loop {
            if raft.is_initialized().await.unwrap_or(true) {
                return;
            }
            let heard = self.heard();
            let holder = heard
                .iter()
                .find(|(_, info)| info.initialized.get(&store).copied().unwrap_or(false))
                .map(|(id, _)| *id);
            let known = self.known_peers();
            if let Some(holder) = holder {
                if let Some(addr) = known.get(&holder) {
                    let me = Change::Add {
                        node_id: self.node_id(),
                        raft_addr: self.config.raft_addr.to_string(),
                        client_url: Some(self.client_url.clone()),
                    };
                    match crate::cluster::membership::ask(&self, addr, &store, &me).await {
                        Ok(()) => tracing::info!(%store, holder, "added to the cluster"),
                        Err(error) => tracing::info!(%store, holder, %error, "joining: not yet"),
                    }
                }
            } else {
                let mut ids: Vec<NodeId> = known.keys().copied().collect();
                ids.push(self.node_id());
                ids.sort_unstable();
                ids.truncate(expect);
                let all_answer = ids.iter().all(|id| {
                    *id == self.node_id()
                        || heard
                            .get(id)
                            .is_some_and(|info| info.initialized.contains_key(&store))
                });
                if ids.len() >= expect && ids[0] == self.node_id() && all_answer {
                    let members: BTreeMap<NodeId, openraft::BasicNode> = ids
                        .iter()
                        .map(|id| {
                            let addr = if *id == self.node_id() {
                                self.config.raft_addr.to_string()
                            } else {
                                known.get(id).cloned().unwrap_or_default()
                            };
                            (*id, openraft::BasicNode::new(addr))
                        })
                        .collect();
                    match raft.initialize(members).await {
                        Ok(()) => {
                            tracing::info!(%store, voters = ?ids, "cluster initialized (discovery)");
                            return;
                        }
                        Err(error) => tracing::info!(%store, %error, "not initialized here"),
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(PEER_PING_INTERVAL_MS)) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(sent_ms: u64, nonce: u64) -> Announcement {
        Announcement {
            node_id: 2,
            raft_addr: "10.0.0.2:7350".into(),
            client_url: "10.0.0.2:4350".into(),
            sent_ms,
            nonce,
        }
    }

    #[test]
    fn announcements_verify_with_the_secret_only() {
        let ours = Announcer::new(b"the cluster secret, 16+ bytes");
        let theirs = Announcer::new(b"another cluster's secret");
        let sealed = ours.seal(&announcement(1_000, 1));
        assert_eq!(ours.open(&sealed).unwrap(), announcement(1_000, 1));
        assert_eq!(theirs.open(&sealed), Err(Dropped::BadMac));
        let mut forged = sealed.clone();
        let last = forged.len() - 2;
        forged[last] ^= 1;
        assert_eq!(ours.open(&forged), Err(Dropped::BadMac));
        assert_eq!(ours.open(b"ESDBDS01short"), Err(Dropped::Malformed));
        assert!(!String::from_utf8_lossy(&sealed).contains("secret"));
    }

    #[test]
    fn stale_and_replayed_announcements_are_dropped() {
        let mut freshness = Freshness::default();
        let now = 100_000;
        assert_eq!(freshness.accept(&announcement(now, 5), 1, now), Ok(()));
        assert_eq!(
            freshness.accept(&announcement(now, 5), 1, now + 10),
            Err(Dropped::Replayed(2))
        );
        assert_eq!(
            freshness.accept(&announcement(now - 1, 9), 1, now),
            Err(Dropped::Replayed(2))
        );
        assert_eq!(freshness.accept(&announcement(now + 1, 0), 1, now), Ok(()));
        assert!(matches!(
            freshness.accept(
                &announcement(now - MAX_ANNOUNCEMENT_AGE_MS - 1_000, 0),
                1,
                now
            ),
            Err(Dropped::Stale(_))
        ));
        assert_eq!(
            freshness.accept(&announcement(now + 2, 0), 2, now),
            Err(Dropped::Own)
        );
    }
}
