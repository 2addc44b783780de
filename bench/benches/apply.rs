//! Micro-benchmarks of the engine's write path. `cargo bench -p esdb-bench --bench apply`.
//!
//! - `apply_in_txn`: the deterministic `apply` alone, inside a write transaction that is then
//!   aborted: the CPU cost per command, no fsync. The environment is opened here with the
//!   store's own database names (the Store keeps its environment private).
//! - `store_execute_batch`: commands submitted to a real `Store` (writer thread, group commit,
//!   fsync) on a temp dir, all awaited: what a burst of appends costs end to end.

use std::sync::Arc;

use divan::counter::ItemsCount;
use divan::Bencher;
use esdb::store::command::apply;
use esdb::store::schema::{Databases, DATABASE_COUNT};
use esdb::store::{AppendCommand, Command, NewEvent, Store, StoreOptions};
use esdb_protocol::ExpectedVersion;
use heed::EnvOpenOptions;
use serde_json::value::RawValue;

fn main() {
    divan::main();
}

/// Commands per iteration.
const COMMANDS: usize = 100;
/// LMDB map size for the bench stores.
const MAP_SIZE_BYTES: usize = 1 << 30;

fn command(stream: usize, events: usize) -> Command {
    let data = format!("{{\"p\":\"{}\"}}", "x".repeat(92));
    Command::Append(AppendCommand {
        sealed: false,
        stream: format!("s-{stream}"),
        expected: ExpectedVersion::Any,
        epoch_us: 1_700_000_000_000_000,
        events: (0..events)
            .map(|_| NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type: "BenchEvent".into(),
                data: RawValue::from_string(data.clone()).expect("json"),
                metadata: None,
                tags: Vec::new(),
            })
            .collect(),
    })
}

#[divan::bench(args = [1, 10])]
fn apply_in_txn(bencher: Bencher, events_per_command: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(MAP_SIZE_BYTES).max_dbs(DATABASE_COUNT);
    // SAFETY: this directory is opened once, here.
    let env = unsafe { options.open(dir.path()) }.expect("env");
    let dbs = Databases::create(&env).expect("databases");
    let mut committed = Vec::new();

    let commands: Vec<Command> = (0..COMMANDS)
        .map(|i| command(i % 16, events_per_command))
        .collect();
    bencher
        .counter(ItemsCount::new(COMMANDS * events_per_command))
        .bench_local(|| {
            let mut txn = env.write_txn().expect("txn");
            for c in &commands {
                apply(&mut txn, &dbs, c, &mut committed)
                    .expect("storage")
                    .expect("accepted");
            }
            txn.abort();
            committed.clear();
        });
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn store_execute_batch(bencher: Bencher) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions {
        map_size_bytes: MAP_SIZE_BYTES,
        master_key: None,
    };
    let store = Arc::new(Store::open("bench", dir.path(), &options).expect("store"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    bencher.counter(ItemsCount::new(COMMANDS)).bench_local(|| {
        runtime.block_on(async {
            let mut receivers = Vec::with_capacity(COMMANDS);
            for i in 0..COMMANDS {
                receivers.push(store.submit(command(i % 16, 1)).await.expect("queued"));
            }
            for r in receivers {
                r.await.expect("answered").expect("accepted");
            }
        })
    });
}
