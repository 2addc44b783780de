//! `APPENDMULTI`: one command appending to several streams, all or nothing, optionally only if
//! its condition holds ([`crate::store::condition`]).
//!
//! Every part is checked before the first is written, exactly as a single append checks
//! itself ([`command::check_append`]): the protocol refuses a stream in two parts and an event
//! id twice, so no part's checks depend on another part's writes. Then the parts are written
//! in order, each at consecutive positions, all with one commit time.
//!
//! Idempotency is by event id, as for `APPEND`: when every part is a retry of an append that
//! succeeded (its ids stored at the place its expectation held), the command is a retry of
//! one that succeeded and answers the original results, writing nothing; that is decided
//! before the condition, which the command's own events would otherwise fail. A command of
//! which only some parts are retries is not one: the ids already stored make it fail
//! (`duplicate_event_id`, or the expected version of that part).

use heed::RwTxn;
use serde::{Deserialize, Serialize};

use esdb_protocol::ExpectedVersion;

use crate::store::command::{self, check_append, write_append, Checked, NewEvent, Outcome};
use crate::store::committed::CommittedEvent;
use crate::store::condition::{self, AppendCondition};
use crate::store::schema::Databases;
use crate::store::{Rejection, StoreError};

/// A multi-stream append, as the Raft log carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendMultiCommand {
    /// Taken once by the node that accepted it: every event of every part records it.
    pub epoch_us: u64,
    pub parts: Vec<AppendPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<AppendCondition>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendPart {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// As [`crate::store::command::AppendCommand::sealed`], for this part's stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

/// One part's result: where its events went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartResult {
    pub first_version: u64,
    pub last_version: u64,
    pub first_position: u64,
    pub last_position: u64,
}

pub(crate) fn apply_append_multi(
    txn: &mut RwTxn<'_>,
    dbs: &Databases,
    multi: &AppendMultiCommand,
    committed: &mut Vec<CommittedEvent>,
) -> Result<Result<Outcome, Rejection>, StoreError> {
    assert!(
        !multi.parts.is_empty(),
        "the protocol refuses an empty APPENDMULTI"
    );
    let mut checked = Vec::with_capacity(multi.parts.len());
    let mut failure = None;
    for (index, part) in multi.parts.iter().enumerate() {
        match check_append(
            txn,
            dbs,
            &part.stream,
            part.expected,
            &part.events,
            part.sealed,
        )? {
            Ok(verdict) => checked.push(verdict),
            Err(rejection) => {
                // Kept, not returned: a later part may show the whole command is no retry,
                // but the first failing part is the one named either way.
                failure.get_or_insert((index, rejection));
                checked.push(Checked::Write(None));
            }
        }
    }
    let all_retries = checked.iter().all(|c| matches!(c, Checked::Retry(_)));
    if all_retries {
        let mut parts = Vec::with_capacity(multi.parts.len());
        for (part, verdict) in multi.parts.iter().zip(&checked) {
            let Checked::Retry(Outcome::AlreadyAppended {
                last_version,
                last_position,
            }) = verdict
            else {
                unreachable!("all retries")
            };
            parts.push(retried_part(txn, dbs, part, *last_version, *last_position)?);
        }
        return Ok(Ok(Outcome::AppendedMulti {
            parts,
            replayed: true,
        }));
    }
    if let Some((part, rejection)) = failure {
        return Ok(Err(Rejection::InPart {
            part,
            rejection: Box::new(rejection),
        }));
    }
    if let Some((index, _)) = checked
        .iter()
        .enumerate()
        .find(|(_, c)| matches!(c, Checked::Retry(_)))
    {
        // Some parts are stored already, others not: not a retry of one command, so the
        // stored ids are duplicates.
        let part = &multi.parts[index];
        let Checked::Retry(Outcome::AlreadyAppended {
            last_version,
            last_position,
        }) = checked[index]
        else {
            unreachable!("found as a retry")
        };
        let stored = retried_part(txn, dbs, part, last_version, last_position)?;
        return Ok(Err(Rejection::InPart {
            part: index,
            rejection: Box::new(Rejection::DuplicateEventId {
                event_id: part.events[0].event_id,
                stream: part.stream.clone(),
                version: stored.first_version,
            }),
        }));
    }
    if let Some(condition) = &multi.condition {
        if let Err(rejection) = condition::check(txn, dbs, condition)? {
            return Ok(Err(rejection));
        }
    }

    // Every check passed: from here on only storage failures can stop the command.
    let mut parts = Vec::with_capacity(multi.parts.len());
    for (part, verdict) in multi.parts.iter().zip(checked) {
        let Checked::Write(meta) = verdict else {
            unreachable!("no retries left")
        };
        let outcome = write_append(
            txn,
            dbs,
            &part.stream,
            multi.epoch_us,
            &part.events,
            part.sealed,
            meta,
            committed,
        )?;
        let Outcome::Appended {
            last_version,
            last_position,
            event_count,
        } = outcome
        else {
            unreachable!("write_append appends")
        };
        parts.push(PartResult {
            first_version: last_version + 1 - event_count,
            last_version,
            first_position: last_position + 1 - event_count,
            last_position,
        });
    }
    Ok(Ok(Outcome::AppendedMulti {
        parts,
        replayed: false,
    }))
}

/// The result a retried part had: its first event's place is looked up, since the versions
/// are consecutive but the positions need not be (the events may have come from several
/// appends that together match this part).
fn retried_part(
    txn: &RwTxn<'_>,
    dbs: &Databases,
    part: &AppendPart,
    last_version: u64,
    last_position: u64,
) -> Result<PartResult, StoreError> {
    let first_id = part.events[0].event_id;
    let first_position = dbs
        .event_ids
        .get(txn, first_id.as_bytes())?
        .ok_or_else(|| StoreError::Corrupt(format!("retried event id {first_id} vanished")))?;
    let place = command::record_place(txn, dbs, first_position)?;
    Ok(PartResult {
        first_version: place.version,
        last_version,
        first_position,
        last_position,
    })
}
