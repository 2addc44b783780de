//! openraft's log storage over [`segments`](crate::raft::segments): the write-ahead log.
//!
//! An entry is durable (and `LogFlushed` is called) only after its segment's fdatasync. The
//! vote, the last purged log id and the committed log id live in a small meta file replaced
//! atomically (write, fsync, rename, fsync the directory).
//!
//! openraft reads every entry back right after writing it (to apply it), so the entries just
//! appended are kept in memory ([`RecentEntries`]): their commands are shared (`Arc`), so this
//! costs no copy, and apply never re-reads or re-decodes them from the segment files.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogId, RaftLogReader};
use serde::{Deserialize, Serialize};

use crate::raft::segments::{sync_dir, Segments};
use crate::raft::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const META_FILE: &str = "raft-meta.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LogMeta {
    vote: Option<Vote>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
}

/// Most entries kept in [`RecentEntries`]: more than openraft has between a write and its
/// apply (proposals in flight plus a replication window).
pub const MAX_RECENT_ENTRIES: usize = 1024;
/// Most encoded bytes of the entries kept: bounds the memory when entries are large.
pub const MAX_RECENT_ENTRY_BYTES: usize = 128 * 1024 * 1024;

/// The last entries appended, contiguous by index, newest last.
#[derive(Default)]
struct RecentEntries {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl RecentEntries {
    fn push(&mut self, entry: Entry, encoded_bytes: usize) {
        if let Some((last, _)) = self.entries.back() {
            if last.log_id.index + 1 != entry.log_id.index {
                self.clear();
            }
        }
        self.entries.push_back((entry, encoded_bytes));
        self.bytes += encoded_bytes;
        while self.entries.len() > MAX_RECENT_ENTRIES || self.bytes > MAX_RECENT_ENTRY_BYTES {
            let Some((_, bytes)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= bytes;
        }
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.entries.front()?.0.log_id.index;
        let (entry, _) = self
            .entries
            .get(usize::try_from(index.checked_sub(first)?).ok()?)?;
        debug_assert_eq!(entry.log_id.index, index);
        Some(entry)
    }

    /// Forgets entries at `index` and after (a truncated log).
    fn truncate_from(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(entry, _)| entry.log_id.index >= index)
        {
            let (_, bytes) = self.entries.pop_back().expect("checked");
            self.bytes -= bytes;
        }
    }

    /// Forgets entries at `index` and before (a purged log).
    fn purge_through(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(entry, _)| entry.log_id.index <= index)
        {
            let (_, bytes) = self.entries.pop_front().expect("checked");
            self.bytes -= bytes;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

struct Inner {
    dir: PathBuf,
    segments: Segments,
    recent: RecentEntries,
    meta: LogMeta,
    /// Log id of the last entry present (or the last purged one when the log is empty).
    last_log_id: Option<LogId>,
}

/// The log of one store's Raft group. Clones share the same files (one is the reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io_error(subject: ErrorSubject<u64>, verb: ErrorVerb, error: io::Error) -> StorageError {
    StorageError::from_io_error(subject, verb, error)
}

fn decode(payload: &[u8]) -> Result<Entry, serde_json::Error> {
    serde_json::from_slice(payload)
}

impl LogStore {
    /// Opens the log in `dir`, recovering whole entries and cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        let index_of = |payload: &[u8]| decode(payload).ok().map(|entry| entry.log_id.index);
        let (segments, recovered) = Segments::open(dir, index_of)?;
        let meta = read_meta(dir)?;
        let last_entry = match recovered.entries.last() {
            Some((_, payload)) => Some(decode(payload).map_err(io::Error::other)?.log_id),
            None => None,
        };
        let last_log_id = last_entry.or(meta.last_purged);
        if recovered.discarded_tail {
            tracing::warn!(dir = %dir.display(), ?last_log_id, "raft log recovered after a torn tail");
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_owned(),
                segments,
                recent: RecentEntries::default(),
                meta,
                last_log_id,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("log store mutex")
    }

    /// The last log id present, for startup checks.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.lock().last_log_id
    }
}

fn read_meta(dir: &Path) -> io::Result<LogMeta> {
    match std::fs::read(dir.join(META_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(LogMeta::default()),
        Err(error) => Err(error),
    }
}

fn write_meta(dir: &Path, meta: &LogMeta) -> io::Result<()> {
    let temp = dir.join(format!("{META_FILE}.tmp"));
    let bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
    {
        let file = std::fs::File::create(&temp)?;
        std::io::Write::write_all(&mut &file, &bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, dir.join(META_FILE))?;
    sync_dir(dir)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.lock();
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let last = inner.last_log_id.map_or(0, |id| id.index);
        let end = match range.end_bound() {
            Bound::Included(&i) => i.min(last),
            Bound::Excluded(&i) => i.saturating_sub(1).min(last),
            Bound::Unbounded => last,
        };
        // Entries before the first one held (a log that started past 0, or a purge) are not
        // there to read; the range starts at whichever is later.
        let held_from = inner.segments.first_index().unwrap_or(0);
        let first = inner
            .meta
            .last_purged
            .map_or(0, |id| id.index + 1)
            .max(start)
            .max(held_from);
        let mut entries = Vec::new();
        if inner.last_log_id.is_none() || range.end_bound() == Bound::Excluded(&0) {
            return Ok(entries);
        }
        for index in first..=end {
            if let Some(entry) = inner.recent.get(index) {
                entries.push(entry.clone());
                continue;
            }
            let read = inner
                .segments
                .read(index)
                .map_err(|e| io_error(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
            let Some(payload) = read else { break };
            let entry = decode(&payload).map_err(|e| {
                io_error(
                    ErrorSubject::LogIndex(index),
                    ErrorVerb::Read,
                    io::Error::other(e),
                )
            })?;
            // The key read back is the index asked for (a pair assertion with `append`).
            assert_eq!(entry.log_id.index, index, "log entry at the wrong index");
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        Ok(LogState {
            last_purged_log_id: inner.meta.last_purged,
            last_log_id: inner.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let mut meta = inner.meta.clone();
        meta.vote = Some(*vote);
        write_meta(&inner.dir, &meta)
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        inner.meta = meta;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().meta.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Kept in memory only: the state machine records what it applied in the same LMDB
        // transaction, and on restart the leader re-commits the rest of the log.
        self.lock().meta.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(None)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        let mut kept = Vec::new();
        let mut last = None;
        for entry in entries {
            let payload = serde_json::to_vec(&entry)
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, io::Error::other(e)))?;
            last = Some(*entry.get_log_id());
            kept.push((entry.clone(), payload.len()));
            encoded.push((entry.log_id.index, payload));
        }
        let inner = self.inner.clone();
        let write = move || {
            let mut inner = inner.lock().expect("log store mutex");
            inner.segments.append(&encoded)?;
            if last.is_some() {
                inner.last_log_id = last;
            }
            for (entry, bytes) in kept {
                inner.recent.push(entry, bytes);
            }
            Ok::<(), io::Error>(())
        };
        // The write and its fdatasync block. openraft 0.9's core awaits this call inline (it
        // does nothing else meanwhile), so on a multi-threaded runtime the write runs right
        // here, with the worker's other tasks handed to another worker (`block_in_place`):
        // that saves the two thread wake-ups of a trip through the blocking pool on every
        // acknowledged append. Elsewhere (a current-thread runtime) it goes to the pool.
        let written = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(write),
            _ => tokio::task::spawn_blocking(write)
                .await
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|r| r),
        };
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                callback.log_io_completed(Err(error));
                Err(io_error(
                    ErrorSubject::Logs,
                    ErrorVerb::Write,
                    io::Error::other(message),
                ))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.recent.truncate_from(log_id.index);
        inner
            .segments
            .truncate_from(log_id.index)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        let previous = log_id.index.checked_sub(1);
        inner.last_log_id = match previous {
            Some(index) if inner.meta.last_purged.is_none_or(|p| index > p.index) => {
                let payload = inner
                    .segments
                    .read(index)
                    .map_err(|e| io_error(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
                match payload {
                    Some(payload) => Some(
                        decode(&payload)
                            .map_err(|e| {
                                io_error(
                                    ErrorSubject::LogIndex(index),
                                    ErrorVerb::Read,
                                    io::Error::other(e),
                                )
                            })?
                            .log_id,
                    ),
                    None => inner.meta.last_purged,
                }
            }
            _ => inner.meta.last_purged,
        };
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let mut meta = inner.meta.clone();
        meta.last_purged = Some(log_id);
        // Recorded first: a crash between the two leaves segments that are merely unused.
        write_meta(&inner.dir, &meta)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        inner.meta = meta;
        inner.recent.purge_through(log_id.index);
        if inner
            .last_log_id
            .is_none_or(|last| last.index < log_id.index)
        {
            inner.last_log_id = Some(log_id);
        }
        inner
            .segments
            .purge_through(log_id.index)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
