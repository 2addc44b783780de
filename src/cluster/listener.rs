//! The inter-node port: authenticates each peer, then serves its calls (see [`wire`]).
//!
//! Raft RPCs and read-index requests run in tasks of their own (answered in any order).
//! Forwarded writes are handed to the store's proposer in the order they arrive on the
//! connection, so a follower's writes (one connection per peer) take effect in the order its
//! clients sent them; only the wait for their outcomes runs beside later calls.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::cluster::wire::{self, Answer, Call, Forwarded, WireError};
use crate::cluster::{Cluster, Group, WRITE_OUTCOME_TIMEOUT_MS};
use crate::store::{Command, StoreError, WriteRequest};

/// Peer connections served at once (authenticated or still proving themselves).
pub const MAX_PEER_CONNECTIONS: usize = 64;
/// Answers queued for one connection's writer.
pub const MAX_QUEUED_ANSWERS: usize = 1_024;

/// Accepts peers until the cluster stops.
pub async fn accept_loop(listener: TcpListener, cluster: Arc<Cluster>) {
    let slots = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = cluster.stop.cancelled() => return,
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "inter-node accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%from, "too many inter-node connections: refused");
            continue;
        };
        let cluster = cluster.clone();
        tokio::spawn(async move {
            if let Err(error) = serve(stream, &cluster).await {
                tracing::warn!(%from, %error, "inter-node connection closed");
            }
            drop(slot);
        });
    }
}

async fn serve(stream: TcpStream, cluster: &Arc<Cluster>) -> std::io::Result<()> {
    let mut stream = crate::cluster::transport::accept(stream, cluster.tls.as_deref()).await?;
    let peer = wire::accept_handshake(&mut stream, &cluster.secret, cluster.node_id()).await?;
    // The secret admits a node; the membership decides what it is (a node joining, or
    // added with CLUSTER ADD, is in no --peers).
    if peer == cluster.node_id() {
        return Err(std::io::Error::other(format!(
            "a peer proved the secret with this node's own id ({peer})"
        )));
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (answers, mut outgoing) = mpsc::channel::<Vec<u8>>(MAX_QUEUED_ANSWERS);
    let write_task = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    loop {
        let read = tokio::select! {
            read = wire::read_frame::<_, Call>(&mut reader) => read?,
            _ = cluster.stop.cancelled() => break,
        };
        let Some((id, call)) = read else { break };
        handle(cluster, id, call, &answers).await;
    }
    drop(answers);
    let _ = write_task.await;
    Ok(())
}

fn reply(answers: &mpsc::Sender<Vec<u8>>, id: u64, answer: Answer) {
    let answers = answers.clone();
    tokio::spawn(async move {
        match wire::encode_frame(id, &answer) {
            Ok(Some(frame)) => {
                let _ = answers.send(frame).await;
            }
            Ok(None) => tracing::error!("an inter-node answer does not fit in a frame"),
            Err(error) => tracing::error!(%error, "encoding an inter-node answer"),
        }
    });
}

async fn handle(cluster: &Arc<Cluster>, id: u64, call: Call, answers: &mpsc::Sender<Vec<u8>>) {
    let store = match &call {
        Call::Ping => {
            let (cluster, answers) = (cluster.clone(), answers.clone());
            tokio::spawn(async move { reply(&answers, id, Answer::Pong(cluster.info().await)) });
            return;
        }
        Call::AppendEntries { store, .. }
        | Call::Vote { store, .. }
        | Call::InstallSnapshot { store, .. }
        | Call::Forward { store, .. }
        | Call::ReadIndex { store }
        | Call::ChangeMembers { store, .. } => store.clone(),
    };
    let Some(group) = cluster.group(&store) else {
        let refusal = format!("node {} serves no store {store} (yet)", cluster.node_id());
        reply(answers, id, Answer::Refused(refusal));
        return;
    };
    let me = cluster.node_id();
    match call {
        Call::Forward { commands, .. } => {
            // Handed over here, in arrival order, before the next call is read.
            let answer = forward(&group, me, commands).await;
            let answers = answers.clone();
            tokio::spawn(async move {
                let answer = answer.await;
                reply(&answers, id, answer);
            });
        }
        call => {
            let answers = answers.clone();
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let answer = match call {
                    Call::AppendEntries { rpc, .. } => {
                        Answer::AppendEntries(group.raft.append_entries(rpc).await)
                    }
                    Call::Vote { rpc, .. } => Answer::Vote(group.raft.vote(rpc).await),
                    Call::InstallSnapshot { rpc, .. } => {
                        Answer::InstallSnapshot(group.raft.install_snapshot(rpc).await)
                    }
                    Call::ReadIndex { .. } => Answer::ReadIndex(group.reads.leader_index().await),
                    Call::ChangeMembers { store, change } => {
                        Answer::MembersChanged(cluster.change_group(&store, &change).await)
                    }
                    Call::Ping | Call::Forward { .. } => unreachable!("handled above"),
                };
                reply(&answers, id, answer);
            });
        }
    }
}

/// Proposes forwarded commands through the local proposer, in order; returns the future of
/// their outcomes. A node that does not lead proposes nothing and says so.
async fn forward(
    group: &Arc<Group>,
    me: u64,
    commands: Vec<Command>,
) -> futures::future::BoxFuture<'static, Answer> {
    use futures::FutureExt;
    if !group.leads(me) {
        return futures::future::ready(Answer::Forwarded(Forwarded::NotLeader)).boxed();
    }
    let mut receivers = Vec::with_capacity(commands.len());
    for command in commands {
        let size = command.size_bytes().clamp(1, super::MAX_FORWARDED_BYTES) as u32;
        let (reply, receiver) = oneshot::channel();
        let budget = match group.forward_budget.clone().acquire_many_owned(size).await {
            Ok(budget) => budget,
            Err(_) => {
                receivers.push(None);
                continue;
            }
        };
        let request = WriteRequest {
            command,
            reply,
            _budget: budget,
        };
        match group.local.send(request).await {
            Ok(()) => receivers.push(Some(receiver)),
            Err(_) => receivers.push(None),
        }
    }
    async move {
        let mut outcomes = Vec::with_capacity(receivers.len());
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(WRITE_OUTCOME_TIMEOUT_MS);
        for receiver in receivers {
            let outcome = match receiver {
                None => Err(StoreError::ShuttingDown),
                Some(receiver) => match tokio::time::timeout_at(deadline, receiver).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => Err(StoreError::ShuttingDown),
                    Err(_) => Err(StoreError::Unavailable(format!(
                        "the write was not committed within {WRITE_OUTCOME_TIMEOUT_MS} ms \
                         (the leader may be cut off): its outcome is unknown; retry with the \
                         same event ids"
                    ))),
                },
            };
            outcomes.push(outcome.map_err(WireError::from));
        }
        Answer::Forwarded(Forwarded::Outcomes(outcomes))
    }
    .boxed()
}
