//! The filesystem's state behind one lock: inode numbers and their backing paths, each file's
//! pending writes, the pending directory changes, and whether the power is on.
//!
//! Every method is one filesystem operation on backing paths; `fs.rs` only translates FUSE
//! requests to these calls and their results to replies.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cache::{apply, CutCount, FileCache};
use crate::namespace::{DirDurability, Namespace, NsCutCount, NsOp};

/// The FUSE root inode.
pub const ROOT_INO: u64 = 1;

/// Most bytes of pending writes one file may hold before the oldest half is written back to
/// the backing file unasked, as a kernel does under memory pressure (it keeps memory bounded
/// for a file that is written and never synced).
pub const DEFAULT_MAX_PENDING_BYTES_PER_FILE: usize = 256 << 20;

/// A file's data: the backing file, open for the filesystem's own reads and writes, and what
/// is written to it but not durable.
struct FileData {
    fd: File,
    cache: FileCache,
}

/// What a power cut did, for the control interface's reply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    pub files: usize,
    pub writes: CutCount,
    pub dir_changes: NsCutCount,
}

/// Counters for `stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub writes: u64,
    pub fsyncs: u64,
    pub dir_fsyncs: u64,
    pub writebacks: u64,
    pub pending_ops: usize,
    pub pending_bytes: usize,
    pub pending_dir_changes: usize,
}

pub struct State {
    root: PathBuf,
    paths: HashMap<u64, PathBuf>,
    inos: HashMap<PathBuf, u64>,
    next_ino: u64,
    files: HashMap<u64, FileData>,
    ns: Namespace,
    powered: bool,
    max_pending_bytes: usize,
    stats: Stats,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl State {
    pub fn new(
        root: PathBuf,
        trash_root: PathBuf,
        mode: DirDurability,
        max_pending_bytes: usize,
    ) -> State {
        let mut state = State {
            root: root.clone(),
            paths: HashMap::new(),
            inos: HashMap::new(),
            next_ino: ROOT_INO + 1,
            files: HashMap::new(),
            ns: Namespace::new(mode, trash_root),
            powered: true,
            max_pending_bytes,
            stats: Stats::default(),
        };
        state.paths.insert(ROOT_INO, root.clone());
        state.inos.insert(root, ROOT_INO);
        state
    }

    /// After a power cut every operation fails with EIO: the "machine" is off.
    pub fn check_powered(&self) -> io::Result<()> {
        if self.powered {
            Ok(())
        } else {
            Err(errno(libc::EIO))
        }
    }

    pub fn path(&self, ino: u64) -> io::Result<PathBuf> {
        self.paths
            .get(&ino)
            .cloned()
            .ok_or_else(|| errno(libc::ENOENT))
    }

    fn ino_for(&mut self, path: &Path) -> u64 {
        if let Some(ino) = self.inos.get(path) {
            return *ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.paths.insert(ino, path.to_owned());
        self.inos.insert(path.to_owned(), ino);
        ino
    }

    fn child(&self, parent: u64, name: &OsStr) -> io::Result<PathBuf> {
        if name.is_empty() || name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/')
        {
            return Err(errno(libc::EINVAL));
        }
        Ok(self.path(parent)?.join(name))
    }

    /// The metadata of `ino`, with the size its readers see.
    pub fn attr(&self, ino: u64) -> io::Result<(Metadata, u64)> {
        let meta = std::fs::symlink_metadata(self.path(ino)?)?;
        let size = self.files.get(&ino).map_or(meta.len(), |f| f.cache.size());
        Ok((meta, size))
    }

    pub fn lookup(&mut self, parent: u64, name: &OsStr) -> io::Result<u64> {
        let path = self.child(parent, name)?;
        std::fs::symlink_metadata(&path)?;
        Ok(self.ino_for(&path))
    }

    fn file(&mut self, ino: u64) -> io::Result<&mut FileData> {
        if !self.files.contains_key(&ino) {
            let path = self.path(ino)?;
            let fd = OpenOptions::new().read(true).write(true).open(&path)?;
            let size = fd.metadata()?.len();
            self.files.insert(
                ino,
                FileData {
                    fd,
                    cache: FileCache::new(size),
                },
            );
        }
        Ok(self.files.get_mut(&ino).expect("inserted above"))
    }

    pub fn open(&mut self, ino: u64) -> io::Result<()> {
        if std::fs::symlink_metadata(self.path(ino)?)?.is_file() {
            self.file(ino)?;
        }
        Ok(())
    }

    /// Creates a regular file (or opens it when it exists and `exclusive` is false).
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        exclusive: bool,
    ) -> io::Result<u64> {
        let path = self.child(parent, name)?;
        let existed = std::fs::symlink_metadata(&path).is_ok();
        if existed && exclusive {
            return Err(errno(libc::EEXIST));
        }
        if !existed {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o7777)
                .open(&path)?;
            self.ns.record(NsOp::Created {
                path: path.clone(),
                dir: false,
            });
        }
        let ino = self.ino_for(&path);
        self.file(ino)?;
        Ok(ino)
    }

    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> io::Result<u64> {
        let path = self.child(parent, name)?;
        std::fs::DirBuilder::new()
            .mode(mode & 0o7777)
            .create(&path)?;
        self.ns.record(NsOp::Created {
            path: path.clone(),
            dir: true,
        });
        Ok(self.ino_for(&path))
    }

    /// Moves `path` into the trash (so that a power cut can bring it back), renaming the
    /// inode numbers that pointed into it.
    fn move_to_trash(&mut self, path: &Path) -> io::Result<PathBuf> {
        let trash = self.ns.trash_path();
        std::fs::rename(path, &trash)?;
        self.repath(path, &trash);
        Ok(trash)
    }

    /// Points every inode at or under `from` to the same place under `to`.
    fn repath(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, u64)> = self
            .inos
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            let rest = old.strip_prefix(from).expect("filtered by prefix");
            // Joining an empty rest would add a trailing slash, which names a directory.
            let new = if rest.as_os_str().is_empty() {
                to.to_owned()
            } else {
                to.join(rest)
            };
            self.inos.remove(&old);
            self.inos.insert(new.clone(), ino);
            self.paths.insert(ino, new);
        }
    }

    pub fn unlink(&mut self, parent: u64, name: &OsStr, dir: bool) -> io::Result<()> {
        let path = self.child(parent, name)?;
        let meta = std::fs::symlink_metadata(&path)?;
        if dir != meta.is_dir() {
            return Err(errno(if dir { libc::ENOTDIR } else { libc::EISDIR }));
        }
        if dir && std::fs::read_dir(&path)?.next().is_some() {
            return Err(errno(libc::ENOTEMPTY));
        }
        let trash = self.move_to_trash(&path)?;
        self.ns.record(NsOp::Removed { path, trash });
        Ok(())
    }

    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> io::Result<()> {
        let from = self.child(parent, name)?;
        let to = self.child(new_parent, new_name)?;
        std::fs::symlink_metadata(&from)?;
        if from == to {
            return Ok(());
        }
        let replaced = match std::fs::symlink_metadata(&to) {
            Ok(_) if no_replace => return Err(errno(libc::EEXIST)),
            Ok(meta) => {
                if meta.is_dir() && std::fs::read_dir(&to)?.next().is_some() {
                    return Err(errno(libc::ENOTEMPTY));
                }
                Some(self.move_to_trash(&to)?)
            }
            Err(_) => None,
        };
        if let Err(e) = std::fs::rename(&from, &to) {
            if let Some(trash) = &replaced {
                let _ = std::fs::rename(trash, &to);
            }
            return Err(e);
        }
        self.repath(&from, &to);
        self.ns.record(NsOp::Renamed { from, to, replaced });
        Ok(())
    }

    pub fn set_len(&mut self, ino: u64, len: u64) -> io::Result<()> {
        self.file(ino)?.cache.set_len(len);
        Ok(())
    }

    pub fn set_mode(&mut self, ino: u64, mode: u32) -> io::Result<()> {
        std::fs::set_permissions(
            self.path(ino)?,
            std::fs::Permissions::from_mode(mode & 0o7777),
        )
    }

    /// `fallocate`: plain preallocation extends the size; keep-size preallocation changes
    /// nothing a reader sees; anything else (punching holes, …) is not supported.
    pub fn fallocate(&mut self, ino: u64, offset: u64, length: u64, mode: i32) -> io::Result<()> {
        match mode {
            0 => {
                let file = self.file(ino)?;
                let end = offset + length;
                if end > file.cache.size() {
                    file.cache.set_len(end);
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(errno(libc::EOPNOTSUPP)),
        }
    }

    pub fn read(&mut self, ino: u64, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let file = self.file(ino)?;
        let len = file.cache.size().saturating_sub(offset).min(size as u64) as usize;
        let mut buf = vec![0; len];
        let mut done = 0;
        while done < len {
            let n = file.fd.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        file.cache.overlay(offset, &mut buf);
        Ok(buf)
    }

    /// A write; `sync` when the file was opened `O_SYNC` or `O_DSYNC` (durable on return).
    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8], sync: bool) -> io::Result<()> {
        self.stats.writes += 1;
        let max = self.max_pending_bytes;
        let file = self.file(ino)?;
        file.cache.write(offset, data);
        if sync {
            return self.fsync(ino);
        }
        if file.cache.pending_bytes() > max {
            let oldest = file.cache.take_oldest(max / 2);
            apply(&file.fd, &oldest)?;
            self.stats.writebacks += 1;
        }
        Ok(())
    }

    /// `fsync`/`fdatasync`: the file's pending writes become durable.
    pub fn fsync(&mut self, ino: u64) -> io::Result<()> {
        self.stats.fsyncs += 1;
        if let Some(file) = self.files.get_mut(&ino) {
            let ops = file.cache.take_all();
            apply(&file.fd, &ops)?;
        }
        self.ns.on_file_sync();
        Ok(())
    }

    pub fn fsync_dir(&mut self, ino: u64) -> io::Result<()> {
        self.stats.dir_fsyncs += 1;
        let path = self.path(ino)?;
        self.ns.on_dir_sync(&path);
        Ok(())
    }

    /// A directory's entries (without `.` and `..`), with inode numbers and whether each is a
    /// directory, in name order so that offsets are stable between calls.
    pub fn read_dir(&mut self, ino: u64) -> io::Result<Vec<(u64, std::fs::FileType, PathBuf)>> {
        let path = self.path(ino)?;
        let mut names: Vec<(std::ffi::OsString, std::fs::FileType)> = std::fs::read_dir(&path)?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name(), e.file_type().ok()?)))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(names
            .into_iter()
            .map(|(name, kind)| {
                let child = path.join(&name);
                (self.ino_for(&child), kind, PathBuf::from(name))
            })
            .collect())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.pending_ops = self.files.values().map(|f| f.cache.pending_ops()).sum();
        stats.pending_bytes = self.files.values().map(|f| f.cache.pending_bytes()).sum();
        stats.pending_dir_changes = self.ns.pending();
        stats
    }

    /// A clean unmount: everything pending becomes durable, as `sync(2)` would make it.
    pub fn sync_all(&mut self) -> io::Result<()> {
        if !self.powered {
            return Ok(());
        }
        let inos: Vec<u64> = self.files.keys().copied().collect();
        for ino in inos {
            self.fsync(ino)?;
        }
        self.ns.commit_all();
        Ok(())
    }

    /// Cuts the power: each file keeps none of its pending writes (no seed) or a random
    /// subset in a random order (seed; `torn`: of their pages), directory changes not durable are undone, and every
    /// later operation fails with EIO. The backing dir then holds what survived.
    pub fn cut(&mut self, seed: Option<u64>, torn: bool) -> io::Result<CutReport> {
        self.check_powered()?;
        self.powered = false;
        let mut rng = seed.map(fastrand::Rng::with_seed);
        let mut report = CutReport::default();
        let mut inos: Vec<u64> = self.files.keys().copied().collect();
        // Seeded cuts must be reproducible: the same files in the same order.
        inos.sort_unstable();
        for ino in inos {
            let file = self.files.get_mut(&ino).expect("listed above");
            if file.cache.pending_ops() == 0 {
                continue;
            }
            let (kept, count) = file.cache.cut(rng.as_mut(), torn);
            apply(&file.fd, &kept)?;
            report.files += 1;
            report.writes.kept += count.kept;
            report.writes.dropped += count.dropped;
        }
        report.dir_changes = self.ns.cut();
        self.files.clear();
        Ok(report)
    }
}
