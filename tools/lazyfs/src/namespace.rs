//! Directory changes (create, mkdir, unlink, rmdir, rename) that are not durable yet.
//!
//! They are made in the backing directory at once, so the program on the mount sees them, and
//! logged with what it takes to undo them; a power cut undoes those not yet durable, newest
//! first. Removed files and replaced rename targets are moved to a trash directory beside the
//! backing one (same filesystem, so a rename) until their removal is durable.
//!
//! When a change becomes durable is the [`DirDurability`] mode: `journal` is what ext4 and
//! XFS do in practice (any fsync commits the journal, and with it every earlier directory
//! change); `strict` is what POSIX promises (only an fsync of the directory itself).

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DirDurability {
    /// Any fsync or fdatasync makes every earlier directory change durable (ext4, XFS).
    Journal,
    /// A directory change is durable only once its directory is fsynced (POSIX).
    Strict,
}

/// One directory change, with what undoes it. Paths are absolute paths in the backing dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsOp {
    Created {
        path: PathBuf,
        dir: bool,
    },
    Removed {
        path: PathBuf,
        trash: PathBuf,
    },
    Renamed {
        from: PathBuf,
        to: PathBuf,
        replaced: Option<PathBuf>,
    },
}

impl NsOp {
    fn touches(&self, dir: &Path) -> bool {
        let parent_is = |p: &Path| p.parent() == Some(dir);
        match self {
            NsOp::Created { path, .. } | NsOp::Removed { path, .. } => parent_is(path),
            NsOp::Renamed { from, to, .. } => parent_is(from) || parent_is(to),
        }
    }

    /// Trash this change leaves behind once it is durable.
    fn trash(&self) -> Option<&Path> {
        match self {
            NsOp::Removed { trash, .. } => Some(trash),
            NsOp::Renamed { replaced, .. } => replaced.as_deref(),
            NsOp::Created { .. } => None,
        }
    }

    fn undo(&self) -> io::Result<()> {
        match self {
            NsOp::Created { path, dir: true } => std::fs::remove_dir_all(path),
            NsOp::Created { path, dir: false } => std::fs::remove_file(path),
            NsOp::Removed { path, trash } => std::fs::rename(trash, path),
            NsOp::Renamed { from, to, replaced } => {
                std::fs::rename(to, from)?;
                match replaced {
                    Some(trash) => std::fs::rename(trash, to),
                    None => Ok(()),
                }
            }
        }
    }
}

/// What a power cut did to the directory changes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NsCutCount {
    pub undone: usize,
    /// Undos that failed (a later durable change depended on an undone one); best effort.
    pub failed: usize,
}

#[derive(Debug)]
pub struct Namespace {
    mode: DirDurability,
    trash_root: PathBuf,
    next_trash: u64,
    pending: Vec<NsOp>,
}

impl Namespace {
    pub fn new(mode: DirDurability, trash_root: PathBuf) -> Namespace {
        Namespace {
            mode,
            trash_root,
            next_trash: 0,
            pending: Vec::new(),
        }
    }

    /// A fresh name in the trash directory.
    pub fn trash_path(&mut self) -> PathBuf {
        self.next_trash += 1;
        self.trash_root.join(format!("t{}", self.next_trash))
    }

    pub fn record(&mut self, op: NsOp) {
        self.pending.push(op);
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// An fsync or fdatasync of a file (or a write to a file opened `O_SYNC`/`O_DSYNC`).
    pub fn on_file_sync(&mut self) {
        if self.mode == DirDurability::Journal {
            self.commit(|_| true);
        }
    }

    /// An fsync of the directory `dir`.
    pub fn on_dir_sync(&mut self, dir: &Path) {
        match self.mode {
            DirDurability::Journal => self.commit(|_| true),
            DirDurability::Strict => self.commit(|op| op.touches(dir)),
        }
    }

    /// Every pending change becomes durable (a clean unmount).
    pub fn commit_all(&mut self) {
        self.commit(|_| true);
    }

    fn commit(&mut self, durable: impl Fn(&NsOp) -> bool) {
        let (done, rest): (Vec<NsOp>, Vec<NsOp>) = self.pending.drain(..).partition(durable);
        self.pending = rest;
        for op in done {
            if let Some(trash) = op.trash() {
                let _ = remove_any(trash);
            }
        }
    }

    /// Undoes every change not durable, newest first.
    pub fn cut(&mut self) -> NsCutCount {
        let mut count = NsCutCount::default();
        while let Some(op) = self.pending.pop() {
            match op.undo() {
                Ok(()) => count.undone += 1,
                Err(_) => count.failed += 1,
            }
        }
        count
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_mode_keeps_only_changes_in_synced_directories() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let mut ns = Namespace::new(DirDurability::Strict, root.path().join("trash"));
        std::fs::write(a.join("f"), b"1").unwrap();
        ns.record(NsOp::Created {
            path: a.join("f"),
            dir: false,
        });
        std::fs::write(b.join("g"), b"2").unwrap();
        ns.record(NsOp::Created {
            path: b.join("g"),
            dir: false,
        });
        ns.on_file_sync();
        ns.on_dir_sync(&a);
        assert_eq!(ns.pending(), 1);
        assert_eq!(
            ns.cut(),
            NsCutCount {
                undone: 1,
                failed: 0
            }
        );
        assert!(a.join("f").exists());
        assert!(!b.join("g").exists());
    }

    #[test]
    fn journal_mode_commits_everything_on_any_fsync_and_cut_undoes_a_rename() {
        let root = tempfile::tempdir().unwrap();
        let trash_root = root.path().join("trash");
        std::fs::create_dir_all(&trash_root).unwrap();
        let (old, new) = (root.path().join("old"), root.path().join("new"));
        std::fs::write(&old, b"old").unwrap();
        std::fs::write(&new, b"replaced").unwrap();
        let mut ns = Namespace::new(DirDurability::Journal, trash_root);
        let trash = ns.trash_path();
        std::fs::rename(&new, &trash).unwrap();
        std::fs::rename(&old, &new).unwrap();
        ns.record(NsOp::Renamed {
            from: old.clone(),
            to: new.clone(),
            replaced: Some(trash),
        });
        assert_eq!(ns.cut().undone, 1);
        assert_eq!(std::fs::read(&old).unwrap(), b"old");
        assert_eq!(std::fs::read(&new).unwrap(), b"replaced");

        let trash = ns.trash_path();
        std::fs::rename(&new, &trash).unwrap();
        ns.record(NsOp::Removed {
            path: new.clone(),
            trash: trash.clone(),
        });
        ns.on_file_sync();
        assert_eq!(ns.pending(), 0);
        assert!(!trash.exists(), "a durable removal empties its trash");
        assert_eq!(ns.cut().undone, 0);
        assert!(!new.exists());
    }
}
