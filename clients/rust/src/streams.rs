//! Writing and inspecting streams: `APPEND`, `VERSION`, `EXISTS`, `STREAMS`, `DELETE`.

use bytes::Bytes;
use esdb_protocol::limits::{MAX_EVENTS_PER_APPEND, MAX_PAYLOAD_BYTES, MAX_STREAMS_PAGE};
use esdb_protocol::ops::streams::validate_stream_id;
use esdb_protocol::{ErrorCode, ExpectedVersion, Reply, Request};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::event::{AppendResult, EventData};

impl Client {
    /// Appends events to a stream atomically, if the stream's version is what `expected`
    /// says. One event or up to 10000; their ids make a retry of the same events a no-op.
    pub async fn append<I>(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: I,
    ) -> Result<AppendResult>
    where
        I: IntoIterator<Item = EventData>,
    {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        let events: Vec<EventData> = events.into_iter().collect();
        if events.is_empty() || events.len() > MAX_EVENTS_PER_APPEND {
            return Err(Error::Invalid {
                code: ErrorCode::InvalidArgument,
                message: format!(
                    "an append takes 1 to {MAX_EVENTS_PER_APPEND} events, not {}",
                    events.len()
                ),
            });
        }
        let payload = if events.len() == 1 {
            serde_json::to_vec(&events[0])?
        } else {
            serde_json::to_vec(&events)?
        };
        if payload.len() > MAX_PAYLOAD_BYTES {
            // The server would close the connection, failing every call sharing it.
            return Err(Error::Invalid {
                code: ErrorCode::PayloadTooLarge,
                message: format!(
                    "append payload of {} bytes exceeds max_payload {MAX_PAYLOAD_BYTES}",
                    payload.len()
                ),
            });
        }
        let request = Request::Append {
            stream,
            expected,
            payload: Bytes::from(payload),
        };
        match self.call(&request).await? {
            Reply::Appended {
                last_version,
                last_position,
                ..
            } => Ok(AppendResult {
                last_version,
                last_position,
            }),
            other => Err(Error::unexpected("APPEND", &other)),
        }
    }

    /// The stream's current version: `None` when it has no visible events (never written, or
    /// deleted).
    pub async fn version(&self, stream: &str) -> Result<Option<u64>> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        match self.call(&Request::Version { stream }).await? {
            Reply::Version { version, .. } => Ok(u64::try_from(version).ok()),
            other => Err(Error::unexpected("VERSION", &other)),
        }
    }

    /// Whether the stream has visible events.
    pub async fn exists(&self, stream: &str) -> Result<bool> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        match self.call(&Request::Exists { stream }).await? {
            Reply::Exists { exists, .. } => Ok(exists),
            other => Err(Error::unexpected("EXISTS", &other)),
        }
    }

    /// Soft-deletes a stream (and its snapshots), if its version is what `expected` says.
    pub async fn delete(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        let request = Request::Delete {
            stream,
            expected,
            hard: false,
        };
        match self.call(&request).await? {
            Reply::Ok => Ok(()),
            other => Err(Error::unexpected("DELETE", &other)),
        }
    }

    /// One page of stream ids with visible events, in byte order, after `after`.
    pub async fn streams_page(&self, after: Option<&str>, count: u64) -> Result<Vec<String>> {
        let after = after
            .map(validate_stream_id)
            .transpose()
            .map_err(Error::invalid)?;
        let count = count.clamp(1, MAX_STREAMS_PAGE);
        match self.call(&Request::Streams { after, count }).await? {
            Reply::Streams { body, .. } => Ok(serde_json::from_slice(&body)?),
            other => Err(Error::unexpected("STREAMS", &other)),
        }
    }

    /// Every stream id with visible events, in byte order, a page at a time.
    pub fn streams(&self) -> BoxStream<'static, Result<String>> {
        let client = self.clone();
        stream::try_unfold(
            (client, Some(None::<String>)),
            |(client, after)| async move {
                let Some(after) = after else {
                    return Ok::<_, Error>(None);
                };
                let page = client
                    .streams_page(after.as_deref(), MAX_STREAMS_PAGE)
                    .await?;
                let next = page.last().cloned().map(Some);
                Ok(if page.is_empty() {
                    None
                } else {
                    Some((page, (client, next)))
                })
            },
        )
        .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }
}
