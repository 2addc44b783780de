//! `esdb append`, `read`, `read-all`, `read-types`, `streams`, `version`, `exists`, `delete`.

use std::path::PathBuf;

use esdb_client::protocol::limits::{MAX_EVENTS_PER_APPEND, MAX_PAYLOAD_BYTES};
use esdb_client::protocol::ReadStart;
use esdb_client::{EventData, EventStream, ExpectedVersion, ReadOptions};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::cli::common::{
    parse_expected, parse_json_arg, parse_read_start, read_input, CliError, Common,
};
use crate::cli::output::Printer;

/// Payload bytes of one append the CLI builds: under the protocol's limit, with room for the
/// array's brackets and commas.
const APPEND_BATCH_BYTES: usize = MAX_PAYLOAD_BYTES - 4096;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Input: with --type, --data is the event's data, and each line of --file or stdin is one \
event's data; without --type, each line is an event object \
{\"event_type\":…,\"data\":…,\"metadata\":{…}?,\"event_id\":…?}. A file may also hold a JSON \
array of them. The events go in one atomic append when they fit (10000 events, 1 MiB).

Examples:
  esdb append user-1 --type UserCreated --data '{\"name\":\"Ada\"}' --expect no_stream
  echo '{\"event_type\":\"UserRenamed\",\"data\":{\"name\":\"Bob\"}}' | esdb append user-1 --expect 0
  esdb append orders --type OrderPlaced --file orders.ndjson")]
pub struct AppendArgs {
    #[command(flatten)]
    pub common: Common,
    /// The stream to append to
    pub stream: String,
    /// What the stream's version must be: any, no_stream, exists or a version
    #[arg(long, default_value = "any", value_parser = parse_expected, value_name = "any|no_stream|exists|N")]
    pub expect: ExpectedVersion,
    /// The event type; --data, or each input line, is then an event's data
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// One event's data, as JSON (needs --type)
    #[arg(long, requires = "event_type", conflicts_with = "file")]
    pub data: Option<String>,
    /// The --data event's metadata, a JSON object
    #[arg(long, requires = "data")]
    pub metadata: Option<String>,
    /// Read events from this file instead of stdin
    #[arg(long)]
    pub file: Option<PathBuf>,
}

/// One event as an input line spells it.
#[derive(Deserialize)]
struct EventLine {
    event_type: String,
    data: Box<RawValue>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    event_id: Option<Uuid>,
}

fn input_items(text: &str) -> Result<Vec<Box<RawValue>>, CliError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed)
            .map_err(|e| CliError::Usage(format!("input is not a JSON array: {e}")));
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            RawValue::from_string(line.trim().to_owned())
                .map_err(|e| CliError::Usage(format!("input line {}: {e}", index + 1)))
        })
        .collect()
}

fn events_of(args: &AppendArgs) -> Result<Vec<EventData>, CliError> {
    if let Some(data) = &args.data {
        let event_type = args.event_type.clone().expect("clap requires --type");
        let mut event = EventData::from_raw(event_type, parse_json_arg("--data", data)?);
        if let Some(metadata) = &args.metadata {
            event = event.with_raw_metadata(parse_json_arg("--metadata", metadata)?);
        }
        return Ok(vec![event]);
    }
    let items = input_items(&read_input(args.file.as_ref())?)?;
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match &args.event_type {
            Some(event_type) => Ok(EventData::from_raw(event_type.clone(), item)),
            None => {
                let line: EventLine = serde_json::from_str(item.get()).map_err(|e| {
                    CliError::Usage(format!(
                        "event {}: {e} (an event object needs event_type and data; or give \
                         --type and data alone)",
                        index + 1
                    ))
                })?;
                let mut event = EventData::from_raw(line.event_type, line.data);
                if let Some(id) = line.event_id {
                    event = event.with_id(id);
                }
                if let Some(metadata) = line.metadata {
                    event = event.with_raw_metadata(metadata);
                }
                Ok(event)
            }
        })
        .collect()
}

/// Splits events into appends that fit the protocol's limits, in order.
pub fn batches(events: Vec<EventData>) -> Result<Vec<Vec<EventData>>, CliError> {
    let mut batches: Vec<Vec<EventData>> = Vec::new();
    let mut current: Vec<EventData> = Vec::new();
    let mut bytes = 2;
    for event in events {
        let size = serde_json::to_vec(&event)
            .map_err(|e| CliError::Failed(e.to_string()))?
            .len()
            + 1;
        if !current.is_empty()
            && (current.len() == MAX_EVENTS_PER_APPEND || bytes + size > APPEND_BATCH_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 2;
        }
        bytes += size;
        current.push(event);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(batches)
}

pub async fn append(args: AppendArgs) -> Result<(), CliError> {
    let events = events_of(&args)?;
    if events.is_empty() {
        return Err(CliError::Usage(
            "no events to append: give --type and --data, --file, or lines on stdin".into(),
        ));
    }
    let count = events.len();
    let client = args.common.connect().await?;
    let mut expected = args.expect;
    let mut last = None;
    // One batch when the events fit; otherwise each later batch expects the version the
    // previous one left, so the whole input lands contiguously or stops at a conflict.
    for batch in batches(events)? {
        let appended = client.append(&args.stream, expected, batch).await?;
        expected = ExpectedVersion::Exact(appended.last_version);
        last = Some(appended);
    }
    let appended = last.expect("at least one batch");
    let mut printer = Printer::new(args.common.json);
    if printer.json {
        printer.value(&serde_json::json!({
            "stream": args.stream,
            "events": count,
            "last_version": appended.last_version,
            "last_position": appended.last_position,
        }))
    } else {
        printer.line(&format!(
            "appended {count} event{} to {}: last version {}, position {}",
            if count == 1 { "" } else { "s" },
            args.stream,
            appended.last_version,
            appended.last_position
        ))
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb read user-1
  esdb read user-1 --from 10 --count 5
  esdb read user-1 --from 2026-12-02T17:00:00Z   # the first event committed at or after it
  esdb read user-1 --backward --count 1     # the newest event
  esdb read user-1 --json | jq .data")]
pub struct ReadArgs {
    #[command(flatten)]
    pub common: Common,
    pub stream: String,
    /// First version to read, or a time: RFC 3339 or @epoch_us (forward, the first event at
    /// or after it; backward, the last at or before it) [default: 0, or the newest with
    /// --backward]
    #[arg(long, value_parser = parse_read_start, value_name = "VERSION|TIME")]
    pub from: Option<ReadStart>,
    /// Most events to print [default: all]
    #[arg(long)]
    pub count: Option<u64>,
    /// Newest first
    #[arg(long)]
    pub backward: bool,
}

fn read_options(from: Option<ReadStart>, count: Option<u64>, backward: bool) -> ReadOptions {
    let mut options = if backward {
        ReadOptions::backward()
    } else {
        ReadOptions::forward()
    };
    if let Some(from) = from {
        options.from = from;
    }
    options.limit = count;
    options
}

async fn print_events(events: EventStream, json: bool) -> Result<(), CliError> {
    let mut printer = Printer::new(json);
    let mut events = events;
    while let Some(event) = events.try_next().await? {
        printer.event(&event)?;
    }
    printer.flush()
}

pub async fn read(args: ReadArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let options = read_options(args.from, args.count, args.backward);
    print_events(client.read_stream(&args.stream, options), args.common.json).await
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb read-all
  esdb read-all --from 1000 --count 100
  esdb read-all --from @1764694800000000 --count 10
  esdb read-all --backward --count 10")]
pub struct ReadAllArgs {
    #[command(flatten)]
    pub common: Common,
    /// First position to read, or a time: RFC 3339 or @epoch_us [default: 0, or the newest
    /// with --backward]
    #[arg(long, value_parser = parse_read_start, value_name = "POSITION|TIME")]
    pub from: Option<ReadStart>,
    /// Most events to print [default: all]
    #[arg(long)]
    pub count: Option<u64>,
    /// Newest first
    #[arg(long)]
    pub backward: bool,
}

pub async fn read_all(args: ReadAllArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let options = read_options(args.from, args.count, args.backward);
    print_events(client.read_all(options), args.common.json).await
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb read-types OrderPlaced
  esdb read-types UserCreated,UserRenamed --from 500 --count 20")]
pub struct ReadTypesArgs {
    #[command(flatten)]
    pub common: Common,
    /// Event types, comma-separated
    pub types: String,
    /// First position to consider
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Most events to print [default: all]
    #[arg(long)]
    pub count: Option<u64>,
}

pub async fn read_types(args: ReadTypesArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let types = args.types.split(',').map(str::to_owned).collect();
    print_events(
        client.read_types(types, args.from, args.count),
        args.common.json,
    )
    .await
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb streams
  esdb streams --after user-1 --count 100")]
pub struct StreamsArgs {
    #[command(flatten)]
    pub common: Common,
    /// List ids after this one
    #[arg(long)]
    pub after: Option<String>,
    /// Most ids to print [default: all]
    #[arg(long)]
    pub count: Option<u64>,
}

pub async fn streams(args: StreamsArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let mut printer = Printer::new(args.common.json);
    let mut after = args.after.clone();
    let mut left = args.count.unwrap_or(u64::MAX);
    while left > 0 {
        let page = client
            .streams_page(
                after.as_deref(),
                left.min(esdb_client::protocol::limits::MAX_STREAMS_PAGE),
            )
            .await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for id in &page {
            // Plain ids when piped, for `xargs` and friends; JSON strings when asked.
            if args.common.json {
                printer.value(id)?;
            } else {
                printer.line(id)?;
            }
        }
        left -= page.len() as u64;
        after = Some(last);
    }
    printer.flush()
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints the stream's current version, or -1 when it has no events.

Example:
  esdb version user-1"
)]
pub struct VersionArgs {
    #[command(flatten)]
    pub common: Common,
    pub stream: String,
}

pub async fn version(args: VersionArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let version = client.version(&args.stream).await?;
    let text = version.map_or("-1".to_owned(), |v| v.to_string());
    Printer::new(args.common.json).line(&text)
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Prints true or false.

Example:
  esdb exists user-1")]
pub struct ExistsArgs {
    #[command(flatten)]
    pub common: Common,
    pub stream: String,
}

pub async fn exists(args: ExistsArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let exists = client.exists(&args.stream).await?;
    Printer::new(args.common.json).line(if exists { "true" } else { "false" })
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Soft-deletes the stream and its snapshots; its events stay in $all.

Examples:
  esdb delete user-1
  esdb delete user-1 --expect 7"
)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub common: Common,
    pub stream: String,
    /// What the stream's version must be: any, no_stream, exists or a version
    #[arg(long, default_value = "any", value_parser = parse_expected, value_name = "any|no_stream|exists|N")]
    pub expect: ExpectedVersion,
}

pub async fn delete(args: DeleteArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    client.delete(&args.stream, args.expect).await?;
    Printer::new(args.common.json).note(&format!("deleted {}", args.stream));
    Ok(())
}
