//! Engine tests of stream limits (`META`), hard deletes (tombstones) and commit time
//! (`from_time`), against a real LMDB environment in a temporary directory, with writes through
//! the Raft log and the apply thread as the server runs them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use esdb_protocol::ops::subscribe::Selector;
use esdb_protocol::{Direction, ExpectedVersion, ReadStart};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::aggregate::aggregate;
use super::clock::{first_position_at_or_after, last_commit_time};
use super::schema::{StreamLimits, META_FORMAT_VERSION};
use super::writer::WriteResult;
use super::*;
use crate::subscriptions::history::read_matching;
use crate::subscriptions::selector::Matcher;

use Direction::{Backward, Forward};
use ExpectedVersion::{Any, Exact, NoStream};
use ReadStart::{At, End, Time};

/// The commit time of the tests' first append; later ones add seconds to it.
const T0: u64 = 1_800_000_000_000_000;
const SECOND_US: u64 = 1_000_000;

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

fn event(data: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "Happened".to_owned(),
        data: RawValue::from_string(data.to_owned()).expect("valid JSON"),
        metadata: None,
        tags: Vec::new(),
    }
}

/// Appends `count` events (data 0, 1, …) to `stream`, committed at `epoch_us`.
async fn append_at(
    store: &Store,
    stream: &str,
    expected: ExpectedVersion,
    epoch_us: u64,
    events: Vec<NewEvent>,
) -> WriteResult {
    store
        .execute(Command::Append(AppendCommand {
            sealed: false,
            stream: stream.to_owned(),
            expected,
            epoch_us,
            events,
        }))
        .await
}

async fn append_n(store: &Store, stream: &str, count: usize, epoch_us: u64) {
    let events = (0..count).map(|i| event(&i.to_string())).collect();
    let result = append_at(store, stream, Any, epoch_us, events).await;
    assert!(matches!(result, Ok(Outcome::Appended { .. })), "{result:?}");
}

async fn set_limits(store: &Store, stream: &str, limits: StreamLimits) -> WriteResult {
    let stream = stream.to_owned();
    store
        .execute(Command::SetStreamLimits { stream, limits })
        .await
}

async fn tombstone(store: &Store, stream: &str, expected: ExpectedVersion) -> WriteResult {
    let stream = stream.to_owned();
    store.execute(Command::Tombstone { stream, expected }).await
}

fn parse(page: EventsPage) -> Vec<Value> {
    let records: Vec<Value> = serde_json::from_slice(&page.body).expect("a JSON array");
    assert_eq!(page.count, records.len() as u64);
    records
}

fn field(records: &[Value], name: &str) -> Vec<u64> {
    records.iter().map(|r| r[name].as_u64().unwrap()).collect()
}

fn read_stream_at(
    store: &Store,
    stream: &str,
    from: ReadStart,
    direction: Direction,
    now_us: u64,
) -> Result<Vec<u64>, StoreError> {
    store
        .with_read(|txn, dbs| read::read_stream_at(txn, dbs, stream, from, 1000, direction, now_us))
        .map(|page| field(&parse(page), "version"))
}

fn versions(store: &Store, stream: &str, now_us: u64) -> Result<Vec<u64>, StoreError> {
    read_stream_at(store, stream, At(0), Forward, now_us)
}

fn all_positions(store: &Store, from: ReadStart, direction: Direction, now_us: u64) -> Vec<u64> {
    let page = store
        .with_read(|txn, dbs| read::read_all_at(txn, dbs, from, 1000, direction, now_us))
        .unwrap();
    field(&parse(page), "position")
}

fn type_positions(store: &Store, count: u64, now_us: u64) -> Vec<u64> {
    let types = vec!["Happened".to_owned()];
    let page = store
        .with_read(|txn, dbs| read::read_types_at(txn, dbs, &types, 0, count, now_us))
        .unwrap();
    field(&parse(page), "position")
}

fn version_of(store: &Store, stream: &str) -> i64 {
    store
        .with_read(|txn, dbs| read::stream_version(txn, dbs, stream))
        .unwrap()
}

fn limits_of(store: &Store, stream: &str) -> Result<Option<StreamLimits>, StoreError> {
    store.with_read(|txn, dbs| read::stream_limits(txn, dbs, stream))
}

fn tombstoned<T>(stream: &str) -> Result<T, StoreError> {
    Err(Rejection::StreamTombstoned {
        stream: stream.to_owned(),
    }
    .into())
}

fn count(max_count: u64) -> StreamLimits {
    StreamLimits {
        max_count: Some(max_count),
        ..StreamLimits::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Stream limits

#[tokio::test]
async fn max_count_and_truncate_before_hide_a_prefix_and_keep_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    append_n(&store, "s", 5, T0).await; // versions 0..=4, positions 0..=4
    append_n(&store, "other", 1, T0).await; // position 5
    assert_eq!(set_limits(&store, "s", count(2)).await, Ok(Outcome::Done));
    let now = T0;
    assert_eq!(versions(&store, "s", now).unwrap(), [3, 4]);
    assert_eq!(
        read_stream_at(&store, "s", End, Backward, now).unwrap(),
        [4, 3]
    );
    assert_eq!(
        read_stream_at(&store, "s", At(1), Backward, now).unwrap(),
        Vec::<u64>::new(),
        "backward from a hidden version shows nothing below it"
    );
    // The boundaries move with the stream: a new event pushes the oldest shown one out.
    append_n(&store, "s", 1, T0).await; // version 5, position 6
    assert_eq!(versions(&store, "s", now).unwrap(), [4, 5]);
    assert_eq!(version_of(&store, "s"), 5, "the current version is kept");
    // $all keeps its positions and only skips what is hidden.
    assert_eq!(all_positions(&store, At(0), Forward, now), [4, 5, 6]);
    assert_eq!(all_positions(&store, End, Backward, now), [6, 5, 4]);
    assert_eq!(type_positions(&store, 1000, now), [4, 5, 6]);
    assert_eq!(
        type_positions(&store, 2, now),
        [4, 5],
        "hidden events do not take a page's places"
    );

    // truncate_before and max_count together: the later boundary wins.
    let both = StreamLimits {
        max_count: Some(4),
        truncate_before: Some(3),
        max_age_ms: None,
    };
    set_limits(&store, "s", both).await.unwrap();
    assert_eq!(versions(&store, "s", now).unwrap(), [3, 4, 5]);
    assert_eq!(limits_of(&store, "s").unwrap(), Some(both));
    // Replacing with no limits shows everything again: nothing was removed.
    set_limits(&store, "s", StreamLimits::default())
        .await
        .unwrap();
    assert_eq!(versions(&store, "s", now).unwrap(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(limits_of(&store, "s").unwrap(), None);
    assert_eq!(
        all_positions(&store, At(0), Forward, now),
        [0, 1, 2, 3, 4, 5, 6]
    );
    store.close().await;
}

#[tokio::test]
async fn a_stream_whose_events_are_all_hidden_reads_empty_and_keeps_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    append_n(&store, "s", 3, T0).await;
    let ahead = StreamLimits {
        truncate_before: Some(10),
        ..StreamLimits::default()
    };
    set_limits(&store, "s", ahead).await.unwrap();
    assert_eq!(versions(&store, "s", T0).unwrap(), Vec::<u64>::new());
    assert_eq!(
        read_stream_at(&store, "s", End, Backward, T0).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(version_of(&store, "s"), 2);
    let state = store
        .with_read(|txn, dbs| {
            aggregate(
                txn,
                dbs,
                &esdb_protocol::ops::agg::AggRequest {
                    stream: "s".into(),
                    from_snapshot: false,
                    order: esdb_protocol::aggregate::FoldOrder::Left,
                    finalize: true,
                },
            )
        })
        .unwrap();
    assert_eq!((state.version, &state.body[..]), (2, &b"{}"[..]));
    // Appends go on after the current version, hidden until they reach the boundary.
    let result = append_at(&store, "s", Exact(2), T0, vec![event("3")]).await;
    assert!(matches!(
        result,
        Ok(Outcome::Appended {
            last_version: 3,
            ..
        })
    ));
    assert_eq!(versions(&store, "s", T0).unwrap(), Vec::<u64>::new());
    store.close().await;
}

#[tokio::test]
async fn max_age_hides_events_older_than_the_limit_at_read_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for second in 0..4 {
        append_n(&store, "s", 1, T0 + second * SECOND_US).await; // versions 0..=3
    }
    let age = StreamLimits {
        max_age_ms: Some(1_500),
        ..StreamLimits::default()
    };
    set_limits(&store, "s", age).await.unwrap();
    let at = |seconds: f64| T0 + (seconds * SECOND_US as f64) as u64;
    // At T0+3s, events committed at or after T0+1.5s are within the age: T0+2s and T0+3s.
    assert_eq!(versions(&store, "s", at(3.0)).unwrap(), [2, 3]);
    assert_eq!(versions(&store, "s", at(1.5)).unwrap(), [0, 1, 2, 3]);
    assert_eq!(versions(&store, "s", at(2.5)).unwrap(), [1, 2, 3]);
    assert_eq!(versions(&store, "s", at(10.0)).unwrap(), Vec::<u64>::new());
    assert_eq!(all_positions(&store, At(0), Forward, at(3.0)), [2, 3]);
    store.close().await;
}

#[tokio::test]
async fn limits_set_before_the_stream_exists_apply_once_it_does_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    set_limits(&store, "later", count(1)).await.unwrap();
    assert_eq!(
        version_of(&store, "later"),
        -1,
        "setting limits creates no stream"
    );
    assert_eq!(limits_of(&store, "later").unwrap(), Some(count(1)));
    // One append of three: two of its events are hidden from their commit on, so live
    // subscriptions pass over them.
    let mut batches = store.subscribe_committed();
    append_n(&store, "later", 3, T0).await;
    let batch = batches.recv().await.unwrap();
    let hidden: Vec<bool> = batch.events.iter().map(|e| e.hidden).collect();
    assert_eq!(hidden, [true, true, false]);
    assert_eq!(versions(&store, "later", T0).unwrap(), [2]);
    // Catch-up subscriptions do not deliver hidden events either.
    let matcher = Matcher::new(Selector::Stream("$all".into()));
    let page = store
        .with_read(|txn, dbs| read_matching(txn, dbs, &matcher, 0, None, 100))
        .unwrap();
    let delivered: Vec<u64> = page.events.iter().map(|d| d.event.version).collect();
    assert_eq!(delivered, [2]);
    assert_eq!(page.next_position, 3, "progress passes the hidden events");
    store.close().await;

    let store = open(dir.path()).await;
    assert_eq!(limits_of(&store, "later").unwrap(), Some(count(1)));
    assert_eq!(versions(&store, "later", T0).unwrap(), [2]);
    store.close().await;
}

#[tokio::test]
async fn soft_delete_keeps_limits_for_the_recreated_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    append_n(&store, "s", 2, T0).await;
    set_limits(&store, "s", count(1)).await.unwrap();
    let stream = "s".to_owned();
    let deleted = store
        .execute(Command::Delete {
            stream,
            expected: Any,
        })
        .await;
    assert_eq!(deleted, Ok(Outcome::Deleted));
    assert_eq!(limits_of(&store, "s").unwrap(), Some(count(1)));
    append_n(&store, "s", 2, T0).await; // versions 2, 3
    assert_eq!(versions(&store, "s", T0).unwrap(), [3]);
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Hard delete

#[tokio::test]
async fn a_tombstone_refuses_every_write_forever_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let first = event("0");
    let retry = first.clone();
    append_at(&store, "gone", NoStream, T0, vec![first])
        .await
        .unwrap();
    append_n(&store, "kept", 1, T0).await;
    assert_eq!(
        tombstone(&store, "gone", Exact(5)).await,
        Err(Rejection::WrongExpectedVersion {
            stream: "gone".into(),
            expected: Exact(5),
            actual: 0,
        }
        .into())
    );
    assert_eq!(
        tombstone(&store, "gone", Exact(0)).await,
        Ok(Outcome::Deleted)
    );
    for expected in [Any, NoStream, Exact(0), ExpectedVersion::Exists] {
        let result = append_at(&store, "gone", expected, T0, vec![event("1")]).await;
        assert_eq!(result, tombstoned("gone"), "{expected:?}");
    }
    // Even a retry of the append that once succeeded.
    let result = append_at(&store, "gone", NoStream, T0, vec![retry.clone()]).await;
    assert_eq!(result, tombstoned("gone"));
    assert_eq!(
        set_limits(&store, "gone", count(1)).await,
        tombstoned("gone")
    );
    assert_eq!(versions(&store, "gone", T0), tombstoned("gone"));
    assert_eq!(limits_of(&store, "gone"), tombstoned("gone"));
    assert_eq!(version_of(&store, "gone"), -1);
    // A retried hard delete, and a soft delete, succeed and leave the tombstone.
    assert_eq!(tombstone(&store, "gone", Any).await, Ok(Outcome::Deleted));
    let soft = store
        .execute(Command::Delete {
            stream: "gone".into(),
            expected: NoStream,
        })
        .await;
    assert_eq!(soft, Ok(Outcome::Deleted));
    let result = append_at(&store, "gone", Any, T0, vec![event("1")]).await;
    assert_eq!(result, tombstoned("gone"));
    // The events stay in $all, as a soft delete's do.
    assert_eq!(all_positions(&store, At(0), Forward, T0), [0, 1]);
    store.close().await;
    let store = open(dir.path()).await;
    let result = append_at(&store, "gone", Any, T0, vec![event("2")]).await;
    assert_eq!(result, tombstoned("gone"));
    assert_eq!(versions(&store, "gone", T0), tombstoned("gone"));
    store.close().await;
}

#[tokio::test]
async fn a_stream_that_never_existed_can_be_tombstoned() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert_eq!(
        tombstone(&store, "never", ExpectedVersion::Exists).await,
        Err(Rejection::WrongExpectedVersion {
            stream: "never".into(),
            expected: ExpectedVersion::Exists,
            actual: -1,
        }
        .into())
    );
    assert_eq!(
        tombstone(&store, "never", NoStream).await,
        Ok(Outcome::Deleted)
    );
    let result = append_at(&store, "never", NoStream, T0, vec![event("0")]).await;
    assert_eq!(result, tombstoned("never"));
    assert_eq!(all_positions(&store, At(0), Forward, T0), Vec::<u64>::new());
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Commit time

#[tokio::test]
async fn commit_times_never_go_backwards_even_when_commands_carry_older_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // As if built by nodes (or a node before a restart) whose clocks disagree.
    for (index, epoch_us) in [T0 + 5, T0 + 3, T0 + 9, T0 + 1].into_iter().enumerate() {
        let events = vec![event(&index.to_string()), event("\"x\"")];
        append_at(&store, "s", Any, epoch_us, events).await.unwrap();
    }
    let times = store
        .with_read(|txn, dbs| read::read_all_at(txn, dbs, At(0), 100, Forward, T0))
        .map(|page| field(&parse(page), "epoch_us"))
        .unwrap();
    assert_eq!(
        times,
        [
            T0 + 5,
            T0 + 5,
            T0 + 5,
            T0 + 5,
            T0 + 9,
            T0 + 9,
            T0 + 9,
            T0 + 9
        ]
    );
    let (first_at, last) = store
        .with_read(|txn, dbs| {
            Ok((
                [T0, T0 + 5, T0 + 6, T0 + 9, T0 + 10]
                    .map(|t| first_position_at_or_after(txn, dbs, t).unwrap()),
                last_commit_time(txn, dbs)?,
            ))
        })
        .unwrap();
    assert_eq!(
        first_at,
        [0, 0, 4, 4, 8],
        "8 is the head: nothing that late"
    );
    assert_eq!(last, Some(T0 + 9));
    store.close().await;
    // The clock that stamps new commands starts at the last commit time after a restart.
    let store = open(dir.path()).await;
    assert!(store.stamp_epoch_us() >= T0 + 9);
    store.close().await;
}

#[tokio::test]
async fn from_time_reads_start_at_the_first_event_at_or_after_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Positions 0..=5: a at T0, b at T0+1s, a at T0+1s, b at T0+2s, a at T0+3s, a at T0+3s.
    for (stream, second, n) in [
        ("a", 0, 1),
        ("b", 1, 1),
        ("a", 1, 1),
        ("b", 2, 1),
        ("a", 3, 2),
    ] {
        append_n(&store, stream, n, T0 + second * SECOND_US).await;
    }
    let t = |seconds: u64| T0 + seconds * SECOND_US;
    assert_eq!(
        all_positions(&store, Time(t(1)), Forward, t(0)),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        all_positions(&store, Time(t(1) + 1), Forward, t(0)),
        [3, 4, 5]
    );
    assert_eq!(
        all_positions(&store, Time(t(0) - 1), Forward, t(0)),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        all_positions(&store, Time(t(9)), Forward, t(0)),
        Vec::<u64>::new()
    );
    assert_eq!(all_positions(&store, Time(t(1)), Backward, t(0)), [2, 1, 0]);
    assert_eq!(
        all_positions(&store, Time(t(0) - 1), Backward, t(0)),
        Vec::<u64>::new()
    );
    assert_eq!(
        all_positions(&store, Time(t(9)), Backward, t(0)),
        [5, 4, 3, 2, 1, 0]
    );
    // Stream "a": versions 0 (T0), 1 (T0+1s), 2 and 3 (T0+3s).
    let a = |from, direction| read_stream_at(&store, "a", from, direction, t(0)).unwrap();
    assert_eq!(a(Time(t(1)), Forward), [1, 2, 3]);
    assert_eq!(a(Time(t(2)), Forward), [2, 3]);
    assert_eq!(a(Time(t(4)), Forward), Vec::<u64>::new());
    assert_eq!(a(Time(t(2)), Backward), [1, 0]);
    assert_eq!(a(Time(t(0) - 1), Backward), Vec::<u64>::new());
    // from_time and limits together: the later start wins.
    set_limits(&store, "a", count(1)).await.unwrap();
    assert_eq!(a(Time(t(1)), Forward), [3]);
    store.close().await;
}

#[tokio::test]
async fn a_format_2_store_gets_its_time_index_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for epoch_us in [T0 + 2, T0 + 7] {
        append_n(&store, "s", 2, epoch_us).await;
    }
    // Make it look as a format 2 store did: no time index, format 2 (the apply thread waits
    // for this write transaction: LMDB has one writer at a time).
    store.progress().wait_visible().unwrap();
    {
        let mut txn = store.env.write_txn().unwrap();
        store.dbs.time_index.clear(&mut txn).unwrap();
        // Format 2 records carry no checksum (format 4 seals them).
        let plain: Vec<(u64, Vec<u8>)> = store
            .dbs
            .events
            .iter(&txn)
            .unwrap()
            .map(|entry| {
                let (position, stored) = entry.unwrap();
                let json = super::checksum::unseal_event(position, stored).unwrap();
                (position, json.to_vec())
            })
            .collect();
        for (position, json) in plain {
            store.dbs.events.put(&mut txn, &position, &json).unwrap();
        }
        store
            .dbs
            .meta
            .put(&mut txn, META_FORMAT_VERSION, &2)
            .unwrap();
        txn.commit().unwrap();
    }
    store.close().await;
    let store = open(dir.path()).await;
    let (format, index) = store
        .with_read(|txn, dbs| {
            let index: Vec<(u64, u64)> = dbs.time_index.iter(txn)?.collect::<Result<_, _>>()?;
            Ok((dbs.meta.get(txn, META_FORMAT_VERSION)?, index))
        })
        .unwrap();
    assert_eq!(format, Some(schema::FORMAT_VERSION));
    assert_eq!(index, [(T0 + 2, 0), (T0 + 7, 2)]);
    assert_eq!(all_positions(&store, Time(T0 + 3), Forward, T0), [2, 3]);
    store.close().await;
}
