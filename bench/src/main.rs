//! `esdb-bench`: the esdb load generator, side by side with NATS JetStream and against the
//! disk's own limits. See bench/README.md.
//!
//! - `esdb-bench all`: every workload on esdb and JetStream, interleaved; writes
//!   `bench/results/<date>/` (results.json, results.md, PNG plots) and prints the table.
//! - `esdb-bench smoke`: a few seconds of small workloads on esdb only; fails on any error.
//!   CI runs it so the harness cannot rot. It measures nothing worth reading.
//! - `esdb-bench disk`: only the disk's fdatasync rate and sequential bandwidth.
//! - `esdb-bench chaos`: crash soak (kill -9 under load, every restart checked).
//! - `esdb-bench powerloss`: the same with the data dir on esdb-lazyfs, losing power.
//! - `esdb-bench nemesis`: a 3-node cluster in network namespaces under faults (kill -9,
//!   SIGSTOP, partitions, delays), checked after every round; failover time at p50/p99.

mod chaos;
mod cluster;
mod disk;
mod esdb;
#[cfg(feature = "nats")]
mod jetstream;
mod measure;
mod nemesis;
mod payload;
#[cfg(feature = "plots")]
mod plot;
mod report;
mod run;
mod workloads;
mod zipf;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::report::{Machine, Results, Row};
use crate::run::{Backend, Run, Setup};
use crate::workloads::{Params, Spec};

#[derive(Parser)]
#[command(
    name = "esdb-bench",
    about = "Load generator for esdb, side by side with NATS JetStream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every workload, esdb and JetStream interleaved; writes bench/results/<date>/.
    All(AllArgs),
    /// A few seconds of small workloads against esdb only; fails if any request errors.
    Smoke(CommonArgs),
    /// Only the disk's fdatasync rate and sequential write bandwidth.
    Disk(CommonArgs),
    /// Crash soak: rounds of kill -9 under pipelined load, each restart checked against
    /// every acknowledged append.
    Chaos(chaos::ChaosArgs),
    /// Power-loss soak: as `chaos`, with the data dir on esdb-lazyfs and its power cut at
    /// each crash (needs /dev/fuse and root).
    Powerloss(chaos::PowerlossArgs),
    /// Durable appends to a 3-node esdb cluster on loopback, side by side with a 3-node
    /// JetStream cluster (R3 stream, default sync and sync always); writes cluster.json.
    Cluster(cluster::ClusterArgs),
    /// Nemesis rounds on a 3-node cluster in network namespaces (needs root): faults under
    /// concurrent clients, every round checked; reports failover time at p50/p99.
    Nemesis(NemesisArgs),
}

#[derive(Args)]
struct NemesisArgs {
    /// The esdb binary (default: `esdb` next to this executable).
    #[arg(long)]
    esdb_bin: Option<PathBuf>,
    /// Rounds to run (one fault each).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// The fault(s), taken in turn: kill-leader, kill-follower, kill-two, stop-leader,
    /// partition-leader, bridge, delay (comma-separated), or all.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Concurrent writers (spread over the nodes).
    #[arg(long, default_value_t = 6)]
    writers: usize,
    /// Streams the writers share (fewer: more expected-version conflicts).
    #[arg(long, default_value_t = 3)]
    streams: usize,
    /// Where the nodes' data directories go.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_root: PathBuf,
    /// The JSON-lines history of every operation (invoke and completion, with times).
    #[arg(long)]
    history: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// The esdb binary (default: `esdb` next to this executable).
    #[arg(long)]
    esdb_bin: Option<PathBuf>,
    /// Use an esdb server already running here instead of starting one per workload (its
    /// data then accumulates across workloads).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Where data directories (and the disk probes) go; the filesystem being measured.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_root: PathBuf,
    /// Measured seconds per workload and backend.
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Unmeasured warm-up seconds before each measurement.
    #[arg(long)]
    warmup_secs: Option<f64>,
    /// Start esdb with a master key (`--encryption-key-file`) and `ENCRYPT` each append
    /// workload's streams before measuring, so every event's data is sealed (AES-256-GCM) on
    /// the write path and opened on reads. Only the append workloads encrypt their streams.
    #[arg(long)]
    encrypt_streams: bool,
}

#[derive(Args)]
struct AllArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The nats-server binary (default: on PATH; installed with apt when missing).
    #[arg(long)]
    nats_bin: Option<PathBuf>,
    /// Run esdb only, without JetStream.
    #[arg(long)]
    esdb_only: bool,
    /// Directory for results (default: bench/results/<date> of this source tree).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Only workloads whose id contains this text.
    #[arg(long)]
    only: Option<String>,
    /// Events written before each read workload.
    #[arg(long, default_value_t = 200_000)]
    read_prefill_events: usize,
    /// Events per read request.
    #[arg(long, default_value_t = 1000)]
    read_page: usize,
}

fn params(common: &CommonArgs, default_secs: f64, prefill: usize, page: usize) -> Params {
    let secs = |v: Option<f64>, d: f64| Duration::from_secs_f64(v.unwrap_or(d).clamp(0.0, 3600.0));
    Params {
        warmup: secs(common.warmup_secs, (default_secs / 5.0).min(1.0)),
        measure: secs(common.duration_secs, default_secs),
        read_prefill_events: prefill,
        read_page: page,
        encrypt_streams: common.encrypt_streams,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.command {
        Command::All(args) => runtime.block_on(all(args)),
        Command::Smoke(common) => runtime.block_on(smoke(common)),
        Command::Chaos(args) => runtime.block_on(chaos::chaos(args)),
        Command::Powerloss(args) => runtime.block_on(chaos::powerloss(args)),
        Command::Cluster(args) => runtime.block_on(cluster::cluster(args)),
        Command::Nemesis(args) => run_nemesis(args),
        Command::Disk(common) => {
            disk::measure(&common.data_root, Duration::from_secs(2)).map(|d| {
                println!("{}", serde_json::to_string_pretty(&d).expect("json"));
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esdb-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_nemesis(args: NemesisArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        nemesis::available(),
        "network namespaces unavailable (the nemesis needs root and `ip netns`)"
    );
    let config = nemesis::Config {
        esdb_bin: esdb::server::locate_binary(args.esdb_bin)?,
        rounds: args.rounds,
        kinds: nemesis::Kind::parse(&args.nemesis).map_err(anyhow::Error::msg)?,
        writers: args.writers.max(1),
        streams: args.streams.max(1),
        data_root: args.data_root,
        history: args.history,
    };
    let reports =
        nemesis::run(&config, &mut |report| println!("{report}")).map_err(anyhow::Error::msg)?;
    let failed = reports.iter().filter(|r| !r.violations.is_empty()).count();
    let mut by_kind: Vec<(nemesis::Kind, Vec<f64>)> = Vec::new();
    for report in &reports {
        if let Some(ms) = report.failover_ms {
            match by_kind.iter_mut().find(|(k, _)| *k == report.kind) {
                Some((_, values)) => values.push(ms),
                None => by_kind.push((report.kind, vec![ms])),
            }
        }
    }
    for (kind, values) in &by_kind {
        println!(
            "failover after {:<16} rounds {:>3}  p50 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms",
            kind.name(),
            values.len(),
            nemesis::percentile(values, 50.0).unwrap_or(0.0),
            nemesis::percentile(values, 99.0).unwrap_or(0.0),
            nemesis::percentile(values, 100.0).unwrap_or(0.0),
        );
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} rounds found violations",
        reports.len()
    );
    println!("nemesis: {} rounds, no violation", reports.len());
    Ok(())
}

fn setup(common: &CommonArgs, params: Params) -> anyhow::Result<Setup> {
    let esdb_bin = match common.addr {
        Some(_) => None,
        None => Some(esdb::server::locate_binary(common.esdb_bin.clone())?),
    };
    let master_key = match common.encrypt_streams {
        true => Some(esdb::server::MasterKeyFile::create(&common.data_root)?),
        false => None,
    };
    Ok(Setup {
        esdb_bin,
        esdb_addr: common.addr,
        data_root: common.data_root.clone(),
        master_key,
        #[cfg(feature = "nats")]
        nats: None,
        params,
    })
}

async fn smoke(common: CommonArgs) -> anyhow::Result<()> {
    let mut params = params(&common, 0.5, 5_000, 500);
    params.warmup = Duration::from_millis(common.warmup_secs.map_or(100, |s| (s * 1000.0) as u64));
    let setup = setup(&common, params)?;
    let mut failures = 0;
    for spec in workloads::smoke_suite() {
        let figures = run::run_one(&setup, &spec, Backend::Esdb).await?;
        let ok = figures.errors == 0 && figures.events_per_s > 0.0;
        println!(
            "{} {:<28} {:>9.0} events/s  p99 {:>7} µs  requests {:>6}  conflicts {:>5}  errors {}{}",
            if ok { "ok  " } else { "FAIL" },
            spec.id,
            figures.events_per_s,
            figures.p99_us,
            figures.requests,
            figures.conflicts,
            figures.errors,
            figures
                .first_error
                .as_deref()
                .map_or(String::new(), |e| format!(" ({e})"))
        );
        if !ok {
            failures += 1;
        }
    }
    anyhow::ensure!(failures == 0, "{failures} smoke workloads failed");
    println!("smoke: every workload ran without errors");
    Ok(())
}

async fn all(args: AllArgs) -> anyhow::Result<()> {
    let params = params(&args.common, 5.0, args.read_prefill_events, args.read_page);
    #[allow(unused_mut)]
    let mut setup = setup(&args.common, params)?;
    let machine = Machine::describe(&args.common.data_root);
    let date = report::today();
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join(&date)
    });
    std::fs::create_dir_all(&out_dir)?;

    #[allow(unused_mut)]
    let mut backends = vec![Backend::Esdb];
    #[allow(unused_mut)]
    let mut nats_version = None;
    #[allow(unused_mut)]
    let mut sync_always = None;
    if !args.esdb_only {
        #[cfg(feature = "nats")]
        {
            let scratch = tempfile::tempdir_in(&args.common.data_root)?;
            let info = jetstream::server::locate(args.nats_bin.clone(), scratch.path())?;
            eprintln!(
                "{}; sync_interval: always {}",
                info.version,
                if info.supports_sync_always {
                    "supported"
                } else {
                    "NOT supported (needs nats-server 2.10+)"
                }
            );
            backends.push(Backend::JetStream);
            if info.supports_sync_always {
                backends.push(Backend::JetStreamSyncAlways);
            }
            nats_version = Some(info.version.clone());
            sync_always = Some(info.supports_sync_always);
            setup.nats = Some(info);
        }
        #[cfg(not(feature = "nats"))]
        {
            let _ = &args.nats_bin;
            anyhow::bail!(
                "built without JetStream support: build with `--features full`, or pass --esdb-only"
            );
        }
    }

    eprintln!(
        "measuring the disk under {}",
        args.common.data_root.display()
    );
    let disk = disk::measure(&args.common.data_root, Duration::from_secs(3))?;
    eprintln!(
        "  {:.0} fdatasync/s, {:.0} MB/s sequential",
        disk.fdatasync_per_s, disk.seq_write_mb_per_s
    );

    let specs: Vec<Spec> = workloads::full_suite()
        .into_iter()
        .filter(|s| args.only.as_deref().is_none_or(|o| s.id.contains(o)))
        .collect();
    let mut rows = Vec::new();
    for spec in specs {
        let mut runs = Vec::new();
        // Interleaved: each workload runs on every backend before the next workload, so
        // drift in the machine's load hits both sides alike.
        for &backend in &backends {
            if backend != Backend::Esdb && spec.kind.esdb_only() {
                continue;
            }
            eprint!("{:<45} {:<26} ", spec.id, backend.label());
            let figures = run::run_one(&setup, &spec, backend).await?;
            eprintln!(
                "{:>10.0} events/s  p50 {:>6} µs  p99 {:>6} µs  errors {}",
                figures.events_per_s, figures.p50_us, figures.p99_us, figures.errors
            );
            runs.push(Run { backend, figures });
        }
        rows.push(Row { spec, runs });
    }

    let targets = report::check_targets(&rows, &disk);
    let results = Results {
        date: date.clone(),
        machine,
        esdb_version: env!("CARGO_PKG_VERSION").into(),
        nats_server: nats_version,
        jetstream_sync_always_supported: sync_always,
        params,
        disk,
        rows,
        targets,
    };
    #[allow(unused_mut)]
    let mut table = report::markdown(&results);
    #[cfg(feature = "plots")]
    match plot::write_plots(&results, &out_dir) {
        Ok(files) => {
            table.push_str("\nPlots: ");
            table.push_str(
                &files
                    .iter()
                    .map(|f| format!("[{f}]({f})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            table.push('\n');
        }
        Err(e) => table.push_str(&format!("\nPlots skipped: {e:#}\n")),
    }
    #[cfg(not(feature = "plots"))]
    table.push_str("\nPlots skipped: built without the `plots` feature.\n");
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(out_dir.join("results.md"), &table)?;
    println!("{table}");
    eprintln!("results in {}", out_dir.display());
    Ok(())
}
