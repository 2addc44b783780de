//! A lying disk, black-box: events written through the real server, the server stopped, bits
//! flipped in the LMDB data file inside one event's payload (and, in a copy, the Raft log's
//! last segment truncated mid-frame). After a restart the damaged event is never served
//! (`-ERR corrupt`, counted in `/metrics`) while every other event reads as before; `esdb
//! verify` names each kind of damage and exits non-zero, and exits zero on an undamaged copy;
//! a server whose log lost applied entries refuses to start with a plain message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use esdb_protocol::{ErrorCode, Reply};

use common::{http_get, Server};

/// Events written to the damaged stream; the one at [`DAMAGED`] gets flipped bits.
const EVENTS: u64 = 20;
const DAMAGED: u64 = 7;

fn marker(n: u64) -> String {
    format!("integrity-marker-{n:04}-only-here")
}

fn esdb_verify(data_dir: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_esdb"))
        .arg("verify")
        .arg(data_dir)
        .output()
        .expect("run esdb verify")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Copies a directory tree (regular files and directories only).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Flips a bit in every copy of `needle` in `file` (LMDB may hold a stale copy of the page
/// too), changing one ASCII letter into another, so the JSON and the B-tree stay well formed
/// and only the checksum can tell. Returns how many copies were changed.
fn flip_inside(file: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let mut found = 0;
    let mut at = 0;
    while let Some(offset) = bytes[at..].windows(needle.len()).position(|w| w == needle) {
        let hit = at + offset;
        // "integrity-marker-…": flip a bit of the 'g', giving 'f'.
        bytes[hit + 4] ^= 0x01;
        found += 1;
        at = hit + needle.len();
    }
    std::fs::write(file, &bytes).unwrap();
    found
}

/// The newest segment of a Raft log directory.
fn last_segment(log_dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a log segment")
}

/// Cuts `segment` in the middle of its last frame (`len u32 LE | crc u32 LE | payload`, frames
/// from offset 0, zeros after the last). Returns the offset of that frame.
fn truncate_last_frame(segment: &Path) -> u64 {
    let bytes = std::fs::read(segment).unwrap();
    let mut offset = 0usize;
    let mut last = None;
    while offset + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap());
        if len == 0 && crc == 0 {
            break;
        }
        last = Some((offset, len));
        offset += 8 + len;
    }
    let (frame, len) = last.expect("the segment holds a frame");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .unwrap();
    file.set_len((frame + 8 + len / 2) as u64).unwrap();
    frame as u64
}

fn corrupt_reads_counted(server: &Server) -> u64 {
    let (status, body) = http_get(server.http_addr, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|line| line.starts_with("esdb_corrupt_records_total{"))
        .filter(|line| line.contains("found_by=\"read\"") && line.contains("store=\"default\""))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn damaged_records_and_logs_are_never_served_and_verify_names_them() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    // No scrubber: the only reads of the damaged record are this test's.
    let args = ["--scrub-records-per-sec", "0"];
    let mut server = Server::start_in(&data_dir, &args);
    let mut client = server.client();
    for n in 0..EVENTS {
        let payload = serde_json::json!({
            "event_type": "Deposited",
            "data": {"n": n, "mark": marker(n)},
        })
        .to_string();
        assert!(matches!(
            client.append("acct", "any", &payload),
            Reply::Appended { .. }
        ));
    }
    let other = common::event("Noted", serde_json::json!({"note": "elsewhere"}));
    assert!(matches!(
        client.append("other", "any", &other),
        Reply::Appended { .. }
    ));
    let intact = client.read_stream("acct", 0, EVENTS);
    assert!(server.terminate().success());

    // Three copies: one undamaged, one with a damaged record, one with a truncated log.
    let copy = temp.path().join("copy");
    copy_dir(&data_dir, &copy);
    let log_damaged = temp.path().join("log-damaged");
    copy_dir(&data_dir, &log_damaged);
    let store = data_dir.join("default");
    let flipped = flip_inside(&store.join("data.mdb"), marker(DAMAGED).as_bytes());
    assert!(flipped >= 1, "the payload is in the data file");
    let segment = last_segment(&log_damaged.join("default").join("raft-log"));
    let cut_at = truncate_last_frame(&segment);

    // Offline: each kind of damage named, non-zero; the copy is clean.
    let damaged = esdb_verify(&data_dir);
    let report = text(&damaged);
    assert_eq!(damaged.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!(
            "DAMAGE store default: the stored event at position {DAMAGED}"
        )),
        "{report}"
    );
    assert!(report.contains("fails its checksum"), "{report}");
    let damaged = esdb_verify(&log_damaged);
    let report = text(&damaged);
    assert_eq!(damaged.status.code(), Some(1), "{report}");
    let segment_name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        report.contains(&format!(
            "DAMAGE log default/raft-log: segment {segment_name}: the frame at offset {cut_at}"
        )),
        "{report}"
    );
    let clean = esdb_verify(&copy);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert!(
        text(&clean).contains("no damage found in 1 store"),
        "{}",
        text(&clean)
    );

    // A log that lost an entry the store had applied: the server refuses to start, plainly
    // (openraft would panic on it), rather than serve a state its log cannot account for.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&log_damaged)
        .output()
        .expect("run esdb serve");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the log lost entries it had made durable"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // verify refuses while a server holds the directory.
    let running = Server::start_in(&copy, &args);
    let refused = esdb_verify(&copy);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("verify refused"),
        "{}",
        text(&refused)
    );
    assert!(text(&refused).contains("in use by another esdb server"));
    drop(running);

    // Online: the damaged event is refused wherever it would be served, the rest reads.
    server.restart();
    let mut client = server.client();
    for request in [
        "READ acct 0 100".to_owned(),
        format!("READ acct {DAMAGED} 1"),
        "READALL 0 100".to_owned(),
        "READTYPES Deposited 0 100".to_owned(),
        "AGG acct".to_owned(),
    ] {
        match client.request(&request) {
            Reply::Err(error) => {
                assert_eq!(error.code, ErrorCode::Corrupt, "{request}: {error:?}");
                assert!(
                    error.message.contains(&format!("position {DAMAGED}")),
                    "{request}: {}",
                    error.message
                );
            }
            other => panic!("{request}: expected -ERR corrupt, got {other:?}"),
        }
    }
    let before = client.read_stream("acct", 0, DAMAGED);
    let after = client.read_stream("acct", DAMAGED + 1, EVENTS);
    assert_eq!(before[..], intact[..DAMAGED as usize]);
    assert_eq!(after[..], intact[DAMAGED as usize + 1..]);
    assert_eq!(client.read_stream("other", 0, 10).len(), 1);
    assert_eq!(corrupt_reads_counted(&server), 5);
    // The store takes writes after the damage.
    assert!(matches!(
        client.append("other", "0", &common::event("Noted", serde_json::json!(2))),
        Reply::Appended {
            last_version: 1,
            ..
        }
    ));
    assert!(server.terminate().success());
}
