//! `APPENDMULTI` (several streams in one atomic append, optionally conditional: a Dynamic
//! Consistency Boundary) and `READTAGS`.

use bytes::Bytes;
use esdb_protocol::limits::{MAX_PAYLOAD_BYTES, MAX_READ_COUNT, MAX_TAGS_PER_READ};
use esdb_protocol::ops::append::validate_tag;
use esdb_protocol::ops::append_multi::parse_body;
use esdb_protocol::{ErrorCode, ExpectedVersion, Reply, Request};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::event::{EventData, RecordedEvent};

/// One stream's share of an [`Client::append_multi`].
#[derive(Debug, Clone)]
pub struct AppendPart {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<EventData>,
}

impl AppendPart {
    pub fn new(
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = EventData>,
    ) -> AppendPart {
        AppendPart {
            stream: stream.into(),
            expected,
            events: events.into_iter().collect(),
        }
    }
}

/// Append only if no event matching `query` (any of its items) has a position after `after`
/// (every position when `None`); else the append fails with `condition_failed`, whose
/// message starts with the first matching position.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppendCondition {
    pub query: Vec<QueryItem>,
    pub after: Option<u64>,
}

/// An event matches when its type is one of `types` (any when empty), it carries every tag of
/// `tags`, and its record matches `payload` partially. Give types or tags (or both).
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryItem {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// Where one part's events went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartResult {
    pub stream: String,
    pub first_version: u64,
    pub last_version: u64,
    pub first_position: u64,
    pub last_position: u64,
}

#[derive(Serialize)]
struct PartWire<'a> {
    stream: &'a str,
    expected: String,
    events: &'a [EventData],
}

#[derive(Serialize)]
struct BodyWire<'a> {
    parts: Vec<PartWire<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<&'a AppendCondition>,
}

impl Client {
    /// Appends to several streams atomically (every part or none), optionally only if
    /// `condition` holds. One result per part, in the parts' order. Event ids make a retry
    /// of the whole request a no-op that answers the original results.
    pub async fn append_multi(
        &self,
        parts: &[AppendPart],
        condition: Option<&AppendCondition>,
    ) -> Result<Vec<PartResult>> {
        let body = BodyWire {
            parts: parts
                .iter()
                .map(|part| PartWire {
                    stream: &part.stream,
                    expected: part.expected.to_string(),
                    events: &part.events,
                })
                .collect(),
            condition,
        };
        let payload = serde_json::to_vec(&body)?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            // The server would close the connection, failing every call sharing it.
            return Err(Error::Invalid {
                code: ErrorCode::PayloadTooLarge,
                message: format!(
                    "APPENDMULTI body of {} bytes exceeds max_payload {MAX_PAYLOAD_BYTES}",
                    payload.len()
                ),
            });
        }
        // The protocol crate's own parser checks every limit before anything is sent.
        let request: Request = parse_body(Bytes::from(payload)).map_err(Error::invalid)?;
        match self.call(&request).await? {
            Reply::AppendedMulti { body, .. } => Ok(serde_json::from_slice(&body)?),
            other => Err(Error::unexpected("APPENDMULTI", &other)),
        }
    }

    /// One `READTAGS`: up to `count` events carrying any of `tags`, from `from_position` on.
    pub async fn read_tags_page(
        &self,
        tags: &[String],
        from_position: u64,
        count: u64,
    ) -> Result<Vec<RecordedEvent>> {
        if tags.is_empty() || tags.len() > MAX_TAGS_PER_READ {
            return Err(Error::Invalid {
                code: ErrorCode::InvalidArgument,
                message: format!("READTAGS takes 1 to {MAX_TAGS_PER_READ} tags"),
            });
        }
        for tag in tags {
            validate_tag(tag).map_err(Error::invalid)?;
        }
        let request = Request::ReadTags {
            tags: tags.to_vec(),
            from_position,
            count: count.min(MAX_READ_COUNT),
        };
        match self.call(&request).await? {
            Reply::Events { body, .. } => Ok(serde_json::from_slice(&body)?),
            other => Err(Error::unexpected("READTAGS", &other)),
        }
    }
}
