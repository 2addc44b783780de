//! Test certificates made at run time with rcgen: a CA, a server certificate for localhost
//! and 127.0.0.1, a client certificate, an expired one, and a second CA nobody trusts.
//! Shared by tests/tls.rs and examples/gen_certs.rs (which the client libraries' tests run).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

pub struct Authority {
    cert: Certificate,
    key: KeyPair,
}

impl Authority {
    pub fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Authority { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate and its key (PEM), valid now unless `expired`.
    pub fn issue(&self, common_name: &str, expired: bool) -> (String, String) {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Paths of the files [`write_all`] made.
pub struct CertFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    pub other_ca: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

/// Writes every test certificate into `dir`: `ca.pem`, `server.pem`/`server.key`,
/// `client.pem`/`client.key`, `expired.pem`/`expired.key` (signed by the CA, long expired),
/// `other-ca.pem`, and `rogue.pem`/`rogue.key` (signed by the other CA).
pub fn write_all(dir: &Path) -> CertFiles {
    let ca = Authority::new("esdb test CA");
    let other = Authority::new("someone else's CA");
    let files = CertFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        expired_cert: dir.join("expired.pem"),
        expired_key: dir.join("expired.key"),
        other_ca: dir.join("other-ca.pem"),
        rogue_cert: dir.join("rogue.pem"),
        rogue_key: dir.join("rogue.key"),
    };
    let write = |path: &Path, text: &str| std::fs::write(path, text).unwrap();
    write(&files.ca, &ca.pem());
    write(&files.other_ca, &other.pem());
    for (cert_path, key_path, authority, name, expired) in [
        (
            &files.server_cert,
            &files.server_key,
            &ca,
            "localhost",
            false,
        ),
        (&files.client_cert, &files.client_key, &ca, "client", false),
        (
            &files.expired_cert,
            &files.expired_key,
            &ca,
            "expired",
            true,
        ),
        (&files.rogue_cert, &files.rogue_key, &other, "rogue", false),
    ] {
        let (cert, key) = authority.issue(name, expired);
        write(cert_path, &cert);
        write(key_path, &key);
    }
    files
}
