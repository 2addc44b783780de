//! TLS on the protocol and HTTP ports, with certificates made at test time (rcgen): good,
//! expired, signed by another CA, and missing; mutual TLS; plain text to a TLS port.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use common::certs::{self, CertFiles};
use common::{Server, REPLY_TIMEOUT};
use tokio_rustls::rustls::{self, pki_types};

use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer, ServerName};

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    })
}

/// Handshakes and reads the first line (INFO); the error says what failed.
fn tls_greeting(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<(BufReader<TlsStream>, String), String> {
    let socket = TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(client_config(ca, identity), name).unwrap();
    let mut stream = BufReader::new(rustls::StreamOwned::new(connection, socket));
    let mut line = String::new();
    match stream.read_line(&mut line) {
        Ok(0) => Err("closed before INFO".into()),
        Ok(_) => Ok((stream, line)),
        Err(error) => Err(error.to_string()),
    }
}

fn tls_server(files: &CertFiles, extra: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert",
        files.server_cert.to_str().unwrap(),
        "--tls-key",
        files.server_key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn a_good_certificate_serves_the_protocol_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let server = tls_server(&files, &[]);
    let (mut stream, info) = tls_greeting(server.addr, &files.ca, None).expect("handshake");
    assert!(info.starts_with("INFO "), "{info}");
    let info: serde_json::Value = serde_json::from_str(&info[5..]).unwrap();
    assert_eq!(info["tls_required"], true);
    stream
        .get_mut()
        .write_all(b"APPEND s-1 any {\"event_type\":\"E\",\"data\":{}}\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_line(&mut reply).unwrap();
    assert_eq!(reply, "APPENDED s-1 0 0\r\n");
}

#[test]
fn plain_text_to_the_tls_port_gets_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let server = tls_server(&files, &[]);
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    plain
        .write_all(b"APPEND s-1 any {\"event_type\":\"E\",\"data\":{}}\r\n")
        .unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("-ERR tls_required '"), "{answer}");
    // Plain HTTP to the HTTPS port: a 400 that says so.
    let (status, body) = common::http_get(server.http_addr, "/health");
    assert_eq!(status, 400);
    assert!(body.contains("HTTPS"), "{body}");
    let (mut stream, _) = tls_greeting(server.addr, &files.ca, None).unwrap();
    stream.get_mut().write_all(b"READ s-1 0 1\r\n").unwrap();
    let mut reply = String::new();
    stream.read_line(&mut reply).unwrap();
    assert!(reply.starts_with("-ERR stream_not_found"), "{reply}");
}

#[test]
fn a_client_that_trusts_another_ca_refuses_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let server = tls_server(&files, &[]);
    let error = tls_greeting(server.addr, &files.other_ca, None).unwrap_err();
    assert!(error.contains("certificate"), "{error}");
}

#[test]
fn an_expired_server_certificate_is_refused_by_clients() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let server = Server::start(&[
        "--tls-cert",
        files.expired_cert.to_str().unwrap(),
        "--tls-key",
        files.expired_key.to_str().unwrap(),
    ]);
    let error = tls_greeting(server.addr, &files.ca, None).unwrap_err();
    assert!(error.to_lowercase().contains("expired"), "{error}");
}

#[test]
fn mutual_tls_admits_only_clients_with_a_valid_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let server = tls_server(&files, &["--tls-client-ca", files.ca.to_str().unwrap()]);
    let good = (files.client_cert.as_path(), files.client_key.as_path());
    assert!(tls_greeting(server.addr, &files.ca, Some(good)).is_ok());
    let refused = [
        ("no certificate", None),
        (
            "wrong CA",
            Some((files.rogue_cert.as_path(), files.rogue_key.as_path())),
        ),
        (
            "expired",
            Some((files.expired_cert.as_path(), files.expired_key.as_path())),
        ),
    ];
    for (what, identity) in refused {
        assert!(
            tls_greeting(server.addr, &files.ca, identity).is_err(),
            "{what}"
        );
    }
}

/// Sends one line over `stream` and reads the reply line.
fn tls_request(stream: &mut BufReader<TlsStream>, line: &str) -> String {
    stream
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    stream.read_line(&mut reply).unwrap();
    reply
}

#[test]
fn a_client_certificate_naming_a_certificate_user_authenticates_as_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let hash = {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_esdb"))
            .arg("passwd")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "admin-pass").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    // "client" (the test client certificate's common name) may only read; "localhost" (the
    // server certificate's, also signed by the CA) is a password user, not a certificate one.
    let config = dir.path().join("esdb.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[auth.users]]
name = "client"
certificate = true
permissions = {{ default = ["read"] }}

[[auth.users]]
name = "localhost"
password_hash = "{hash}"
permissions = {{ default = ["all"] }}
"#
        ),
    )
    .unwrap();
    let server = tls_server(
        &files,
        &[
            "--tls-client-ca",
            files.ca.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let client = (files.client_cert.as_path(), files.client_key.as_path());
    let (mut stream, _) = tls_greeting(server.addr, &files.ca, Some(client)).expect("handshake");
    assert!(
        tls_request(&mut stream, "READ orders-1 0 10").starts_with("-ERR stream_not_found"),
        "the certificate authenticated the connection"
    );
    let refused = tls_request(
        &mut stream,
        r#"APPEND orders-1 any {"event_type":"E","data":{}}"#,
    );
    assert!(refused.starts_with("-ERR permission_denied"), "{refused}");
    assert!(refused.contains("client"), "{refused}");

    // A certificate whose name is a password-only user authenticates nobody.
    let other = (files.server_cert.as_path(), files.server_key.as_path());
    let (mut stream, _) = tls_greeting(server.addr, &files.ca, Some(other)).expect("handshake");
    let reply = tls_request(&mut stream, "READ orders-1 0 10");
    assert!(reply.starts_with("-ERR auth_required"), "{reply}");
    let reply = tls_request(
        &mut stream,
        r#"CONNECT {"user":"localhost","pass":"admin-pass"}"#,
    );
    assert_eq!(reply, "+OK\r\n");
    let reply = tls_request(
        &mut stream,
        r#"APPEND orders-1 any {"event_type":"E","data":{}}"#,
    );
    assert_eq!(reply, "APPENDED orders-1 0 0\r\n");
}

#[test]
fn missing_or_mismatched_certificate_files_stop_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let missing = dir.path().join("missing.pem");
    let cases = [
        (missing.as_path(), files.server_key.as_path(), "missing.pem"),
        (
            files.server_cert.as_path(),
            files.client_key.as_path(),
            "does not match",
        ),
    ];
    for (cert, key, expected) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_esdb"))
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!dir.path().join("data").exists(), "nothing created");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args(["serve", "--tls-cert"])
        .arg(&files.server_cert)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "a cert without a key is a usage error"
    );
}

#[test]
fn https_serves_the_http_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let server = tls_server(&files, &[]);
    let socket = TcpStream::connect(server.http_addr).unwrap();
    socket.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(client_config(&files.ca, None), name).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_connects_with_tls_and_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs::write_all(dir.path());
    let hash = esdb::auth::password::hash("s3cret-pass").unwrap();
    let config = dir.path().join("esdb.toml");
    let text = format!(
        "[[auth.users]]\nname = \"ada\"\npassword_hash = \"{hash}\"\n\
         permissions = {{ default = [\"all\"] }}\n"
    );
    std::fs::write(&config, text).unwrap();
    let (cert, key, config_arg) = (
        files.server_cert.to_str().unwrap().to_owned(),
        files.server_key.to_str().unwrap().to_owned(),
        config.to_str().unwrap().to_owned(),
    );
    let server = tokio::task::spawn_blocking(move || {
        Server::start(&[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--config",
            &config_arg,
        ])
    })
    .await
    .unwrap();
    let tls = esdb_client::TlsOptions {
        ca_file: files.ca.clone(),
        client_cert: None,
        server_name: Some("localhost".into()),
    };
    let options = esdb_client::ClientOptions::new([server.addr.to_string()])
        .with_tls(tls.clone())
        .with_user("ada", "s3cret-pass")
        .with_max_retries(0);
    let client = esdb_client::Client::connect(options)
        .await
        .expect("connect");
    let appended = client
        .append(
            "c-1",
            esdb_client::ExpectedVersion::Any,
            [esdb_client::EventData::json("E", &serde_json::json!({})).unwrap()],
        )
        .await
        .expect("append");
    assert_eq!(appended.last_version, 0);
    let wrong = esdb_client::ClientOptions::new([server.addr.to_string()])
        .with_tls(tls)
        .with_user("ada", "wrong")
        .with_max_retries(0);
    let Err(error) = esdb_client::Client::connect(wrong).await else {
        panic!("a wrong password must be refused");
    };
    assert_eq!(
        error.code(),
        Some(esdb_client::ErrorCode::AuthFailed),
        "{error}"
    );
}
