//! TLS (rustls, ring) for the protocol port and the HTTP port: `--tls-cert` and `--tls-key`
//! (PEM), optionally `--tls-client-ca` to require client certificates signed by that CA
//! (mutual TLS). The certificate and key are re-read on SIGHUP; the client CA is not.
//!
//! A client that speaks plain text to a TLS port is told so in plain text (its first byte is
//! not a TLS handshake record) instead of seeing the connection drop.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

/// Longest a client may take to send its first byte and finish the handshake.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain-text client of the protocol port reads before the close.
pub const PLAIN_TEXT_PROTOCOL_REFUSAL: &[u8] =
    b"-ERR tls_required 'this port speaks TLS: connect with TLS (esdb --tls, or a client's tls option)'\r\n";
/// What a plain-HTTP client of the HTTPS port reads before the close.
pub const PLAIN_TEXT_HTTP_REFUSAL: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Connection: close\r\nContent-Length: 37\r\n\r\nthis port speaks HTTPS: use https://\n";

/// The server's certificate, swappable on SIGHUP.
#[derive(Debug)]
pub struct CertificateReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertificateReloader {
    pub(crate) fn load(cert_path: &Path, key_path: &Path) -> Result<CertificateReloader, String> {
        Ok(CertificateReloader {
            current: RwLock::new(Arc::new(certified_key(cert_path, key_path)?)),
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        })
    }

    /// Re-reads the certificate and key; on error the old pair stays.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write().expect("certificate lock") = Arc::new(fresh);
        Ok(())
    }
}

impl ResolvesServerCert for CertificateReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

/// The same certificate as a client's (inter-node TLS presents one certificate both ways).
impl rustls::client::ResolvesClientCert for CertificateReloader {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, String> {
    let certs = read_certificates(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("TLS key {}: {e}", key_path.display()))?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("TLS key {}: {e}", key_path.display()))?;
    let certified = CertifiedKey::new(certs, key);
    certified.keys_match().map_err(|e| {
        format!(
            "TLS key {} does not match the certificate: {e}",
            key_path.display()
        )
    })?;
    Ok(certified)
}

pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect())
        .map_err(|e| format!("TLS certificate {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The acceptors of both ports, sharing one certificate.
pub struct Tls {
    pub protocol: TlsAcceptor,
    pub http: TlsAcceptor,
    pub certificates: Arc<CertificateReloader>,
}

impl Tls {
    pub fn new(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Tls, String> {
        let certificates = Arc::new(CertificateReloader::load(cert, key)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = |alpn: Vec<Vec<u8>>| -> Result<rustls::ServerConfig, String> {
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?;
            let builder = match client_ca {
                Some(path) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for cert in read_certificates(path)? {
                        roots
                            .add(cert)
                            .map_err(|e| format!("TLS client CA {}: {e}", path.display()))?;
                    }
                    let verifier = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| format!("TLS client CA {}: {e}", path.display()))?;
                    builder.with_client_cert_verifier(verifier)
                }
                None => builder.with_no_client_auth(),
            };
            let mut config = builder.with_cert_resolver(certificates.clone());
            config.alpn_protocols = alpn;
            Ok(config)
        };
        Ok(Tls {
            protocol: TlsAcceptor::from(Arc::new(server_config(vec![])?)),
            http: TlsAcceptor::from(Arc::new(server_config(vec![b"http/1.1".to_vec()])?)),
            certificates,
        })
    }
}

/// The subject common name of the client certificate `stream`'s handshake verified (only a
/// port with `--tls-client-ca` asks for one), if it has one that is UTF-8.
pub fn client_common_name(stream: &TlsStream<TcpStream>) -> Option<String> {
    let der = stream.get_ref().1.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let name = certificate.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_owned)
}

/// Runs the handshake on `socket`; a client whose first byte is not TLS gets `refusal` in
/// plain text. `None` when the handshake failed (logged at debug: scanners are common).
pub async fn accept(
    acceptor: &TlsAcceptor,
    mut socket: TcpStream,
    refusal: &'static [u8],
) -> Option<TlsStream<TcpStream>> {
    let timeout = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
    let handshake = async {
        let mut first = [0u8; 1];
        match socket.peek(&mut first).await {
            Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => {}
            Ok(1) => {
                crate::metrics::metrics().error_sent(esdb_protocol::ErrorCode::TlsRequired);
                let _ = socket.write_all(refusal).await;
                let _ = socket.shutdown().await;
                return None;
            }
            _ => return None,
        }
        match acceptor.accept(socket).await {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::debug!(%error, "TLS handshake failed");
                None
            }
        }
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .ok()
        .flatten()
}
