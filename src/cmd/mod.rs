//! The server side of each operation, one file per operation family, named as the file that
//! parses it in the protocol crate (`protocol/src/ops/<family>.rs` ↔ `src/cmd/<family>.rs`).
//!
//! A handler validates what the parser could not (meaning, not syntax), turns the request into
//! a read of the session's store or a [`crate::store::Command`] it submits, shapes the reply,
//! and counts its metrics and telemetry. It goes through the session ([`session::write`],
//! [`session::read`]) so a connection's requests take effect in the order it sent them.
//! [`dispatch`] is only the table from request to handler.
//!
//! | operations | parsed in `protocol/src/ops/` | handled in | read or applied in `src/store/` |
//! |---|---|---|---|
//! | `CONNECT` `PING` `PONG` `USE` `HELP` | `session.rs` | [`session`] | (nothing stored) |
//! | `APPEND` | `append.rs` | [`append`] | `command.rs` |
//! | `APPENDMULTI` | `append_multi.rs` | [`append_multi`] | `multi.rs`, `condition.rs` |
//! | `READ` `READALL` `READTYPES` `READTAGS` | `read.rs` | [`read`] | `read.rs` |
//! | `VERSION` `EXISTS` `STREAMS` `DELETE` | `streams.rs` | [`streams`] | `read.rs`; `command.rs`, `lifecycle.rs` |
//! | `ENCRYPT` `SHRED` | `erasure.rs` | [`erasure`] | `command.rs`, `crypto.rs` |
//! | `META` | `meta.rs` | [`meta`] | `read.rs`; `lifecycle.rs` (kept by `retention.rs`) |
//! | `SNAP …` | `snap.rs` | [`snap`] | `snapshots.rs`; `command.rs` |
//! | `AGG` | `agg.rs` | [`agg`] | `aggregate.rs` |
//! | `STATS` | `stats.rs` | [`stats`] | `mod.rs` (`Store::stats`) |
//! | `SCAVENGE` | `scavenge.rs` | [`scavenge`] | `scavenge.rs` |
//! | `CLUSTER`, `CLUSTER ADD/REMOVE` | `cluster.rs` | [`cluster`] | (`crate::cluster`) |
//! | `… after <position>` | `after.rs` | [`after`] | (waits in `crate::cluster::reads`) |
//! | `SUB` `UNSUB` `ACK` `NACK` `PSUB` | `subscribe.rs`, `psub.rs` | [`crate::server::subscribe`] | `subscriptions.rs` |
//!
//! Every reply's wire form is in `protocol/src/reply.rs`; [`crate::server::connection`] sends
//! them in request order.
//!
//! The subscription operations are not here yet: they keep their own ordering in
//! [`crate::server::subscribe`] (issue 10).
//!
//! [`session::write`]: crate::server::session::write
//! [`session::read`]: crate::server::session::read

pub mod after;
pub mod agg;
pub mod append;
pub mod append_multi;
pub mod cluster;
pub mod erasure;
pub mod meta;
pub mod read;
pub mod scavenge;
pub mod session;
pub mod snap;
pub mod stats;
pub mod streams;

use std::sync::Arc;

use esdb_protocol::Request;

use crate::server::session::{Dispatched, Session};
use crate::server::subscribe;
use crate::server::ServerContext;

/// What `request` does, as a future of its reply: the table from request to handler.
#[allow(
    clippy::too_many_lines,
    reason = "a table: one arm per request, each a call to its handler"
)]
pub async fn dispatch(
    context: &Arc<ServerContext>,
    session: &mut Session,
    request: Request,
) -> Dispatched {
    match request {
        Request::Connect(options) => session::connect(context, session, options),
        Request::Ping => session::ping(),
        Request::Pong => Dispatched::NoReply,
        Request::Use { store } => session::use_store(context, session, &store),
        Request::Help => session::help(),
        Request::Append {
            stream,
            expected,
            payload,
        } => append::append(session, stream, expected, &payload).await,
        Request::Delete {
            stream,
            expected,
            hard,
        } => streams::delete(session, stream, expected, hard).await,
        Request::Encrypt { stream } => erasure::encrypt(session, stream).await,
        Request::Shred { stream } => erasure::shred(session, stream).await,
        Request::Meta {
            stream,
            payload: None,
        } => meta::get(context, session, stream),
        Request::Meta {
            stream,
            payload: Some(payload),
        } => meta::set(session, stream, &payload).await,
        Request::Read {
            stream,
            from,
            count,
            direction,
        } => read::read_stream(context, session, stream, from, count, direction),
        Request::ReadAll {
            from,
            count,
            direction,
        } => read::read_all(context, session, from, count, direction),
        Request::ReadTypes {
            types,
            from_position,
            count,
        } => read::read_types(context, session, types, from_position, count),
        Request::ReadTags {
            tags,
            from_position,
            count,
        } => read::read_tags(context, session, tags, from_position, count),
        Request::AppendMulti(multi) => append_multi::append_multi(session, multi).await,
        Request::Version { stream } => streams::version(context, session, stream),
        Request::Exists { stream } => streams::exists(context, session, stream),
        Request::Streams { after, count } => streams::list(context, session, after, count),
        Request::Subscribe(request) => subscribe::subscribe(session, request),
        Request::Unsubscribe { sid } => subscribe::unsubscribe(session, &sid),
        Request::Ack { sid, positions } => subscribe::ack(session, &sid, positions),
        Request::Nack {
            sid,
            action,
            positions,
        } => subscribe::nack(session, &sid, action, positions),
        Request::Psub(op) => subscribe::psub(session, op),
        Request::Snap(snap) => snap::snap(context, session, snap).await,
        Request::Agg(agg) => agg::agg(context, session, agg),
        Request::Stats => stats::stats(context, session),
        Request::Scavenge { status: true } => scavenge::status(context, session),
        Request::Scavenge { status: false } => scavenge::start(context, session).await,
        Request::Cluster => cluster::cluster(context),
        Request::ClusterChange(change) => cluster::change(context, change),
        Request::After { position, request } => {
            Box::pin(after::after(context, session, position, *request)).await
        }
    }
}
