//! A connection to one peer, dialed lazily and again after it breaks, carrying many calls at
//! once: each call gets an id, frames go out in the order calls are started, answers come back
//! in any order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::cluster::transport::Dialer;
use crate::cluster::wire::{self, Answer, Call};
use crate::raft::types::NodeId;

pub use crate::cluster::transport::CONNECT_TIMEOUT_MS;
/// Frames queued for one connection's writer before callers wait.
pub const MAX_QUEUED_FRAMES: usize = 1_024;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call never left this node (no connection): safe to try again or elsewhere.
    #[error("node {0} is unreachable: {1}")]
    Unreachable(NodeId, String),
    /// The call was sent but the connection broke or the answer did not come in time: the peer
    /// may or may not have acted on it.
    #[error("node {0} did not answer: {1}")]
    Lost(NodeId, String),
    /// The call does not fit in a frame.
    #[error("the call is larger than a frame ({} bytes)", wire::MAX_FRAME_BYTES)]
    TooLarge,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>;

struct Connection {
    frames: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    closed: CancellationToken,
}

/// The calls to one peer.
pub struct Peer {
    target: NodeId,
    addr: String,
    dialer: Arc<Dialer>,
    next_id: AtomicU64,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

/// A started call: its frame is queued; await the answer.
pub struct Started {
    target: NodeId,
    receiver: oneshot::Receiver<Answer>,
    pending: Pending,
    id: u64,
}

impl Started {
    pub async fn answer(self, timeout: Duration) -> Result<Answer, CallError> {
        let target = self.target;
        match tokio::time::timeout(timeout, self.receiver).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(CallError::Lost(target, "the connection broke".into())),
            Err(_) => {
                self.pending.lock().expect("pending").remove(&self.id);
                Err(CallError::Lost(
                    target,
                    format!("no answer within {} ms", timeout.as_millis()),
                ))
            }
        }
    }
}

impl Peer {
    pub fn new(target: NodeId, addr: String, dialer: Arc<Dialer>) -> Peer {
        Peer {
            target,
            addr,
            dialer,
            next_id: AtomicU64::new(1),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    pub fn target(&self) -> NodeId {
        self.target
    }

    /// Sends `call` and waits up to `timeout` for its answer.
    pub async fn call(&self, call: &Call, timeout: Duration) -> Result<Answer, CallError> {
        self.start(call).await?.answer(timeout).await
    }

    /// Queues `call`'s frame behind every call started before it.
    pub async fn start(&self, call: &Call) -> Result<Started, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = wire::encode_frame(id, call)
            .map_err(|e| CallError::Unreachable(self.target, e.to_string()))?
            .ok_or(CallError::TooLarge)?;
        let mut slot = self.connection.lock().await;
        let connection = match slot.as_ref() {
            Some(connection) if !connection.closed.is_cancelled() => connection.clone(),
            _ => {
                *slot = None;
                let connection = self
                    .connect()
                    .await
                    .map_err(|e| CallError::Unreachable(self.target, e.to_string()))?;
                slot.insert(connection).clone()
            }
        };
        let (sender, receiver) = oneshot::channel();
        connection
            .pending
            .lock()
            .expect("pending")
            .insert(id, sender);
        // Under the slot lock: frames leave in the order calls were started.
        if connection.frames.send(frame).await.is_err() {
            connection.pending.lock().expect("pending").remove(&id);
            *slot = None;
            return Err(CallError::Unreachable(
                self.target,
                "the connection closed".into(),
            ));
        }
        Ok(Started {
            target: self.target,
            receiver,
            pending: connection.pending.clone(),
            id,
        })
    }

    async fn connect(&self) -> std::io::Result<Arc<Connection>> {
        let (stream, proven) = self.dialer.dial(&self.addr).await?;
        if proven != self.target {
            return Err(std::io::Error::other(format!(
                "{} is node {proven}, not node {}",
                self.addr, self.target
            )));
        }
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(MAX_QUEUED_FRAMES);
        let pending: Pending = Arc::default();
        let closed = CancellationToken::new();
        let connection = Arc::new(Connection {
            frames,
            pending: pending.clone(),
            closed: closed.clone(),
        });
        let writer_closed = closed.clone();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    frame = outgoing.recv() => frame,
                    _ = writer_closed.cancelled() => None,
                };
                let Some(frame) = frame else { break };
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
            }
            writer_closed.cancel();
        });
        let target = self.target;
        tokio::spawn(async move {
            loop {
                let read = tokio::select! {
                    read = wire::read_frame::<_, Answer>(&mut reader) => read,
                    _ = closed.cancelled() => break,
                };
                match read {
                    Ok(Some((id, answer))) => {
                        let waiter = pending.lock().expect("pending").remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(answer);
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::debug!(peer = target, %error, "peer connection failed");
                        break;
                    }
                }
            }
            closed.cancel();
            // Every call still waiting learns that its answer is lost.
            pending.lock().expect("pending").clear();
        });
        Ok(connection)
    }
}
