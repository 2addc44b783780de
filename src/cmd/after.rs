//! The `after <position>` option (syntax in `esdb_protocol::ops::after`): a read or `SUB`
//! served once this node has applied the position, instead of after a read-index round
//! (`crate::cluster::reads`).

use std::sync::Arc;

use esdb_protocol::{ProtocolError, Request};

use crate::cmd::dispatch;
use crate::server::session::{error, Dispatched, Session};
use crate::server::subscribe;
use crate::server::ServerContext;

/// `<read> after <position>` or `SUB … after <position>`.
pub async fn after(
    context: &Arc<ServerContext>,
    session: &mut Session,
    position: u64,
    request: Request,
) -> Dispatched {
    match request {
        Request::Subscribe(subscribe) => {
            // The SUB's history then covers the position. Waiting here holds the connection's
            // later requests back, as the SUB's +OK would anyway.
            let store = session.store.clone();
            if let Err(e) = crate::cluster::reads::wait_for_position(&store, position).await {
                return error(e.to_protocol_error());
            }
            subscribe::subscribe(session, subscribe)
        }
        request @ (Request::Read { .. }
        | Request::ReadAll { .. }
        | Request::ReadTypes { .. }
        | Request::ReadTags { .. }
        | Request::Agg(_)) => {
            // Taken by the read the request becomes (`crate::server::session::read`).
            session.read_after = Some(position);
            let dispatched = dispatch(context, session, request).await;
            session.read_after = None;
            dispatched
        }
        other => error(ProtocolError::invalid_argument(format!(
            "{} takes no after option",
            other.operation()
        ))),
    }
}
