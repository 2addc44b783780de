//! A store's whole state from another node: the consistent copy of its LMDB environment a
//! Raft snapshot carries (`raft::state_machine`), made here and installed here.
//!
//! Making one: LMDB's own copy (`mdb_env_copyfd2` with compaction, in a read transaction of
//! its own, so writes go on meanwhile) into a file, then the Raft applied state read back from
//! the copy: that is the snapshot's log id, whatever the apply thread committed since.
//!
//! Installing one runs on the apply thread, like every write: it commits what is open, then in
//! one write transaction empties every database and copies the snapshot's records in (keys in
//! order, so LMDB appends pages), with the snapshot's applied state. The environment object
//! stays the same, so readers, the scrubber and subscriptions keep their handles; a reader
//! sees the old state or the new one, never a mix.

use std::path::Path;

use heed::{Env, PutFlags, WithoutTls};

use crate::store::schema::{
    Databases, FORMAT_VERSION, META_FORMAT_VERSION, META_NEXT_POSITION, RAFT_APPLIED,
};
use crate::store::{StoreError, StoreOptions};

/// The file an environment's copy is written to, inside the snapshot's directory (LMDB's
/// data file name, so the directory opens as an environment).
pub const DATA_FILE: &str = "data.mdb";

/// Copies `env` into `dir/data.mdb` (created, or truncated), makes the copy durable, and
/// returns the Raft applied state it holds.
pub fn copy_env(env: &Env<WithoutTls>, dir: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let storage = |e: std::io::Error| StoreError::Storage(format!("copying the store: {e}"));
    std::fs::create_dir_all(dir).map_err(storage)?;
    let _ = std::fs::remove_file(dir.join("lock.mdb"));
    let file = env.copy_to_path(dir.join(DATA_FILE), heed::CompactionOption::Enabled)?;
    file.sync_all().map_err(storage)?;
    drop(file);
    let copy = open_copy(dir, env.info().map_size)?;
    let applied = {
        let txn = copy.0.read_txn()?;
        copy.1.raft.get(&txn, RAFT_APPLIED)?.map(<[u8]>::to_vec)
    };
    close(copy.0);
    Ok(applied)
}

/// Opens the copy in `dir` (its own environment, never the store's directory).
fn open_copy(dir: &Path, map_size: usize) -> Result<(Env<WithoutTls>, Databases), StoreError> {
    let options = StoreOptions {
        map_size_bytes: map_size,
        master_key: None,
    };
    let env = super::open_env(dir, &options)?;
    let dbs = Databases::create(&env)?;
    Ok((env, dbs))
}

fn close(env: Env<WithoutTls>) {
    env.prepare_for_closing().wait();
}

/// Replaces everything `env` holds with the copy in `from` (one write transaction), the Raft
/// applied state set to `applied_state`. Returns the next `$all` position. Runs on the apply
/// thread.
pub(crate) fn replace_contents(
    env: &Env<WithoutTls>,
    dbs: &Databases,
    from: &Path,
    applied_state: &[u8],
) -> Result<u64, StoreError> {
    let (source_env, source) = open_copy(from, env.info().map_size)?;
    let result = (|| {
        let rtxn = source_env.read_txn()?;
        let format = source.meta.get(&rtxn, META_FORMAT_VERSION)?;
        if format != Some(FORMAT_VERSION) {
            return Err(StoreError::Storage(format!(
                "the snapshot received is store format {format:?}, this build writes \
                 {FORMAT_VERSION}: every node of a cluster must run the same esdb"
            )));
        }
        let mut wtxn = env.write_txn()?;
        for ((name, target), (_, from)) in dbs.raw().into_iter().zip(source.raw()) {
            target.clear(&mut wtxn)?;
            for record in from.iter(&rtxn)? {
                let (key, value) = record?;
                target
                    .put_with_flags(&mut wtxn, PutFlags::APPEND, key, value)
                    .map_err(|e| StoreError::Storage(format!("installing {name}: {e}")))?;
            }
        }
        dbs.raft.put(&mut wtxn, RAFT_APPLIED, applied_state)?;
        let next_position = dbs.meta.get(&wtxn, META_NEXT_POSITION)?.unwrap_or(0);
        wtxn.commit()?;
        Ok(next_position)
    })();
    close(source_env);
    result
}
