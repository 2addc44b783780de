//! `esdb cluster status|add|remove`: how a node sees each store's Raft group, and
//! membership changes.

use esdb_protocol::ops::cluster::MemberChange;

use crate::cli::common::{CliError, Common};
use crate::cli::output::Printer;

/// How long `add`/`remove` wait for the server: its own limit on a change
/// (`cluster::membership::MEMBERSHIP_CHANGE_TIMEOUT_MS`), the wait for a leader, and a margin.
pub const CHANGE_REQUEST_TIMEOUT_MS: u64 = crate::cluster::membership::MEMBERSHIP_CHANGE_TIMEOUT_MS
    + crate::cluster::LEADER_WAIT_TIMEOUT_MS
    + 5_000;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Print the members, their roles, the leader, the term, and each member's applied index
    /// and replication lag (as the node asked sees them; the leader knows the lag).
    Status(StatusArgs),
    /// Add a node to every store's group: a learner first, a voter once it has caught up (it
    /// must be running, started with --node-id, --raft and the cluster secret). Prints the
    /// new membership.
    Add(AddArgs),
    /// Remove a node from every store's group. Prints the new membership.
    Remove(RemoveArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb cluster status --server 127.0.0.1:4351
  esdb cluster status --json | jq .stores.default.leader_id")]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb cluster add 4 10.0.0.4:7350 10.0.0.4:4350 --server 10.0.0.1:4350")]
pub struct AddArgs {
    /// The new node's --node-id.
    pub node_id: u64,
    /// The new node's --raft address (where the members reach it).
    pub raft_addr: String,
    /// The new node's client address, told to clients until it reports its own.
    pub client_addr: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb cluster remove 2 --server 10.0.0.1:4350")]
pub struct RemoveArgs {
    /// The node's id.
    pub node_id: u64,
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
        ClusterCommand::Add(args) => {
            let change = MemberChange::Add {
                node_id: args.node_id,
                raft_addr: args.raft_addr,
                client_addr: args.client_addr,
            };
            change_members(&args.common, change).await
        }
        ClusterCommand::Remove(args) => {
            let change = MemberChange::Remove {
                node_id: args.node_id,
            };
            change_members(&args.common, change).await
        }
    }
}

async fn change_members(common: &Common, change: MemberChange) -> Result<(), CliError> {
    let options = common
        .options()?
        .with_max_retries(crate::cli::common::ONE_SHOT_MAX_RETRIES)
        .with_request_timeout_ms(CHANGE_REQUEST_TIMEOUT_MS);
    let client = esdb_client::Client::connect(options).await?;
    let status = client.cluster_change(change).await?;
    Printer::new(common.json).value(&status)
}
