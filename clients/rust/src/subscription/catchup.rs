//! Catch-up subscriptions: history from a position, then live, resumed after the last event
//! yielded whenever it has to subscribe again.

use std::pin::Pin;
use std::task::{Context, Poll};

use esdb_protocol::ops::subscribe::{Selector, StartFrom, SubscriptionOptions};
use esdb_protocol::{Direction, ErrorCode, ReadStart, Reply, Request};
use futures::future::BoxFuture;
use futures::Stream;

use super::{Attached, Spec};
use crate::client::Client;
use crate::connection::{encode, Overflow, Push};
use crate::error::{Error, Result};
use crate::event::{RecordedEvent, UnreadableEvent};

/// An item of a catch-up subscription.
#[derive(Debug, Clone)]
pub enum SubscriptionEvent {
    /// An event, in position order, each exactly once.
    Event(RecordedEvent),
    /// In place of an event: the server could not parse its stored record (it breaks the
    /// protocol's JSON rules), so an `event_payload` selector cannot match it. Reported, never
    /// skipped; the subscription goes on after it (also when it subscribes again).
    Unreadable(UnreadableEvent),
    /// Everything committed before the subscription started has been delivered; what follows
    /// is live. Yielded once.
    Live,
}

/// A catch-up subscription: a `Stream` of [`SubscriptionEvent`]s that never ends by itself.
/// It ends with an `Err` only when it cannot subscribe again (no server reachable after every
/// retry, or the server refuses). Dropping it ends it on the server.
pub struct CatchUpSubscription {
    client: Client,
    spec: Spec,
    attached: Option<Attached>,
    reattach: Option<BoxFuture<'static, Result<Attached>>>,
    /// The position after the last event yielded: where a new `SUB` starts.
    next_position: u64,
    live_seen: bool,
    finished: bool,
    resumes: u64,
}

impl Client {
    /// Subscribes to events matching `selector` from `start` (`Origin`, `End`: only events
    /// committed from now on, or a position).
    pub async fn subscribe(
        &self,
        selector: Selector,
        start: StartFrom,
    ) -> Result<CatchUpSubscription> {
        let next_position = match start {
            StartFrom::Origin => 0,
            StartFrom::Position(position) => position,
            // Pinned to a position now, so that subscribing again after a lost connection
            // neither skips what was committed meanwhile nor replays history.
            StartFrom::End => self.head_position().await?,
            // Pinned to the position of the first event at or after the time, likewise.
            StartFrom::Time(epoch_us) => {
                let first = self
                    .read_all_page(ReadStart::Time(epoch_us), 1, Direction::Forward)
                    .await?;
                match first.first() {
                    Some(event) => event.position,
                    None => self.head_position().await?,
                }
            }
        };
        let spec = Spec {
            selector,
            name: None,
            options: SubscriptionOptions {
                start: StartFrom::Position(next_position),
                ..SubscriptionOptions::default()
            },
            capacity: self.options().subscription_buffer_events,
            overflow: Overflow::Pause {
                max_bytes: self.options().subscription_buffer_bytes,
            },
        };
        let attached = self.attach(&spec).await?;
        Ok(CatchUpSubscription {
            client: self.clone(),
            spec,
            attached: Some(attached),
            reattach: None,
            next_position,
            live_seen: false,
            finished: false,
            resumes: 0,
        })
    }
}

impl CatchUpSubscription {
    /// The position the next event yielded will have at least.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// How many times the subscription subscribed again (after a lost connection, or a pause
    /// because its consumer fell behind).
    pub fn resumes(&self) -> u64 {
        self.resumes
    }

    /// Ends the subscription on the server and waits for it to confirm.
    pub async fn unsubscribe(mut self) -> Result<()> {
        self.finished = true;
        let Some(attached) = self.attached.take() else {
            return Ok(());
        };
        attached.connection.remove_route(&attached.sid);
        let request = Request::Unsubscribe {
            sid: attached.sid.clone(),
        };
        match attached.connection.request(encode(&request)).await {
            Ok(Reply::Ok) | Err(Error::Disconnected(_)) => Ok(()),
            Ok(Reply::Err(error)) if error.code == ErrorCode::SubscriptionNotFound => Ok(()),
            Ok(Reply::Err(error)) => Err(Error::server(error)),
            Ok(other) => Err(Error::unexpected("UNSUB", &other)),
            Err(error) => Err(error),
        }
    }

    fn start_reattach(&mut self) {
        let client = self.client.clone();
        let mut spec = self.spec.clone();
        spec.options.start = StartFrom::Position(self.next_position);
        self.resumes += 1;
        self.reattach = Some(Box::pin(async move { client.attach(&spec).await }));
    }
}

impl Stream for CatchUpSubscription {
    type Item = Result<SubscriptionEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if let Some(reattach) = this.reattach.as_mut() {
                match reattach.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(attached)) => {
                        this.reattach = None;
                        this.attached = Some(attached);
                    }
                    Poll::Ready(Err(error)) => {
                        this.reattach = None;
                        this.finished = true;
                        return Poll::Ready(Some(Err(error)));
                    }
                }
            }
            let Some(attached) = this.attached.as_mut() else {
                this.start_reattach();
                continue;
            };
            match attached.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Push::Event { position, body })) => {
                    attached
                        .buffered_bytes
                        .fetch_sub(body.len(), std::sync::atomic::Ordering::AcqRel);
                    if position < this.next_position {
                        continue;
                    }
                    this.next_position = position + 1;
                    let event = serde_json::from_slice::<RecordedEvent>(&body)
                        .map(SubscriptionEvent::Event)
                        .map_err(Error::from);
                    return Poll::Ready(Some(event));
                }
                Poll::Ready(Some(Push::Unreadable(unreadable))) => {
                    if unreadable.position < this.next_position {
                        continue;
                    }
                    this.next_position = unreadable.position + 1;
                    return Poll::Ready(Some(Ok(SubscriptionEvent::Unreadable(unreadable))));
                }
                Poll::Ready(Some(Push::Live)) => {
                    if !this.live_seen {
                        this.live_seen = true;
                        return Poll::Ready(Some(Ok(SubscriptionEvent::Live)));
                    }
                }
                Poll::Ready(None) => {
                    // The connection closed, or the reader paused us on a full channel (and
                    // sent UNSUB): everything buffered has been yielded; subscribe again.
                    this.attached = None;
                    this.start_reattach();
                }
            }
        }
    }
}

impl Drop for CatchUpSubscription {
    fn drop(&mut self) {
        if let Some(attached) = self.attached.take() {
            attached.connection.unsubscribe_quietly(&attached.sid);
        }
    }
}
