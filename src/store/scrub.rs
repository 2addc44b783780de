//! The background scrubber: walks a store's records (events, then snapshots) at a bounded
//! rate, checking each one's checksum, so damage is found before a client asks for the record.
//!
//! One thread per store. It reads a few records at a time, each batch in a read transaction of
//! its own ([`SCRUB_RECORDS_PER_TXN`], [`SCRUB_BYTES_PER_TXN`]), then waits so that it checks
//! no more than the configured records per second. LMDB readers never block its writer, so the
//! apply thread is never held up; keeping each read transaction short matters anyway, since an
//! open reader keeps the pages it sees from being reused. A mismatch is reported as a read's
//! is (`esdb_corrupt_records_total{found_by="scrub"}`, an error log naming store and record);
//! `esdb_scrub_records_total` and `esdb_scrub_passes_total` show its progress. It starts over
//! after each whole pass.

use std::ops::Bound;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use heed::{Env, WithoutTls};

use crate::metrics::{FoundBy, StoreMetrics};
use crate::store::checksum::{self, Corruption, RecordKind};
use crate::store::schema::Databases;
use crate::store::StoreError;

/// The default rate, records per second: a full pass over a million events takes under 17
/// minutes, at a cost of a few milliseconds of CPU per second.
pub const DEFAULT_SCRUB_RECORDS_PER_SEC: u64 = 1000;
/// Most records checked in one read transaction.
pub const SCRUB_RECORDS_PER_TXN: usize = 256;
/// Most record bytes checked in one read transaction (one record more may pass it).
pub const SCRUB_BYTES_PER_TXN: usize = 4 << 20;
/// The wait after a pass over an empty store, before looking again.
pub const SCRUB_IDLE_WAIT_MS: u64 = 1000;

/// The running scrubber of one store; stopped (and joined) by [`Scrubber::stop`], or stopped
/// without joining when dropped.
pub struct Scrubber {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Scrubber {
    /// Starts scrubbing at `records_per_sec` (> 0).
    pub(crate) fn start(
        name: &str,
        env: Env<WithoutTls>,
        dbs: Databases,
        metrics: Arc<StoreMetrics>,
        records_per_sec: u64,
    ) -> std::io::Result<Scrubber> {
        assert!(records_per_sec > 0, "a rate of 0 means no scrubber");
        let (stop, stopped) = mpsc::channel();
        let walk = Walk {
            name: name.to_owned(),
            env,
            dbs,
            metrics,
            records_per_sec,
        };
        let thread = std::thread::Builder::new()
            .name(format!("esdb-scrub-{name}"))
            .spawn(move || walk.run(&stopped))?;
        Ok(Scrubber { stop, thread })
    }

    /// Stops the thread and waits for it: it holds the environment, which must be let go
    /// before the store closes. Returns within one batch's read.
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("the scrubber thread panicked");
        }
    }
}

/// Where the walk is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cursor {
    /// The next event position to check.
    Events(u64),
    /// Snapshots after this key (`None`: from the first).
    Snapshots(Option<Vec<u8>>),
}

/// One batch's outcome.
struct Batch {
    checked: usize,
    damaged: Vec<Corruption>,
    next: Option<Cursor>,
}

struct Walk {
    name: String,
    env: Env<WithoutTls>,
    dbs: Databases,
    metrics: Arc<StoreMetrics>,
    records_per_sec: u64,
}

impl Walk {
    fn run(self, stopped: &mpsc::Receiver<()>) {
        let mut cursor = Cursor::Events(0);
        let mut pass_checked = 0u64;
        loop {
            let batch = match self.batch(&cursor) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(store = %self.name, %error, "the scrubber cannot read; it stops");
                    return;
                }
            };
            self.metrics
                .integrity
                .scrubbed_records
                .inc_by(batch.checked as u64);
            pass_checked += batch.checked as u64;
            for corruption in &batch.damaged {
                checksum::report(
                    &self.name,
                    &self.metrics.integrity,
                    corruption,
                    FoundBy::Scrub,
                );
            }
            let mut wait = self.wait_for(batch.checked);
            cursor = match batch.next {
                Some(next) => next,
                None => {
                    self.metrics.integrity.scrub_passes.inc();
                    if pass_checked == 0 {
                        wait = Duration::from_millis(SCRUB_IDLE_WAIT_MS);
                    }
                    pass_checked = 0;
                    Cursor::Events(0)
                }
            };
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// How long checking `records` takes at the configured rate.
    fn wait_for(&self, records: usize) -> Duration {
        Duration::from_micros(records as u64 * 1_000_000 / self.records_per_sec)
    }

    /// Checks the next batch from `cursor` in one read transaction.
    fn batch(&self, cursor: &Cursor) -> Result<Batch, StoreError> {
        let txn = self.env.read_txn()?;
        let mut batch = Batch {
            checked: 0,
            damaged: Vec::new(),
            next: None,
        };
        let mut bytes = 0;
        let full = |checked: usize, bytes: usize| {
            checked == SCRUB_RECORDS_PER_TXN || bytes >= SCRUB_BYTES_PER_TXN
        };
        match cursor {
            Cursor::Events(from) => {
                let mut last = None;
                for entry in self.dbs.events.range(&txn, &(*from..))? {
                    if full(batch.checked, bytes) {
                        break;
                    }
                    let (position, stored) = entry?;
                    batch.checked += 1;
                    bytes += stored.len();
                    last = Some(position);
                    if let Err(corruption) = checksum::unseal_event(position, stored) {
                        batch.damaged.push(corruption);
                    }
                }
                batch.next = Some(match last {
                    Some(last) if full(batch.checked, bytes) => Cursor::Events(last + 1),
                    _ => Cursor::Snapshots(None),
                });
            }
            Cursor::Snapshots(after) => {
                let lower = match after {
                    Some(key) => Bound::Excluded(key.as_slice()),
                    None => Bound::Unbounded,
                };
                let mut last = None;
                for entry in self.dbs.snapshots.range(&txn, &(lower, Bound::Unbounded))? {
                    if full(batch.checked, bytes) {
                        break;
                    }
                    let (key, stored) = entry?;
                    batch.checked += 1;
                    bytes += stored.len();
                    last = Some(key);
                    if let Err(corruption) = checksum::unseal(RecordKind::Snapshot, key, stored) {
                        batch.damaged.push(corruption.at_snapshot_key(key));
                    }
                }
                batch.next = match last {
                    Some(key) if full(batch.checked, bytes) => {
                        Some(Cursor::Snapshots(Some(key.to_vec())))
                    }
                    _ => None,
                };
            }
        }
        Ok(batch)
    }
}
