//! Starts `esdb serve` on a free loopback port with a fresh data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long the server may take to announce its address.
const START_TIMEOUT_MS: u64 = 20_000;
/// How long a stopped server may take to exit before it is killed.
const STOP_TIMEOUT_MS: u64 = 15_000;

/// A running server, stopped (SIGTERM, then SIGKILL) when dropped, with its data removed.
pub struct EsdbServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl EsdbServer {
    /// Starts `esdb serve` with `extra` arguments besides the data dir and listen address (a
    /// cluster node's, or the master key of `--encrypt-streams`).
    pub fn start_with(
        bin: &Path,
        data_root: &Path,
        extra: &[String],
    ) -> anyhow::Result<EsdbServer> {
        let data = tempfile::Builder::new()
            .prefix("esdb-bench-")
            .tempdir_in(data_root)
            .context("creating the esdb data dir")?;
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(if extra.iter().any(|a| a == "--log-level") {
                &[][..]
            } else {
                &["--log-level", "warn"][..]
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_millis(START_TIMEOUT_MS)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("esdb did not announce its address in {START_TIMEOUT_MS} ms");
            }
        };
        let addr = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("unexpected first line from esdb: {line}"))?;
        Ok(EsdbServer {
            child: Some(child),
            addr,
            _data: data,
        })
    }
}

impl Drop for EsdbServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

/// SIGTERM, wait a bounded time, then SIGKILL.
pub fn stop_child(mut child: Child) {
    // SAFETY: signalling a child this process spawned and has not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(STOP_TIMEOUT_MS) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The esdb binary: the given path, else `esdb` next to this executable (cargo puts both in
/// `target/<profile>/`).
pub fn locate_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let me = std::env::current_exe().context("locating esdb-bench")?;
    let sibling = me.with_file_name("esdb");
    if sibling.exists() {
        return Ok(sibling);
    }
    bail!(
        "no esdb binary at {}: build it (`cargo build --release`) or pass --esdb-bin",
        sibling.display()
    )
}

/// A random master key for `--encrypt-streams`, in a file of its own directory (removed when
/// dropped). A benchmark's key protects nothing, so fastrand's bytes are enough.
pub struct MasterKeyFile {
    dir: tempfile::TempDir,
}

impl MasterKeyFile {
    const NAME: &'static str = "master.key";

    pub fn create(data_root: &Path) -> anyhow::Result<MasterKeyFile> {
        let dir = tempfile::Builder::new()
            .prefix("esdb-bench-key-")
            .tempdir_in(data_root)
            .context("creating the master key's directory")?;
        let hex: String = (0..32)
            .map(|_| format!("{:02x}", fastrand::u8(..)))
            .collect();
        std::fs::write(dir.path().join(Self::NAME), hex).context("writing the master key")?;
        Ok(MasterKeyFile { dir })
    }

    /// The arguments that give `esdb serve` this key.
    pub fn server_args(&self) -> Vec<String> {
        let path = self.dir.path().join(Self::NAME);
        vec![
            "--encryption-key-file".to_string(),
            path.display().to_string(),
        ]
    }
}
