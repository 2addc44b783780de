//! `esdb-bench cluster`: durable appends to a three-node esdb cluster on loopback, side by side
//! in the same run with a three-node JetStream cluster holding the stream at R3, once with
//! JetStream's default sync and once fsyncing before each ack. Each workload gets fresh
//! clusters; the backends run interleaved so drift in the machine's load hits all alike.
//!
//! An esdb append is acknowledged once a majority of nodes fsynced it to their Raft log; the
//! clients connect to the leader (a write sent to a follower is forwarded, one hop more). The
//! JetStream clients connect to the first server, which routes each publish to the stream's
//! leader as JetStream does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use esdb_protocol::{Reply, Request};
use serde::Serialize;

use crate::esdb::client::Conn;
use crate::esdb::server::EsdbServer;
use crate::measure::Figures;
use crate::report::Machine;
use crate::workloads::{self, Spec};
use crate::CommonArgs;

/// Nodes in each cluster.
const CLUSTER_NODES: usize = 3;
/// How long a new esdb cluster may take to elect a leader that hears from every member.
const LEADER_TIMEOUT_MS: u64 = 30_000;
const CLUSTER_SECRET: &str = "esdb-bench cluster secret, 32 bytes";

#[derive(Args)]
pub(crate) struct ClusterArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// The nats-server binary (default: on PATH).
    #[arg(long)]
    pub(crate) nats_bin: Option<PathBuf>,
    /// Run esdb only, without JetStream.
    #[arg(long)]
    pub(crate) esdb_only: bool,
    /// Where to write cluster.json (default: bench/results/<date>-cluster of this tree).
    #[arg(long)]
    pub(crate) out_dir: Option<PathBuf>,
    /// Only workloads whose id contains this text.
    #[arg(long)]
    pub(crate) only: Option<String>,
}

/// The workloads: one connection waiting for each reply, 64 connections, and batches.
fn suite() -> Vec<Spec> {
    vec![
        workloads::append(1, 1, 1, 100),
        workloads::append(64, 1, 1, 100),
        workloads::append(16, 1, 100, 100),
    ]
}

#[derive(Serialize)]
struct ClusterRun {
    workload: String,
    title: String,
    backend: &'static str,
    figures: Figures,
}

#[derive(Serialize)]
struct ClusterResults {
    machine: Machine,
    nodes: usize,
    fdatasync_per_s: f64,
    nats_version: Option<String>,
    runs: Vec<ClusterRun>,
}

/// Three esdb nodes with static peers, stopped (and their data removed) when dropped.
struct EsdbCluster {
    nodes: Vec<EsdbServer>,
}

impl EsdbCluster {
    fn start(bin: &Path, data_root: &Path, size: usize) -> anyhow::Result<EsdbCluster> {
        let mut raft = Vec::with_capacity(size);
        for _ in 0..size {
            raft.push(
                std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port(),
            );
        }
        let peers: Vec<String> = raft
            .iter()
            .enumerate()
            .map(|(n, port)| format!("{}=127.0.0.1:{port}", n + 1))
            .collect();
        let mut nodes = Vec::with_capacity(size);
        for (n, port) in raft.iter().enumerate() {
            let args: Vec<String> = [
                "--node-id",
                &(n + 1).to_string(),
                "--raft",
                &format!("127.0.0.1:{port}"),
                "--peers",
                &peers.join(","),
                "--cluster-secret",
                CLUSTER_SECRET,
                "--http",
                "127.0.0.1:0",
                // Peers stopping at the end of a run are reported at warn: not news here.
                "--log-level",
                "error",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            nodes.push(EsdbServer::start_with(bin, data_root, &args)?);
        }
        Ok(EsdbCluster { nodes })
    }

    /// The leader's client address, once it leads and hears from every member.
    async fn leader(&self) -> anyhow::Result<SocketAddr> {
        let started = Instant::now();
        loop {
            for node in &self.nodes {
                if let Ok(true) = leads_everyone(node.addr, self.nodes.len()).await {
                    return Ok(node.addr);
                }
            }
            if started.elapsed() > Duration::from_millis(LEADER_TIMEOUT_MS) {
                bail!(
                    "no esdb leader reaching all {} nodes in {LEADER_TIMEOUT_MS} ms",
                    self.nodes.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether the node at `addr` leads the default store's group with every member reachable.
async fn leads_everyone(addr: SocketAddr, size: usize) -> anyhow::Result<bool> {
    let mut conn = Conn::connect(addr).await?;
    let body = match conn.call(&Request::Cluster).await? {
        Reply::Cluster { body } => body,
        other => bail!("CLUSTER answered {other:?}"),
    };
    let view: serde_json::Value = serde_json::from_slice(&body).context("CLUSTER JSON")?;
    let store = &view["stores"]["default"];
    let members = store["members"].as_array().map_or(0, |members| {
        members
            .iter()
            .filter(|m| m["reachable"] == serde_json::Value::Bool(true))
            .count()
    });
    Ok(store["state"] == "leader" && members == size)
}

pub(crate) async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let params = crate::params(&args.common, 5.0, 0, 0);
    let bin = crate::esdb::server::locate_binary(args.common.esdb_bin.clone())?;
    let data_root = args.common.data_root.clone();
    #[cfg(feature = "nats")]
    let nats = if args.esdb_only {
        None
    } else {
        let scratch = tempfile::tempdir_in(&data_root)?;
        Some(crate::jetstream::server::locate(
            args.nats_bin.clone(),
            scratch.path(),
        )?)
    };
    #[cfg(not(feature = "nats"))]
    {
        let _ = &args.nats_bin;
        if !args.esdb_only {
            bail!("built without JetStream support: build with `--features nats`, or pass --esdb-only");
        }
    }
    let disk = crate::disk::measure(&data_root, Duration::from_secs(3))?;
    eprintln!(
        "  {:.0} fdatasync/s under {}",
        disk.fdatasync_per_s,
        data_root.display()
    );

    let mut runs = Vec::new();
    let specs = suite()
        .into_iter()
        .filter(|s| args.only.as_deref().is_none_or(|o| s.id.contains(o)));
    for spec in specs {
        eprint!("{:<45} {:<32} ", spec.id, "esdb, 3 nodes");
        let esdb = EsdbCluster::start(&bin, &data_root, CLUSTER_NODES)?;
        let leader = esdb.leader().await?;
        let tally = crate::run::run_esdb(leader, &spec, &params).await?;
        drop(esdb);
        let figures = Figures::from_tally(&tally, params.measure);
        eprintln!("{}", summary(&figures));
        runs.push(ClusterRun {
            workload: spec.id.clone(),
            title: spec.title.clone(),
            backend: "esdb, 3 nodes",
            figures,
        });
        #[cfg(feature = "nats")]
        if let Some(info) = &nats {
            for (sync_always, label) in [
                (false, "JetStream R3 (default sync)"),
                (true, "JetStream R3 (sync always)"),
            ] {
                if sync_always && !info.supports_sync_always {
                    continue;
                }
                eprint!("{:<45} {:<32} ", spec.id, label);
                let cluster = crate::jetstream::server::NatsCluster::start(
                    info,
                    &data_root,
                    sync_always,
                    CLUSTER_NODES,
                )
                .await?;
                let tally = crate::run::run_jetstream(&cluster.servers[0], &spec, &params).await?;
                drop(cluster);
                let figures = Figures::from_tally(&tally, params.measure);
                eprintln!("{}", summary(&figures));
                runs.push(ClusterRun {
                    workload: spec.id.clone(),
                    title: spec.title.clone(),
                    backend: label,
                    figures,
                });
            }
        }
    }
    #[cfg(feature = "nats")]
    let nats_version = nats.map(|info| info.version);
    #[cfg(not(feature = "nats"))]
    let nats_version = None;
    let results = ClusterResults {
        machine: Machine::describe(&data_root),
        nodes: CLUSTER_NODES,
        fdatasync_per_s: disk.fdatasync_per_s,
        nats_version,
        runs,
    };
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(format!("{}-cluster", crate::report::today()))
    });
    std::fs::create_dir_all(&out_dir)?;
    let path = out_dir.join("cluster.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn summary(figures: &Figures) -> String {
    format!(
        "{:>9.0} events/s  p50 {:>6} µs  p99 {:>7} µs  errors {}",
        figures.events_per_s, figures.p50_us, figures.p99_us, figures.errors
    )
}
