//! Authentication and permissions.
//!
//! - [`users`]: the `[auth]` config section, principals (users, tokens) and their grants.
//! - [`password`]: argon2id hashes (`esdb passwd`) and constant-time token comparison.
//! - [`limiter`]: repeated failures from one address wait longer and longer.
//! - [`gate`]: per connection, what each request needs before it reaches dispatch.
//! - [`reload`]: SIGHUP re-reads users, tokens and permissions (and TLS certificates).
//!
//! Authentication is on when the config lists at least one user or token. Then a connection
//! must `CONNECT` with credentials before anything but `PING`, `PONG` and `HELP`; the HTTP
//! endpoints but `/health`, `/ready` and the console's static page want a bearer token.

pub mod gate;
pub mod limiter;
pub mod password;
pub mod reload;
pub mod users;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use esdb_protocol::ops::session::ConnectOptions;

pub use gate::Gate;
pub use users::{AuthSection, Permission, Principal, Registry, StreamScope};

/// The server's credentials, shared by every connection.
pub struct Auth {
    /// Fixed at start: a reload may change who may connect, not whether one must.
    enabled: bool,
    registry: watch::Sender<Arc<Registry>>,
    limiter: limiter::FailureLimiter,
}

impl Auth {
    pub fn new(section: &AuthSection) -> Result<Auth, String> {
        let registry = Registry::build(section)?;
        Ok(Auth {
            enabled: registry.enabled(),
            registry: watch::Sender::new(Arc::new(registry)),
            limiter: limiter::FailureLimiter::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn current(&self) -> Arc<Registry> {
        self.registry.borrow().clone()
    }

    /// Notified on each reload (connections re-check their principal).
    pub fn watch(&self) -> watch::Receiver<Arc<Registry>> {
        self.registry.subscribe()
    }

    /// Replaces users, tokens and permissions. Refused when it would switch authentication
    /// on or off (that takes a restart).
    pub fn reload(&self, section: &AuthSection) -> Result<(), String> {
        let registry = Registry::build(section)?;
        if registry.enabled() != self.enabled {
            return Err(format!(
                "authentication is {} and a reload cannot switch it {}: restart instead",
                if self.enabled { "on" } else { "off" },
                if self.enabled { "off" } else { "on" }
            ));
        }
        self.registry.send_replace(Arc::new(registry));
        Ok(())
    }

    /// Checks `CONNECT`'s credentials. On failure, returns how long to wait before answering
    /// (longer for an address that keeps failing); the failure is counted.
    pub async fn authenticate(
        &self,
        options: &ConnectOptions,
        address: Option<IpAddr>,
        transport: &str,
    ) -> Result<Arc<Principal>, Duration> {
        let registry = self.current();
        let found = match (&options.user, &options.pass, &options.token) {
            (None, None, Some(token)) => registry.token(token),
            (Some(user), Some(pass), None) => {
                let principal = registry.user(user).cloned();
                let hash = principal.as_ref().and_then(|p| p.password_hash.clone());
                let pass = pass.clone();
                let matched =
                    tokio::task::spawn_blocking(move || password::verify(&pass, hash.as_deref()))
                        .await
                        .unwrap_or(false);
                principal.filter(|_| matched)
            }
            _ => None,
        };
        match found {
            Some(principal) => Ok(principal),
            None => Err(self.failed(address, transport)),
        }
    }

    /// The user a verified client certificate's common name authenticates as (`None`: the
    /// connection authenticates with `CONNECT` as any other).
    pub fn certificate_user(&self, common_name: &str) -> Option<Arc<Principal>> {
        self.current().certificate_user(common_name)
    }

    /// An HTTP `Authorization` header's bearer token's principal; a failure is counted.
    pub fn bearer(&self, header: Option<&str>, transport: &str) -> Option<Arc<Principal>> {
        let token = header.and_then(|value| value.strip_prefix("Bearer "))?;
        let found = self.current().token(token.trim());
        if found.is_none() {
            self.failed(None, transport);
        }
        found
    }

    fn failed(&self, address: Option<IpAddr>, transport: &str) -> Duration {
        crate::metrics::metrics()
            .auth_failures
            .with_label_values(&[transport])
            .inc();
        self.limiter.failed(address)
    }
}
