//! The `esdb` binary: parse configuration, set up logging, run the server until a signal; or
//! run a client subcommand (`esdb::cli`).

use clap::Parser;
use tracing_subscriber::EnvFilter;

use esdb::config::{Cli, CliCommand, Config, LogFormat};

/// mimalloc rather than glibc's malloc: over 8 cycles of 4000 connections opened and closed,
/// glibc's RSS ratcheted from 10 to 375 MiB, mimalloc's settled near 120-150 MiB (jemalloc's
/// 150-170 MiB, still rising); bench/allocator/README.md has the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        CliCommand::Serve(args) => args,
        CliCommand::Passwd => return esdb::auth::password::passwd_command(),
        CliCommand::Client(command) => return esdb::cli::run(command),
    };
    let config = match Config::resolve(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("esdb: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&config);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build().expect("tokio runtime");
    let served = runtime.block_on(async {
        // Registered before the server announces itself, so a signal sent right after the
        // announcement is already handled gracefully.
        let shutdown = shutdown_signal().map_err(|e| format!("installing signal handlers: {e}"))?;
        esdb::server::run(config, shutdown).await
    });
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("esdb: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The log filter when neither `--log-level` nor `RUST_LOG` says: openraft narrates every
/// election and shutdown at info, which is noise for a single node.
const DEFAULT_LOG_FILTER: &str = "info,openraft=warn";

fn init_logging(config: &Config) {
    let filter = match &config.log_level {
        Some(level) => EnvFilter::new(level),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Installs SIGINT and SIGTERM handlers now; the future resolves on either signal.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
