//! `esdb sub`: a consumer of a persistent subscription that prints and acknowledges each
//! event, or runs a command per event and acknowledges when it succeeds.

use std::process::Stdio;

use esdb_client::{ErrorCode, NackAction, RecordedEvent, StartFrom, SubscriptionOptions};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::cli::common::{parse_start, CliError, Common};
use crate::cli::output::Printer;
use crate::cli::selector::SelectorArgs;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The first `esdb sub NAME` with a selector creates the subscription; \
later ones may leave the selector out. Delivery is at least once; events are handled one at a \
time, in order. With --exec, the command runs in `sh -c` with the event's JSON on stdin and \
ESDB_STREAM, ESDB_VERSION, ESDB_POSITION, ESDB_EVENT_TYPE, ESDB_EVENT_ID set; exit status 0 \
acknowledges the event, anything else nacks it (--nack: retry, skip or park).

Examples:
  esdb sub billing --type OrderPlaced
  esdb sub billing --exec './handle-order.sh' --nack park
  esdb sub audit --all --from end --json >> audit.ndjson
  esdb sub mailer --pattern 'user-*' --count 10"
)]
pub struct SubArgs {
    #[command(flatten)]
    pub common: Common,
    /// The persistent subscription's name
    pub name: String,
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// Where a new subscription starts: start, end, a position, or a time (RFC 3339 or
    /// @epoch_us: the first event committed at or after it)
    #[arg(long, default_value = "start", value_parser = parse_start, value_name = "start|end|N|TIME")]
    pub from: StartFrom,
    /// Run this shell command per event instead of printing it
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// What to do with an event whose command failed
    #[arg(long, default_value = "retry", value_parser = parse_nack, value_name = "retry|skip|park")]
    pub nack: NackAction,
    /// Stop after handling this many deliveries
    #[arg(long)]
    pub count: Option<u64>,
    /// A new subscription's in-flight window
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// A new subscription's time to acknowledge before an event is redelivered
    #[arg(long)]
    pub ack_timeout_ms: Option<u64>,
    /// A new subscription's redeliveries before an event is parked
    #[arg(long)]
    pub max_retries: Option<u32>,
}

fn parse_nack(text: &str) -> Result<NackAction, String> {
    match text {
        "retry" => Ok(NackAction::Retry),
        "skip" => Ok(NackAction::Skip),
        "park" => Ok(NackAction::Park),
        _ => Err(format!("--nack takes retry, skip or park, not {text:?}")),
    }
}

pub async fn run(args: SubArgs) -> Result<(), CliError> {
    let client = args.common.connect_following().await?;
    let selector = match args.selector.selector()? {
        Some(selector) => selector,
        None => match client.persistent_subscriptions().get(&args.name).await {
            Ok(info) => info.selector,
            Err(error) if error.code() == Some(ErrorCode::SubscriptionNotFound) => {
                return Err(CliError::Usage(format!(
                    "no subscription {} yet: give a stream, --all, --type, --pattern or \
                     --payload to create it",
                    args.name
                )))
            }
            Err(error) => return Err(error.into()),
        },
    };
    let defaults = SubscriptionOptions::default();
    let options = SubscriptionOptions {
        start: args.from,
        max_in_flight: args.max_in_flight.unwrap_or(defaults.max_in_flight),
        ack_timeout_ms: args.ack_timeout_ms.unwrap_or(defaults.ack_timeout_ms),
        max_retries: args.max_retries.unwrap_or(defaults.max_retries),
    };
    let mut printer = Printer::live(args.common.json);
    if args.count == Some(0) {
        return Ok(());
    }
    let mut subscription = client
        .subscribe_persistent(&args.name, selector, options)
        .await?;
    let mut handled = 0;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            item = subscription.next() => match item {
                Some(item) => item?,
                None => break,
            },
            _ = &mut interrupted => break,
        };
        match &args.exec {
            None => {
                printer.event(&event)?;
                subscription.ack(&event).await?;
            }
            Some(command) => {
                if run_command(command, &event).await? {
                    subscription.ack(&event).await?;
                } else {
                    subscription.nack(&event, args.nack).await?;
                }
            }
        }
        handled += 1;
        if args.count == Some(handled) {
            break;
        }
    }
    let _ = subscription.unsubscribe().await;
    Ok(())
}

/// Runs the command for one event; whether it exited 0.
async fn run_command(command: &str, event: &RecordedEvent) -> Result<bool, CliError> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("ESDB_STREAM", &event.stream_id)
        .env("ESDB_VERSION", event.version.to_string())
        .env("ESDB_POSITION", event.position.to_string())
        .env("ESDB_EVENT_TYPE", &event.event_type)
        .env("ESDB_EVENT_ID", event.event_id.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Failed(format!("running {command:?}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin closes it early: not a failure of ours.
        let _ = stdin
            .write_all(format!("{}\n", event.to_json()).as_bytes())
            .await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| CliError::Failed(format!("waiting for {command:?}: {e}")))?;
    if !status.success() {
        eprintln!(
            "esdb: {command:?} failed ({status}) for {}@{} (position {})",
            event.stream_id, event.version, event.position
        );
    }
    Ok(status.success())
}
