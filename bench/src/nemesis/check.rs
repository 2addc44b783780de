//! The checker run after each round, against every node's `$all` once they agree.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use esdb_protocol::Reply;

use super::client::Conn;
use super::workload::{Addrs, AfterRead, Attempt, Expected, Outcome, SubscriberLog, PAGE_EVENTS};

/// How long the nodes may take to hold the same `$all` after a round.
const CONVERGE_TIMEOUT_MS: u64 = 30_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub position: u64,
    pub event_id: String,
    pub stream: String,
    pub version: u64,
}

/// `$all` on one node, paged (linearizable reads: they need a leader).
pub fn read_all(addr: std::net::SocketAddr) -> Result<Vec<Record>, String> {
    let mut conn = Conn::connect(addr)?;
    let mut all = Vec::new();
    loop {
        let from = all.len();
        match conn.request(&format!("READALL {from} {PAGE_EVENTS}"))? {
            Reply::Events { body, .. } => {
                let page: Vec<serde_json::Value> =
                    serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                if page.is_empty() {
                    return Ok(all);
                }
                for r in page {
                    all.push(Record {
                        position: r["position"].as_u64().ok_or("no position")?,
                        event_id: r["event_id"].as_str().ok_or("no event_id")?.to_owned(),
                        stream: r["stream_id"].as_str().ok_or("no stream_id")?.to_owned(),
                        version: r["version"].as_u64().ok_or("no version")?,
                    });
                }
            }
            other => return Err(format!("READALL: {other:?}")),
        }
    }
}

/// Waits until every node answers with the same `$all` at least `at_least` long; the log, or
/// what each node held last.
pub fn converge(addrs: &Addrs, at_least: usize) -> Result<Vec<Record>, String> {
    let started = Instant::now();
    loop {
        let logs: Vec<Result<Vec<Record>, String>> =
            addrs.iter().map(|(_, addr)| read_all(*addr)).collect();
        if let Some(Ok(first)) = logs.first() {
            if first.len() >= at_least && logs.iter().all(|l| l.as_ref().ok() == Some(first)) {
                return Ok(first.clone());
            }
        }
        if started.elapsed() > Duration::from_millis(CONVERGE_TIMEOUT_MS) {
            let summary: Vec<String> = addrs
                .iter()
                .zip(&logs)
                .map(|((id, _), l)| match l {
                    Ok(l) => format!("node {id}: {} events", l.len()),
                    Err(e) => format!("node {id}: {e}"),
                })
                .collect();
            return Err(format!(
                "the nodes do not converge in {CONVERGE_TIMEOUT_MS} ms: {}",
                summary.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every violation of the round's guarantees (empty: the round passed). `log` is the one
/// `$all` all nodes hold; `attempts` and `reads` cover every round so far.
pub fn check(
    log: &[Record],
    attempts: &[Attempt],
    reads: &[AfterRead],
    subscriber: &SubscriberLog,
    subscriber_from: u64,
) -> Vec<String> {
    let mut violations = Vec::new();
    let mut v = |s: String| {
        if violations.len() < 50 {
            violations.push(s);
        }
    };
    // Positions gapless from 0, event ids unique.
    let mut at: HashMap<&str, &Record> = HashMap::new();
    for (k, r) in log.iter().enumerate() {
        if r.position != k as u64 {
            v(format!(
                "position {} at index {k}: positions have a gap",
                r.position
            ));
        }
        if at.insert(&r.event_id, r).is_some() {
            v(format!("event {} is in $all twice", r.event_id));
        }
    }
    // Versions gapless per stream.
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for r in log {
        let next = versions.entry(&r.stream).or_insert(0);
        if r.version != *next {
            v(format!(
                "stream {} has version {} where {} was due",
                r.stream, r.version, next
            ));
        }
        *next = r.version + 1;
    }
    // Each append: acknowledged ones present once, where acknowledged; refused ones absent.
    let mut last: HashMap<&str, &Attempt> = HashMap::new();
    let mut acked: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut accepted_at: HashMap<(&str, Expected), HashSet<&str>> = HashMap::new();
    for a in attempts {
        last.insert(&a.event_id, a);
        match &a.outcome {
            Outcome::Ok { version, position } => {
                if let Some(&(v0, p0)) = acked.get(a.event_id.as_str()) {
                    if (v0, p0) != (*version, *position) {
                        v(format!(
                            "event {} acknowledged at version {v0} position {p0} and again at \
                             version {version} position {position}",
                            a.event_id
                        ));
                    }
                }
                acked.insert(&a.event_id, (*version, *position));
                accepted_at
                    .entry((&a.stream, a.expected))
                    .or_default()
                    .insert(&a.event_id);
                if *version != a.expected.next() {
                    v(format!(
                        "append of {} expecting {:?} acknowledged at version {version}",
                        a.event_id, a.expected
                    ));
                }
                match at.get(a.event_id.as_str()) {
                    None => v(format!(
                        "acknowledged event {} (stream {}, version {version}, position \
                         {position}) is missing",
                        a.event_id, a.stream
                    )),
                    Some(r) if r.position != *position || r.version != *version => v(format!(
                        "acknowledged event {} at version {version} position {position} is \
                         stored at version {} position {}",
                        a.event_id, r.version, r.position
                    )),
                    Some(_) => {}
                }
            }
            Outcome::Wrong(why) => v(format!(
                "append of {} on node {}: {why}",
                a.event_id, a.node
            )),
            Outcome::Refused | Outcome::Unknown(_) => {}
        }
    }
    for ((stream, expected), ids) in &accepted_at {
        if ids.len() > 1 {
            v(format!(
                "stream {stream}: expected version {expected:?} accepted for {} appends",
                ids.len()
            ));
        }
    }
    for r in log {
        match last.get(r.event_id.as_str()) {
            None => v(format!(
                "event {} in $all was never written by a client",
                r.event_id
            )),
            Some(a)
                if matches!(a.outcome, Outcome::Refused)
                    && !acked.contains_key(r.event_id.as_str()) =>
            {
                v(format!(
                    "event {} is stored (version {}) but its last append was refused with \
                     wrong_expected_version",
                    r.event_id, r.version
                ))
            }
            Some(_) => {}
        }
    }
    // Reads with `after`: never older than the token (the client's own event is there).
    for read in reads {
        if let Some(found) = &read.found {
            if found != &read.own_event_id {
                v(format!(
                    "READALL {} after {} on node {} found {:?}, not the client's own event {}",
                    read.position, read.token, read.node, found, read.own_event_id
                ));
            }
        }
    }
    // The subscriber: every event from where it started, once, in order.
    let expected: Vec<(u64, &str)> = log
        .iter()
        .skip(subscriber_from as usize)
        .map(|r| (r.position, r.event_id.as_str()))
        .collect();
    let seen: Vec<(u64, &str)> = subscriber
        .seen
        .iter()
        .map(|(p, id)| (*p, id.as_str()))
        .collect();
    if seen != expected {
        let first_diff = seen.iter().zip(&expected).position(|(a, b)| a != b);
        v(format!(
            "the subscriber saw {} events, $all holds {} from position {subscriber_from}; \
             first difference at {first_diff:?}",
            seen.len(),
            expected.len()
        ));
    }
    for s in &subscriber.violations {
        v(s.clone());
    }
    violations
}

/// Acknowledged appends per stream, for the round's summary.
pub fn summary(attempts: &[Attempt]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for a in attempts {
        let kind = match a.outcome {
            Outcome::Ok { .. } => "ok",
            Outcome::Refused => "refused",
            Outcome::Unknown(_) => "unknown",
            Outcome::Wrong(_) => "wrong",
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}
