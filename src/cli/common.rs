//! What every client subcommand shares: where the server is, the exit codes, reading input.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use esdb_client::{Client, ClientOptions, ExpectedVersion, StartFrom};

use crate::cli::context;

/// Where the server is when neither a flag, `ESDB_SERVER` nor a context says.
pub const DEFAULT_SERVER: &str = esdb_client::options::DEFAULT_SERVER;
/// Retries of a one-shot command before it reports the server unreachable (about a second):
/// a person at a terminal should not wait the library's full backoff. Following commands
/// (`tail`, `sub`) keep the library's default.
pub const ONE_SHOT_MAX_RETRIES: u32 = 3;

/// Exit code of a command that failed: an error answer (its wire code printed), an
/// unreachable server, unreadable input.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of a command used wrongly (as clap's own usage errors).
pub const EXIT_USAGE: u8 = 2;

/// Flags of every subcommand that talks to a server.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Common {
    /// Server address HOST:PORT, or a comma-separated list to fail over between
    /// [default: the context's, else 127.0.0.1:4350]
    #[arg(long, env = "ESDB_SERVER", value_name = "HOST:PORT[,…]")]
    pub server: Option<String>,
    /// Store to work in [default: the context's, else the server's first store]
    #[arg(long)]
    pub store: Option<String>,
    /// Saved context to use instead of the selected one (see `esdb context`)
    #[arg(long, env = "ESDB_CONTEXT")]
    pub context: Option<String>,
    /// Print NDJSON, one JSON value per line (the default when stdout is not a terminal)
    #[arg(long)]
    pub json: bool,
    /// User to authenticate as (with --password) when the server requires authentication
    #[arg(long, env = "ESDB_USER")]
    pub user: Option<String>,
    /// The user's password (prefer the environment variable: flags show in `ps`)
    #[arg(long, env = "ESDB_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,
    /// A token to authenticate with, instead of --user and --password
    #[arg(
        long,
        env = "ESDB_TOKEN",
        hide_env_values = true,
        conflicts_with = "user"
    )]
    pub token: Option<Secret>,
    /// PEM file of the CA that signed the server's certificate: connect with TLS
    #[arg(long, env = "ESDB_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for a server that requires client certificates
    #[arg(
        long,
        env = "ESDB_TLS_CLIENT_CERT",
        value_name = "FILE",
        requires = "tls_client_key"
    )]
    pub tls_client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM)
    #[arg(
        long,
        env = "ESDB_TLS_CLIENT_KEY",
        value_name = "FILE",
        requires = "tls_client_cert"
    )]
    pub tls_client_key: Option<PathBuf>,
}

/// A password or token from a flag or the environment; `Debug` does not show it.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(text.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Common {
    /// The client options: flags and environment first, then the context, then defaults.
    pub fn options(&self) -> Result<ClientOptions, CliError> {
        let context = context::resolve(self.context.as_deref())?;
        let server = self
            .server
            .clone()
            .or_else(|| context.as_ref().and_then(|c| c.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let mut options = ClientOptions::servers(&server).with_name("esdb-cli");
        if options.servers.is_empty() {
            return Err(CliError::Usage(format!("no server address in {server:?}")));
        }
        if let Some(store) = self.store.clone().or_else(|| context.and_then(|c| c.store)) {
            options = options.with_store(store);
        }
        match (&self.user, &self.password, &self.token) {
            (Some(user), Some(password), None) => options = options.with_user(user, &password.0),
            (None, None, Some(token)) => options = options.with_token(&token.0),
            (None, None, None) => {}
            _ => return Err(CliError::Usage("--user and --password go together".into())),
        }
        if let Some(ca_file) = &self.tls_ca {
            let client_cert = self
                .tls_client_cert
                .clone()
                .zip(self.tls_client_key.clone());
            options = options.with_tls(esdb_client::TlsOptions {
                ca_file: ca_file.clone(),
                client_cert,
                server_name: None,
            });
        } else if self.tls_client_cert.is_some() {
            return Err(CliError::Usage("--tls-client-cert needs --tls-ca".into()));
        }
        Ok(options)
    }

    /// A connected client for a command that does one thing and exits.
    pub async fn connect(&self) -> Result<Client, CliError> {
        let options = self.options()?.with_max_retries(ONE_SHOT_MAX_RETRIES);
        Ok(Client::connect(options).await?)
    }

    /// A connected client for a command that follows the store until stopped: reconnects with
    /// the library's full backoff.
    pub async fn connect_following(&self) -> Result<Client, CliError> {
        Ok(Client::connect(self.options()?).await?)
    }
}

/// Why a command failed, and so its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command was used wrongly: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The client library failed (an answer of the server carries its wire code): exit 1.
    #[error(transparent)]
    Client(#[from] esdb_client::Error),
    /// Anything else that ends the command: exit 1.
    #[error("{0}")]
    Failed(String),
    /// Stdout was closed (`esdb read s | head`): not an error, exit 0.
    #[error("stdout closed")]
    StdoutClosed,
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> CliError {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::StdoutClosed
        } else {
            CliError::Failed(error.to_string())
        }
    }
}

impl CliError {
    /// Prints the error as `esdb: <code>: <message>` (or `esdb: <message>`) to stderr and
    /// gives the exit code.
    pub fn report(self) -> ExitCode {
        match self {
            CliError::StdoutClosed => ExitCode::SUCCESS,
            CliError::Usage(message) => {
                eprintln!("esdb: {message}");
                ExitCode::from(EXIT_USAGE)
            }
            // The library's Display of an answer is already `<code>: <message>`.
            other => {
                eprintln!("esdb: {other}");
                ExitCode::from(EXIT_ERROR)
            }
        }
    }
}

/// Parses `--expect`: `any`, `no_stream`, `exists` or a version.
pub fn parse_expected(text: &str) -> Result<ExpectedVersion, String> {
    ExpectedVersion::parse(text).map_err(|e| e.message)
}

/// Parses `--from` of a subscription: `start`, `end` or a position.
pub fn parse_start(text: &str) -> Result<StartFrom, String> {
    match text {
        "start" | "origin" => Ok(StartFrom::Origin),
        "end" => Ok(StartFrom::End),
        _ => match text.parse::<u64>() {
            Ok(position) => Ok(StartFrom::Position(position)),
            Err(_) => parse_from_time(text).map(StartFrom::Time).map_err(|_| {
                format!(
                    "--from takes start, end, a position or a time (RFC 3339, or @epoch_us), \
                     not {text:?}"
                )
            }),
        },
    }
}

/// A `--from` time: RFC 3339 (`2026-12-02T17:00:00Z`), or `@` and microseconds since the
/// epoch (a bare number is a version or position). The server's `from_time` finds the first
/// event committed at or after it.
pub fn parse_from_time(text: &str) -> Result<u64, String> {
    let time = text.strip_prefix('@').unwrap_or(text);
    if time.len() == text.len() && time.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is a number, not a time (write @{text})"));
    }
    esdb_protocol::time::parse_time(time).map_err(|e| e.message.clone())
}

/// A `--from` of `read` and `read-all`: a version or position, or a time (see
/// [`parse_from_time`]).
pub fn parse_read_start(text: &str) -> Result<esdb_protocol::ReadStart, String> {
    match text.parse::<u64>() {
        Ok(at) => Ok(esdb_protocol::ReadStart::At(at)),
        Err(_) => parse_from_time(text)
            .map(esdb_protocol::ReadStart::Time)
            .map_err(|_| {
                format!("--from takes a number or a time (RFC 3339, or @epoch_us), not {text:?}")
            }),
    }
}

/// Parses a JSON argument, refusing what does not parse as a usage error.
pub fn parse_json_arg(
    flag: &str,
    text: &str,
) -> Result<Box<serde_json::value::RawValue>, CliError> {
    serde_json::value::RawValue::from_string(text.to_owned())
        .map_err(|e| CliError::Usage(format!("{flag} is not JSON: {e}")))
}

/// The text of `--file`, or stdin when no file is given.
pub fn read_input(file: Option<&PathBuf>) -> Result<String, CliError> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Failed(format!("reading {}: {e}", path.display()))),
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("esdb: reading stdin (one JSON value per line); end with Ctrl-D");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Failed(format!("reading stdin: {e}")))?;
            Ok(text)
        }
    }
}
