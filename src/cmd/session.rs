//! Session operations: `CONNECT`, `PING`, `PONG`, `USE`, `HELP` (syntax in
//! `esdb_protocol::ops::session`). None touches a store's data; `CONNECT`'s credentials are
//! checked before dispatch, by the auth gate (`crate::auth::gate`).

use bytes::Bytes;

use esdb_protocol::ops::session::{ConnectOptions, HELP_TEXT};
use esdb_protocol::{ErrorCode, ProtocolError, Reply};

use crate::server::session::{error, ready, Dispatched, Session};
use crate::server::ServerContext;

/// `CONNECT <json>`: the client's options, and the store it selects if it names one.
pub fn connect(
    context: &ServerContext,
    session: &mut Session,
    options: ConnectOptions,
) -> Dispatched {
    if let Some(name) = &options.store {
        match context.hub(name) {
            Some(hub) => {
                if let Err(refused) = session.switch_store(hub) {
                    return error(refused);
                }
            }
            None => return error(store_not_found(name)),
        }
    }
    session.client = options;
    ready(Reply::Ok)
}

/// `PING`: `PONG` (the server's own PING, and the client's `PONG` to it, are the
/// connection's keepalive: `crate::server::connection`).
pub fn ping() -> Dispatched {
    ready(Reply::Pong)
}

/// `USE <store>`: later requests go to that store.
pub fn use_store(context: &ServerContext, session: &mut Session, name: &str) -> Dispatched {
    match context.hub(name) {
        Some(hub) => match session.switch_store(hub) {
            Ok(()) => ready(Reply::Ok),
            Err(refused) => error(refused),
        },
        None => error(store_not_found(name)),
    }
}

/// `HELP`: the command summary.
pub fn help() -> Dispatched {
    ready(Reply::Help {
        body: Bytes::from_static(HELP_TEXT.as_bytes()),
    })
}

/// The answer to naming a store this server does not have (or, to a principal with no grant
/// in it, does not show: `crate::auth::gate`).
pub fn store_not_found(name: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::StoreNotFound,
        format!("no store named {name} on this server"),
    )
}
