//! Resource limits at their edges (PROTOCOL.md, "Limits"): subscriptions per connection, and
//! what idle connections cost.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use esdb_protocol::{ErrorCode, Reply};

use common::Server;

/// The 256th subscription of a connection is taken, the 257th refused with
/// `invalid_argument`, and the connection goes on.
#[test]
fn subscriptions_per_connection_stop_at_256() {
    let server = Server::start(&[]);
    let mut client = server.client();
    for sid in 0..257 {
        client.send_line(&format!("SUB s{sid} stream stream-{sid}"));
    }
    let (mut ok, mut refused) = (0, 0);
    // Each +OK is followed by the subscription's LIVE; count the answers, skip the pushes.
    while ok + refused < 257 {
        match client.reply() {
            Reply::Ok => ok += 1,
            Reply::Err(error) => {
                assert_eq!(error.code, ErrorCode::InvalidArgument, "{error:?}");
                assert!(error.message.contains("256"), "{}", error.message);
                refused += 1;
            }
            Reply::Live { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, refused), (256, 1));
    // Room again once one is gone.
    client.send_line("UNSUB s0");
    client.send_line("SUB again stream stream-x");
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match client.reply() {
            Reply::Live { .. } => {}
            other => answers.push(other),
        }
    }
    assert_eq!(answers, [Reply::Ok, Reply::Ok]);
}

fn rss_anon_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find(|line| line.starts_with("RssAnon:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .expect("RssAnon");
    kib / 1024
}

/// 5,000 idle TCP connections (each has had its INFO) cost at most 64 MiB of the server's
/// memory, and a working client is still answered.
#[test]
fn five_thousand_idle_connections_cost_at_most_64_mib() {
    let server = Server::start(&[]);
    let mut worker = server.client();
    assert_eq!(worker.request("PING"), Reply::Pong);
    let before = rss_anon_mib(server.pid());
    let mut idle = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).expect("INFO");
        assert!(line.starts_with("INFO "), "{line}");
        idle.push(stream);
    }
    let after = rss_anon_mib(server.pid());
    assert!(
        after <= before + 64,
        "5000 idle connections took the server from {before} to {after} MiB"
    );
    assert_eq!(worker.request("PING"), Reply::Pong);
    let payload = common::event("E", serde_json::json!({"n": 1}));
    assert!(matches!(
        worker.append("w", "any", &payload),
        Reply::Appended { .. }
    ));
}
