//! SIGHUP: re-reads the config file's `[auth]` section (users, tokens, permissions), its
//! `[quotas]`, and the TLS certificates and keys (client ports', inter-node), without dropping
//! connections. A connection whose principal was
//! removed or whose credential changed is closed (see `Gate::revoked`); a file that does not
//! parse changes nothing and is logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, AuthSection};
use crate::store::quota::{self, Quota, QuotaSection};
use crate::tls::CertificateReloader;

/// Listens for SIGHUP until `cancel`. `config_path`: the file the server was started with
/// (without one there are no users to reload).
pub fn spawn_on_sighup(
    config_path: Option<PathBuf>,
    auth: Arc<Auth>,
    certificates: Vec<Arc<CertificateReloader>>,
    quotas: Vec<Arc<Quota>>,
    cancel: CancellationToken,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP handler: {e}"))?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                received = hangups.recv() => if received.is_none() { return },
            }
            reload(config_path.as_deref(), &auth, &certificates);
            if let Some(path) = config_path.as_deref() {
                reload_quotas(path, &quotas);
            }
        }
    });
    Ok(())
}

fn reload(config_path: Option<&Path>, auth: &Auth, certificates: &[Arc<CertificateReloader>]) {
    if let Some(path) = config_path {
        match read_auth_section(path).and_then(|section| auth.reload(&section)) {
            Ok(()) => tracing::info!(config = %path.display(), "reloaded users and tokens"),
            Err(error) => tracing::error!(%error, "reload refused; keeping the old users"),
        }
    }
    for certificate in certificates {
        match certificate.reload() {
            Ok(()) => tracing::info!("reloaded the TLS certificate"),
            Err(error) => tracing::error!(%error, "TLS reload refused; keeping the old one"),
        }
    }
}

/// Re-reads `[quotas]` and applies it to every store; a section that does not parse or names
/// an unknown store changes nothing.
fn reload_quotas(path: &Path, quotas: &[Arc<Quota>]) {
    let stores: Vec<String> = quotas.iter().map(|q| q.store().to_owned()).collect();
    let section = read_quota_section(path)
        .and_then(|section| quota::validate(&section, &stores).map(|()| section));
    match section {
        Ok(section) => {
            for store_quota in quotas {
                store_quota.set_limits(quota::limits_for(&section, store_quota.store()));
            }
            tracing::info!(config = %path.display(), "reloaded quotas");
        }
        Err(error) => tracing::error!(%error, "quota reload refused; keeping the old quotas"),
    }
}

/// The `[quotas]` section of a config file (empty if it has none).
pub fn read_quota_section(path: &Path) -> Result<QuotaSection, String> {
    read_section(path, "quotas")
}

/// The `[auth]` section of a config file (empty if it has none).
pub fn read_auth_section(path: &Path) -> Result<AuthSection, String> {
    read_section(path, "auth")
}

/// One top-level table of a config file, the rest ignored (it was checked at start, and only
/// these sections are re-read).
fn read_section<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    key: &str,
) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading config {}: {e}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
    match table.remove(key) {
        None => Ok(T::default()),
        Some(section) => section
            .try_into()
            .map_err(|e| format!("config {} [{key}]: {e}", path.display())),
    }
}
