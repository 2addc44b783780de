//! Engine tests of encrypted streams and `SHRED` ([`crate::store::crypto`]): a real LMDB
//! environment and the Raft log in a temporary directory, writes through `Store::execute`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use esdb_protocol::{Direction, ExpectedVersion, ReadStart};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::crypto::{MasterKey, KEY_BYTES};
use super::writer::WriteResult;
use super::*;

fn master_key(byte: u8) -> &'static MasterKey {
    Box::leak(Box::new(MasterKey::from_bytes(&[byte; KEY_BYTES])))
}

struct Opened {
    store: Arc<Store>,
    node: crate::raft::Node,
}

async fn open(dir: &Path, master_key: Option<&'static MasterKey>) -> Opened {
    let options = StoreOptions {
        map_size_bytes: 64 << 20,
        master_key,
    };
    let store = Arc::new(Store::open("test", dir, &options).expect("open store"));
    let node = crate::raft::Node::start(&store).await.expect("start raft");
    Opened { store, node }
}

async fn close(opened: Opened) {
    opened.node.shutdown().await;
    let store = opened.store;
    tokio::task::spawn_blocking(move || store.close(Duration::from_secs(5)))
        .await
        .expect("close");
}

fn event(data: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Registered".into(),
        data: RawValue::from_string(data.to_owned()).expect("valid JSON"),
        metadata: None,
        tags: vec!["person:ada".into()],
    }
}

/// `ENCRYPT` as the server answers it: once the key is committed to LMDB, where
/// [`Store::seal_events`] looks for it.
async fn encrypt(store: &Store, stream: &str) -> WriteResult {
    let wrapped_key = store
        .master_key()
        .expect("a master key")
        .new_wrapped_key(stream)
        .unwrap();
    let outcome = store
        .execute(Command::Encrypt {
            stream: stream.into(),
            wrapped_key,
        })
        .await;
    store.progress().settled().await?;
    outcome
}

/// Appends as the server does: sealed by what the store knows of the stream's key.
async fn append(store: &Store, stream: &str, data: &str) -> WriteResult {
    let mut events = vec![event(data)];
    let sealed = store.seal_events(stream, &mut events)?;
    append_sealed_as(store, stream, events, sealed).await
}

async fn append_sealed_as(
    store: &Store,
    stream: &str,
    events: Vec<NewEvent>,
    sealed: bool,
) -> WriteResult {
    store
        .execute(Command::Append(AppendCommand {
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            epoch_us: 1,
            events,
            sealed,
        }))
        .await
}

fn read(store: &Store, stream: &str) -> Result<Vec<Value>, StoreError> {
    let page = store.with_read(|txn, dbs| {
        read::read_stream(txn, dbs, stream, ReadStart::At(0), 100, Direction::Forward)
    })?;
    Ok(serde_json::from_slice(&page.body).expect("a JSON array"))
}

fn read_all(store: &Store) -> Vec<Value> {
    let page = store
        .with_read(|txn, dbs| read::read_all(txn, dbs, ReadStart::At(0), 100, Direction::Forward))
        .unwrap();
    serde_json::from_slice(&page.body).expect("a JSON array")
}

fn rejection(result: WriteResult) -> Rejection {
    match result {
        Err(StoreError::Rejected(rejection)) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Every byte the store keeps on disk: the LMDB file and the Raft log's segments.
fn disk_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn an_encrypted_stream_reads_back_and_its_data_is_on_disk_only_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path(), Some(master_key(1))).await;
    let store = &opened.store;
    let mut committed = store.subscribe_committed();
    encrypt(store, "user-1").await.unwrap();
    append(store, "user-1", r#"{"name":"Ada Lovelace"}"#)
        .await
        .unwrap();
    append(store, "plain", r#"{"name":"Charles Babbage"}"#)
        .await
        .unwrap();

    let events = read(store, "user-1").unwrap();
    assert_eq!(events[0]["data"]["name"], "Ada Lovelace");
    assert_eq!(events[0]["tags"][0], "person:ada");
    assert!(events[0].get("sealed").is_none() && events[0].get("shredded").is_none());
    let all = read_all(store);
    assert_eq!(all[0]["data"]["name"], "Ada Lovelace");
    assert_eq!(all[1]["data"]["name"], "Charles Babbage");
    // Subscribers get the opened record too.
    let batch = committed.recv().await.unwrap();
    let live: Value = serde_json::from_slice(&batch.events[0].record).unwrap();
    assert_eq!(live["data"]["name"], "Ada Lovelace");
    close(opened).await;

    let disk = disk_bytes(dir.path());
    assert!(
        contains(&disk, "Charles Babbage"),
        "the search sees plaintext"
    );
    assert!(
        !contains(&disk, "Ada Lovelace"),
        "no plaintext of the encrypted stream"
    );
}

#[tokio::test]
async fn shredding_hides_the_data_for_good_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = master_key(2);
    let opened = open(dir.path(), Some(key)).await;
    let store = &opened.store;
    encrypt(store, "user-1").await.unwrap();
    append(store, "user-1", r#"{"name":"Ada"}"#).await.unwrap();
    append(store, "user-1", r#"{"name":"Ada L."}"#)
        .await
        .unwrap();
    store
        .execute(Command::SaveSnapshot(SaveSnapshotCommand {
            stream: "user-1".into(),
            version: 1,
            epoch_us: 1,
            data: RawValue::from_string(r#"{"n":2}"#.into()).unwrap(),
            metadata: None,
            keep: None,
        }))
        .await
        .unwrap();
    let shred = || Command::Shred {
        stream: "user-1".into(),
    };
    assert_eq!(store.execute(shred()).await.unwrap(), Outcome::Done);
    assert_eq!(
        store.execute(shred()).await.unwrap(),
        Outcome::Done,
        "idempotent"
    );
    let check = |store: &Store| {
        let events = read(store, "user-1").unwrap();
        assert_eq!(events.len(), 2);
        for (version, event) in events.iter().enumerate() {
            assert_eq!(event["data"], Value::Null);
            assert_eq!(event["shredded"], true);
            assert_eq!(event["version"], version as u64);
            assert_eq!(event["event_type"], "Registered");
            assert_eq!(event["tags"][0], "person:ada");
        }
        let snapshots = store
            .with_read(|txn, dbs| snapshots::list(txn, dbs, "user-1", 0, 10))
            .unwrap();
        assert_eq!(snapshots.count, 0, "snapshots go with the data");
    };
    check(store);
    assert!(matches!(
        rejection(append(store, "user-1", "{}").await),
        Rejection::StreamShredded { .. }
    ));
    assert!(matches!(
        rejection(encrypt(store, "user-1").await),
        Rejection::StreamShredded { .. }
    ));
    close(opened).await;

    let opened = open(dir.path(), Some(key)).await;
    check(&opened.store);
    assert!(matches!(
        rejection(append_sealed_as(&opened.store, "user-1", vec![event("{}")], false).await),
        Rejection::StreamShredded { .. }
    ));
    close(opened).await;
}

#[tokio::test]
async fn apply_refuses_an_append_sealed_otherwise_than_its_stream_needs() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path(), Some(master_key(3))).await;
    let store = &opened.store;
    encrypt(store, "secret").await.unwrap();
    assert_eq!(
        encrypt(store, "secret").await.unwrap(),
        Outcome::Done,
        "idempotent"
    );
    // A node that did not yet know of the key proposed plaintext: refused, nothing written.
    let refused = append_sealed_as(store, "secret", vec![event("{}")], false).await;
    assert!(matches!(
        rejection(refused),
        Rejection::SealingChanged { .. }
    ));
    // And the other way round.
    let refused = append_sealed_as(store, "plain", vec![event(r#""x""#)], true).await;
    assert!(matches!(
        rejection(refused),
        Rejection::SealingChanged { .. }
    ));
    assert!(read_all(store).is_empty());

    append(store, "plain", "{}").await.unwrap();
    assert!(matches!(
        rejection(encrypt(store, "plain").await),
        Rejection::EncryptExisting {
            next_version: 1,
            ..
        }
    ));
    let shred_plain = store
        .execute(Command::Shred {
            stream: "plain".into(),
        })
        .await;
    assert!(matches!(
        rejection(shred_plain),
        Rejection::NotEncrypted { .. }
    ));
    close(opened).await;
}

#[tokio::test]
async fn without_the_master_key_sealed_data_is_refused_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(dir.path(), Some(master_key(4))).await;
    encrypt(&opened.store, "kept").await.unwrap();
    append(&opened.store, "kept", r#"{"a":1}"#).await.unwrap();
    encrypt(&opened.store, "gone").await.unwrap();
    append(&opened.store, "gone", r#"{"a":2}"#).await.unwrap();
    let shred = Command::Shred {
        stream: "gone".into(),
    };
    opened.store.execute(shred).await.unwrap();
    close(opened).await;

    let opened = open(dir.path(), None).await;
    assert!(matches!(
        read(&opened.store, "kept"),
        Err(StoreError::Unavailable(_))
    ));
    // A shredded stream needs no key to read as shredded.
    assert_eq!(read(&opened.store, "gone").unwrap()[0]["shredded"], true);
    // An append from a node without the key is not sealed: refused, not stored in the clear.
    assert!(matches!(
        rejection(append(&opened.store, "kept", "{}").await),
        Rejection::SealingChanged { .. }
    ));
    close(opened).await;

    let opened = open(dir.path(), Some(master_key(5))).await;
    assert!(matches!(
        read(&opened.store, "kept"),
        Err(StoreError::Unreadable(_))
    ));
    close(opened).await;
}
