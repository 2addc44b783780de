//! Events going in ([`EventData`]) and coming out ([`RecordedEvent`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::Result;

/// An event to append. It gets a time-ordered id (UUID v7) when it is made, so sending the
/// same `EventData` again, after a lost connection or by the caller, is recognised by the
/// server as a retry and not written twice.
#[derive(Debug, Clone, Serialize)]
pub struct EventData {
    pub event_type: String,
    /// Any JSON value, sent as these bytes and stored byte for byte.
    pub data: Box<RawValue>,
    /// A JSON object; `None` stores `{}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
    pub event_id: Uuid,
    /// Tags, indexed by the server for `READTAGS` and append conditions (at most 16).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl EventData {
    /// An event whose data is `data` serialised as JSON.
    pub fn json<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        data: &T,
    ) -> Result<EventData> {
        Ok(EventData::from_raw(
            event_type,
            serde_json::value::to_raw_value(data)?,
        ))
    }

    /// An event whose data is this JSON text, kept byte for byte (it must parse).
    pub fn raw(event_type: impl Into<String>, json: impl Into<String>) -> Result<EventData> {
        Ok(EventData::from_raw(
            event_type,
            RawValue::from_string(json.into())?,
        ))
    }

    pub fn from_raw(event_type: impl Into<String>, data: Box<RawValue>) -> EventData {
        EventData {
            event_type: event_type.into(),
            data,
            metadata: None,
            event_id: Uuid::now_v7(),
            tags: Vec::new(),
        }
    }

    /// The same event with these tags.
    pub fn with_tags<I, T>(mut self, tags: I) -> EventData
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// The same event with this id (to make retries across processes idempotent, or to copy an
    /// event with its id, as `esdb import` does).
    pub fn with_id(mut self, event_id: Uuid) -> EventData {
        self.event_id = event_id;
        self
    }

    /// The same event with metadata, which must serialise to a JSON object.
    pub fn with_metadata<T: Serialize + ?Sized>(mut self, metadata: &T) -> Result<EventData> {
        self.metadata = Some(serde_json::value::to_raw_value(metadata)?);
        Ok(self)
    }

    pub fn with_raw_metadata(mut self, metadata: Box<RawValue>) -> EventData {
        self.metadata = Some(metadata);
        self
    }
}

/// An event as the store returns it (every read, every subscription), fields in the order of
/// the protocol's record, so serialising it gives the server's JSON back.
///
/// `data` and `metadata` are kept as sent, unparsed: a record that breaks the protocol's JSON
/// rules (a number out of range, a lone surrogate, nesting past the limit, as an older server
/// may have stored it) is still read; only [`RecordedEvent::data_as`] may refuse it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Only in [`crate::PersistentSubscriptions::parked`]: why the server parked the event when
    /// it was not for failed deliveries (`"unreadable: …"`); `None` everywhere else. First, as
    /// the server sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_reason: Option<String>,
    pub event_id: Uuid,
    pub event_type: String,
    pub stream_id: String,
    /// Its version in its stream (0 for the first event).
    pub version: u64,
    /// Its position in the store's global log, `$all`.
    pub position: u64,
    /// When the server accepted the append, in microseconds since the Unix epoch.
    pub epoch_us: u64,
    /// The client's data, byte for byte as sent.
    pub data: Box<RawValue>,
    /// A JSON object, `{}` if none was sent.
    pub metadata: Box<RawValue>,
    /// The event's tags; empty (and absent from the record) when it has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl RecordedEvent {
    /// The data decoded as `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_str(self.data.get())?)
    }

    /// The data as a JSON value.
    pub fn data_value(&self) -> Result<serde_json::Value> {
        self.data_as()
    }

    /// The event as the JSON object the server sent.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a recorded event always serialises")
    }

    /// The event as something to append elsewhere with the same id, type, data and metadata.
    pub fn to_event_data(&self) -> EventData {
        EventData {
            event_type: self.event_type.clone(),
            data: self.data.clone(),
            metadata: Some(self.metadata.clone()),
            event_id: self.event_id,
            tags: self.tags.clone(),
        }
    }
}

/// A stored event the server could not parse for a payload subscription (its record breaks
/// the protocol's JSON rules: written by an older server, or damaged on disk), reported by an
/// `UNREADABLE` frame in place of its `EVENT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableEvent {
    pub stream: String,
    pub version: u64,
    pub position: u64,
    /// Why the server cannot read it, in its words.
    pub reason: String,
}

impl std::fmt::Display for UnreadableEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unreadable event {}@{} (position {}): {}",
            self.stream, self.version, self.position, self.reason
        )
    }
}

/// The answer to an append: where its last event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// Version of the append's last event in its stream.
    pub last_version: u64,
    /// Position of the append's last event in `$all`.
    pub last_position: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_events_serialise_as_the_server_sent_them() {
        let wire = r#"{"event_id":"0190b7a4-7c3e-7b1a-9f00-0016d3cca427","event_type":"T","stream_id":"s","version":3,"position":9,"epoch_us":17,"data":{"b":1, "a":[2]},"metadata":{}}"#;
        let event: RecordedEvent = serde_json::from_str(wire).unwrap();
        assert_eq!(event.to_json(), wire);
        assert_eq!(event.data_value().unwrap()["a"][0], 2);
    }

    #[test]
    fn event_data_gets_distinct_time_ordered_ids() {
        let a = EventData::json("T", &serde_json::json!({"x": 1})).unwrap();
        let b = EventData::raw("T", r#"{"x":1}"#).unwrap();
        assert_ne!(a.event_id, b.event_id);
        assert_eq!(a.event_id.get_version_num(), 7);
        assert!(EventData::raw("T", "{").is_err());
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["event_type"], "T");
        assert!(json.get("metadata").is_none());
    }
}
