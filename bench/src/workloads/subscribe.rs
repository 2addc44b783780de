//! Subscriptions: latency from an append being sent to its event arriving at a subscriber, at a
//! fixed (paced, open-loop) append rate, to one subscriber or fanned out to many.
//!
//! - Subscribers subscribe first (esdb: `SUB <sid> <#bytes>` with
//!   `{"type":"stream","selector":"$all","start":"end"}`; JetStream: an ordered push consumer on
//!   the stream, new messages only), so every event appended afterwards must reach each of them.
//! - A pacer thread releases sequence numbers at the fixed rate (a rate limiter sleeping to each
//!   event's due time, not a burst per tick); one writer connection appends each as one event
//!   whose `data` carries the sequence number and the send time (`{"seq":S,"t":T,"p":"…"}`),
//!   without waiting for earlier appends to be acknowledged.
//! - Each subscriber reads the stamp back: latency = receive time − send time, per delivery, in
//!   one HDR histogram across all subscribers; a sequence number other than the next expected
//!   one (a gap, a duplicate, a reordering) or an event never received is an error.
//!
//! events/s in the table is deliveries per second (across all subscribers) received in the
//! measured window; latencies are those of the events sent in it, however late they arrive
//! (subscribers drain for up to [`DRAIN_TIMEOUT_MS`] after the last append). The notes give
//! the writer's achieved append rate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use esdb_protocol::{ExpectedVersion, Reply, Request};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::esdb::client::{Conn, ReplyReader};
use crate::measure::{Tally, Window};
use crate::payload::{stamp_of, stamped_event, MIN_STAMPED_DATA_BYTES};
use crate::workloads::Params;

pub struct SubscribeLoad {
    pub rate_per_s: u64,
    pub subscribers: usize,
    pub event_bytes: usize,
}

/// Events one run appends at most, whatever the rate and duration: a bound on every loop.
pub const MAX_EVENTS_PER_RUN: u64 = 10_000_000;
/// How long, after the last append, subscribers (and the writer's reply reader) may take to
/// receive everything before the run stops waiting and counts what is missing as errors.
pub const DRAIN_TIMEOUT_MS: u64 = 30_000;
/// How often a waiting subscriber looks whether the writer has finished.
const POLL_INTERVAL_MS: u64 = 50;
/// Sequence numbers queued from the pacer to the writer. When full the pacer blocks: the
/// writer cannot keep the rate, and the notes' achieved rate shows it.
const PACER_QUEUE_EVENTS: usize = 65_536;
/// Appends the writer puts in one socket write when several are due at once (the pacer woke
/// late); bounded so one write stays small.
const MAX_APPENDS_PER_WRITE: usize = 64;
/// The stream the writer appends to (subscribers select `$all`).
const STREAM: &str = "sub-0";

/// The run's shared clock: send times travel in event data as µs since `epoch`.
#[derive(Clone, Copy)]
struct Clock {
    epoch: Instant,
}

impl Clock {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn instant(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }
}

/// What the writer has done so far, read by the subscribers to know when they are complete.
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    done: AtomicBool,
}

impl Progress {
    /// `Some(total)` once the writer has finished.
    fn total(&self) -> Option<u64> {
        self.done
            .load(Ordering::Acquire)
            .then(|| self.sent.load(Ordering::Acquire))
    }
}

/// Everything a run's tasks share.
#[derive(Clone)]
struct Shared {
    clock: Clock,
    window: Window,
    progress: Arc<Progress>,
    event_bytes: usize,
}

impl Shared {
    fn new(params: &Params, event_bytes: usize) -> Shared {
        let window = Window::start(params.warmup, params.measure);
        Shared {
            clock: Clock {
                epoch: window.measure_from - params.warmup,
            },
            window,
            progress: Arc::new(Progress::default()),
            event_bytes: event_bytes.max(MIN_STAMPED_DATA_BYTES),
        }
    }

    fn finish_writer(&self, sent: u64) {
        self.progress.sent.store(sent, Ordering::Release);
        self.progress.done.store(true, Ordering::Release);
    }
}

/// One subscriber's bookkeeping: the next sequence number it expects, its latencies, and when
/// it gives up waiting.
struct Delivery {
    name: String,
    next: u64,
    tally: Tally,
    deadline: Option<Instant>,
    shared: Shared,
}

impl Delivery {
    fn new(name: String, shared: &Shared) -> Delivery {
        Delivery {
            name,
            next: 0,
            tally: Tally::default(),
            deadline: None,
            shared: shared.clone(),
        }
    }

    fn on_event(&mut self, body: &[u8]) {
        let Some((seq, sent_us)) = stamp_of(body) else {
            self.tally
                .error(format!("{}: an event without a stamp", self.name));
            return;
        };
        if seq != self.next {
            self.tally.error(format!(
                "{}: expected event {} next, received {seq}",
                self.name, self.next
            ));
        }
        self.next = self.next.max(seq + 1);
        // Throughput counts deliveries received in the window (what the system sustains, even
        // when a backlog builds); latency counts events sent in it, however late they arrive.
        if self.shared.window.counts(Instant::now()) {
            self.tally.events += 1;
            self.tally.data_bytes += self.shared.event_bytes as u64;
        }
        let sent = self.shared.clock.instant(sent_us);
        if self.shared.window.counts(sent) {
            self.tally.record_latency(sent);
        }
    }

    /// Whether this subscriber is done: it has every event the finished writer sent, or it
    /// waited [`DRAIN_TIMEOUT_MS`] for them (what is missing is then an error).
    fn finished(&mut self) -> bool {
        let Some(total) = self.shared.progress.total() else {
            return false;
        };
        if self.next >= total {
            return true;
        }
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + Duration::from_millis(DRAIN_TIMEOUT_MS));
        if Instant::now() >= deadline {
            self.tally.error(format!(
                "{}: received {} of {total} events within {DRAIN_TIMEOUT_MS} ms of the last append",
                self.name, self.next
            ));
            return true;
        }
        false
    }
}

/// Events the pacer releases in a run: the rate over warm-up and measured time.
fn planned_events(rate_per_s: u64, params: &Params) -> u64 {
    let secs = (params.warmup + params.measure).as_secs_f64();
    ((rate_per_s as f64 * secs).ceil() as u64).min(MAX_EVENTS_PER_RUN)
}

/// Releases sequence numbers 0, 1, … each at its due time (`epoch + seq / rate`) on its own
/// thread: `std::thread::sleep` wakes within tens of µs, where tokio's timer rounds to 1 ms and
/// would release ~10 events per tick at 10k/s. Open loop: a late wake releases every event
/// already due. Stops at the end of the measuring window.
fn spawn_pacer(
    rate_per_s: u64,
    total: u64,
    shared: &Shared,
    tx: mpsc::Sender<u64>,
) -> std::thread::JoinHandle<()> {
    let (epoch, end) = (shared.clock.epoch, shared.window.end);
    let period_ns = 1e9 / rate_per_s.max(1) as f64;
    std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            for seq in 0..total {
                let due = epoch + Duration::from_nanos((seq as f64 * period_ns) as u64);
                let now = Instant::now();
                if due >= end {
                    break;
                }
                if due > now {
                    std::thread::sleep(due - now);
                }
                if tx.blocking_send(seq).is_err() {
                    break;
                }
            }
        })
        .expect("spawning the pacer thread")
}

/// The writer's achieved rate, for the notes.
fn writer_note(load: &SubscribeLoad, appended_in_window: u64, params: &Params) -> String {
    format!(
        "appended {:.0}/s (paced at {}/s), {} subscriber{}",
        appended_in_window as f64 / params.measure.as_secs_f64().max(1e-9),
        load.rate_per_s,
        load.subscribers,
        if load.subscribers == 1 { "" } else { "s" }
    )
}

fn sub_request(sid: &str) -> Vec<u8> {
    let options = r#"{"type":"stream","selector":"$all","start":"end"}"#;
    format!("SUB {sid} {}\r\n{options}\r\n", options.len()).into_bytes()
}

pub async fn esdb(
    addr: SocketAddr,
    load: &SubscribeLoad,
    params: &Params,
) -> anyhow::Result<Tally> {
    // Subscribe first: every event appended afterwards must reach every subscriber.
    let mut subscribers = Vec::with_capacity(load.subscribers);
    for i in 0..load.subscribers {
        let mut conn = Conn::connect(addr).await?;
        conn.send_raw(&sub_request(&format!("s{i}"))).await?;
        match conn.recv().await? {
            Reply::Ok => {}
            other => anyhow::bail!("SUB failed: {other:?}"),
        }
        subscribers.push(conn);
    }
    let (replies, write) = Conn::connect(addr).await?.into_split();
    let shared = Shared::new(params, load.event_bytes);
    let mut tasks = Vec::new();
    for (i, conn) in subscribers.into_iter().enumerate() {
        let delivery = Delivery::new(format!("subscriber {i}"), &shared);
        tasks.push(tokio::spawn(esdb_subscriber(conn, delivery)));
    }
    let acks = tokio::spawn(esdb_append_replies(
        replies,
        Delivery::new("writer".into(), &shared),
    ));
    let (tx, rx) = mpsc::channel(PACER_QUEUE_EVENTS);
    let pacer = spawn_pacer(
        load.rate_per_s,
        planned_events(load.rate_per_s, params),
        &shared,
        tx,
    );
    let sent = Arc::new(AtomicU64::new(0));
    let written = esdb_writer(write, rx, &shared, &sent).await;
    shared.finish_writer(sent.load(Ordering::Acquire));
    let _ = pacer.join();
    let appended_in_window = written?;
    let mut total = Tally::default();
    for task in tasks {
        total.merge(&task.await??);
    }
    let writer = acks.await??;
    total.errors += writer.errors;
    if total.first_error.is_none() {
        total.first_error = writer.first_error;
    }
    total.note = Some(writer_note(load, appended_in_window, params));
    Ok(total)
}

/// Appends each released sequence number as one stamped event; returns how many of them were
/// sent inside the measuring window.
async fn esdb_writer(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut seqs: mpsc::Receiver<u64>,
    shared: &Shared,
    sent: &AtomicU64,
) -> anyhow::Result<u64> {
    let mut out = BytesMut::new();
    let mut in_window = 0;
    while let Some(first) = seqs.recv().await {
        out.clear();
        let now_us = shared.clock.now_us();
        let mut next = Some(first);
        let mut n = 0;
        while let Some(seq) = next {
            Request::Append {
                stream: STREAM.into(),
                expected: ExpectedVersion::Any,
                payload: stamped_event(seq, now_us, shared.event_bytes).into(),
            }
            .encode(&mut out);
            n += 1;
            next = if n < MAX_APPENDS_PER_WRITE {
                seqs.try_recv().ok()
            } else {
                None
            };
        }
        write.write_all(&out).await?;
        sent.fetch_add(n as u64, Ordering::AcqRel);
        if shared.window.counts(shared.clock.instant(now_us)) {
            in_window += n as u64;
        }
    }
    Ok(in_window)
}

/// Reads the writer's `APPENDED` replies (any other reply is an error) until every append is
/// answered. Its `Delivery` counts replies in `next`.
async fn esdb_append_replies(
    mut replies: ReplyReader,
    mut answered: Delivery,
) -> anyhow::Result<Tally> {
    let poll = Duration::from_millis(POLL_INTERVAL_MS);
    while !answered.finished() {
        let Ok(reply) = tokio::time::timeout(poll, replies.recv()).await else {
            continue;
        };
        match reply? {
            Reply::Appended { .. } => {}
            other => answered.tally.error(format!("append: {other:?}")),
        }
        answered.next += 1;
    }
    Ok(answered.tally)
}

async fn esdb_subscriber(mut conn: Conn, mut delivery: Delivery) -> anyhow::Result<Tally> {
    let poll = Duration::from_millis(POLL_INTERVAL_MS);
    while !delivery.finished() {
        let Ok(reply) = tokio::time::timeout(poll, conn.recv()).await else {
            continue;
        };
        match reply? {
            Reply::Event { body, .. } => delivery.on_event(&body),
            Reply::Live { .. } => {}
            other => delivery
                .tally
                .error(format!("{}: {other:?}", delivery.name)),
        }
    }
    Ok(delivery.tally)
}

/// Publish acks outstanding between the JetStream writer and its ack reader.
#[cfg(feature = "nats")]
const JS_ACK_QUEUE: usize = 65_536;

#[cfg(feature = "nats")]
pub async fn jetstream(
    server: &crate::jetstream::NatsServer,
    load: &SubscribeLoad,
    params: &Params,
) -> anyhow::Result<Tally> {
    use async_nats::jetstream::consumer::{push, DeliverPolicy};

    // Consumers first, delivering only messages stored after they exist.
    let mut consumers = Vec::with_capacity(load.subscribers);
    for _ in 0..load.subscribers {
        let (client, js) = server.connect_with_client().await?;
        let stream = js
            .get_stream(crate::jetstream::STREAM_NAME)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating a consumer: {e}"))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("consuming: {e}"))?;
        consumers.push((client, messages));
    }
    let js = server.connect().await?;
    let shared = Shared::new(params, load.event_bytes);
    let mut tasks = Vec::new();
    for (i, (client, messages)) in consumers.into_iter().enumerate() {
        let mut delivery = Delivery::new(format!("subscriber {i}"), &shared);
        tasks.push(tokio::spawn(async move {
            use futures::StreamExt;
            let _client = client;
            let mut messages = messages;
            let poll = Duration::from_millis(POLL_INTERVAL_MS);
            while !delivery.finished() {
                match tokio::time::timeout(poll, messages.next()).await {
                    Err(_) => {}
                    Ok(Some(Ok(message))) => delivery.on_event(&message.payload),
                    Ok(Some(Err(e))) => delivery.tally.error(e.to_string()),
                    Ok(None) => {
                        delivery.tally.error("the consumer ended");
                        break;
                    }
                }
            }
            delivery.tally
        }));
    }
    let (ack_tx, mut ack_rx) =
        mpsc::channel::<async_nats::jetstream::context::PublishAckFuture>(JS_ACK_QUEUE);
    let acks = tokio::spawn(async move {
        let mut tally = Tally::default();
        while let Some(ack) = ack_rx.recv().await {
            if let Err(e) = ack.await {
                tally.error(format!("publish: {e}"));
            }
        }
        tally
    });
    let (tx, mut rx) = mpsc::channel(PACER_QUEUE_EVENTS);
    let pacer = spawn_pacer(
        load.rate_per_s,
        planned_events(load.rate_per_s, params),
        &shared,
        tx,
    );
    let subject = crate::jetstream::subject(STREAM);
    let (mut sent, mut in_window) = (0u64, 0u64);
    let mut failed = None;
    while let Some(seq) = rx.recv().await {
        let now_us = shared.clock.now_us();
        let payload = bytes::Bytes::from(stamped_event(seq, now_us, shared.event_bytes));
        match js.publish(subject.clone(), payload).await {
            Ok(ack) => {
                if ack_tx.send(ack).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failed = Some(anyhow::anyhow!("publish: {e}"));
                break;
            }
        }
        sent += 1;
        if shared.window.counts(shared.clock.instant(now_us)) {
            in_window += 1;
        }
    }
    drop(rx);
    shared.finish_writer(sent);
    let _ = pacer.join();
    drop(ack_tx);
    if let Some(e) = failed {
        return Err(e);
    }
    let mut total = Tally::default();
    for task in tasks {
        total.merge(&task.await?);
    }
    let writer = acks.await?;
    total.errors += writer.errors;
    if total.first_error.is_none() {
        total.first_error = writer.first_error;
    }
    total.note = Some(writer_note(load, in_window, params));
    Ok(total)
}
