//! The write-ahead log on disk: preallocated segment files of checksummed frames.
//!
//! Why segment files and not LMDB: an acknowledged append must be durable after exactly one
//! fdatasync of sequential bytes. An LMDB commit syncs scattered pages and then its meta page
//! (two fsyncs), and with `NO_META_SYNC` may lose its last commit on power loss. A segment is
//! preallocated by writing zeros over its whole size when it is created, so appending inside it
//! never changes the file's size or its extents and an fdatasync flushes only the new data
//! blocks, with nothing for the filesystem to journal.
//!
//! Frame: `len: u32 LE | crc32c(payload): u32 LE | payload` where the payload is one log entry
//! (JSON). Frames follow each other from offset 0; the preallocated rest of a segment is zeros,
//! so a zero length ends the segment. On open, every frame is checked (checksum, and that the
//! entries' indexes follow each other); the first frame that fails marks a torn or corrupt
//! tail, which is zeroed and never served, and later segments are discarded.
//!
//! Writing a segment's zeros takes a while (64 MiB at a few hundred MB/s, then an fsync), so
//! the next segment is prepared ahead (once the current one is half full), on a thread of its
//! own, as a spare file ([`SPARE_FILE`]); rotation then only renames it and fsyncs the directory, instead of
//! stalling every append behind it for a fifth of a second.
//!
//! This file knows nothing of openraft: entries are opaque bytes with an index.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes preallocated per segment. Large enough that rotation (a new file, a directory fsync)
/// is rare; small enough that purging frees disk in useful steps.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Header bytes of a frame: length and checksum.
pub const FRAME_HEADER_BYTES: u64 = 8;
/// Largest payload of one frame: a proposal is bounded by the proposer's batch limits (64 MiB
/// of payloads plus JSON framing); anything larger on disk is garbage.
pub const MAX_FRAME_PAYLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// The next segment, zero-filled and synced ahead of need. Its name does not end in `.wal`, so
/// a leftover one is never read as a segment; open deletes it and prepares a new one.
pub const SPARE_FILE: &str = "next-segment.spare";
/// Zeros written per call when a tail is cleared.
const ZERO_CHUNK_BYTES: usize = 1024 * 1024;

/// Where one entry's payload is.
#[derive(Debug, Clone, Copy)]
struct Location {
    offset: u64,
    len: u32,
}

struct Segment {
    first_index: u64,
    path: PathBuf,
    file: File,
    /// Where the next frame goes; everything from here on is zeros.
    write_offset: u64,
    allocated: u64,
    /// Entry `first_index + i` is at `entries[i]`.
    entries: Vec<Location>,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }
}

/// The segments of one log directory.
pub struct Segments {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    /// The spare segment being prepared (or ready once the thread has finished).
    spare: Option<std::thread::JoinHandle<io::Result<()>>>,
}

/// What [`Segments::open`] found: every whole entry, in index order, as `(index, payload)`, and
/// what it discarded.
pub struct Recovered {
    pub entries: Vec<(u64, Vec<u8>)>,
    pub discarded_tail: bool,
}

impl Segments {
    /// Opens the log in `dir` (creating it), checks every frame, clears a torn tail. `decode_index`
    /// reads the index an entry's payload claims, so frames out of sequence are caught too.
    pub fn open(
        dir: &Path,
        decode_index: impl Fn(&[u8]) -> Option<u64>,
    ) -> io::Result<(Segments, Recovered)> {
        std::fs::create_dir_all(dir)?;
        // The log directory's own entry must be durable before its first segment is.
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let mut paths: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                paths.push((first, path));
            }
        }
        paths.sort();
        match std::fs::remove_file(dir.join(SPARE_FILE)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let mut segments = BTreeMap::new();
        let mut entries = Vec::new();
        let mut discarded_tail = false;
        let mut expected_next: Option<u64> = None;
        for (first, path) in paths {
            if discarded_tail || expected_next.is_some_and(|next| next != first) {
                // After a torn tail (or a gap) nothing later can be trusted.
                tracing::warn!(path = %path.display(), "discarding log segment after a torn tail");
                std::fs::remove_file(&path)?;
                discarded_tail = true;
                continue;
            }
            let (segment, torn) = scan_segment(first, path, &decode_index, &mut entries)?;
            discarded_tail |= torn;
            expected_next = Some(segment.next_index());
            segments.insert(first, segment);
        }
        if discarded_tail {
            sync_dir(dir)?;
        }
        Ok((
            Segments {
                dir: dir.to_owned(),
                segments,
                spare: None,
            },
            Recovered {
                entries,
                discarded_tail,
            },
        ))
    }

    /// The index of the first entry held, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.segments
            .values()
            .find(|segment| !segment.entries.is_empty())
            .map(|segment| segment.first_index)
    }

    /// The index the next appended entry must have, if the log holds any segment.
    pub fn next_index(&self) -> Option<u64> {
        self.segments.values().next_back().map(Segment::next_index)
    }

    /// Writes entries `(index, payload)` (indexes consecutive, following the last one) and
    /// makes them durable with one fdatasync per segment touched (one, unless a segment fills).
    pub fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let mut dirty: Vec<u64> = Vec::new();
        for (index, payload) in entries {
            let frame_len = FRAME_HEADER_BYTES + payload.len() as u64;
            let needs_new = match self.segments.values().next_back() {
                None => true,
                Some(last) => last.write_offset + frame_len > last.allocated,
            };
            if needs_new {
                self.create_segment(*index, frame_len.max(SEGMENT_BYTES))?;
            }
            let segment = self.segments.values_mut().next_back().expect("a segment");
            assert_eq!(
                segment.next_index(),
                *index,
                "log entries must be consecutive"
            );
            let mut frame = Vec::with_capacity(frame_len as usize);
            frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            frame.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
            frame.extend_from_slice(payload);
            segment.file.write_all_at(&frame, segment.write_offset)?;
            segment.entries.push(Location {
                offset: segment.write_offset + FRAME_HEADER_BYTES,
                len: payload.len() as u32,
            });
            segment.write_offset += frame_len;
            if !dirty.contains(&segment.first_index) {
                dirty.push(segment.first_index);
            }
        }
        for first in dirty {
            self.segments[&first].file.sync_data()?;
        }
        // Half way through a segment, the next one starts being prepared.
        let half_full = self
            .segments
            .values()
            .next_back()
            .is_some_and(|last| last.write_offset > last.allocated / 2);
        if half_full && self.spare.is_none() {
            self.prepare_spare();
        }
        Ok(())
    }

    /// The payload of entry `index`, if present.
    pub fn read(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        let Some((_, segment)) = self.segments.range(..=index).next_back() else {
            return Ok(None);
        };
        let Some(location) = segment.entries.get((index - segment.first_index) as usize) else {
            return Ok(None);
        };
        let mut payload = vec![0u8; location.len as usize];
        segment.file.read_exact_at(&mut payload, location.offset)?;
        Ok(Some(payload))
    }

    /// Removes entries from `index` on (inclusive): zeroes their frames so a later scan cannot
    /// resurrect them, and deletes later segments.
    pub fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let later: Vec<u64> = self
            .segments
            .range(index..)
            .map(|(first, _)| *first)
            .collect();
        for first in later {
            let segment = self.segments.remove(&first).expect("listed");
            std::fs::remove_file(&segment.path)?;
        }
        if let Some((_, segment)) = self.segments.range_mut(..index).next_back() {
            let keep = (index - segment.first_index) as usize;
            if keep < segment.entries.len() {
                let cut = segment.entries[keep].offset - FRAME_HEADER_BYTES;
                zero_range(&segment.file, cut, segment.write_offset)?;
                segment.entries.truncate(keep);
                segment.write_offset = cut;
                segment.file.sync_data()?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Deletes every segment whose entries are all at or before `index`.
    pub fn purge_through(&mut self, index: u64) -> io::Result<()> {
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        let mut removed = false;
        for pair in firsts.windows(2) {
            // A segment is wholly purged when the next one starts at or before index + 1.
            if pair[1] <= index + 1 {
                let segment = self.segments.remove(&pair[0]).expect("listed");
                std::fs::remove_file(&segment.path)?;
                removed = true;
            }
        }
        if let Some(last) = self.segments.values().next_back() {
            // An empty segment starting at or before `index` is purged too (a node that
            // installed a snapshot far ahead of its log appends after the snapshot next).
            if last.next_index() <= index + 1
                && (!last.entries.is_empty() || last.first_index <= index)
            {
                // Everything is purged: the next append starts a fresh segment.
                let first = last.first_index;
                let segment = self.segments.remove(&first).expect("listed");
                std::fs::remove_file(&segment.path)?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Starts preparing the spare segment on its own thread.
    fn prepare_spare(&mut self) {
        let path = self.dir.join(SPARE_FILE);
        let spawned = std::thread::Builder::new()
            .name("esdb-wal-spare".into())
            .spawn(move || {
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)?;
                preallocate(&file, SEGMENT_BYTES)?;
                file.sync_all()
            });
        // Without a thread, rotation creates segments in line, as without a spare.
        self.spare = spawned.ok();
    }

    /// Takes the spare segment as the segment starting at `first_index`, if one was prepared.
    fn take_spare(&mut self, first_index: u64, bytes: u64) -> io::Result<Option<File>> {
        if bytes > SEGMENT_BYTES {
            return Ok(None);
        }
        let Some(preparing) = self.spare.take() else {
            return Ok(None);
        };
        let prepared = preparing
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the spare segment's thread panicked")));
        if let Err(error) = prepared {
            tracing::warn!(%error, "preparing a spare log segment failed; creating one in line");
            return Ok(None);
        }
        let path = self.dir.join(format!("{first_index:020}.wal"));
        std::fs::rename(self.dir.join(SPARE_FILE), &path)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(Some(file))
    }

    fn create_segment(&mut self, first_index: u64, bytes: u64) -> io::Result<()> {
        let path = self.dir.join(format!("{first_index:020}.wal"));
        let (file, allocated) = match self.take_spare(first_index, bytes)? {
            // The spare's zeros and size are synced already.
            Some(file) => (file, SEGMENT_BYTES),
            None => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)?;
                preallocate(&file, bytes)?;
                file.sync_all()?;
                (file, bytes)
            }
        };
        // The new file's size and its directory entry (created, or renamed from the spare)
        // must survive a power loss before any entry in it is acknowledged.
        sync_dir(&self.dir)?;
        self.segments.insert(
            first_index,
            Segment {
                first_index,
                path,
                file,
                write_offset: 0,
                allocated,
                entries: Vec::new(),
            },
        );
        Ok(())
    }
}

/// Reads the frames of one segment, pushing whole entries onto `entries`; returns the segment
/// positioned after its last whole frame and whether a torn tail was cleared.
fn scan_segment(
    first_index: u64,
    path: PathBuf,
    decode_index: &impl Fn(&[u8]) -> Option<u64>,
    entries: &mut Vec<(u64, Vec<u8>)>,
) -> io::Result<(Segment, bool)> {
    let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
    let allocated = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, &mut file);
    let mut offset = 0u64;
    let mut locations = Vec::new();
    let mut torn = false;
    loop {
        let mut header = [0u8; FRAME_HEADER_BYTES as usize];
        if offset + FRAME_HEADER_BYTES > allocated || reader.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len == 0 && crc == 0 {
            break;
        }
        let fits = len <= MAX_FRAME_PAYLOAD_BYTES && offset + FRAME_HEADER_BYTES + len <= allocated;
        let mut payload = vec![0u8; if fits { len as usize } else { 0 }];
        let whole = fits
            && reader.read_exact(&mut payload).is_ok()
            && crc32c::crc32c(&payload) == crc
            && decode_index(&payload) == Some(first_index + locations.len() as u64);
        if !whole {
            torn = true;
            break;
        }
        locations.push(Location {
            offset: offset + FRAME_HEADER_BYTES,
            len: len as u32,
        });
        entries.push((first_index + locations.len() as u64 - 1, payload));
        offset += FRAME_HEADER_BYTES + len;
    }
    drop(reader);
    if torn {
        tracing::warn!(path = %path.display(), offset, "log segment has a torn or corrupt tail; clearing it");
        let end = file.seek(SeekFrom::End(0))?;
        zero_range(&file, offset, end)?;
        file.sync_data()?;
    }
    Ok((
        Segment {
            first_index,
            path,
            file,
            write_offset: offset,
            allocated,
            entries: locations,
        },
        torn,
    ))
}

fn zero_range(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(ZERO_CHUNK_BYTES);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Allocates a segment's blocks by writing zeros over them. `fallocate` alone leaves
/// *unwritten* extents: the first write into each then converts it, a metadata change that an
/// fdatasync must journal, which is exactly the cost preallocation is meant to avoid. Written
/// zeros make every later append a pure data overwrite (and keep the file's size fixed).
fn preallocate(file: &File, bytes: u64) -> io::Result<()> {
    zero_range(file, 0, bytes)
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(payload: &[u8]) -> Option<u64> {
        std::str::from_utf8(payload)
            .ok()?
            .split(':')
            .next()?
            .parse()
            .ok()
    }

    fn entry(index: u64) -> (u64, Vec<u8>) {
        (index, format!("{index}:payload").into_bytes())
    }

    #[test]
    fn entries_survive_reopen_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recovered) = Segments::open(dir.path(), index_of).unwrap();
        assert!(recovered.entries.is_empty());
        log.append(&(1..=5).map(entry).collect::<Vec<_>>()).unwrap();
        assert_eq!(log.read(3).unwrap().unwrap(), b"3:payload");
        drop(log);
        // Tear the last frame: flip a payload byte.
        let path = dir.path().join(format!("{:020}.wal", 1));
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let last_frame = 4 * (FRAME_HEADER_BYTES + 9) + FRAME_HEADER_BYTES;
        file.write_all_at(b"X", last_frame + 2).unwrap();
        let (mut log, recovered) = Segments::open(dir.path(), index_of).unwrap();
        assert!(recovered.discarded_tail);
        assert_eq!(recovered.entries.len(), 4);
        assert_eq!(log.next_index(), Some(5));
        assert!(log.read(5).unwrap().is_none());
        log.append(&[entry(5)]).unwrap();
        drop(log);
        let (_, recovered) = Segments::open(dir.path(), index_of).unwrap();
        assert!(!recovered.discarded_tail);
        assert_eq!(recovered.entries.len(), 5);
    }

    #[test]
    fn truncate_zeroes_so_old_entries_do_not_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Segments::open(dir.path(), index_of).unwrap();
        log.append(&(1..=6).map(entry).collect::<Vec<_>>()).unwrap();
        log.truncate_from(4).unwrap();
        assert_eq!(log.next_index(), Some(4));
        drop(log);
        let (log, recovered) = Segments::open(dir.path(), index_of).unwrap();
        assert_eq!(recovered.entries.len(), 3);
        assert!(!recovered.discarded_tail);
        assert_eq!(log.next_index(), Some(4));
    }

    #[test]
    fn purge_removes_whole_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Segments::open(dir.path(), index_of).unwrap();
        log.append(&(1..=3).map(entry).collect::<Vec<_>>()).unwrap();
        log.purge_through(2).unwrap();
        assert_eq!(log.read(3).unwrap().unwrap(), b"3:payload");
        log.purge_through(3).unwrap();
        assert_eq!(log.next_index(), None);
        log.append(&[entry(4)]).unwrap();
        drop(log);
        let (_, recovered) = Segments::open(dir.path(), index_of).unwrap();
        assert_eq!(
            recovered.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            [4]
        );
    }

    /// A big entry of `index`: its payload starts with the index like the others.
    fn big(index: u64, bytes: usize) -> (u64, Vec<u8>) {
        let mut payload = format!("{index}:").into_bytes();
        payload.resize(bytes, b'x');
        (index, payload)
    }

    #[test]
    fn rotation_takes_the_prepared_spare_and_entries_survive() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Segments::open(dir.path(), index_of).unwrap();
        let chunk = (SEGMENT_BYTES / 4) as usize;
        // Three quarters of a segment: the spare is being prepared from the half-way mark.
        for index in 1..=3 {
            log.append(&[big(index, chunk - 64)]).unwrap();
        }
        assert!(log.spare.is_some(), "a spare is prepared once half full");
        // Two more quarters do not fit: the second one rotates onto the spare.
        log.append(&[big(4, chunk - 64), big(5, chunk - 64)])
            .unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.contains(&format!("{:020}.wal", 5)), "{names:?}");
        assert!(!names.contains(&SPARE_FILE.to_owned()), "{names:?}");
        assert_eq!(
            std::fs::metadata(dir.path().join(format!("{:020}.wal", 5)))
                .unwrap()
                .len(),
            SEGMENT_BYTES,
            "the spare was a whole, zero-filled segment"
        );
        drop(log);
        let (_, recovered) = Segments::open(dir.path(), index_of).unwrap();
        assert_eq!(
            recovered.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert!(!recovered.discarded_tail);
    }
}
