//! Engine tests of scavenging ([`super::scavenge`]): what a scavenge removes (and what it must
//! not), how reads see the gaps, the bound on one slice, stale slices, and the space it frees,
//! against a real LMDB environment with writes through the Raft log and the apply thread.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use esdb_protocol::{Direction, ExpectedVersion, ReadStart};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::scavenge::{self, ScavengeState, ScavengeStatus, MAX_SLICE_EVENTS};
use super::schema::StreamLimits;
use super::*;
use crate::subscriptions::history::read_matching;
use crate::subscriptions::selector::Matcher;

use esdb_protocol::ops::subscribe::Selector;
use ExpectedVersion::Any;

const T0: u64 = 1_800_000_000_000_000;
const SECOND_US: u64 = 1_000_000;
/// Slices a test runs at most before it calls the walk stuck.
const MAX_TEST_SLICES: usize = 10_000;

async fn open(dir: &Path) -> (Arc<Store>, crate::raft::Node) {
    let options = StoreOptions {
        map_size_bytes: 256 << 20,
        master_key: None,
    };
    let store = Arc::new(Store::open("scavenge-test", dir, &options).expect("open store"));
    let node = crate::raft::Node::start(&store).await.expect("start raft");
    (store, node)
}

async fn close(store: Arc<Store>, node: crate::raft::Node) {
    node.shutdown().await;
    tokio::task::spawn_blocking(move || store.close(Duration::from_secs(5)))
        .await
        .expect("close");
}

fn event_with(id: Uuid, data: &str) -> NewEvent {
    NewEvent {
        event_id: id,
        event_type: "Happened".to_owned(),
        data: RawValue::from_string(data.to_owned()).expect("valid JSON"),
        metadata: None,
        // Tagged, so every scavenge here must also clear the tag index (`esdb verify`'s
        // check finds an entry left pointing at a removed position).
        tags: vec!["scavenged".to_owned()],
    }
}

async fn append(store: &Store, stream: &str, events: Vec<NewEvent>, epoch_us: u64) -> Outcome {
    store
        .execute(Command::Append(AppendCommand {
            sealed: false,
            stream: stream.to_owned(),
            expected: Any,
            epoch_us,
            events,
        }))
        .await
        .expect("append")
}

async fn append_n(store: &Store, stream: &str, count: usize, epoch_us: u64) {
    let events = (0..count)
        .map(|i| event_with(Uuid::new_v4(), &i.to_string()))
        .collect();
    append(store, stream, events, epoch_us).await;
}

async fn execute(store: &Store, command: Command) -> Outcome {
    store.execute(command).await.expect("command")
}

fn status(store: &Store) -> ScavengeStatus {
    store.with_read(scavenge::status).unwrap()
}

/// Starts a scavenge and proposes its slices, as the job does, at `now_us`, until done.
async fn scavenge_at(store: &Store, now_us: u64) -> ScavengeStatus {
    let started = execute(store, Command::ScavengeStart { epoch_us: now_us }).await;
    assert_eq!(started, Outcome::ScavengeStarted { started: true });
    for _ in 0..MAX_TEST_SLICES {
        let state = status(store);
        if !state.running() {
            return state;
        }
        let to = store
            .with_read(|txn, dbs| {
                scavenge::next_slice_end(txn, dbs, state.position, state.up_to_position)
            })
            .unwrap();
        execute(
            store,
            Command::ScavengeSlice {
                from_position: state.position,
                to_position: to,
                now_us,
            },
        )
        .await;
    }
    panic!("the scavenge did not finish in {MAX_TEST_SLICES} slices");
}

fn positions(page: EventsPage, name: &str) -> Vec<u64> {
    let records: Vec<Value> = serde_json::from_slice(&page.body).unwrap();
    records.iter().map(|r| r[name].as_u64().unwrap()).collect()
}

fn stream_versions(store: &Store, stream: &str, from: ReadStart, now_us: u64) -> Vec<u64> {
    let page = store
        .with_read(|txn, dbs| {
            read::read_stream_at(txn, dbs, stream, from, 1000, Direction::Forward, now_us)
        })
        .unwrap();
    positions(page, "version")
}

fn all_positions(store: &Store, now_us: u64) -> Vec<u64> {
    let page = store
        .with_read(|txn, dbs| {
            read::read_all_at(txn, dbs, ReadStart::At(0), 1000, Direction::Forward, now_us)
        })
        .unwrap();
    positions(page, "position")
}

fn limits(max_count: Option<u64>, max_age_ms: Option<u64>, before: Option<u64>) -> Command {
    Command::SetStreamLimits {
        stream: String::new(),
        limits: StreamLimits {
            max_count,
            max_age_ms,
            truncate_before: before,
        },
    }
}

async fn set_limits(store: &Store, stream: &str, command: Command) {
    let Command::SetStreamLimits { limits, .. } = command else {
        unreachable!()
    };
    let stream = stream.to_owned();
    let outcome = execute(store, Command::SetStreamLimits { stream, limits }).await;
    assert_eq!(outcome, Outcome::Done);
}

/// Every kind of hiding at once: what a scavenge removes is exactly what no stream read shows,
/// and what reads show is unchanged by it.
#[tokio::test]
async fn a_scavenge_removes_exactly_what_deletes_and_limits_hide() {
    let dir = tempfile::tempdir().unwrap();
    let (store, node) = open(dir.path()).await;
    append_n(&store, "counted", 5, T0).await; // positions 0..=4
    set_limits(&store, "counted", limits(Some(2), None, None)).await; // hides versions 0..=2
    append_n(&store, "deleted", 3, T0).await; // 5..=7
    let deleted = Command::Delete {
        stream: "deleted".into(),
        expected: Any,
    };
    assert_eq!(execute(&store, deleted).await, Outcome::Deleted);
    append_n(&store, "deleted", 1, T0).await; // recreated: version 3 at 8
    append_n(&store, "tomb", 2, T0).await; // 9..=10
    let tomb = Command::Tombstone {
        stream: "tomb".into(),
        expected: Any,
    };
    assert_eq!(execute(&store, tomb).await, Outcome::Deleted);
    append_n(&store, "truncated", 3, T0).await; // 11..=13
    set_limits(&store, "truncated", limits(None, None, Some(1))).await; // hides version 0
    append_n(&store, "aged", 2, T0).await; // 14..=15
    append_n(&store, "aged", 1, T0 + 60 * SECOND_US).await; // 16
    set_limits(&store, "aged", limits(None, Some(30_000), None)).await;
    append_n(&store, "kept", 2, T0 + 60 * SECOND_US).await; // 17..=18
    let now = T0 + 61 * SECOND_US;

    let reads_before: Vec<Vec<u64>> = ["counted", "deleted", "truncated", "aged", "kept"]
        .iter()
        .map(|stream| stream_versions(&store, stream, ReadStart::At(0), now))
        .collect();
    let all_before = all_positions(&store, now);
    let done = scavenge_at(&store, now).await;
    assert_eq!(done.state, ScavengeState::Done);
    assert_eq!((done.runs, done.up_to_position, done.position), (1, 19, 19));
    // counted 0..=2, deleted's first three, the tombstone's two, truncated 0, aged 0..=1.
    assert_eq!(done.events_removed, 3 + 3 + 2 + 1 + 2);
    assert!(done.bytes_reclaimed > done.events_removed * 100, "{done:?}");

    let reads_after: Vec<Vec<u64>> = ["counted", "deleted", "truncated", "aged", "kept"]
        .iter()
        .map(|stream| stream_versions(&store, stream, ReadStart::At(0), now))
        .collect();
    assert_eq!(
        reads_after, reads_before,
        "stream reads show the same events"
    );
    // $all: what limits hid is gone, and so are the deleted streams' events it used to show.
    let all_after = all_positions(&store, now);
    assert_eq!(all_after, [3, 4, 8, 12, 13, 16, 17, 18]);
    assert!(all_after.iter().all(|p| all_before.contains(p)));
    // Versions and the head are unchanged: an append continues after them.
    assert_eq!(
        store
            .with_read(|t, d| read::stream_version(t, d, "counted"))
            .unwrap(),
        4
    );
    append_n(&store, "counted", 1, now).await;
    assert_eq!(all_positions(&store, now).last(), Some(&19));
    close(store, node).await;
    // Every index agrees with the events left (the offline check of `esdb verify`).
    let report = verify::verify_store(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.events, 9);
}

/// Limits relaxed after a scavenge show what is left, never what was removed; the binary
/// searches over a stream's index (from_time, catch-up) step over the gaps.
#[tokio::test]
async fn reads_step_over_the_gaps_a_scavenge_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (store, node) = open(dir.path()).await;
    for second in 0..6 {
        append_n(&store, "s", 1, T0 + second * SECOND_US).await; // versions = positions 0..=5
    }
    set_limits(&store, "s", limits(Some(3), None, None)).await;
    scavenge_at(&store, T0 + 10 * SECOND_US).await;
    set_limits(&store, "s", limits(None, None, None)).await;
    let now = T0 + 10 * SECOND_US;
    assert_eq!(
        stream_versions(&store, "s", ReadStart::At(0), now),
        [3, 4, 5]
    );
    // from_time lands in the removed range: the read starts at the first event left.
    let from = ReadStart::Time(T0 + SECOND_US);
    assert_eq!(stream_versions(&store, "s", from, now), [3, 4, 5]);
    let from = ReadStart::Time(T0 + 4 * SECOND_US);
    assert_eq!(stream_versions(&store, "s", from, now), [4, 5]);
    // A catch-up subscription to the stream from position 1 (removed) starts at 3.
    let matcher = Matcher::new(Selector::Stream("s".into()));
    let page = store
        .with_read(|txn, dbs| read_matching(txn, dbs, &matcher, 1, None, 100))
        .unwrap();
    let delivered: Vec<u64> = page.events.iter().map(|d| d.event.position).collect();
    assert_eq!(delivered, [3, 4, 5]);
    close(store, node).await;
}

/// One slice examines at most `MAX_SLICE_EVENTS` events, whatever range it names; a slice that
/// does not start where the walk stands changes nothing; a start while one runs neither.
#[tokio::test]
async fn a_slice_is_bounded_and_stale_slices_and_starts_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, node) = open(dir.path()).await;
    let total = MAX_SLICE_EVENTS as usize * 2 + 10;
    for _ in 0..total / 100 + 1 {
        append_n(&store, "gone", 100, T0).await;
    }
    assert_eq!(status(&store), ScavengeStatus::default(), "never scavenged");
    let gone = Command::Delete {
        stream: "gone".into(),
        expected: Any,
    };
    execute(&store, gone).await;
    let started = execute(&store, Command::ScavengeStart { epoch_us: T0 }).await;
    assert_eq!(started, Outcome::ScavengeStarted { started: true });
    let again = execute(&store, Command::ScavengeStart { epoch_us: T0 }).await;
    assert_eq!(again, Outcome::ScavengeStarted { started: false });
    let up_to = status(&store).up_to_position;
    let whole = Command::ScavengeSlice {
        from_position: 0,
        to_position: up_to,
        now_us: T0,
    };
    let sliced = execute(&store, whole.clone()).await;
    assert_eq!(
        sliced,
        Outcome::ScavengeSliced {
            removed: MAX_SLICE_EVENTS,
            bytes: status(&store).bytes_reclaimed,
            done: false
        }
    );
    assert_eq!(status(&store).position, MAX_SLICE_EVENTS);
    // The same slice again (a duplicate proposal): it no longer starts where the walk stands.
    let stale = execute(&store, whole).await;
    assert_eq!(
        stale,
        Outcome::ScavengeSliced {
            removed: 0,
            bytes: 0,
            done: false
        }
    );
    assert_eq!(status(&store).events_removed, MAX_SLICE_EVENTS);
    close(store, node).await;
}

/// The pages a scavenge frees are reused: after removing most of the data, writing as much
/// again grows the file far less than the first writes did.
#[tokio::test]
async fn freed_pages_are_reused_by_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, node) = open(dir.path()).await;
    let payload = format!("\"{}\"", "x".repeat(1000));
    let write_batch = |stream: &'static str| {
        let store = store.clone();
        let payload = payload.clone();
        async move {
            for _ in 0..20 {
                let events = (0..100)
                    .map(|_| event_with(Uuid::new_v4(), &payload))
                    .collect();
                append(&store, stream, events, T0).await;
            }
        }
    };
    let (used_empty, _) = store.storage_bytes();
    write_batch("first").await; // 2000 events of about 1 KiB
    let (used_full, live_full) = store.storage_bytes();
    let delete = Command::Tombstone {
        stream: "first".into(),
        expected: Any,
    };
    execute(&store, delete).await;
    let done = scavenge_at(&store, T0).await;
    assert_eq!(done.events_removed, 2000);
    let (used_after, live_after) = store.storage_bytes();
    assert!(used_after >= used_full, "LMDB never shrinks its file");
    let (live_full, live_after) = (live_full.unwrap(), live_after.unwrap());
    assert!(
        live_after < live_full / 4,
        "the data's pages: {live_full} before, {live_after} after"
    );
    write_batch("second").await;
    let (used_again, _) = store.storage_bytes();
    let first_growth = used_full - used_empty;
    let second_growth = used_again - used_after;
    assert!(
        second_growth < first_growth / 2,
        "the first writes grew the file by {first_growth} bytes, the same again after the \
         scavenge by {second_growth}"
    );
    close(store, node).await;
}

/// The scavenge's state is in the store: after a restart the walk stands where the last
/// applied slice left it, and goes on from there.
#[tokio::test]
async fn the_walk_survives_a_restart_where_it_stood() {
    let dir = tempfile::tempdir().unwrap();
    let (store, node) = open(dir.path()).await;
    append_n(&store, "gone", 600, T0).await;
    append_n(&store, "kept", 1, T0).await;
    let gone = Command::Tombstone {
        stream: "gone".into(),
        expected: Any,
    };
    execute(&store, gone).await;
    execute(&store, Command::ScavengeStart { epoch_us: T0 }).await;
    let first = Command::ScavengeSlice {
        from_position: 0,
        to_position: 601,
        now_us: T0,
    };
    execute(&store, first).await;
    let midway = status(&store);
    assert_eq!(
        (midway.state, midway.position),
        (ScavengeState::Running, 512)
    );
    close(store, node).await;

    let (store, node) = open(dir.path()).await;
    assert_eq!(status(&store), midway);
    let rest = Command::ScavengeSlice {
        from_position: 512,
        to_position: 601,
        now_us: T0,
    };
    let outcome = execute(&store, rest).await;
    assert!(matches!(
        outcome,
        Outcome::ScavengeSliced {
            removed: 88,
            done: true,
            ..
        }
    ));
    assert_eq!(status(&store).events_removed, 600);
    assert_eq!(all_positions(&store, T0), [600]);
    close(store, node).await;
}

/// A format 5 store (before scavenging) opens as format 6 with nothing scavenged, and can be
/// scavenged.
#[tokio::test]
async fn a_format_5_store_upgrades_to_6_and_scavenges() {
    let dir = tempfile::tempdir().unwrap();
    let (store, node) = open(dir.path()).await;
    append_n(&store, "s", 3, T0).await;
    let delete = Command::Delete {
        stream: "s".into(),
        expected: Any,
    };
    execute(&store, delete).await;
    {
        let mut txn = store.env.write_txn().unwrap();
        let key = super::schema::META_FORMAT_VERSION;
        store.dbs.meta.put(&mut txn, key, &5).unwrap();
        txn.commit().unwrap();
    }
    close(store, node).await;
    let (store, node) = open(dir.path()).await;
    let format = store
        .with_read(|txn, dbs| Ok(dbs.meta.get(txn, super::schema::META_FORMAT_VERSION)?))
        .unwrap();
    assert_eq!(format, Some(super::schema::FORMAT_VERSION));
    assert_eq!(status(&store), ScavengeStatus::default());
    assert_eq!(scavenge_at(&store, T0).await.events_removed, 3);
    close(store, node).await;
}
