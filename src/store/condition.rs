//! Append conditions (Dynamic Consistency Boundary): an `APPENDMULTI` with a condition writes
//! only if no event matching the condition's query has a position after its `after`.
//!
//! The check runs inside `apply`, in the write transaction, so it sees every event committed
//! before the command (those of earlier commands in the same transaction too) and none after:
//! it is atomic with the write, and every replica decides it alike from the same log. It
//! looks at every event in `$all`, whatever its stream's limits or deletion: limits by age
//! depend on the time of reading, which `apply` must not.
//!
//! Each query item names types or tags (the protocol refuses one that names neither), so its
//! candidates come from an index: the first tag's entries in `tag_index` when the item has
//! tags, else each type's entries in `type_index`, from `after + 1` on. A candidate matches
//! when it carries the item's other tags, has one of its types, and its record matches the
//! item's payload pattern (the same partial match as `event_payload` subscriptions). The
//! first match of each index is the smallest position that index can give, and the scan of
//! a later index stops before the best match so far, so the answer is the first matching
//! position. At most [`MAX_CONDITION_CANDIDATES`] candidates are examined per check.

use heed::types::{Bytes, Unit};
use heed::{Database, RwTxn};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use esdb_protocol::limits::MAX_CONDITION_CANDIDATES;
use esdb_protocol::matching::partial_match;

use crate::store::checksum;
use crate::store::command::record_place;
use crate::store::read::inclusive;
use crate::store::schema::{tag_index_key, type_index_key, type_index_position, Databases};
use crate::store::{Rejection, StoreError};

/// The condition of an append, as the Raft log carries it (the store's own shape, not the
/// protocol's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendCondition {
    pub query: Vec<ConditionItem>,
    /// Only events after this position count; `None`: every event.
    pub after: Option<u64>,
}

/// An event matches when its type is one of `types` (any when empty), it carries every tag
/// of `tags`, and its record matches `payload` partially (when given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionItem {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// `Ok(Ok(()))` when no event after `after` matches; else the rejection naming the first one.
pub(crate) fn check(
    txn: &RwTxn<'_>,
    dbs: &Databases,
    condition: &AppendCondition,
) -> Result<Result<(), Rejection>, StoreError> {
    let from = match condition.after {
        Some(after) => match after.checked_add(1) {
            Some(from) => from,
            None => return Ok(Ok(())),
        },
        None => 0,
    };
    let mut budget = MAX_CONDITION_CANDIDATES;
    let mut best: Option<u64> = None;
    for item in &condition.query {
        let drivers: Vec<(Database<Bytes, Unit>, &str, bool)> = match item.tags.first() {
            Some(tag) => vec![(dbs.tag_index, tag.as_str(), true)],
            None => item
                .types
                .iter()
                .map(|t| (dbs.type_index, t.as_str(), false))
                .collect(),
        };
        assert!(
            !drivers.is_empty(),
            "the protocol refuses an item without types or tags"
        );
        for (index, name, by_tag) in drivers {
            // Nothing at or past the best match so far can improve on it.
            let high = match best {
                Some(0) => break,
                Some(best) => best - 1,
                None => u64::MAX,
            };
            if from > high {
                continue;
            }
            let (low, high) = (type_index_key(name, from), type_index_key(name, high));
            for entry in index.range(txn, &inclusive(&low, &high))? {
                let position = type_index_position(entry?.0)?;
                if budget == 0 {
                    return Ok(Err(Rejection::ConditionTooBroad {
                        candidates: MAX_CONDITION_CANDIDATES,
                    }));
                }
                budget -= 1;
                if matches_rest(txn, dbs, item, position, by_tag)? {
                    best = Some(position);
                    break;
                }
            }
        }
    }
    let Some(position) = best else {
        return Ok(Ok(()));
    };
    let place = record_place(txn, dbs, position)?;
    Ok(Err(Rejection::ConditionFailed {
        position,
        stream: place.stream_id,
        version: place.version,
        after: condition.after,
    }))
}

/// Whether the event at `position`, found through the item's first tag (`by_tag`) or one of
/// its types, matches the rest of the item.
fn matches_rest(
    txn: &RwTxn<'_>,
    dbs: &Databases,
    item: &ConditionItem,
    position: u64,
    by_tag: bool,
) -> Result<bool, StoreError> {
    let other_tags = if by_tag {
        &item.tags[1..]
    } else {
        &item.tags[..]
    };
    for tag in other_tags {
        if dbs
            .tag_index
            .get(txn, &tag_index_key(tag, position))?
            .is_none()
        {
            return Ok(false);
        }
    }
    if by_tag && !item.types.is_empty() {
        let mut typed = false;
        for event_type in &item.types {
            if dbs
                .type_index
                .get(txn, &type_index_key(event_type, position))?
                .is_some()
            {
                typed = true;
                break;
            }
        }
        if !typed {
            return Ok(false);
        }
    }
    let Some(pattern) = &item.payload else {
        return Ok(true);
    };
    let stored = dbs.events.get(txn, &position)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "an index entry points at missing position {position}"
        ))
    })?;
    // A damaged record stops the apply (a storage failure), as in the idempotency check: a
    // decision must not rest on bytes no other replica has.
    let record = checksum::unseal_event(position, stored)?;
    // A sealed record's data is not looked into: whether this node holds the master key must
    // not change what every replica decides. It counts as a match, as an unreadable one does.
    if record.starts_with(crate::store::crypto::SEALED_PREFIX) {
        return Ok(true);
    }
    match esdb_protocol::json::parse_record(record) {
        Ok(value) => Ok(partial_match(pattern, &value)),
        // A record the matcher cannot read (written before the JSON rules) cannot be shown
        // not to match: it counts as a match, so the append is refused rather than let
        // through on a guess. Every replica has the same bytes, so all decide alike.
        Err(_) => Ok(true),
    }
}
