//! Random sequences of writes and reads against the real engine (a store with its one-member
//! Raft group, LMDB on disk, every write through the log and `apply`), each result compared
//! with a small in-memory model of what the protocol promises: expected versions, idempotent
//! retries, duplicate event ids, soft deletes, stream reads and `$all` in commit order.
//!
//! One store serves the whole fuzzing process (opening one per input would cost far more than
//! the input). Inputs stay independent: each writes only streams under its own prefix, and
//! checks `$all` from the position where it started.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esdb::store::{AppendCommand, Command, NewEvent, Outcome, Rejection, Store, StoreError};
use esdb_protocol::{Direction, ExpectedVersion, ReadStart};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use uuid::Uuid;

/// Operations per input read from its bytes (3 bytes each); the rest is ignored.
const MAX_OPS_PER_INPUT: usize = 64;
/// Streams one input writes (its operations pick one by index).
const STREAMS_PER_INPUT: u8 = 4;
/// Events the store may hold before the fuzzer starts a fresh one (its map stays small).
const MAX_EVENTS_PER_STORE: u64 = 500_000;
const MAP_SIZE_BYTES: usize = 1 << 30;

struct Engine {
    runtime: tokio::runtime::Runtime,
    store: Arc<Store>,
    node: Option<esdb::raft::Node>,
    dir: PathBuf,
    inputs: u64,
}

impl Engine {
    fn open(generation: u64) -> Engine {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = std::env::temp_dir().join(format!(
            "esdb-fuzz-engine-{}-{generation}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("store dir");
        let options = esdb::store::StoreOptions {
            map_size_bytes: MAP_SIZE_BYTES,
            master_key: None,
        };
        let store = Arc::new(Store::open("fuzz", &dir, &options).expect("open store"));
        let node = runtime
            .block_on(esdb::raft::Node::start(&store))
            .expect("start raft");
        Engine {
            runtime,
            store,
            node: Some(node),
            dir,
            inputs: 0,
        }
    }

    fn close(self) {
        let Engine {
            runtime,
            store,
            node,
            dir,
            ..
        } = self;
        if let Some(node) = node {
            runtime.block_on(node.shutdown());
        }
        drop(runtime);
        store.close(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn execute(&self, command: Command) -> Result<Outcome, StoreError> {
        self.runtime.block_on(self.store.execute(command))
    }

    fn head(&self) -> u64 {
        *self.store.head().borrow()
    }
}

static ENGINE: Mutex<Option<Engine>> = Mutex::new(None);

/// One stream in the model.
#[derive(Default)]
struct ModelStream {
    /// Event ids by version, from 0 (hidden ones included).
    ids: Vec<Uuid>,
    /// The first version reads show (a soft delete moves it to the end).
    first_visible: u64,
    deleted: bool,
}

impl ModelStream {
    fn next_version(&self) -> u64 {
        self.ids.len() as u64
    }

    fn current(&self) -> Option<u64> {
        if self.deleted || self.next_version() == self.first_visible {
            None
        } else {
            Some(self.next_version() - 1)
        }
    }
}

#[derive(Default)]
struct Model {
    streams: BTreeMap<String, ModelStream>,
    /// Where each event id was written: stream, version, position.
    places: BTreeMap<Uuid, (String, u64, u64)>,
    /// This input's events in commit order: (position, event id).
    all: Vec<(u64, Uuid)>,
    next_position: u64,
}

fn holds(expected: ExpectedVersion, current: Option<u64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current.is_none(),
        ExpectedVersion::Exists => current.is_some(),
        ExpectedVersion::Exact(version) => current == Some(version),
    }
}

/// What the protocol promises for an append, given the model (and the model updated).
fn model_append(
    model: &mut Model,
    stream: &str,
    expected: ExpectedVersion,
    ids: &[Uuid],
) -> Result<Outcome, &'static str> {
    let known = model.streams.get(stream);
    // A retry of an earlier successful append: same ids, same stream, consecutive versions,
    // and the expectation held where it was written.
    if let Some(entry) = known {
        let places: Option<Vec<(u64, u64)>> = ids
            .iter()
            .map(|id| match model.places.get(id) {
                Some((s, v, p)) if s == stream => Some((*v, *p)),
                _ => None,
            })
            .collect();
        if let Some(places) = places {
            let first = places[0].0;
            let consecutive = places
                .iter()
                .enumerate()
                .all(|(i, (v, _))| *v == first + i as u64);
            let held_there = match expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => first == entry.first_visible,
                ExpectedVersion::Exists => first > entry.first_visible,
                ExpectedVersion::Exact(v) => v + 1 == first && first > entry.first_visible,
            };
            if consecutive && held_there {
                let (last_version, last_position) = *places.last().expect("non-empty");
                return Ok(Outcome::AlreadyAppended {
                    last_version,
                    last_position,
                });
            }
        }
    }
    if !holds(expected, known.and_then(ModelStream::current)) {
        return Err("wrong_expected_version");
    }
    if ids.iter().any(|id| model.places.contains_key(id)) {
        return Err("duplicate_event_id");
    }
    let entry = model.streams.entry(stream.to_owned()).or_default();
    entry.deleted = false;
    for id in ids {
        let version = entry.next_version();
        entry.ids.push(*id);
        model
            .places
            .insert(*id, (stream.to_owned(), version, model.next_position));
        model.all.push((model.next_position, *id));
        model.next_position += 1;
    }
    Ok(Outcome::Appended {
        last_version: entry.next_version() - 1,
        last_position: model.next_position - 1,
        event_count: ids.len() as u64,
    })
}

fn model_delete(
    model: &mut Model,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<Outcome, &'static str> {
    let current = model.streams.get(stream).and_then(ModelStream::current);
    if !holds(expected, current) {
        return Err("wrong_expected_version");
    }
    if let (Some(entry), Some(_)) = (model.streams.get_mut(stream), current) {
        entry.deleted = true;
        entry.first_visible = entry.next_version();
    }
    Ok(Outcome::Deleted)
}

/// The engine's result in the model's terms.
fn observed(result: Result<Outcome, StoreError>) -> Result<Outcome, &'static str> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(StoreError::Rejected(Rejection::WrongExpectedVersion { .. })) => {
            Err("wrong_expected_version")
        }
        Err(StoreError::Rejected(Rejection::DuplicateEventId { .. })) => Err("duplicate_event_id"),
        Err(other) => panic!("the engine failed: {other}"),
    }
}

fn expected_from(kind: u8, current: Option<u64>) -> ExpectedVersion {
    let near = current.unwrap_or(0);
    match kind % 6 {
        0 => ExpectedVersion::Any,
        1 => ExpectedVersion::NoStream,
        2 => ExpectedVersion::Exists,
        3 => ExpectedVersion::Exact(near),
        4 => ExpectedVersion::Exact(near + 1),
        _ => ExpectedVersion::Exact(near.saturating_sub(1)),
    }
}

fn new_event(id: Uuid, n: u8) -> NewEvent {
    NewEvent {
        event_id: id,
        event_type: format!("T{}", n % 3),
        data: RawValue::from_string(format!("{{\"n\":{n}}}")).expect("JSON"),
        metadata: None,
    }
}

fn records(body: &[u8]) -> Vec<serde_json::Value> {
    serde_json::from_slice(body).expect("a page is a JSON array")
}

fn check_stream(engine: &Engine, model: &Model, stream: &str) {
    let page = engine.store.with_read(|txn, dbs| {
        esdb::store::read::read_stream(
            txn,
            dbs,
            stream,
            ReadStart::At(0),
            u64::MAX,
            Direction::Forward,
        )
    });
    let entry = model.streams.get(stream);
    match (page, entry) {
        (Err(StoreError::Rejected(Rejection::StreamNotFound { .. })), None) => {}
        (Ok(page), Some(entry)) => {
            let got: Vec<(u64, String)> = records(&page.body)
                .iter()
                .map(|r| {
                    (
                        r["version"].as_u64().expect("version"),
                        r["event_id"].as_str().expect("id").to_owned(),
                    )
                })
                .collect();
            let shown_from = if entry.deleted {
                entry.next_version()
            } else {
                entry.first_visible
            };
            let want: Vec<(u64, String)> = entry
                .ids
                .iter()
                .enumerate()
                .skip(shown_from as usize)
                .map(|(v, id)| (v as u64, id.to_string()))
                .collect();
            assert_eq!(got, want, "READ {stream}");
        }
        (Err(StoreError::Rejected(Rejection::StreamDeleted { .. })), Some(entry)) => {
            assert!(entry.current().is_none(), "{stream} reads as deleted");
        }
        (page, entry) => panic!(
            "READ {stream}: engine {:?}, model knows it: {}",
            page.map(|p| p.count),
            entry.is_some()
        ),
    }
    let version = engine
        .store
        .with_read(|txn, dbs| esdb::store::read::stream_version(txn, dbs, stream))
        .expect("stream version");
    let want = entry
        .and_then(ModelStream::current)
        .map_or(-1, |v| v as i64);
    assert_eq!(version, want, "VERSION {stream}");
}

fn check_all(engine: &Engine, model: &Model, start: u64) {
    let page = engine
        .store
        .with_read(|txn, dbs| {
            esdb::store::read::read_all(
                txn,
                dbs,
                ReadStart::At(start),
                u64::MAX,
                Direction::Forward,
            )
        })
        .expect("READALL");
    let got: Vec<(u64, String)> = records(&page.body)
        .iter()
        .map(|r| {
            (
                r["position"].as_u64().expect("position"),
                r["event_id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = model
        .all
        .iter()
        .map(|(p, id)| (*p, id.to_string()))
        .collect();
    assert_eq!(got, want, "READALL from {start}");
}

fuzz_target!(|data: &[u8]| {
    let mut slot = ENGINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut generation = 0;
    if slot
        .as_ref()
        .is_some_and(|e| e.head() > MAX_EVENTS_PER_STORE)
    {
        let old = slot.take().expect("engine");
        generation = old.inputs;
        old.close();
    }
    let engine = slot.get_or_insert_with(|| Engine::open(generation));
    engine.inputs += 1;
    let prefix = format!("in{}-", engine.inputs);
    let start = engine.head();
    let mut model = Model {
        next_position: start,
        ..Model::default()
    };
    let mut last_append: Option<(String, ExpectedVersion, Vec<Uuid>)> = None;
    for op in data.chunks_exact(3).take(MAX_OPS_PER_INPUT) {
        let (kind, stream_byte, arg) = (op[0], op[1], op[2]);
        let stream = format!("{prefix}{}", stream_byte % STREAMS_PER_INPUT);
        let current = model.streams.get(&stream).and_then(ModelStream::current);
        match kind % 7 {
            // An append of 1-3 new events.
            0 | 1 => {
                let expected = expected_from(arg, current);
                let ids: Vec<Uuid> = (0..1 + arg % 3).map(|_| Uuid::new_v4()).collect();
                let want = model_append(&mut model, &stream, expected, &ids);
                let command = Command::Append(AppendCommand {
                    sealed: false,
                    stream: stream.clone(),
                    expected,
                    epoch_us: 1_700_000_000_000_000,
                    events: ids.iter().map(|id| new_event(*id, arg)).collect(),
                });
                assert_eq!(observed(engine.execute(command)), want, "APPEND {stream}");
                last_append = Some((stream, expected, ids));
            }
            // The last append again, as a client retrying it after a lost reply would.
            2 => {
                let Some((stream, expected, ids)) = last_append.clone() else {
                    continue;
                };
                let want = model_append(&mut model, &stream, expected, &ids);
                let command = Command::Append(AppendCommand {
                    sealed: false,
                    stream: stream.clone(),
                    expected,
                    epoch_us: 1_700_000_000_000_000,
                    events: ids.iter().map(|id| new_event(*id, arg)).collect(),
                });
                assert_eq!(
                    observed(engine.execute(command)),
                    want,
                    "retried APPEND {stream}"
                );
            }
            // An append reusing an id written before (maybe in another stream) plus a new one.
            3 => {
                let Some(reused) = model
                    .places
                    .keys()
                    .nth(arg as usize % model.places.len().max(1))
                    .copied()
                else {
                    continue;
                };
                let expected = expected_from(arg >> 3, current);
                let ids = vec![reused, Uuid::new_v4()];
                let want = model_append(&mut model, &stream, expected, &ids);
                let command = Command::Append(AppendCommand {
                    sealed: false,
                    stream: stream.clone(),
                    expected,
                    epoch_us: 1_700_000_000_000_000,
                    events: ids.iter().map(|id| new_event(*id, arg)).collect(),
                });
                assert_eq!(
                    observed(engine.execute(command)),
                    want,
                    "APPEND reusing an id"
                );
            }
            4 => {
                let expected = expected_from(arg, current);
                let want = model_delete(&mut model, &stream, expected);
                let command = Command::Delete {
                    stream: stream.clone(),
                    expected,
                };
                assert_eq!(observed(engine.execute(command)), want, "DELETE {stream}");
            }
            5 => check_stream(engine, &model, &stream),
            _ => check_all(engine, &model, start),
        }
    }
    // Whatever the sequence, the end state agrees.
    for n in 0..STREAMS_PER_INPUT {
        check_stream(engine, &model, &format!("{prefix}{n}"));
    }
    check_all(engine, &model, start);
    assert_eq!(engine.head(), model.next_position, "the store's head");
});
