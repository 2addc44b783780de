//! `APPENDMULTI` (syntax in `esdb_protocol::ops::append_multi`): the request, parsed whole by
//! the protocol crate, becomes one [`Command::AppendMulti`]; its reply lists each part's
//! result.

use bytes::Bytes;
use serde::Serialize;

use esdb_protocol::ops::append_multi::{AppendCondition as WireCondition, AppendMultiRequest};
use esdb_protocol::Reply;

use crate::cmd::append::new_event;
use crate::cmd::erasure;
use crate::server::session::{error, write, Dispatched, Session};
use crate::store::condition::{AppendCondition, ConditionItem};
use crate::store::multi::{AppendMultiCommand, AppendPart};
use crate::store::{Command, NewEvent, Outcome};

/// One part's result on the wire, in the reply's JSON array.
#[derive(Serialize)]
struct PartReply<'a> {
    stream: &'a str,
    first_version: u64,
    last_version: u64,
    first_position: u64,
    last_position: u64,
}

/// `APPENDMULTI <json>`.
pub async fn append_multi(session: &mut Session, request: AppendMultiRequest) -> Dispatched {
    let metrics = session.store.metrics().clone();
    metrics.append_requests.inc();
    let received = std::time::Instant::now();
    let streams: Vec<String> = request.parts.iter().map(|p| p.stream.clone()).collect();
    let mut parts = Vec::with_capacity(request.parts.len());
    for part in request.parts {
        let mut events: Vec<NewEvent> = part.events.into_iter().map(new_event).collect();
        let sealed = match erasure::seal(session, &part.stream, &mut events).await {
            Ok(sealed) => sealed,
            Err(e) => return error(e),
        };
        parts.push(AppendPart {
            stream: part.stream,
            expected: part.expected,
            events,
            sealed,
        });
    }
    let command = Command::AppendMulti(AppendMultiCommand {
        // Taken here, never inside `apply`, as for APPEND.
        epoch_us: session.store.stamp_epoch_us(),
        parts,
        condition: request.condition.map(store_condition),
    });
    let dispatched = write(session, command, move |outcome| {
        let Outcome::AppendedMulti { parts, .. } = outcome else {
            unreachable!("an APPENDMULTI only appends: {outcome:?}")
        };
        let replies: Vec<PartReply<'_>> = streams
            .iter()
            .zip(&parts)
            .map(|(stream, part)| PartReply {
                stream,
                first_version: part.first_version,
                last_version: part.last_version,
                first_position: part.first_position,
                last_position: part.last_position,
            })
            .collect();
        let body = serde_json::to_vec(&replies).expect("serializing plain structs");
        Reply::AppendedMulti {
            count: replies.len() as u64,
            body: Bytes::from(body),
        }
    })
    .await;
    let Dispatched::Reply(reply) = dispatched else {
        return dispatched;
    };
    Dispatched::Reply(Box::pin(async move {
        let reply = reply.await;
        metrics
            .append_latency
            .observe(received.elapsed().as_secs_f64());
        reply
    }))
}

/// The wire's condition in the store's own shape (what the Raft log carries).
fn store_condition(condition: WireCondition) -> AppendCondition {
    AppendCondition {
        query: condition
            .query
            .into_iter()
            .map(|item| ConditionItem {
                types: item.types,
                tags: item.tags,
                payload: item.payload,
            })
            .collect(),
        after: condition.after,
    }
}
