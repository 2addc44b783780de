//! TLS to the server (rustls with ring), for [`crate::TlsOptions`].

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result};
use crate::options::TlsOptions;

/// A byte stream to the server: plain TCP or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect())
        .map_err(|e| Error::Connect(format!("TLS: reading {}: {e}", path.display())))
}

/// The client's TLS configuration: the CA to trust, and its own certificate if given.
pub fn config(options: &TlsOptions) -> Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(&options.ca_file)? {
        roots
            .add(cert)
            .map_err(|e| Error::Connect(format!("TLS: CA {}: {e}", options.ca_file.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Connect(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match &options.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::Connect(format!("TLS: reading {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certificates(cert)?, key)
                .map_err(|e| Error::Connect(format!("TLS: client certificate: {e}")))
        }
    }
}

/// The TLS handshake over `stream` to `addr` (`host:port`).
pub async fn connect(
    addr: &str,
    stream: TcpStream,
    options: &TlsOptions,
) -> Result<TlsStream<TcpStream>> {
    let host = match &options.server_name {
        Some(name) => name.clone(),
        None => host_of(addr).to_owned(),
    };
    let name = ServerName::try_from(host.clone())
        .map_err(|e| Error::Connect(format!("TLS: server name {host:?}: {e}")))?;
    let connector = TlsConnector::from(Arc::new(config(options)?));
    connector
        .connect(name, stream)
        .await
        .map_err(|e| Error::Connect(format!("TLS handshake with {addr}: {e}")))
}

/// `host` of `host:port`, `[v6]:port` or a bare host.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_of_addresses() {
        assert_eq!(super::host_of("localhost:4350"), "localhost");
        assert_eq!(super::host_of("[::1]:4350"), "::1");
        assert_eq!(super::host_of("db.example"), "db.example");
    }
}
