//! `META` (syntax in `esdb_protocol::ops::meta`): a stream's metadata, which holds its
//! retention limits; reading it is a read, setting it a [`Command::SetStreamLimits`].

use std::sync::Arc;

use bytes::Bytes;

use esdb_protocol::ops::meta::{parse_metadata, StreamMetadata};
use esdb_protocol::Reply;

use crate::server::session::{error, read, write, Dispatched, Session};
use crate::server::ServerContext;
use crate::store::read;
use crate::store::schema::StreamLimits;
use crate::store::Command;

/// `META <stream>`: the limits set on it (none: `{}`).
pub fn get(context: &Arc<ServerContext>, session: &mut Session, stream: String) -> Dispatched {
    read(context, session, move |txn, dbs| {
        let limits = read::stream_limits(txn, dbs, &stream)?.unwrap_or_default();
        Ok(Reply::Meta {
            stream,
            body: Bytes::from(wire_metadata(&limits).to_json()),
        })
    })
}

/// `META <stream> <json>`: replaces the stream's limits.
pub async fn set(session: &mut Session, stream: String, payload: &[u8]) -> Dispatched {
    let metadata = match parse_metadata(payload) {
        Ok(metadata) => metadata,
        Err(e) => return error(e),
    };
    let limits = StreamLimits {
        max_count: metadata.max_count,
        max_age_ms: metadata.max_age_ms,
        truncate_before: metadata.truncate_before,
    };
    let command = Command::SetStreamLimits { stream, limits };
    write(session, command, |_| Reply::Ok).await
}

/// The store's limits in the wire's shape (the store owns its own type).
fn wire_metadata(limits: &StreamLimits) -> StreamMetadata {
    StreamMetadata {
        max_count: limits.max_count,
        max_age_ms: limits.max_age_ms,
        truncate_before: limits.truncate_before,
    }
}
