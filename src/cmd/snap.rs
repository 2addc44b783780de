//! `SNAP …` (syntax in `esdb_protocol::ops::snap`): saves and deletes are writes (commands,
//! like appends); loads, lists and exists are reads ([`crate::store::snapshots`]). Counts
//! `esdb_snapshots_*` and emits `snapshot.created`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use esdb_protocol::ops::snap::{parse_snapshot_payload, SnapRequest};
use esdb_protocol::Reply;

use crate::server::session::{error, read, write, Dispatched, Session};
use crate::server::ServerContext;
use crate::store::snapshots;
use crate::store::{Command, SaveSnapshotCommand};
use crate::telemetry;

/// `SNAP SAVE|LOAD|LIST|DELETE|EXISTS …`.
pub async fn snap(
    context: &Arc<ServerContext>,
    session: &mut Session,
    request: SnapRequest,
) -> Dispatched {
    match request {
        SnapRequest::Save {
            stream,
            version,
            payload,
        } => save(session, stream, version, &payload).await,
        SnapRequest::Delete { stream, version } => {
            let command = Command::DeleteSnapshots { stream, version };
            write(session, command, |_| Reply::Ok).await
        }
        SnapRequest::Load { stream, version } => {
            let metrics = session.store.metrics().clone();
            read(context, session, move |txn, dbs| {
                let (version, record) = snapshots::load(txn, dbs, &stream, version)?;
                metrics.snapshots.loaded.inc();
                let body = Bytes::copy_from_slice(record);
                Ok(Reply::Snapshot {
                    stream,
                    version,
                    body,
                })
            })
        }
        SnapRequest::List {
            stream,
            from_version,
            count,
        } => read(context, session, move |txn, dbs| {
            let page = snapshots::list(txn, dbs, &stream, from_version, count)?;
            Ok(Reply::Snapshots {
                count: page.count,
                body: page.body,
            })
        }),
        SnapRequest::Exists { stream, version } => read(context, session, move |txn, dbs| {
            let exists = snapshots::exists(txn, dbs, &stream, version)?;
            Ok(Reply::Exists { stream, exists })
        }),
    }
}

/// `SNAP SAVE <stream> <version> <payload>`.
async fn save(session: &mut Session, stream: String, version: u64, payload: &[u8]) -> Dispatched {
    let input = match parse_snapshot_payload(payload) {
        Ok(input) => input,
        Err(e) => return error(e),
    };
    let size_bytes =
        (input.data.get().len() + input.metadata.as_ref().map_or(2, |m| m.get().len())) as u64;
    let command = Command::SaveSnapshot(SaveSnapshotCommand {
        stream: stream.clone(),
        version,
        epoch_us: session.store.stamp_epoch_us(),
        data: input.data,
        metadata: input.metadata,
        keep: input.keep,
    });
    let (metrics, store) = (
        session.store.metrics().clone(),
        session.store.name().to_owned(),
    );
    let started = Instant::now();
    write(session, command, move |_| {
        metrics.snapshots.saved.inc();
        metrics.snapshots.size_bytes.observe(size_bytes as f64);
        let duration_us = started.elapsed().as_micros() as u64;
        telemetry::snapshot_created(&store, &stream, version, size_bytes, duration_us);
        Reply::Ok
    })
    .await
}
