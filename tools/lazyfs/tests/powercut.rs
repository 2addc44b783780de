//! The real filesystem mounted with FUSE: what survives a power cut. Skipped (and says so)
//! where there is no /dev/fuse or no root to mount it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOUNT_TIMEOUT_MS: u64 = 20_000;
const EXIT_TIMEOUT_MS: u64 = 20_000;

fn fuse_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !Path::new("/dev/fuse").exists() || !root {
        eprintln!("lazyfs mount tests skipped: they need /dev/fuse and root");
        return false;
    }
    true
}

struct Mounted {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Mounted {
    fn new(dir_durability: &str) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("backing")).unwrap();
        std::fs::create_dir_all(dir.path().join("mnt")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_esdb-lazyfs"))
            .arg("--backing")
            .arg(dir.path().join("backing"))
            .arg("--mount")
            .arg(dir.path().join("mnt"))
            .arg("--control")
            .arg(dir.path().join("ctl"))
            .args(["--dir-durability", dir_durability, "--exit-with-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(|l| l.ok()));
        });
        let line = rx
            .recv_timeout(Duration::from_millis(MOUNT_TIMEOUT_MS))
            .unwrap();
        assert!(
            line.as_deref()
                .unwrap_or("")
                .starts_with("esdb-lazyfs mounted"),
            "{line:?}"
        );
        Mounted {
            child: Some(child),
            dir,
        }
    }

    fn mnt(&self, name: &str) -> PathBuf {
        self.dir.path().join("mnt").join(name)
    }

    fn backing(&self, name: &str) -> PathBuf {
        self.dir.path().join("backing").join(name)
    }

    fn control(&self, line: &str) -> String {
        let mut s = UnixStream::connect(self.dir.path().join("ctl")).unwrap();
        writeln!(s, "{line}").unwrap();
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        assert!(reply.starts_with("ok"), "{line}: {reply}");
        reply
    }

    fn cut_and_unmount(mut self, seed: Option<u64>) -> tempfile::TempDir {
        match seed {
            Some(seed) => self.control(&format!("cut {seed}")),
            None => self.control("cut"),
        };
        self.control("unmount");
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(EXIT_TIMEOUT_MS) {
            if child.try_wait().unwrap().is_some() {
                return std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("esdb-lazyfs did not exit after unmount");
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let path =
                std::ffi::CString::new(self.dir.path().join("mnt").as_os_str().as_encoded_bytes())
                    .unwrap();
            // SAFETY: a valid C string.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

/// Reads `len` bytes through a read-only shared mapping, as LMDB reads its data file.
fn mmap_read(file: &File, len: usize) -> Vec<u8> {
    // SAFETY: mapping a file we hold open, read-only, and copying out before unmapping.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        let out = std::slice::from_raw_parts(p as *const u8, len).to_vec();
        libc::munmap(p, len);
        out
    }
}

#[test]
fn unsynced_writes_are_seen_while_powered_and_lost_at_the_cut() {
    if !fuse_available() {
        return;
    }
    let fs = Mounted::new("journal");
    let synced = rw(&fs.mnt("synced"));
    synced.write_all_at(b"durable", 0).unwrap();
    synced.sync_data().unwrap();
    synced.write_all_at(b"DURABLE-NOT", 0).unwrap();
    let lost = rw(&fs.mnt("lost"));
    lost.write_all_at(&[7u8; 8192], 0).unwrap();
    let empty = rw(&fs.mnt("empty"));
    empty.write_all_at(b"data", 0).unwrap();
    // Any fsync commits the journal: `empty` and `lost` now have durable names, and the write
    // to `synced` before it is durable too; their data is not.
    synced.sync_data().unwrap();
    synced.write_all_at(b"LOST", 0).unwrap();

    std::fs::write(fs.mnt("late"), b"late").unwrap();
    // Readers, including mmap page faults, see the pending writes.
    assert_eq!(std::fs::read(fs.mnt("synced")).unwrap(), b"LOSTBLE-NOT");
    assert_eq!(mmap_read(&lost, 8192), vec![7u8; 8192]);
    // The backing dir has only what was synced.
    assert_eq!(std::fs::read(fs.backing("synced")).unwrap(), b"DURABLE-NOT");
    drop((synced, lost, empty));

    let dir = fs.cut_and_unmount(None);
    let backing = dir.path().join("backing");
    assert_eq!(
        std::fs::read(backing.join("synced")).unwrap(),
        b"DURABLE-NOT"
    );
    assert_eq!(std::fs::read(backing.join("empty")).unwrap(), b"");
    assert_eq!(std::fs::read(backing.join("lost")).unwrap(), b"");
    let late = dir.path().join("backing").join("late");
    assert!(
        !late.exists(),
        "created after the last fsync: not even its name is durable"
    );
}

#[test]
fn a_seeded_cut_keeps_some_unsynced_writes_and_drops_others() {
    if !fuse_available() {
        return;
    }
    let fs = Mounted::new("journal");
    let f = rw(&fs.mnt("f"));
    f.sync_all().unwrap();
    for i in 0..64u64 {
        f.write_all_at(b"x", i * 2).unwrap();
    }
    drop(f);
    let dir = fs.cut_and_unmount(Some(11));
    let bytes = std::fs::read(dir.path().join("backing").join("f")).unwrap();
    let kept = (0..64).filter(|i| bytes.get(i * 2) == Some(&b'x')).count();
    assert!(kept > 0 && kept < 64, "kept {kept} of 64");
    assert!(
        bytes
            .iter()
            .enumerate()
            .all(|(i, b)| *b == 0 || (i % 2 == 0 && *b == b'x')),
        "only whole writes, at their offsets"
    );
}

#[test]
fn strict_mode_loses_directory_changes_without_a_directory_fsync() {
    if !fuse_available() {
        return;
    }
    let fs = Mounted::new("strict");
    std::fs::create_dir(fs.mnt("d")).unwrap();
    File::open(fs.mnt("")).unwrap().sync_all().unwrap();
    let kept = rw(&fs.mnt("d/kept"));
    kept.write_all_at(b"k", 0).unwrap();
    kept.sync_all().unwrap();
    File::open(fs.mnt("d")).unwrap().sync_all().unwrap();
    let gone = rw(&fs.mnt("d/gone"));
    gone.write_all_at(b"g", 0).unwrap();
    gone.sync_all().unwrap();
    std::fs::write(fs.mnt("d/old"), b"").unwrap();
    drop((kept, gone));

    let dir = fs.cut_and_unmount(None);
    let d = dir.path().join("backing").join("d");
    assert_eq!(std::fs::read(d.join("kept")).unwrap(), b"k");
    assert!(
        !d.join("gone").exists(),
        "its directory was never fsynced after it"
    );
    assert!(!d.join("old").exists());
}

#[test]
fn a_rename_over_a_file_is_undone_unless_its_directory_is_synced() {
    if !fuse_available() {
        return;
    }
    let fs = Mounted::new("strict");
    for (name, text) in [("current", "v1"), ("next", "v2")] {
        let f = rw(&fs.mnt(name));
        f.write_all_at(text.as_bytes(), 0).unwrap();
        f.sync_all().unwrap();
    }
    File::open(fs.mnt("")).unwrap().sync_all().unwrap();
    std::fs::rename(fs.mnt("next"), fs.mnt("current")).unwrap();
    assert_eq!(std::fs::read(fs.mnt("current")).unwrap(), b"v2");
    assert!(!fs.mnt("next").exists());

    let dir = fs.cut_and_unmount(None);
    let backing = dir.path().join("backing");
    assert_eq!(std::fs::read(backing.join("current")).unwrap(), b"v1");
    assert_eq!(std::fs::read(backing.join("next")).unwrap(), b"v2");
}
