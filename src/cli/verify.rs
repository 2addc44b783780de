//! `esdb verify <data-dir>`: the offline integrity check of a data directory.
//!
//! Takes the data directory's lock first (src/server/data_lock.rs), so it refuses while a
//! server runs on it, and no server can start while it reads. Then, for each store (each
//! subdirectory holding a `data.mdb`): the store's records and indexes
//! ([`crate::store::verify`]) and its Raft log's segments ([`crate::raft::log_check`]). It
//! changes nothing. One line per store and log says what was checked, one line per problem
//! names it; the exit code is 0 when nothing was found, 1 otherwise.

use std::path::{Path, PathBuf};

use crate::cli::common::CliError;
use crate::raft::log_check::check_log;
use crate::raft::node::LOG_DIR;
use crate::store::verify::verify_store;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Stop the server first: verify refuses while one holds the data directory.

Example:
  esdb verify ./esdb-data
  store default: format 3, 1200 events, 40 streams, 3600 index entries, 2 snapshots: ok
  log default/raft-log: 1 segment, 310 entries (index 1..310): ok
  verify: no damage found in 1 store

Exit codes: 0 no damage, 1 damage found (each problem printed) or the check could not run."
)]
pub struct VerifyArgs {
    /// The server's --data-dir: one subdirectory per store.
    pub data_dir: PathBuf,
}

pub fn run(args: VerifyArgs) -> Result<(), CliError> {
    let data_dir = &args.data_dir;
    if !data_dir.is_dir() {
        return Err(CliError::Failed(format!(
            "{} is not a directory",
            data_dir.display()
        )));
    }
    let _lock = crate::server::data_lock::acquire(data_dir)
        .map_err(|e| CliError::Failed(format!("verify refused: {e}")))?;
    let stores = store_dirs(data_dir)?;
    if stores.is_empty() {
        return Err(CliError::Failed(format!(
            "{} holds no store (no subdirectory with a data.mdb)",
            data_dir.display()
        )));
    }
    let mut problems = 0u64;
    for (name, dir) in &stores {
        problems += verify_one(name, dir);
    }
    let plural = if stores.len() == 1 { "" } else { "s" };
    if problems == 0 {
        println!("verify: no damage found in {} store{plural}", stores.len());
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "verify: {problems} problem{} found in {} store{plural}",
            if problems == 1 { "" } else { "s" },
            stores.len()
        )))
    }
}

/// Checks one store and its log; prints what it found; returns the number of problems.
fn verify_one(name: &str, dir: &Path) -> u64 {
    let mut problems = 0;
    match verify_store(dir) {
        Ok(report) => {
            let format = report.format.unwrap_or(1);
            let unsealed = if report.checksummed {
                ""
            } else {
                " (records without checksums: structure checked only; the server adds them \
                 when it next opens the store)"
            };
            let verdict = if report.problem_count == 0 {
                "ok".to_owned()
            } else {
                format!("{} problem(s)", report.problem_count)
            };
            println!(
                "store {name}: format {format}, {} events, {} streams, {} index entries, {} \
                 snapshots{unsealed}: {verdict}",
                report.events, report.streams, report.index_entries, report.snapshots
            );
            for problem in &report.problems {
                println!("  DAMAGE store {name}: {problem}");
            }
            if report.problem_count > report.problems.len() as u64 {
                println!(
                    "  … and {} more",
                    report.problem_count - report.problems.len() as u64
                );
            }
            problems += report.problem_count;
        }
        Err(error) => {
            println!("  DAMAGE store {name}: cannot be read: {error}");
            problems += 1;
        }
    }
    let log_dir = dir.join(LOG_DIR);
    if !log_dir.is_dir() {
        // A store written before the Raft log (format 1), never opened by a later server.
        println!("log {name}/{LOG_DIR}: none");
        return problems;
    }
    match check_log(&log_dir) {
        Ok(report) => {
            let range = match (report.first_index, report.last_index) {
                (Some(first), Some(last)) => format!(" (index {first}..{last})"),
                _ => String::new(),
            };
            let verdict = if report.problems.is_empty() {
                "ok".to_owned()
            } else {
                format!("{} problem(s)", report.problems.len())
            };
            println!(
                "log {name}/{LOG_DIR}: {} segment{}, {} entries{range}: {verdict}",
                report.segments,
                if report.segments == 1 { "" } else { "s" },
                report.entries
            );
            for problem in &report.problems {
                println!("  DAMAGE log {name}/{LOG_DIR}: {problem}");
            }
            problems += report.problems.len() as u64;
        }
        Err(error) => {
            println!("  DAMAGE log {name}/{LOG_DIR}: cannot be read: {error}");
            problems += 1;
        }
    }
    problems
}

/// The stores of a data directory, by name: subdirectories holding an LMDB environment.
fn store_dirs(data_dir: &Path) -> Result<Vec<(String, PathBuf)>, CliError> {
    let listing = std::fs::read_dir(data_dir)
        .map_err(|e| CliError::Failed(format!("reading {}: {e}", data_dir.display())))?;
    let mut stores = Vec::new();
    for entry in listing {
        let path = entry
            .map_err(|e| CliError::Failed(format!("reading {}: {e}", data_dir.display())))?
            .path();
        if path.join("data.mdb").is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            stores.push((name, path));
        }
    }
    stores.sort();
    Ok(stores)
}
