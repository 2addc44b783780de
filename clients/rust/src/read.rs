//! Reads: a stream, `$all`, or events of given types, one page at a time or as a `Stream`
//! that asks for the next page when the consumer gets to it.

use std::sync::Arc;

use esdb_protocol::limits::{MAX_READ_COUNT, MAX_TYPES_PER_READ};
use esdb_protocol::ops::append::validate_event_type;
use esdb_protocol::ops::streams::validate_stream_id;
use esdb_protocol::{Direction, ErrorCode, ReadStart, Reply, Request};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;

/// Events a paging read asks for at a time unless told otherwise.
pub const DEFAULT_PAGE_SIZE: u64 = 1000;

/// A stream of events read page by page; each item is one event or the error that ended it.
pub type EventStream = BoxStream<'static, Result<RecordedEvent>>;

/// Where a paging read starts, which way it goes, and how much it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// First version (stream) or position (`$all`), inclusive; `End` is the newest.
    pub from: ReadStart,
    pub direction: Direction,
    /// Most events to read in all; `None`: to the end.
    pub limit: Option<u64>,
    /// Events per request (at most 10000).
    pub page_size: u64,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions::forward()
    }
}

impl ReadOptions {
    /// Oldest first, from the beginning.
    pub fn forward() -> ReadOptions {
        ReadOptions {
            from: ReadStart::At(0),
            direction: Direction::Forward,
            limit: None,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Newest first, from the end.
    pub fn backward() -> ReadOptions {
        ReadOptions {
            from: ReadStart::End,
            direction: Direction::Backward,
            ..ReadOptions::forward()
        }
    }

    pub fn from(mut self, version_or_position: u64) -> ReadOptions {
        self.from = ReadStart::At(version_or_position);
        self
    }

    pub fn from_end(mut self) -> ReadOptions {
        self.from = ReadStart::End;
        self
    }

    pub fn limit(mut self, events: u64) -> ReadOptions {
        self.limit = Some(events);
        self
    }

    pub fn page_size(mut self, events: u64) -> ReadOptions {
        self.page_size = events.clamp(1, MAX_READ_COUNT);
        self
    }
}

fn events(reply: Reply, operation: &str) -> Result<Vec<RecordedEvent>> {
    match reply {
        Reply::Events { body, .. } => Ok(serde_json::from_slice(&body)?),
        other => Err(Error::unexpected(operation, &other)),
    }
}

impl Client {
    /// One `READ`: up to `count` events of a stream from `from`.
    pub async fn read_stream_page(
        &self,
        stream: &str,
        from: ReadStart,
        count: u64,
        direction: Direction,
    ) -> Result<Vec<RecordedEvent>> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        let request = Request::Read {
            stream,
            from,
            count: count.min(MAX_READ_COUNT),
            direction,
        };
        events(self.call(&request).await?, "READ")
    }

    /// A stream's events, paging as the consumer goes. Ends with `stream_not_found` or
    /// `stream_deleted` when the stream has nothing to show.
    pub fn read_stream(&self, stream: &str, options: ReadOptions) -> EventStream {
        let client = self.clone();
        let stream = stream.to_owned();
        paged(
            options,
            |event| event.version,
            move |from, count| {
                let client = client.clone();
                let stream = stream.clone();
                Box::pin(async move {
                    client
                        .read_stream_page(&stream, from, count, options.direction)
                        .await
                })
            },
        )
    }

    /// One `READALL`: up to `count` events of `$all` from position `from`.
    pub async fn read_all_page(
        &self,
        from: ReadStart,
        count: u64,
        direction: Direction,
    ) -> Result<Vec<RecordedEvent>> {
        let request = Request::ReadAll {
            from,
            count: count.min(MAX_READ_COUNT),
            direction,
        };
        events(self.call(&request).await?, "READALL")
    }

    /// Every event of the store in commit order (deleted streams' included), paging.
    pub fn read_all(&self, options: ReadOptions) -> EventStream {
        let client = self.clone();
        paged(
            options,
            |event| event.position,
            move |from, count| {
                let client = client.clone();
                Box::pin(async move { client.read_all_page(from, count, options.direction).await })
            },
        )
    }

    /// One `READTYPES`: up to `count` events of any of `types` from `from_position` on.
    pub async fn read_types_page(
        &self,
        types: &[String],
        from_position: u64,
        count: u64,
    ) -> Result<Vec<RecordedEvent>> {
        if types.is_empty() || types.len() > MAX_TYPES_PER_READ {
            return Err(Error::Invalid {
                code: ErrorCode::InvalidArgument,
                message: format!("READTYPES takes 1 to {MAX_TYPES_PER_READ} event types"),
            });
        }
        for event_type in types {
            validate_event_type(event_type).map_err(Error::invalid)?;
        }
        let request = Request::ReadTypes {
            types: types.to_vec(),
            from_position,
            count: count.min(MAX_READ_COUNT),
        };
        events(self.call(&request).await?, "READTYPES")
    }

    /// The events of any of `types`, in commit order, from `from_position` on, paging.
    pub fn read_types(
        &self,
        types: Vec<String>,
        from_position: u64,
        limit: Option<u64>,
    ) -> EventStream {
        let client = self.clone();
        let types = Arc::new(types);
        let options = ReadOptions {
            limit,
            ..ReadOptions::forward().from(from_position)
        };
        paged(
            options,
            |event| event.position,
            move |from, count| {
                let client = client.clone();
                let types = types.clone();
                let from = match from {
                    ReadStart::At(position) => position,
                    // `paged` only ever continues from a position.
                    ReadStart::End | ReadStart::Time(_) => 0,
                };
                Box::pin(async move { client.read_types_page(&types, from, count).await })
            },
        )
    }
}

type Fetch = dyn Fn(ReadStart, u64) -> BoxFuture<'static, Result<Vec<RecordedEvent>>> + Send + Sync;

struct Pager {
    next: Option<ReadStart>,
    remaining: Option<u64>,
}

/// Pages through a read: the next page starts after the last event's `key` (version or
/// position), and the read ends on an empty page, at the limit, or below key 0.
fn paged<F>(options: ReadOptions, key: fn(&RecordedEvent) -> u64, fetch: F) -> EventStream
where
    F: Fn(ReadStart, u64) -> BoxFuture<'static, Result<Vec<RecordedEvent>>> + Send + Sync + 'static,
{
    let fetch: Arc<Fetch> = Arc::new(fetch);
    let start = Pager {
        next: Some(options.from),
        remaining: options.limit,
    };
    stream::try_unfold(start, move |mut pager| {
        let fetch = fetch.clone();
        async move {
            let Some(from) = pager.next else {
                return Ok::<_, Error>(None);
            };
            let count = options.page_size.min(pager.remaining.unwrap_or(u64::MAX));
            if count == 0 {
                return Ok(None);
            }
            let page = fetch(from, count).await?;
            let Some(last) = page.last() else {
                return Ok(None);
            };
            let last = key(last);
            pager.remaining = pager
                .remaining
                .map(|left| left.saturating_sub(page.len() as u64));
            pager.next = match options.direction {
                Direction::Forward => Some(ReadStart::At(last + 1)),
                Direction::Backward => last.checked_sub(1).map(ReadStart::At),
            };
            Ok(Some((page, pager)))
        }
    })
    .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
    .try_flatten()
    .boxed()
}
