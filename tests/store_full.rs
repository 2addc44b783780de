//! A store that runs out of room refuses appends before they enter the log, with a retryable
//! `store_full`; the server stays up, reads go on, nothing acknowledged is lost, and a
//! restart serves the same state.

mod common;

use esdb_protocol::{ErrorCode, Reply};

use common::Server;

/// Appends 200 KB events until the store refuses one (bounded), returning how many it took.
fn fill(client: &mut common::Client) -> u64 {
    let big = "x".repeat(200 * 1024);
    let payload = format!(r#"{{"event_type":"Big","data":"{big}"}}"#);
    for attempt in 0..200u64 {
        match client.append("full", "any", &payload) {
            Reply::Appended { last_version, .. } => assert_eq!(last_version, attempt),
            Reply::Err(error) => {
                assert_eq!(error.code, ErrorCode::StoreFull, "{error:?}");
                assert!(error.code.is_retryable());
                assert!(error.message.contains("is full"), "{}", error.message);
                return attempt;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("a 16 MiB store took 40 MB without refusing");
}

#[test]
fn a_full_store_refuses_appends_and_keeps_serving() {
    let mut server = Server::start(&["--map-size-mb", "16"]);
    let mut client = server.client();
    let accepted = fill(&mut client);
    assert!(accepted > 0, "some appends fit");
    // Still up: reads answer, and the write path is whole (its Raft group leads).
    assert_eq!(
        client.request("VERSION full"),
        Reply::Version {
            stream: "full".into(),
            version: accepted as i64 - 1
        }
    );
    assert_eq!(client.read_stream("full", 0, 1).len(), 1);
    match client.request("STATS") {
        Reply::Stats { body } => {
            let stats: serde_json::Value = serde_json::from_slice(&body).expect("stats");
            assert_eq!(
                stats["stores"]["default"]["raft"]["state"], "leader",
                "{stats}"
            );
        }
        other => panic!("expected STATS, got {other:?}"),
    }
    // Refused again, not half-written.
    assert_eq!(fill(&mut client), 0);
    assert!(server.terminate().success(), "a clean stop");
    server.restart();
    let mut client = server.client();
    assert_eq!(
        client.request("VERSION full"),
        Reply::Version {
            stream: "full".into(),
            version: accepted as i64 - 1
        }
    );
}
