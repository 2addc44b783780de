//! Optimistic concurrency: each connection appends one event to a stream drawn from a Zipf
//! distribution, with the exact version it believes current. Beliefs are shared by all
//! connections (as a cache in front of a real application would be); a conflict teaches the
//! actual version (esdb's error names it; JetStream's names the subject's last sequence) and
//! counts as a conflict, not an error.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use esdb_protocol::{ErrorCode, ExpectedVersion, Reply, Request};

use crate::esdb::client::Conn;
use crate::measure::{Tally, Window};
use crate::payload::append_payload;
use crate::workloads::{Params, MAX_REQUESTS_PER_CONNECTION};
use crate::zipf::Zipf;

pub struct OccLoad {
    pub conns: usize,
    pub streams: usize,
    pub event_bytes: usize,
}

/// Per stream, the version (esdb) or last subject sequence (JetStream) believed current;
/// -1 (esdb) or 0 (JetStream) for "no events yet".
type Beliefs = Arc<Vec<AtomicI64>>;

fn beliefs(streams: usize, none: i64) -> Beliefs {
    Arc::new((0..streams).map(|_| AtomicI64::new(none)).collect())
}

/// The number after the last "actual " or ": " in a conflict message.
fn actual_from_message(message: &str) -> Option<i64> {
    let tail = message
        .rsplit_once("actual ")
        .or_else(|| message.rsplit_once(": "))?
        .1;
    let digits: String = tail
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

pub async fn esdb(addr: SocketAddr, load: &OccLoad, params: &Params) -> anyhow::Result<Tally> {
    let zipf = Arc::new(Zipf::new(load.streams));
    let known = beliefs(load.streams, -1);
    let payload = append_payload(1, load.event_bytes);
    let mut conns = Vec::with_capacity(load.conns);
    for _ in 0..load.conns {
        conns.push(Conn::connect(addr).await?);
    }
    let window = Window::start(params.warmup, params.measure);
    let mut tasks = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (zipf, known, payload) = (zipf.clone(), known.clone(), payload.clone());
        let bytes = load.event_bytes as u64;
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(i as u64);
            let mut tally = Tally::default();
            let mut sent = 0;
            while !window.is_over() && sent < MAX_REQUESTS_PER_CONNECTION {
                sent += 1;
                let k = zipf.sample(&mut rng);
                let believed = known[k].load(Ordering::Relaxed);
                let expected = if believed < 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(believed as u64)
                };
                let request = Request::Append {
                    stream: format!("z-{k}"),
                    expected,
                    payload: payload.clone(),
                };
                let started = Instant::now();
                let reply = conn.call(&request).await?;
                let counted = window.counts(started);
                match reply {
                    Reply::Appended { last_version, .. } => {
                        known[k].store(last_version as i64, Ordering::Relaxed);
                        if counted {
                            tally.events += 1;
                            tally.data_bytes += bytes;
                            tally.record_latency(started);
                        }
                    }
                    Reply::Err(e) if e.code == ErrorCode::WrongExpectedVersion => {
                        match actual_from_message(&e.message) {
                            Some(actual) => known[k].store(actual, Ordering::Relaxed),
                            None => tally.error(format!("unparsed conflict: {}", e.message)),
                        }
                        if counted {
                            tally.conflicts += 1;
                            tally.record_latency(started);
                        }
                    }
                    other => tally.error(format!("{other:?}")),
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        total.merge(&task.await??);
    }
    Ok(total)
}

#[cfg(feature = "nats")]
pub async fn jetstream(
    server: &crate::jetstream::NatsServer,
    load: &OccLoad,
    params: &Params,
) -> anyhow::Result<Tally> {
    use async_nats::jetstream::context::PublishErrorKind;

    let zipf = Arc::new(Zipf::new(load.streams));
    let known = beliefs(load.streams, 0);
    let payload = append_payload(1, load.event_bytes);
    let mut contexts = Vec::with_capacity(load.conns);
    for _ in 0..load.conns {
        contexts.push(server.connect().await?);
    }
    let window = Window::start(params.warmup, params.measure);
    let mut tasks = Vec::new();
    for (i, js) in contexts.into_iter().enumerate() {
        let (zipf, known, payload) = (zipf.clone(), known.clone(), payload.clone());
        let bytes = load.event_bytes as u64;
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(i as u64);
            let mut tally = Tally::default();
            let mut sent = 0;
            let stream = js
                .get_stream(crate::jetstream::STREAM_NAME)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            while !window.is_over() && sent < MAX_REQUESTS_PER_CONNECTION {
                sent += 1;
                let k = zipf.sample(&mut rng);
                let subject = crate::jetstream::subject(&format!("z-{k}"));
                let believed = known[k].load(Ordering::Relaxed);
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    believed.to_string().as_str(),
                );
                let started = Instant::now();
                let ack = match js
                    .publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
                {
                    Ok(future) => future.await,
                    Err(e) => Err(e),
                };
                let counted = window.counts(started);
                match ack {
                    Ok(ack) => {
                        known[k].store(ack.sequence as i64, Ordering::Relaxed);
                        if counted {
                            tally.events += 1;
                            tally.data_bytes += bytes;
                            tally.record_latency(started);
                        }
                    }
                    Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                        let text = std::error::Error::source(&e)
                            .map(|s| s.to_string())
                            .unwrap_or_default();
                        let actual = match actual_from_message(&text) {
                            Some(actual) => Some(actual),
                            // Not in the message: ask for the subject's last message.
                            None => stream
                                .get_last_raw_message_by_subject(&subject)
                                .await
                                .ok()
                                .map(|m| m.sequence as i64),
                        };
                        match actual {
                            Some(actual) => known[k].store(actual, Ordering::Relaxed),
                            None => tally.error(format!("unparsed conflict: {text}")),
                        }
                        if counted {
                            tally.conflicts += 1;
                            tally.record_latency(started);
                        }
                    }
                    Err(e) => tally.error(e.to_string()),
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        total.merge(&task.await??);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::actual_from_message;

    #[test]
    fn conflict_messages_name_the_actual_version() {
        assert_eq!(
            actual_from_message("stream z-1: expected version 0, actual 3"),
            Some(3)
        );
        assert_eq!(
            actual_from_message("stream z-1: expected version 0, actual -1"),
            Some(-1)
        );
        assert_eq!(actual_from_message("wrong last sequence: 42"), Some(42));
        assert_eq!(actual_from_message("nothing here"), None);
    }
}
