//! `--small` (issue 16, "Edge"): the small-device profile's defaults are in force, and a
//! setting given explicitly still wins.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;

use common::Server;
use esdb::config::small;

/// The first line the server sends on a new protocol connection.
fn greeting(addr: std::net::SocketAddr) -> (TcpStream, String) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(common::REPLY_TIMEOUT))
        .unwrap();
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .expect("a line");
    (stream, line)
}

/// Under `--small` the server serves with a 1 GiB map and refuses the connection past its 256.
#[test]
fn the_small_profile_has_a_smaller_map_and_fewer_connections() {
    let server = Server::start(&["--small", "--metrics-open"]);
    let (_, metrics) = common::http_get(server.http_addr, "/metrics");
    let map_size = format!(
        "esdb_storage_map_size_bytes{{store=\"default\"}} {}",
        small::MAP_SIZE_MB << 20
    );
    assert!(
        metrics.lines().any(|line| line == map_size),
        "{map_size} in {metrics}"
    );
    let mut client = server.client();
    let payload = common::event("Small", serde_json::json!({"ok": true}));
    assert!(matches!(
        client.append("device-1", "any", &payload),
        esdb_protocol::Reply::Appended { .. }
    ));
    assert_eq!(client.read_stream("device-1", 0, 10).len(), 1);
    let mut open = vec![client.stream.try_clone().unwrap()];
    while open.len() < small::MAX_CONNECTIONS {
        let (stream, line) = greeting(server.addr);
        assert!(line.starts_with("INFO "), "{line}");
        open.push(stream);
    }
    let (_, line) = greeting(server.addr);
    assert!(line.starts_with("-ERR too_many_connections "), "{line}");
    let (status, _) = common::http_get(server.http_addr, "/ready");
    assert_eq!(status, 200);
}

/// A limit given explicitly wins over the profile's.
#[test]
fn an_explicit_setting_wins_over_the_small_profile() {
    let limit = small::MAX_CONNECTIONS + 4;
    let server = Server::start(&["--small", "--max-connections", &limit.to_string()]);
    let mut open = Vec::new();
    for _ in 0..limit {
        let (stream, line) = greeting(server.addr);
        assert!(line.starts_with("INFO "), "{line}");
        open.push(stream);
    }
    let (_, line) = greeting(server.addr);
    assert!(line.starts_with("-ERR too_many_connections "), "{line}");
}
