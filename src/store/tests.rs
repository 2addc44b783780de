//! Engine tests against a real LMDB environment in a temporary directory: writes go through
//! the Raft log and the apply thread (`Store::execute`/`submit`, with the store's Raft node
//! running), reads through `Store::with_read`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use esdb_protocol::{Direction, ExpectedVersion, ReadStart};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use uuid::Uuid;

use super::writer::WriteResult;
use super::*;

use Direction::{Backward, Forward};
use ExpectedVersion::{Any, Exact, Exists, NoStream};
use ReadStart::{At, End};

const EPOCH_US: u64 = 1_700_000_000_123_456;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A store with its Raft group running, as the server runs it: writes go through the log.
struct TestStore {
    store: Arc<Store>,
    node: Option<crate::raft::Node>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestStore {
    async fn close(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        let store = self.store.clone();
        drop(self);
        tokio::task::spawn_blocking(move || store.close(Duration::from_secs(5)))
            .await
            .expect("close");
    }
}

async fn open(dir: &Path) -> TestStore {
    let options = StoreOptions {
        map_size_bytes: 64 << 20,
        master_key: None,
    };
    let store = Arc::new(Store::open("test", dir, &options).expect("open store"));
    let node = crate::raft::Node::start(&store).await.expect("start raft");
    TestStore {
        store,
        node: Some(node),
    }
}

fn event(event_type: &str, data: &str) -> NewEvent {
    event_with_id(Uuid::new_v4(), event_type, data)
}

fn event_with_id(event_id: Uuid, event_type: &str, data: &str) -> NewEvent {
    NewEvent {
        event_id,
        event_type: event_type.to_owned(),
        data: RawValue::from_string(data.to_owned()).expect("valid JSON"),
        metadata: None,
        tags: Vec::new(),
    }
}

fn append_command(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Command {
    Command::Append(AppendCommand {
        sealed: false,
        stream: stream.to_owned(),
        expected,
        epoch_us: EPOCH_US,
        events,
    })
}

async fn append(
    store: &Store,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> WriteResult {
    store
        .execute(append_command(stream, expected, events))
        .await
}

async fn delete(store: &Store, stream: &str, expected: ExpectedVersion) -> WriteResult {
    let stream = stream.to_owned();
    store.execute(Command::Delete { stream, expected }).await
}

fn appended(last_version: u64, last_position: u64, event_count: u64) -> WriteResult {
    Ok(Outcome::Appended {
        last_version,
        last_position,
        event_count,
    })
}

fn already(last_version: u64, last_position: u64) -> WriteResult {
    Ok(Outcome::AlreadyAppended {
        last_version,
        last_position,
    })
}

fn wrong_version(stream: &str, expected: ExpectedVersion, actual: i64) -> WriteResult {
    Err(Rejection::WrongExpectedVersion {
        stream: stream.to_owned(),
        expected,
        actual,
    }
    .into())
}

fn duplicate(event_id: Uuid, stream: &str, version: u64) -> WriteResult {
    Err(Rejection::DuplicateEventId {
        event_id,
        stream: stream.to_owned(),
        version,
    }
    .into())
}

fn not_found<T>(stream: &str) -> Result<T, StoreError> {
    Err(Rejection::StreamNotFound {
        stream: stream.to_owned(),
    }
    .into())
}

fn deleted<T>(stream: &str) -> Result<T, StoreError> {
    Err(Rejection::StreamDeleted {
        stream: stream.to_owned(),
    }
    .into())
}

/// Parses a page of records, checking its count.
fn records(page: EventsPage) -> Vec<Value> {
    let records: Vec<Value> = serde_json::from_slice(&page.body).expect("a JSON array");
    assert_eq!(page.count, records.len() as u64);
    records
}

fn read_stream(
    store: &Store,
    stream: &str,
    from: ReadStart,
    count: u64,
    direction: Direction,
) -> Result<Vec<Value>, StoreError> {
    store
        .with_read(|txn, dbs| read::read_stream(txn, dbs, stream, from, count, direction))
        .map(records)
}

fn read_all(store: &Store, from: ReadStart, count: u64, direction: Direction) -> Vec<Value> {
    records(
        store
            .with_read(|txn, dbs| read::read_all(txn, dbs, from, count, direction))
            .unwrap(),
    )
}

fn read_everything(store: &Store) -> Vec<Value> {
    read_all(store, At(0), u64::MAX, Forward)
}

fn read_types(store: &Store, types: &[&str], from_position: u64, count: u64) -> Vec<Value> {
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    records(
        store
            .with_read(|txn, dbs| read::read_types(txn, dbs, &types, from_position, count))
            .unwrap(),
    )
}

fn stream_version(store: &Store, stream: &str) -> i64 {
    store
        .with_read(|txn, dbs| read::stream_version(txn, dbs, stream))
        .unwrap()
}

fn list_streams(store: &Store, after: Option<&str>, count: u64) -> Vec<String> {
    let page = store
        .with_read(|txn, dbs| read::list_streams(txn, dbs, after, count))
        .unwrap();
    let names: Vec<String> = serde_json::from_slice(&page.body).expect("a JSON array");
    assert_eq!(page.count, names.len() as u64);
    names
}

fn head(store: &Store) -> u64 {
    store.progress().wait_visible().expect("store applying");
    *store.head().borrow()
}

/// One numeric field of each record.
fn field(records: &[Value], name: &str) -> Vec<u64> {
    records
        .iter()
        .map(|r| r[name].as_u64().expect("numeric field"))
        .collect()
}

fn versions(records: &[Value]) -> Vec<u64> {
    field(records, "version")
}

fn positions(records: &[Value]) -> Vec<u64> {
    field(records, "position")
}

fn ids(records: &[Value]) -> Vec<Uuid> {
    records
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Everything a refused command must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    head: u64,
    all: Vec<Value>,
    version: i64,
    stream: Result<Vec<Value>, StoreError>,
    streams: Vec<String>,
}

fn snapshot(store: &Store, stream: &str) -> Snapshot {
    Snapshot {
        head: head(store),
        all: read_everything(store),
        version: stream_version(store, stream),
        stream: read_stream(store, stream, At(0), u64::MAX, Forward),
        streams: list_streams(store, None, u64::MAX),
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    NeverWritten,
    /// Versions 0 and 1.
    Existing,
    /// Versions 0 and 1, then deleted.
    Deleted,
    /// Versions 0 and 1, deleted, then version 2 appended with `no_stream`.
    Recreated,
}

/// A state, an expectation, and what should come of it: `Ok(_)` on success, `Err(actual)`
/// for a wrong_expected_version refusal.
type Case<T> = (State, ExpectedVersion, Result<T, i64>);

async fn prepare(store: &Store, stream: &str, state: State) {
    if matches!(state, State::NeverWritten) {
        return;
    }
    let two = vec![event("Seed", "1"), event("Seed", "2")];
    assert!(append(store, stream, NoStream, two).await.is_ok());
    if matches!(state, State::Deleted | State::Recreated) {
        assert_eq!(delete(store, stream, Exact(1)).await, Ok(Outcome::Deleted));
    }
    if matches!(state, State::Recreated) {
        let one = vec![event("Seed", "3")];
        assert!(append(store, stream, NoStream, one).await.is_ok());
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Optimistic concurrency

#[tokio::test]
async fn append_expected_version_rules() {
    use State::*;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Ok(versions visible after the append) or Err(actual version in the rejection).
    let cases: &[Case<&[u64]>] = &[
        (NeverWritten, Any, Ok(&[0])),
        (NeverWritten, NoStream, Ok(&[0])),
        (NeverWritten, Exists, Err(-1)),
        (NeverWritten, Exact(0), Err(-1)),
        (Existing, Any, Ok(&[0, 1, 2])),
        (Existing, NoStream, Err(1)),
        (Existing, Exists, Ok(&[0, 1, 2])),
        (Existing, Exact(1), Ok(&[0, 1, 2])),
        (Existing, Exact(0), Err(1)),
        (Existing, Exact(2), Err(1)),
        (Deleted, Any, Ok(&[2])),
        (Deleted, NoStream, Ok(&[2])),
        (Deleted, Exists, Err(-1)),
        (Deleted, Exact(1), Err(-1)),
        (Deleted, Exact(0), Err(-1)),
        (Recreated, Any, Ok(&[2, 3])),
        (Recreated, NoStream, Err(2)),
        (Recreated, Exists, Ok(&[2, 3])),
        (Recreated, Exact(2), Ok(&[2, 3])),
        (Recreated, Exact(1), Err(2)),
        (Recreated, Exact(3), Err(2)),
    ];
    for (index, &(state, expected, want)) in cases.iter().enumerate() {
        let stream = format!("stream-{index}");
        prepare(&store, &stream, state).await;
        let before = snapshot(&store, &stream);
        let new = event("Tested", r#"{"case":1}"#);
        let result = append(&store, &stream, expected, vec![new.clone()]).await;
        let case = format!("{state:?} expecting {expected:?}");
        match want {
            Ok(visible) => {
                let version = *visible.last().unwrap();
                assert_eq!(result, appended(version, before.head, 1), "{case}");
                assert_eq!(head(&store), before.head + 1, "{case}");
                assert_eq!(stream_version(&store, &stream), version as i64, "{case}");
                let events = read_stream(&store, &stream, At(0), 100, Forward).unwrap();
                assert_eq!(versions(&events), visible, "{case}");
                let last = events.last().unwrap();
                assert_eq!(last["event_id"], new.event_id.to_string(), "{case}");
                assert_eq!(last["position"], before.head, "{case}");
            }
            Err(actual) => {
                assert_eq!(result, wrong_version(&stream, expected, actual), "{case}");
                assert_eq!(snapshot(&store, &stream), before, "{case}");
            }
        }
    }
}

#[tokio::test]
async fn delete_expected_version_rules() {
    use State::*;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Ok(next version a recreation gets) or Err(actual version in the rejection).
    let cases: &[Case<u64>] = &[
        (NeverWritten, Any, Ok(0)),
        (NeverWritten, NoStream, Ok(0)),
        (NeverWritten, Exists, Err(-1)),
        (NeverWritten, Exact(0), Err(-1)),
        (Existing, Any, Ok(2)),
        (Existing, NoStream, Err(1)),
        (Existing, Exists, Ok(2)),
        (Existing, Exact(1), Ok(2)),
        (Existing, Exact(0), Err(1)),
        (Deleted, Any, Ok(2)),
        (Deleted, NoStream, Ok(2)),
        (Deleted, Exists, Err(-1)),
        (Deleted, Exact(1), Err(-1)),
        (Recreated, Any, Ok(3)),
        (Recreated, NoStream, Err(2)),
        (Recreated, Exists, Ok(3)),
        (Recreated, Exact(2), Ok(3)),
        (Recreated, Exact(1), Err(2)),
    ];
    for (index, &(state, expected, want)) in cases.iter().enumerate() {
        let stream = format!("stream-{index}");
        prepare(&store, &stream, state).await;
        let before = snapshot(&store, &stream);
        let result = delete(&store, &stream, expected).await;
        let case = format!("{state:?} expecting {expected:?}");
        match want {
            Ok(next_version) => {
                assert_eq!(result, Ok(Outcome::Deleted), "{case}");
                assert_eq!(head(&store), before.head, "{case}");
                assert_eq!(read_everything(&store), before.all, "{case}");
                assert_eq!(stream_version(&store, &stream), -1, "{case}");
                let read = read_stream(&store, &stream, At(0), 100, Forward);
                if matches!(state, NeverWritten) {
                    // Deleting what does not exist creates nothing.
                    assert_eq!(read, not_found(&stream), "{case}");
                } else {
                    assert_eq!(read, deleted(&stream), "{case}");
                }
                assert!(!list_streams(&store, None, 1000).contains(&stream));
                let recreate = append(&store, &stream, NoStream, vec![event("Again", "0")]).await;
                assert_eq!(recreate, appended(next_version, before.head, 1), "{case}");
            }
            Err(actual) => {
                assert_eq!(result, wrong_version(&stream, expected, actual), "{case}");
                assert_eq!(snapshot(&store, &stream), before, "{case}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. All-or-nothing appends

#[tokio::test]
async fn multi_event_append_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let taken = Uuid::new_v4();
    let first = vec![event("A", "0"), event_with_id(taken, "A", "1")];
    assert_eq!(
        append(&store, "owner", NoStream, first).await,
        appended(1, 1, 2)
    );

    // Into a new stream: the stream must not come into being.
    let fresh = event("B", "0");
    let batch = vec![
        fresh.clone(),
        event_with_id(taken, "B", "1"),
        event("B", "2"),
    ];
    let before = snapshot(&store, "other");
    assert_eq!(
        append(&store, "other", Any, batch).await,
        duplicate(taken, "owner", 1)
    );
    assert_eq!(snapshot(&store, "other"), before);
    assert_eq!(before.stream, not_found("other"));
    assert_eq!(before.version, -1);

    // Into the owning stream, after a fresh id: nothing of it lands either.
    let before = snapshot(&store, "owner");
    let batch = vec![fresh.clone(), event_with_id(taken, "A", "3")];
    assert_eq!(
        append(&store, "owner", Exact(1), batch).await,
        duplicate(taken, "owner", 1)
    );
    assert_eq!(snapshot(&store, "owner"), before);

    // The refused appends did not register their other ids.
    assert_eq!(
        append(&store, "other", NoStream, vec![fresh.clone()]).await,
        appended(0, 2, 1)
    );
    let all = read_everything(&store);
    assert_eq!(positions(&all), [0, 1, 2]);
    assert_eq!(all[2]["event_id"], fresh.event_id.to_string());
}

// ---------------------------------------------------------------------------------------------
// 3. Idempotency

#[tokio::test]
async fn repeated_append_is_answered_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let s = "orders";
    let e0 = event("Created", "0");
    let (a, b) = (event("Added", "1"), event("Added", "2"));
    assert_eq!(
        append(&store, s, NoStream, vec![e0.clone()]).await,
        appended(0, 0, 1)
    );
    // Another stream in between, so positions differ from versions.
    assert!(append(&store, "noise", Any, vec![event("N", "0")])
        .await
        .is_ok());
    let ab = vec![a.clone(), b.clone()];
    assert_eq!(
        append(&store, s, Exact(0), ab.clone()).await,
        appended(2, 3, 2)
    );
    assert!(append(&store, s, Exact(2), vec![event("Later", "3")])
        .await
        .is_ok());
    let before = snapshot(&store, s);
    assert_eq!(before.all.len(), 5);

    // Same ids at the same place, with an expectation that held there.
    assert_eq!(append(&store, s, Exact(0), ab.clone()).await, already(2, 3));
    assert_eq!(append(&store, s, Any, ab.clone()).await, already(2, 3));
    assert_eq!(append(&store, s, Exists, ab.clone()).await, already(2, 3));
    assert_eq!(
        append(&store, s, NoStream, vec![e0.clone()]).await,
        already(0, 0)
    );
    assert_eq!(
        append(&store, s, Any, vec![e0.clone()]).await,
        already(0, 0)
    );
    assert_eq!(snapshot(&store, s), before);

    // An expectation that did not hold there is judged against the stream as it is now.
    assert_eq!(
        append(&store, s, Exact(1), ab.clone()).await,
        wrong_version(s, Exact(1), 3)
    );
    assert_eq!(
        append(&store, s, NoStream, ab.clone()).await,
        wrong_version(s, NoStream, 3)
    );
    assert_eq!(
        append(&store, s, Exact(3), ab.clone()).await,
        duplicate(a.event_id, s, 1)
    );
    assert_eq!(
        append(&store, s, Exists, vec![e0.clone()]).await,
        duplicate(e0.event_id, s, 0)
    );
    // Other order, another stream, or only some of the ids: not a repeat.
    let ba = vec![b.clone(), a.clone()];
    assert_eq!(
        append(&store, s, Any, ba).await,
        duplicate(b.event_id, s, 2)
    );
    assert_eq!(
        append(&store, "elsewhere", Any, ab.clone()).await,
        duplicate(a.event_id, s, 1)
    );
    let partial = vec![b.clone(), event("Added", "9")];
    assert_eq!(
        append(&store, s, Any, partial).await,
        duplicate(b.event_id, s, 2)
    );
    let partial = vec![event("Added", "9"), a.clone()];
    assert_eq!(
        append(&store, s, Exact(3), partial).await,
        duplicate(a.event_id, s, 1)
    );
    assert_eq!(snapshot(&store, s), before);
    assert_eq!(snapshot(&store, "elsewhere").stream, not_found("elsewhere"));
}

#[tokio::test]
async fn repeated_append_across_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let s = "cart";
    prepare(&store, s, State::Deleted).await;
    // First append after the delete, written with `any`: the stream showed no events then.
    let x = event("Recreated", "0");
    assert_eq!(
        append(&store, s, Any, vec![x.clone()]).await,
        appended(2, 2, 1)
    );
    let before = snapshot(&store, s);
    assert_eq!(append(&store, s, Any, vec![x.clone()]).await, already(2, 2));
    assert_eq!(
        append(&store, s, NoStream, vec![x.clone()]).await,
        already(2, 2)
    );
    // `exists` and `exact 1` did not hold at version 2 (the stream was deleted).
    assert_eq!(
        append(&store, s, Exists, vec![x.clone()]).await,
        duplicate(x.event_id, s, 2)
    );
    assert_eq!(
        append(&store, s, Exact(1), vec![x.clone()]).await,
        wrong_version(s, Exact(1), 2)
    );
    assert_eq!(snapshot(&store, s), before);
}

// ---------------------------------------------------------------------------------------------
// 4. Soft delete

#[tokio::test]
async fn soft_delete_hides_stream_but_keeps_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let s = "user-1";
    let three = vec![event("A", "0"), event("A", "1"), event("A", "2")];
    assert_eq!(append(&store, s, NoStream, three).await, appended(2, 2, 3));
    assert_eq!(
        append(&store, "user-2", NoStream, vec![event("B", "0")]).await,
        appended(0, 3, 1)
    );
    let log = read_everything(&store);

    // A wrong expectation deletes nothing.
    let before = snapshot(&store, s);
    assert_eq!(
        delete(&store, s, Exact(1)).await,
        wrong_version(s, Exact(1), 2)
    );
    assert_eq!(
        delete(&store, s, NoStream).await,
        wrong_version(s, NoStream, 2)
    );
    assert_eq!(snapshot(&store, s), before);

    assert_eq!(delete(&store, s, Exact(2)).await, Ok(Outcome::Deleted));
    assert_eq!(read_stream(&store, s, At(0), 10, Forward), deleted(s));
    assert_eq!(read_stream(&store, s, End, 10, Backward), deleted(s));
    assert_eq!(stream_version(&store, s), -1);
    assert_eq!(list_streams(&store, None, 10), ["user-2"]);
    assert_eq!(read_everything(&store), log);
    assert_eq!(read_types(&store, &["A"], 0, 10).len(), 3);
    assert_eq!(head(&store), 4);
    // Deleting again: a no-op with `any`, refused when expecting the stream.
    assert_eq!(delete(&store, s, Any).await, Ok(Outcome::Deleted));
    assert_eq!(
        delete(&store, s, Exists).await,
        wrong_version(s, Exists, -1)
    );
    assert_eq!(
        delete(&store, s, Exact(2)).await,
        wrong_version(s, Exact(2), -1)
    );

    // Recreate with `no_stream`: versions continue, reads show only the new events.
    let new = event("C", "9");
    assert_eq!(
        append(&store, s, NoStream, vec![new.clone()]).await,
        appended(3, 4, 1)
    );
    let events = read_stream(&store, s, At(0), 10, Forward).unwrap();
    assert_eq!(versions(&events), [3]);
    assert_eq!(ids(&events), [new.event_id]);
    assert_eq!(
        versions(&read_stream(&store, s, End, 10, Backward).unwrap()),
        [3]
    );
    assert_eq!(read_stream(&store, s, At(2), 10, Backward), Ok(vec![]));
    assert_eq!(stream_version(&store, s), 3);
    assert_eq!(list_streams(&store, None, 10), ["user-1", "user-2"]);

    // Delete again, recreate with `any`.
    assert_eq!(delete(&store, s, Exact(3)).await, Ok(Outcome::Deleted));
    let two = vec![event("D", "0"), event("D", "1")];
    assert_eq!(append(&store, s, Any, two).await, appended(5, 6, 2));
    let events = read_stream(&store, s, At(0), 10, Forward).unwrap();
    assert_eq!(versions(&events), [4, 5]);
    assert_eq!(positions(&events), [5, 6]);
    assert_eq!(
        field(&read_everything(&store), "position"),
        (0..7).collect::<Vec<_>>()
    );
    let all_versions: Vec<u64> = read_everything(&store)
        .iter()
        .filter(|r| r["stream_id"] == s)
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        all_versions,
        [0, 1, 2, 3, 4, 5],
        "no version is ever reused"
    );
}

#[tokio::test]
async fn deleting_an_absent_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let before = snapshot(&store, "ghost");
    assert_eq!(delete(&store, "ghost", Any).await, Ok(Outcome::Deleted));
    assert_eq!(
        delete(&store, "ghost", NoStream).await,
        Ok(Outcome::Deleted)
    );
    assert_eq!(
        delete(&store, "ghost", Exact(0)).await,
        wrong_version("ghost", Exact(0), -1)
    );
    assert_eq!(
        delete(&store, "ghost", Exists).await,
        wrong_version("ghost", Exists, -1)
    );
    assert_eq!(snapshot(&store, "ghost"), before);
    assert_eq!(before.stream, not_found("ghost"));
    assert_eq!(before.head, 0);
    assert_eq!(
        append(&store, "ghost", NoStream, vec![event("A", "0")]).await,
        appended(0, 0, 1)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Reads

#[tokio::test]
async fn record_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let id = Uuid::new_v4();
    let mut with_meta = event_with_id(id, "Order\"Placed", r#"{"total": 12.5,"items":[1,2]}"#);
    with_meta.metadata = Some(RawValue::from_string(r#"{"user":"u-1"}"#.into()).unwrap());
    let plain = event("Plain", "null");
    let events = vec![with_meta, plain.clone()];
    assert_eq!(
        append(&store, "orders-7", NoStream, events).await,
        appended(1, 1, 2)
    );
    let all = read_everything(&store);
    assert_eq!(
        all,
        [
            json!({
                "event_id": id.to_string(),
                "event_type": "Order\"Placed",
                "stream_id": "orders-7",
                "version": 0,
                "position": 0,
                "epoch_us": EPOCH_US,
                "data": {"total": 12.5, "items": [1, 2]},
                "metadata": {"user": "u-1"},
            }),
            json!({
                "event_id": plain.event_id.to_string(),
                "event_type": "Plain",
                "stream_id": "orders-7",
                "version": 1,
                "position": 1,
                "epoch_us": EPOCH_US,
                "data": null,
                "metadata": {},
            }),
        ]
    );
    // The client's bytes are kept as sent.
    let body = store
        .with_read(|txn, dbs| read::read_stream(txn, dbs, "orders-7", At(0), 1, Forward))
        .unwrap()
        .body;
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.contains(r#""data":{"total": 12.5,"items":[1,2]},"metadata":{"user":"u-1"}}"#));
}

#[tokio::test]
async fn read_stream_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Five events in "r", interleaved with "x", so positions are 0,2,4,6,8.
    for i in 0..5 {
        let expected = if i == 0 { NoStream } else { Exact(i - 1) };
        assert!(
            append(&store, "r", expected, vec![event("R", &i.to_string())])
                .await
                .is_ok()
        );
        assert!(append(&store, "x", Any, vec![event("X", &i.to_string())])
            .await
            .is_ok());
    }
    let read = |from, count, direction| {
        let events = read_stream(&store, "r", from, count, direction).unwrap();
        assert!(events.iter().all(|e| e["stream_id"] == "r"));
        versions(&events)
    };
    let none: [u64; 0] = [];
    assert_eq!(read(At(0), 100, Forward), [0, 1, 2, 3, 4]);
    assert_eq!(read(At(0), 3, Forward), [0, 1, 2]);
    assert_eq!(read(At(3), 100, Forward), [3, 4]);
    assert_eq!(read(At(4), 1, Forward), [4]);
    assert_eq!(read(At(5), 100, Forward), none);
    assert_eq!(read(At(u64::MAX), 100, Forward), none);
    assert_eq!(read(End, 100, Forward), none);
    assert_eq!(read(At(0), 0, Forward), none);
    assert_eq!(read(End, 100, Backward), [4, 3, 2, 1, 0]);
    assert_eq!(read(End, 2, Backward), [4, 3]);
    assert_eq!(read(At(2), 100, Backward), [2, 1, 0]);
    assert_eq!(read(At(3), 2, Backward), [3, 2]);
    assert_eq!(read(At(0), 100, Backward), [0]);
    assert_eq!(read(At(100), 2, Backward), [4, 3]);
    assert_eq!(read(End, 0, Backward), none);
    let events = read_stream(&store, "r", At(0), 100, Forward).unwrap();
    assert_eq!(positions(&events), [0, 2, 4, 6, 8]);
    assert_eq!(
        read_stream(&store, "nope", At(0), 10, Forward),
        not_found("nope")
    );
    assert_eq!(
        read_stream(&store, "nope", End, 10, Backward),
        not_found("nope")
    );
    assert_eq!(stream_version(&store, "nope"), -1);
    assert_eq!(stream_version(&store, "r"), 4);
    let empty = store
        .with_read(|txn, dbs| read::read_stream(txn, dbs, "r", At(9), 10, Forward))
        .unwrap();
    assert_eq!(
        empty,
        EventsPage {
            count: 0,
            body: "[]".into()
        }
    );
}

#[tokio::test]
async fn read_all_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..10u64 {
        let stream = format!("s-{}", i % 3);
        assert!(
            append(&store, &stream, Any, vec![event("E", &i.to_string())])
                .await
                .is_ok()
        );
    }
    let read = |from, count, direction| positions(&read_all(&store, from, count, direction));
    let none: [u64; 0] = [];
    assert_eq!(read(At(0), 100, Forward), (0..10).collect::<Vec<_>>());
    assert_eq!(read(At(0), 4, Forward), [0, 1, 2, 3]);
    assert_eq!(read(At(4), 3, Forward), [4, 5, 6]);
    assert_eq!(read(At(8), 100, Forward), [8, 9]);
    assert_eq!(read(At(10), 100, Forward), none);
    assert_eq!(read(End, 100, Forward), none);
    assert_eq!(read(At(0), 0, Forward), none);
    assert_eq!(read(End, 3, Backward), [9, 8, 7]);
    assert_eq!(read(At(4), 100, Backward), [4, 3, 2, 1, 0]);
    assert_eq!(read(At(5), 2, Backward), [5, 4]);
    assert_eq!(read(At(50), 2, Backward), [9, 8]);
    assert_eq!(read(End, 0, Backward), none);
    // The data is the data of that position.
    let all = read_all(&store, At(0), 100, Forward);
    for (i, record) in all.iter().enumerate() {
        assert_eq!(record["data"], i as u64);
        assert_eq!(record["stream_id"], format!("s-{}", i % 3));
        assert_eq!(record["version"], i as u64 / 3);
    }
}

#[tokio::test]
async fn read_types_in_global_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Positions:     0    1    2    3    4    5    6    7    8
    let types = ["A", "B", "A", "C", "B", "A", "C", "AB", "B"];
    for (i, event_type) in types.iter().enumerate() {
        let stream = format!("s-{}", i % 2);
        assert!(append(&store, &stream, Any, vec![event(event_type, "{}")])
            .await
            .is_ok());
    }
    let read = |types: &[&str], from, count| {
        let events = read_types(&store, types, from, count);
        for e in &events {
            assert!(types.contains(&e["event_type"].as_str().unwrap()));
        }
        positions(&events)
    };
    let none: [u64; 0] = [];
    assert_eq!(read(&["A"], 0, 100), [0, 2, 5]);
    assert_eq!(read(&["B"], 0, 100), [1, 4, 8]);
    assert_eq!(read(&["AB"], 0, 100), [7]);
    assert_eq!(read(&["A", "C"], 0, 100), [0, 2, 3, 5, 6]);
    assert_eq!(read(&["C", "B", "A"], 0, 100), [0, 1, 2, 3, 4, 5, 6, 8]);
    // Paging by from_position.
    assert_eq!(read(&["A", "B"], 0, 2), [0, 1]);
    assert_eq!(read(&["A", "B"], 2, 2), [2, 4]);
    assert_eq!(read(&["A", "B"], 5, 2), [5, 8]);
    assert_eq!(read(&["A", "B"], 9, 2), none);
    assert_eq!(read(&["A"], 3, 100), [5]);
    assert_eq!(read(&["A"], 0, 0), none);
    assert_eq!(read(&["Z"], 0, 100), none);
    assert_eq!(read(&[], 0, 100), none);
}

#[tokio::test]
async fn list_streams_sorted_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for stream in ["b", "a", "c-2", "c-10", "gone", "d"] {
        assert!(append(&store, stream, NoStream, vec![event("E", "0")])
            .await
            .is_ok());
    }
    assert_eq!(delete(&store, "gone", Any).await, Ok(Outcome::Deleted));
    let list = |after, count| list_streams(&store, after, count);
    let none: [&str; 0] = [];
    assert_eq!(list(None, 100), ["a", "b", "c-10", "c-2", "d"]);
    assert_eq!(list(None, 2), ["a", "b"]);
    assert_eq!(list(Some("b"), 2), ["c-10", "c-2"]);
    assert_eq!(list(Some("c-2"), 2), ["d"]);
    assert_eq!(list(Some("d"), 2), none);
    assert_eq!(list(Some("bb"), 1), ["c-10"]);
    assert_eq!(list(None, 0), none);
}

// ---------------------------------------------------------------------------------------------
// 6 and 7. Concurrency: `$all` order and group commit

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_give_gapless_log() {
    const TASKS: u64 = 8;
    const APPENDS: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()).await);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = format!("task-{task}");
                let mut next_version = 0;
                for i in 0..APPENDS {
                    // Every third append carries two events.
                    let events: Vec<_> = (0..1 + u64::from(i % 3 == 0))
                        .map(|_| event("Tick", &format!(r#"{{"task":{task}}}"#)))
                        .collect();
                    let size = events.len() as u64;
                    let expected = match next_version {
                        0 => NoStream,
                        n => Exact(n - 1),
                    };
                    match append(&store, &stream, expected, events).await {
                        Ok(Outcome::Appended {
                            last_version,
                            event_count,
                            ..
                        }) => {
                            assert_eq!(event_count, size);
                            assert_eq!(last_version, next_version + size - 1);
                        }
                        other => panic!("append {i} of task {task}: {other:?}"),
                    }
                    next_version += size;
                }
                next_version
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(total, TASKS * (APPENDS + APPENDS.div_ceil(3)));
    let all = read_everything(&store);
    assert_eq!(positions(&all), (0..total).collect::<Vec<_>>());
    assert_eq!(head(&store), total);
    let mut by_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in &all {
        let stream = record["stream_id"].as_str().unwrap().to_owned();
        assert_eq!(
            stream,
            format!("task-{}", record["data"]["task"]),
            "record data matches its stream"
        );
        by_stream
            .entry(stream)
            .or_default()
            .push(record["version"].as_u64().unwrap());
    }
    assert_eq!(by_stream.len(), TASKS as usize);
    for (stream, versions) in by_stream {
        let expected: Vec<u64> = (0..total / TASKS).collect();
        assert_eq!(versions, expected, "{stream}");
        assert_eq!(
            stream_version(&store, &stream),
            total as i64 / TASKS as i64 - 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_of_many_concurrent_appends() {
    const APPENDS: u64 = 200;
    const STREAMS: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()).await);
    let tasks: Vec<_> = (0..APPENDS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let new = event("G", &i.to_string());
                let id = new.event_id;
                let stream = format!("g-{}", i % STREAMS);
                (
                    id,
                    stream.clone(),
                    append(&store, &stream, Any, vec![new]).await,
                )
            })
        })
        .collect();
    let mut outcomes = BTreeMap::new();
    for task in tasks {
        let (id, stream, result) = task.await.unwrap();
        match result {
            Ok(Outcome::Appended {
                last_version,
                last_position,
                event_count: 1,
            }) => outcomes.insert(id, (stream, last_version, last_position)),
            other => panic!("{other:?}"),
        };
    }
    let mut positions_seen: Vec<u64> = outcomes.values().map(|o| o.2).collect();
    positions_seen.sort_unstable();
    assert_eq!(positions_seen, (0..APPENDS).collect::<Vec<_>>());
    assert_eq!(head(&store), APPENDS);
    // Each reported place is where the event is, and each stream is gapless.
    let all = read_everything(&store);
    assert_eq!(positions(&all), (0..APPENDS).collect::<Vec<_>>());
    let mut by_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (record, id) in all.iter().zip(ids(&all)) {
        let (stream, version, position) = &outcomes[&id];
        assert_eq!(record["stream_id"], stream.as_str());
        assert_eq!(record["version"], *version);
        assert_eq!(record["position"], *position);
        by_stream.entry(stream.clone()).or_default().push(*version);
    }
    for versions in by_stream.values() {
        assert_eq!(*versions, (0..APPENDS / STREAMS).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn pipelined_commands_apply_in_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // A chain of exact expectations only holds if the queue is applied in order, across
    // however many batches the writer makes of it.
    let mut pending = Vec::new();
    for i in 0..300u64 {
        let expected = if i == 0 { NoStream } else { Exact(i - 1) };
        let command = append_command("chain", expected, vec![event("C", &i.to_string())]);
        pending.push(store.submit(command).await.unwrap());
    }
    // Racing creations: the first submitted wins, the rest are refused and write nothing.
    for _ in 0..20 {
        let command = append_command("race", NoStream, vec![event("R", "0")]);
        pending.push(store.submit(command).await.unwrap());
    }
    let mut results = Vec::new();
    for receiver in pending {
        results.push(receiver.await.unwrap());
    }
    for (i, result) in results[..300].iter().enumerate() {
        assert_eq!(*result, appended(i as u64, i as u64, 1));
    }
    assert_eq!(results[300], appended(0, 300, 1));
    for result in &results[301..] {
        assert_eq!(*result, wrong_version("race", NoStream, 0));
    }
    assert_eq!(head(&store), 301);
    assert_eq!(read_everything(&store).len(), 301);
}

// ---------------------------------------------------------------------------------------------
// 8. Durability across reopen

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let first = vec![event("A", "0"), event("A", "1")];
    assert_eq!(
        append(&store, "s1", NoStream, first.clone()).await,
        appended(1, 1, 2)
    );
    assert_eq!(
        append(&store, "s2", NoStream, vec![event("B", "0")]).await,
        appended(0, 2, 1)
    );
    assert_eq!(
        append(&store, "s3", NoStream, vec![event("C", "0")]).await,
        appended(0, 3, 1)
    );
    assert_eq!(delete(&store, "s3", Exact(0)).await, Ok(Outcome::Deleted));
    let log = read_everything(&store);
    store.close().await;

    let store = open(dir.path()).await;
    assert_eq!(head(&store), 4);
    assert_eq!(read_everything(&store), log);
    assert_eq!(stream_version(&store, "s1"), 1);
    assert_eq!(stream_version(&store, "s2"), 0);
    assert_eq!(stream_version(&store, "s3"), -1);
    assert_eq!(read_stream(&store, "s3", At(0), 10, Forward), deleted("s3"));
    assert_eq!(list_streams(&store, None, 10), ["s1", "s2"]);
    assert_eq!(read_types(&store, &["A", "C"], 0, 10).len(), 3);
    // Event ids are still known: a retry is recognised, a reuse refused.
    assert_eq!(
        append(&store, "s1", NoStream, first.clone()).await,
        already(1, 1)
    );
    assert_eq!(
        append(&store, "s2", Any, vec![first[0].clone()]).await,
        duplicate(first[0].event_id, "s1", 0)
    );
    // Positions, versions and stream numbers continue.
    assert_eq!(
        append(&store, "s1", Exact(1), vec![event("A", "2")]).await,
        appended(2, 4, 1)
    );
    assert_eq!(
        append(&store, "s4", NoStream, vec![event("D", "0")]).await,
        appended(0, 5, 1)
    );
    assert_eq!(
        append(&store, "s3", NoStream, vec![event("C", "1")]).await,
        appended(1, 6, 1)
    );
    let read = |stream| positions(&read_stream(&store, stream, At(0), 10, Forward).unwrap());
    assert_eq!(read("s1"), [0, 1, 4]);
    assert_eq!(read("s2"), [2]);
    assert_eq!(read("s3"), [6]);
    assert_eq!(read("s4"), [5]);
    assert_eq!(
        positions(&read_everything(&store)),
        (0..7).collect::<Vec<_>>()
    );
    store.close().await;

    let store = open(dir.path()).await;
    assert_eq!(head(&store), 7);
    assert_eq!(
        append(&store, "s4", Exact(0), vec![event("D", "1")]).await,
        appended(1, 7, 1)
    );
    store.close().await;
}

/// An append is answered before LMDB commits it; any read that starts after the answer (here
/// from other tasks, as another connection would) must still see it, while other writers keep
/// the transaction open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answered_append_is_visible_to_every_later_read() {
    const ROUNDS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Background writers keep jobs flowing, so the transaction stays open while reads run.
    let noise: Vec<_> = (0..4)
        .map(|n| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 100_000 {
                    let stream = format!("noise-{n}");
                    let _ = append(&store, &stream, Any, vec![event("N", "1")]).await;
                    i += 1;
                }
            })
        })
        .collect();
    for version in 0..ROUNDS {
        let appended = append(&store, "seen", Any, vec![event("S", "1")]).await;
        let Ok(Outcome::Appended { last_position, .. }) = appended else {
            panic!("{appended:?}");
        };
        let reader = store.clone();
        let (stream, position) = tokio::task::spawn_blocking(move || {
            (
                stream_version(&reader, "seen"),
                reader.with_read(|txn, dbs| Ok(dbs.events.get(txn, &last_position)?.is_some())),
            )
        })
        .await
        .unwrap();
        assert_eq!(
            stream, version as i64,
            "the answered append's version is read back"
        );
        assert!(position.unwrap(), "its position is read back");
        let subscribed_head = store.settled_head().await.unwrap();
        assert!(
            subscribed_head > last_position,
            "the settled head covers it"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in noise {
        task.await.unwrap();
    }
}
