//! Managing persistent subscriptions (`PSUB`): `client.persistent_subscriptions().list()`.

use esdb_protocol::limits::MAX_READ_COUNT;
use esdb_protocol::ops::psub::PsubOp;
use esdb_protocol::ops::subscribe::{validate_name, Selector, SubscriptionOptions};
use esdb_protocol::{Reply, Request};
use serde::{Deserialize, Serialize};

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

    /// Parked events in position order, from `from_position`, at most `count`.
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
            Reply::Events { body, .. } => Ok(serde_json::from_slice(&body)?),
            other => Err(Error::unexpected("PSUB PARKED", &other)),
        }
    }

    /// Delivers every parked event again.
    pub async fn replay(&self, name: &str) -> Result<()> {
        let name = validate_name(name).map_err(Error::invalid)?;
        expect_ok(self.call(PsubOp::Replay { name }).await?, "PSUB REPLAY")
    }
}
