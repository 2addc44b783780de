//! Concurrent writers against the real server.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use esdb_protocol::{ErrorCode, Reply};

use common::{event, Server};

/// 16 writers race to append each version of one stream with an exact expected version. Every
/// version is won by exactly one writer; every loser gets `wrong_expected_version`; the stream
/// ends gapless, each event written once.
#[test]
fn sixteen_writers_race_with_exact_expected_versions() {
    const WRITERS: usize = 16;
    const VERSIONS: u64 = 40;
    let server = Server::start(&[]);
    let barrier = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let addr = server.addr;
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut client = common::Client::connect(addr);
                barrier.wait();
                let mut won = Vec::new();
                let mut lost = 0u64;
                for version in 0..VERSIONS {
                    let expected = if version == 0 {
                        "no_stream".to_owned()
                    } else {
                        (version - 1).to_string()
                    };
                    let payload = event(
                        "Raced",
                        serde_json::json!({"writer": writer, "version": version}),
                    );
                    // Keep trying this version until somebody (maybe us) has written it.
                    match client.append("race", &expected, &payload) {
                        Reply::Appended { last_version, .. } => {
                            assert_eq!(last_version, version);
                            won.push(version);
                        }
                        Reply::Err(e) if e.code == ErrorCode::WrongExpectedVersion => lost += 1,
                        other => panic!("unexpected reply {other:?}"),
                    }
                    // Wait until the version exists before racing for the next one.
                    loop {
                        match client.request("VERSION race") {
                            Reply::Version { version: v, .. } if v >= version as i64 => break,
                            Reply::Version { .. } => std::thread::yield_now(),
                            other => panic!("unexpected reply {other:?}"),
                        }
                    }
                }
                (writer, won, lost)
            })
        })
        .collect();
    let mut winners: BTreeMap<u64, usize> = BTreeMap::new();
    let mut total_lost = 0;
    for handle in handles {
        let (writer, won, lost) = handle.join().expect("writer thread");
        total_lost += lost;
        for version in won {
            assert!(
                winners.insert(version, writer).is_none(),
                "version {version} won twice"
            );
        }
    }
    assert_eq!(
        winners.len() as u64,
        VERSIONS,
        "every version won exactly once"
    );
    assert_eq!(
        total_lost,
        VERSIONS * (WRITERS as u64 - 1),
        "every other attempt lost"
    );

    let mut client = server.client();
    let events = client.read_stream("race", 0, 1000);
    assert_eq!(events.len() as u64, VERSIONS);
    for (index, record) in events.iter().enumerate() {
        assert_eq!(record["version"], index as u64);
        assert_eq!(record["data"]["version"], index as u64);
        assert_eq!(record["data"]["writer"], winners[&(index as u64)] as u64);
    }
    assert_eq!(
        client.read_all().len() as u64,
        VERSIONS,
        "nothing but the winners was written"
    );
}

/// Many connections appending to their own streams at once: positions in `$all` are gapless and
/// each stream's versions are gapless, in position order.
#[test]
fn concurrent_connections_produce_a_gapless_log() {
    const CONNECTIONS: usize = 12;
    const APPENDS: usize = 50;
    let server = Server::start(&[]);
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|connection| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut client = common::Client::connect(addr);
                // Pipeline all appends, then read the replies.
                let mut frames = Vec::new();
                for n in 0..APPENDS {
                    let payload = event("Counted", serde_json::json!(n));
                    frames.extend_from_slice(
                        format!(
                            "APPEND c-{connection} {} {}\r\n{payload}\r\n",
                            if n == 0 {
                                "no_stream".to_owned()
                            } else {
                                (n - 1).to_string()
                            },
                            payload.len()
                        )
                        .as_bytes(),
                    );
                }
                client.send_raw(&frames);
                for n in 0..APPENDS {
                    match client.reply() {
                        Reply::Appended { last_version, .. } => assert_eq!(last_version, n as u64),
                        other => panic!("unexpected reply {other:?}"),
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("writer");
    }
    let all = server.client().read_all();
    assert_eq!(all.len(), CONNECTIONS * APPENDS);
    let mut next_version: BTreeMap<String, u64> = BTreeMap::new();
    for (position, record) in all.iter().enumerate() {
        assert_eq!(record["position"], position as u64);
        let stream = record["stream_id"].as_str().unwrap().to_owned();
        let expected = next_version.entry(stream).or_insert(0);
        assert_eq!(record["version"], *expected);
        assert_eq!(record["data"], *expected);
        *expected += 1;
    }
}
