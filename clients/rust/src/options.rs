//! How a [`crate::Client`] connects: the servers, the store, retries and timeouts.

use std::time::Duration;

/// The protocol port a server listens on unless told otherwise.
pub const DEFAULT_SERVER: &str = "127.0.0.1:4350";
/// First pause before a retry; it doubles on each retry up to [`DEFAULT_BACKOFF_MAX_MS`].
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 100;
/// Longest pause between retries.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;
/// Retries after the first attempt (of a connection round or a request) before giving up.
pub const DEFAULT_MAX_RETRIES: u32 = 10;
/// How long establishing one TCP connection (and its greeting) may take.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How long any one reply may take before the connection is deemed dead. Generous: an `AGG`
/// of 100000 events or a read page of 16 MiB is still a fraction of it.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Events a catch-up subscription buffers for a consumer that is slower than delivery; past
/// it the subscription pauses (and resumes from where it was when the consumer catches up).
pub const DEFAULT_SUBSCRIPTION_BUFFER_EVENTS: usize = 4096;
/// Bytes of events a catch-up subscription buffers (events may be up to 1 MiB each), with the
/// same effect past it.
pub const DEFAULT_SUBSCRIPTION_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// What the client authenticates with, sent in `CONNECT` (`Debug` hides the secret).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    User { user: String, pass: String },
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::User { user, .. } => {
                write!(f, "User {{ user: {user:?}, pass: <redacted> }}")
            }
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// TLS to a server started with `--tls-cert`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA(s) that signed the server's certificate.
    pub ca_file: std::path::PathBuf,
    /// PEM certificate and key of this client, for a server started with `--tls-client-ca`.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The name the server's certificate must carry; default: the host of the address.
    pub server_name: Option<String>,
}

/// Exponential backoff with jitter: attempt `n` waits between half and all of
/// `base_ms × 2ⁿ`, capped at `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
    pub max_retries: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base_ms: DEFAULT_BACKOFF_BASE_MS,
            max_ms: DEFAULT_BACKOFF_MAX_MS,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

impl Backoff {
    /// The pause before retry `attempt` (0 for the first retry). The jitter keeps clients that
    /// lost the same server from coming back in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_ms
            .saturating_mul(1u64 << attempt.min(32))
            .min(self.max_ms);
        let half = ceiling / 2;
        Duration::from_millis(half + fastrand::u64(0..=ceiling - half))
    }
}

/// Options of a client. Build with [`ClientOptions::new`] and the `with_` methods, or parse a
/// comma-separated server list with [`ClientOptions::servers`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` of each server, tried round-robin.
    pub servers: Vec<String>,
    /// The store to work in; `None`: the server's default store.
    pub store: Option<String>,
    /// A name for the connection, shown in the server's logs (`CONNECT`).
    pub name: Option<String>,
    /// Sent in every connection's `CONNECT` when the server requires authentication.
    pub credentials: Option<Credentials>,
    /// Connect with TLS (`None`: plain TCP).
    pub tls: Option<TlsOptions>,
    pub backoff: Backoff,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub subscription_buffer_events: usize,
    pub subscription_buffer_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions::new([DEFAULT_SERVER])
    }
}

impl ClientOptions {
    pub fn new<I, S>(servers: I) -> ClientOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientOptions {
            servers: servers.into_iter().map(Into::into).collect(),
            store: None,
            name: None,
            credentials: None,
            tls: None,
            backoff: Backoff::default(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            subscription_buffer_events: DEFAULT_SUBSCRIPTION_BUFFER_EVENTS,
            subscription_buffer_bytes: DEFAULT_SUBSCRIPTION_BUFFER_BYTES,
        }
    }

    /// Options for `host:port[,host:port…]`, as `--server` and `ESDB_SERVER` take them.
    pub fn servers(list: &str) -> ClientOptions {
        ClientOptions::new(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        )
    }

    pub fn with_store(mut self, store: impl Into<String>) -> ClientOptions {
        self.store = Some(store.into());
        self
    }

    pub fn with_name(mut self, name: impl Into<String>) -> ClientOptions {
        self.name = Some(name.into());
        self
    }

    /// Authenticate as `user` with `pass`.
    pub fn with_user(mut self, user: impl Into<String>, pass: impl Into<String>) -> ClientOptions {
        self.credentials = Some(Credentials::User {
            user: user.into(),
            pass: pass.into(),
        });
        self
    }

    /// Authenticate with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> ClientOptions {
        self.credentials = Some(Credentials::Token(token.into()));
        self
    }

    pub fn with_tls(mut self, tls: TlsOptions) -> ClientOptions {
        self.tls = Some(tls);
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> ClientOptions {
        self.backoff = backoff;
        self
    }

    pub fn with_max_retries(mut self, max_retries: u32) -> ClientOptions {
        self.backoff.max_retries = max_retries;
        self
    }

    pub fn with_request_timeout_ms(mut self, timeout_ms: u64) -> ClientOptions {
        self.request_timeout_ms = timeout_ms;
        self
    }

    pub fn with_connect_timeout_ms(mut self, timeout_ms: u64) -> ClientOptions {
        self.connect_timeout_ms = timeout_ms;
        self
    }

    pub fn with_subscription_buffer_events(mut self, events: usize) -> ClientOptions {
        self.subscription_buffer_events = events.max(1);
        self
    }

    pub fn with_subscription_buffer_bytes(mut self, bytes: usize) -> ClientOptions {
        self.subscription_buffer_bytes = bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let backoff = Backoff::default();
        for attempt in 0..40 {
            let ceiling = (100u64 << attempt.min(20)).min(30_000);
            let delay = backoff.delay(attempt).as_millis() as u64;
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{attempt}: {delay}"
            );
        }
    }

    #[test]
    fn server_lists_split_on_commas() {
        let options = ClientOptions::servers("a:1, b:2,,");
        assert_eq!(options.servers, vec!["a:1", "b:2"]);
    }
}
