//! Managing persistent subscriptions (`PSUB`): `client.persistent_subscriptions().list()`.

use esdb_protocol::limits::MAX_READ_COUNT;
use esdb_protocol::ops::psub::PsubOp;
use esdb_protocol::ops::subscribe::{validate_name, Selector, SubscriptionOptions};
use esdb_protocol::{Reply, Request};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::snapshots::expect_ok;

/// A persistent subscription as the server stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    pub name: String,
    /// `type` and `selector` of the record.
    #[serde(flatten)]
    pub selector: Selector,
    pub options: SubscriptionOptions,
    pub created_epoch_us: u64,
    /// The position delivery resumes from: every matching event before it is done.
    pub checkpoint: u64,
    /// Events parked now.
    pub parked: u64,
}

/// The `PSUB` operations of a client.
#[derive(Debug, Clone, Copy)]
pub struct PersistentSubscriptions<'a> {
    client: &'a Client,
}

impl Client {
    pub fn persistent_subscriptions(&self) -> PersistentSubscriptions<'_> {
        PersistentSubscriptions { client: self }
    }
}

impl PersistentSubscriptions<'_> {
    async fn call(&self, op: PsubOp) -> Result<Reply> {
        self.client.call(&Request::Psub(op)).await
    }

    /// Every persistent subscription of the store.
    pub async fn list(&self) -> Result<Vec<SubscriptionInfo>> {
        match self.call(PsubOp::List).await? {
            Reply::Subs { body, .. } => Ok(serde_json::from_slice(&body)?),
            other => Err(Error::unexpected("PSUB LIST", &other)),
        }
    }

    /// One subscription; `subscription_not_found` when there is none of that name.
    pub async fn get(&self, name: &str) -> Result<SubscriptionInfo> {
        let name = validate_name(name).map_err(Error::invalid)?;
        match self.call(PsubOp::Get { name }).await? {
            Reply::SubInfo { body } => Ok(serde_json::from_slice(&body)?),
            other => Err(Error::unexpected("PSUB GET", &other)),
        }
    }

    pub async fn exists(&self, name: &str) -> Result<bool> {
        let name = validate_name(name).map_err(Error::invalid)?;
        match self.call(PsubOp::Exists { name }).await? {
            Reply::SubExists { exists, .. } => Ok(exists),
            other => Err(Error::unexpected("PSUB EXISTS", &other)),
        }
    }

    /// Removes the subscription, its checkpoint and its parked events.
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.delete_op(name, None).await
    }

    /// Removes the subscription only if its selector is of this type (`stream`,
    /// `event_type`, `event_pattern`, `event_payload`).
    pub async fn delete_of_type(&self, name: &str, type_name: &str) -> Result<()> {
        self.delete_op(name, Some(type_name.to_ascii_lowercase()))
            .await
    }

    async fn delete_op(&self, name: &str, type_name: Option<String>) -> Result<()> {
        let name = validate_name(name).map_err(Error::invalid)?;
        expect_ok(
            self.call(PsubOp::Delete { name, type_name }).await?,
            "PSUB DELETE",
        )
    }

    /// Parked events in position order, from `from_position`, at most `count`. An event parked
    /// for another reason than failed deliveries (an unreadable record) has its
    /// [`RecordedEvent::parked_reason`]; its record is as stored. One the server could not even
    /// show as an object comes with a nil `event_id`, empty `stream_id` and `event_type`, its
    /// position, and the stored text as `data` (a JSON string).
    pub async fn parked(
        &self,
        name: &str,
        from_position: u64,
        count: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let name = validate_name(name).map_err(Error::invalid)?;
        let op = PsubOp::Parked {
            name,
            from_position,
            count: count.min(MAX_READ_COUNT),
        };
        match self.call(op).await? {
            Reply::Events { body, .. } => parked_records(&body),
            other => Err(Error::unexpected("PSUB PARKED", &other)),
        }
    }

    /// Delivers every parked event again.
    pub async fn replay(&self, name: &str) -> Result<()> {
        let name = validate_name(name).map_err(Error::invalid)?;
        expect_ok(self.call(PsubOp::Replay { name }).await?, "PSUB REPLAY")
    }
}

/// How the server shows a parked record that is not even shaped as an object.
#[derive(Deserialize)]
struct ShownAsText {
    parked_reason: String,
    position: u64,
    record: String,
}

/// The records of a `PSUB PARKED` body, each parsed on its own (see `parked`).
fn parked_records(body: &[u8]) -> Result<Vec<RecordedEvent>> {
    let records: Vec<Box<RawValue>> = serde_json::from_slice(body)?;
    records
        .iter()
        .map(|raw| {
            serde_json::from_str::<RecordedEvent>(raw.get()).or_else(|error| {
                let shown: ShownAsText = serde_json::from_str(raw.get()).map_err(|_| error)?;
                Ok(RecordedEvent {
                    parked_reason: Some(shown.parked_reason),
                    event_id: Uuid::nil(),
                    event_type: String::new(),
                    stream_id: String::new(),
                    version: 0,
                    position: shown.position,
                    epoch_us: 0,
                    data: serde_json::value::to_raw_value(&shown.record)?,
                    metadata: RawValue::from_string("{}".to_owned())?,
                    tags: Vec::new(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_records_keep_their_reason_and_odd_ones_are_shown_as_text() {
        let body = concat!(
            r#"[{"event_id":"0190b7a4-7c3e-7b1a-9f00-0016d3cca427","event_type":"T","stream_id":"s","version":0,"position":1,"epoch_us":2,"data":1,"metadata":{}},"#,
            r#"{"parked_reason":"unreadable: record at position 2: number out of range","event_id":"0190b7a4-7c3e-7b1a-9f00-0016d3cca428","event_type":"T","stream_id":"s","version":1,"position":2,"epoch_us":2,"data":{"n":1e400,"s":"\ud800","d":[[[[]]]]},"metadata":{}},"#,
            r#"{"parked_reason":"unreadable: damaged","position":3,"record":"\u0000garbage"}]"#
        );
        let events = parked_records(body.as_bytes()).unwrap();
        assert_eq!(events[0].parked_reason, None);
        assert_eq!(
            events[1].parked_reason.as_deref(),
            Some("unreadable: record at position 2: number out of range")
        );
        assert_eq!(
            events[1].data.get(),
            r#"{"n":1e400,"s":"\ud800","d":[[[[]]]]}"#
        );
        assert!(
            events[1]
                .to_json()
                .starts_with(r#"{"parked_reason":"unreadable: record"#),
            "serialised as the server sent it"
        );
        assert_eq!((events[2].position, events[2].event_id), (3, Uuid::nil()));
        assert_eq!(events[2].data.get(), r#""\u0000garbage""#);
        assert!(parked_records(br#"[{"position":4}]"#).is_err());
    }
}
