//! Test harness: a real `esdb serve` process on a port chosen at run time, with its data in a
//! temporary directory. The binary is `$ESDB_BIN`, else `target/debug/esdb` of the workspace
//! (built with `cargo build --bin esdb` when missing).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use esdb_client::{Backoff, Client, ClientOptions};

/// How long any test may run before it fails (a hang fails, it does not block CI).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts to start a server on a port just released by a killed one.
const RESTART_ATTEMPTS: u32 = 50;

pub fn esdb_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("ESDB_BIN") {
            return PathBuf::from(bin);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin = root.join("target/debug/esdb");
        if !bin.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--bin", "esdb"])
                .current_dir(&root)
                .status()
                .expect("run cargo build --bin esdb");
            assert!(status.success(), "cargo build --bin esdb failed");
        }
        bin
    })
    .clone()
}

/// The server crate's test tool `examples/seed_unreadable`, built with `cargo build
/// --example seed_unreadable` when missing.
pub fn seed_unreadable_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(|dir| root.join(dir))
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug/examples/seed_unreadable");
        if !bin.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--example", "seed_unreadable"])
                .current_dir(&root)
                .status()
                .expect("run cargo build --example seed_unreadable");
            assert!(
                status.success(),
                "cargo build --example seed_unreadable failed"
            );
        }
        bin
    })
    .clone()
}

/// A running server. Killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("tempdir");
        let data_dir = temp.path().join("data");
        let (child, addr) = spawn(&data_dir, "127.0.0.1:0", extra_args).expect("server starts");
        Server {
            child: Some(child),
            addr,
            data_dir,
            _temp: temp,
        }
    }

    /// A server over a data dir seeded, before it starts, with events of type `Seeded` in
    /// `stream` whose data are `datas`: JSON text the protocol would refuse, as an older server
    /// might have stored it.
    pub fn start_seeded(stream: &str, datas: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("tempdir");
        let data_dir = temp.path().join("data");
        let status = Command::new(seed_unreadable_bin())
            .arg(&data_dir)
            .args(["default", stream])
            .args(datas)
            .status()
            .expect("run seed_unreadable");
        assert!(status.success(), "seed_unreadable failed: {status}");
        let (child, addr) = spawn(&data_dir, "127.0.0.1:0", &[]).expect("server starts");
        Server {
            child: Some(child),
            addr,
            data_dir,
            _temp: temp,
        }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// `kill -9`: no chance to flush or close anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// Starts the server again on the same data directory and the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        let listen = self.addr.to_string();
        for _ in 0..RESTART_ATTEMPTS {
            if let Some((child, addr)) = spawn(&self.data_dir, &listen, &[]) {
                self.child = Some(child);
                self.addr = addr;
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not restart on {listen}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Spawns `esdb serve`; `None` if it exits before announcing its address (port still taken).
fn spawn(data_dir: &Path, listen: &str, extra_args: &[&str]) -> Option<(Child, SocketAddr)> {
    let mut child = Command::new(esdb_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", listen, "--http", "127.0.0.1:0"])
        .args(extra_args)
        .env("ESDB_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn esdb");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read announce line");
    let Some(addr) = line
        .strip_prefix("esdb listening on ")
        .and_then(|rest| rest.split_whitespace().next())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    let addr = addr.parse().expect("socket address");
    // Keep reading stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stdout.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    Some((child, addr))
}

/// Fast retries, so tests that stop servers do not wait long.
pub fn fast_backoff() -> Backoff {
    Backoff {
        base_ms: 20,
        max_ms: 500,
        max_retries: 10,
    }
}

pub fn options(servers: &[&Server]) -> ClientOptions {
    ClientOptions::new(servers.iter().map(|s| s.address())).with_backoff(fast_backoff())
}

pub async fn client(server: &Server) -> Client {
    Client::connect(options(&[server])).await.expect("connect")
}

/// Runs a test body with the suite's timeout.
pub async fn within_timeout<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test timed out");
}
