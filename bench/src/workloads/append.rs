//! Appends: one event or a batch per request, each connection to its own stream, expected
//! version `any`, with `window` requests in flight per connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use esdb_protocol::{ExpectedVersion, Reply, Request};

use crate::esdb::client::{encode, Conn};
use crate::measure::{Tally, Window};
use crate::payload::append_payload;
use crate::workloads::{Params, MAX_REQUESTS_PER_CONNECTION};

pub struct AppendLoad {
    pub conns: usize,
    pub window: usize,
    pub batch: usize,
    pub event_bytes: usize,
}

pub async fn esdb(addr: SocketAddr, load: &AppendLoad, params: &Params) -> anyhow::Result<Tally> {
    let mut conns = Vec::with_capacity(load.conns);
    for i in 0..load.conns {
        let mut conn = Conn::connect(addr).await?;
        if params.encrypt_streams {
            let stream = format!("s-{i}");
            match conn.call(&Request::Encrypt { stream }).await? {
                Reply::Ok => {}
                other => anyhow::bail!("ENCRYPT s-{i}: {other:?}"),
            }
        }
        conns.push(conn);
    }
    let window = Window::start(params.warmup, params.measure);
    let payload = append_payload(load.batch, load.event_bytes);
    let mut tasks = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        let request = encode(&Request::Append {
            stream: format!("s-{i}"),
            expected: ExpectedVersion::Any,
            payload: payload.clone(),
        });
        let (depth, batch, bytes) = (load.window, load.batch as u64, load.event_bytes as u64);
        tasks.push(tokio::spawn(async move {
            esdb_connection(conn, request, depth, batch, bytes, window).await
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        total.merge(&task.await??);
    }
    Ok(total)
}

async fn esdb_connection(
    mut conn: Conn,
    request: bytes::Bytes,
    depth: usize,
    batch: u64,
    event_bytes: u64,
    window: Window,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(depth);
    let mut sent: u64 = 0;
    let mut out = Vec::with_capacity(request.len() * depth);
    loop {
        // Refill the window in one write.
        out.clear();
        while in_flight.len() < depth && sent < MAX_REQUESTS_PER_CONNECTION && !window.is_over() {
            out.extend_from_slice(&request);
            in_flight.push_back(Instant::now());
            sent += 1;
        }
        if !out.is_empty() {
            conn.send_raw(&out).await?;
        }
        if in_flight.is_empty() {
            return Ok(tally);
        }
        let mut reply = Some(conn.recv().await?);
        while let Some(r) = reply {
            let started = in_flight.pop_front().expect("a reply answers a request");
            let counted = window.counts(started);
            match r {
                Reply::Appended { .. } if counted => {
                    tally.events += batch;
                    tally.data_bytes += batch * event_bytes;
                    tally.record_latency(started);
                }
                Reply::Appended { .. } => {}
                other => tally.error(format!("{other:?}")),
            }
            reply = if in_flight.is_empty() {
                None
            } else {
                conn.buffered()?
            };
        }
    }
}

#[cfg(feature = "nats")]
pub async fn jetstream(
    server: &crate::jetstream::NatsServer,
    load: &AppendLoad,
    params: &Params,
) -> anyhow::Result<Tally> {
    let payload = append_payload(1, load.event_bytes);
    let mut contexts = Vec::with_capacity(load.conns);
    for _ in 0..load.conns {
        contexts.push(server.connect().await?);
    }
    let window = Window::start(params.warmup, params.measure);
    let mut tasks = Vec::new();
    for (i, js) in contexts.into_iter().enumerate() {
        let subject = crate::jetstream::subject(&format!("s-{i}"));
        let payload = payload.clone();
        let (depth, batch, bytes) = (load.window, load.batch, load.event_bytes as u64);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut in_flight = VecDeque::with_capacity(depth);
            let mut sent: u64 = 0;
            loop {
                while in_flight.len() < depth
                    && sent < MAX_REQUESTS_PER_CONNECTION
                    && !window.is_over()
                {
                    // A "batch" is `batch` publishes whose acks are all awaited: JetStream 2.9
                    // has no atomic multi-message publish.
                    let started = Instant::now();
                    let mut acks = Vec::with_capacity(batch);
                    for _ in 0..batch {
                        acks.push(js.publish(subject.clone(), payload.clone()).await?);
                    }
                    in_flight.push_back((started, acks));
                    sent += 1;
                }
                let Some((started, acks)) = in_flight.pop_front() else {
                    return anyhow::Ok(tally);
                };
                let mut failed = None;
                for ack in acks {
                    if let Err(e) = ack.await {
                        failed = Some(e.to_string());
                    }
                }
                match failed {
                    Some(e) => tally.error(e),
                    None if window.counts(started) => {
                        tally.events += batch as u64;
                        tally.data_bytes += batch as u64 * bytes;
                        tally.record_latency(started);
                    }
                    None => {}
                }
            }
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        total.merge(&task.await??);
    }
    Ok(total)
}
