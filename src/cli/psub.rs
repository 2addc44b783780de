//! `esdb psub list|get|delete|parked|replay`: managing persistent subscriptions.

use crate::cli::common::{CliError, Common};
use crate::cli::output::Printer;

/// Parked events `psub parked` asks for at a time.
const PARKED_PAGE: u64 = 1000;

#[derive(Debug, clap::Subcommand)]
pub enum PsubCommand {
    /// List the store's persistent subscriptions.
    #[command(after_help = "Example:\n  esdb psub list")]
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Print one subscription: selector, options, checkpoint, parked count.
    #[command(after_help = "Example:\n  esdb psub get billing")]
    Get {
        #[command(flatten)]
        common: Common,
        name: String,
    },
    /// Delete a subscription with its checkpoint and parked events.
    #[command(
        after_help = "Examples:\n  esdb psub delete billing\n  esdb psub delete billing --type stream"
    )]
    Delete {
        #[command(flatten)]
        common: Common,
        name: String,
        /// Only if its selector is of this type (stream, event_type, event_pattern, event_payload)
        #[arg(long = "type")]
        type_name: Option<String>,
    },
    /// Print the parked events of a subscription.
    #[command(
        after_help = "Examples:\n  esdb psub parked billing\n  esdb psub parked billing --json | jq .event_id"
    )]
    Parked {
        #[command(flatten)]
        common: Common,
        name: String,
        /// First position to list
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most events to print [default: all]
        #[arg(long)]
        count: Option<u64>,
    },
    /// Deliver every parked event of a subscription again.
    #[command(after_help = "Example:\n  esdb psub replay billing")]
    Replay {
        #[command(flatten)]
        common: Common,
        name: String,
    },
}

pub async fn run(command: PsubCommand) -> Result<(), CliError> {
    match command {
        PsubCommand::List { common } => {
            let client = common.connect().await?;
            let mut printer = Printer::new(common.json);
            for info in client.persistent_subscriptions().list().await? {
                if printer.json {
                    printer.value(&info)?;
                } else {
                    printer.line(&format!(
                        "{}\t{} {}\tcheckpoint {}\tparked {}",
                        info.name,
                        info.selector.type_name(),
                        info.selector.text(),
                        info.checkpoint,
                        info.parked
                    ))?;
                }
            }
            printer.flush()
        }
        PsubCommand::Get { common, name } => {
            let client = common.connect().await?;
            let info = client.persistent_subscriptions().get(&name).await?;
            Printer::new(common.json).value(&info)
        }
        PsubCommand::Delete {
            common,
            name,
            type_name,
        } => {
            let client = common.connect().await?;
            let psub = client.persistent_subscriptions();
            match type_name {
                Some(type_name) => psub.delete_of_type(&name, &type_name).await?,
                None => psub.delete(&name).await?,
            }
            Ok(())
        }
        PsubCommand::Parked {
            common,
            name,
            from,
            count,
        } => {
            let client = common.connect().await?;
            let mut printer = Printer::new(common.json);
            let mut from = from;
            let mut left = count.unwrap_or(u64::MAX);
            while left > 0 {
                let page = client
                    .persistent_subscriptions()
                    .parked(&name, from, left.min(PARKED_PAGE))
                    .await?;
                let Some(last) = page.last().map(|e| e.position) else {
                    break;
                };
                for event in &page {
                    printer.event(event)?;
                }
                left = left.saturating_sub(page.len() as u64);
                from = last + 1;
            }
            printer.flush()
        }
        PsubCommand::Replay { common, name } => {
            let client = common.connect().await?;
            client.persistent_subscriptions().replay(&name).await?;
            Ok(())
        }
    }
}
