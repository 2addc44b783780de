//! `STATS` (syntax in `esdb_protocol::ops::stats`): every store's counts, the same JSON as
//! HTTP `/stats` ([`ServerContext::stats_json`]).

use std::sync::Arc;

use futures::FutureExt;

use esdb_protocol::{ErrorCode, Reply};

use crate::server::session::{Dispatched, ReadTurn, Session};
use crate::server::ServerContext;

/// `STATS`: read on the blocking pool. Ordered like a read: it sees the connection's earlier
/// writes, and its later writes wait for it.
pub fn stats(context: &Arc<ServerContext>, session: &mut Session) -> Dispatched {
    let context = context.clone();
    let ReadTurn {
        earlier_write,
        started: done,
    } = session.begin_read();
    // Its own task, so it progresses while the connection task waits on it (as a read).
    let task = tokio::spawn(async move {
        if let Some(write) = earlier_write {
            write.await;
        }
        let stats = tokio::task::spawn_blocking(move || context.stats_json()).await;
        let _ = done.send(());
        match stats {
            Ok(Ok(body)) => Reply::Stats { body },
            Ok(Err(e)) => Reply::Err(e.to_protocol_error()),
            Err(_) => Reply::error(ErrorCode::Internal, "stats failed"),
        }
    });
    Dispatched::Reply(
        async move {
            task.await
                .unwrap_or_else(|_| Reply::error(ErrorCode::Internal, "stats failed"))
        }
        .boxed(),
    )
}
