//! `esdb context save|select|list|rm`: named connection settings, as the nats CLI keeps them.
//!
//! A context is `<config>/esdb/context/<name>.json` (`{"server":…,"store":…,"description":…}`)
//! and the selected one's name is in `<config>/esdb/context.txt`, where `<config>` is
//! `$XDG_CONFIG_HOME`, else `~/.config`. `--server`, `ESDB_SERVER` and `--store` override the
//! context; `--context NAME` (or `ESDB_CONTEXT`) picks another one for one command.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cli::common::CliError;

/// Longest context name (it names a file).
const MAX_CONTEXT_NAME_BYTES: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Context {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ContextCommand {
    /// Save (or replace) a context.
    #[command(
        after_help = "Examples:\n  esdb context save prod --server db1:4350,db2:4350 --store billing --select\n  esdb context save local --server 127.0.0.1:4350"
    )]
    Save {
        name: String,
        /// Server address(es), HOST:PORT[,HOST:PORT…]
        #[arg(long)]
        server: Option<String>,
        /// Store to work in
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Select it too
        #[arg(long)]
        select: bool,
    },
    /// Make a context the one commands use.
    #[command(after_help = "Example:\n  esdb context select prod")]
    Select { name: String },
    /// List the contexts; the selected one is marked with *.
    #[command(after_help = "Example:\n  esdb context list")]
    List,
    /// Delete a context.
    #[command(after_help = "Example:\n  esdb context rm old")]
    Rm { name: String },
}

fn config_dir() -> Result<PathBuf, CliError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(CliError::Failed(
                    "neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep contexts".into(),
                ))
            }
        },
    };
    Ok(base.join("esdb"))
}

fn validate_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CONTEXT_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "a context name is 1 to {MAX_CONTEXT_NAME_BYTES} letters, digits, _, - or ., not {name:?}"
        )))
    }
}

fn context_path(name: &str) -> Result<PathBuf, CliError> {
    validate_name(name)?;
    Ok(config_dir()?.join("context").join(format!("{name}.json")))
}

fn selected_path() -> Result<PathBuf, CliError> {
    Ok(config_dir()?.join("context.txt"))
}

fn selected() -> Result<Option<String>, CliError> {
    match std::fs::read_to_string(selected_path()?) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|name| !name.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Failed(format!(
            "reading the selected context: {e}"
        ))),
    }
}

pub fn load(name: &str) -> Result<Context, CliError> {
    let path = context_path(name)?;
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CliError::Usage(format!("no context named {name}")),
        _ => CliError::Failed(format!("reading {}: {e}", path.display())),
    })?;
    serde_json::from_str(&text).map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))
}

/// The context a command uses: the one named, else the selected one, else none.
pub fn resolve(named: Option<&str>) -> Result<Option<Context>, CliError> {
    match named {
        Some(name) => load(name).map(Some),
        None => match selected()? {
            Some(name) => load(&name).map(Some),
            None => Ok(None),
        },
    }
}

fn write_file(path: &PathBuf, text: &str) -> Result<(), CliError> {
    let failed = |e: std::io::Error| CliError::Failed(format!("writing {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    // Written aside and renamed, so a crash never leaves half a file.
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&temp, path).map_err(failed)
}

pub fn run(command: ContextCommand) -> Result<(), CliError> {
    match command {
        ContextCommand::Save {
            name,
            server,
            store,
            description,
            select,
        } => {
            let context = Context {
                description,
                server,
                store,
            };
            let text = serde_json::to_string_pretty(&context).expect("context serialises");
            write_file(&context_path(&name)?, &format!("{text}\n"))?;
            if select {
                write_file(&selected_path()?, &format!("{name}\n"))?;
            }
            Ok(())
        }
        ContextCommand::Select { name } => {
            load(&name)?;
            write_file(&selected_path()?, &format!("{name}\n"))
        }
        ContextCommand::List => {
            let dir = config_dir()?.join("context");
            let mut names: Vec<String> = match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .filter_map(|entry| entry.ok())
                    .filter_map(|entry| {
                        let name = entry.file_name().into_string().ok()?;
                        name.strip_suffix(".json").map(str::to_owned)
                    })
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(CliError::Failed(format!("{}: {e}", dir.display()))),
            };
            names.sort();
            let selected = selected()?;
            let mut out = std::io::stdout().lock();
            for name in names {
                let context = load(&name)?;
                let mark = if selected.as_deref() == Some(name.as_str()) {
                    "*"
                } else {
                    " "
                };
                let server = context.server.as_deref().unwrap_or("-");
                let store = context.store.as_deref().unwrap_or("-");
                let description = context.description.as_deref().unwrap_or("");
                writeln!(out, "{mark} {name}\t{server}\t{store}\t{description}")?;
            }
            Ok(())
        }
        ContextCommand::Rm { name } => {
            let path = context_path(&name)?;
            std::fs::remove_file(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => CliError::Usage(format!("no context named {name}")),
                _ => CliError::Failed(format!("removing {}: {e}", path.display())),
            })?;
            if selected()?.as_deref() == Some(name.as_str()) {
                let _ = std::fs::remove_file(selected_path()?);
            }
            Ok(())
        }
    }
}
