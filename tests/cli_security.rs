//! The `esdb` command line client with credentials and TLS (issue 14), against a real server
//! with authentication on and certificates made at test time (rcgen, tests/common/certs.rs):
//! a password, a token, wrong and missing credentials, a wrong CA, plain text to a TLS port,
//! and mutual TLS.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::certs::{self, CertFiles};
use common::Server;

const TOKEN: &str = "cli-token-0123456789abcdef0123";
/// How long one client command may run before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// `esdb passwd`, the real subcommand.
fn passwd(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_esdb"))
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn esdb passwd");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let output = child.wait_with_output().expect("passwd output");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A TLS server with one user (`cli`/`cli-pass`) and one token, both with every permission.
struct Secure {
    server: Server,
    files: CertFiles,
    dir: tempfile::TempDir,
}

impl Secure {
    fn start(extra: &[&str]) -> Secure {
        let dir = tempfile::tempdir().unwrap();
        let files = certs::write_all(dir.path());
        let config = dir.path().join("esdb.toml");
        std::fs::write(
            &config,
            format!(
                "[[auth.users]]\nname = \"cli\"\npassword_hash = \"{}\"\n\
                 permissions = {{ default = [\"all\"] }}\n\n\
                 [[auth.tokens]]\nname = \"ci\"\ntoken = \"{TOKEN}\"\n\
                 permissions = {{ default = [\"all\"] }}\n",
                passwd("cli-pass")
            ),
        )
        .unwrap();
        let mut args = vec![
            "--config".to_owned(),
            config.display().to_string(),
            "--tls-cert".to_owned(),
            files.server_cert.display().to_string(),
            "--tls-key".to_owned(),
            files.server_key.display().to_string(),
        ];
        args.extend(
            extra
                .iter()
                .map(|arg| arg.replace("{ca}", &files.ca.display().to_string())),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Secure {
            server: Server::start(&args),
            files,
            dir,
        }
    }

    /// `esdb <args> --server <this server>` with a private config directory and no
    /// credentials or TLS settings from the environment.
    fn esdb(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_esdb"));
        command
            .args(args)
            .args(["--server", &self.server.addr.to_string()]);
        for name in [
            "ESDB_SERVER",
            "ESDB_CONTEXT",
            "ESDB_USER",
            "ESDB_PASSWORD",
            "ESDB_TOKEN",
            "ESDB_TLS_CA",
            "ESDB_TLS_CLIENT_CERT",
            "ESDB_TLS_CLIENT_KEY",
        ] {
            command.env_remove(name);
        }
        command
            .env("XDG_CONFIG_HOME", self.dir.path())
            .env("NO_COLOR", "1");
        command
    }

    /// `esdb <args>` with TLS verified against the test CA.
    fn esdb_tls(&self, args: &[&str]) -> Command {
        let mut command = self.esdb(args);
        command.arg("--tls-ca").arg(&self.files.ca);
        command
    }
}

/// Runs a command to its end within [`COMMAND_TIMEOUT`].
fn run(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("spawn esdb");
    let pid = child.id() as i32;
    let started = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("output"));
    while !waiter.is_finished() {
        if started.elapsed() > COMMAND_TIMEOUT {
            common::signal(pid, libc::SIGKILL);
            panic!("esdb client command did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    waiter.join().unwrap()
}

fn succeeds(command: Command) -> String {
    let output = run(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Runs a command that must fail with exit code 1; its stderr.
fn fails(command: Command) -> String {
    let output = run(command);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

fn append(stream: &str) -> Vec<&str> {
    vec![
        "append",
        stream,
        "--type",
        "Checked",
        "--data",
        "{\"ok\":true}",
    ]
}

/// The events of `stream`, read with the token over TLS (an empty list when it was never
/// written).
fn events(secure: &Secure, stream: &str) -> usize {
    let mut command = secure.esdb_tls(&["read", stream, "--json"]);
    command.env("ESDB_TOKEN", TOKEN);
    let output = run(command);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("stream_not_found"), "{stderr}");
        return 0;
    }
    String::from_utf8(output.stdout).unwrap().lines().count()
}

/// A user and password (the password from the environment, as the help advises) over TLS:
/// the append is written and read back.
#[test]
fn the_cli_appends_and_reads_over_tls_with_a_password() {
    let secure = Secure::start(&[]);
    let mut command = secure.esdb_tls(&append("cli-1"));
    command
        .args(["--user", "cli"])
        .env("ESDB_PASSWORD", "cli-pass");
    succeeds(command);
    let mut command = secure.esdb_tls(&["read", "cli-1", "--json"]);
    command.args(["--user", "cli", "--password", "cli-pass"]);
    let read = succeeds(command);
    assert_eq!(read.lines().count(), 1, "{read}");
    assert!(read.contains("Checked"), "{read}");
}

/// A token (from `ESDB_TOKEN`) over TLS works like a password.
#[test]
fn the_cli_authenticates_with_a_token() {
    let secure = Secure::start(&[]);
    let mut command = secure.esdb_tls(&append("cli-token"));
    command.env("ESDB_TOKEN", TOKEN);
    succeeds(command);
    assert_eq!(events(&secure, "cli-token"), 1);
}

/// A wrong password, a wrong token and no credentials each fail with the wire code on stderr
/// and exit 1, and write nothing.
#[test]
fn wrong_or_missing_credentials_fail_and_write_nothing() {
    let secure = Secure::start(&[]);
    let mut command = secure.esdb_tls(&append("cli-refused"));
    command.args(["--user", "cli", "--password", "wrong"]);
    assert!(fails(command).contains("auth_failed"));
    let mut command = secure.esdb_tls(&append("cli-refused"));
    command.args(["--token", "not-the-token"]);
    assert!(fails(command).contains("auth_failed"));
    let stderr = fails(secure.esdb_tls(&append("cli-refused")));
    assert!(
        stderr.contains("auth_required") || stderr.contains("auth_failed"),
        "{stderr}"
    );
    assert_eq!(events(&secure, "cli-refused"), 0);
}

/// A server certificate from a CA the client does not trust, and plain text to the TLS port,
/// both fail before any credentials are sent.
#[test]
fn a_wrong_ca_or_plain_text_fails() {
    let secure = Secure::start(&[]);
    let mut command = secure.esdb(&append("cli-untrusted"));
    command.arg("--tls-ca").arg(&secure.files.other_ca);
    command.args(["--user", "cli", "--password", "cli-pass"]);
    let stderr = fails(command);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    let mut command = secure.esdb(&append("cli-untrusted"));
    command.args(["--user", "cli", "--password", "cli-pass"]);
    let stderr = fails(command);
    assert!(!stderr.is_empty());
    assert_eq!(events(&secure, "cli-untrusted"), 0);
}

/// Against a server that requires client certificates (mutual TLS), the CLI connects with
/// `--tls-client-cert`/`--tls-client-key` and fails without them, or with one from another CA.
#[test]
fn mutual_tls_needs_the_client_certificate() {
    let secure = Secure::start(&["--tls-client-ca", "{ca}"]);
    let with_identity = |cert: &Path, key: &Path| {
        let mut command = secure.esdb_tls(&append("cli-mtls"));
        command.args(["--user", "cli", "--password", "cli-pass"]);
        command.arg("--tls-client-cert").arg(cert);
        command.arg("--tls-client-key").arg(key);
        command
    };
    succeeds(with_identity(
        &secure.files.client_cert,
        &secure.files.client_key,
    ));
    fails(with_identity(
        &secure.files.rogue_cert,
        &secure.files.rogue_key,
    ));
    let mut command = secure.esdb_tls(&append("cli-mtls"));
    command.args(["--user", "cli", "--password", "cli-pass"]);
    fails(command);
    let mut command = secure.esdb_tls(&["read", "cli-mtls", "--json"]);
    command.args(["--user", "cli", "--password", "cli-pass"]);
    command
        .arg("--tls-client-cert")
        .arg(&secure.files.client_cert);
    command
        .arg("--tls-client-key")
        .arg(&secure.files.client_key);
    assert_eq!(
        succeeds(command).lines().count(),
        1,
        "only the one with a certificate"
    );
}
