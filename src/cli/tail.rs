//! `esdb tail`: follow events as they are committed (a catch-up subscription).

use esdb_client::{Selector, StartFrom, SubscriptionEvent};
use futures::StreamExt;

use crate::cli::common::{parse_start, CliError, Common};
use crate::cli::output::Printer;
use crate::cli::selector::SelectorArgs;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Follows until interrupted (or --count events), reconnecting when the \
connection is lost without missing or repeating an event. One event per line: readable on a \
terminal, NDJSON when piped or with --json.

Examples:
  esdb tail --all
  esdb tail user-1 --from start
  esdb tail --type OrderPlaced,OrderShipped
  esdb tail --pattern 'user-*' --json | jq .data
  esdb tail --payload '{\"data\":{\"country\":\"NL\"}}' --from 1000 --count 10"
)]
pub struct TailArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// Where to start: start, end, a position, or a time (RFC 3339 or @epoch_us: the first
    /// event committed at or after it)
    #[arg(long, default_value = "end", value_parser = parse_start, value_name = "start|end|N|TIME")]
    pub from: StartFrom,
    /// Stop after this many events
    #[arg(long)]
    pub count: Option<u64>,
}

pub async fn run(args: TailArgs) -> Result<(), CliError> {
    let selector = args
        .selector
        .selector()?
        .unwrap_or_else(|| Selector::Stream("$all".to_owned()));
    let mut printer = Printer::live(args.common.json);
    if args.count == Some(0) {
        return Ok(());
    }
    let client = args.common.connect_following().await?;
    let mut subscription = client.subscribe(selector, args.from).await?;
    let mut printed = 0;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            item = subscription.next() => match item {
                Some(Ok(SubscriptionEvent::Event(event))) => {
                    printer.event(&event)?;
                    printed += 1;
                    if args.count == Some(printed) {
                        break;
                    }
                }
                Some(Ok(SubscriptionEvent::Live)) => printer.note("(following live)"),
                // A stored record the server cannot parse (payload selectors only): always
                // said, never a silent gap in the output.
                Some(Ok(SubscriptionEvent::Unreadable(unreadable))) => {
                    eprintln!("esdb tail: {unreadable}");
                }
                Some(Err(error)) => return Err(error.into()),
                None => break,
            },
            _ = &mut interrupted => break,
        }
    }
    let _ = subscription.unsubscribe().await;
    Ok(())
}
