//! Reads: `READ`, `READALL`, `READTYPES`, `READTAGS` (syntax in `esdb_protocol::ops::read`),
//! each one page of events read from LMDB by [`crate::store::read`], answered as `EVENTS`.
//! `READ` and `READALL` emit `stream.read.start` and `stream.read.stop`.

use std::sync::Arc;
use std::time::Instant;

use esdb_protocol::{Direction, ReadStart, Reply};

use crate::server::session::{read, Dispatched, Session};
use crate::server::ServerContext;
use crate::store::read::{self, EventsPage};
use crate::store::StoreError;
use crate::telemetry;

/// `READ <stream> <from> <count> [direction]`.
pub fn read_stream(
    context: &Arc<ServerContext>,
    session: &mut Session,
    stream: String,
    from: ReadStart,
    count: u64,
    direction: Direction,
) -> Dispatched {
    let start = read_start(session, &stream, from, count, direction);
    read(context, session, move |txn, dbs| {
        let page = read::read_stream(txn, dbs, &stream, from, count, direction);
        read_stop(start, &page);
        page.map(events_reply)
    })
}

/// `READALL <from> <count> [direction]`: the `$all` log.
pub fn read_all(
    context: &Arc<ServerContext>,
    session: &mut Session,
    from: ReadStart,
    count: u64,
    direction: Direction,
) -> Dispatched {
    let start = read_start(session, "$all", from, count, direction);
    read(context, session, move |txn, dbs| {
        let page = read::read_all(txn, dbs, from, count, direction);
        read_stop(start, &page);
        page.map(events_reply)
    })
}

/// `READTYPES <types> <from_position> <count>`.
pub fn read_types(
    context: &Arc<ServerContext>,
    session: &mut Session,
    types: Vec<String>,
    from_position: u64,
    count: u64,
) -> Dispatched {
    read(context, session, move |txn, dbs| {
        read::read_types(txn, dbs, &types, from_position, count).map(events_reply)
    })
}

/// `READTAGS <tags> <from_position> <count>`.
pub fn read_tags(
    context: &Arc<ServerContext>,
    session: &mut Session,
    tags: Vec<String>,
    from_position: u64,
    count: u64,
) -> Dispatched {
    read(context, session, move |txn, dbs| {
        read::read_tags(txn, dbs, &tags, from_position, count).map(events_reply)
    })
}

fn events_reply(page: EventsPage) -> Reply {
    Reply::Events {
        count: page.count,
        body: page.body,
    }
}

/// `stream.read.start`; returns what `stream.read.stop` needs (only when telemetry is on).
fn read_start(
    session: &Session,
    stream: &str,
    from: ReadStart,
    count: u64,
    direction: Direction,
) -> Option<ReadTelemetry> {
    if !telemetry::enabled() {
        return None;
    }
    let start_version = match from {
        ReadStart::At(at) => at.to_string(),
        ReadStart::End => "end".to_owned(),
        ReadStart::Time(epoch_us) => format!("from_time {epoch_us}"),
    };
    let direction = match direction {
        Direction::Forward => "forward",
        Direction::Backward => "backward",
    };
    crate::telemetry!(
        "stream.read.start",
        system_time = telemetry::system_time_us(),
        store_id = session.store.name(),
        stream_id = stream,
        start_version,
        count,
        direction
    );
    Some(ReadTelemetry {
        started: Instant::now(),
        store: session.store.name().to_owned(),
        stream: stream.to_owned(),
    })
}

/// What `stream.read.stop` repeats from its start.
struct ReadTelemetry {
    started: Instant,
    store: String,
    stream: String,
}

/// `stream.read.stop`, when `read_start` emitted a start.
fn read_stop(start: Option<ReadTelemetry>, page: &Result<EventsPage, StoreError>) {
    if let Some(start) = start {
        let event_count = page.as_ref().map_or(0, |page| page.count);
        crate::telemetry!(
            "stream.read.stop",
            store_id = start.store.as_str(),
            stream_id = start.stream.as_str(),
            duration_us = start.started.elapsed().as_micros() as u64,
            event_count
        );
    }
}
