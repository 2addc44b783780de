//! Snapshots (`SNAP`): a client's saved state of a stream at a version.

use bytes::Bytes;
use esdb_protocol::limits::{MAX_PAYLOAD_BYTES, MAX_SNAPSHOTS_PAGE};
use esdb_protocol::ops::snap::SnapRequest;
use esdb_protocol::ops::streams::validate_stream_id;
use esdb_protocol::{ErrorCode, Reply, Request};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::client::Client;
use crate::error::{Error, Result};

/// A stored snapshot, fields in the order of the protocol's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub stream_id: String,
    /// The stream version the snapshot was saved at.
    pub version: u64,
    /// The state, byte for byte as saved.
    pub data: Box<RawValue>,
    pub metadata: Box<RawValue>,
    /// When the server accepted the save, in microseconds since the Unix epoch.
    pub epoch_us: u64,
}

impl Snapshot {
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_str(self.data.get())?)
    }
}

/// What `SNAP SAVE` sends.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotData {
    pub data: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
    /// After saving, keep only the stream's newest `keep` snapshots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<u64>,
}

impl SnapshotData {
    pub fn json<T: Serialize + ?Sized>(data: &T) -> Result<SnapshotData> {
        Ok(SnapshotData::from_raw(serde_json::value::to_raw_value(
            data,
        )?))
    }

    pub fn raw(json: impl Into<String>) -> Result<SnapshotData> {
        Ok(SnapshotData::from_raw(RawValue::from_string(json.into())?))
    }

    pub fn from_raw(data: Box<RawValue>) -> SnapshotData {
        SnapshotData {
            data,
            metadata: None,
            keep: None,
        }
    }

    pub fn with_metadata<T: Serialize + ?Sized>(mut self, metadata: &T) -> Result<SnapshotData> {
        self.metadata = Some(serde_json::value::to_raw_value(metadata)?);
        Ok(self)
    }

    pub fn with_keep(mut self, keep: u64) -> SnapshotData {
        self.keep = Some(keep);
        self
    }
}

/// The snapshot operations of a client: `client.snapshots().save(…)`.
#[derive(Debug, Clone, Copy)]
pub struct Snapshots<'a> {
    client: &'a Client,
}

impl Client {
    pub fn snapshots(&self) -> Snapshots<'_> {
        Snapshots { client: self }
    }
}

impl Snapshots<'_> {
    async fn call(&self, request: SnapRequest) -> Result<Reply> {
        self.client.call(&Request::Snap(request)).await
    }

    /// Saves a snapshot of `stream` at `version` (at most its current version), replacing one
    /// already there.
    pub async fn save(&self, stream: &str, version: u64, snapshot: &SnapshotData) -> Result<()> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        let payload = serde_json::to_vec(snapshot)?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::Invalid {
                code: ErrorCode::PayloadTooLarge,
                message: format!(
                    "snapshot of {} bytes exceeds max_payload {MAX_PAYLOAD_BYTES}",
                    payload.len()
                ),
            });
        }
        let request = SnapRequest::Save {
            stream,
            version,
            payload: Bytes::from(payload),
        };
        expect_ok(self.call(request).await?, "SNAP SAVE")
    }

    /// The newest snapshot of the stream, or `None`.
    pub async fn load(&self, stream: &str) -> Result<Option<Snapshot>> {
        self.load_version(stream, None).await
    }

    /// The snapshot at exactly `version`, or `None`.
    pub async fn load_at(&self, stream: &str, version: u64) -> Result<Option<Snapshot>> {
        self.load_version(stream, Some(version)).await
    }

    async fn load_version(&self, stream: &str, version: Option<u64>) -> Result<Option<Snapshot>> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        match self.call(SnapRequest::Load { stream, version }).await {
            Ok(Reply::Snapshot { body, .. }) => Ok(Some(serde_json::from_slice(&body)?)),
            Ok(other) => Err(Error::unexpected("SNAP LOAD", &other)),
            Err(error) if error.code() == Some(ErrorCode::SnapshotNotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One page of the stream's snapshots, ascending by version, from `from_version`.
    pub async fn list_page(
        &self,
        stream: &str,
        from_version: u64,
        count: u64,
    ) -> Result<Vec<Snapshot>> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        let request = SnapRequest::List {
            stream,
            from_version,
            count: count.clamp(1, MAX_SNAPSHOTS_PAGE),
        };
        match self.call(request).await? {
            Reply::Snapshots { body, .. } => Ok(serde_json::from_slice(&body)?),
            other => Err(Error::unexpected("SNAP LIST", &other)),
        }
    }

    /// Every snapshot of the stream, ascending by version.
    pub async fn list(&self, stream: &str) -> Result<Vec<Snapshot>> {
        let mut all: Vec<Snapshot> = Vec::new();
        loop {
            let from = all.last().map_or(0, |last| last.version + 1);
            let page = self.list_page(stream, from, MAX_SNAPSHOTS_PAGE).await?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// Deletes every snapshot of the stream (deleting what is not there succeeds).
    pub async fn delete(&self, stream: &str) -> Result<()> {
        self.delete_version(stream, None).await
    }

    /// Deletes the snapshot at `version`.
    pub async fn delete_at(&self, stream: &str, version: u64) -> Result<()> {
        self.delete_version(stream, Some(version)).await
    }

    async fn delete_version(&self, stream: &str, version: Option<u64>) -> Result<()> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        expect_ok(
            self.call(SnapRequest::Delete { stream, version }).await?,
            "SNAP DELETE",
        )
    }

    /// Whether the stream has any snapshot.
    pub async fn exists(&self, stream: &str) -> Result<bool> {
        self.exists_version(stream, None).await
    }

    /// Whether the stream has a snapshot at `version`.
    pub async fn exists_at(&self, stream: &str, version: u64) -> Result<bool> {
        self.exists_version(stream, Some(version)).await
    }

    async fn exists_version(&self, stream: &str, version: Option<u64>) -> Result<bool> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        match self.call(SnapRequest::Exists { stream, version }).await? {
            Reply::Exists { exists, .. } => Ok(exists),
            other => Err(Error::unexpected("SNAP EXISTS", &other)),
        }
    }
}

pub(crate) fn expect_ok(reply: Reply, operation: &str) -> Result<()> {
    match reply {
        Reply::Ok => Ok(()),
        other => Err(Error::unexpected(operation, &other)),
    }
}
