//! A catch-up subscription (no name): history from the start position, then live, pushed to
//! the connection as `EVENT` frames, with one `LIVE` when history is done. Nothing is stored;
//! the client keeps its own position and resubscribes from it after a reconnect.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use esdb_protocol::ops::subscribe::StartFrom;
use esdb_protocol::Reply;

use crate::store::CommittedEvent;
use crate::subscriptions::feed::{self, FeedItem};
use crate::subscriptions::selector::Matcher;
use crate::subscriptions::SubscriptionHub;

/// The `EVENT` push for a committed event.
pub fn event_reply(sid: &str, event: CommittedEvent) -> Reply {
    Reply::Event {
        sid: sid.to_owned(),
        stream: event.stream.to_string(),
        version: event.version,
        position: event.position,
        body: event.record,
    }
}

/// Starts the subscription once `go` fires (after its `+OK` is queued, so no `EVENT`
/// overtakes it). Aborting the task ends the subscription.
pub fn start(
    hub: &Arc<SubscriptionHub>,
    sid: String,
    matcher: Matcher,
    start: StartFrom,
    outbound: crate::server::outbound::Outbound,
    go: oneshot::Receiver<()>,
    quota_slot: crate::store::quota::Slot,
) -> JoinHandle<()> {
    let hub = hub.clone();
    tokio::spawn(async move {
        // Counted against the store's `max_subscriptions` for as long as this task lives.
        let _quota_slot = quota_slot;
        if go.await.is_err() {
            return;
        }
        let start = match start {
            StartFrom::Origin => 0,
            // A write answered before this SUB is behind its start, not in its feed.
            StartFrom::End => match hub.store.settled_head().await {
                Ok(head) => head,
                Err(_) => *hub.store.head().borrow(),
            },
            StartFrom::Position(position) => position,
            StartFrom::Time(epoch_us) => {
                // As for `End`: what was answered before this SUB is in the index.
                let _ = hub.store.settled_head().await;
                let store = hub.store.clone();
                let found = tokio::task::spawn_blocking(move || {
                    store.with_read(|txn, dbs| {
                        crate::store::clock::first_position_at_or_after(txn, dbs, epoch_us)
                    })
                })
                .await;
                match found {
                    Ok(Ok(position)) => position,
                    Ok(Err(error)) => {
                        tracing::error!(%error, "resolving a subscription's from_time failed");
                        return;
                    }
                    Err(join_error) => {
                        tracing::error!(%join_error, "resolving a subscription's from_time failed");
                        return;
                    }
                }
            }
        };
        let mut active = hub.track_active(matcher.selector());
        let mut items = feed::spawn(
            hub.store.clone(),
            hub.emitters.clone(),
            Arc::new(matcher),
            start,
        );
        while let Some(item) = items.recv().await {
            let reply = match item {
                FeedItem::Event(delivery) => {
                    let event = delivery.event;
                    active.delivered(event.position, || *hub.store.head().borrow());
                    match delivery.unreadable {
                        None => event_reply(&sid, event),
                        Some(reason) => {
                            hub.store.metrics().unreadable_events.inc();
                            tracing::error!(%sid, position = event.position, %reason,
                                "subscription met an unreadable record; reported to the client");
                            Reply::Unreadable {
                                sid: sid.clone(),
                                stream: event.stream.to_string(),
                                version: event.version,
                                position: event.position,
                                reason: reason.to_string(),
                            }
                        }
                    }
                }
                FeedItem::Live => Reply::Live { sid: sid.clone() },
                FeedItem::Progress(_) => continue,
                FeedItem::Failed(error) => {
                    tracing::error!(%sid, %error, "catch-up subscription stopped");
                    return;
                }
            };
            if outbound.send(reply).await.is_err() {
                return;
            }
        }
    })
}
