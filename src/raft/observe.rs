//! What a store's Raft group shows the outside: its metrics on `/metrics` and the
//! `cluster.leader.elected` telemetry event, from openraft's metrics watch.
//!
//! One task per group wakes on every change of openraft's metrics (a new log entry, an apply,
//! a vote) and at least every [`REFRESH_INTERVAL_MS`] (the store's applied index moves without
//! openraft knowing), and sets the gauges. Nothing here is on a request's path.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::RaftMetrics;
use crate::raft::types::{NodeId, Raft};
use crate::store::progress::ApplyProgress;

/// Longest time between two refreshes of the gauges.
pub const REFRESH_INTERVAL_MS: u64 = 1_000;

/// Runs until `stop` fires or the group stops.
pub async fn run(store: String, raft: Raft, progress: Arc<ApplyProgress>, stop: CancellationToken) {
    let handles = crate::metrics::metrics().raft(&store);
    let mut watch = raft.metrics();
    let mut observer = Observer {
        store,
        handles,
        leader: None,
        lagging: BTreeSet::new(),
    };
    let mut ticks = tokio::time::interval(Duration::from_millis(REFRESH_INTERVAL_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        observer.update(&watch.borrow_and_update(), progress.visible());
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = ticks.tick() => {}
            _ = stop.cancelled() => break,
        }
    }
    observer.handles.is_leader.set(0);
    observer.forget_lags();
}

struct Observer {
    store: String,
    handles: RaftMetrics,
    /// The last leader seen (kept through elections, so the next one names it).
    leader: Option<NodeId>,
    /// Followers with a replication-lag gauge set.
    lagging: BTreeSet<NodeId>,
}

impl Observer {
    fn update(&mut self, now: &openraft::RaftMetrics<NodeId, openraft::BasicNode>, applied: u64) {
        let h = &self.handles;
        let as_gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        h.term.set(as_gauge(now.current_term));
        let leads =
            now.current_leader == Some(now.id) && now.state == openraft::ServerState::Leader;
        h.is_leader.set(i64::from(leads));
        h.last_log_index
            .set(as_gauge(now.last_log_index.unwrap_or(0)));
        h.commit_index
            .set(as_gauge(now.last_applied.map_or(0, |id| id.index)));
        h.applied_index.set(as_gauge(applied));
        if let Some(leader) = now.current_leader {
            if self.leader != Some(leader) {
                h.leader_changes.inc();
                crate::telemetry::cluster_leader_elected(leader, self.leader);
                tracing::info!(
                    store = %self.store,
                    leader,
                    previous = ?self.leader,
                    term = now.current_term,
                    "leader elected"
                );
                self.leader = Some(leader);
            }
        }
        let replication = now.replication.as_ref().filter(|_| leads);
        let mut seen = BTreeSet::new();
        if let Some(replication) = replication {
            let last = now.last_log_index.unwrap_or(0);
            for (&follower, matched) in replication.iter() {
                if follower == now.id {
                    continue;
                }
                // As `CLUSTER` counts it: entries past the last one known to be matched.
                let lag = last.saturating_sub(matched.map_or(0, |id| id.index));
                self.handles.set_replication_lag(follower, lag);
                seen.insert(follower);
            }
        }
        for gone in self.lagging.difference(&seen) {
            self.handles.forget_replication_lag(*gone);
        }
        self.lagging = seen;
    }

    fn forget_lags(&mut self) {
        for follower in std::mem::take(&mut self.lagging) {
            self.handles.forget_replication_lag(follower);
        }
    }
}
