//! A path around the door (the protocol's JSON rules), for tests only: writes events whose JSON the protocol would refuse,
//! as an older version of the server (or a lying disk) might have left them, so tests can show
//! how every reader handles a record it cannot parse.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::raft::Node;
use crate::store::{AppendCommand, Command, NewEvent, Store, StoreError, StoreOptions};

/// Appends `(event_type, data)` events to `stream` in the store `store` under `data_dir`,
/// bypassing the protocol's JSON rules (the data need only be syntactically JSON). Opens and
/// closes the store (through its Raft log, like the server) itself: call it while no server
/// runs on `data_dir`.
#[doc(hidden)]
pub fn append_unchecked(
    data_dir: &Path,
    store: &str,
    stream: &str,
    events: &[(&str, &str)],
) -> Result<(), StoreError> {
    let events = events
        .iter()
        .map(|(event_type, data)| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: (*event_type).to_owned(),
            data: raw_unchecked(data),
            metadata: None,
            tags: Vec::new(),
        })
        .collect();
    let command = Command::Append(AppendCommand {
        sealed: false,
        stream: stream.to_owned(),
        expected: esdb_protocol::ExpectedVersion::Any,
        epoch_us: 1,
        events,
    });
    let options = StoreOptions {
        map_size_bytes: 1 << 30,
        master_key: None,
    };
    let opened = Arc::new(Store::open(store, &data_dir.join(store), &options)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Storage(e.to_string()))?;
    let result = runtime.block_on(async {
        let node = Node::start(&opened).await.map_err(StoreError::Storage)?;
        let result = opened.execute(command).await;
        node.shutdown().await;
        result
    });
    opened.close(Duration::from_secs(10));
    result.map(|_| ())
}

/// A `RawValue` holding `text` as long as it is syntactically JSON at any depth.
fn raw_unchecked(text: &str) -> Box<RawValue> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.disable_recursion_limit();
    Box::<RawValue>::deserialize(&mut deserializer).expect("syntactically valid JSON")
}
