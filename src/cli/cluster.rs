//! `esdb cluster status`: how a node sees each store's Raft group.

use crate::cli::common::{CliError, Common};
use crate::cli::output::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Print the members, their roles, the leader, the term, and each member's applied index
    /// and replication lag (as the node asked sees them; the leader knows the lag).
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb cluster status --server 127.0.0.1:4351
  esdb cluster status --json | jq .stores.default.leader_id")]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(command: ClusterCommand) -> Result<(), CliError> {
    match command {
        ClusterCommand::Status(args) => {
            let client = args.common.connect().await?;
            let status = client.cluster().await?;
            Printer::new(args.common.json).value(&status)
        }
    }
}
