//! One data directory, one process: an exclusive `flock` on `<data-dir>/LOCK`, held for the
//! process's life. A second server on the same directory refuses to start, naming the holder,
//! before it opens or creates anything in it (two writers would each miss the other's events).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Held while the server runs; the lock is released when the file closes (also on kill -9).
pub struct DataLock {
    _file: File,
}

pub fn acquire(data_dir: &Path) -> Result<DataLock, String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating data directory {}: {e}", data_dir.display()))?;
    // Make a new data directory's entry durable (POSIX: only an fsync of its parent does).
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| format!("syncing {}: {e}", parent.display()))?;
    let path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    // SAFETY: a plain syscall on a descriptor we own.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let holder = if holder.is_empty() { "unknown" } else { holder };
        return Err(format!(
            "data directory {} is in use by another esdb server (pid {holder}); stop it or use \
             another --data-dir",
            data_dir.display()
        ));
    }
    let pid = std::process::id().to_string();
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()));
    written.map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(DataLock { _file: file })
}
