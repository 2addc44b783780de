//! The load a crash interrupts: concurrent connections, each pipelining appends (exact
//! expected versions on its own streams and on shared ones, `any`, single events and
//! batches), recording every request before its bytes go out and every reply as it comes.
//!
//! A connection stops when the server dies (its socket closes), when told to stop, or at its
//! request bound. Requests still unanswered then have an unknown outcome.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use esdb_protocol::{ErrorCode, ExpectedVersion, Reply, Request};
use tokio::io::AsyncWriteExt;

use super::model::{
    append_payload, Outcome, RequestKey, SentAppend, StreamClass, Streams, ANY_STREAMS,
    MAX_BATCH_EVENTS, OWNED_STREAMS_PER_CONNECTION, SHARED_EXACT_STREAMS,
};
use crate::esdb::client::{encode, Conn};

/// Requests in flight per connection.
pub const PIPELINE_DEPTH: usize = 16;
/// Most requests one connection sends in a round (a bound, far above what a round reaches).
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 1_000_000;
/// How long a reply may take while the server is alive.
const REPLY_TIMEOUT_MS: u64 = 20_000;

/// What one round's load is.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    pub run: u16,
    pub round: u32,
    pub connections: usize,
    pub seed: u64,
}

/// One connection's record of the round.
#[derive(Debug, Default)]
pub struct ConnLog {
    pub appends: Vec<SentAppend>,
    pub conflicts: u64,
    /// Replies no correct server sends for these requests (a reply for another stream, an
    /// error such as `duplicate_event_id` for fresh ids): violations.
    pub unexpected: Vec<String>,
    /// `storage_error` replies: outcome unknown, counted.
    pub storage_errors: u64,
    /// `shutting_down` replies to appends: the node stopped (its log could not be synced, say)
    /// with the append in flight, so it may or may not have reached the log. Outcome unknown,
    /// counted.
    pub shutdown_replies: u64,
}

enum InFlight {
    Append(usize),
    Version(u32),
}

/// Runs the writers until `stop` is set or the server goes away; `versions` are the streams'
/// current versions as verified, which the exact-version writers start from.
pub async fn run(
    addr: SocketAddr,
    plan: LoadPlan,
    streams: Arc<Streams>,
    versions: Arc<Vec<i64>>,
    stop: Arc<AtomicBool>,
) -> Vec<ConnLog> {
    let tasks: Vec<_> = (0..plan.connections)
        .map(|conn| {
            let (streams, versions, stop) = (streams.clone(), versions.clone(), stop.clone());
            tokio::spawn(
                async move { connection(addr, plan, conn, &streams, &versions, &stop).await },
            )
        })
        .collect();
    let mut logs = Vec::new();
    for task in tasks {
        logs.push(task.await.unwrap_or_default());
    }
    logs
}

struct Writer<'a> {
    plan: LoadPlan,
    conn: usize,
    streams: &'a Streams,
    rng: fastrand::Rng,
    /// The version each exact-version stream will be at once this writer's in-flight appends
    /// land; `None` while a `VERSION` is out to relearn it after a conflict.
    predicted: HashMap<u32, Option<i64>>,
    seq: u32,
    log: ConnLog,
}

impl Writer<'_> {
    /// The next request: its bytes and what to remember of it.
    fn next(&mut self) -> (bytes::Bytes, InFlight) {
        let class = self.rng.u32(0..100);
        let count = if self.rng.bool() {
            1
        } else {
            self.rng.u16(2..=MAX_BATCH_EVENTS)
        };
        let exact = match class {
            0..=39 => Some(
                self.streams
                    .owned(self.conn, self.rng.usize(0..OWNED_STREAMS_PER_CONNECTION)),
            ),
            40..=59 => Some(
                self.streams
                    .shared_exact(self.rng.usize(0..SHARED_EXACT_STREAMS)),
            ),
            _ => None,
        };
        let (stream, expected) = match exact.and_then(|s| Some((s, (*self.predicted.get(&s)?)?))) {
            Some((s, v)) => {
                self.predicted.insert(s, Some(v + count as i64));
                let expected = if v < 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(v as u64)
                };
                (s, expected)
            }
            // No exact stream picked, or its version is being relearned.
            None => (
                self.streams.any(self.rng.usize(0..ANY_STREAMS)),
                ExpectedVersion::Any,
            ),
        };
        self.seq += 1;
        let key = RequestKey {
            round: self.plan.round,
            conn: self.conn as u16,
            seq: self.seq,
        };
        let request = Request::Append {
            stream: self.streams.names[stream as usize].clone(),
            expected,
            payload: append_payload(self.plan.run, key, count).into(),
        };
        self.log.appends.push(SentAppend {
            key,
            stream,
            expected,
            count,
            outcome: Outcome::Unknown,
        });
        (
            encode(&request),
            InFlight::Append(self.log.appends.len() - 1),
        )
    }

    /// Handles a reply; may return a request to send (a `VERSION` after a conflict).
    fn reply(&mut self, to: InFlight, reply: Reply) -> Option<(bytes::Bytes, InFlight)> {
        match (to, reply) {
            (
                InFlight::Append(i),
                Reply::Appended {
                    stream,
                    last_version,
                    last_position,
                },
            ) => {
                let sent = &mut self.log.appends[i];
                if stream != self.streams.names[sent.stream as usize] {
                    self.log.unexpected.push(format!(
                        "request {:?} to {} answered APPENDED {stream} {last_version} {last_position}",
                        sent.key, self.streams.names[sent.stream as usize]
                    ));
                }
                sent.outcome = Outcome::Acked {
                    last_version,
                    last_position,
                };
                None
            }
            (InFlight::Append(i), Reply::Err(e)) => {
                let sent = &mut self.log.appends[i];
                match e.code {
                    ErrorCode::WrongExpectedVersion => {
                        self.log.conflicts += 1;
                        sent.outcome = Outcome::Rejected {
                            code: e.code.as_str().into(),
                        };
                        let stream = sent.stream;
                        if self.streams.class(stream) == StreamClass::Any {
                            self.log.unexpected.push(format!(
                                "append with `any` to {} refused: {e:?}",
                                self.streams.names[stream as usize]
                            ));
                            return None;
                        }
                        // None: a VERSION is already out for it.
                        self.predicted.insert(stream, None).flatten()?;
                        let request = Request::Version {
                            stream: self.streams.names[stream as usize].clone(),
                        };
                        Some((encode(&request), InFlight::Version(stream)))
                    }
                    ErrorCode::StorageError => {
                        self.log.storage_errors += 1;
                        None
                    }
                    ErrorCode::ShuttingDown => {
                        self.log.shutdown_replies += 1;
                        None
                    }
                    _ => {
                        sent.outcome = Outcome::Rejected {
                            code: e.code.as_str().into(),
                        };
                        self.log
                            .unexpected
                            .push(format!("request {:?} refused: {e:?}", sent.key));
                        None
                    }
                }
            }
            (InFlight::Version(s), Reply::Version { version, .. }) => {
                self.predicted.insert(s, Some(version));
                None
            }
            // After a failed fsync LMDB refuses reads too (MDB_PANIC) until the restart: the
            // stream's version stays unknown, so no more exact appends go to it this round.
            (InFlight::Version(_), Reply::Err(e)) if e.code == ErrorCode::StorageError => {
                self.log.storage_errors += 1;
                None
            }
            (_, other) => {
                self.log
                    .unexpected
                    .push(format!("unexpected reply {other:?}"));
                None
            }
        }
    }
}

async fn connection(
    addr: SocketAddr,
    plan: LoadPlan,
    conn: usize,
    streams: &Streams,
    versions: &[i64],
    stop: &AtomicBool,
) -> ConnLog {
    let mut writer = Writer {
        plan,
        conn,
        streams,
        rng: fastrand::Rng::with_seed(plan.seed ^ ((plan.round as u64) << 20) ^ conn as u64),
        predicted: (0..streams.len() as u32)
            .filter(|&s| match streams.class(s) {
                StreamClass::Owned { conn: c } => c == conn,
                StreamClass::SharedExact => true,
                StreamClass::Any => false,
            })
            .map(|s| (s, Some(versions[s as usize])))
            .collect(),
        seq: 0,
        log: ConnLog::default(),
    };
    // The server may already be dead (a kill right at the start): then nothing was sent.
    let Ok(connected) = Conn::connect(addr).await else {
        return writer.log;
    };
    let (mut reader, mut write_half) = connected.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
    // Writes go through one task so that a request is never half-written by a cancelled
    // future; the pipeline depth bounds what is queued.
    let sender = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write_half.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut sent = 0u32;
    loop {
        while in_flight.len() < PIPELINE_DEPTH
            && !stop.load(Ordering::Relaxed)
            && sent < MAX_REQUESTS_PER_CONNECTION
        {
            let (bytes, what) = writer.next();
            sent += 1;
            if tx.send(bytes).is_err() {
                break;
            }
            in_flight.push_back(what);
        }
        let Some(front) = in_flight.pop_front() else {
            break;
        };
        let reply = match tokio::time::timeout(
            Duration::from_millis(REPLY_TIMEOUT_MS),
            reader.recv(),
        )
        .await
        {
            Ok(Ok(reply)) => reply,
            // The server died (or hung): everything in flight stays unknown.
            _ => break,
        };
        if let Some((bytes, what)) = writer.reply(front, reply) {
            if tx.send(bytes).is_ok() {
                in_flight.push_back(what);
            }
        }
    }
    drop(tx);
    sender.abort();
    writer.log
}
