//! `nats-server -js` on 127.0.0.1, a free port and a temporary store directory.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, stream};

use crate::esdb::server::stop_child;
use crate::jetstream::{STREAM_NAME, SUBJECTS};

/// How long nats-server may take to accept connections.
const START_TIMEOUT_MS: u64 = 20_000;
/// How long a JetStream request (ack, stream create) may take.
const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// What this machine's nats-server is and can do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NatsInfo {
    pub binary: PathBuf,
    pub version: String,
    /// Whether the `jetstream { sync_interval: always }` setting (fsync before every ack,
    /// nats-server 2.10+) is accepted.
    pub supports_sync_always: bool,
}

/// Finds `nats-server` (the given path, else on PATH); when it is missing and we are root
/// with apt, installs Debian's package.
pub fn locate(given: Option<PathBuf>, scratch: &Path) -> anyhow::Result<NatsInfo> {
    let binary = match given {
        Some(path) => path,
        None => match which("nats-server") {
            Some(path) => path,
            None => {
                eprintln!("nats-server not found; installing Debian's package (apt-get install -y nats-server)");
                let status = Command::new("apt-get")
                    .args(["install", "-y", "-q", "nats-server"])
                    .status()
                    .context("running apt-get")?;
                if !status.success() {
                    bail!("could not install nats-server; install it or pass --nats-bin");
                }
                which("nats-server").context("nats-server still not on PATH")?
            }
        },
    };
    let output = Command::new(&binary).arg("--version").output()?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let conf = scratch.join("probe.conf");
    std::fs::write(
        &conf,
        format!(
            "jetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
            scratch.join("probe-store")
        ),
    )?;
    let probe = Command::new(&binary)
        .arg("-c")
        .arg(&conf)
        .arg("-t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    Ok(NatsInfo {
        binary,
        version,
        supports_sync_always: probe.success(),
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// A running nats-server, stopped when dropped, its store removed.
pub struct NatsServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a fresh server and creates the benchmark stream (file storage).
    pub async fn start(
        info: &NatsInfo,
        data_root: &Path,
        sync_always: bool,
    ) -> anyhow::Result<NatsServer> {
        let dir = tempfile::Builder::new()
            .prefix("nats-bench-")
            .tempdir_in(data_root)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let conf = dir.path().join("nats.conf");
        let sync = if sync_always {
            "  sync_interval: always\n"
        } else {
            ""
        };
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{port}\"\nmax_payload: 8MB\njetstream {{\n  store_dir: {:?}\n{sync}}}\n",
                dir.path().join("store")
            ),
        )?;
        let child = Command::new(&info.binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server")?;
        let server = NatsServer {
            child: Some(child),
            addr,
            _dir: dir,
        };
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if started.elapsed() > Duration::from_millis(START_TIMEOUT_MS) {
                bail!("nats-server did not listen on {addr} in {START_TIMEOUT_MS} ms");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let js = server.connect().await?;
        js.create_stream(stream::Config {
            name: STREAM_NAME.into(),
            subjects: vec![SUBJECTS.into()],
            storage: stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the JetStream stream: {e}"))?;
        Ok(server)
    }

    /// A new client connection (one TCP connection) and its JetStream context.
    pub async fn connect(&self) -> anyhow::Result<jetstream::Context> {
        Ok(self.connect_with_client().await?.1)
    }

    /// As [`NatsServer::connect`], also returning the client (for inboxes).
    pub async fn connect_with_client(
        &self,
    ) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_millis(REQUEST_TIMEOUT_MS)))
            .connect(format!("nats://{}", self.addr))
            .await
            .map_err(|e| anyhow::anyhow!("connecting to nats-server: {e}"))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
        Ok((client, js))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}
