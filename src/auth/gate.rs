//! Per connection: whether it has authenticated, and whether each request's principal holds
//! the permission it needs. Runs before dispatch, so a refused request does nothing at all.
//!
//! | request | needs |
//! |---|---|
//! | `CONNECT`, `PING`, `PONG`, `HELP` | nothing (before authentication too) |
//! | `USE`, `CONNECT {"store"}` | any grant in the store, else `store_not_found` |
//! | `APPEND` | `write` on the stream |
//! | `READ`, `VERSION`, `EXISTS`, `AGG`, `SNAP LOAD/LIST/EXISTS` | `read` on the stream |
//! | `READALL`, `READTYPES`, `STREAMS` | `read` on every stream of the store |
//! | `SNAP SAVE/DELETE` | `snapshot` on the stream |
//! | `DELETE` | `admin` on the stream |
//! | `SUB` (catch-up) | `subscribe` and `read`: on the stream for a stream selector, else on some stream, and only events of streams both cover are delivered |
//! | `SUB` (named), `PSUB LIST/GET/EXISTS` | `subscribe` (and `read` for `SUB`) on every stream |
//! | `PSUB PARKED` | `subscribe` and `read` on every stream |
//! | `PSUB DELETE/REPLAY` | `admin` on every stream |
//! | `UNSUB`, `ACK`, `NACK` | nothing more (the subscription was checked by its `SUB`) |
//! | `STATS` | `admin` on every store (a `"*"` grant) |
//! | `CLUSTER`, `CLUSTER ADD/REMOVE` | `admin` on every store (a `"*"` grant) |
//! | `SCAVENGE` (start or `STATUS`) | `admin` on every stream of the store |

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;

use esdb_protocol::ops::psub::PsubOp;
use esdb_protocol::ops::snap::SnapRequest;
use esdb_protocol::ops::subscribe::{Selector, ALL_STREAMS};
use esdb_protocol::{ErrorCode, ProtocolError, Request};

use crate::auth::{Auth, Permission, Principal, Registry, StreamScope};
use crate::metrics::metrics;
use crate::server::session::Session;

/// What the gate decided about one request.
pub enum Verdict {
    /// Dispatch it.
    Pass,
    /// Answer this error instead; nothing else happens.
    Refuse(ProtocolError),
    /// Answer this error and close the connection.
    Close(ProtocolError),
}

/// What a permission is needed on.
enum Target<'a> {
    Stream(&'a str),
    /// At least one stream (what the principal may see is filtered later).
    SomeStream,
    /// Every stream of the current store.
    Store,
    /// Every store.
    Everywhere,
}

pub struct Gate {
    auth: Arc<Auth>,
    principal: Option<Arc<Principal>>,
    registry: watch::Receiver<Arc<Registry>>,
    address: Option<IpAddr>,
    transport: &'static str,
}

impl Gate {
    /// `principal`: already authenticated by the transport (an HTTP bearer token).
    pub fn new(
        auth: Arc<Auth>,
        peer: &str,
        transport: &'static str,
        principal: Option<Arc<Principal>>,
    ) -> Gate {
        let address = peer.parse::<std::net::SocketAddr>().ok().map(|a| a.ip());
        let registry = auth.watch();
        Gate {
            auth,
            principal,
            registry,
            address,
            transport,
        }
    }

    /// Whether any check runs at all (authentication is configured).
    pub fn enabled(&self) -> bool {
        self.auth.enabled()
    }

    /// Decides about `request` in `session`'s store. A `CONNECT`'s credentials are checked
    /// here (and removed from it); a catch-up `SUB`'s stream scope is set on the session.
    pub async fn check(&mut self, request: &mut Request, session: &mut Session) -> Verdict {
        if !self.auth.enabled() {
            return Verdict::Pass;
        }
        if let Request::Connect(options) = request {
            if options.has_credentials() || self.principal.is_none() {
                match self
                    .auth
                    .authenticate(options, self.address, self.transport)
                    .await
                {
                    Ok(principal) => self.principal = Some(principal),
                    Err(delay) => {
                        self.principal = None;
                        tokio::time::sleep(delay).await;
                        return Verdict::Close(ProtocolError::new(
                            ErrorCode::AuthFailed,
                            "wrong user, password or token",
                        ));
                    }
                }
            }
            (options.pass, options.token) = (None, None);
        }
        let Some(principal) = self.principal.clone() else {
            return match request {
                Request::Ping | Request::Pong | Request::Help => Verdict::Pass,
                _ => Verdict::Refuse(ProtocolError::new(
                    ErrorCode::AuthRequired,
                    format!(
                        "{} refused: authenticate first with CONNECT {{\"user\":…,\"pass\":…}} \
                         or CONNECT {{\"token\":…}}",
                        request.operation()
                    ),
                )),
            };
        };
        let store = session.store.name().to_owned();
        // A `SUB … after <position>` is a SUB: its scope is set the same way.
        let inner = match &*request {
            Request::After { request, .. } => &**request,
            request => request,
        };
        if let Request::Subscribe(subscribe) = inner {
            session.subscription_scope = if subscribe.name.is_none() {
                scope_of(&principal, &store)
            } else {
                None
            };
        }
        match check_permissions(&principal, &store, request) {
            Ok(()) => Verdict::Pass,
            Err(error) => Verdict::Refuse(error),
        }
    }

    /// Resolves when this connection's principal is removed, or its credential changed, by a
    /// reload; with the error to close the connection with. Pending forever otherwise
    /// (cancel-safe: the select loop re-creates it each turn).
    pub async fn revoked(&mut self) -> ProtocolError {
        loop {
            let Some(principal) = self.principal.clone() else {
                return std::future::pending().await;
            };
            if self.registry.changed().await.is_err() {
                return std::future::pending().await;
            }
            let registry = self.registry.borrow_and_update().clone();
            match registry.still_valid(&principal) {
                Some(current) => self.principal = Some(current),
                None => {
                    metrics()
                        .auth_failures
                        .with_label_values(&[self.transport])
                        .inc();
                    return ProtocolError::new(
                        ErrorCode::AuthFailed,
                        format!("the credentials of {} were revoked", principal.name),
                    );
                }
            }
        }
    }
}

/// The stream filter of a catch-up subscription: `None` when the principal may read and
/// subscribe to the whole store (nothing to filter).
fn scope_of(principal: &Principal, store: &str) -> Option<Arc<StreamScope>> {
    let whole = principal.allows(store, Permission::Read, None)
        && principal.allows(store, Permission::Subscribe, None);
    (!whole).then(|| {
        Arc::new(principal.stream_scope(store, &[Permission::Read, Permission::Subscribe]))
    })
}

fn check_permissions(
    principal: &Principal,
    store: &str,
    request: &Request,
) -> Result<(), ProtocolError> {
    let visible = |name: &str| {
        if principal.sees_store(name) {
            Ok(())
        } else {
            Err(crate::cmd::session::store_not_found(name))
        }
    };
    match request {
        Request::Use { store } => return visible(store),
        Request::Connect(options) => return options.store.as_deref().map_or(Ok(()), visible),
        _ => {}
    }
    for (permission, target) in needs(request) {
        let granted = match target {
            Target::Stream(stream) => principal.allows(store, permission, Some(stream)),
            Target::SomeStream => principal.allows_some(store, permission),
            Target::Store => principal.allows(store, permission, None),
            Target::Everywhere => principal.allows_everywhere(permission),
        };
        if !granted {
            metrics()
                .permission_denied
                .with_label_values(&[permission.as_str()])
                .inc();
            let on = match target {
                Target::Stream(stream) => format!("stream {stream} in store {store}"),
                Target::SomeStream => format!("any stream of store {store}"),
                Target::Store => format!("every stream of store {store}"),
                Target::Everywhere => "every store".to_owned(),
            };
            return Err(ProtocolError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{} needs {} on {on}; {} does not have it",
                    request.operation(),
                    permission.as_str(),
                    principal.name
                ),
            ));
        }
    }
    Ok(())
}

/// The permissions `request` needs (the table in the module doc).
fn needs(request: &Request) -> Vec<(Permission, Target<'_>)> {
    use Permission::*;
    match request {
        Request::Connect(_)
        | Request::Ping
        | Request::Pong
        | Request::Help
        | Request::Use { .. }
        | Request::Unsubscribe { .. }
        | Request::Ack { .. }
        | Request::Nack { .. } => vec![],
        Request::Append { stream, .. } => vec![(Write, Target::Stream(stream))],
        // Write on every stream named; a condition reads the whole store's index (its
        // conflict names an event of any stream), so it needs what READALL needs too.
        Request::AppendMulti(multi) => {
            let mut needs: Vec<_> = multi
                .parts
                .iter()
                .map(|part| (Write, Target::Stream(&part.stream)))
                .collect();
            if multi.condition.is_some() {
                needs.push((Read, Target::Store));
            }
            needs
        }
        // Shredding destroys data as a hard delete does; encrypting is part of writing one.
        Request::Delete { stream, .. } | Request::Shred { stream } => {
            vec![(Admin, Target::Stream(stream))]
        }
        Request::Encrypt { stream } => vec![(Write, Target::Stream(stream))],
        Request::Meta {
            stream,
            payload: None,
        } => vec![(Read, Target::Stream(stream))],
        Request::Meta {
            stream,
            payload: Some(_),
        } => vec![(Write, Target::Stream(stream))],
        Request::Read { stream, .. } | Request::Version { stream } | Request::Exists { stream } => {
            vec![(Read, Target::Stream(stream))]
        }
        Request::Agg(agg) => vec![(Read, Target::Stream(&agg.stream))],
        Request::ReadAll { .. }
        | Request::ReadTypes { .. }
        | Request::ReadTags { .. }
        | Request::Streams { .. } => {
            vec![(Read, Target::Store)]
        }
        Request::Snap(snap) => match snap {
            SnapRequest::Save { stream, .. } | SnapRequest::Delete { stream, .. } => {
                vec![(Snapshot, Target::Stream(stream))]
            }
            SnapRequest::Load { stream, .. }
            | SnapRequest::List { stream, .. }
            | SnapRequest::Exists { stream, .. } => vec![(Read, Target::Stream(stream))],
        },
        Request::Subscribe(subscribe) => {
            let target = || match (&subscribe.selector, &subscribe.name) {
                (_, Some(_)) => Target::Store,
                (Selector::Stream(stream), None) if stream != ALL_STREAMS => Target::Stream(stream),
                (_, None) => Target::SomeStream,
            };
            vec![(Subscribe, target()), (Read, target())]
        }
        Request::Psub(op) => match op {
            PsubOp::List | PsubOp::Get { .. } | PsubOp::Exists { .. } => {
                vec![(Subscribe, Target::Store)]
            }
            PsubOp::Parked { .. } => vec![(Subscribe, Target::Store), (Read, Target::Store)],
            PsubOp::Delete { .. } | PsubOp::Replay { .. } => vec![(Admin, Target::Store)],
        },
        Request::Stats | Request::Cluster | Request::ClusterChange(_) => {
            vec![(Admin, Target::Everywhere)]
        }
        Request::Scavenge { .. } => vec![(Admin, Target::Store)],
        Request::After { request, .. } => needs(request),
    }
}
