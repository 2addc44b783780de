//! Reads: one connection reading forward, page after page, through events written
//! beforehand (not timed): one stream (`READ`), or `$all` (`READALL`). At the end it starts over.

use std::net::SocketAddr;
use std::time::Instant;

use esdb_protocol::{Direction, ExpectedVersion, ReadStart, Reply, Request};

use crate::esdb::client::{encode, Conn};
use crate::measure::{Tally, Window};
use crate::payload::append_payload;
use crate::workloads::{Params, MAX_REQUESTS_PER_CONNECTION};

/// Events per prefill `APPEND` (100 B events: about 60 KB, well under `max_payload`).
const PREFILL_BATCH: usize = 1000;
/// Prefill appends in flight.
const PREFILL_WINDOW: usize = 8;
/// The stream reads go through.
const READ_STREAM: &str = "read-0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Stream,
    All,
}

async fn esdb_prefill(conn: &mut Conn, events: usize, event_bytes: usize) -> anyhow::Result<()> {
    let batches = events.div_ceil(PREFILL_BATCH);
    let request = encode(&Request::Append {
        stream: READ_STREAM.into(),
        expected: ExpectedVersion::Any,
        payload: append_payload(PREFILL_BATCH, event_bytes),
    });
    let (mut sent, mut answered) = (0, 0);
    while answered < batches {
        while sent < batches && sent - answered < PREFILL_WINDOW {
            conn.send_raw(&request).await?;
            sent += 1;
        }
        match conn.recv().await? {
            Reply::Appended { .. } => answered += 1,
            other => anyhow::bail!("prefill failed: {other:?}"),
        }
    }
    Ok(())
}

pub async fn esdb(
    addr: SocketAddr,
    target: Target,
    event_bytes: usize,
    params: &Params,
) -> anyhow::Result<Tally> {
    let mut conn = Conn::connect(addr).await?;
    esdb_prefill(&mut conn, params.read_prefill_events, event_bytes).await?;
    let total = (params.read_prefill_events.div_ceil(PREFILL_BATCH) * PREFILL_BATCH) as u64;
    let page = params.read_page as u64;
    let window = Window::start(params.warmup, params.measure);
    let mut tally = Tally::default();
    let mut from = 0u64;
    let mut sent = 0;
    while !window.is_over() && sent < MAX_REQUESTS_PER_CONNECTION {
        sent += 1;
        let request = match target {
            Target::Stream => Request::Read {
                stream: READ_STREAM.into(),
                from: ReadStart::At(from),
                count: page,
                direction: Direction::Forward,
            },
            Target::All => Request::ReadAll {
                from: ReadStart::At(from),
                count: page,
                direction: Direction::Forward,
            },
        };
        let started = Instant::now();
        match conn.call(&request).await? {
            Reply::Events { count, .. } => {
                if window.counts(started) {
                    tally.events += count;
                    tally.data_bytes += count * event_bytes as u64;
                    tally.record_latency(started);
                }
                from += count;
                if count == 0 || from >= total {
                    from = 0;
                }
            }
            other => tally.error(format!("{other:?}")),
        }
    }
    Ok(tally)
}

/// Publishes with this many acks outstanding while prefilling.
#[cfg(feature = "nats")]
const JS_PREFILL_WINDOW: usize = 1000;

#[cfg(feature = "nats")]
pub async fn jetstream(
    server: &crate::jetstream::NatsServer,
    target: Target,
    event_bytes: usize,
    params: &Params,
) -> anyhow::Result<Tally> {
    use async_nats::jetstream::consumer::{push, DeliverPolicy};
    use futures::StreamExt;
    use std::collections::VecDeque;

    let (client, js) = server.connect_with_client().await?;
    let subject = crate::jetstream::subject(READ_STREAM);
    let payload = append_payload(1, event_bytes);
    let total = params.read_prefill_events.div_ceil(PREFILL_BATCH) * PREFILL_BATCH;
    let mut acks = VecDeque::with_capacity(JS_PREFILL_WINDOW);
    for _ in 0..total {
        if acks.len() >= JS_PREFILL_WINDOW {
            let ack: async_nats::jetstream::context::PublishAckFuture =
                acks.pop_front().expect("non-empty");
            ack.await.map_err(|e| anyhow::anyhow!("prefill: {e}"))?;
        }
        acks.push_back(
            js.publish(subject.clone(), payload.clone())
                .await
                .map_err(|e| anyhow::anyhow!("prefill: {e}"))?,
        );
    }
    for ack in acks {
        ack.await.map_err(|e| anyhow::anyhow!("prefill: {e}"))?;
    }
    let stream = js
        .get_stream(crate::jetstream::STREAM_NAME)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let page = params.read_page.max(1);
    let window = Window::start(params.warmup, params.measure);
    let mut tally = Tally::default();
    let mut passes = 0;
    while !window.is_over() && passes < MAX_REQUESTS_PER_CONNECTION {
        passes += 1;
        let filter_subject = match target {
            Target::Stream => subject.clone(),
            Target::All => String::new(),
        };
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                filter_subject,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating a consumer: {e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("consuming: {e}"))?;
        let mut received = 0;
        let mut page_started = Instant::now();
        while received < total && !window.is_over() {
            let next = tokio::time::timeout(
                std::time::Duration::from_millis(crate::esdb::client::REPLY_TIMEOUT_MS),
                messages.next(),
            )
            .await;
            match next {
                Ok(Some(Ok(_message))) => {
                    received += 1;
                    if received % page == 0 || received == total {
                        let in_page = if received % page == 0 {
                            page
                        } else {
                            received % page
                        } as u64;
                        if window.counts(page_started) {
                            tally.events += in_page;
                            tally.data_bytes += in_page * event_bytes as u64;
                            tally.record_latency(page_started);
                        }
                        page_started = Instant::now();
                    }
                }
                Ok(Some(Err(e))) => {
                    tally.error(e.to_string());
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    tally.error("no message from the consumer in time");
                    break;
                }
            }
        }
    }
    Ok(tally)
}
