//! `esdb export` and `esdb import`: events as NDJSON records, for backup and restore.
//!
//! An export is the event records as the server returns them, one per line, in position order
//! (`--all`) or version order (a stream). Import appends each record to its `stream_id` with
//! its `event_id`, type, data and metadata; the ids make importing the same file twice (or
//! again after an interruption) write nothing the second time. Positions, versions and
//! `epoch_us` are the new store's own: importing a whole `--all` export into an empty store
//! gives the same positions; deletes are not exported, so a deleted stream comes back.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use esdb_client::{Client, ErrorCode, EventData, ExpectedVersion, ReadOptions};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::cli::common::{CliError, Common};
use crate::cli::streams::batches;

/// Appends an import keeps in flight on its connection.
const IMPORT_PIPELINE: usize = 16;
/// Most events of one stream an import sends in one append.
const IMPORT_BATCH_EVENTS: usize = 500;
/// Events an export reads per request.
const EXPORT_PAGE_EVENTS: u64 = 1000;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes NDJSON to stdout whatever it is; a progress bar on stderr when \
stderr is a terminal.

Examples:
  esdb export --all > events.ndjson
  esdb export user-1 > user-1.ndjson"
)]
pub struct ExportArgs {
    #[command(flatten)]
    pub common: Common,
    /// The stream to export
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub stream: Option<String>,
    /// Every event of the store, in commit order
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reads the NDJSON records of `esdb export` (event_id, event_type, \
stream_id, data, metadata; other fields are ignored) and appends them in order. Idempotent by \
event id: importing the same file again writes nothing.

Examples:
  esdb import < events.ndjson
  esdb import --file events.ndjson --server backup-host:4350"
)]
pub struct ImportArgs {
    #[command(flatten)]
    pub common: Common,
    /// Read records from this file instead of stdin
    #[arg(long)]
    pub file: Option<PathBuf>,
}

fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{msg} {wide_bar} {pos}/{len} events {per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::no_length(),
            "{msg} {spinner} {pos} events {per_sec}",
        ),
    };
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar.set_message(what.to_owned());
    bar
}

pub async fn export(args: ExportArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let options = ReadOptions::forward().page_size(EXPORT_PAGE_EVENTS);
    let (mut events, total) = match &args.stream {
        Some(stream) => {
            let total = client.version(stream).await?.map(|v| v + 1);
            (client.read_stream(stream, options), total)
        }
        None => {
            let store = client.store().await?;
            let total = client.stats().await?.stores.get(&store).map(|s| s.events);
            (client.read_all(options), total)
        }
    };
    let bar = progress(total, "export");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(event) = events.try_next().await? {
        writeln!(out, "{}", event.to_json())?;
        bar.inc(1);
    }
    out.flush()?;
    bar.finish_and_clear();
    Ok(())
}

/// One line of an export, as import needs it.
#[derive(Deserialize)]
struct Record {
    event_id: Uuid,
    event_type: String,
    stream_id: String,
    data: Box<RawValue>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
}

/// Consecutive records of one stream, appended together.
struct Batch {
    stream: String,
    events: Vec<EventData>,
}

/// Reads records and groups them into batches, in order.
fn read_batches(input: Box<dyn BufRead>) -> impl Iterator<Item = Result<Batch, CliError>> {
    let mut lines = input.lines().enumerate();
    let mut pending: Option<Batch> = None;
    std::iter::from_fn(move || loop {
        let Some((index, line)) = lines.next() else {
            return pending.take().map(Ok);
        };
        let line = match line {
            Ok(line) => line,
            Err(e) => return Some(Err(CliError::Failed(format!("reading input: {e}")))),
        };
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = match serde_json::from_str(&line) {
            Ok(record) => record,
            Err(e) => {
                return Some(Err(CliError::Failed(format!(
                    "input line {}: not an event record: {e}",
                    index + 1
                ))))
            }
        };
        let mut event =
            EventData::from_raw(record.event_type, record.data).with_id(record.event_id);
        if let Some(metadata) = record.metadata {
            event = event.with_raw_metadata(metadata);
        }
        match &mut pending {
            Some(batch)
                if batch.stream == record.stream_id && batch.events.len() < IMPORT_BATCH_EVENTS =>
            {
                batch.events.push(event);
            }
            _ => {
                let done = pending.replace(Batch {
                    stream: record.stream_id,
                    events: vec![event],
                });
                if let Some(done) = done {
                    return Some(Ok(done));
                }
            }
        }
    })
}

/// Appends a batch; when part of it is already stored (an import interrupted differently),
/// event by event, each a no-op when its id is already in its stream.
async fn import_batch(client: Client, batch: Batch) -> Result<usize, CliError> {
    let count = batch.events.len();
    let mut done = 0;
    for part in batches(batch.events)? {
        let size = part.len();
        match client
            .append(&batch.stream, ExpectedVersion::Any, part.clone())
            .await
        {
            Ok(_) => {}
            Err(error) if error.code() == Some(ErrorCode::DuplicateEventId) && size > 1 => {
                for event in part {
                    client
                        .append(&batch.stream, ExpectedVersion::Any, [event])
                        .await?;
                }
            }
            Err(error) => return Err(error.into()),
        }
        done += size;
    }
    debug_assert_eq!(done, count);
    Ok(count)
}

pub async fn import(args: ImportArgs) -> Result<(), CliError> {
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| CliError::Failed(format!("opening {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let client = args.common.connect().await?;
    let bar = progress(None, "import");
    // Appends are pipelined in input order on one connection, and take effect in that order.
    let mut appends = futures::stream::iter(read_batches(input))
        .map(|batch| {
            let client = client.clone();
            async move { import_batch(client, batch?).await }
        })
        .buffered(IMPORT_PIPELINE);
    let mut imported = 0;
    while let Some(count) = appends.try_next().await? {
        imported += count;
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    if std::io::stderr().is_terminal() {
        eprintln!("esdb: imported {imported} events (already stored ones are not written again)");
    }
    Ok(())
}
