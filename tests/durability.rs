//! Crash and restart: what was acknowledged survives `kill -9`, exactly once.

mod common;

use std::collections::BTreeSet;

use esdb_protocol::Reply;

use common::{event, Server};

/// Writers append continuously; the server is killed with SIGKILL right after a burst of
/// acknowledgements. After restart every acknowledged event is present, at the acknowledged
/// version and position, nothing is duplicated, and the log has no gaps.
#[test]
fn acknowledged_appends_survive_kill_9() {
    let mut server = Server::start(&[]);
    let mut acknowledged: Vec<(String, u64, u64, String)> = Vec::new();
    let mut clients: Vec<_> = (0..4).map(|_| server.client()).collect();
    for round in 0..60u64 {
        for (index, client) in clients.iter_mut().enumerate() {
            let stream = format!("crash-{index}");
            let id = uuid::Uuid::new_v4().to_string();
            let payload = serde_json::json!({"event_type": "Tick", "data": round, "event_id": id})
                .to_string();
            let expected = if round == 0 {
                "no_stream".to_owned()
            } else {
                (round - 1).to_string()
            };
            match client.append(&stream, &expected, &payload) {
                Reply::Appended {
                    last_version,
                    last_position,
                    ..
                } => {
                    assert_eq!(last_version, round);
                    acknowledged.push((stream, last_version, last_position, id));
                }
                other => panic!("unexpected reply {other:?}"),
            }
        }
    }
    // Pipeline a burst whose replies we read, then kill immediately after the last one.
    let mut burst = Vec::new();
    for n in 0..200u64 {
        let id = uuid::Uuid::new_v4().to_string();
        let payload =
            serde_json::json!({"event_type": "Burst", "data": n, "event_id": id}).to_string();
        burst.push(id.clone());
        clients[0]
            .send_raw(format!("APPEND burst any {}\r\n{payload}\r\n", payload.len()).as_bytes());
    }
    for id in burst {
        match clients[0].reply() {
            Reply::Appended {
                stream,
                last_version,
                last_position,
            } => acknowledged.push((stream, last_version, last_position, id)),
            other => panic!("unexpected reply {other:?}"),
        }
    }
    server.kill9();
    server.restart();

    let mut client = server.client();
    let all = client.read_all();
    assert_eq!(
        all.len(),
        acknowledged.len(),
        "every acknowledged event, nothing more"
    );
    let mut ids = BTreeSet::new();
    for (position, record) in all.iter().enumerate() {
        assert_eq!(record["position"], position as u64, "gapless positions");
        assert!(
            ids.insert(record["event_id"].as_str().unwrap().to_owned()),
            "no duplicates"
        );
    }
    for (stream, version, position, id) in &acknowledged {
        let record = &all[*position as usize];
        assert_eq!(record["stream_id"], stream.as_str());
        assert_eq!(record["version"], *version);
        assert_eq!(record["event_id"], id.as_str());
    }
    // The restarted server goes on where it stopped.
    match client.append(
        "crash-0",
        "59",
        &event("AfterRestart", serde_json::json!(1)),
    ) {
        Reply::Appended {
            last_version: 60,
            last_position,
            ..
        } => {
            assert_eq!(last_position, acknowledged.len() as u64)
        }
        other => panic!("unexpected reply {other:?}"),
    }
}

/// SIGTERM: in-flight requests are answered, the server exits 0, and everything is there after
/// a restart.
#[test]
fn sigterm_drains_and_exits_cleanly() {
    let mut server = Server::start(&[]);
    let mut client = server.client();
    let mut frames = Vec::new();
    for n in 0..300u64 {
        let payload = event("Drained", serde_json::json!(n));
        frames.extend_from_slice(
            format!("APPEND drain any {}\r\n{payload}\r\n", payload.len()).as_bytes(),
        );
    }
    client.send_raw(&frames);
    // Wait for the first reply so the requests are in flight, then ask the server to stop.
    let first = client.reply();
    assert!(matches!(first, Reply::Appended { .. }), "{first:?}");
    let pid = server.pid();
    common::signal(pid, libc::SIGTERM);
    let mut answered = 1;
    while let Some(reply) = client.try_reply() {
        assert!(matches!(reply, Reply::Appended { .. }), "{reply:?}");
        answered += 1;
    }
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    server.restart();
    let stored = server.client().read_stream("drain", 0, 10_000).len();
    assert!(
        stored >= answered,
        "every answered append is stored ({stored} < {answered})"
    );
    assert_eq!(
        stored, answered,
        "and none that was not answered (all were read before SIGTERM here)"
    );
}
