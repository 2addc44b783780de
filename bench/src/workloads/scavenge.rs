//! A scavenge while appends run: a prefilled stream is hard-deleted, `SCAVENGE` starts, and
//! one connection appends single events (waiting for each) until the window ends. The row's
//! events/s and latency are the appends'; its note gives the scavenge's reclaim rate (bytes of
//! records and index entries removed per second, from `SCAVENGE STATUS`). esdb only: JetStream
//! has no counterpart (its retention deletes as it goes).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use esdb_protocol::{ExpectedVersion, Reply, Request};

use crate::esdb::client::{encode, Conn};
use crate::measure::{Tally, Window};
use crate::payload::append_payload;
use crate::workloads::{Params, MAX_REQUESTS_PER_CONNECTION};

/// Events per prefill `APPEND`.
const PREFILL_BATCH: usize = 100;
/// Between two `SCAVENGE STATUS` polls.
const POLL_MS: u64 = 20;
/// The stream the scavenge removes.
const GONE_STREAM: &str = "scavenged";

async fn prefill(conn: &mut Conn, events: usize, event_bytes: usize) -> anyhow::Result<()> {
    let request = encode(&Request::Append {
        stream: GONE_STREAM.into(),
        expected: ExpectedVersion::Any,
        payload: append_payload(PREFILL_BATCH, event_bytes),
    });
    for _ in 0..events.div_ceil(PREFILL_BATCH) {
        conn.send_raw(&request).await?;
        match conn.recv().await? {
            Reply::Appended { .. } => {}
            other => anyhow::bail!("prefill failed: {other:?}"),
        }
    }
    let delete = Request::Delete {
        stream: GONE_STREAM.into(),
        expected: ExpectedVersion::Any,
        hard: true,
    };
    match conn.call(&delete).await? {
        Reply::Ok => Ok(()),
        other => anyhow::bail!("hard delete failed: {other:?}"),
    }
}

async fn scavenge_state(conn: &mut Conn, status: bool) -> anyhow::Result<serde_json::Value> {
    match conn.call(&Request::Scavenge { status }).await? {
        Reply::Scavenge { body } => Ok(serde_json::from_slice(&body)?),
        other => anyhow::bail!("SCAVENGE failed: {other:?}"),
    }
}

pub async fn esdb(addr: SocketAddr, event_bytes: usize, params: &Params) -> anyhow::Result<Tally> {
    let mut control = Conn::connect(addr).await?;
    prefill(&mut control, params.read_prefill_events, event_bytes).await?;
    let mut appender = Conn::connect(addr).await?;
    let window = Window::start(params.warmup, params.measure);
    let appends = tokio::spawn(async move {
        let request = encode(&Request::Append {
            stream: "live".into(),
            expected: ExpectedVersion::Any,
            payload: append_payload(1, 100),
        });
        let mut tally = Tally::default();
        let mut sent = 0;
        while !window.is_over() && sent < MAX_REQUESTS_PER_CONNECTION {
            sent += 1;
            let started = Instant::now();
            appender.send_raw(&request).await?;
            match appender.recv().await? {
                Reply::Appended { .. } if window.counts(started) => {
                    tally.events += 1;
                    tally.data_bytes += 100;
                    tally.record_latency(started);
                }
                Reply::Appended { .. } => {}
                other => tally.error(format!("{other:?}")),
            }
        }
        anyhow::Ok(tally)
    });
    // The scavenge starts once the appends are being measured.
    tokio::time::sleep(params.warmup).await;
    let started = Instant::now();
    let mut state = scavenge_state(&mut control, false).await?;
    while state["state"] == "running" && !window.is_over() {
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        state = scavenge_state(&mut control, true).await?;
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-6);
    let mut tally = appends.await??;
    let bytes = state["bytes_reclaimed"].as_u64().unwrap_or(0);
    tally.note = Some(format!(
        "scavenge {}: {} events, {:.1} MB reclaimed in {:.2} s = {:.1} MB/s",
        state["state"].as_str().unwrap_or("?"),
        state["events_removed"],
        bytes as f64 / 1e6,
        elapsed,
        bytes as f64 / 1e6 / elapsed
    ));
    if bytes == 0 {
        tally.error(format!("the scavenge reclaimed nothing: {state}"));
    }
    Ok(tally)
}
