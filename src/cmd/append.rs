//! `APPEND` (syntax in `esdb_protocol::ops::append`): the events of one stream become one
//! [`Command::Append`], sealed first if the stream is encrypted; the reply names the last
//! version and position written. Counts `esdb_append_*` and emits `stream.write.*`.

use std::time::Instant;

use futures::FutureExt;

use esdb_protocol::ops::append::{parse_events, EventInput};
use esdb_protocol::{ExpectedVersion, Reply};

use crate::cmd::erasure;
use crate::server::session::{error, write, Dispatched, Session};
use crate::store::{AppendCommand, Command, NewEvent, Outcome};
use crate::telemetry;

/// `APPEND <stream> <expected> <payload>`.
pub async fn append(
    session: &mut Session,
    stream: String,
    expected: ExpectedVersion,
    payload: &[u8],
) -> Dispatched {
    let received = Instant::now();
    let metrics = session.store.metrics().clone();
    metrics.append_requests.inc();
    let events = match parse_events(payload) {
        Ok(events) => events,
        Err(e) => {
            metrics
                .append_latency
                .observe(received.elapsed().as_secs_f64());
            return error(e);
        }
    };
    let telemetry_ids = write_start(session, &stream, events.len(), expected);
    let mut events: Vec<NewEvent> = events.into_iter().map(new_event).collect();
    let sealed = match erasure::seal(session, &stream, &mut events).await {
        Ok(sealed) => sealed,
        Err(e) => return error(e),
    };
    // Taken here, never inside `apply`, and never before the store's last commit time.
    let epoch_us = session.store.stamp_epoch_us();
    let reply_stream = stream.clone();
    let event_count = events.len();
    let command = Command::Append(AppendCommand {
        stream,
        expected,
        epoch_us,
        events,
        sealed,
    });
    let dispatched = write(session, command, move |outcome| {
        appended(reply_stream, outcome)
    })
    .await;
    // Latency ends when the reply is ready (fsynced); events, bytes and conflicts are counted
    // by the writer, once per batch.
    let Dispatched::Reply(reply) = dispatched else {
        return dispatched;
    };
    Dispatched::Reply(
        async move {
            let reply = reply.await;
            let elapsed = received.elapsed();
            metrics.append_latency.observe(elapsed.as_secs_f64());
            if let Some((store, stream)) = telemetry_ids {
                write_stop(
                    &reply,
                    &store,
                    &stream,
                    elapsed.as_micros() as u64,
                    event_count,
                );
            }
            reply
        }
        .boxed(),
    )
}

/// `APPENDED <stream> <last_version> <last_position>`, for a new append or a repeated one.
fn appended(stream: String, outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Appended {
            last_version,
            last_position,
            ..
        }
        | Outcome::AlreadyAppended {
            last_version,
            last_position,
        } => Reply::Appended {
            stream,
            last_version,
            last_position,
        },
        other => unreachable!("an append only appends: {other:?}"),
    }
}

/// `stream.write.start`; returns the store and stream ids for the stop or error event, only
/// copied when telemetry is on.
fn write_start(
    session: &Session,
    stream: &str,
    event_count: usize,
    expected: ExpectedVersion,
) -> Option<(String, String)> {
    if !telemetry::enabled() {
        return None;
    }
    crate::telemetry!(
        "stream.write.start",
        system_time = telemetry::system_time_us(),
        store_id = session.store.name(),
        stream_id = stream,
        event_count,
        expected_version = %expected
    );
    Some((session.store.name().to_owned(), stream.to_owned()))
}

/// An event of the request as the command carries it (`APPEND` and `APPENDMULTI` alike).
pub(crate) fn new_event(event: EventInput) -> NewEvent {
    NewEvent {
        // Ids are time-ordered (v7) rather than random (v4): consecutive events then land next
        // to each other in the event-id index, so a commit dirties a few pages, not one per
        // event.
        event_id: event.event_id.unwrap_or_else(uuid::Uuid::now_v7),
        event_type: event.event_type,
        data: event.data,
        metadata: event.metadata,
        tags: event.tags,
    }
}

/// `stream.write.stop` or `stream.write.error`, as the seed reports them.
fn write_stop(reply: &Reply, store: &str, stream: &str, duration_us: u64, event_count: usize) {
    match reply {
        Reply::Appended { last_version, .. } => crate::telemetry!(
            "stream.write.stop",
            store_id = store,
            stream_id = stream,
            duration_us,
            event_count,
            new_version = last_version
        ),
        Reply::Err(error) => crate::telemetry!(
            "stream.write.error",
            store_id = store,
            stream_id = stream,
            duration_us,
            reason = error.code.as_str()
        ),
        _ => {}
    }
}
