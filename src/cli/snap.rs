//! `esdb snap save|load|list|delete`: snapshots of a stream's state.

use std::path::PathBuf;

use esdb_client::SnapshotData;

use crate::cli::common::{parse_json_arg, read_input, CliError, Common};
use crate::cli::output::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum SnapCommand {
    /// Save a snapshot of a stream at a version (its data from --data, --file or stdin).
    #[command(after_help = "Examples:
  esdb snap save acct-1 2 --data '{\"balance\":12}'
  esdb agg acct-1 --raw | esdb snap save acct-1 2 --keep 3")]
    Save {
        #[command(flatten)]
        common: Common,
        stream: String,
        /// The stream version the state reflects (at most its current version)
        version: u64,
        /// The state, as JSON
        #[arg(long, conflicts_with = "file")]
        data: Option<String>,
        /// Read the state from this file instead of stdin
        #[arg(long)]
        file: Option<PathBuf>,
        /// Metadata, a JSON object
        #[arg(long)]
        metadata: Option<String>,
        /// Then keep only the stream's newest N snapshots
        #[arg(long, value_name = "N")]
        keep: Option<u64>,
    },
    /// Print the newest snapshot of a stream, or the one at --version.
    #[command(after_help = "Examples:
  esdb snap load acct-1
  esdb snap load acct-1 --version 2 --json | jq .data")]
    Load {
        #[command(flatten)]
        common: Common,
        stream: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// List a stream's snapshots, oldest first.
    #[command(after_help = "Example:\n  esdb snap list acct-1")]
    List {
        #[command(flatten)]
        common: Common,
        stream: String,
    },
    /// Delete a stream's snapshots, or only the one at --version.
    #[command(
        after_help = "Examples:\n  esdb snap delete acct-1\n  esdb snap delete acct-1 --version 2"
    )]
    Delete {
        #[command(flatten)]
        common: Common,
        stream: String,
        #[arg(long)]
        version: Option<u64>,
    },
}

pub async fn run(command: SnapCommand) -> Result<(), CliError> {
    match command {
        SnapCommand::Save {
            common,
            stream,
            version,
            data,
            file,
            metadata,
            keep,
        } => {
            let data = match data {
                Some(text) => parse_json_arg("--data", &text)?,
                None => {
                    let text = read_input(file.as_ref())?;
                    parse_json_arg("the snapshot input", text.trim())?
                }
            };
            let mut snapshot = SnapshotData::from_raw(data);
            if let Some(metadata) = metadata {
                snapshot.metadata = Some(parse_json_arg("--metadata", &metadata)?);
            }
            snapshot.keep = keep;
            let client = common.connect().await?;
            client.snapshots().save(&stream, version, &snapshot).await?;
            Printer::new(common.json).note(&format!("saved a snapshot of {stream} at {version}"));
            Ok(())
        }
        SnapCommand::Load {
            common,
            stream,
            version,
        } => {
            let client = common.connect().await?;
            let snapshots = client.snapshots();
            let snapshot = match version {
                Some(version) => snapshots.load_at(&stream, version).await?,
                None => snapshots.load(&stream).await?,
            };
            let Some(snapshot) = snapshot else {
                let at = version.map_or(String::new(), |v| format!(" at version {v}"));
                return Err(CliError::Failed(format!(
                    "snapshot_not_found: no snapshot of stream {stream}{at}"
                )));
            };
            Printer::new(common.json).snapshot(&snapshot)
        }
        SnapCommand::List { common, stream } => {
            let client = common.connect().await?;
            let mut printer = Printer::new(common.json);
            for snapshot in client.snapshots().list(&stream).await? {
                printer.snapshot(&snapshot)?;
            }
            printer.flush()
        }
        SnapCommand::Delete {
            common,
            stream,
            version,
        } => {
            let client = common.connect().await?;
            match version {
                Some(version) => client.snapshots().delete_at(&stream, version).await?,
                None => client.snapshots().delete(&stream).await?,
            }
            Ok(())
        }
    }
}
