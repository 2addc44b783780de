//! Conditional appends (Dynamic Consistency Boundary) and multi-stream appends under racing
//! writers, against the real server: of writers that decided on the same read, exactly one
//! wins each conflicting group, and a multi-stream append is never seen torn.

mod common;

use std::sync::{Arc, Barrier};

use esdb_protocol::{ErrorCode, Reply};

use common::{Client, Server};

const WRITERS: usize = 16;
/// Conflicting groups (courses): writers race for every one at once.
const GROUPS: usize = 4;
const ROUNDS: usize = 3;

fn append_multi(client: &mut Client, body: &serde_json::Value) -> Reply {
    let body = body.to_string();
    let mut frame = format!("APPENDMULTI {}\r\n", body.len()).into_bytes();
    frame.extend_from_slice(body.as_bytes());
    frame.extend_from_slice(b"\r\n");
    client.send_raw(&frame);
    client.reply()
}

fn events(reply: Reply) -> Vec<serde_json::Value> {
    match reply {
        Reply::Events { body, .. } => serde_json::from_slice(&body).unwrap(),
        other => panic!("expected EVENTS, got {other:?}"),
    }
}

fn parts(reply: &Reply) -> Vec<serde_json::Value> {
    match reply {
        Reply::AppendedMulti { count, body } => {
            let parts: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
            assert_eq!(parts.len() as u64, *count);
            parts
        }
        other => panic!("expected APPENDEDMULTI, got {other:?}"),
    }
}

/// The position a `condition_failed` message names first.
fn conflict_position(message: &str) -> u64 {
    let rest = message.strip_prefix("position ").expect(message);
    rest.split(' ').next().unwrap().parse().expect(message)
}

/// Each round, every writer reads every group's boundary (`READTAGS`), waits for the others,
/// then sends one conditional append per group at once, each with `after` at the last position
/// it read. Per group and round exactly one append wins; every other gets `condition_failed`
/// naming the winner's position; the groups end with one event per round.
#[test]
fn sixteen_racing_writers_one_wins_each_conflicting_group() {
    let server = Server::start(&[]);
    let barrier = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (addr, barrier) = (server.addr, barrier.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                // (round, group, won position or the position the conflict named, won)
                let mut results = Vec::new();
                for round in 0..ROUNDS {
                    let mut after = Vec::new();
                    for group in 0..GROUPS {
                        let seen = events(client.request(&format!("READTAGS course:{group} 0 100")));
                        assert_eq!(seen.len(), round, "writer {writer} sees one event per round");
                        after.push(seen.last().map(|e| e["position"].as_u64().unwrap()));
                    }
                    barrier.wait();
                    let mut frames = Vec::new();
                    for (group, after) in after.iter().enumerate() {
                        let body = serde_json::json!({
                            "parts": [{"stream": format!("course-{group}"), "expected": "any",
                                "events": [{"event_type": "StudentSubscribed",
                                    "data": {"writer": writer, "round": round},
                                    "tags": [format!("course:{group}"), format!("student:{writer}")]}]}],
                            "condition": {"query": [{"types": ["StudentSubscribed"],
                                "tags": [format!("course:{group}")]}], "after": after},
                        })
                        .to_string();
                        frames.extend_from_slice(format!("APPENDMULTI {}\r\n", body.len()).as_bytes());
                        frames.extend_from_slice(body.as_bytes());
                        frames.extend_from_slice(b"\r\n");
                    }
                    // One write: the groups' appends race the other writers' as one pipeline.
                    client.send_raw(&frames);
                    for group in 0..GROUPS {
                        match client.reply() {
                            reply @ Reply::AppendedMulti { .. } => {
                                let part = &parts(&reply)[0];
                                let position = part["first_position"].as_u64().unwrap();
                                results.push((round, group, position, true));
                            }
                            Reply::Err(e) if e.code == ErrorCode::ConditionFailed => {
                                results.push((round, group, conflict_position(&e.message), false));
                            }
                            other => panic!("writer {writer}: unexpected {other:?}"),
                        }
                    }
                    // Everyone has been answered before the next round reads.
                    barrier.wait();
                }
                results
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("writer thread"))
        .collect();
    let mut client = server.client();
    for round in 0..ROUNDS {
        for group in 0..GROUPS {
            let this: Vec<_> = results
                .iter()
                .filter(|r| r.0 == round && r.1 == group)
                .collect();
            assert_eq!(this.len(), WRITERS);
            let winners: Vec<_> = this.iter().filter(|r| r.3).collect();
            assert_eq!(winners.len(), 1, "round {round} group {group}: {this:?}");
            let won_at = winners[0].2;
            assert!(
                this.iter().all(|r| r.2 == won_at),
                "every loser is told the winner's position {won_at}: {this:?}"
            );
        }
    }
    for group in 0..GROUPS {
        let stored = events(client.request(&format!("READTAGS course:{group} 0 100")));
        assert_eq!(stored.len(), ROUNDS, "group {group}: one event per round");
        let stream = client.read_stream(&format!("course-{group}"), 0, 100);
        assert_eq!(stream.len(), ROUNDS);
    }
}

/// Writers race to append pairs to two streams with exact expected versions, while a reader
/// reads `$all`: each pair is written by exactly one writer, both halves or neither, and every
/// read shows both halves of a pair or none.
#[test]
fn multi_stream_appends_are_atomic_under_racing_writers() {
    const PAIRS: u64 = 10;
    let server = Server::start(&[]);
    let barrier = Arc::new(Barrier::new(WRITERS + 1));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (addr, barrier, done) = (server.addr, barrier.clone(), done.clone());
        std::thread::spawn(move || {
            let mut client = Client::connect(addr);
            barrier.wait();
            let mut reads = 0u64;
            // Bounded: the writers finish in a bounded number of rounds.
            while !done.load(std::sync::atomic::Ordering::SeqCst) && reads < 100_000 {
                let all = events(client.request("READALL 0 10000"));
                let left = all.iter().filter(|e| e["stream_id"] == "left").count();
                let right = all.iter().filter(|e| e["stream_id"] == "right").count();
                assert_eq!(left, right, "a read saw half of a multi-stream append");
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (addr, barrier) = (server.addr, barrier.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                barrier.wait();
                let mut won = 0u64;
                for version in 0..PAIRS {
                    let expected = if version == 0 {
                        serde_json::json!("no_stream")
                    } else {
                        serde_json::json!(version - 1)
                    };
                    let half = |side: &str| {
                        serde_json::json!({"stream": side, "expected": expected,
                            "events": [{"event_type": "Half",
                                "data": {"writer": writer, "version": version}}]})
                    };
                    // Until somebody (maybe this writer) has written this version of both.
                    loop {
                        let body = serde_json::json!({"parts": [half("left"), half("right")]});
                        match append_multi(&mut client, &body) {
                            reply @ Reply::AppendedMulti { .. } => {
                                let parts = parts(&reply);
                                assert_eq!(parts[0]["first_version"], version);
                                assert_eq!(parts[1]["first_version"], version);
                                assert_eq!(
                                    parts[1]["first_position"].as_u64(),
                                    parts[0]["last_position"].as_u64().map(|p| p + 1),
                                    "the parts are adjacent in $all"
                                );
                                won += 1;
                                break;
                            }
                            Reply::Err(e) if e.code == ErrorCode::WrongExpectedVersion => {
                                assert!(e.message.starts_with("part 0: "), "{}", e.message);
                                match client.request("VERSION left") {
                                    Reply::Version { version: v, .. } if v >= version as i64 => {
                                        break
                                    }
                                    Reply::Version { .. } => continue,
                                    other => panic!("{other:?}"),
                                }
                            }
                            other => panic!("writer {writer}: {other:?}"),
                        }
                    }
                }
                won
            })
        })
        .collect();
    let won: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(won, PAIRS, "each pair won exactly once");
    let mut client = server.client();
    let left = client.read_stream("left", 0, 100);
    let right = client.read_stream("right", 0, 100);
    assert_eq!(left.len() as u64, PAIRS);
    for (l, r) in left.iter().zip(&right) {
        assert_eq!(
            l["data"], r["data"],
            "both halves of a pair come from one writer"
        );
        assert_eq!(l["epoch_us"], r["epoch_us"], "one commit time per request");
    }
}

/// A retried multi-stream append (same event ids) answers the original result and writes
/// nothing, even with a condition its own events now fail.
#[test]
fn a_retried_conditional_multi_append_answers_the_original_result() {
    let server = Server::start(&[]);
    let mut client = server.client();
    let body = serde_json::json!({
        "parts": [
            {"stream": "a", "expected": "no_stream", "events": [
                {"event_type": "T", "data": 1, "tags": ["k"],
                 "event_id": "0190f6b2-7c3e-7a55-8d2e-1f0a9b8c7d6e"}]},
            {"stream": "b", "expected": "no_stream", "events": [
                {"event_type": "T", "data": 2, "tags": ["k"],
                 "event_id": "0190f6b2-7c3e-7a55-8d2e-1f0a9b8c7d6f"}]}],
        "condition": {"query": [{"tags": ["k"]}], "after": null},
    });
    let first = append_multi(&mut client, &body);
    let again = append_multi(&mut client, &body);
    assert_eq!(parts(&first), parts(&again));
    assert_eq!(client.read_all().len(), 2, "nothing written twice");
    // A new append under the same condition now conflicts with the first event.
    let mut other = body.clone();
    other["parts"][0]["events"][0]
        .as_object_mut()
        .unwrap()
        .remove("event_id");
    other["parts"][1]["events"][0]
        .as_object_mut()
        .unwrap()
        .remove("event_id");
    other["parts"][0]["expected"] = serde_json::json!("any");
    other["parts"][1]["expected"] = serde_json::json!("any");
    match append_multi(&mut client, &other) {
        Reply::Err(e) => {
            assert_eq!(e.code, ErrorCode::ConditionFailed);
            assert_eq!(conflict_position(&e.message), 0);
        }
        reply => panic!("{reply:?}"),
    }
}
