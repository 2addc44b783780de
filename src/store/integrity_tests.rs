//! Record checksums against a real LMDB environment: every read path refuses a damaged record
//! (and counts it), an older store's records are sealed on open (also when the upgrade was
//! interrupted), the offline check and the scrubber find the damage.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use esdb_protocol::{Direction, ErrorCode, ExpectedVersion, ReadStart};
use heed::EnvOpenOptions;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::checksum::CHECKSUM_BYTES;
use super::schema::{Databases, FORMAT_VERSION, META_FORMAT_VERSION};
use super::upgrade::{META_UPGRADE_EVENTS_SEALED_BEFORE, META_UPGRADE_SNAPSHOTS_SEALED};
use super::*;
use crate::metrics::FoundBy;

struct Opened {
    store: Arc<Store>,
    node: crate::raft::Node,
}

/// Opens the store `name` (each test its own, as metrics are per store name and process-wide).
async fn open(name: &str, dir: &Path) -> Opened {
    let options = StoreOptions {
        map_size_bytes: 64 << 20,
        master_key: None,
    };
    let store = Arc::new(Store::open(name, dir, &options).expect("open store"));
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
        event_id: Uuid::new_v4(),
        event_type: "T".into(),
        data: RawValue::from_string(data.to_owned()).unwrap(),
        metadata: None,
        tags: Vec::new(),
    }
}

/// Ten events in `s` (versions 0..10, positions 0..10) and a snapshot at version 9.
async fn fill(store: &Store) {
    for n in 0..10 {
        let command = Command::Append(AppendCommand {
            sealed: false,
            stream: "s".into(),
            expected: ExpectedVersion::Any,
            epoch_us: 1,
            events: vec![event(&format!(r#"{{"n":{n},"mark":"payload-{n}"}}"#))],
        });
        store.execute(command).await.expect("append");
    }
    let save = Command::SaveSnapshot(SaveSnapshotCommand {
        stream: "s".into(),
        version: 9,
        epoch_us: 1,
        data: RawValue::from_string(r#"{"sum":45}"#.into()).unwrap(),
        metadata: None,
        keep: None,
    });
    store.execute(save).await.expect("snapshot");
}

fn read_all(store: &Store) -> Result<EventsPage, StoreError> {
    store.with_read(|txn, dbs| read::read_all(txn, dbs, ReadStart::At(0), 100, Direction::Forward))
}

fn read_stream(store: &Store, from: u64, count: u64) -> Result<EventsPage, StoreError> {
    store.with_read(|txn, dbs| {
        read::read_stream(
            txn,
            dbs,
            "s",
            ReadStart::At(from),
            count,
            Direction::Forward,
        )
    })
}

/// Runs `f` in a write transaction on the store's environment opened raw (the store closed).
fn with_raw_env(dir: &Path, f: impl FnOnce(&Databases, &mut heed::RwTxn)) {
    let env = unsafe {
        EnvOpenOptions::new()
            .read_txn_without_tls()
            .map_size(64 << 20)
            .max_dbs(schema::DATABASE_COUNT)
            .open(dir)
    }
    .unwrap();
    let dbs = Databases::create(&env).unwrap();
    let mut txn = env.write_txn().unwrap();
    f(&dbs, &mut txn);
    txn.commit().unwrap();
    env.prepare_for_closing().wait();
}

/// Flips one bit inside the data of the event at `position`.
fn damage_event(dir: &Path, position: u64) {
    with_raw_env(dir, |dbs, txn| {
        let events = dbs.events;
        let mut stored = events.get(txn, &position).unwrap().unwrap().to_vec();
        let at = stored.windows(7).position(|w| w == b"payload").unwrap();
        stored[at] ^= 0x01;
        events.put(txn, &position, &stored).unwrap();
    });
}

/// Rewrites the store as format 2 had it: records without their checksums.
fn downgrade_to_format_2(dir: &Path) {
    with_raw_env(dir, |dbs, txn| {
        let events = dbs.events;
        let bare: Vec<(u64, Vec<u8>)> = events
            .iter(txn)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|(p, v)| (p, v[..v.len() - CHECKSUM_BYTES].to_vec()))
            .collect();
        for (position, record) in bare {
            events.put(txn, &position, &record).unwrap();
        }
        let snapshots = dbs.snapshots;
        let bare: Vec<(Vec<u8>, Vec<u8>)> = snapshots
            .iter(txn)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|(k, v)| (k.to_vec(), v[..v.len() - CHECKSUM_BYTES].to_vec()))
            .collect();
        for (key, record) in bare {
            snapshots.put(txn, &key, &record).unwrap();
        }
        dbs.meta.put(txn, META_FORMAT_VERSION, &2).unwrap();
    });
}

fn corrupt_read_count(store: &Store) -> u64 {
    store.metrics().integrity.corrupt_count(FoundBy::Read)
}

#[tokio::test]
async fn a_damaged_record_is_refused_by_every_read_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open("integrity-read", dir.path()).await;
    fill(&opened.store).await;
    let intact = read_all(&opened.store).unwrap();
    close(opened).await;
    damage_event(dir.path(), 4);

    let opened = open("integrity-read", dir.path()).await;
    let store = &opened.store;
    let before = corrupt_read_count(store);
    let error = read_all(store).unwrap_err();
    assert_eq!(error.to_protocol_error().code, ErrorCode::Corrupt);
    assert!(error.to_string().contains("position 4"), "{error}");
    let error = read_stream(store, 0, 10).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("position 4 (stream s, version 4)"),
        "{error}"
    );
    let error = store
        .with_read(|txn, dbs| read::read_types(txn, dbs, &["T".into()], 0, 100))
        .unwrap_err();
    assert_eq!(error.to_protocol_error().code, ErrorCode::Corrupt);
    let request = esdb_protocol::ops::agg::AggRequest::new("s");
    let error = store
        .with_read(|txn, dbs| aggregate::aggregate(txn, dbs, &request))
        .unwrap_err();
    assert_eq!(
        error.to_protocol_error().code,
        ErrorCode::Corrupt,
        "{error}"
    );
    assert_eq!(corrupt_read_count(store), before + 4);

    // The records around it still read, byte for byte as before.
    let page = read_stream(store, 0, 4).unwrap();
    assert_eq!(page.count, 4);
    let page = read_stream(store, 5, 10).unwrap();
    assert_eq!(page.count, 5);
    let intact: Vec<serde_json::Value> = serde_json::from_slice(&intact.body).unwrap();
    let after: Vec<serde_json::Value> = serde_json::from_slice(&page.body).unwrap();
    assert_eq!(after, intact[5..]);
    close(opened).await;

    let report = verify::verify_store(dir.path()).unwrap();
    assert!(report.checksummed);
    assert_eq!(report.events, 10);
    assert_eq!(report.problem_count, 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains("position 4"),
        "{:?}",
        report.problems
    );
}

#[tokio::test]
async fn a_format_2_store_is_sealed_on_open_even_after_an_interrupted_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open("integrity-upgrade", dir.path()).await;
    fill(&opened.store).await;
    let intact = read_all(&opened.store).unwrap();
    close(opened).await;

    downgrade_to_format_2(dir.path());
    let report = verify::verify_store(dir.path()).unwrap();
    assert!(!report.checksummed);
    assert_eq!(report.problem_count, 0, "{:?}", report.problems);
    let opened = open("integrity-upgrade", dir.path()).await;
    assert_eq!(read_all(&opened.store).unwrap(), intact);
    close(opened).await;
    let report = verify::verify_store(dir.path()).unwrap();
    assert!(report.checksummed);
    assert_eq!((report.events, report.snapshots), (10, 1));
    assert_eq!(report.problem_count, 0, "{:?}", report.problems);

    // Interrupted after the snapshots and events 0..6: the rest is sealed on the next open,
    // what was sealed is not sealed twice.
    downgrade_to_format_2(dir.path());
    with_raw_env(dir.path(), |dbs, txn| {
        let events = dbs.events;
        for position in 0..6u64 {
            let bare = events.get(txn, &position).unwrap().unwrap().to_vec();
            let sealed = checksum::seal(&position.to_be_bytes(), bare);
            events.put(txn, &position, &sealed).unwrap();
        }
        let snapshots = dbs.snapshots;
        let (key, bare) = snapshots
            .iter(txn)
            .unwrap()
            .next()
            .unwrap()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .unwrap();
        snapshots
            .put(txn, &key, &checksum::seal(&key, bare))
            .unwrap();
        let meta = dbs.meta;
        meta.put(txn, META_UPGRADE_EVENTS_SEALED_BEFORE, &6)
            .unwrap();
        assert!(meta
            .get(txn, META_UPGRADE_SNAPSHOTS_SEALED)
            .unwrap()
            .is_none());
    });
    let opened = open("integrity-upgrade", dir.path()).await;
    assert_eq!(read_all(&opened.store).unwrap(), intact);
    let loaded = opened
        .store
        .with_read(|txn, dbs| Ok(snapshots::load(txn, dbs, "s", None)?.1.to_vec()))
        .unwrap();
    assert!(loaded.ends_with(b"\"epoch_us\":1}"), "{loaded:?}");
    close(opened).await;
    let report = verify::verify_store(dir.path()).unwrap();
    assert_eq!(report.format, Some(FORMAT_VERSION));
    assert_eq!(report.problem_count, 0, "{:?}", report.problems);
}

#[tokio::test]
async fn the_scrubber_finds_damage_and_counts_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open("integrity-scrub", dir.path()).await;
    fill(&opened.store).await;
    close(opened).await;
    damage_event(dir.path(), 7);

    let opened = open("integrity-scrub", dir.path()).await;
    let integrity = &opened.store.metrics().integrity;
    let (found, scrubbed, passes) = (
        integrity.corrupt_count(FoundBy::Scrub),
        integrity.scrubbed_records.get(),
        integrity.scrub_passes.get(),
    );
    opened.store.start_scrubber(100_000).unwrap();
    // Bounded: at 100,000 records a second, a pass over 11 records takes well under a second.
    let started = Instant::now();
    while integrity.scrub_passes.get() < passes + 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "no pass ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(integrity.corrupt_count(FoundBy::Scrub) > found);
    assert!(integrity.scrubbed_records.get() >= scrubbed + 11);
    // Appends go on while it runs.
    let command = Command::Append(AppendCommand {
        sealed: false,
        stream: "t".into(),
        expected: ExpectedVersion::NoStream,
        epoch_us: 1,
        events: vec![event("1")],
    });
    opened.store.execute(command).await.expect("append");
    close(opened).await;
}
