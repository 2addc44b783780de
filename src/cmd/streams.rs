//! Stream operations: `VERSION`, `EXISTS`, `STREAMS` (reads) and `DELETE` (a write), syntax in
//! `esdb_protocol::ops::streams`.

use std::sync::Arc;

use esdb_protocol::{ExpectedVersion, Reply};

use crate::server::session::{read, write, Dispatched, Session};
use crate::server::ServerContext;
use crate::store::read;
use crate::store::Command;

/// `VERSION <stream>`: its last version, `-1` when absent or deleted.
pub fn version(context: &Arc<ServerContext>, session: &mut Session, stream: String) -> Dispatched {
    read(context, session, move |txn, dbs| {
        let version = read::stream_version(txn, dbs, &stream)?;
        Ok(Reply::Version { stream, version })
    })
}

/// `EXISTS <stream>`.
pub fn exists(context: &Arc<ServerContext>, session: &mut Session, stream: String) -> Dispatched {
    read(context, session, move |txn, dbs| {
        let exists = read::stream_version(txn, dbs, &stream)? >= 0;
        Ok(Reply::Exists { stream, exists })
    })
}

/// `STREAMS [<after>] [<count>]`: live stream ids in byte order.
pub fn list(
    context: &Arc<ServerContext>,
    session: &mut Session,
    after: Option<String>,
    count: u64,
) -> Dispatched {
    read(context, session, move |txn, dbs| {
        let page = read::list_streams(txn, dbs, after.as_deref(), count)?;
        Ok(Reply::Streams {
            count: page.count,
            body: page.body,
        })
    })
}

/// `DELETE <stream> [<expected>] [hard]`: `hard` leaves a tombstone.
pub async fn delete(
    session: &mut Session,
    stream: String,
    expected: ExpectedVersion,
    hard: bool,
) -> Dispatched {
    session.store.metrics().delete_requests.inc();
    let command = if hard {
        Command::Tombstone { stream, expected }
    } else {
        Command::Delete { stream, expected }
    };
    write(session, command, |_| Reply::Ok).await
}
