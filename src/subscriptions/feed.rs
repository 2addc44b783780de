//! A feed: every event matching a selector from a start position on, in position order, with
//! no gap and no duplicate: history from storage first, then live from the emitters, falling
//! back to storage whenever the subscriber is too slow for live delivery.
//!
//! The feed runs as its own task and hands events to its consumer through a bounded channel;
//! when the consumer stops taking them, the feed stops too (and, being live, is soon dropped
//! by its emitter and later resumes from storage). It ends when the consumer drops the
//! receiver.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::store::{Store, StoreError};
use crate::subscriptions::emitter::{EmitterPool, LIVE_QUEUE_EVENTS};
use crate::subscriptions::history::{read_matching, MatchPage};
use crate::subscriptions::selector::{Delivery, Matcher};

/// Matching events one catch-up read returns at most.
pub const CATCH_UP_PAGE_EVENTS: usize = 512;
/// Items the feed may hand ahead of its consumer.
pub const FEED_CHANNEL_ITEMS: usize = 256;

#[derive(Debug)]
pub enum FeedItem {
    /// A matching event, or one the selector could not read (reported, not skipped).
    Event(Delivery),
    /// Every matching event before this position has been handed over (progress through
    /// events that did not match, so checkpoints can move past them).
    Progress(u64),
    /// History is done: from here on events are live. Sent once.
    Live,
    /// Storage failed; the feed has stopped.
    Failed(StoreError),
}

/// Starts a feed from `start` (a position) and returns its receiver.
pub fn spawn(
    store: Arc<Store>,
    emitters: Arc<EmitterPool>,
    matcher: Arc<Matcher>,
    start: u64,
) -> mpsc::Receiver<FeedItem> {
    let (sender, receiver) = mpsc::channel(FEED_CHANNEL_ITEMS);
    let feed = Feed {
        store,
        emitters,
        matcher,
        cursor: start,
        sender,
        sent_live: false,
    };
    tokio::spawn(async move {
        if let Err(FeedStopped::Failed(error)) = feed.run().await {
            tracing::error!(%error, "subscription feed failed");
        }
    });
    receiver
}

/// Leaves live delivery when dropped (the feed stopped or fell back to storage).
struct Registration {
    emitters: Arc<EmitterPool>,
    id: crate::subscriptions::emitter::SubscriberId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.emitters.unregister(self.id);
    }
}

enum FeedStopped {
    /// The consumer went away.
    Closed,
    Failed(StoreError),
}

struct Feed {
    store: Arc<Store>,
    emitters: Arc<EmitterPool>,
    matcher: Arc<Matcher>,
    /// The next position to consider: every matching event before it has been handed over.
    cursor: u64,
    sender: mpsc::Sender<FeedItem>,
    sent_live: bool,
}

impl Feed {
    async fn run(mut self) -> Result<(), FeedStopped> {
        let result = self.run_inner().await;
        if let Err(FeedStopped::Failed(error)) = &result {
            let _ = self.sender.send(FeedItem::Failed(error.clone())).await;
        }
        result
    }

    async fn run_inner(&mut self) -> Result<(), FeedStopped> {
        loop {
            self.catch_up(None).await?;
            let (queue, mut live) = mpsc::channel(LIVE_QUEUE_EVENTS);
            let Some((id, boundary)) = self.emitters.register(self.matcher.clone(), queue).await
            else {
                return Err(FeedStopped::Closed);
            };
            let _registration = Registration {
                emitters: self.emitters.clone(),
                id,
            };
            // Storage holds everything before the boundary; the emitter sends the rest.
            self.catch_up(Some(boundary)).await?;
            if !self.sent_live {
                self.sent_live = true;
                self.send(FeedItem::Live).await?;
            }
            loop {
                // Also wake when the consumer goes away, so an idle feed does not outlive it
                // (it holds the store open).
                let event = tokio::select! {
                    event = live.recv() => event,
                    _ = self.sender.closed() => return Err(FeedStopped::Closed),
                };
                let Some(delivery) = event else { break };
                if delivery.event.position < self.cursor {
                    continue;
                }
                self.cursor = delivery.event.position + 1;
                if delivery.event.hidden {
                    // Hidden by its stream's limits from its commit on (`META`).
                    self.send(FeedItem::Progress(self.cursor)).await?;
                    continue;
                }
                self.send(FeedItem::Event(delivery)).await?;
            }
            // The emitter dropped us (we were too slow, or it fell behind): catch up again.
            tracing::debug!(
                cursor = self.cursor,
                "live subscriber fell behind; catching up"
            );
            self.store.metrics().subscriptions.catchup_fallbacks.inc();
        }
    }

    /// Hands over matching history from the cursor up to `until` (or the head).
    async fn catch_up(&mut self, until: Option<u64>) -> Result<(), FeedStopped> {
        loop {
            let page = self.read_page(until).await?;
            let advanced = page.next_position > self.cursor;
            for delivery in page.events {
                debug_assert!(delivery.event.position >= self.cursor);
                self.cursor = delivery.event.position + 1;
                self.send(FeedItem::Event(delivery)).await?;
            }
            self.cursor = self.cursor.max(page.next_position);
            if advanced {
                self.send(FeedItem::Progress(self.cursor)).await?;
            }
            if page.reached_limit {
                return Ok(());
            }
        }
    }

    async fn read_page(&self, until: Option<u64>) -> Result<MatchPage, FeedStopped> {
        let (store, matcher, from) = (self.store.clone(), self.matcher.clone(), self.cursor);
        let read = tokio::task::spawn_blocking(move || {
            store.with_read(|txn, dbs| {
                read_matching(txn, dbs, &matcher, from, until, CATCH_UP_PAGE_EVENTS)
            })
        });
        match read.await {
            Ok(Ok(page)) => Ok(page),
            Ok(Err(error)) => Err(FeedStopped::Failed(error)),
            Err(join_error) => Err(FeedStopped::Failed(StoreError::Corrupt(format!(
                "catch-up read panicked: {join_error}"
            )))),
        }
    }

    async fn send(&self, item: FeedItem) -> Result<(), FeedStopped> {
        self.sender
            .send(item)
            .await
            .map_err(|_| FeedStopped::Closed)
    }
}
