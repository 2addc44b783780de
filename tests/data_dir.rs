//! One data directory, one process: a second server on a directory in use refuses to start,
//! naming the directory and the holder; a server that cannot bind creates nothing on disk.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use esdb_protocol::Reply;

use common::{event, wait_with_timeout, Server};

fn serve(data_dir: &std::path::Path, listen: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_esdb"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", listen, "--http", "127.0.0.1:0"])
        .env("ESDB_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn esdb")
}

fn stderr_of(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut text).unwrap();
    (status, text)
}

#[test]
fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let server = Server::start(&[]);
    let mut client = server.client();
    assert!(matches!(
        client.append("s", "any", &event("T", serde_json::json!(1))),
        Reply::Appended { .. }
    ));
    let (status, stderr) = stderr_of(serve(&server.data_dir, "127.0.0.1:0"));
    assert!(!status.success(), "the second server must fail: {stderr}");
    assert!(
        stderr.contains(&server.data_dir.display().to_string()),
        "names the directory: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", server.pid())),
        "names the holder: {stderr}"
    );
    // The first server is unharmed.
    assert_eq!(client.read_stream("s", 0, 10).len(), 1);
}

#[test]
fn a_server_that_cannot_bind_creates_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let temp = tempfile::tempdir().expect("tempdir");
    let data_dir = temp.path().join("never-created");
    let (status, stderr) = stderr_of(serve(&data_dir, &taken.local_addr().unwrap().to_string()));
    assert!(!status.success());
    assert!(stderr.contains("binding"), "{stderr}");
    assert!(!data_dir.exists(), "nothing created on disk");
}
