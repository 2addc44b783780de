//! The server process of a crash soak: started on the same data dir each round, killed with
//! SIGKILL, its stderr kept in a log file so that a refusal to start can be shown.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// How long the server may take to open its stores and announce its address.
const START_TIMEOUT_MS: u64 = 60_000;
/// Last bytes of the server's log shown when it refuses to start.
const LOG_TAIL_BYTES: usize = 2_000;

pub struct ServerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
}

/// Why the server is not serving.
pub enum StartFailure {
    /// It exited before announcing its address: it refused the data dir (or could not run).
    Refused {
        status: String,
        log_tail: String,
    },
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartFailure {
    fn from(e: anyhow::Error) -> StartFailure {
        StartFailure::Other(e)
    }
}

/// How to run the server: the binary, and a wrapper command before it (e.g. `eatmydata`).
#[derive(Debug, Clone)]
pub struct Launch {
    pub bin: PathBuf,
    pub wrapper: Vec<String>,
    pub log: PathBuf,
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = text.len().saturating_sub(LOG_TAIL_BYTES);
    String::from_utf8_lossy(&text[from..]).trim().to_owned()
}

impl ServerProcess {
    pub fn start(launch: &Launch, data_dir: &Path) -> Result<ServerProcess, StartFailure> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .with_context(|| format!("opening {}", launch.log.display()))?;
        let mut command = match launch.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&launch.bin);
                c
            }
            None => Command::new(&launch.bin),
        };
        let mut child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", launch.bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(|l| l.ok()));
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_millis(START_TIMEOUT_MS)) {
            Ok(Some(line)) => line,
            Ok(None) => {
                // stdout closed without an announcement: the server exited.
                let status = child
                    .wait()
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                return Err(StartFailure::Refused {
                    status,
                    log_tail: log_tail(&launch.log),
                });
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure::Other(anyhow::anyhow!(
                    "esdb did not announce its address in {START_TIMEOUT_MS} ms"
                )));
            }
        };
        let addr = line
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("unexpected first line from esdb: {line}"))?;
        Ok(ServerProcess {
            child: Some(child),
            addr,
        })
    }

    /// SIGKILL, and reaped: no request is answered after this returns.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A clean stop (SIGTERM, bounded wait, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::esdb::server::stop_child(child);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
