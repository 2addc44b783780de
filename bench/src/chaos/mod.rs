//! `esdb-bench chaos` and `esdb-bench powerloss`: crash soaks.
//!
//! Each round runs concurrent pipelined writers against the server, crashes it at a random
//! moment, restarts it on the same data dir, and checks what it serves against the record of
//! every request and its reply (see `check.rs`). What is there then is the history the next
//! round builds on.
//!
//! - `chaos`: the crash is `kill -9`. The page cache survives, so this proves the server's
//!   recovery and its atomicity, not its fsyncs.
//! - `powerloss`: the data dir is on `esdb-lazyfs` (tools/lazyfs), and the crash also cuts its
//!   power: what was not fsynced is lost (or a random subset of it kept).
//!
//! - `model.rs`: event ids, payloads, streams, the request record, the verified history.
//! - `load.rs`: the writers; `check.rs`: the verification; `server.rs`: the server process;
//!   `powerloss.rs`: the filesystem process.

pub mod check;
pub mod load;
pub mod model;
pub mod powerloss;
pub mod server;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use self::check::{RoundCheck, Verdict, PREFIX_WINDOW_EVENTS};
use self::load::{ConnLog, LoadPlan};
use self::model::{Outcome, SentAppend, Streams, Truth};
use self::powerloss::{LazyFs, LazyFsSetup};
use self::server::{Launch, ServerProcess, StartFailure};
use crate::esdb::client::Conn;

/// Most rounds a run may ask for.
const MAX_ROUNDS: u32 = 1_000_000;
/// Most connections a run may ask for.
const MAX_CONNECTIONS: usize = 256;
/// Violations printed for the failing round (the check stops at 50).
const VIOLATIONS_PRINTED: usize = 10;
/// How long the writers may take to notice the server is gone.
const LOAD_JOIN_TIMEOUT_MS: u64 = 60_000;

#[derive(clap::Args, Clone)]
pub struct ChaosArgs {
    /// Crash-and-restart rounds.
    #[arg(long, default_value_t = 20)]
    pub rounds: u32,
    /// Seed of the kill moments and the load (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The esdb binary (default: `esdb` next to this executable).
    #[arg(long)]
    pub esdb_bin: Option<PathBuf>,
    /// Concurrent writer connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// The crash comes at a uniformly random moment up to this long after the load starts.
    #[arg(long, default_value_t = 400)]
    pub max_kill_delay_ms: u64,
    /// Re-read the whole verified history every this many rounds (and after the last);
    /// other rounds re-read a random window of it.
    #[arg(long, default_value_t = 50)]
    pub full_check_every: u32,
    /// Where the run's directory goes (kept when a violation is found).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub data_root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Unsynced {
    /// Every unsynced write is lost.
    Drop,
    /// A random subset of the unsynced writes survives, in a random order.
    KeepRandom,
    /// A random subset of the unsynced writes' 4 KiB pages survives (writes torn).
    KeepTorn,
    /// `drop`, `keep-random`, `keep-torn`, in turn.
    Alternate,
}

#[derive(clap::Args, Clone)]
pub struct PowerlossArgs {
    #[command(flatten)]
    pub chaos: ChaosArgs,
    /// The esdb-lazyfs binary (default: `esdb-lazyfs` next to this executable).
    #[arg(long)]
    pub lazyfs_bin: Option<PathBuf>,
    /// When directory changes become durable on the test filesystem: `journal` (ext4, XFS)
    /// or `strict` (POSIX).
    #[arg(long, default_value = "journal")]
    pub dir_durability: String,
    /// What a power cut does to unsynced writes.
    #[arg(long, value_enum, default_value_t = Unsynced::Alternate)]
    pub unsynced: Unsynced,
    /// A command the server runs under, e.g. `eatmydata` (repeat for its arguments).
    #[arg(long)]
    pub server_wrapper: Vec<String>,
    /// Negative control: succeed only if a violation is found (run with a server that does
    /// not fsync, e.g. `--server-wrapper eatmydata`, to prove the test can catch one).
    #[arg(long)]
    pub expect_loss: bool,
}

/// The power-loss part of a run.
struct Power {
    setup: LazyFsSetup,
    unsynced: Unsynced,
    fs: Option<LazyFs>,
}

/// Sums over the rounds.
#[derive(Default)]
struct Totals {
    requests: u64,
    acked: u64,
    rejected: u64,
    unknown_applied: u64,
    unknown_absent: u64,
    storage_errors: u64,
    shutdown_replies: u64,
    refusals: u32,
    rounds: u32,
}

fn sibling_binary(given: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let me = std::env::current_exe().context("locating esdb-bench")?;
    let sibling = me.with_file_name(name);
    anyhow::ensure!(
        sibling.exists(),
        "no {name} at {}: build it or pass its path",
        sibling.display()
    );
    Ok(sibling)
}

pub async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
    run(args, None, false, Vec::new()).await
}

pub async fn powerloss(args: PowerlossArgs) -> anyhow::Result<()> {
    let bin = sibling_binary(args.lazyfs_bin.clone(), "esdb-lazyfs")?;
    anyhow::ensure!(
        std::path::Path::new("/dev/fuse").exists(),
        "power-loss test needs /dev/fuse"
    );
    let power = Power {
        setup: LazyFsSetup {
            bin,
            backing: PathBuf::new(),
            mount: PathBuf::new(),
            control: PathBuf::new(),
            dir_durability: args.dir_durability.clone(),
        },
        unsynced: args.unsynced,
        fs: None,
    };
    run(
        args.chaos,
        Some(power),
        args.expect_loss,
        args.server_wrapper,
    )
    .await
}

fn default_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

async fn run(
    args: ChaosArgs,
    mut power: Option<Power>,
    expect_loss: bool,
    wrapper: Vec<String>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_ROUNDS).contains(&args.rounds),
        "--rounds must be 1 to {MAX_ROUNDS}"
    );
    anyhow::ensure!(
        (1..=MAX_CONNECTIONS).contains(&args.connections),
        "--connections must be 1 to {MAX_CONNECTIONS}"
    );
    let seed = args.seed.unwrap_or_else(default_seed);
    let run_tag = (seed ^ (seed >> 16) ^ (seed >> 32) ^ (seed >> 48)) as u16;
    let mut rng = fastrand::Rng::with_seed(seed);
    let root = tempfile::Builder::new()
        .prefix("esdb-chaos-")
        .tempdir_in(&args.data_root)
        .context("creating the run's directory")?;
    let data_dir = match &mut power {
        Some(p) => {
            p.setup.backing = root.path().join("backing");
            p.setup.mount = root.path().join("mnt");
            p.setup.control = root.path().join("lazyfs.sock");
            p.setup.mount.join("data")
        }
        None => root.path().join("data"),
    };
    let launch = Launch {
        bin: crate::esdb::server::locate_binary(args.esdb_bin.clone())?,
        wrapper,
        log: root.path().join("server.log"),
    };
    let what = if power.is_some() {
        "powerloss"
    } else {
        "chaos"
    };
    println!(
        "{what}: {} rounds, {} connections, crash within {} ms, seed {seed}, in {}",
        args.rounds,
        args.connections,
        args.max_kill_delay_ms,
        root.path().display()
    );
    let streams = Arc::new(Streams::new(args.connections));
    let mut truth = Truth::empty(&streams);
    let started = Instant::now();
    let mut totals = Totals::default();

    if let Some(p) = &mut power {
        p.fs = Some(LazyFs::mount(&p.setup)?);
    }
    let mut server = match ServerProcess::start(&launch, &data_dir) {
        Ok(s) => s,
        Err(StartFailure::Refused { status, log_tail }) => {
            bail!("esdb refused to start on a fresh data dir ({status}): {log_tail}")
        }
        Err(StartFailure::Other(e)) => return Err(e),
    };

    let mut failed_round = None;
    for round in 1..=args.rounds {
        let delay_ms = rng.u64(0..=args.max_kill_delay_ms);
        let unsynced = match power.as_ref().map(|p| p.unsynced) {
            Some(Unsynced::Alternate) => {
                [Unsynced::Drop, Unsynced::KeepRandom, Unsynced::KeepTorn][(round as usize - 1) % 3]
            }
            other => other.unwrap_or(Unsynced::Drop),
        };
        let (cut_seed, torn) = match unsynced {
            Unsynced::KeepRandom => (Some(rng.u64(..)), false),
            Unsynced::KeepTorn => (Some(rng.u64(..)), true),
            _ => (None, false),
        };
        let plan = LoadPlan {
            run: run_tag,
            round,
            connections: args.connections,
            seed: rng.u64(..),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(load::run(
            server.addr,
            plan,
            streams.clone(),
            Arc::new(truth.versions.clone()),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        // The crash: power first, so that nothing acknowledged after it can have been synced.
        let cut = tokio::task::block_in_place(|| -> anyhow::Result<Option<String>> {
            let cut = match power.as_ref().and_then(|p| p.fs.as_ref()) {
                Some(fs) => Some(fs.cut(cut_seed, torn)?),
                None => None,
            };
            server.kill9();
            Ok(cut)
        })?;
        stop.store(true, Ordering::Relaxed);
        let logs: Vec<ConnLog> =
            tokio::time::timeout(Duration::from_millis(LOAD_JOIN_TIMEOUT_MS), load)
                .await
                .context("the writers did not stop after the crash")??;
        if let Some(p) = &mut power {
            let fs = p.fs.take().expect("mounted");
            tokio::task::block_in_place(|| fs.unmount())?;
            p.fs = Some(LazyFs::mount(&p.setup)?);
        }

        let appends: Vec<SentAppend> = logs.iter().flat_map(|l| l.appends.clone()).collect();
        totals.requests += appends.len() as u64;
        totals.storage_errors += logs.iter().map(|l| l.storage_errors).sum::<u64>();
        totals.shutdown_replies += logs.iter().map(|l| l.shutdown_replies).sum::<u64>();
        let conflicts: u64 = logs.iter().map(|l| l.conflicts).sum();
        let acked = appends
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Acked { .. }))
            .count();
        let mut refused = false;
        server = match ServerProcess::start(&launch, &data_dir) {
            Ok(s) => s,
            Err(StartFailure::Refused { status, log_tail }) => {
                refused = true;
                // Loud, not silent: reported on its own, and the run goes on from scratch.
                totals.refusals += 1;
                println!(
                    "round {round:>4}/{}: REFUSED: after the crash esdb would not start ({status}); it said:\n{log_tail}",
                    args.rounds
                );
                wipe(&mut power, &data_dir)?;
                truth = Truth::empty(&streams);
                match ServerProcess::start(&launch, &data_dir) {
                    Ok(s) => s,
                    Err(StartFailure::Refused { status, log_tail }) => {
                        bail!("esdb refused a wiped data dir ({status}): {log_tail}")
                    }
                    Err(StartFailure::Other(e)) => return Err(e),
                }
            }
            Err(StartFailure::Other(e)) => return Err(e),
        };

        let head = truth.events.len() as u64;
        let full = round % args.full_check_every.max(1) == 0 || round == args.rounds;
        let prefix = if full || head <= PREFIX_WINDOW_EVENTS {
            std::iter::once(0..head).collect()
        } else {
            let start = rng.u64(0..head - PREFIX_WINDOW_EVENTS);
            vec![start..start + PREFIX_WINDOW_EVENTS, head - 1..head]
        };
        let mut conn = Conn::connect(server.addr).await?;
        let verdict = check::verify(
            &mut conn,
            &mut truth,
            &RoundCheck {
                run: run_tag,
                round,
                streams: &streams,
                // After a refusal the store was wiped: nothing of this round can be checked.
                appends: if refused { &[] } else { &appends },
                prefix,
            },
        )
        .await?;
        drop(conn);
        let mut violations = verdict.violations.clone();
        for log in &logs {
            violations.extend(log.unexpected.iter().cloned());
        }
        report_round(
            round,
            args.rounds,
            delay_ms,
            &verdict,
            appends.len(),
            acked,
            conflicts,
            head,
            truth.events.len(),
            cut.as_deref(),
            violations.is_empty(),
        );
        totals.rounds = round;
        totals.acked += acked as u64;
        totals.rejected += verdict.rejected;
        totals.unknown_applied += verdict.unknown_applied;
        totals.unknown_absent += verdict.unknown_absent;
        if !violations.is_empty() {
            for v in violations.iter().take(VIOLATIONS_PRINTED) {
                println!("  VIOLATION: {v}");
            }
            if violations.len() > VIOLATIONS_PRINTED {
                println!("  … and {} more", violations.len() - VIOLATIONS_PRINTED);
            }
            failed_round = Some((round, violations.len()));
            break;
        }
    }
    server.stop();
    if let Some(p) = &mut power {
        if let Some(fs) = p.fs.take() {
            tokio::task::block_in_place(|| fs.unmount())?;
        }
    }
    println!(
        "{what}: {} rounds in {:.0} s; {} requests: {} acknowledged, {} refused, {} unanswered ({} applied, {} not), {} storage errors, {} shutting_down; {} refusals to start; store holds {} events; {}",
        totals.rounds,
        started.elapsed().as_secs_f64(),
        totals.requests,
        totals.acked,
        totals.rejected,
        totals.unknown_applied + totals.unknown_absent,
        totals.unknown_applied,
        totals.unknown_absent,
        totals.storage_errors,
        totals.shutdown_replies,
        totals.refusals,
        truth.events.len(),
        match failed_round {
            None => "0 violations".to_owned(),
            Some((round, n)) => format!("{n} violations in round {round}"),
        }
    );
    match (failed_round, expect_loss) {
        (None, false) => Ok(()),
        (Some(_), true) => {
            println!("{what}: negative control passed: the check caught the lost acknowledged appends");
            Ok(())
        }
        (None, true) => bail!(
            "negative control failed: no violation found, so this test could not catch a server that loses acknowledged appends"
        ),
        (Some((round, n)), false) => {
            let kept = root.keep();
            bail!(
                "{n} violations in round {round}; the data dir and server log are kept in {}",
                kept.display()
            )
        }
    }
}

/// Empties the data dir after a refusal, so that the run can go on.
fn wipe(power: &mut Option<Power>, data_dir: &std::path::Path) -> anyhow::Result<()> {
    match power {
        Some(p) => {
            let fs = p.fs.take().expect("mounted");
            tokio::task::block_in_place(|| fs.unmount())?;
            std::fs::remove_dir_all(&p.setup.backing)?;
            p.fs = Some(LazyFs::mount(&p.setup)?);
        }
        None => std::fs::remove_dir_all(data_dir)?,
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report_round(
    round: u32,
    rounds: u32,
    delay_ms: u64,
    v: &Verdict,
    requests: usize,
    acked: usize,
    conflicts: u64,
    head_before: u64,
    head_after: usize,
    cut: Option<&str>,
    ok: bool,
) {
    let cut = cut.map_or(String::new(), |c| {
        format!("  [{}]", c.trim_start_matches("ok cut "))
    });
    println!(
        "round {round:>4}/{rounds}: crash at {delay_ms:>4} ms; {requests:>5} appends: {acked:>5} acked, {:>4} refused ({conflicts} conflicts), {:>4} unanswered ({} applied, {} not); $all {head_before} -> {head_after}; re-read {}{cut}  {}",
        v.rejected,
        v.unknown_applied + v.unknown_absent,
        v.unknown_applied,
        v.unknown_absent,
        v.prefix_checked,
        if ok { "ok" } else { "FAILED" }
    );
}
