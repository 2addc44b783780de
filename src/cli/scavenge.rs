//! `esdb scavenge`: start a scavenge of the store (removing what deletes and stream limits
//! hide), show its progress, or wait for it to finish.

use std::time::{Duration, Instant};

use crate::cli::common::{CliError, Common};
use crate::cli::output::Printer;

/// How often `--wait` asks for the state.
const WAIT_POLL_MS: u64 = 200;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb scavenge                 # start one (or show the running one)
  esdb scavenge --status        # how far it got
  esdb scavenge --wait          # start, then wait until it is done")]
pub struct ScavengeArgs {
    /// Only show the state; start nothing.
    #[arg(long)]
    pub status: bool,
    /// Wait until the scavenge is done, then print its final state.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (exit 1).
    #[arg(long, default_value_t = 3600)]
    pub wait_timeout_secs: u64,
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(args: ScavengeArgs) -> Result<(), CliError> {
    let client = args.common.connect().await?;
    let mut state = client.scavenge(args.status).await?;
    if args.wait {
        let deadline = Instant::now() + Duration::from_secs(args.wait_timeout_secs);
        while state["state"] == "running" {
            if Instant::now() >= deadline {
                return Err(CliError::Failed(format!(
                    "the scavenge is still running after {}s: {state}",
                    args.wait_timeout_secs
                )));
            }
            tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
            state = client.scavenge(true).await?;
        }
    }
    Printer::new(args.common.json).value(&state)
}
