//! `esdb-lazyfs`: a FUSE pass-through filesystem that holds written-but-unsynced data in
//! memory and can lose power (the idea of LazyFS, which Jepsen uses). A `kill -9` keeps the
//! page cache, so it cannot catch a missing fsync; this can.
//!
//! ```text
//! esdb-lazyfs --backing DIR --mount DIR --control SOCKET [--dir-durability journal|strict]
//! ```
//! It prints `esdb-lazyfs mounted <mount> over <backing>` once mounted, then takes commands on
//! the control socket (see `control.rs`): `cut [seed [torn]]` loses power, `unmount` ends it.
//!
//! - `cache.rs`: one file's pending writes; `namespace.rs`: pending directory changes;
//!   `state.rs`: everything behind one lock; `fs.rs`: the FUSE requests; `control.rs`: the
//!   socket.

mod cache;
mod control;
mod fs;
mod namespace;
mod state;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use fuser::{Config, MountOption};

use crate::namespace::DirDurability;
use crate::state::{State, DEFAULT_MAX_PENDING_BYTES_PER_FILE};

#[derive(Parser)]
#[command(
    name = "esdb-lazyfs",
    about = "A FUSE filesystem that keeps unsynced writes in memory and can lose power"
)]
struct Args {
    /// The directory holding what is durable ("the disk").
    #[arg(long)]
    backing: PathBuf,
    /// Where to mount.
    #[arg(long)]
    mount: PathBuf,
    /// The control socket to create (`cut [seed [torn]]`, `stats`, `unmount`).
    #[arg(long)]
    control: PathBuf,
    /// When directory changes (create, rename, unlink) become durable.
    #[arg(long, value_enum, default_value_t = DirDurability::Journal)]
    dir_durability: DirDurability,
    /// Unmount and exit when standard input closes: a parent holding the other end of a pipe
    /// does not leave the filesystem running if it dies.
    #[arg(long)]
    exit_with_stdin: bool,
    /// Pending bytes per file before the oldest half is written back unasked.
    #[arg(long, default_value_t = DEFAULT_MAX_PENDING_BYTES_PER_FILE)]
    max_pending_bytes: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esdb-lazyfs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Beside the backing dir, so that moving a file there is a rename on the same filesystem.
fn trash_dir(backing: &Path) -> PathBuf {
    let name = backing
        .file_name()
        .map_or("backing".into(), |n| n.to_string_lossy().into_owned());
    backing.with_file_name(format!(".{name}.lazyfs-trash"))
}

fn run(args: Args) -> Result<(), String> {
    let backing = args
        .backing
        .canonicalize()
        .map_err(|e| format!("backing dir {}: {e}", args.backing.display()))?;
    let trash = trash_dir(&backing);
    std::fs::create_dir_all(&trash).map_err(|e| format!("trash dir {}: {e}", trash.display()))?;
    let _ = std::fs::remove_file(&args.control);
    let listener = UnixListener::bind(&args.control)
        .map_err(|e| format!("control socket {}: {e}", args.control.display()))?;

    let state = Arc::new(Mutex::new(State::new(
        backing.clone(),
        trash.clone(),
        args.dir_durability,
        args.max_pending_bytes,
    )));
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("esdb-lazyfs".into()),
        MountOption::Subtype("esdb-lazyfs".into()),
    ];
    let session = fuser::spawn_mount(
        fs::LazyFs {
            state: state.clone(),
        },
        &args.mount,
        &config,
    )
    .map_err(|e| {
        format!(
            "mounting on {} (needs /dev/fuse and root, or fusermount3): {e}",
            args.mount.display()
        )
    })?;
    println!(
        "esdb-lazyfs mounted {} over {}",
        args.mount.display(),
        backing.display()
    );
    let _ = std::io::stdout().flush();

    let (tx, rx) = std::sync::mpsc::channel();
    let state_for_exit = state.clone();
    if args.exit_with_stdin {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // Reads until EOF (or an error): nothing is expected on stdin.
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = tx.send(control::Control::Unmount);
        });
    }
    std::thread::spawn(move || control::serve(listener, state, tx));
    // Ends on `unmount`, or when the control thread is gone.
    let _ = rx.recv();
    let unmounted = session.umount_and_join();
    // After the kernel has written back its dirty mmap pages during the unmount.
    let synced = state_for_exit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sync_all();
    if unmounted.is_err() {
        // Still busy (a process holds a file open): detach, so the mount point is free.
        let path = std::ffi::CString::new(args.mount.as_os_str().as_encoded_bytes())
            .map_err(|e| e.to_string())?;
        // SAFETY: a valid C string.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_file(&args.control);
    let _ = std::fs::remove_dir_all(&trash);
    synced.map_err(|e| format!("syncing at unmount: {e}"))?;
    unmounted.map_err(|e| format!("unmounting {}: {e}", args.mount.display()))
}
