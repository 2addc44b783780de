//! `esdb stats`: counts per store.

use crate::cli::common::{CliError, Common};
use crate::cli::output::Printer;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb stats
  esdb stats --json | jq .stores.default.events")]
pub struct StatsArgs {
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(args: StatsArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let stats = client.stats().await?;
    Printer::new(args.common.json).value(&stats)
}
