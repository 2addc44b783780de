//! The clients a nemesis round runs under: writers appending with exact expected versions to a
//! few shared streams (so they conflict), each followed by a read with `after` its token on
//! another node, and one catch-up subscriber that moves to another node when its node fails.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use esdb_protocol::{ErrorCode, Reply};
use serde_json::json;

use super::client::Conn;
use super::history::History;

/// The event type every harness event has (the subscriber selects it).
pub const EVENT_TYPE: &str = "Nemesis";
/// Attempts of one append (same event id, same expected version) before it is left unknown.
const APPEND_ATTEMPTS: u32 = 40;
/// Pause between attempts, so a client does not spin while there is no leader.
const RETRY_PAUSE_MS: u64 = 100;
/// How long a writer waits for one reply before it counts the outcome unknown and moves to
/// another node: a client's own timeout, shorter than the server's (a write stuck behind a
/// leader that was cut off is answered only after 10 s), as a client that wants to fail over
/// would set it. Appends take tens of milliseconds here, a few hundred under the delay.
const WRITE_TIMEOUT_MS: u64 = 2_000;
/// Page size when reading `$all`.
pub const PAGE_EVENTS: u64 = 1000;
/// How long a subscriber waits for the next event before it suspects its node (only once it
/// has been told how far to get).
const SUBSCRIBER_STALL_MS: u64 = 2_000;

/// What the stream was at when an append was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expected {
    NoStream,
    Exact(u64),
}

impl Expected {
    fn wire(self) -> String {
        match self {
            Expected::NoStream => "no_stream".into(),
            Expected::Exact(v) => v.to_string(),
        }
    }

    /// The version the append's event gets.
    pub fn next(self) -> u64 {
        match self {
            Expected::NoStream => 0,
            Expected::Exact(v) => v + 1,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Ok {
        version: u64,
        position: u64,
    },
    /// Refused: `wrong_expected_version` (certainly not applied).
    Refused,
    /// Unknown: no answer, connection lost, or `unavailable`.
    Unknown(String),
    /// An answer the contract rules out here (e.g. `duplicate_event_id` on a same-place retry).
    Wrong(String),
}

/// One attempt of one append.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub event_id: String,
    pub stream: String,
    pub expected: Expected,
    pub node: u32,
    pub invoked_ns: u64,
    pub completed_ns: u64,
    pub outcome: Outcome,
}

/// One read with `after`: of the position the client's last append got.
#[derive(Clone, Debug)]
pub struct AfterRead {
    pub node: u32,
    pub token: u64,
    pub position: u64,
    pub own_event_id: String,
    /// The event id found at `position`, `None` when the node answered `unavailable` or
    /// nothing arrived; `Some("")` when the page was empty (older than the token).
    pub found: Option<String>,
}

#[derive(Default)]
pub struct ClientLog {
    pub attempts: Vec<Attempt>,
    pub reads: Vec<AfterRead>,
}

/// The nodes by id, with their client addresses.
pub type Addrs = Vec<(u32, SocketAddr)>;

struct Conns<'a> {
    addrs: &'a Addrs,
    open: HashMap<u32, Conn>,
}

impl Conns<'_> {
    fn get(&mut self, node: u32) -> Result<&mut Conn, String> {
        if !self.open.contains_key(&node) {
            let addr = self
                .addrs
                .iter()
                .find(|(id, _)| *id == node)
                .expect("node")
                .1;
            let conn = Conn::connect(addr)?;
            conn.set_reply_timeout(Duration::from_millis(WRITE_TIMEOUT_MS));
            self.open.insert(node, conn);
        }
        Ok(self.open.get_mut(&node).expect("just opened"))
    }

    fn drop_conn(&mut self, node: u32) {
        self.open.remove(&node);
    }
}

/// One writer: appends until `stop`, each append retried in place until its outcome is known.
pub fn writer(
    process: usize,
    addrs: &Addrs,
    streams: usize,
    stop: &AtomicBool,
    history: &History,
) -> ClientLog {
    let name = format!("c{process}");
    let mut conns = Conns {
        addrs,
        open: HashMap::new(),
    };
    let mut known: HashMap<String, Expected> = HashMap::new();
    let mut log = ClientLog::default();
    let mut token = 0u64;
    let mut home = addrs[process % addrs.len()].0;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let stream = format!("nemesis-{}", super::random_below(streams as u64));
        let expected = *known.get(&stream).unwrap_or(&Expected::NoStream);
        let event_id = uuid::Uuid::new_v4().to_string();
        let payload = json!({"event_id": event_id, "event_type": EVENT_TYPE,
            "data": {"client": process, "seq": seq}})
        .to_string();
        seq += 1;
        let mut node = home;
        let mut ok = None;
        for attempt in 0..APPEND_ATTEMPTS {
            let value =
                json!({"stream": stream, "expected": expected.wire(), "event_id": event_id});
            let invoked_ns = history.record(&name, "invoke", "append", Some(node), value.clone());
            let reply = conns
                .get(node)
                .and_then(|c| c.append(&stream, &expected.wire(), &payload));
            let outcome = match reply {
                Ok(Reply::Appended {
                    last_version,
                    last_position,
                    ..
                }) => Outcome::Ok {
                    version: last_version,
                    position: last_position,
                },
                Ok(Reply::Err(e)) if e.code == ErrorCode::WrongExpectedVersion => {
                    // "… expected version N, actual M": where the stream is now.
                    if let Some(actual) = e
                        .message
                        .rsplit("actual ")
                        .next()
                        .and_then(|a| a.trim_end_matches('\'').trim().parse::<i64>().ok())
                    {
                        known.insert(
                            stream.clone(),
                            if actual < 0 {
                                Expected::NoStream
                            } else {
                                Expected::Exact(actual as u64)
                            },
                        );
                    }
                    Outcome::Refused
                }
                Ok(Reply::Err(e)) if e.code == ErrorCode::Unavailable => {
                    Outcome::Unknown(format!("unavailable: {}", e.message))
                }
                Ok(Reply::Err(e)) => Outcome::Wrong(format!("{:?}: {}", e.code, e.message)),
                Ok(other) => Outcome::Wrong(format!("unexpected reply {other:?}")),
                Err(e) => {
                    conns.drop_conn(node);
                    Outcome::Unknown(e)
                }
            };
            let (kind, value) = match &outcome {
                Outcome::Ok { version, position } => {
                    ("ok", json!({"version": version, "position": position}))
                }
                Outcome::Refused => ("fail", json!({"error": "wrong_expected_version"})),
                Outcome::Unknown(why) => ("info", json!({"error": why})),
                Outcome::Wrong(why) => ("info", json!({"error": why, "wrong": true})),
            };
            let completed_ns = history.record(&name, kind, "append", Some(node), value);
            log.attempts.push(Attempt {
                event_id: event_id.clone(),
                stream: stream.clone(),
                expected,
                node,
                invoked_ns,
                completed_ns,
                outcome: outcome.clone(),
            });
            match outcome {
                Outcome::Ok { version, position } => {
                    ok = Some(position);
                    known.insert(stream.clone(), Expected::Exact(version));
                    token = token.max(position);
                    break;
                }
                Outcome::Refused | Outcome::Wrong(_) => break,
                Outcome::Unknown(_) => {
                    // Another node next time; a stopping client gives up a few tries early.
                    let at = addrs.iter().position(|(id, _)| *id == node).expect("node");
                    node = addrs[(at + 1) % addrs.len()].0;
                    home = node;
                    if stop.load(Ordering::Relaxed) && attempt >= 3 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(RETRY_PAUSE_MS));
                }
            }
        }
        let Some(position) = ok else { continue };
        // Read it back on another node, after the client's token: never older than that.
        let at = addrs.iter().position(|(id, _)| *id == home).expect("node");
        let reader = addrs[(at + 1 + process % 2) % addrs.len()].0;
        let value = json!({"position": position, "after": token});
        history.record(&name, "invoke", "read", Some(reader), value);
        let reply = conns
            .get(reader)
            .and_then(|c| c.request(&format!("READALL {position} 1 after {token}")));
        let found = match reply {
            Ok(Reply::Events { body, .. }) => {
                let records: Vec<serde_json::Value> =
                    serde_json::from_slice(&body).unwrap_or_default();
                Some(match records.first() {
                    Some(r) if r["position"].as_u64() == Some(position) => {
                        r["event_id"].as_str().unwrap_or("?").to_owned()
                    }
                    Some(r) => format!("position {}", r["position"]),
                    None => String::new(),
                })
            }
            Ok(_) => None,
            Err(_) => {
                conns.drop_conn(reader);
                None
            }
        };
        let (kind, value) = match &found {
            Some(id) => ("ok", json!({"event_id": id})),
            None => ("info", json!(null)),
        };
        history.record(&name, kind, "read", Some(reader), value);
        log.reads.push(AfterRead {
            node: reader,
            token,
            position,
            own_event_id: log.attempts.last().expect("appended").event_id.clone(),
            found,
        });
    }
    log
}

/// What a subscriber saw: (position, event id) in delivery order, and its complaints.
#[derive(Default)]
pub struct SubscriberLog {
    pub seen: Vec<(u64, String)>,
    pub violations: Vec<String>,
    pub reconnects: u32,
}

/// A catch-up subscriber from `from`, on `addrs[0]` first. Runs until `target` (set by the
/// checker once the log is known, `u64::MAX` until then) events have been seen or `give_up`.
pub fn subscriber(
    addrs: &Addrs,
    from: u64,
    target: &AtomicU64,
    give_up: &AtomicBool,
    history: &History,
) -> SubscriberLog {
    let mut log = SubscriberLog::default();
    let mut next = from;
    let mut turn = 0usize;
    while next < target.load(Ordering::Relaxed) && !give_up.load(Ordering::Relaxed) {
        let (node, addr) = addrs[turn % addrs.len()];
        turn += 1;
        let options =
            json!({"type": "event_type", "selector": EVENT_TYPE, "start": next}).to_string();
        let after = match next.checked_sub(1) {
            Some(last) => format!(" after {last}"),
            None => String::new(),
        };
        history.record(
            "sub",
            "invoke",
            "subscribe",
            Some(node),
            json!({"start": next}),
        );
        let conn = Conn::connect(addr).and_then(|mut conn| {
            conn.send(format!("SUB s {}{after}\r\n{options}\r\n", options.len()).as_bytes())?;
            match conn.recv()? {
                Reply::Ok => Ok(conn),
                other => Err(format!("SUB: {other:?}")),
            }
        });
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                history.record("sub", "info", "subscribe", Some(node), json!({"error": e}));
                log.reconnects += 1;
                std::thread::sleep(Duration::from_millis(RETRY_PAUSE_MS));
                continue;
            }
        };
        history.record("sub", "ok", "subscribe", Some(node), json!(null));
        conn.set_reply_timeout(Duration::from_millis(SUBSCRIBER_STALL_MS));
        loop {
            if next >= target.load(Ordering::Relaxed) || give_up.load(Ordering::Relaxed) {
                break;
            }
            match conn.recv() {
                Ok(Reply::Event { position, body, .. }) => {
                    let record: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let id = record["event_id"].as_str().unwrap_or("?").to_owned();
                    if position != next {
                        log.violations.push(format!(
                            "subscriber on node {node}: position {position} where {next} was due \
                             ({})",
                            if position < next { "again" } else { "a gap" }
                        ));
                    }
                    log.seen.push((position, id));
                    next = next.max(position + 1);
                }
                Ok(Reply::Live { .. }) => {}
                Ok(other) => {
                    log.violations
                        .push(format!("subscriber on node {node}: unexpected {other:?}"));
                    break;
                }
                Err(e) if e == super::client::TIMED_OUT => {
                    // Quiet: fine while the round runs; once the end is known, a quiet node
                    // is suspect (stopped, cut off), so move.
                    if target.load(Ordering::Relaxed) != u64::MAX {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        log.reconnects += 1;
    }
    log
}
