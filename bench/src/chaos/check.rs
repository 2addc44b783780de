//! After a restart: reads the store back and checks it against the verified history and the
//! record of the round's requests.
//!
//! - the verified prefix of `$all` is unchanged (a random window of it each round, all of it
//!   every `full_check_every` rounds and at the end);
//! - the rest of `$all` is gapless from where the prefix ends, and holds only events some
//!   client sent in this round, each once, with its type and data byte for byte;
//! - each request's events are all there or none, at consecutive versions and positions, in
//!   order; each stream's versions are gapless;
//! - every acknowledged request is there at exactly its acknowledged last version and
//!   position, every rejected one is absent, and an exact expected version held;
//! - `READ` and `VERSION` of every stream agree with `$all`.
//!
//! What is there becomes the verified history the next round builds on.

use std::collections::HashMap;
use std::ops::Range;

use anyhow::{bail, Context};
use esdb_protocol::{Direction, ExpectedVersion, ReadStart, Reply, Request};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::model::{
    decode_event_id, event_data, event_type, format_id, KnownEvent, Outcome, RequestKey,
    SentAppend, Streams, Truth,
};
use crate::esdb::client::Conn;

/// Events per read request.
const PAGE_EVENTS: u64 = 5_000;
/// Events of the verified prefix re-read each round (besides full checks).
pub const PREFIX_WINDOW_EVENTS: u64 = 2_000;
/// Violations listed per round; past this the check stops early.
const MAX_VIOLATIONS: usize = 50;

/// One event record as `READ`/`READALL` return it (the fields checked).
#[derive(Debug, Deserialize)]
pub struct Record {
    pub event_id: String,
    pub event_type: String,
    pub stream_id: String,
    pub version: u64,
    pub position: u64,
    pub data: Box<RawValue>,
}

/// What a round's check found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub violations: Vec<String>,
    pub new_events: u64,
    pub acked: u64,
    pub rejected: u64,
    pub unknown_applied: u64,
    pub unknown_absent: u64,
    pub prefix_checked: u64,
}

impl Verdict {
    fn violation(&mut self, text: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(text);
        }
    }

    fn full(&self) -> bool {
        self.violations.len() >= MAX_VIOLATIONS
    }
}

/// Where a request's events were found.
#[derive(Debug, Clone, Copy)]
struct Presence {
    first_version: u64,
    last_version: u64,
    last_position: u64,
    seen: u16,
}

/// One page of `$all` or a stream.
async fn read_page(conn: &mut Conn, request: Request) -> anyhow::Result<Vec<u8>> {
    match conn.call(&request).await? {
        Reply::Events { body, .. } => Ok(body.to_vec()),
        other => bail!("{} answered {other:?}", request.operation()),
    }
}

fn parse(body: &[u8]) -> anyhow::Result<Vec<Record>> {
    serde_json::from_slice(body).context("an EVENTS body that is not an array of records")
}

fn parse_id(text: &str) -> Option<u128> {
    uuid::Uuid::parse_str(text).ok().map(|u| u.as_u128())
}

pub struct RoundCheck<'a> {
    pub run: u16,
    pub round: u32,
    pub streams: &'a Streams,
    pub appends: &'a [SentAppend],
    /// Which positions of the verified prefix to re-read.
    pub prefix: Vec<Range<u64>>,
}

/// Reads the store back and checks it; `truth` grows by what the round left.
pub async fn verify(
    conn: &mut Conn,
    truth: &mut Truth,
    check: &RoundCheck<'_>,
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict::default();
    for range in &check.prefix {
        check_prefix(conn, truth, check.streams, range.clone(), &mut verdict).await?;
    }
    if verdict.full() {
        return Ok(verdict);
    }
    let old_versions = truth.versions.clone();
    let head = truth.events.len() as u64;
    let sent_events: u64 = check.appends.iter().map(|a| a.count as u64).sum();
    let (tail, ended) = read_tail(conn, head, sent_events).await?;
    let presence = judge_tail(&tail, ended, truth, check, &mut verdict);
    verdict.new_events = truth.events.len() as u64 - head;
    check_requests(check, &presence, &mut verdict);
    check_streams(conn, truth, check, head, &old_versions, &mut verdict).await?;
    Ok(verdict)
}

/// The verified events in `range` read back unchanged.
async fn check_prefix(
    conn: &mut Conn,
    truth: &Truth,
    streams: &Streams,
    range: Range<u64>,
    verdict: &mut Verdict,
) -> anyhow::Result<()> {
    let mut at = range.start;
    let end = range.end.min(truth.events.len() as u64);
    // Each page moves `at` forward by at least one event, or the loop ends.
    while at < end && !verdict.full() {
        let count = PAGE_EVENTS.min(end - at);
        let body = read_page(
            conn,
            Request::ReadAll {
                from: ReadStart::At(at),
                count,
                direction: Direction::Forward,
            },
        )
        .await?;
        let records = parse(&body)?;
        if records.is_empty() {
            verdict.violation(format!(
                "$all ends at position {at}: verified events up to {} are gone",
                truth.events.len() - 1
            ));
            return Ok(());
        }
        for r in &records {
            if at >= end {
                break;
            }
            let known = truth.events[at as usize];
            let stream = &streams.names[known.stream as usize];
            if r.position != at
                || parse_id(&r.event_id) != Some(known.id)
                || &r.stream_id != stream
                || r.version != known.version
            {
                verdict.violation(format!(
                    "verified event at position {at} ({} {stream}@{}) changed: read {} {}@{} at position {}",
                    format_id(known.id),
                    known.version,
                    r.event_id,
                    r.stream_id,
                    r.version,
                    r.position
                ));
            }
            at += 1;
            verdict.prefix_checked += 1;
        }
    }
    Ok(())
}

/// `$all` from `from` on, up to a page past `sent_events` more events; and whether it ended
/// there (false: it holds more events than were sent).
async fn read_tail(
    conn: &mut Conn,
    from: u64,
    sent_events: u64,
) -> anyhow::Result<(Vec<Record>, bool)> {
    let mut records = Vec::new();
    let mut at = from;
    for _ in 0..sent_events / PAGE_EVENTS + 2 {
        let body = read_page(
            conn,
            Request::ReadAll {
                from: ReadStart::At(at),
                count: PAGE_EVENTS,
                direction: Direction::Forward,
            },
        )
        .await?;
        let page = parse(&body)?;
        let Some(last) = page.last() else {
            return Ok((records, true));
        };
        at = last.position + 1;
        records.extend(page);
    }
    Ok((records, false))
}

/// Everything after the verified prefix, checked event by event and appended to `truth`;
/// where each request's events were found.
fn judge_tail(
    records: &[Record],
    ended: bool,
    truth: &mut Truth,
    check: &RoundCheck<'_>,
    verdict: &mut Verdict,
) -> HashMap<RequestKey, Presence> {
    let by_key: HashMap<RequestKey, &SentAppend> =
        check.appends.iter().map(|a| (a.key, a)).collect();
    let sent_events: u64 = check.appends.iter().map(|a| a.count as u64).sum();
    let mut presence: HashMap<RequestKey, Presence> = HashMap::new();
    // The request whose events are being read, and the index expected next.
    let mut open: Option<(RequestKey, u16, u16)> = None;
    let mut at = truth.events.len() as u64;
    for r in records {
        if verdict.full() {
            return presence;
        }
        if r.position != at {
            verdict.violation(format!(
                "$all not gapless: position {} where {at} was next",
                r.position
            ));
        }
        at = r.position + 1;
        let Some(id) = parse_id(&r.event_id) else {
            verdict.violation(format!(
                "position {}: event id {} is not a UUID",
                r.position, r.event_id
            ));
            continue;
        };
        let Some(tag) = decode_event_id(check.run, id) else {
            verdict.violation(format!(
                "position {}: event {} was sent by no client of this run",
                r.position, r.event_id
            ));
            continue;
        };
        let Some(sent) = by_key
            .get(&tag.key)
            .filter(|_| tag.key.round == check.round)
        else {
            verdict.violation(format!(
                "position {}: event {} of request {:?}, which was {} (only requests of round {} may appear now)",
                r.position,
                r.event_id,
                tag.key,
                if tag.key.round < check.round { "settled in an earlier round" } else { "never sent" },
                check.round
            ));
            continue;
        };
        let stream = sent.stream;
        let name = &check.streams.names[stream as usize];
        if &r.stream_id != name
            || tag.count != sent.count
            || r.event_type != event_type(tag.count)
            || r.data.get() != event_data(tag)
        {
            verdict.violation(format!(
                "position {}: event {} reads back as {} {} data {}, sent as {} {} data {}",
                r.position,
                r.event_id,
                r.stream_id,
                r.event_type,
                r.data.get(),
                name,
                event_type(sent.count),
                event_data(tag)
            ));
        }
        let expected_version = truth.versions[stream as usize] + 1;
        if r.version as i64 != expected_version {
            verdict.violation(format!(
                "stream {name} not gapless: event {} at version {} where {expected_version} was next",
                r.event_id, r.version
            ));
        }
        truth.versions[stream as usize] = r.version as i64;
        truth.events.push(KnownEvent {
            id,
            stream,
            version: r.version,
        });
        // A request's events are consecutive and in order.
        match open {
            Some((key, next, count)) if key == tag.key && next == tag.index => {
                open = (next + 1 < count).then_some((key, next + 1, count));
            }
            Some((key, next, count)) => {
                verdict.violation(format!(
                    "request {key:?} torn: {next} of its {count} events, then event {} ({:?} #{}) at position {}",
                    r.event_id, tag.key, tag.index, r.position
                ));
                open = None;
            }
            None if tag.index != 0 => verdict.violation(format!(
                "request {:?} torn: its event #{} at position {} without the ones before",
                tag.key, tag.index, r.position
            )),
            None => open = (tag.count > 1).then_some((tag.key, 1, tag.count)),
        }
        let p = presence.entry(tag.key).or_insert(Presence {
            first_version: r.version,
            last_version: r.version,
            last_position: r.position,
            seen: 0,
        });
        if p.seen == tag.count {
            verdict.violation(format!(
                "request {:?} applied twice (again at position {})",
                tag.key, r.position
            ));
        }
        p.seen += 1;
        p.last_version = r.version;
        p.last_position = r.position;
    }
    if !ended {
        verdict.violation(format!(
            "$all goes on past position {at}: more events than the {sent_events} sent this round"
        ));
    }
    if let Some((key, next, count)) = open {
        verdict.violation(format!(
            "request {key:?} torn: $all ends after {next} of its {count} events"
        ));
    }
    presence
}

/// Each request's outcome against what was found.
fn check_requests(
    check: &RoundCheck<'_>,
    presence: &HashMap<RequestKey, Presence>,
    verdict: &mut Verdict,
) {
    for sent in check.appends {
        let found = presence.get(&sent.key).filter(|p| p.seen == sent.count);
        let name = &check.streams.names[sent.stream as usize];
        match (&sent.outcome, found) {
            (
                Outcome::Acked {
                    last_version,
                    last_position,
                },
                Some(p),
            ) => {
                verdict.acked += 1;
                if (p.last_version, p.last_position) != (*last_version, *last_position) {
                    verdict.violation(format!(
                        "request {:?} acknowledged as {name} {last_version} {last_position}, found at {} {}",
                        sent.key, p.last_version, p.last_position
                    ));
                }
            }
            (Outcome::Acked { last_version, last_position }, None) => verdict.violation(format!(
                "acknowledged append lost: request {:?} ({} events to {name}, APPENDED {name} {last_version} {last_position}) is not in the store",
                sent.key, sent.count
            )),
            (Outcome::Rejected { code }, Some(p)) => verdict.violation(format!(
                "request {:?} was refused ({code}) but is in the store at {name}@{}",
                sent.key, p.first_version
            )),
            (Outcome::Rejected { .. }, None) => verdict.rejected += 1,
            (Outcome::Unknown, Some(_)) => verdict.unknown_applied += 1,
            (Outcome::Unknown, None) => verdict.unknown_absent += 1,
        }
        if let Some(p) = found {
            let ok = match sent.expected {
                ExpectedVersion::Exact(v) => p.first_version == v + 1,
                ExpectedVersion::NoStream => p.first_version == 0,
                ExpectedVersion::Exists => p.first_version > 0,
                ExpectedVersion::Any => true,
            };
            if !ok {
                verdict.violation(format!(
                    "request {:?} with expected {:?} applied at {name}@{}",
                    sent.key, sent.expected, p.first_version
                ));
            }
        }
    }
}

/// `VERSION` and `READ` of every stream agree with `$all`.
async fn check_streams(
    conn: &mut Conn,
    truth: &Truth,
    check: &RoundCheck<'_>,
    head: u64,
    old_versions: &[i64],
    verdict: &mut Verdict,
) -> anyhow::Result<()> {
    let mut new_by_stream: Vec<Vec<(u128, u64)>> = vec![Vec::new(); check.streams.len()];
    for (offset, e) in truth.events[head as usize..].iter().enumerate() {
        new_by_stream[e.stream as usize].push((e.id, head + offset as u64));
    }
    for (s, name) in check.streams.names.iter().enumerate() {
        match conn
            .call(&Request::Version {
                stream: name.clone(),
            })
            .await?
        {
            Reply::Version { version, .. } if version == truth.versions[s] => {}
            other => verdict.violation(format!(
                "VERSION {name} answered {other:?}; $all says {}",
                truth.versions[s]
            )),
        }
        let expected = &new_by_stream[s];
        let mut from = (old_versions[s] + 1) as u64;
        let mut read = 0usize;
        let max_pages = expected.len() as u64 / PAGE_EVENTS + 2;
        for _ in 0..max_pages {
            if read >= expected.len() {
                break;
            }
            let body = read_page(
                conn,
                Request::Read {
                    stream: name.clone(),
                    from: ReadStart::At(from),
                    count: PAGE_EVENTS,
                    direction: Direction::Forward,
                },
            )
            .await?;
            let records = parse(&body)?;
            if records.is_empty() {
                break;
            }
            for r in &records {
                let want = expected.get(read);
                if want != Some(&(parse_id(&r.event_id).unwrap_or(0), r.position))
                    || r.version != from
                {
                    verdict.violation(format!(
                        "READ {name} at version {from} gives {} at position {}; $all has {:?}",
                        r.event_id,
                        r.position,
                        want.map(|(id, p)| (format_id(*id), *p))
                    ));
                    return Ok(());
                }
                read += 1;
                from += 1;
            }
        }
        if read != expected.len() {
            verdict.violation(format!(
                "READ {name} from version {} gives {read} events; $all has {}",
                old_versions[s] + 1,
                expected.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::model::{event_id, EventTag};

    const RUN: u16 = 9;

    fn streams() -> Streams {
        Streams::new(1)
    }

    fn sent(
        seq: u32,
        stream: u32,
        expected: ExpectedVersion,
        count: u16,
        outcome: Outcome,
    ) -> SentAppend {
        SentAppend {
            key: RequestKey {
                round: 1,
                conn: 0,
                seq,
            },
            stream,
            expected,
            count,
            outcome,
        }
    }

    fn acked(last_version: u64, last_position: u64) -> Outcome {
        Outcome::Acked {
            last_version,
            last_position,
        }
    }

    /// The records a correct server holds for `sent` at these first version and position.
    fn records(sent: &SentAppend, first_version: u64, first_position: u64) -> Vec<Record> {
        (0..sent.count)
            .map(|index| {
                let tag = EventTag {
                    key: sent.key,
                    index,
                    count: sent.count,
                };
                Record {
                    event_id: format_id(event_id(RUN, tag)),
                    event_type: event_type(sent.count).into(),
                    stream_id: streams().names[sent.stream as usize].clone(),
                    version: first_version + index as u64,
                    position: first_position + index as u64,
                    data: RawValue::from_string(event_data(tag)).unwrap(),
                }
            })
            .collect()
    }

    fn judge(appends: &[SentAppend], records: &[Record]) -> Verdict {
        let streams = streams();
        let mut truth = Truth::empty(&streams);
        let check = RoundCheck {
            run: RUN,
            round: 1,
            streams: &streams,
            appends,
            prefix: Vec::new(),
        };
        let mut verdict = Verdict::default();
        let presence = judge_tail(records, true, &mut truth, &check, &mut verdict);
        check_requests(&check, &presence, &mut verdict);
        verdict
    }

    fn assert_caught(verdict: &Verdict, text: &str) {
        assert!(
            verdict.violations.iter().any(|v| v.contains(text)),
            "expected a violation with {text:?}, got {:?}",
            verdict.violations
        );
    }

    #[test]
    fn a_correct_store_passes() {
        let s = streams();
        let a = sent(1, s.owned(0, 0), ExpectedVersion::NoStream, 3, acked(2, 2));
        let b = sent(
            2,
            s.owned(0, 0),
            ExpectedVersion::Exact(2),
            1,
            Outcome::Unknown,
        );
        let c = sent(3, s.any(0), ExpectedVersion::Any, 2, Outcome::Unknown);
        let d = sent(
            4,
            s.owned(0, 0),
            ExpectedVersion::Exact(0),
            1,
            Outcome::Rejected {
                code: "wrong_expected_version".into(),
            },
        );
        let mut all = records(&a, 0, 0);
        all.extend(records(&b, 3, 3));
        let verdict = judge(&[a, b, c, d], &all);
        assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
        assert_eq!((verdict.acked, verdict.rejected), (1, 1));
        assert_eq!((verdict.unknown_applied, verdict.unknown_absent), (1, 1));
    }

    #[test]
    fn a_lost_acknowledged_append_is_caught() {
        let a = sent(1, streams().any(0), ExpectedVersion::Any, 1, acked(0, 0));
        assert_caught(&judge(&[a], &[]), "acknowledged append lost");
    }

    #[test]
    fn an_append_at_another_place_than_acknowledged_is_caught() {
        let a = sent(1, streams().any(0), ExpectedVersion::Any, 2, acked(5, 5));
        let found = records(&a, 0, 0);
        assert_caught(&judge(&[a], &found), "acknowledged as");
    }

    #[test]
    fn a_torn_batch_is_caught() {
        let a = sent(
            1,
            streams().any(1),
            ExpectedVersion::Any,
            3,
            Outcome::Unknown,
        );
        let mut found = records(&a, 0, 0);
        found.pop();
        assert_caught(&judge(&[a], &found), "torn");
    }

    #[test]
    fn an_append_applied_twice_is_caught() {
        let a = sent(
            1,
            streams().any(1),
            ExpectedVersion::Any,
            1,
            Outcome::Unknown,
        );
        let mut found = records(&a, 0, 0);
        found.extend(records(&a, 1, 1));
        assert_caught(&judge(&[a], &found), "applied twice");
    }

    #[test]
    fn a_gap_in_all_or_in_a_stream_is_caught() {
        let s = streams();
        let a = sent(1, s.any(0), ExpectedVersion::Any, 1, acked(0, 1));
        assert_caught(
            &judge(std::slice::from_ref(&a), &records(&a, 0, 1)),
            "$all not gapless",
        );
        let b = sent(1, s.any(0), ExpectedVersion::Any, 1, acked(1, 0));
        assert_caught(
            &judge(std::slice::from_ref(&b), &records(&b, 1, 0)),
            "not gapless",
        );
    }

    #[test]
    fn an_event_nobody_sent_or_with_other_data_is_caught() {
        let a = sent(
            1,
            streams().any(0),
            ExpectedVersion::Any,
            1,
            Outcome::Unknown,
        );
        let mut found = records(&a, 0, 0);
        found[0].data = RawValue::from_string("{}".into()).unwrap();
        assert_caught(&judge(std::slice::from_ref(&a), &found), "reads back as");
        let never = sent(
            7,
            streams().any(0),
            ExpectedVersion::Any,
            1,
            Outcome::Unknown,
        );
        assert_caught(&judge(&[a], &records(&never, 0, 0)), "never sent");
        let mut foreign = records(&never, 0, 0);
        foreign[0].event_id = "01a233f4-6bb8-712e-8d40-5ba3e4158811".into();
        assert_caught(&judge(&[], &foreign), "sent by no client");
    }

    #[test]
    fn a_refused_append_in_the_store_and_a_broken_expected_version_are_caught() {
        let s = streams();
        let refused = sent(
            1,
            s.any(0),
            ExpectedVersion::Any,
            1,
            Outcome::Rejected {
                code: "wrong_expected_version".into(),
            },
        );
        assert_caught(
            &judge(std::slice::from_ref(&refused), &records(&refused, 0, 0)),
            "was refused",
        );
        let exact = sent(
            1,
            s.owned(0, 1),
            ExpectedVersion::Exact(4),
            1,
            Outcome::Unknown,
        );
        assert_caught(
            &judge(std::slice::from_ref(&exact), &records(&exact, 0, 0)),
            "with expected",
        );
    }
}
