//! `AGG` (syntax in `esdb_protocol::ops::agg`): a read that folds a stream into its current
//! state on the server ([`crate::store::aggregate`], around the pure fold in
//! `esdb_protocol::aggregate`).

use std::sync::Arc;

use esdb_protocol::ops::agg::AggRequest;
use esdb_protocol::Reply;

use crate::server::session::{read, Dispatched, Session};
use crate::server::ServerContext;
use crate::store::aggregate;

/// `AGG <stream> [options]`.
pub fn agg(context: &Arc<ServerContext>, session: &mut Session, agg: AggRequest) -> Dispatched {
    read(context, session, move |txn, dbs| {
        let aggregated = aggregate::aggregate(txn, dbs, &agg)?;
        Ok(Reply::Aggregate {
            stream: agg.stream,
            version: aggregated.version,
            body: aggregated.body,
        })
    })
}
