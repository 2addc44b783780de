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
        let child = spawn(info, &conf)?;
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

/// Starts nats-server on a config file, its output discarded.
fn spawn(info: &NatsInfo, conf: &Path) -> anyhow::Result<Child> {
    Command::new(&info.binary)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nats-server")
}

/// How long a new JetStream cluster may take to elect its meta leader and accept a stream.
const CLUSTER_FORM_TIMEOUT_MS: u64 = 30_000;
/// How long one attempt to create the stream on a forming cluster waits.
const STREAM_CREATE_ATTEMPT_MS: u64 = 2_000;

/// `size` nats-servers routed into one cluster on loopback, with the bench stream replicated
/// on all of them (R`size`): a publish is acknowledged once a majority stored it (and, with
/// `sync_always`, fsynced it). Stopped when dropped.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    pub async fn start(
        info: &NatsInfo,
        data_root: &Path,
        sync_always: bool,
        size: usize,
    ) -> anyhow::Result<NatsCluster> {
        let free_port = || -> anyhow::Result<u16> {
            Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
        };
        let mut ports = Vec::with_capacity(size);
        for _ in 0..size {
            ports.push((free_port()?, free_port()?));
        }
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("\"nats-route://127.0.0.1:{route}\""))
            .collect();
        let sync = if sync_always {
            "  sync_interval: always\n"
        } else {
            ""
        };
        let mut servers = Vec::with_capacity(size);
        for (n, (port, route)) in ports.iter().enumerate() {
            let dir = tempfile::Builder::new()
                .prefix("nats-bench-")
                .tempdir_in(data_root)?;
            let conf = dir.path().join("nats.conf");
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{n}\nlisten: \"127.0.0.1:{port}\"\nmax_payload: 8MB\n\
                     jetstream {{\n  store_dir: {:?}\n{sync}}}\n\
                     cluster {{\n  name: bench\n  listen: \"127.0.0.1:{route}\"\n  routes: [{}]\n}}\n",
                    dir.path().join("store"),
                    routes.join(", ")
                ),
            )?;
            let child = spawn(info, &conf)?;
            servers.push(NatsServer {
                child: Some(child),
                addr: format!("127.0.0.1:{port}").parse()?,
                _dir: dir,
            });
        }
        let started = Instant::now();
        for server in &servers {
            while TcpStream::connect(server.addr).is_err() {
                if started.elapsed() > Duration::from_millis(START_TIMEOUT_MS) {
                    bail!(
                        "nats-server did not listen on {} in {START_TIMEOUT_MS} ms",
                        server.addr
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The stream can be created once the cluster has a JetStream meta leader (seconds
        // after start); until then a request waits for its whole timeout, so ask briefly.
        // (The client's request timeout bounds JetStream API requests, not the context's.)
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_millis(STREAM_CREATE_ATTEMPT_MS)))
            .connect(format!("nats://{}", servers[0].addr))
            .await
            .map_err(|e| anyhow::anyhow!("connecting to nats-server: {e}"))?;
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_millis(STREAM_CREATE_ATTEMPT_MS));
        loop {
            let created = js
                .create_stream(stream::Config {
                    name: STREAM_NAME.into(),
                    subjects: vec![SUBJECTS.into()],
                    storage: stream::StorageType::File,
                    num_replicas: size,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(_) => break,
                Err(_) if started.elapsed() < Duration::from_millis(CLUSTER_FORM_TIMEOUT_MS) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => bail!("creating the R{size} JetStream stream: {error}"),
            }
        }
        Ok(NatsCluster { servers })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}
