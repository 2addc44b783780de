//! openraft's storage conformance suite, run on the real log store (segment files) and the
//! real state machine (the store's LMDB environment and apply thread), each in a temporary
//! directory.
//!
//! Every test of `Suite::test_store` runs except `transfer_snapshot`, which reads back the
//! data of the snapshot `build_snapshot` returned: here that is a checkpoint record alone, and
//! the copy of the store is made when a node needs it (`get_current_snapshot`, see
//! `state_machine`); tests/cluster_membership.rs transfers one between real nodes.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{StorageError, TypeConfig};
use crate::store::{Store, StoreOptions};

struct Builder;

/// Keeps the directory and the store alive for one test.
type Guard = (tempfile::TempDir, Arc<Store>);

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Guard> for Builder {
    async fn build(&self) -> Result<(Guard, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions {
            map_size_bytes: 64 << 20,
            master_key: None,
        };
        let store = Arc::new(Store::open("suite", dir.path(), &options).expect("store"));
        let log = LogStore::open(&dir.path().join("raft-log")).expect("log");
        let sm = StateMachine::open(
            store.applier().expect("applier"),
            dir.path().join("raft-log"),
        )
        .expect("state machine");
        Ok(((dir, store), log, sm))
    }
}

type S = Suite<TypeConfig, LogStore, StateMachine, Builder, Guard>;

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_guard, log, sm) = Builder.build().await.expect("build");
                S::$name(log, sm).await.expect(stringify!($name));
            }
        )*
    };
}

suite_tests!(
    last_membership_in_log_initial,
    last_membership_in_log,
    last_membership_in_log_multi_step,
    get_membership_initial,
    get_membership_from_log_and_empty_sm,
    get_membership_from_empty_log_and_sm,
    get_membership_from_log_le_sm_last_applied,
    get_membership_from_log_gt_sm_last_applied_1,
    get_membership_from_log_gt_sm_last_applied_2,
    get_initial_state_without_init,
    get_initial_state_membership_from_log_and_sm,
    get_initial_state_with_state,
    get_initial_state_last_log_gt_sm,
    get_initial_state_last_log_lt_sm,
    get_initial_state_log_ids,
    get_initial_state_re_apply_committed,
    save_vote,
    get_log_entries,
    limited_get_log_entries,
    try_get_log_entry,
    initial_logs,
    get_log_state,
    get_log_id,
    last_id_in_log,
    last_applied_state,
    purge_logs_upto_0,
    purge_logs_upto_5,
    purge_logs_upto_20,
    delete_logs_since_11,
    delete_logs_since_0,
    append_to_log,
    snapshot_meta,
    apply_single,
    apply_multiple,
);
