//! The `esdb` command line as a client: every subcommand beside `serve`, built on the
//! `esdb-client` crate. One file per family of subcommands:
//!
//! - [`streams`]: `append`, `read`, `read-all`, `read-types`, `streams`, `version`, `exists`,
//!   `delete`;
//! - [`snap`], [`agg`], [`stats`], [`psub`]: snapshots, `AGG`, `STATS`, persistent
//!   subscription management; [`scavenge`]: `SCAVENGE`;
//! - [`tail`] (catch-up, following live) and [`sub`] (a persistent consumer, `--exec`);
//! - [`backup`]: `export` and `import`; [`bench`]: `bench quick`;
//! - [`context`]: saved connection settings; [`completions`]: shell completions;
//! - [`verify`]: `verify`, the offline integrity check of a data directory (no server);
//! - [`common`] (flags every client subcommand takes, exit codes), [`output`] (NDJSON or
//!   readable lines), [`selector`] (the selector flags of `tail` and `sub`).
//!
//! Exit codes: 0 success, 1 failure (an error answer prints `esdb: <code>: <message>` on
//! stderr), 2 usage.

pub mod agg;
pub mod backup;
pub mod bench;
pub mod cluster;
pub mod common;
pub mod completions;
pub mod context;
pub mod output;
pub mod psub;
pub mod scavenge;
pub mod selector;
pub mod snap;
pub mod stats;
pub mod streams;
pub mod sub;
pub mod tail;
pub mod verify;

use std::process::ExitCode;

use common::CliError;

/// Worker threads of the client's runtime: one for the connection's tasks, one spare (the
/// command itself runs on the main thread).
const RUNTIME_WORKERS: usize = 2;

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Append events to a stream.
    Append(streams::AppendArgs),
    /// Print a stream's events.
    Read(streams::ReadArgs),
    /// Print every event of the store, in commit order.
    ReadAll(streams::ReadAllArgs),
    /// Print the events of some types, in commit order.
    ReadTypes(streams::ReadTypesArgs),
    /// List the ids of streams that have events.
    Streams(streams::StreamsArgs),
    /// Print a stream's current version (-1: no events).
    Version(streams::VersionArgs),
    /// Print whether a stream has events.
    Exists(streams::ExistsArgs),
    /// Soft-delete a stream.
    Delete(streams::DeleteArgs),
    /// Save, load, list and delete snapshots.
    #[command(
        subcommand,
        after_help = "Examples:\n  esdb snap save acct-1 2 --data '{\"balance\":12}'\n  esdb snap load acct-1\n  esdb snap list acct-1\n  esdb snap delete acct-1 --version 2"
    )]
    Snap(snap::SnapCommand),
    /// Print a stream's state, folded on the server.
    Agg(agg::AggArgs),
    /// Print counts per store.
    Stats(stats::StatsArgs),
    /// Start a scavenge (remove what deletes and limits hide), or show its progress.
    Scavenge(scavenge::ScavengeArgs),
    /// Cluster state: members, roles, leader, lag.
    #[command(subcommand, after_help = "Example:\n  esdb cluster status")]
    Cluster(cluster::ClusterCommand),
    /// Manage persistent subscriptions.
    #[command(
        subcommand,
        after_help = "Examples:\n  esdb psub list\n  esdb psub get billing\n  esdb psub parked billing\n  esdb psub replay billing\n  esdb psub delete billing"
    )]
    Psub(psub::PsubCommand),
    /// Follow events as they are committed.
    Tail(tail::TailArgs),
    /// Consume a persistent subscription: print (or --exec) and acknowledge each event.
    Sub(sub::SubArgs),
    /// A rough local performance figure.
    #[command(subcommand, after_help = "Example:\n  esdb bench quick")]
    Bench(bench::BenchCommand),
    /// Write events as NDJSON, for backup.
    Export(backup::ExportArgs),
    /// Append the events of an export, idempotently by event id.
    Import(backup::ImportArgs),
    /// Save and select connection settings.
    #[command(
        subcommand,
        after_help = "Examples:\n  esdb context save prod --server db1:4350,db2:4350 --store billing --select\n  esdb context list\n  esdb context select prod"
    )]
    Context(context::ContextCommand),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Check a stopped server's data directory offline: every record's checksum, the indexes,
    /// the Raft log.
    Verify(verify::VerifyArgs),
}

/// Runs a client subcommand to its exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return CliError::Failed(format!("starting the runtime: {e}")).report(),
    };
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error.report(),
    }
}

async fn dispatch(command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Append(args) => streams::append(args).await,
        ClientCommand::Read(args) => streams::read(args).await,
        ClientCommand::ReadAll(args) => streams::read_all(args).await,
        ClientCommand::ReadTypes(args) => streams::read_types(args).await,
        ClientCommand::Streams(args) => streams::streams(args).await,
        ClientCommand::Version(args) => streams::version(args).await,
        ClientCommand::Exists(args) => streams::exists(args).await,
        ClientCommand::Delete(args) => streams::delete(args).await,
        ClientCommand::Snap(command) => snap::run(command).await,
        ClientCommand::Agg(args) => agg::run(args).await,
        ClientCommand::Stats(args) => stats::run(args).await,
        ClientCommand::Scavenge(args) => scavenge::run(args).await,
        ClientCommand::Cluster(command) => cluster::run(command).await,
        ClientCommand::Psub(command) => psub::run(command).await,
        ClientCommand::Tail(args) => tail::run(args).await,
        ClientCommand::Sub(args) => sub::run(args).await,
        ClientCommand::Bench(command) => bench::run(command).await,
        ClientCommand::Export(args) => backup::export(args).await,
        ClientCommand::Import(args) => backup::import(args).await,
        ClientCommand::Context(command) => context::run(command),
        ClientCommand::Completions(args) => completions::run(args),
        ClientCommand::Verify(args) => verify::run(args),
    }
}
