//! SIGHUP: re-reads the config file's `[auth]` section (users, tokens, permissions) and the
//! TLS certificate and key, without dropping connections. A connection whose principal was
//! removed or whose credential changed is closed (see `Gate::revoked`); a file that does not
//! parse changes nothing and is logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, AuthSection};
use crate::tls::CertificateReloader;

/// Listens for SIGHUP until `cancel`. `config_path`: the file the server was started with
/// (without one there are no users to reload).
pub fn spawn_on_sighup(
    config_path: Option<PathBuf>,
    auth: Arc<Auth>,
    certificates: Option<Arc<CertificateReloader>>,
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
            reload(config_path.as_deref(), &auth, certificates.as_deref());
        }
    });
    Ok(())
}

fn reload(config_path: Option<&Path>, auth: &Auth, certificates: Option<&CertificateReloader>) {
    if let Some(path) = config_path {
        match read_auth_section(path).and_then(|section| auth.reload(&section)) {
            Ok(()) => tracing::info!(config = %path.display(), "reloaded users and tokens"),
            Err(error) => tracing::error!(%error, "reload refused; keeping the old users"),
        }
    }
    if let Some(certificates) = certificates {
        match certificates.reload() {
            Ok(()) => tracing::info!("reloaded the TLS certificate"),
            Err(error) => tracing::error!(%error, "TLS reload refused; keeping the old one"),
        }
    }
}

/// The `[auth]` section of a config file (empty if it has none).
pub fn read_auth_section(path: &Path) -> Result<AuthSection, String> {
    #[derive(serde::Deserialize)]
    struct OnlyAuth {
        #[serde(default)]
        auth: AuthSection,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading config {}: {e}", path.display()))?;
    let parsed: OnlyAuth =
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
    Ok(parsed.auth)
}
