//! The storage engine: one LMDB environment per store.
//!
//! - [`schema`]: the databases and key layout.
//! - [`command`]: [`Command`] and the deterministic [`command::apply`] (what the Raft log
//!   carries).
//! - [`writer`]: the apply thread, the one place that opens write transactions: it applies
//!   committed Raft entries and publishes what they wrote. Writes are submitted with
//!   [`Store::submit`] into a queue the Raft proposer (`crate::raft`) drains.
//! - [`read`]: reads, straight from LMDB.
//! - [`snapshots`]: snapshot records and their reads; [`aggregate`]: `AGG`, the fold of a
//!   stream inside one read transaction.
//! - [`record`]: the event record JSON; [`checksum`]: the CRC32C every stored record carries,
//!   checked on every read; [`upgrade`]: rewrites older stores' records with it on open;
//!   [`scrub`]: the background scrubber; [`verify`]: `esdb verify`'s offline check.
//! - [`error`]: [`StoreError`], [`Rejection`] and their wire codes.
//! - [`clock`]: commit times that never go backwards, and the commit-time index (`from_time`).
//! - [`multi`]: `APPENDMULTI`, one command over several streams; [`condition`]: its
//!   condition (Dynamic Consistency Boundary), checked inside `apply` through the tag and
//!   type indexes.
//! - [`retention`]: which events a stream's limits (`META`) still show; [`lifecycle`]: the
//!   commands that set those limits and hard-delete (tombstone) streams.
//! - [`scavenge`]: the commands that remove what deletes and limits hide, slice by slice, and
//!   the scavenge's state (the job that proposes the slices is `crate::raft::scavenger`).

pub mod aggregate;
pub mod checksum;
pub mod clock;
pub mod command;
pub mod committed;
pub mod condition;
pub mod crypto;
pub mod error;
pub mod install;
pub mod lifecycle;
pub mod multi;
pub mod progress;
pub mod quota;
pub mod read;
pub mod record;
pub mod retention;
pub mod scavenge;
pub mod schema;
pub mod scrub;
pub mod snapshots;
pub mod subscriptions;
pub mod upgrade;
pub mod verify;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use heed::{Env, EnvFlags, EnvOpenOptions, WithoutTls};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use command::{AppendCommand, Command, NewEvent, Outcome, SaveSnapshotCommand};
use committed::COMMITTED_BATCH_CHANNEL_CAPACITY;
pub use committed::{CommittedBatch, CommittedEvent};
pub use error::{Rejection, StoreError};
pub use progress::{ApplyProgress, EntryOutcomes, ProposalId, Submitters, Waiters};
pub use read::EventsPage;
use schema::{
    Databases, DATABASE_COUNT, FORMAT_VERSION, META_FORMAT_VERSION, META_NEXT_POSITION,
    RAFT_APPLIED,
};
use writer::WRITE_QUEUE_CAPACITY;
pub use writer::{ApplyJob, JobEntry, WriteRequest, WriteResult};

use crate::metrics::{FoundBy, StoreMetrics};

/// LMDB reader slots: one per concurrent read transaction (reads run on tokio's blocking pool,
/// at most 512 threads, and are bounded further by the server).
pub const MAX_READERS: u32 = 1024;

/// Map bytes an apply may take per payload byte at worst: the record (payload plus its
/// envelope), the stream, id and type indexes, and copy-on-write pages of the B-trees.
pub const APPLY_BYTES_PER_PAYLOAD_BYTE: u64 = 4;
/// Map bytes always kept free: room for the tree pages and free list of small commits.
pub const MIN_FREE_MAP_BYTES: u64 = 4 * 1024 * 1024;

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// LMDB map size: the most the store can hold. The file is sparse, so a large value costs
    /// nothing until used.
    pub map_size_bytes: usize,
    /// The server's master key, for encrypted streams ([`crypto`]).
    pub master_key: Option<&'static crypto::MasterKey>,
}

/// One open store.
pub struct Store {
    name: String,
    path: PathBuf,
    env: Env<WithoutTls>,
    dbs: Databases,
    writes: mpsc::Sender<WriteRequest>,
    /// The other end of `writes`, until the Raft proposer takes it.
    write_queue: Mutex<Option<mpsc::Receiver<WriteRequest>>>,
    applies: Mutex<Option<mpsc::Sender<ApplyJob>>>,
    /// Bytes of queued write payloads (see [`writer::MAX_QUEUED_WRITE_BYTES`]).
    write_budget: Arc<tokio::sync::Semaphore>,

    head: watch::Receiver<u64>,
    /// The apply thread's progress: reads wait on it (see [`progress`]).
    progress: Arc<ApplyProgress>,
    /// Proposals waiting for their outcomes.
    waiters: Arc<Waiters>,
    /// Committed batches, for the subscription emitters.
    published: broadcast::Sender<Arc<CommittedBatch>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<StoreMetrics>,
    page_size_bytes: u64,
    /// Commit times for the commands this node builds (see [`clock`]).
    clock: clock::CommitClock,
    /// The background scrubber, once started ([`Store::start_scrubber`]).
    scrubber: Mutex<Option<scrub::Scrubber>>,
    /// Wakes the scavenge job (`crate::raft::scavenger`) when a scavenge was started here.
    scavenge_kick: Arc<tokio::sync::Notify>,
    /// Its quota (`[quotas]` in the config file; unlimited until set).
    quota: Arc<quota::Quota>,
}

/// Per-store counts for `STATS` and `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Streams ever created in the store, deleted ones included.
    pub streams: u64,
    /// Events in `$all` (every event ever written, deleted streams' included).
    pub events: u64,
    /// Position of the newest event, -1 when the store is empty.
    pub last_position: i64,
    /// Subscriptions active now, every type.
    pub subscriptions: i64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and starts its apply thread. Writes wait
    /// in a queue until the Raft layer takes it ([`Store::take_write_queue`]).
    pub fn open(name: &str, dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Storage(format!("creating {}: {e}", dir.display())))?;
        let env = open_env(dir, options)?;
        let mut dbs = Databases::create(&env)?;
        dbs.master_key = options.master_key;
        check_format(&env, &dbs, dir)?;
        // A new store's directory entries (its directory, data.mdb, lock.mdb) must be durable
        // before anything in them is acknowledged: POSIX makes them so only by an fsync of the
        // directories that hold them.
        sync_dir(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }

        let (next_position, last_commit_us) = {
            let rtxn = env.read_txn()?;
            (
                dbs.meta.get(&rtxn, META_NEXT_POSITION)?.unwrap_or(0),
                clock::last_commit_time(&rtxn, &dbs)?.unwrap_or(0),
            )
        };
        let page_size_bytes = env.unnamed_database_stat().page_size as u64;
        let (head_tx, head) = watch::channel(next_position);
        let (writes, requests) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let (applies, jobs) = writer::channel();
        let (published, _) = broadcast::channel(COMMITTED_BATCH_CHANNEL_CAPACITY);
        let metrics = crate::metrics::metrics().store(name);
        metrics.last_position.set(next_position as i64 - 1);
        let progress = Arc::new(ApplyProgress::new(0));
        let waiters = Arc::new(Waiters::default());
        let applying = writer::Applying {
            name: name.to_owned(),
            env: env.clone(),
            dbs,
            progress: progress.clone(),
            waiters: waiters.clone(),
            head: head_tx,
            published: published.clone(),
            metrics: metrics.clone(),
        };
        let writer_thread = std::thread::Builder::new()
            .name(format!("esdb-apply-{name}"))
            .spawn(move || writer::run(applying, jobs))
            .map_err(|e| StoreError::Storage(format!("spawning apply thread: {e}")))?;
        Ok(Store {
            name: name.to_owned(),
            path: dir.to_owned(),
            env,
            dbs,
            writes,
            write_queue: Mutex::new(Some(requests)),
            applies: Mutex::new(Some(applies)),
            write_budget: Arc::new(tokio::sync::Semaphore::new(writer::MAX_QUEUED_WRITE_BYTES)),
            head,
            progress,
            waiters,
            published,

            writer_thread: Mutex::new(Some(writer_thread)),
            metrics,
            page_size_bytes,
            clock: clock::CommitClock::starting_at(last_commit_us),
            scrubber: Mutex::new(None),
            scavenge_kick: Arc::new(tokio::sync::Notify::new()),
            quota: Arc::new(quota::Quota::unlimited(name)),
        })
    }

    /// The commit time for a command built now: the wall clock, but never before a time this
    /// store already gave or committed (see [`clock`]).
    pub fn stamp_epoch_us(&self) -> u64 {
        self.clock.stamp(clock::wall_clock_us())
    }

    /// Starts the background scrubber ([`scrub`]) at `records_per_sec`; 0 starts nothing.
    pub fn start_scrubber(&self, records_per_sec: u64) -> Result<(), StoreError> {
        if records_per_sec == 0 {
            return Ok(());
        }
        let scrubber = scrub::Scrubber::start(
            &self.name,
            self.env.clone(),
            self.dbs,
            self.metrics.clone(),
            records_per_sec,
        )
        .map_err(|e| StoreError::Storage(format!("spawning the scrubber: {e}")))?;
        if let Some(old) = self
            .scrubber
            .lock()
            .expect("scrubber mutex")
            .replace(scrubber)
        {
            old.stop();
        }
        Ok(())
    }

    /// What wakes this store's scavenge job ([`scavenge`]): notified once a `SCAVENGE` started.
    pub fn scavenge_kick(&self) -> Arc<tokio::sync::Notify> {
        self.scavenge_kick.clone()
    }

    /// The queue of submitted writes, once: the Raft proposer drains it.
    pub fn take_write_queue(&self) -> Option<mpsc::Receiver<WriteRequest>> {
        self.write_queue.lock().expect("write queue mutex").take()
    }

    /// The directory of the store's LMDB environment (the Raft log lives beside it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle for the Raft state machine: applies committed entries, reads and checkpoints
    /// the applied state. It does not keep the store open: the store closes once every
    /// `Arc<Store>` is gone and the applier's holder (the Raft node) has stopped.
    pub fn applier(&self) -> Result<Applier, StoreError> {
        let sender = self
            .applies
            .lock()
            .expect("applies mutex")
            .clone()
            .ok_or(StoreError::ShuttingDown)?;
        Ok(Applier {
            name: self.name.clone(),
            sender,
            env: self.env.clone(),
            dbs: self.dbs,
            progress: self.progress.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This store's pre-resolved metric handles.
    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.metrics
    }

    /// Sets the LMDB size gauges (map size, high-water mark, pages the data holds); called when
    /// `/metrics` is scraped.
    pub fn refresh_storage_gauges(&self) {
        let info = self.env.info();
        self.metrics.map_size_bytes.set(info.map_size as i64);
        let (used, live) = self.storage_bytes();
        self.metrics.used_bytes.set(used as i64);
        if let Some(live) = live {
            self.metrics.live_bytes.set(live as i64);
        }
    }

    /// The file's high-water mark ((last page + 1) × page size: it never goes down) and the
    /// bytes of the pages the databases hold ([`scavenge::live_bytes`]; `None` if the read
    /// transaction could not be had). What lies between is free, reused by later writes.
    pub fn storage_bytes(&self) -> (u64, Option<u64>) {
        let info = self.env.info();
        let used = (info.last_page_number as u64 + 1) * self.page_size_bytes;
        let live = self
            .env
            .read_txn()
            .map_err(StoreError::from)
            .and_then(|txn| scavenge::live_bytes(&txn, &self.dbs))
            .ok();
        (used, live)
    }

    /// Refuses a write that could fill the LMDB map before it enters the log: once the log
    /// holds an entry it must be applied, and an apply that hits `MDB_MAP_FULL` stops the node.
    /// Conservative: it counts LMDB's high-water mark, not pages free for reuse.
    fn check_room(&self, command: &Command) -> Result<(), StoreError> {
        let (Command::Append(_) | Command::AppendMulti(_) | Command::SaveSnapshot(_)) = command
        else {
            return Ok(());
        };
        let info = self.env.info();
        let used = (info.last_page_number as u64 + 1) * self.page_size_bytes;
        let needed =
            command.size_bytes() as u64 * APPLY_BYTES_PER_PAYLOAD_BYTE + MIN_FREE_MAP_BYTES;
        if used + needed > info.map_size as u64 {
            return Err(StoreError::Full(format!(
                "store {} is full: {used} of {} bytes of its map in use; raise --map-size-mb",
                self.name, info.map_size
            )));
        }
        Ok(())
    }

    /// The server's master key, if it has one ([`crypto`]).
    pub fn master_key(&self) -> Option<&'static crypto::MasterKey> {
        self.dbs.master_key
    }

    /// Seals every event's `data` under `stream`'s data key, if the stream is encrypted
    /// ([`crypto`]); returns whether it did. Without a master key nothing here is encrypted,
    /// so it costs nothing; `apply` refuses an append sealed otherwise than its stream needs.
    pub fn seal_events(&self, stream: &str, events: &mut [NewEvent]) -> Result<bool, StoreError> {
        if self.dbs.master_key.is_none() {
            return Ok(false);
        }
        let key = {
            let txn = self.env.read_txn()?;
            crypto::data_key_for_append(&txn, &self.dbs, stream)?
        };
        let Some(key) = key else {
            return Ok(false);
        };
        for event in events.iter_mut() {
            event.data = key.seal_data(stream, &event.event_id, event.data.get().as_bytes())?;
        }
        Ok(true)
    }

    /// This store's quota (`crate::store::quota`).
    pub fn quota(&self) -> &Arc<quota::Quota> {
        &self.quota
    }

    /// Refuses a write the store's quota does not allow (see [`quota`] for why this is an
    /// admission check on the receiving node and not part of `apply`). Size and stream limits
    /// first (permanent), then the rates, so a write refused as too big takes no tokens.
    async fn check_quota(&self, command: &Command) -> Result<(), StoreError> {
        // The common case, a store without a quota, costs one read lock and no allocation.
        let limits = self.quota.limits();
        if limits == quota::QuotaLimits::default() {
            return Ok(());
        }
        let streams: Vec<&str> = match command {
            Command::Append(append) => vec![append.stream.as_str()],
            Command::AppendMulti(multi) => multi
                .parts
                .iter()
                .map(|part| part.stream.as_str())
                .collect(),
            Command::SaveSnapshot(_) => Vec::new(),
            _ => return Ok(()),
        };
        if limits.max_bytes.is_some() || limits.max_streams.is_some() {
            // Acknowledged writes may not be committed to LMDB yet (they are durable in the
            // log): count them too.
            self.progress.settled().await?;
            let txn = self.env.read_txn()?;
            if limits.max_bytes.is_some() {
                let live = scavenge::live_bytes(&txn, &self.dbs)?;
                self.quota.check_bytes(live).map_err(StoreError::Quota)?;
            }
            if limits.max_streams.is_some() {
                let mut new_streams = 0u64;
                for (i, stream) in streams.iter().enumerate() {
                    let repeated = streams[..i].contains(stream);
                    if !repeated && self.dbs.streams.get(&txn, stream)?.is_none() {
                        new_streams += 1;
                    }
                }
                let held = self.dbs.streams.len(&txn)?;
                self.quota
                    .check_streams(held, new_streams)
                    .map_err(StoreError::Quota)?;
            }
        }
        let events = match command {
            Command::Append(append) => append.events.len() as u64,
            Command::AppendMulti(multi) => multi
                .parts
                .iter()
                .map(|part| part.events.len() as u64)
                .sum(),
            _ => return Ok(()),
        };
        self.quota
            .check_rates(quota::WriteUsage {
                events,
                payload_bytes: command.size_bytes() as u64,
            })
            .map_err(StoreError::Quota)
    }

    /// Per-store counts. Blocking (one read transaction): call from a blocking context.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        self.progress.wait_visible()?;
        let txn = self.env.read_txn()?;
        let events = self.dbs.meta.get(&txn, META_NEXT_POSITION)?.unwrap_or(0);
        Ok(StoreStats {
            streams: self.dbs.streams.len(&txn)?,
            events,
            last_position: events as i64 - 1,
            subscriptions: self.metrics.subscriptions.active_total(),
        })
    }

    /// Queues a command for the writer. Awaiting this only waits for queue space, so a
    /// connection can submit its requests in order without waiting for each fsync; the
    /// returned receiver resolves once the command's batch is durable.
    pub async fn submit(
        &self,
        command: Command,
    ) -> Result<oneshot::Receiver<WriteResult>, StoreError> {
        self.check_room(&command)?;
        self.check_quota(&command).await?;
        let (reply, receiver) = oneshot::channel();
        // At least one permit per command; a command's size never exceeds the budget (payloads
        // are at most 1 MiB), so this cannot wait forever.
        let size = command
            .size_bytes()
            .clamp(1, writer::MAX_QUEUED_WRITE_BYTES) as u32;
        let budget = self
            .write_budget
            .clone()
            .acquire_many_owned(size)
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        self.writes
            .send(WriteRequest {
                command,
                reply,
                _budget: budget,
            })
            .await
            .map_err(|_| StoreError::ShuttingDown)?;
        Ok(receiver)
    }

    /// Submits a command and waits for its durable outcome.
    pub async fn execute(&self, command: Command) -> WriteResult {
        self.submit(command)
            .await?
            .await
            .map_err(|_| StoreError::ShuttingDown)?
    }

    /// Receives every batch committed from now on (see [`committed`]).
    pub fn subscribe_committed(&self) -> broadcast::Receiver<Arc<CommittedBatch>> {
        self.published.subscribe()
    }

    /// The position the next event will get; changes after each commit.
    /// Proposals waiting for their outcomes (the proposer registers here, the apply thread
    /// answers).
    pub fn waiters(&self) -> Arc<Waiters> {
        self.waiters.clone()
    }

    /// How far the apply thread has got; its failure stops the node.
    pub fn progress(&self) -> &Arc<ApplyProgress> {
        &self.progress
    }

    /// The head once every write already answered is committed (what a client that was just
    /// answered expects "the end" to be).
    pub async fn settled_head(&self) -> Result<u64, StoreError> {
        self.progress.settled().await?;
        Ok(*self.head.borrow())
    }

    pub fn head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    /// Runs `f` inside a fresh read transaction. Blocking: call from a blocking context.
    pub fn with_read<T>(
        &self,
        f: impl FnOnce(&heed::RoTxn, &Databases) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.progress.wait_visible()?;
        let txn = self.env.read_txn()?;
        let result = f(&txn, &self.dbs);
        if let Err(StoreError::Checksum(corruption)) = &result {
            checksum::report(
                &self.name,
                &self.metrics.integrity,
                corruption,
                FoundBy::Read,
            );
        }
        result
    }

    /// Stops the apply thread and closes the environment. Waits up to `deadline` for other
    /// holders of the store (in-flight reads) to let go. The Raft node must have stopped
    /// first: its applier keeps the apply thread running.
    pub fn close(self: Arc<Self>, deadline: Duration) {
        let started = std::time::Instant::now();
        let mut store = self;
        let store = loop {
            match Arc::try_unwrap(store) {
                Ok(store) => break store,
                Err(shared) if started.elapsed() < deadline => {
                    store = shared;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => {
                    tracing::warn!("store still in use at shutdown; leaving LMDB to close on exit");
                    return;
                }
            }
        };
        let Store {
            name,
            env,
            writes,
            applies,
            writer_thread,
            scrubber,
            ..
        } = store;
        // It holds the environment, which must be let go before it closes.
        if let Some(scrubber) = scrubber.lock().expect("scrubber mutex").take() {
            scrubber.stop();
        }
        drop(writes);
        drop(applies);
        // The apply thread ends once the Raft node's applier is gone too.
        if let Some(thread) = writer_thread.lock().expect("writer mutex").take() {
            if thread.join().is_err() {
                tracing::error!(store = %name, "writer thread panicked");
            }
        }
        env.prepare_for_closing().wait();
        tracing::info!(store = %name, "store closed");
    }
}

/// The state machine's side of a store (see [`Store::applier`]).
/// The state machine's handle on the store: queue committed entries for the apply thread,
/// read what it last applied, make what it committed durable.
#[derive(Clone)]
pub struct Applier {
    name: String,
    sender: mpsc::Sender<ApplyJob>,
    env: Env<WithoutTls>,
    dbs: Databases,
    progress: Arc<ApplyProgress>,
}

impl Applier {
    /// Queues committed entries; returns once queued (the outcomes go to the proposals'
    /// waiters). Fails once the apply thread has stopped, which stops the node.
    pub async fn enqueue(&self, job: ApplyJob) -> Result<(), StoreError> {
        if let Some(reason) = self.progress.failed() {
            return Err(StoreError::Storage(reason));
        }
        self.sender
            .send(job)
            .await
            .map_err(|_| StoreError::ShuttingDown)
    }

    /// The Raft applied state the store holds (opaque to the store).
    pub fn applied_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.env.read_txn()?;
        Ok(self.dbs.raft.get(&txn, RAFT_APPLIED)?.map(<[u8]>::to_vec))
    }

    /// The store already holds every entry through `index` (read from its applied state).
    pub fn resume_at(&self, index: u64) {
        self.progress.resume_at(index);
    }

    /// The store's name (for metrics).
    pub fn store_name(&self) -> &str {
        &self.name
    }

    /// A consistent copy of the whole store in `dir` (a snapshot to send to another node);
    /// returns the Raft applied state the copy holds. Blocking.
    pub fn copy_to(&self, dir: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        install::copy_env(&self.env, dir)
    }

    /// Replaces the store's contents with the copy in `from` (a snapshot from another node),
    /// which holds every entry through log index `index`; returns once committed.
    pub async fn install(
        &self,
        from: PathBuf,
        index: u64,
        applied_state: Vec<u8>,
    ) -> Result<(), StoreError> {
        let (done, installed) = oneshot::channel();
        self.enqueue(ApplyJob {
            entries: Vec::new(),
            applied_state,
            install: Some(writer::Install { from, index, done }),
        })
        .await?;
        installed.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Makes everything committed through log index `index` durable: waits until the apply
    /// thread has committed it, then forces LMDB's unsynced pages and meta page to disk.
    pub async fn sync_through(&self, index: u64) -> Result<(), StoreError> {
        self.progress.wait_committed(index).await?;
        let env = self.env.clone();
        tokio::task::spawn_blocking(move || env.force_sync())
            .await
            .map_err(|e| StoreError::Storage(format!("checkpoint task: {e}")))??;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Storage(format!("syncing directory {}: {e}", dir.display())))
}

/// Opens the LMDB environment of a store with its flags set in one place.
fn open_env(dir: &Path, options: &StoreOptions) -> Result<Env<WithoutTls>, StoreError> {
    let mut open_options = EnvOpenOptions::new().read_txn_without_tls();
    open_options
        .map_size(options.map_size_bytes)
        .max_dbs(DATABASE_COUNT)
        .max_readers(MAX_READERS);
    // NO_META_SYNC: the Raft log makes writes durable, so a commit needs one fdatasync (its
    // data pages), not two; the meta page reaches the disk with the next commit or a
    // checkpoint (`Store::sync`). LMDB keeps its integrity this way after a power loss, losing
    // at most the last commit, which the log replays. NO_SYNC would skip the data fdatasync too,
    // but then a power loss can leave a meta page pointing at pages that never reached the
    // disk (LMDB reuses freed pages), which the log cannot repair.
    // SAFETY: heed requires that the same file is not opened twice in one process with
    // different options; the server opens each store directory exactly once.
    unsafe {
        open_options.flags(EnvFlags::NO_META_SYNC);
        Ok(open_options.open(dir)?)
    }
}

/// Refuses a store written by a newer format; upgrades a new or older one to this format.
/// The format that added the commit-time index (`clock`).
const TIME_INDEX_FORMAT: u64 = 3;

fn check_format(env: &Env<WithoutTls>, dbs: &Databases, dir: &Path) -> Result<(), StoreError> {
    let found = {
        let txn = env.read_txn()?;
        dbs.meta.get(&txn, META_FORMAT_VERSION)?
    };
    match found {
        Some(version) if version > FORMAT_VERSION => Err(StoreError::Storage(format!(
            "{} was written by a newer esdb (store format {version}; this build reads up to \
             {FORMAT_VERSION}): refusing to open it",
            dir.display()
        ))),
        Some(version) if version == FORMAT_VERSION => Ok(()),
        _ => {
            // Format 3 adds the commit-time index, built from the records in one transaction
            // (before they are sealed, so they still parse as JSON); stream limits and
            // tombstones start empty, and older stream metadata reads as before (0 or 1 in its
            // flags byte). Format 1 (no version key) and 2 keep their records and indexes.
            let mut found = found;
            if found.is_none_or(|version| version < TIME_INDEX_FORMAT) {
                let mut txn = env.write_txn()?;
                let entries = clock::build_index(&mut txn, dbs)?;
                dbs.meta
                    .put(&mut txn, META_FORMAT_VERSION, &TIME_INDEX_FORMAT)?;
                txn.commit()?;
                tracing::info!(
                    dir = %dir.display(),
                    from = found.unwrap_or(1),
                    to = TIME_INDEX_FORMAT,
                    time_index_entries = entries,
                    "upgraded the store's format"
                );
                found = Some(TIME_INDEX_FORMAT);
            }
            // Format 4 seals every record with a checksum, resumably ([`upgrade`]). Format 5
            // adds the tag index: no older store has a tagged event, so the empty index that
            // `Databases::create` made is already right and only the version key moves. Format
            // 6 allows scavenged gaps: an older store has none, so again only the key moves.
            let upgraded = upgrade::upgrade(env, dbs, found)?;
            if upgraded != upgrade::Upgraded::default() {
                tracing::info!(
                    dir = %dir.display(),
                    from_format = found.unwrap_or(1),
                    events = upgraded.events,
                    snapshots = upgraded.snapshots,
                    "upgraded the store's records to format {FORMAT_VERSION} (checksums)"
                );
            }
            Ok(())
        }
    }
}

/// Every store this server serves, by name.
#[derive(Debug, Default)]
pub struct Stores {
    stores: BTreeMap<String, Arc<Store>>,
}

impl Stores {
    /// Opens each named store under `data_dir/<name>`.
    pub fn open(
        data_dir: &Path,
        names: &[String],
        options: &StoreOptions,
    ) -> Result<Stores, StoreError> {
        let mut stores = BTreeMap::new();
        for name in names {
            let store = Store::open(name, &data_dir.join(name), options)?;
            stores.insert(name.clone(), Arc::new(store));
        }
        Ok(Stores { stores })
    }

    /// Waits (up to `deadline`) until nothing but this map holds each store: in-flight reads
    /// and persistent subscriptions saving their checkpoints have finished.
    pub async fn wait_until_unshared(&self, deadline: Duration) {
        let started = std::time::Instant::now();
        while self
            .stores
            .values()
            .any(|store| Arc::strong_count(store) > 1)
        {
            if started.elapsed() >= deadline {
                tracing::warn!("stores still in use at shutdown");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Store>> {
        self.stores.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.stores.keys().cloned().collect()
    }

    /// Every store, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Store>> {
        self.stores.values()
    }

    pub fn close(self, deadline: Duration) {
        for (_, store) in self.stores {
            store.close(deadline);
        }
    }
}

#[cfg(test)]
mod crypto_tests;
#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod integrity_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod multi_tests;
#[cfg(test)]
mod scavenge_tests;
#[cfg(test)]
mod tests;
