//! Server lifecycle over real sockets: keepalive, limits, bad input, configuration.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use esdb_protocol::{ErrorCode, Reply};

use common::{event, Server};

fn expect_error(reply: Option<Reply>, code: ErrorCode) {
    match reply {
        Some(Reply::Err(e)) if e.code == code => {}
        other => panic!("expected -ERR {code}, got {other:?}"),
    }
}

#[test]
fn silent_client_is_pinged_then_closed_as_stale() {
    let server = Server::start(&["--ping-interval-ms", "150", "--max-pings-out", "2"]);
    let mut client = server.client();
    let started = Instant::now();
    assert_eq!(client.try_reply(), Some(Reply::Ping));
    assert_eq!(client.try_reply(), Some(Reply::Ping));
    expect_error(client.try_reply(), ErrorCode::StaleConnection);
    assert_eq!(client.try_reply(), None, "closed after the stale error");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before two intervals"
    );
}

#[test]
fn client_answering_pings_stays_connected() {
    let server = Server::start(&["--ping-interval-ms", "100", "--max-pings-out", "1"]);
    let mut client = server.client();
    for _ in 0..5 {
        assert_eq!(client.try_reply(), Some(Reply::Ping));
        client.send_line("PONG");
    }
    assert_eq!(client.request("PING"), Reply::Pong);
}

#[test]
fn connections_over_the_limit_are_refused() {
    let server = Server::start(&["--max-connections", "2"]);
    let first = server.client();
    let mut second = server.client();
    let mut third = TcpStream::connect(server.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut refused = String::new();
    third.read_to_string(&mut refused).unwrap();
    assert_eq!(
        refused,
        "-ERR too_many_connections 'connection limit reached'\r\n"
    );
    assert_eq!(second.request("PING"), Reply::Pong);
    drop(first);
    // The freed slot is reusable once the server has noticed the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(&mut stream).read_line(&mut line).unwrap();
        if line.starts_with("INFO ") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {line}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn over_long_line_closes_only_that_connection() {
    let server = Server::start(&[]);
    let mut bystander = server.client();
    bystander.append("calm", "no_stream", &event("Calm", serde_json::json!(1)));
    let mut offender = server.client();
    // No newline at all: the server must not wait for one forever, nor buffer without bound.
    let junk = vec![b'x'; 5000];
    let _ = offender.stream.write_all(&junk);
    expect_error(offender.try_reply(), ErrorCode::LineTooLong);
    assert_eq!(offender.try_reply(), None);
    // The other connection noticed nothing.
    assert!(matches!(
        bystander.append("calm", "0", &event("Calm", serde_json::json!(2))),
        Reply::Appended {
            last_version: 1,
            ..
        }
    ));
}

#[test]
fn garbage_bytes_get_errors_and_the_connection_goes_on() {
    let server = Server::start(&[]);
    let mut client = server.client();
    client.send_raw(b"\x00\x01\x02\r\n\xff\xfe garbage\r\nAPPEND s any {not json}\r\n");
    expect_error(client.try_reply(), ErrorCode::UnknownCommand);
    expect_error(client.try_reply(), ErrorCode::UnknownCommand);
    expect_error(client.try_reply(), ErrorCode::InvalidJson);
    assert_eq!(client.request("PING"), Reply::Pong);
    assert_eq!(client.read_all().len(), 0, "nothing was written");
}

#[test]
fn configuration_from_environment_file_and_flags() {
    let temp = tempfile::tempdir().unwrap();
    let config_path = temp.path().join("esdb.toml");
    std::fs::write(
        &config_path,
        "stores = [\"from-file\"]\nmax_connections = 5\n",
    )
    .unwrap();
    // The file names the stores...
    let (mut child, addr) = common::spawn(
        &temp.path().join("a"),
        &["--config".to_owned(), config_path.display().to_string()],
        &[],
    );
    let client = common::Client::connect(addr);
    assert_eq!(client.info["stores"], serde_json::json!(["from-file"]));
    child.kill().unwrap();
    child.wait().unwrap();
    // ...the environment overrides the file...
    let (mut child, addr) = common::spawn(
        &temp.path().join("b"),
        &["--config".to_owned(), config_path.display().to_string()],
        &[("ESDB_STORE", "env-one,env-two")],
    );
    let client = common::Client::connect(addr);
    assert_eq!(
        client.info["stores"],
        serde_json::json!(["env-one", "env-two"])
    );
    assert_eq!(client.info["store"], "env-one");
    child.kill().unwrap();
    child.wait().unwrap();
    // ...and a flag overrides the environment.
    let (mut child, addr) = common::spawn(
        &temp.path().join("c"),
        &["--store".to_owned(), "flagged".to_owned()],
        &[("ESDB_STORE", "env-one")],
    );
    let client = common::Client::connect(addr);
    assert_eq!(client.info["stores"], serde_json::json!(["flagged"]));
    assert!(
        temp.path().join("c/flagged").is_dir(),
        "one directory per store"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn invalid_configuration_is_refused_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args(["serve", "--store", "bad/name", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("store name"));
}

/// With no flags at all the server uses ./esdb-data and the documented port 4350.
#[test]
fn defaults_are_the_documented_ones() {
    let temp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_esdb"))
        .arg("serve")
        .current_dir(temp.path())
        .env_remove("ESDB_LISTEN")
        .env_remove("ESDB_DATA_DIR")
        .env_remove("ESDB_STORE")
        .env_remove("ESDB_HTTP")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if line.is_empty() {
        // Port 4350 or 8350 is taken on this machine: the server must say so, naming it.
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            stderr.contains("127.0.0.1:4350") || stderr.contains("127.0.0.1:8350"),
            "{stderr}"
        );
        assert!(!child.wait().unwrap().success());
        return;
    }
    assert!(
        line.starts_with("esdb listening on 127.0.0.1:4350 "),
        "{line}"
    );
    let mut http_line = String::new();
    stdout.read_line(&mut http_line).unwrap();
    assert!(
        http_line.starts_with("esdb http on 127.0.0.1:8350 "),
        "{http_line}"
    );
    assert!(temp.path().join("esdb-data/default").is_dir());
    common::signal(child.id() as i32, libc::SIGTERM);
    assert!(common::wait_with_timeout(&mut child, Duration::from_secs(30)).success());
}
