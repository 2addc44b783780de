//! `esdb bench quick`: a rough append and read figure in a few seconds. Not the benchmark:
//! `bench/` (the `esdb-bench` crate) measures properly, with its method in its README.

use std::time::{Duration, Instant};

use esdb_client::{Client, Direction, EventData, ExpectedVersion, ReadStart};
use serde_json::json;

use crate::cli::common::{CliError, Common};
use crate::cli::output::Printer;

/// Concurrent writers (and readers): enough to fill the pipeline of one connection.
const WORKERS: usize = 16;
/// Events per read request in the read half.
const READ_PAGE_EVENTS: u64 = 100;
/// Shortest run that gives a figure at all.
const MIN_SECONDS: u64 = 2;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Appends for half the time, reads for the other half, and prints a rough figure.
    #[command(
        after_help = "Writes small events to new streams named bench-quick-*, from 16 \
concurrent tasks on one connection. A rough figure for this machine, not the benchmark: see \
bench/README.md for that.

Examples:
  esdb bench quick
  esdb bench quick --seconds 4 --json"
    )]
    Quick {
        #[command(flatten)]
        common: Common,
        /// How long the whole run takes
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

pub async fn run(command: BenchCommand) -> Result<(), CliError> {
    let BenchCommand::Quick { common, seconds } = command;
    if seconds < MIN_SECONDS {
        return Err(CliError::Usage(format!(
            "--seconds must be at least {MIN_SECONDS}"
        )));
    }
    let client = common.connect().await?;
    let half = Duration::from_millis(seconds * 500);
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let streams: Vec<String> = (0..WORKERS)
        .map(|worker| format!("bench-quick-{}-{worker}", &run_id[20..]))
        .collect();

    let deadline = Instant::now() + half;
    let writers: Vec<_> = streams
        .iter()
        .map(|stream| tokio::spawn(write_until(client.clone(), stream.clone(), deadline)))
        .collect();
    let mut latencies_us = Vec::new();
    for writer in writers {
        latencies_us.extend(join(writer).await??);
    }
    let appends = latencies_us.len();

    let deadline = Instant::now() + half;
    let readers: Vec<_> = streams
        .iter()
        .map(|stream| tokio::spawn(read_until(client.clone(), stream.clone(), deadline)))
        .collect();
    let mut events_read = 0;
    for reader in readers {
        events_read += join(reader).await??;
    }

    latencies_us.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((latencies_us.len() as f64 * p) as usize).min(latencies_us.len() - 1);
        latencies_us[index] as f64 / 1000.0
    };
    let half_s = half.as_secs_f64();
    let appends_per_s = (appends as f64 / half_s).round();
    let events_read_per_s = (events_read as f64 / half_s).round();
    let (p50_ms, p99_ms) = (percentile(0.50), percentile(0.99));
    let server = client.server_addr().await?;
    let mut printer = Printer::new(common.json);
    if printer.json {
        return printer.value(&json!({
            "note": "a rough figure for this machine, not the benchmark (see bench/README.md)",
            "seconds": seconds,
            "server": server,
            "appends_per_s": appends_per_s,
            "append_p50_ms": p50_ms,
            "append_p99_ms": p99_ms,
            "events_read_per_s": events_read_per_s,
        }));
    }
    printer.line(&format!(
        "esdb bench quick: a rough figure from {seconds} s against {server}, not the benchmark \
         (see bench/README.md)"
    ))?;
    printer.line(&format!(
        "  appends: {appends_per_s:.0} events/s ({WORKERS} concurrent writers, 1 event per \
         append, durable), latency p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms"
    ))?;
    printer.line(&format!(
        "  reads:   {events_read_per_s:.0} events/s ({WORKERS} concurrent readers, pages of \
         {READ_PAGE_EVENTS})"
    ))
}

async fn join<T>(task: tokio::task::JoinHandle<T>) -> Result<T, CliError> {
    task.await
        .map_err(|e| CliError::Failed(format!("benchmark task failed: {e}")))
}

/// Appends one small event at a time until the deadline; the latency of each, in µs.
async fn write_until(
    client: Client,
    stream: String,
    deadline: Instant,
) -> Result<Vec<u64>, CliError> {
    let mut latencies_us = Vec::new();
    while Instant::now() < deadline {
        let event = EventData::json(
            "BenchQuick",
            &json!({"n": latencies_us.len(), "pad": "x".repeat(64)}),
        )?;
        let started = Instant::now();
        client
            .append(&stream, ExpectedVersion::Any, [event])
            .await?;
        latencies_us.push(started.elapsed().as_micros() as u64);
    }
    Ok(latencies_us)
}

/// Reads the stream page by page, from the start again at its end, until the deadline.
async fn read_until(client: Client, stream: String, deadline: Instant) -> Result<u64, CliError> {
    let mut events = 0;
    let mut from = 0;
    while Instant::now() < deadline {
        let page = client
            .read_stream_page(
                &stream,
                ReadStart::At(from),
                READ_PAGE_EVENTS,
                Direction::Forward,
            )
            .await?;
        events += page.len() as u64;
        from = match page.last() {
            Some(last) if page.len() as u64 == READ_PAGE_EVENTS => last.version + 1,
            _ => 0,
        };
    }
    Ok(events)
}
