//! `esdb agg`: a stream's state folded on the server.

use esdb_client::{AggregateOptions, FoldOrder};

use crate::cli::common::{CliError, Common};
use crate::cli::output::Printer;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints the state as JSON; on a terminal, the stream version it reflects \
first (on stderr).

Examples:
  esdb agg acct-1
  esdb agg acct-1 --from-snapshot
  esdb agg acct-1 --raw | esdb snap save acct-1 \"$(esdb version acct-1)\""
)]
pub struct AggArgs {
    #[command(flatten)]
    pub common: Common,
    pub stream: String,
    /// Start from the newest snapshot and fold only the events after it
    #[arg(long)]
    pub from_snapshot: bool,
    /// Fold newest to oldest: older events win
    #[arg(long)]
    pub foldr: bool,
    /// Keep tagged values ({"$sum": n}) instead of finalizing them
    #[arg(long)]
    pub raw: bool,
}

pub async fn run(args: AggArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let options = AggregateOptions {
        from_snapshot: args.from_snapshot,
        order: if args.foldr {
            FoldOrder::Right
        } else {
            FoldOrder::Left
        },
        raw: args.raw,
    };
    let aggregate = client.aggregate(&args.stream, options).await?;
    let mut printer = Printer::new(args.common.json);
    printer.note(&format!("{} at version {}", args.stream, aggregate.version));
    printer.value(&aggregate.state)
}
