//! Persistent subscriptions as stored data: definitions, checkpoints and parked events, all in
//! the store's own LMDB environment and written through [`Command`]s (so Raft will replicate
//! them with the events).
//!
//! The checkpoint of a subscription is the position from which delivery resumes: every
//! matching event before it was acknowledged, skipped or parked.
//!
//! [`Command`]: crate::store::Command

use heed::types::Bytes as BytesCodec;
use heed::{RoTxn, RwTxn};
use serde::{Deserialize, Serialize};

use esdb_protocol::ops::subscribe::{Selector, StartFrom, SubscriptionOptions};

use crate::store::schema::{parked_key, Databases, META_NEXT_POSITION};
use crate::store::{Outcome, Rejection, StoreError};

/// Parked; waits for a `PSUB REPLAY`.
pub const PARKED: u8 = 0;
/// Parked, then asked to be replayed: delivered again when the subscription next runs.
pub const REPLAY_REQUESTED: u8 = 1;

/// A persistent subscription's definition, stored as JSON under its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionDefinition {
    pub name: String,
    #[serde(flatten)]
    pub selector: Selector,
    pub options: SubscriptionOptions,
    pub created_epoch_us: u64,
}

pub(crate) fn apply_create(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    definition: &SubscriptionDefinition,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    if let Some(existing) = load_definition(txn, dbs, &definition.name)? {
        return Ok(if existing.selector == definition.selector {
            Ok(Outcome::SubscriptionReady { created: false })
        } else {
            Err(Rejection::SubscriptionConflict {
                name: definition.name.clone(),
                existing: format!(
                    "{} {}",
                    existing.selector.type_name(),
                    existing.selector.text()
                ),
            })
        });
    }
    let head = dbs.meta.get(txn, META_NEXT_POSITION)?.unwrap_or(0);
    let checkpoint = match definition.options.start {
        StartFrom::Origin => 0,
        StartFrom::End => head,
        StartFrom::Position(position) => position,
        // Resolved from the replicated time index: deterministic, as `apply` must be.
        StartFrom::Time(epoch_us) => {
            crate::store::clock::first_position_at_or_after(txn, dbs, epoch_us)?
        }
    };
    let json = serde_json::to_vec(definition).expect("definitions serialise");
    dbs.psubs.put(txn, &definition.name, &json)?;
    dbs.psub_checkpoints
        .put(txn, &definition.name, &checkpoint)?;
    Ok(Ok(Outcome::SubscriptionReady { created: true }))
}

pub(crate) fn apply_delete(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    name: &str,
    type_name: Option<&str>,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    let Some(existing) = load_definition(txn, dbs, name)? else {
        return Ok(Err(Rejection::SubscriptionNotFound {
            name: name.to_owned(),
        }));
    };
    if type_name.is_some_and(|t| t != existing.selector.type_name()) {
        return Ok(Err(Rejection::SubscriptionNotFound {
            name: name.to_owned(),
        }));
    }
    dbs.psubs.delete(txn, name)?;
    dbs.psub_checkpoints.delete(txn, name)?;
    let prefix = parked_prefix(name);
    let keys: Vec<Vec<u8>> = dbs
        .psub_parked
        .remap_data_type::<BytesCodec>()
        .prefix_iter(txn, &prefix)?
        .map(|entry| entry.map(|(key, _)| key.to_vec()))
        .collect::<Result<_, _>>()?;
    for key in keys {
        dbs.psub_parked.delete(txn, &key)?;
    }
    Ok(Ok(Outcome::Done))
}

/// Saves progress: the checkpoint (never moved backwards), events newly parked, and parked
/// events that were replayed. A subscription deleted meanwhile is left deleted.
pub(crate) fn apply_save_state(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    name: &str,
    checkpoint: u64,
    park: &[ParkedEvent],
    unpark: &[u64],
) -> Result<Result<Outcome, Rejection>, StoreError> {
    if dbs.psubs.get(txn, name)?.is_none() {
        return Ok(Ok(Outcome::Done));
    }
    let current = dbs.psub_checkpoints.get(txn, name)?.unwrap_or(0);
    dbs.psub_checkpoints
        .put(txn, name, &current.max(checkpoint))?;
    for position in unpark {
        dbs.psub_parked.delete(txn, &parked_key(name, *position))?;
    }
    for parked in park {
        let value = parked_value(PARKED, parked.reason.as_deref());
        dbs.psub_parked
            .put(txn, &parked_key(name, parked.position), &value)?;
    }
    Ok(Ok(Outcome::Done))
}

/// Marks every parked event of the subscription for replay.
pub(crate) fn apply_request_replay(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    name: &str,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    if dbs.psubs.get(txn, name)?.is_none() {
        return Ok(Err(Rejection::SubscriptionNotFound {
            name: name.to_owned(),
        }));
    }
    let entries: Vec<(Vec<u8>, Vec<u8>)> = dbs
        .psub_parked
        .prefix_iter(txn, &parked_prefix(name))?
        .map(|entry| entry.map(|(key, value)| (key.to_vec(), value.to_vec())))
        .collect::<Result<_, _>>()?;
    for (key, mut value) in entries {
        // The flag changes; the reason (after the flag byte) stays.
        match value.first_mut() {
            Some(flag) => *flag = REPLAY_REQUESTED,
            None => value.push(REPLAY_REQUESTED),
        }
        dbs.psub_parked.put(txn, &key, &value)?;
    }
    Ok(Ok(Outcome::Done))
}

/// An event a persistent subscription parks, with why when it is not the usual (retries
/// exhausted, or `NACK park`): e.g. its record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedEvent {
    pub position: u64,
    pub reason: Option<String>,
}

/// A `psub_parked` value: the flag byte, then the reason as UTF-8 (empty when none).
fn parked_value(flag: u8, reason: Option<&str>) -> Vec<u8> {
    let mut value = vec![flag];
    value.extend_from_slice(reason.unwrap_or_default().as_bytes());
    value
}

/// One entry of a subscription's parked set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEntry {
    pub position: u64,
    pub flag: u8,
    pub reason: Option<String>,
}

fn parked_prefix(name: &str) -> Vec<u8> {
    let mut prefix = name.as_bytes().to_vec();
    prefix.push(0);
    prefix
}

fn parked_position(key: &[u8]) -> Result<u64, StoreError> {
    let tail = key
        .len()
        .checked_sub(8)
        .map(|at| &key[at..])
        .ok_or_else(|| StoreError::Corrupt("short parked key".into()))?;
    Ok(u64::from_be_bytes(tail.try_into().expect("8 bytes")))
}

pub fn load_definition(
    txn: &RoTxn,
    dbs: &Databases,
    name: &str,
) -> Result<Option<SubscriptionDefinition>, StoreError> {
    dbs.psubs
        .get(txn, name)?
        .map(|json| {
            serde_json::from_slice(json)
                .map_err(|e| StoreError::Corrupt(format!("subscription {name}: {e}")))
        })
        .transpose()
}

/// A persistent subscription with its progress, as `PSUB GET`/`LIST` show it.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionState {
    #[serde(flatten)]
    pub definition: SubscriptionDefinition,
    pub checkpoint: u64,
    pub parked: u64,
}

pub fn load_state(
    txn: &RoTxn,
    dbs: &Databases,
    name: &str,
) -> Result<Option<SubscriptionState>, StoreError> {
    let Some(definition) = load_definition(txn, dbs, name)? else {
        return Ok(None);
    };
    let checkpoint = dbs.psub_checkpoints.get(txn, name)?.unwrap_or(0);
    let parked = dbs
        .psub_parked
        .prefix_iter(txn, &parked_prefix(name))?
        .count() as u64;
    Ok(Some(SubscriptionState {
        definition,
        checkpoint,
        parked,
    }))
}

/// Every persistent subscription, by name.
pub fn list(txn: &RoTxn, dbs: &Databases) -> Result<Vec<SubscriptionState>, StoreError> {
    let mut names = Vec::new();
    for entry in dbs.psubs.iter(txn)? {
        names.push(entry?.0.to_owned());
    }
    let mut states = Vec::with_capacity(names.len());
    for name in names {
        if let Some(state) = load_state(txn, dbs, &name)? {
            states.push(state);
        }
    }
    Ok(states)
}

/// Parked positions of a subscription from `from_position`, at most `count`, with their flag
/// and reason.
pub fn parked(
    txn: &RoTxn,
    dbs: &Databases,
    name: &str,
    from_position: u64,
    count: u64,
) -> Result<Vec<ParkedEntry>, StoreError> {
    let mut out = Vec::new();
    for entry in dbs.psub_parked.prefix_iter(txn, &parked_prefix(name))? {
        let (key, flag) = entry?;
        let position = parked_position(key)?;
        if position < from_position {
            continue;
        }
        if out.len() as u64 >= count {
            break;
        }
        let reason = flag
            .get(1..)
            .filter(|text| !text.is_empty())
            .map(|text| String::from_utf8_lossy(text).into_owned());
        out.push(ParkedEntry {
            position,
            flag: flag.first().copied().unwrap_or(PARKED),
            reason,
        });
    }
    Ok(out)
}
