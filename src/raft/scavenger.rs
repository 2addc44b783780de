//! The scavenge job of one store: proposes the slices of a running scavenge
//! ([`crate::store::scavenge`]) through the Raft log, at a bounded rate, while this node leads
//! the store's group.
//!
//! The job holds no state of its own: where the walk stands is replicated state in the store,
//! read afresh before each slice. So a restart (or a kill -9) changes nothing but a pause: the
//! new leader's job finds the scavenge running and proposes the next slice from where the last
//! applied one left it. Only the leader proposes, so a cluster does not carry every slice once
//! per node; should two nodes propose the same slice around an election, the second one applies
//! as a no-op (it no longer starts where the walk stands).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use tokio::sync::{watch, Notify};

use crate::raft::types::NodeId;
use crate::store::clock::wall_clock_us;
use crate::store::scavenge::{self, ScavengeStatus, MAX_SLICE_EVENTS};
use crate::store::{Command, Outcome, Store, StoreError};

/// Events per second a scavenge examines by default (`--scavenge-events-per-sec`): a full
/// walk of ten million events takes a few minutes and leaves the disk and the apply thread
/// mostly to the appends.
pub const DEFAULT_SCAVENGE_EVENTS_PER_SEC: u64 = 50_000;

/// How often an idle job looks whether a scavenge was started (by a `SCAVENGE` that reached
/// another node: this one is not woken then).
const IDLE_POLL_MS: u64 = 1000;
/// Pause after a slice failed (no leader yet, a forward that timed out) before trying again.
const RETRY_MS: u64 = 500;

type RaftStatus = watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>;

/// Starts the job of `store`; it ends when the store or its Raft node goes away.
pub fn spawn(store: &Arc<Store>, status: RaftStatus, events_per_sec: u64) {
    if events_per_sec == 0 {
        return;
    }
    let kick = store.scavenge_kick();
    tokio::spawn(run(Arc::downgrade(store), kick, status, events_per_sec));
}

fn leads(status: &RaftStatus) -> bool {
    let metrics = status.borrow();
    metrics.current_leader == Some(metrics.id)
}

async fn run(store: Weak<Store>, kick: Arc<Notify>, status: RaftStatus, events_per_sec: u64) {
    loop {
        let Some(current) = store.upgrade() else {
            return;
        };
        let state = if leads(&status) {
            read_status(&current).await
        } else {
            Ok(ScavengeStatus::default())
        };
        let running = match state {
            Ok(state) if state.running() => state,
            Ok(_) => {
                drop(current);
                // Not woken by the group's metrics: they change with every applied entry, and
                // each wake-up's read would force an LMDB commit (a read waits for one), one per
                // append. A node that just became leader resumes a running scavenge within
                // the poll.
                tokio::select! {
                    _ = kick.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(IDLE_POLL_MS)) => {}
                }
                continue;
            }
            Err(StoreError::ShuttingDown) => return,
            Err(error) => {
                tracing::warn!(store = current.name(), %error, "scavenge: reading its state");
                drop(current);
                tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
                continue;
            }
        };
        let started = Instant::now();
        match slice(&current, running).await {
            Ok(examined) => {
                drop(current);
                // Pace to the rate: a slice of n events earns n / rate seconds of rest.
                let earned = Duration::from_secs_f64(examined as f64 / events_per_sec as f64);
                tokio::time::sleep(earned.saturating_sub(started.elapsed())).await;
            }
            Err(StoreError::ShuttingDown) => return,
            Err(error) => {
                tracing::warn!(store = current.name(), %error, "scavenge: a slice failed; retrying");
                drop(current);
                tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
            }
        }
    }
}

async fn read_status(store: &Arc<Store>) -> Result<ScavengeStatus, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.with_read(scavenge::status))
        .await
        .map_err(|_| StoreError::ShuttingDown)?
}

/// Proposes the next slice of `running` and waits for it to apply; returns how many positions
/// it may have examined (at most [`MAX_SLICE_EVENTS`]), for the pacing.
async fn slice(store: &Arc<Store>, running: ScavengeStatus) -> Result<u64, StoreError> {
    let reader = store.clone();
    let (from, up_to) = (running.position, running.up_to_position);
    let to = tokio::task::spawn_blocking(move || {
        reader.with_read(|txn, dbs| scavenge::next_slice_end(txn, dbs, from, up_to))
    })
    .await
    .map_err(|_| StoreError::ShuttingDown)??;
    let command = Command::ScavengeSlice {
        from_position: from,
        to_position: to,
        now_us: wall_clock_us(),
    };
    let outcome = store.execute(command).await?;
    let Outcome::ScavengeSliced {
        removed,
        bytes,
        done,
    } = outcome
    else {
        return Err(StoreError::Storage(format!(
            "a scavenge slice answered {outcome:?}"
        )));
    };
    let metrics = store.metrics();
    metrics.scavenged_events.inc_by(removed);
    metrics.scavenged_bytes.inc_by(bytes);
    if done {
        let finished = read_status(store).await?;
        crate::telemetry::scavenge_completed(store.name(), &finished);
        tracing::info!(
            store = store.name(),
            events_removed = finished.events_removed,
            bytes_reclaimed = finished.bytes_reclaimed,
            "scavenge done"
        );
    }
    Ok((to - from).min(MAX_SLICE_EVENTS))
}
