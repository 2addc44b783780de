//! How nodes reach each other: a TCP connection, then, with `--cluster-tls-cert`,
//! `--cluster-tls-key` and `--cluster-tls-ca`, mutual TLS (each side presents a certificate
//! signed by the cluster's CA and checks the other's), then the secret's HMAC challenge
//! ([`wire::dial_handshake`]) in every case. TLS keeps the traffic private and refuses a peer
//! without a good certificate before it can say anything; the challenge still proves the
//! secret, so a certificate alone (from a CA shared with other systems) admits nobody.
//!
//! A dialing node checks the certificate against the host it dialed (an IP address or a DNS
//! name in the peer's address), as any TLS client does. The certificate and key are re-read
//! on SIGHUP (with the client port's); the CA only at start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::cluster::wire::{self, Secret};
use crate::raft::types::NodeId;

/// Longest a TCP connect to a peer may take.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Longest a TLS handshake between nodes may take (both directions).
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// A connection between nodes, plain or TLS.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PeerIo for T {}
pub type PeerStream = Box<dyn PeerIo>;

/// The inter-node TLS configuration: one certificate for both directions.
pub struct ClusterTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    /// This node's certificate and key, re-read on SIGHUP (new connections present the new
    /// pair; the CA is read at start).
    pub certificate: Arc<crate::tls::CertificateReloader>,
}

impl ClusterTls {
    pub fn new(cert: &Path, key: &Path, ca: &Path) -> Result<ClusterTls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::tls::read_certificates(ca)? {
            roots
                .add(cert)
                .map_err(|e| format!("cluster TLS CA {}: {e}", ca.display()))?;
        }
        let roots = Arc::new(roots);
        let certificate = Arc::new(crate::tls::CertificateReloader::load(cert, key)?);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("cluster TLS CA {}: {e}", ca.display()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cluster TLS: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(certificate.clone());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cluster TLS: {e}"))?
            .with_root_certificates(roots)
            .with_client_cert_resolver(certificate.clone());
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            certificate,
        })
    }
}

/// Dials peers as this node: connect, TLS if configured, then the secret's challenge.
pub struct Dialer {
    pub me: NodeId,
    pub secret: Secret,
    pub tls: Option<Arc<ClusterTls>>,
}

impl Dialer {
    /// A connection to `addr` and the node id its listener proved.
    pub async fn dial(&self, addr: &str) -> std::io::Result<(PeerStream, NodeId)> {
        let connect = TcpStream::connect(addr);
        let stream = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect)
            .await
            .map_err(|_| timed_out("connect"))??;
        stream.set_nodelay(true)?;
        let mut stream: PeerStream = match &self.tls {
            None => Box::new(stream),
            Some(tls) => {
                let name = server_name(addr)?;
                let handshake = tls.connector.connect(name, stream);
                Box::new(
                    tokio::time::timeout(
                        Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS),
                        handshake,
                    )
                    .await
                    .map_err(|_| timed_out("the TLS handshake"))??,
                )
            }
        };
        let proven = wire::dial_handshake(&mut stream, &self.secret, self.me).await?;
        Ok((stream, proven))
    }
}

/// The other end of [`Dialer::dial`] (TLS if configured; the challenge is the caller's).
pub async fn accept(stream: TcpStream, tls: Option<&ClusterTls>) -> std::io::Result<PeerStream> {
    stream.set_nodelay(true)?;
    match tls {
        None => Ok(Box::new(stream)),
        Some(tls) => {
            let handshake = tls.acceptor.accept(stream);
            let stream =
                tokio::time::timeout(Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS), handshake)
                    .await
                    .map_err(|_| timed_out("the TLS handshake"))??;
            Ok(Box::new(stream))
        }
    }
}

/// The name a dialed peer's certificate must carry: the host of `addr` (`host:port`,
/// `[v6]:port`).
fn server_name(addr: &str) -> std::io::Result<pki_types::ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr}: not a host name for TLS: {e}"),
        )
    })
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_dialed_host() {
        assert!(matches!(
            server_name("127.0.0.1:7350").unwrap(),
            pki_types::ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:7350").unwrap(),
            pki_types::ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("esdb-1.esdb.default.svc:7350").unwrap(),
            pki_types::ServerName::DnsName(_)
        ));
    }
}
