//! The disk's own limits, measured on the filesystem the data directories live on.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Size of each write in the fsync loop: one page, as an LMDB commit writes.
const FSYNC_WRITE_BYTES: usize = 4096;
/// The fsync loop overwrites this many pages of a preallocated file, round robin, so the file
/// size (metadata) does not change, as in a steady-state LMDB file.
const FSYNC_FILE_PAGES: u64 = 256;
/// Most iterations of the fsync loop, whatever the duration.
const MAX_FSYNCS: u64 = 1_000_000;
/// Chunk of the sequential write.
const SEQ_CHUNK_BYTES: usize = 1024 * 1024;
/// Most bytes the sequential write writes, whatever the duration.
const MAX_SEQ_BYTES: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct DiskLimits {
    /// 4 KiB write + fdatasync per second, one thread.
    pub fdatasync_per_s: f64,
    /// fdatasync latency percentiles, microseconds.
    pub fdatasync_p50_us: u64,
    pub fdatasync_p99_us: u64,
    /// Sequential write of 1 MiB chunks then one fdatasync, MB/s (10^6 bytes).
    pub seq_write_mb_per_s: f64,
}

pub fn measure(dir: &Path, duration: Duration) -> anyhow::Result<DiskLimits> {
    let scratch = tempfile::Builder::new()
        .prefix("disk-bench-")
        .tempdir_in(dir)?;

    let path = scratch.path().join("fsync");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let page = vec![0x5au8; FSYNC_WRITE_BYTES];
    for i in 0..FSYNC_FILE_PAGES {
        file.write_all_at(&page, i * FSYNC_WRITE_BYTES as u64)?;
    }
    file.sync_all()?;
    let mut latency = crate::measure::new_histogram();
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < duration && count < MAX_FSYNCS {
        let t = Instant::now();
        file.write_all_at(&page, (count % FSYNC_FILE_PAGES) * FSYNC_WRITE_BYTES as u64)?;
        file.sync_data()?;
        latency.saturating_record((t.elapsed().as_micros() as u64).max(1));
        count += 1;
    }
    let fdatasync_per_s = count as f64 / started.elapsed().as_secs_f64();

    let path = scratch.path().join("seq");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let chunk = vec![0xa5u8; SEQ_CHUNK_BYTES];
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration && written < MAX_SEQ_BYTES {
        file.write_all(&chunk)?;
        written += SEQ_CHUNK_BYTES as u64;
    }
    file.sync_data()?;
    let seq_write_mb_per_s = written as f64 / started.elapsed().as_secs_f64() / 1e6;

    Ok(DiskLimits {
        fdatasync_per_s,
        fdatasync_p50_us: latency.value_at_quantile(0.5),
        fdatasync_p99_us: latency.value_at_quantile(0.99),
        seq_write_mb_per_s,
    })
}
