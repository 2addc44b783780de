//! The workloads: what each one sends, for esdb and for JetStream, in one file per family.
//!
//! - [`append`]: single-event appends (closed loop or pipelined) and batched appends.
//! - [`occ`]: appends with exact expected versions over Zipf-distributed streams.
//! - [`read`]: one stream forward in pages, and `$all`.
//! - [`subscribe`]: append-to-delivery latency at a paced rate, to one or many subscribers.
//! - [`scavenge`]: appends while a scavenge reclaims a deleted stream (esdb only).

pub mod append;
pub mod occ;
pub mod read;
pub mod scavenge;
pub mod subscribe;

use std::time::Duration;

use serde::Serialize;

/// What a workload does.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// `conns` connections, each appending `batch` events per request to its own stream with
    /// expected `any`, keeping `window` requests in flight (1: wait for each reply).
    Append {
        conns: usize,
        window: usize,
        batch: usize,
    },
    /// `conns` connections appending one event with an exact expected version to a stream
    /// drawn from a Zipf distribution over `streams`, counting conflicts.
    Occ { conns: usize, streams: usize },
    /// One connection reading one prefilled stream forward, page after page.
    ReadStream,
    /// One connection reading `$all` forward, page after page.
    ReadAll,
    /// `subscribers` subscriptions to `$all` from the end; one writer appending single events
    /// at `rate_per_s` (paced); latency from append sent to event received.
    Subscribe { rate_per_s: u64, subscribers: usize },
    /// `read_prefill_events` events of `event_bytes` written to a stream that is then
    /// hard-deleted; `SCAVENGE`, while one connection appends single 100 B events.
    Scavenge,
}

impl Kind {
    /// Workloads without a JetStream counterpart.
    pub fn esdb_only(&self) -> bool {
        matches!(self, Kind::Scavenge)
    }
}

fn scavenge(event_bytes: usize) -> Spec {
    Spec {
        id: format!("scavenge-s{event_bytes}"),
        title: format!(
            "scavenge a deleted stream of {}-events while appending 1 event, 1 conn",
            size_label(event_bytes)
        ),
        kind: Kind::Scavenge,
        event_bytes,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    /// Short stable id, e.g. `append-c64-w1-b1-s100`.
    pub id: String,
    /// What a person reads in the table.
    pub title: String,
    pub kind: Kind,
    /// Size of each event's `data`, in bytes.
    pub event_bytes: usize,
}

/// Knobs shared by every workload of a run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Params {
    pub warmup: Duration,
    pub measure: Duration,
    /// Events written before a read workload starts.
    pub read_prefill_events: usize,
    /// Events per read request (esdb page size; JetStream latency is timed per this many).
    pub read_page: usize,
    /// The append workloads `ENCRYPT` their streams first (the server has a master key).
    pub encrypt_streams: bool,
}

/// Most requests one connection sends in one run, whatever the duration: a bound on every loop.
pub const MAX_REQUESTS_PER_CONNECTION: u64 = 100_000_000;

pub fn append(conns: usize, window: usize, batch: usize, event_bytes: usize) -> Spec {
    let title = match (window, batch) {
        (1, 1) => format!("append 1 event, {conns} conn, wait each"),
        (_, 1) => format!("append 1 event, {conns} conn, pipelined ×{window}"),
        _ => format!("append {batch} events/APPEND, {conns} conn"),
    };
    Spec {
        id: format!("append-c{conns}-w{window}-b{batch}-s{event_bytes}"),
        title: format!("{title}, {}", size_label(event_bytes)),
        kind: Kind::Append {
            conns,
            window,
            batch,
        },
        event_bytes,
    }
}

pub fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// Connection counts of the single-append sweep (and of the throughput plot).
pub const CONNECTION_SWEEP: [usize; 4] = [1, 16, 64, 256];
/// Connections for batched appends.
pub const BATCH_CONNS: usize = 16;
/// Requests in flight per connection in the pipelined variant.
pub const PIPELINE_WINDOW: usize = 64;
/// Streams the OCC workload spreads over.
pub const OCC_STREAMS: usize = 10_000;
/// Connections of the OCC workload.
pub const OCC_CONNS: usize = 64;
/// Append rate of the subscription workloads (the "at a fixed rate of 10k events/s").
pub const SUBSCRIBE_RATE_PER_S: u64 = 10_000;
/// Subscribers of the fan-out workload.
pub const FAN_OUT_SUBSCRIBERS: usize = 100;

fn subscribe(rate_per_s: u64, subscribers: usize) -> Spec {
    Spec {
        id: format!("sub-r{rate_per_s}-n{subscribers}-s100"),
        title: format!(
            "subscription $all, append → delivery, {} events/s paced, {subscribers} subscriber{}, 100 B",
            if rate_per_s >= 1000 && rate_per_s.is_multiple_of(1000) {
                format!("{}k", rate_per_s / 1000)
            } else {
                rate_per_s.to_string()
            },
            if subscribers == 1 { "" } else { "s" }
        ),
        kind: Kind::Subscribe {
            rate_per_s,
            subscribers,
        },
        event_bytes: 100,
    }
}

/// Every workload of `esdb-bench all`, in run order.
pub fn full_suite() -> Vec<Spec> {
    let mut specs = Vec::new();
    for conns in CONNECTION_SWEEP {
        specs.push(append(conns, 1, 1, 100));
    }
    for size in [1024, 10 * 1024] {
        specs.push(append(64, 1, 1, size));
    }
    specs.push(append(1, PIPELINE_WINDOW, 1, 100));
    specs.push(append(16, PIPELINE_WINDOW, 1, 100));
    for size in [100, 1024, 10 * 1024] {
        specs.push(append(BATCH_CONNS, 1, 10, size));
    }
    specs.push(append(BATCH_CONNS, 1, 100, 100));
    specs.push(Spec {
        id: format!("occ-c{OCC_CONNS}-z{OCC_STREAMS}-s100"),
        title: format!(
            "append exact version, Zipf over {OCC_STREAMS} streams, {OCC_CONNS} conn, 100 B"
        ),
        kind: Kind::Occ {
            conns: OCC_CONNS,
            streams: OCC_STREAMS,
        },
        event_bytes: 100,
    });
    specs.push(Spec {
        id: "read-stream-s100".into(),
        title: "read one stream forward, 100 B".into(),
        kind: Kind::ReadStream,
        event_bytes: 100,
    });
    specs.push(Spec {
        id: "read-all-s100".into(),
        title: "read $all forward, 100 B".into(),
        kind: Kind::ReadAll,
        event_bytes: 100,
    });
    specs.push(subscribe(SUBSCRIBE_RATE_PER_S, 1));
    specs.push(subscribe(SUBSCRIBE_RATE_PER_S, FAN_OUT_SUBSCRIBERS));
    specs.push(scavenge(1024));
    specs
}

/// A few small workloads for `esdb-bench smoke`: every esdb code path, briefly.
pub fn smoke_suite() -> Vec<Spec> {
    let mut specs = vec![
        append(1, 1, 1, 100),
        append(4, 8, 1, 1024),
        append(2, 1, 10, 100),
    ];
    specs.push(Spec {
        id: "occ-c4-z100-s100".into(),
        title: "append exact version, Zipf over 100 streams, 4 conn, 100 B".into(),
        kind: Kind::Occ {
            conns: 4,
            streams: 100,
        },
        event_bytes: 100,
    });
    for (id, kind) in [
        ("read-stream", Kind::ReadStream),
        ("read-all", Kind::ReadAll),
    ] {
        specs.push(Spec {
            id: id.into(),
            title: id.into(),
            kind,
            event_bytes: 100,
        });
    }
    // A few hundred events to two subscribers: every one must arrive, in order (a gap, a
    // duplicate, a reordering or a missing event is an error, and errors fail the smoke run).
    specs.push(subscribe(1000, 2));
    specs.push(scavenge(1024));
    specs
}
