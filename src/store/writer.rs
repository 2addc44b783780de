//! The apply thread: the only place that opens write transactions.
//!
//! Writes reach the store already ordered and durable in the Raft log (`crate::raft`); the
//! state machine hands each run of committed entries here as one [`ApplyJob`] and returns at
//! once. LMDB allows one writer at a time and a write transaction must commit on the thread
//! that began it, so one dedicated OS thread applies every job, in log order, into one open
//! transaction, and after each job:
//! 1. marks it applied ([`ApplyProgress`]) and sends each proposal its outcomes: the entry is
//!    durable in the log and its effect is decided, so the client may be answered;
//! 2. moves the head and publishes the job's events to the subscription emitters (the events
//!    are durable in the log; a subscriber that reads LMDB waits for the commit like any read).
//!
//! The transaction commits when a read is waiting for it, when it is [`MAX_TXN_AGE_MS`] old,
//! or when it holds [`MAX_COMMANDS_PER_TXN`] commands; never merely because writes paused (an
//! idle commit every millisecond was one LMDB commit per append for a lone client). So LMDB's commit (its fdatasync and its scattered pages)
//! is neither on the acknowledgement's path nor paid once per log entry: one commit serves
//! many log fsyncs. Reads stay linearizable: each waits until everything applied when it began
//! is committed (see `progress`).
//!
//! The commit does not need to be durable (the log is), so the environment runs with
//! `NO_META_SYNC`: one fdatasync of data pages per commit and the meta page synced by the next
//! one. That keeps LMDB's integrity on power loss (a commit is lost at worst, and the log
//! replays it), which `NO_SYNC` would not (see `Store::open`). A job that fails to apply or
//! commit stops the store for good ([`ApplyProgress::fail`]): the log holds those entries, so
//! they must never be answered as failed; a restart replays them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heed::{Env, WithoutTls};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::metrics::StoreMetrics;
use crate::store::command::{apply, Command, Outcome};
use crate::store::committed::CommittedBatch;
use crate::store::progress::{ApplyProgress, EntryOutcomes, ProposalId, Waiters};
use crate::store::schema::{Databases, META_NEXT_POSITION, RAFT_APPLIED};
use crate::store::{Rejection, StoreError};

/// Most commands one proposal (one log entry) carries: bounds the latency a batch adds to its
/// last member.
pub const MAX_BATCH_COMMANDS: usize = 1024;
/// Most payload bytes in one proposal.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Depth of the queue in front of the proposer. When full, submitters wait: backpressure to the
/// connections instead of unbounded memory.
pub const WRITE_QUEUE_CAPACITY: usize = 4096;
/// Apply jobs queued for the apply thread (one job per openraft `apply` call).
const APPLY_QUEUE_CAPACITY: usize = 64;
/// Most commands one LMDB transaction applies before it commits: bounds its dirty pages.
pub const MAX_COMMANDS_PER_TXN: usize = 16 * MAX_BATCH_COMMANDS;
/// Longest a transaction stays open. The Raft log holds everything in it, so this bounds only
/// the replay after a crash and the commit's size; nothing waits on it but a read, and a read
/// asks for the commit at once (`ApplyProgress::commit_requested`).
pub const MAX_TXN_AGE_MS: u64 = 20;

pub type WriteResult = Result<Outcome, StoreError>;

/// One command waiting for the proposer, with where its outcome goes.
pub struct WriteRequest {
    pub command: Command,
    pub reply: oneshot::Sender<WriteResult>,
    /// The command's share of [`MAX_QUEUED_WRITE_BYTES`], given back when the request is done.
    pub _budget: tokio::sync::OwnedSemaphorePermit,
}

/// Payload bytes of all commands queued for or inside the write path, per store. The queue
/// depth alone would allow `WRITE_QUEUE_CAPACITY` × 1 MiB; this caps the memory writes can pin,
/// and submitters wait (backpressure) when it is reached.
pub const MAX_QUEUED_WRITE_BYTES: usize = 256 * 1024 * 1024;

/// One committed log entry: its index, who proposed it (to send its outcomes to, if that
/// proposer is this process), and its commands.
pub struct JobEntry {
    pub index: u64,
    pub proposal: Option<ProposalId>,
    pub commands: Arc<[Command]>,
}

/// Committed log entries, in log order. An entry with no commands (a blank or a membership
/// entry) only moves the applied state.
pub struct ApplyJob {
    pub entries: Vec<JobEntry>,
    /// Stored under [`RAFT_APPLIED`] in the same transaction.
    pub applied_state: Vec<u8>,
    /// Instead of entries: replace the store's contents with a snapshot from another node.
    pub install: Option<Install>,
}

/// A snapshot to install ([`crate::store::install`]): the copy of an environment in `from`,
/// holding every entry through log index `index`.
pub struct Install {
    pub from: std::path::PathBuf,
    pub index: u64,
    pub done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

pub(crate) fn channel() -> (mpsc::Sender<ApplyJob>, mpsc::Receiver<ApplyJob>) {
    mpsc::channel(APPLY_QUEUE_CAPACITY)
}

/// What the apply thread works with.
pub(crate) struct Applying {
    pub env: Env<WithoutTls>,
    pub dbs: Databases,
    /// The store's name, for logs.
    pub name: String,
    pub progress: Arc<ApplyProgress>,
    pub waiters: Arc<Waiters>,
    pub head: watch::Sender<u64>,
    pub published: broadcast::Sender<Arc<CommittedBatch>>,
    pub metrics: Arc<StoreMetrics>,
}

/// Runs until every sender of `jobs` is dropped (committing what is open), then returns.
pub(crate) fn run(applying: Applying, jobs: mpsc::Receiver<ApplyJob>) {
    // A small runtime of this thread's own, for waiting on jobs, commit requests and the
    // transaction's deadline at once. The write transaction never leaves this thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            applying
                .progress
                .fail(format!("starting the apply thread's runtime: {error}"));
            return;
        }
    };
    runtime.block_on(apply_loop(&applying, jobs));
}

/// What wakes the apply thread.
enum Wake {
    Job(ApplyJob),
    Closed,
    Commit,
}

async fn apply_loop(applying: &Applying, mut jobs: mpsc::Receiver<ApplyJob>) {
    let mut open: Option<OpenTxn<'_>> = None;
    loop {
        let wake = match &open {
            None => jobs.recv().await.map_or(Wake::Closed, Wake::Job),
            Some(txn) => {
                let deadline = txn.commit_deadline();
                tokio::select! {
                    job = jobs.recv() => job.map_or(Wake::Closed, Wake::Job),
                    _ = applying.progress.commit_requested() => Wake::Commit,
                    _ = tokio::time::sleep_until(deadline.into()) => Wake::Commit,
                }
            }
        };
        if applying.progress.failed().is_some() {
            // Stopped: the entries stay in the log for the next start.
            applying.waiters.clear();
            if matches!(wake, Wake::Closed) {
                return;
            }
            continue;
        }
        let closed = matches!(wake, Wake::Closed);
        let result = match wake {
            Wake::Job(ApplyJob {
                install: Some(install),
                applied_state,
                ..
            }) => install_snapshot(applying, &mut open, install, &applied_state),
            Wake::Job(job) => apply_job(applying, &mut open, &job),
            Wake::Commit | Wake::Closed => commit(applying, &mut open),
        };
        if let Err(error) = result {
            if let StoreError::Checksum(corruption) = &error {
                crate::store::checksum::report(
                    &applying.name,
                    &applying.metrics.integrity,
                    corruption,
                    crate::metrics::FoundBy::Apply,
                );
            }
            tracing::error!(%error, "applying committed entries failed; the store stops");
            open = None;
            applying.progress.fail(error.to_string());
            applying.waiters.clear();
        }
        if closed {
            return;
        }
    }
}

/// The write transaction the apply thread keeps open across jobs.
struct OpenTxn<'env> {
    txn: heed::RwTxn<'env>,
    opened: Instant,
    commands: usize,
    last_index: u64,
    tally: Tally,
    next_position: u64,
}

impl OpenTxn<'_> {
    /// When it must commit if nothing asks for it first: [`MAX_TXN_AGE_MS`] after it opened.
    fn commit_deadline(&self) -> Instant {
        self.opened + Duration::from_millis(MAX_TXN_AGE_MS)
    }
}

/// Applies one job inside the open transaction (opening one if needed), then answers its
/// proposals and publishes its events; commits if the transaction is full or old.
fn apply_job<'env>(
    applying: &'env Applying,
    open: &mut Option<OpenTxn<'env>>,
    job: &ApplyJob,
) -> Result<(), StoreError> {
    let Applying { env, dbs, .. } = applying;
    if job.entries.is_empty() {
        return Ok(());
    }
    let now = Instant::now();
    if open.is_none() {
        *open = Some(OpenTxn {
            txn: env.write_txn()?,
            opened: now,
            commands: 0,
            last_index: 0,
            tally: Tally::default(),
            next_position: 0,
        });
    }
    let txn = open.as_mut().expect("opened above");
    let mut answers: Vec<(ProposalId, EntryOutcomes)> = Vec::new();
    let mut events = Vec::new();
    for entry in &job.entries {
        assert!(
            entry.index > txn.last_index || txn.commands == 0 && txn.last_index == 0,
            "entries applied in log order"
        );
        txn.last_index = entry.index;
        let mut outcomes = Vec::with_capacity(entry.commands.len());
        for command in entry.commands.iter() {
            let outcome = apply(&mut txn.txn, dbs, command, &mut events)?;
            txn.tally.count(command, &outcome);
            outcomes.push(outcome);
        }
        txn.commands += entry.commands.len();
        if let Some(id) = entry.proposal {
            answers.push((id, outcomes));
        }
    }
    dbs.raft
        .put(&mut txn.txn, RAFT_APPLIED, &job.applied_state)?;
    txn.next_position = dbs.meta.get(&txn.txn, META_NEXT_POSITION)?.unwrap_or(0);
    // Positions are gapless within the job: each event follows the one before it.
    assert!(
        events
            .windows(2)
            .all(|w| w[1].position == w[0].position + 1),
        "positions of one job are contiguous"
    );
    // Applied (and durable in the log) before anyone hears of it: from here on a read waits
    // for the commit (see `progress`).
    applying.progress.set_applied(txn.last_index);
    for (id, outcomes) in answers {
        applying.waiters.complete(id, outcomes);
    }
    // The head moves before the batch is published: an emitter that resubscribes and then
    // reads the head knows every batch it will not receive (and its reads of LMDB wait for
    // the commit of what the head covers).
    applying.head.send_replace(txn.next_position);
    if !events.is_empty() {
        debug_assert_eq!(
            events.last().map(|e| e.position + 1),
            Some(txn.next_position)
        );
        // No receivers (no emitters) is fine: nothing subscribes.
        let _ = applying.published.send(Arc::new(CommittedBatch { events }));
    }
    if txn.commands >= MAX_COMMANDS_PER_TXN
        || txn.opened.elapsed() >= Duration::from_millis(MAX_TXN_AGE_MS)
    {
        commit(applying, open)?;
    }
    Ok(())
}

/// Commits what is open, then replaces the store's contents with the snapshot (one
/// transaction); the applied and visible marks and the head jump to the snapshot's. A failed
/// install is answered to the state machine (openraft then stops the node) and stops the
/// store like a failed apply.
fn install_snapshot(
    applying: &Applying,
    open: &mut Option<OpenTxn<'_>>,
    install: Install,
    applied_state: &[u8],
) -> Result<(), StoreError> {
    commit(applying, open)?;
    let replaced = crate::store::install::replace_contents(
        &applying.env,
        &applying.dbs,
        &install.from,
        applied_state,
    );
    let result = replaced.map(|next_position| {
        applying.progress.set_applied(install.index);
        applying.progress.set_visible(install.index);
        applying.head.send_replace(next_position);
        applying.metrics.last_position.set(next_position as i64 - 1);
        tracing::info!(
            store = %applying.name,
            index = install.index,
            next_position,
            "installed a snapshot from the leader"
        );
    });
    let answer = match &result {
        Ok(()) => Ok(()),
        Err(error) => Err(StoreError::Storage(error.to_string())),
    };
    let _ = install.done.send(answer);
    result
}

/// Commits the open transaction, if any, and lets the reads waiting for it go on.
fn commit(applying: &Applying, open: &mut Option<OpenTxn<'_>>) -> Result<(), StoreError> {
    let Some(txn) = open.take() else {
        return Ok(());
    };
    let started = Instant::now();
    txn.txn.commit()?;
    applying.progress.set_visible(txn.last_index);
    txn.tally
        .record(&applying.metrics, started, txn.commands, txn.next_position);
    Ok(())
}

/// What one transaction did, for the store's metrics: a handful of atomic adds per commit.
#[derive(Default)]
struct Tally {
    events: u64,
    bytes: u64,
    conflicts: u64,
}

impl Tally {
    fn count(&mut self, command: &Command, outcome: &Result<Outcome, Rejection>) {
        let (Command::Append(_) | Command::AppendMulti(_)) = command else {
            return;
        };
        match outcome {
            Ok(Outcome::Appended { event_count, .. }) => {
                self.events += event_count;
                self.bytes += command.size_bytes() as u64;
            }
            Ok(Outcome::AppendedMulti {
                parts,
                replayed: false,
            }) => {
                self.events += parts
                    .iter()
                    .map(|part| part.last_position + 1 - part.first_position)
                    .sum::<u64>();
                self.bytes += command.size_bytes() as u64;
            }
            Err(Rejection::WrongExpectedVersion { .. } | Rejection::ConditionFailed { .. }) => {
                self.conflicts += 1
            }
            Err(Rejection::InPart { rejection, .. })
                if matches!(**rejection, Rejection::WrongExpectedVersion { .. }) =>
            {
                self.conflicts += 1
            }
            _ => {}
        }
    }

    fn record(
        &self,
        metrics: &StoreMetrics,
        commit_started: Instant,
        commands: usize,
        next_position: u64,
    ) {
        metrics
            .commit_seconds
            .observe(commit_started.elapsed().as_secs_f64());
        metrics.batch_commands.observe(commands as f64);
        metrics.batch_events.observe(self.events as f64);
        metrics.append_events.inc_by(self.events);
        metrics.append_bytes.inc_by(self.bytes);
        metrics.append_conflicts.inc_by(self.conflicts);
        metrics.last_position.set(next_position as i64 - 1);
    }
}
