//! The inter-node wire: an authenticating handshake, then length-checked frames.
//!
//! # Handshake
//! Both sides prove they know the cluster secret without sending it (HMAC-SHA256 over fresh
//! nonces, so a recorded handshake cannot be replayed):
//! 1. listener → dialer: `ESDBCL01`, a 32-byte nonce `ns`;
//! 2. dialer → listener: `ESDBCL01`, its node id (u64 BE), a 32-byte nonce `nc`, and
//!    `HMAC(secret, "dialer" ‖ ns ‖ nc ‖ id)`;
//! 3. listener → dialer (only if that MAC verifies; otherwise it closes): its node id and
//!    `HMAC(secret, "listener" ‖ nc ‖ ns ‖ id)`, which the dialer verifies.
//!
//! # Frames
//! `[u32 BE length][u64 BE call id][JSON body]`, the length covering id and body. A frame
//! longer than [`MAX_FRAME_BYTES`] is refused before anything is allocated for it, and closes
//! the connection. A dialer sends [`Call`]s; the listener answers each with an [`Answer`]
//! carrying the same id, in any order.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use ring::hmac;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::raft::types::{NodeId, TypeConfig};
use crate::store::quota::QuotaRefusal;
use crate::store::{Command, Outcome, Rejection, StoreError};

/// The handshake's magic, with the wire version.
const MAGIC: &[u8; 8] = b"ESDBCL01";
const NONCE_BYTES: usize = 32;
const MAC_BYTES: usize = 32;
/// Longest a handshake may take: a peer that cannot prove itself by then is dropped.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// The largest frame either side accepts: a log batch is at most 64 MiB of payload
/// (`store::writer::MAX_BATCH_BYTES`), and JSON escaping can grow it; larger AppendEntries are
/// split (openraft is told the payload is too large).
pub const MAX_FRAME_BYTES: usize = 192 << 20;
/// A frame's fixed header: length and call id.
const FRAME_HEADER_BYTES: usize = 12;

/// What a node asks a peer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Call {
    /// Who are you, and which of your stores' groups are initialized?
    Ping,
    AppendEntries {
        store: String,
        rpc: AppendEntriesRequest<TypeConfig>,
    },
    Vote {
        store: String,
        rpc: VoteRequest<NodeId>,
    },
    InstallSnapshot {
        store: String,
        rpc: InstallSnapshotRequest<TypeConfig>,
    },
    /// Writes a follower received, for the leader to propose, in this order.
    Forward {
        store: String,
        commands: Vec<Command>,
    },
    /// The leader's read index (a quorum confirmed its leadership).
    ReadIndex { store: String },
    /// A membership change of the store's group (`CLUSTER ADD`/`REMOVE`, `--join`); a
    /// member that does not lead passes it on to the leader.
    ChangeMembers {
        store: String,
        change: crate::cluster::membership::Change,
    },
}

/// A peer's answer to a [`Call`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    Pong(PeerInfo),
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Forwarded(Forwarded),
    /// The read index, or `None`: this node is not the leader (nothing was done).
    ReadIndex(Option<u64>),
    /// The call names a store this node does not serve, or the node is stopping.
    Refused(String),
    MembersChanged(Result<(), crate::cluster::membership::ChangeError>),
}

/// What a node tells its peers about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub node_id: NodeId,
    /// Where clients reach it (its protocol port).
    pub client_url: String,
    /// Per store: whether its group has been initialized (holds a vote or a log).
    pub initialized: BTreeMap<String, bool>,
    /// Per store: the last log index it applied.
    #[serde(default)]
    pub applied: BTreeMap<String, Option<u64>>,
}

/// The leader's answer to forwarded writes.
#[derive(Debug, Serialize, Deserialize)]
pub enum Forwarded {
    /// This node is not the leader: nothing was proposed, so the follower may try elsewhere.
    NotLeader,
    /// One outcome per command, in order.
    Outcomes(Vec<Result<Outcome, WireError>>),
}

/// A [`StoreError`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireError {
    Rejected(Rejection),
    Storage(String),
    Full(String),
    Corrupt(String),
    Unreadable(String),
    ShuttingDown,
    Unavailable(String),
    /// A store quota's refusal (`exceeded`: a limit, else a rate). Not sent by today's
    /// leaders, which check quotas only for writes they receive from clients.
    Quota {
        exceeded: bool,
        message: String,
    },
}

impl From<StoreError> for WireError {
    fn from(error: StoreError) -> WireError {
        match error {
            StoreError::Rejected(rejection) => WireError::Rejected(rejection),
            StoreError::Storage(message) => WireError::Storage(message),
            StoreError::Full(message) => WireError::Full(message),
            StoreError::Corrupt(message) => WireError::Corrupt(message),
            // A forwarded write's duplicate check met a damaged record on the leader, which
            // stops: to the follower, an invariant broken there.
            StoreError::Checksum(corruption) => WireError::Corrupt(corruption.to_string()),
            StoreError::Unreadable(message) => WireError::Unreadable(message),
            // The leader stopping mid-write is an unknown outcome for the follower's client,
            // whose own node is not shutting down.
            StoreError::ShuttingDown => WireError::ShuttingDown,
            StoreError::Unavailable(message) => WireError::Unavailable(message),
            StoreError::Quota(QuotaRefusal::Exceeded(message)) => WireError::Quota {
                exceeded: true,
                message,
            },
            StoreError::Quota(QuotaRefusal::RateLimited(message)) => WireError::Quota {
                exceeded: false,
                message,
            },
        }
    }
}

impl From<WireError> for StoreError {
    fn from(error: WireError) -> StoreError {
        match error {
            WireError::Rejected(rejection) => StoreError::Rejected(rejection),
            WireError::Storage(message) => StoreError::Storage(message),
            WireError::Full(message) => StoreError::Full(message),
            WireError::Corrupt(message) => StoreError::Corrupt(message),
            WireError::Unreadable(message) => StoreError::Unreadable(message),
            WireError::ShuttingDown => StoreError::Unavailable(
                "the leader stopped while the write was in flight: its outcome is unknown; \
                 retry with the same event ids"
                    .into(),
            ),
            WireError::Unavailable(message) => StoreError::Unavailable(message),
            WireError::Quota { exceeded, message } => StoreError::Quota(if exceeded {
                QuotaRefusal::Exceeded(message)
            } else {
                QuotaRefusal::RateLimited(message)
            }),
        }
    }
}

/// The cluster secret, as an HMAC key.
#[derive(Clone)]
pub struct Secret(hmac::Key);

impl Secret {
    pub fn new(secret: &[u8]) -> Secret {
        Secret(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn sign(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        for part in parts {
            context.update(part);
        }
        context.sign()
    }

    fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let joined: Vec<u8> = parts.concat();
        hmac::verify(&self.0, &joined, tag).is_ok()
    }
}

fn nonce() -> std::io::Result<[u8; NONCE_BYTES]> {
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; NONCE_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| std::io::Error::other("no randomness for a handshake nonce"))?;
    Ok(nonce)
}

fn refused(reason: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, reason.to_owned())
}

async fn within<T>(
    future: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), future)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// The listener's side: returns the dialer's proven node id.
pub async fn accept_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &Secret,
    me: NodeId,
) -> std::io::Result<NodeId> {
    within(async {
        let ours = nonce()?;
        let mut hello = Vec::with_capacity(MAGIC.len() + NONCE_BYTES);
        hello.extend_from_slice(MAGIC);
        hello.extend_from_slice(&ours);
        stream.write_all(&hello).await?;
        let mut reply = [0u8; 8 + 8 + NONCE_BYTES + MAC_BYTES];
        stream.read_exact(&mut reply).await?;
        if &reply[..8] != MAGIC {
            return Err(refused("not an esdb cluster peer"));
        }
        let id_bytes = &reply[8..16];
        let theirs = &reply[16..16 + NONCE_BYTES];
        let mac = &reply[16 + NONCE_BYTES..];
        if !secret.verify(&[b"dialer", &ours, theirs, id_bytes], mac) {
            return Err(refused("the peer did not prove the cluster secret"));
        }
        let peer = NodeId::from_be_bytes(id_bytes.try_into().expect("8 bytes"));
        let me_bytes = me.to_be_bytes();
        let proof = secret.sign(&[b"listener", theirs, &ours, &me_bytes]);
        let mut answer = Vec::with_capacity(8 + MAC_BYTES);
        answer.extend_from_slice(&me_bytes);
        answer.extend_from_slice(proof.as_ref());
        stream.write_all(&answer).await?;
        Ok(peer)
    })
    .await
}

/// The dialer's side: returns the listener's proven node id.
pub async fn dial_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &Secret,
    me: NodeId,
) -> std::io::Result<NodeId> {
    within(async {
        let mut hello = [0u8; 8 + NONCE_BYTES];
        stream.read_exact(&mut hello).await?;
        if &hello[..8] != MAGIC {
            return Err(refused("not an esdb cluster port"));
        }
        let theirs = &hello[8..];
        let ours = nonce()?;
        let me_bytes = me.to_be_bytes();
        let proof = secret.sign(&[b"dialer", theirs, &ours, &me_bytes]);
        let mut reply = Vec::with_capacity(8 + 8 + NONCE_BYTES + MAC_BYTES);
        reply.extend_from_slice(MAGIC);
        reply.extend_from_slice(&me_bytes);
        reply.extend_from_slice(&ours);
        reply.extend_from_slice(proof.as_ref());
        stream.write_all(&reply).await?;
        let mut answer = [0u8; 8 + MAC_BYTES];
        stream.read_exact(&mut answer).await?;
        let id_bytes = &answer[..8];
        if !secret.verify(&[b"listener", &ours, theirs, id_bytes], &answer[8..]) {
            return Err(refused("the peer did not prove the cluster secret"));
        }
        Ok(NodeId::from_be_bytes(id_bytes.try_into().expect("8 bytes")))
    })
    .await
}

/// Encodes one frame; `None` if it would exceed [`MAX_FRAME_BYTES`].
pub fn encode_frame<T: Serialize>(id: u64, body: &T) -> std::io::Result<Option<Vec<u8>>> {
    let mut frame = vec![0u8; FRAME_HEADER_BYTES];
    serde_json::to_writer(&mut frame, body).map_err(std::io::Error::other)?;
    let length = frame.len() - 4;
    if length > MAX_FRAME_BYTES {
        return Ok(None);
    }
    frame[..4].copy_from_slice(&(length as u32).to_be_bytes());
    frame[4..12].copy_from_slice(&id.to_be_bytes());
    Ok(Some(frame))
}

/// Reads one frame: `None` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    reader: &mut R,
) -> std::io::Result<Option<(u64, T)>> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_be_bytes(length) as usize;
    if !(8..=MAX_FRAME_BYTES).contains(&length) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {length} bytes (at most {MAX_FRAME_BYTES})"),
        ));
    }
    let mut frame = vec![0u8; length];
    reader.read_exact(&mut frame).await?;
    let id = u64::from_be_bytes(frame[..8].try_into().expect("8 bytes"));
    let body = serde_json::from_slice(&frame[8..])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some((id, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn peers_with_the_secret_meet_and_a_wrong_secret_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let secret = Secret::new(b"the cluster secret");
        let (listened, dialed) = tokio::join!(
            accept_handshake(&mut a, &secret, 1),
            dial_handshake(&mut b, &secret, 2)
        );
        assert_eq!(listened.unwrap(), 2);
        assert_eq!(dialed.unwrap(), 1);

        let (mut a, mut b) = tokio::io::duplex(4096);
        let wrong = Secret::new(b"another secret");
        let (listened, dialed) = tokio::join!(
            accept_handshake(&mut a, &secret, 1),
            dial_handshake(&mut b, &wrong, 2)
        );
        assert_eq!(
            listened.unwrap_err().kind(),
            std::io::ErrorKind::PermissionDenied
        );
        assert!(dialed.is_err());
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused_before_it_is_read() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let header = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        a.write_all(&header).await.unwrap();
        let read: std::io::Result<Option<(u64, Call)>> = read_frame(&mut b).await;
        assert_eq!(read.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }
}
