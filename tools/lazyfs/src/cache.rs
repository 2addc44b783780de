//! One file's writes that are not durable yet: kept in memory, in the order they were made,
//! until an fsync applies them to the backing file, or a power cut drops them (or applies a
//! random subset, in a random order).
//!
//! Readers see the backing file with every pending write applied in order on top, so the
//! program on the mount sees exactly what a real filesystem's page cache would show it.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// One change to a file's content or size that is not durable yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    /// A truncate, an extending `fallocate`, or a size set with `setattr`.
    SetLen(u64),
}

impl Pending {
    fn bytes(&self) -> usize {
        match self {
            Pending::Write { data, .. } => data.len(),
            Pending::SetLen(_) => 0,
        }
    }
}

/// What a power cut did to one file's pending changes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutCount {
    pub kept: usize,
    pub dropped: usize,
}

/// A file's pending changes and the size readers see.
#[derive(Debug)]
pub struct FileCache {
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    size: u64,
}

impl FileCache {
    /// A file with nothing pending, whose backing file is `durable_size` bytes long.
    pub fn new(durable_size: u64) -> FileCache {
        FileCache {
            pending: VecDeque::new(),
            pending_bytes: 0,
            size: durable_size,
        }
    }

    /// The size readers see.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn pending_ops(&self) -> usize {
        self.pending.len()
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.size = self.size.max(offset + data.len() as u64);
        self.pending_bytes += data.len();
        self.pending.push_back(Pending::Write {
            offset,
            data: data.to_vec(),
        });
    }

    pub fn set_len(&mut self, len: u64) {
        self.size = len;
        self.pending.push_back(Pending::SetLen(len));
    }

    /// Lays the pending changes over `buf`, which holds the backing file's bytes from
    /// `offset` on (zeros past its end), then cuts `buf` at the size readers see.
    pub fn overlay(&self, offset: u64, buf: &mut Vec<u8>) {
        let end = offset + buf.len() as u64;
        for op in &self.pending {
            match op {
                Pending::Write { offset: at, data } => {
                    let (from, to) = ((*at).max(offset), (at + data.len() as u64).min(end));
                    if from < to {
                        buf[(from - offset) as usize..(to - offset) as usize]
                            .copy_from_slice(&data[(from - at) as usize..(to - at) as usize]);
                    }
                }
                // Bytes past a shrink read as zeros if a later write extends the file again.
                Pending::SetLen(len) if *len < end => {
                    let from = (*len).max(offset);
                    buf[(from - offset) as usize..].fill(0);
                }
                Pending::SetLen(_) => {}
            }
        }
        buf.truncate(self.size.saturating_sub(offset).min(buf.len() as u64) as usize);
    }

    /// Every pending change, oldest first, leaving none: for an fsync.
    pub fn take_all(&mut self) -> Vec<Pending> {
        self.pending_bytes = 0;
        self.pending.drain(..).collect()
    }

    /// The oldest pending changes holding at least `bytes` bytes: what a kernel would write
    /// back on its own under memory pressure. Applying a prefix in order keeps the view.
    pub fn take_oldest(&mut self, bytes: usize) -> Vec<Pending> {
        let mut taken = Vec::new();
        let mut total = 0;
        while total < bytes {
            let Some(op) = self.pending.pop_front() else {
                break;
            };
            total += op.bytes();
            taken.push(op);
        }
        self.pending_bytes -= total;
        taken
    }

    /// A power cut: with `rng`, a random subset of the pending changes, shuffled (a disk may
    /// persist any of the writes it was given, in any order); without, none. The rest is lost.
    /// `torn`: writes are first split at page boundaries, so that part of one may survive.
    pub fn cut(&mut self, rng: Option<&mut fastrand::Rng>, torn: bool) -> (Vec<Pending>, CutCount) {
        let mut all = self.take_all();
        if torn {
            all = all.into_iter().flat_map(split_at_pages).collect();
        }
        let total = all.len();
        let mut kept: Vec<Pending> = match rng {
            None => Vec::new(),
            Some(rng) => {
                let mut kept: Vec<Pending> = all.into_iter().filter(|_| rng.bool()).collect();
                rng.shuffle(&mut kept);
                kept
            }
        };
        kept.shrink_to_fit();
        let count = CutCount {
            kept: kept.len(),
            dropped: total - kept.len(),
        };
        (kept, count)
    }
}

/// The unit a torn write is torn into: a page, as a disk persists them independently.
pub const TEAR_BYTES: u64 = 4096;

/// A write split at `TEAR_BYTES` boundaries of the file.
fn split_at_pages(op: Pending) -> Vec<Pending> {
    let Pending::Write { offset, data } = op else {
        return vec![op];
    };
    let mut pieces = Vec::new();
    let mut at = offset;
    let end = offset + data.len() as u64;
    while at < end {
        let next = ((at / TEAR_BYTES + 1) * TEAR_BYTES).min(end);
        pieces.push(Pending::Write {
            offset: at,
            data: data[(at - offset) as usize..(next - offset) as usize].to_vec(),
        });
        at = next;
    }
    pieces
}

/// Writes changes to the backing file, in the order given.
pub fn apply(file: &File, ops: &[Pending]) -> io::Result<()> {
    for op in ops {
        match op {
            Pending::Write { offset, data } => file.write_all_at(data, *offset)?,
            Pending::SetLen(len) => file.set_len(*len)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(cache: &FileCache, backing: &[u8], offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        for (i, b) in buf.iter_mut().enumerate() {
            if let Some(v) = backing.get(offset as usize + i) {
                *b = *v;
            }
        }
        cache.overlay(offset, &mut buf);
        buf
    }

    #[test]
    fn reads_see_writes_in_order_over_the_backing_bytes() {
        let backing = b"abcdefgh".to_vec();
        let mut cache = FileCache::new(8);
        cache.write(2, b"XY");
        cache.write(3, b"Z");
        assert_eq!(view(&cache, &backing, 0, 8), b"abXZefgh");
        assert_eq!(view(&cache, &backing, 3, 3), b"Zef");
        cache.write(10, b"!!");
        assert_eq!(cache.size(), 12);
        assert_eq!(view(&cache, &backing, 6, 10), b"gh\0\0!!");
    }

    #[test]
    fn a_shrink_then_an_extension_reads_zeros_in_between() {
        let backing = b"abcdefgh".to_vec();
        let mut cache = FileCache::new(8);
        cache.set_len(2);
        assert_eq!(view(&cache, &backing, 0, 8), b"ab");
        cache.write(5, b"Q");
        assert_eq!(view(&cache, &backing, 0, 8), b"ab\0\0\0Q");
    }

    #[test]
    fn fsync_takes_everything_and_writeback_takes_the_oldest() {
        let mut cache = FileCache::new(0);
        cache.write(0, b"aaaa");
        cache.write(4, b"bbbb");
        cache.write(8, b"cc");
        let oldest = cache.take_oldest(5);
        assert_eq!(oldest.len(), 2);
        assert_eq!(cache.pending_bytes(), 2);
        assert_eq!(cache.take_all().len(), 1);
        assert_eq!(cache.pending_ops(), 0);
        assert_eq!(cache.size(), 10);
    }

    #[test]
    fn a_cut_without_a_seed_keeps_nothing_and_with_one_keeps_a_subset() {
        let mut cache = FileCache::new(0);
        for i in 0..64u64 {
            cache.write(i, b"x");
        }
        let (kept, count) = cache.cut(None, false);
        assert!(kept.is_empty());
        assert_eq!(count.dropped, 64);

        for i in 0..64u64 {
            cache.write(i, b"x");
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let (kept, count) = cache.cut(Some(&mut rng), false);
        assert_eq!(count.kept + count.dropped, 64);
        assert_eq!(kept.len(), count.kept);
        assert!(count.kept > 0 && count.dropped > 0, "{count:?}");
        assert_eq!(cache.pending_ops(), 0);
    }

    #[test]
    fn a_torn_cut_splits_writes_at_page_boundaries() {
        let mut cache = FileCache::new(0);
        cache.write(4000, &[1u8; 9000]);
        let mut rng = fastrand::Rng::with_seed(3);
        let (kept, count) = cache.cut(Some(&mut rng), true);
        // 4000..4096, 4096..8192, 8192..12288, 12288..13000.
        assert_eq!(count.kept + count.dropped, 4);
        for op in &kept {
            let Pending::Write { offset, data } = op else {
                panic!("{op:?}")
            };
            let end = offset + data.len() as u64;
            assert_eq!(
                (end - 1) / TEAR_BYTES,
                offset / TEAR_BYTES,
                "within one page"
            );
        }
    }

    #[test]
    fn applying_writes_and_sizes_to_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abcdef").unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        apply(
            &file,
            &[
                Pending::SetLen(3),
                Pending::Write {
                    offset: 4,
                    data: b"Z".to_vec(),
                },
            ],
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc\0Z");
    }
}
