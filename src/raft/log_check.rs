//! The offline check of a store's Raft log, for `esdb verify`: every frame of every segment
//! (see [`segments`](crate::raft::segments) for the frame format), read-only.
//!
//! [`Segments::open`](crate::raft::segments::Segments::open) does the same walk when the
//! server starts, but repairs as it goes (it zeroes a torn tail and drops later segments);
//! this one only reports, so the damage can be seen before a server discards it. A frame that
//! fails (a length past its segment, a checksum mismatch, an entry that does not decode or
//! whose index does not follow its predecessor's) ends the readable log: what follows is
//! reported as what the server would discard.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::raft::segments::{FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD_BYTES};
use crate::raft::types::Entry;

/// What the check of one log directory found.
#[derive(Debug, Default)]
pub struct LogReport {
    pub segments: u64,
    pub entries: u64,
    /// Index of the first and last readable entries.
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    pub problems: Vec<String>,
}

/// Checks every segment in `dir` (a store's `raft-log`).
pub fn check_log(dir: &Path) -> io::Result<LogReport> {
    let mut report = LogReport::default();
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
    let mut expected: Option<u64> = None;
    let mut broken = false;
    for (first, path) in paths {
        report.segments += 1;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        if broken {
            report.problems.push(format!(
                "segment {name} follows a damaged one: the server would discard it"
            ));
            continue;
        }
        if let Some(next) = expected.filter(|next| *next != first) {
            report.problems.push(format!(
                "segment {name} starts at index {first}, the one before ends before {next}: a gap"
            ));
            broken = true;
            continue;
        }
        let next = check_segment(first, &path, &name, &mut report)?;
        broken = next.is_none();
        expected = next;
    }
    Ok(report)
}

/// Walks one segment's frames; returns the index the next segment must start at, or `None`
/// when a frame failed.
fn check_segment(
    first_index: u64,
    path: &Path,
    name: &str,
    report: &mut LogReport,
) -> io::Result<Option<u64>> {
    let mut file = File::open(path)?;
    let allocated = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, &mut file);
    let mut offset = 0u64;
    let mut index = first_index;
    loop {
        let mut header = [0u8; FRAME_HEADER_BYTES as usize];
        if offset + FRAME_HEADER_BYTES > allocated {
            if offset < allocated {
                // A few bytes short of a header: zeros are the preallocated rest.
                let mut rest = Vec::new();
                reader.read_to_end(&mut rest)?;
                if rest.iter().any(|&b| b != 0) {
                    report.problems.push(format!(
                        "segment {name}: {} stray bytes at offset {offset}, the end of the file",
                        rest.len()
                    ));
                    return Ok(None);
                }
            }
            return Ok(Some(index));
        }
        reader.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len == 0 && crc == 0 {
            return Ok(Some(index));
        }
        let fail = |report: &mut LogReport, what: String| {
            report.problems.push(format!(
                "segment {name}: the frame at offset {offset} (entry {index}) {what}: the log \
                 ends before it, and the server discards it and all after it on its next start"
            ));
            Ok(None)
        };
        if len > MAX_FRAME_PAYLOAD_BYTES || offset + FRAME_HEADER_BYTES + len > allocated {
            return fail(
                report,
                format!(
                    "claims {len} bytes, past the end of the segment ({allocated} bytes): the \
                     segment is truncated or the length is damaged"
                ),
            );
        }
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload)?;
        let computed = crc32c::crc32c(&payload);
        if computed != crc {
            return fail(
                report,
                format!("fails its checksum (stored {crc:08x}, computed {computed:08x})"),
            );
        }
        match serde_json::from_slice::<Entry>(&payload) {
            Ok(entry) if entry.log_id.index == index => {}
            Ok(entry) => {
                return fail(
                    report,
                    format!("holds entry {} out of sequence", entry.log_id.index),
                )
            }
            Err(error) => return fail(report, format!("does not decode: {error}")),
        }
        report.entries += 1;
        report.first_index.get_or_insert(index);
        report.last_index = Some(index);
        index += 1;
        offset += FRAME_HEADER_BYTES + len;
    }
}
