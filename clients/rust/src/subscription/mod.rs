//! Subscriptions as `Stream`s: [`CatchUpSubscription`] (no name, nothing stored on the server)
//! and [`PersistentSubscription`] (named, checkpointed by the server, acknowledged here).
//!
//! Both share the client's connection; the reader routes their `EVENT`s by sid into a
//! bounded channel per subscription. When a connection is lost, or a catch-up consumer falls
//! so far behind that its channel fills, the subscription subscribes again under a new sid:
//! a catch-up one from the position after the last event it yielded, a persistent one by its
//! name (the server resumes from its checkpoint), and events it already yielded are not
//! yielded again.

mod catchup;
mod persistent;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use esdb_protocol::ops::subscribe::{Selector, SubscribeRequest, SubscriptionOptions};
use esdb_protocol::{Reply, Request};
use tokio::sync::mpsc;

pub use catchup::{CatchUpSubscription, SubscriptionEvent};
pub use persistent::{Acker, PersistentSubscription};

use crate::client::Client;
use crate::connection::{encode, Connection, Overflow, Push, Route};
use crate::error::{Error, Result};

/// A subscription registered on a connection.
pub(crate) struct Attached {
    pub connection: Arc<Connection>,
    pub sid: String,
    pub rx: mpsc::Receiver<Push>,
    /// Bytes of event bodies in `rx`, to take off as they are received.
    pub buffered_bytes: Arc<AtomicUsize>,
}

/// What to subscribe to, kept to subscribe again.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub selector: Selector,
    pub name: Option<String>,
    pub options: SubscriptionOptions,
    pub capacity: usize,
    pub overflow: Overflow,
}

impl Client {
    /// `SUB` under a fresh sid, retried like any call. The route is in place before the
    /// request goes out, so no `EVENT` after the `+OK` can miss it.
    pub(crate) async fn attach(&self, spec: &Spec) -> Result<Attached> {
        self.with_retries(|connection| async move {
            let sid = self.next_sid();
            let (tx, rx) = mpsc::channel(spec.capacity);
            let buffered_bytes = Arc::new(AtomicUsize::new(0));
            connection.add_route(
                &sid,
                Route {
                    tx,
                    overflow: spec.overflow,
                    buffered_bytes: buffered_bytes.clone(),
                },
            )?;
            let request = Request::Subscribe(SubscribeRequest {
                sid: sid.clone(),
                selector: spec.selector.clone(),
                name: spec.name.clone(),
                options: spec.options,
            });
            let reply = connection.request(encode(&request)).await;
            let error = match reply {
                Ok(Reply::Ok) => {
                    return Ok(Attached {
                        connection,
                        sid,
                        rx,
                        buffered_bytes,
                    })
                }
                Ok(Reply::Err(error)) => Error::server(error),
                Ok(other) => Error::unexpected("SUB", &other),
                Err(error) => error,
            };
            connection.remove_route(&sid);
            Err(error)
        })
        .await
    }

    /// The position the next event committed to this client's store will get.
    pub(crate) async fn head_position(&self) -> Result<u64> {
        let stats = self.stats().await?;
        let store = self.store().await?;
        Ok(stats.stores.get(&store).map_or(0, |store| {
            u64::try_from(store.last_position + 1).unwrap_or(0)
        }))
    }
}
