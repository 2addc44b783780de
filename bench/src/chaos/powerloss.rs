//! The power-loss variant of a crash: the server's data dir is on `esdb-lazyfs` (see
//! tools/lazyfs), which keeps unsynced writes in memory; a crash cuts its power (unsynced
//! writes dropped, or a random subset kept) and kills the server in the same moment, and the
//! next round mounts a fresh one over the same backing dir.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long mounting may take.
const MOUNT_TIMEOUT_MS: u64 = 20_000;
/// How long a control command may take (a cut applies the kept writes).
const CONTROL_TIMEOUT_MS: u64 = 60_000;
/// How long the filesystem may take to unmount and exit.
const EXIT_TIMEOUT_MS: u64 = 20_000;

/// How a mount is made.
#[derive(Debug, Clone)]
pub struct LazyFsSetup {
    pub bin: PathBuf,
    pub backing: PathBuf,
    pub mount: PathBuf,
    pub control: PathBuf,
    /// `journal` or `strict` (see `esdb-lazyfs --help`).
    pub dir_durability: String,
}

/// A mounted `esdb-lazyfs`.
pub struct LazyFs {
    child: Option<Child>,
    setup: LazyFsSetup,
}

fn detach(mount: &Path) {
    if let Ok(path) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) {
        // SAFETY: a valid C string; failing (nothing mounted) is fine.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
}

impl LazyFs {
    pub fn mount(setup: &LazyFsSetup) -> anyhow::Result<LazyFs> {
        std::fs::create_dir_all(&setup.backing)?;
        std::fs::create_dir_all(&setup.mount)?;
        let mut child = Command::new(&setup.bin)
            .arg("--backing")
            .arg(&setup.backing)
            .arg("--mount")
            .arg(&setup.mount)
            .arg("--control")
            .arg(&setup.control)
            .args([
                "--dir-durability",
                &setup.dir_durability,
                "--exit-with-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", setup.bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(|l| l.ok()));
            for _ in lines {}
        });
        let fs = LazyFs {
            child: Some(child),
            setup: setup.clone(),
        };
        match rx.recv_timeout(Duration::from_millis(MOUNT_TIMEOUT_MS)) {
            Ok(Some(line)) if line.starts_with("esdb-lazyfs mounted") => Ok(fs),
            Ok(other) => bail!("esdb-lazyfs did not mount (said {other:?})"),
            Err(_) => bail!("esdb-lazyfs did not mount in {MOUNT_TIMEOUT_MS} ms"),
        }
    }

    fn command(&self, line: &str) -> anyhow::Result<String> {
        let mut stream = UnixStream::connect(&self.setup.control)
            .with_context(|| format!("connecting to {}", self.setup.control.display()))?;
        stream.set_read_timeout(Some(Duration::from_millis(CONTROL_TIMEOUT_MS)))?;
        writeln!(stream, "{line}")?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply)?;
        let reply = reply.trim().to_owned();
        if !reply.starts_with("ok") {
            bail!("esdb-lazyfs `{line}`: {reply}");
        }
        Ok(reply)
    }

    /// Cuts the power: no unsynced write survives (`None`), or a random subset (`Some(seed)`;
    /// `torn`: a random subset of their 4 KiB pages). From the reply on, every operation on
    /// the mount fails.
    pub fn cut(&self, seed: Option<u64>, torn: bool) -> anyhow::Result<String> {
        match (seed, torn) {
            (Some(seed), true) => self.command(&format!("cut {seed} torn")),
            (Some(seed), false) => self.command(&format!("cut {seed}")),
            (None, _) => self.command("cut"),
        }
    }

    /// Unmounts and waits for the process to exit (killing it, and detaching the mount, if it
    /// does not).
    pub fn unmount(mut self) -> anyhow::Result<()> {
        let asked = self.command("unmount");
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(EXIT_TIMEOUT_MS) {
            if let Some(status) = child.try_wait()? {
                asked?;
                anyhow::ensure!(status.success(), "esdb-lazyfs exited with {status}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        detach(&self.setup.mount);
        bail!("esdb-lazyfs did not exit in {EXIT_TIMEOUT_MS} ms after `unmount`")
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            detach(&self.setup.mount);
        }
    }
}
