//! Every Prometheus metric of the server, in one place.
//!
//! Names follow `esdb_<subsystem>_<what>_<unit>`: counters end in `_total`, histograms and
//! gauges end in the unit they measure (`_seconds`, `_bytes`, `_events`, `_position`,
//! `_connections`, `_subscriptions`, …). Labels are bounded sets only: `store` (the configured
//! stores), `transport` (`tcp`, `ws`), `reason`, `code`, `type`; never a stream id.
//!
//! # Cost on the hot path
//! The metric families live in one process-wide [`Metrics`] (a custom [`Registry`], served at
//! `/metrics`). Code on the hot path never looks a label up: it holds pre-resolved handles,
//! [`StoreMetrics`] (made once when a store opens, reached as `store.metrics()`) and
//! [`ConnectionMetrics`] (one per transport). Updating a handle is one atomic add. The writer
//! thread updates the append counters once per group-commit batch, not once per event.
//!
//! # For code that is still to come
//! Subscriptions and snapshots call their handles in [`StoreMetrics::subscriptions`] and
//! [`StoreMetrics::snapshots`], e.g. `store.metrics().subscriptions.events_delivered.inc_by(n)`.
//! Raft metrics (term, leadership, commit and applied index, replication lag per follower)
//! are set by one watcher task per store (`raft::observe`) through [`RaftMetrics`]; peers'
//! reachability by the cluster's pinger ([`Metrics::cluster_peer_up`]).

use std::sync::{Arc, LazyLock};

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

use esdb_protocol::error::ALL_ERROR_CODES;
use esdb_protocol::ErrorCode;

/// Latency buckets: 50 µs to ~6.5 s, doubling (fsync-bound appends sit in the middle).
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets")
}

/// Buckets for counts per batch or lag in positions: 1 to 65536, ×4.
fn count_buckets() -> Vec<f64> {
    exponential_buckets(1.0, 4.0, 9).expect("valid buckets")
}

/// Buckets for snapshot sizes: 256 B to 64 MiB, ×4.
fn size_buckets() -> Vec<f64> {
    exponential_buckets(256.0, 4.0, 10).expect("valid buckets")
}

/// Why a connection ended: the `reason` label of `esdb_connection_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientQuit,
    ProtocolError,
    /// Did not answer the server's PINGs (label `idle`).
    Stale,
    SlowConsumer,
    Shutdown,
    IoError,
    /// Failed or revoked authentication.
    AuthFailed,
}

impl CloseReason {
    pub const ALL: [CloseReason; 7] = [
        CloseReason::ClientQuit,
        CloseReason::ProtocolError,
        CloseReason::Stale,
        CloseReason::SlowConsumer,
        CloseReason::Shutdown,
        CloseReason::IoError,
        CloseReason::AuthFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientQuit => "client_quit",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Stale => "idle",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::IoError => "io_error",
            CloseReason::AuthFailed => "auth_failed",
        }
    }
}

/// How a connection reached the server: the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Ws,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
        }
    }
}

/// Subscription kinds: the `type` label of `esdb_subscription_active_subscriptions` (the
/// selector types, with `$all` apart from single streams).
pub const SUBSCRIPTION_TYPES: [&str; 5] = [
    "stream",
    "all",
    "event_type",
    "event_pattern",
    "event_payload",
];

/// The metric families and their registry. One per process: [`metrics()`].
pub struct Metrics {
    pub registry: Registry,
    append_requests: IntCounterVec,
    append_events: IntCounterVec,
    append_bytes: IntCounterVec,
    append_latency: HistogramVec,
    append_conflicts: IntCounterVec,
    delete_requests: IntCounterVec,
    writer_batch_events: HistogramVec,
    writer_batch_commands: HistogramVec,
    writer_commit_seconds: HistogramVec,
    read_requests: IntCounterVec,
    read_events: IntCounterVec,
    read_latency: HistogramVec,
    connection_open: IntGaugeVec,
    connection_accepted: IntCounterVec,
    connection_closed: IntCounterVec,
    connection_refused: IntCounterVec,
    error_sent: IntCounterVec,
    subscription_active: IntGaugeVec,
    subscription_events_delivered: IntCounterVec,
    subscription_lag: HistogramVec,
    subscription_catchup_fallbacks: IntCounterVec,
    unreadable_events: IntCounterVec,
    corrupt_records: IntCounterVec,
    scrub_records: IntCounterVec,
    scrub_passes: IntCounterVec,
    snapshot_saved: IntCounterVec,
    snapshot_loaded: IntCounterVec,
    snapshot_size: HistogramVec,
    storage_map_size: IntGaugeVec,
    storage_used: IntGaugeVec,
    storage_live: IntGaugeVec,
    storage_last_position: IntGaugeVec,
    scavenge_events: IntCounterVec,
    scavenge_bytes: IntCounterVec,
    /// `esdb_error_sent_total` handles, in the order of `ALL_ERROR_CODES`.
    errors_by_code: Vec<IntCounter>,
    /// Failed authentications (`CONNECT`, HTTP bearer tokens), by transport (src/auth).
    pub auth_failures: IntCounterVec,
    /// Requests refused with `permission_denied`, by the missing permission (src/auth).
    pub permission_denied: IntCounterVec,
    /// Requests refused by a store's quota, by store and limit (src/store/quota.rs).
    quota_refusals: IntCounterVec,
    /// HTTP connections refused at `--max-http-connections` (src/http).
    pub http_connections_refused: IntCounter,
    /// WebSockets the server failed for a bad frame or message, by close code (src/http/ws.rs).
    pub ws_failed: IntCounterVec,
    raft_term: IntGaugeVec,
    raft_is_leader: IntGaugeVec,
    raft_leader_changes: IntCounterVec,
    raft_last_log_index: IntGaugeVec,
    raft_commit_index: IntGaugeVec,
    raft_applied_index: IntGaugeVec,
    raft_replication_lag: IntGaugeVec,
    /// Whether each peer answered its last ping (1) or not (0), by `peer` node id (the
    /// cluster's members: a bounded set).
    pub cluster_peer_up: IntGaugeVec,
    /// State-machine snapshots copied for a follower (src/raft/state_machine.rs), by store.
    pub raft_snapshots_sent: IntCounterVec,
    /// State-machine snapshots received and installed, by store.
    pub raft_snapshots_installed: IntCounterVec,
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new_custom(Some("esdb".into()), None).expect("valid registry");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect(name),
            )
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect(name),
            )
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let opts = HistogramOpts::new(name, help).buckets(buckets);
            register(&r, HistogramVec::new(opts, labels).expect(name))
        };
        let store = &["store"];
        let error_sent = counter(
            "error_sent_total",
            "-ERR replies sent, by error code.",
            &["code"],
        );
        let errors_by_code = ALL_ERROR_CODES
            .iter()
            .map(|code| error_sent.with_label_values(&[code.as_str()]))
            .collect();
        let http_connections_refused = register(
            &r,
            IntCounter::new(
                "http_connection_refused_total",
                "HTTP connections refused at --max-http-connections (answered 503).",
            )
            .expect("http_connection_refused_total"),
        );
        Metrics {
            raft_term: gauge("raft_term", "The current Raft term of the store's group.", store),
            raft_is_leader: gauge(
                "raft_is_leader",
                "1 while this node leads the store's Raft group, else 0.",
                store,
            ),
            raft_leader_changes: counter(
                "raft_leader_changes_total",
                "Times this node saw a new leader of the store's group (elections it observed).",
                store,
            ),
            raft_last_log_index: gauge(
                "raft_last_log_index",
                "The last entry in this node's Raft log (0 when empty).",
                store,
            ),
            raft_commit_index: gauge(
                "raft_commit_index",
                "The last Raft entry this node knows is committed (handed to its store).",
                store,
            ),
            raft_applied_index: gauge(
                "raft_applied_index",
                "The last Raft entry applied and committed to this node's store (LMDB).",
                store,
            ),
            raft_replication_lag: gauge(
                "raft_replication_lag_entries",
                "On the leader: entries of its log each follower does not hold yet, by \
                 follower node id.",
                &["store", "follower"],
            ),
            cluster_peer_up: gauge(
                "cluster_peer_up",
                "1 while a peer answers this node's pings, else 0, by peer node id.",
                &["peer"],
            ),
            raft_snapshots_sent: counter(
                "raft_snapshots_sent_total",
                "Copies of the store made for a follower behind the purged log (snapshot \
                 transfers started).",
                store,
            ),
            raft_snapshots_installed: counter(
                "raft_snapshots_installed_total",
                "Snapshots of the store received from the leader and installed.",
                store,
            ),
            http_connections_refused,
            ws_failed: counter(
                "ws_failed_total",
                "WebSocket connections closed by the server for a bad frame or message, by \
                 close code (1002 protocol error, 1007 invalid UTF-8, 1009 too big).",
                &["code"],
            ),
            auth_failures: counter(
                "auth_failures_total",
                "Failed authentications (wrong or revoked credentials), by transport.",
                &["transport"],
            ),
            permission_denied: counter(
                "permission_denied_total",
                "Requests refused for a missing permission, by permission.",
                &["permission"],
            ),
            quota_refusals: counter(
                "quota_refusals_total",
                "Requests refused by a store's quota (quota_exceeded, rate_limited), by store \
                 and limit.",
                &["store", "limit"],
            ),
            append_requests: counter(
                "append_requests_total",
                "APPEND requests received (well-formed ones, whatever their outcome).",
                store,
            ),
            append_events: counter(
                "append_events_total",
                "Events written by APPEND (idempotent retries write none).",
                store,
            ),
            append_bytes: counter(
                "append_bytes_total",
                "Bytes of event data and metadata written by APPEND.",
                store,
            ),
            append_latency: histogram(
                "append_latency_seconds",
                "APPEND latency, from the request being read to its reply being ready (fsynced).",
                store,
                latency_buckets(),
            ),
            append_conflicts: counter(
                "append_conflicts_total",
                "APPENDs refused because the expected version did not hold (optimistic concurrency).",
                store,
            ),
            delete_requests: counter(
                "delete_requests_total",
                "DELETE requests received.",
                store,
            ),
            writer_batch_events: histogram(
                "writer_batch_events",
                "Events written per group commit (one LMDB transaction, one fsync).",
                store,
                count_buckets(),
            ),
            writer_batch_commands: histogram(
                "writer_batch_commands",
                "Write commands (appends, deletes) per group commit.",
                store,
                count_buckets(),
            ),
            writer_commit_seconds: histogram(
                "writer_commit_seconds",
                "Time of one LMDB commit of the state machine (many log entries each; not on the ack path).",
                store,
                latency_buckets(),
            ),
            read_requests: counter(
                "read_requests_total",
                "Read requests (READ, READALL, READTYPES, VERSION, EXISTS, STREAMS).",
                store,
            ),
            read_events: counter(
                "read_events_total",
                "Events returned by READ, READALL and READTYPES.",
                store,
            ),
            read_latency: histogram(
                "read_latency_seconds",
                "Read latency, from the request being read to its reply being ready.",
                store,
                latency_buckets(),
            ),
            connection_open: gauge(
                "connection_open_connections",
                "Client connections open now.",
                &["transport"],
            ),
            connection_accepted: counter(
                "connection_accepted_total",
                "Client connections accepted (under the connection limit).",
                &["transport"],
            ),
            connection_closed: counter(
                "connection_closed_total",
                "Client connections closed, by reason (client_quit, protocol_error, idle, \
                 slow_consumer, shutdown, io_error).",
                &["transport", "reason"],
            ),
            connection_refused: counter(
                "connection_refused_total",
                "Client connections refused at the connection limit.",
                &["transport"],
            ),
            error_sent,
            subscription_active: gauge(
                "subscription_active_subscriptions",
                "Subscriptions active now (catch-up subscribers and persistent consumers), by \
                 selector type (stream, all, event_type, event_pattern, event_payload).",
                &["store", "type"],
            ),
            subscription_events_delivered: counter(
                "subscription_events_delivered_total",
                "Events delivered to subscribers.",
                store,
            ),
            subscription_lag: histogram(
                "subscription_lag_events",
                "How far behind the head of $all a subscriber is, in positions, observed at \
                 each delivery.",
                store,
                count_buckets(),
            ),
            subscription_catchup_fallbacks: counter(
                "subscription_catchup_fallbacks_total",
                "Live subscribers that fell too far behind and went back to catch-up reads.",
                store,
            ),
            unreadable_events: counter(
                "unreadable_events_total",
                "Stored records a reader could not parse under the JSON rules (written by an \
                 older version or damaged on disk), each reported: an UNREADABLE frame, a park \
                 with the reason, or an AGG error.",
                store,
            ),
            corrupt_records: counter(
                "corrupt_records_total",
                "Stored records found failing their checksum (never served), by who found \
                 them: read (a request, answered -ERR corrupt), scrub (the background \
                 scrubber), apply (a write's duplicate check, which stops the store).",
                &["store", "found_by"],
            ),
            scrub_records: counter(
                "scrub_records_total",
                "Stored records (events and snapshots) the background scrubber has checked.",
                store,
            ),
            scrub_passes: counter(
                "scrub_passes_total",
                "Whole passes of the background scrubber over a store.",
                store,
            ),
            snapshot_saved: counter("snapshot_saved_total", "Snapshots saved.", store),
            snapshot_loaded: counter("snapshot_loaded_total", "Snapshots loaded.", store),
            snapshot_size: histogram(
                "snapshot_size_bytes",
                "Size of saved snapshots.",
                store,
                size_buckets(),
            ),
            storage_map_size: gauge(
                "storage_map_size_bytes",
                "LMDB map size: the most the store can hold.",
                store,
            ),
            storage_used: gauge(
                "storage_used_bytes",
                "Bytes of the LMDB map in use (pages not on the free list).",
                store,
            ),
            storage_live: gauge(
                "storage_live_bytes",
                "Bytes of the pages the store's databases hold; pages below the used high-water \
                 mark but not live are free, reused by later writes (a scavenge frees them).",
                store,
            ),
            scavenge_events: counter(
                "scavenge_events_removed_total",
                "Events removed by scavenges this node's job ran.",
                store,
            ),
            scavenge_bytes: counter(
                "scavenge_reclaimed_bytes_total",
                "Bytes of records and index entries removed by scavenges this node's job ran.",
                store,
            ),
            storage_last_position: gauge(
                "storage_last_position",
                "Position of the newest event in $all (-1 when the store is empty).",
                store,
            ),
            errors_by_code,
            registry: r,
        }
    }

    /// Pre-resolved handles for one store. Cheap to clone; call once per store.
    pub fn store(&self, store: &str) -> Arc<StoreMetrics> {
        let s = &[store];
        Arc::new(StoreMetrics {
            append_requests: self.append_requests.with_label_values(s),
            append_events: self.append_events.with_label_values(s),
            append_bytes: self.append_bytes.with_label_values(s),
            append_latency: self.append_latency.with_label_values(s),
            append_conflicts: self.append_conflicts.with_label_values(s),
            delete_requests: self.delete_requests.with_label_values(s),
            batch_events: self.writer_batch_events.with_label_values(s),
            batch_commands: self.writer_batch_commands.with_label_values(s),
            commit_seconds: self.writer_commit_seconds.with_label_values(s),
            read_requests: self.read_requests.with_label_values(s),
            read_events: self.read_events.with_label_values(s),
            read_latency: self.read_latency.with_label_values(s),
            unreadable_events: self.unreadable_events.with_label_values(s),
            integrity: IntegrityMetrics {
                corrupt_found_by: FoundBy::ALL.map(|by| {
                    self.corrupt_records
                        .with_label_values(&[store, by.as_str()])
                }),
                scrubbed_records: self.scrub_records.with_label_values(s),
                scrub_passes: self.scrub_passes.with_label_values(s),
            },
            map_size_bytes: self.storage_map_size.with_label_values(s),
            used_bytes: self.storage_used.with_label_values(s),
            live_bytes: self.storage_live.with_label_values(s),
            scavenged_events: self.scavenge_events.with_label_values(s),
            scavenged_bytes: self.scavenge_bytes.with_label_values(s),
            last_position: self.storage_last_position.with_label_values(s),
            subscriptions: SubscriptionMetrics {
                active: SUBSCRIPTION_TYPES
                    .map(|kind| self.subscription_active.with_label_values(&[store, kind])),
                events_delivered: self.subscription_events_delivered.with_label_values(s),
                lag_events: self.subscription_lag.with_label_values(s),
                catchup_fallbacks: self.subscription_catchup_fallbacks.with_label_values(s),
            },
            snapshots: SnapshotMetrics {
                saved: self.snapshot_saved.with_label_values(s),
                loaded: self.snapshot_loaded.with_label_values(s),
                size_bytes: self.snapshot_size.with_label_values(s),
            },
        })
    }

    /// Handles for one store's Raft group. Call once per group.
    pub fn raft(&self, store: &str) -> RaftMetrics {
        let s = &[store];
        RaftMetrics {
            store: store.to_owned(),
            term: self.raft_term.with_label_values(s),
            is_leader: self.raft_is_leader.with_label_values(s),
            leader_changes: self.raft_leader_changes.with_label_values(s),
            last_log_index: self.raft_last_log_index.with_label_values(s),
            commit_index: self.raft_commit_index.with_label_values(s),
            applied_index: self.raft_applied_index.with_label_values(s),
            replication_lag: self.raft_replication_lag.clone(),
        }
    }

    /// Pre-resolved handles for one transport.
    pub fn connections(&self, transport: Transport) -> ConnectionMetrics {
        let t = transport.as_str();
        ConnectionMetrics {
            open: self.connection_open.with_label_values(&[t]),
            accepted: self.connection_accepted.with_label_values(&[t]),
            refused: self.connection_refused.with_label_values(&[t]),
            closed: CloseReason::ALL.map(|reason| {
                self.connection_closed
                    .with_label_values(&[t, reason.as_str()])
            }),
        }
    }

    /// Counts one request refused by `store`'s quota `limit` (one of
    /// `crate::store::quota::LIMIT_NAMES`: a bounded label set).
    pub fn quota_refused(&self, store: &str, limit: &str) {
        self.quota_refusals.with_label_values(&[store, limit]).inc();
    }

    /// Counts one `-ERR` sent. No allocation, no lock: a scan of the 16 codes.
    pub fn error_sent(&self, code: ErrorCode) {
        if let Some(index) = ALL_ERROR_CODES.iter().position(|c| *c == code) {
            self.errors_by_code[index].inc();
        } else {
            // A code added to the enum but not to ALL_ERROR_CODES (a test forbids this).
            self.error_sent.with_label_values(&[code.as_str()]).inc();
        }
    }

    /// The registry in the Prometheus text format.
    pub fn encode_text(&self) -> String {
        use prometheus::Encoder;
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("text format is UTF-8")
    }
}

/// Handles for one store: what the hot path touches.
pub struct StoreMetrics {
    /// Records a reader could not parse (reported to the client, never skipped).
    pub unreadable_events: IntCounter,
    pub append_requests: IntCounter,
    pub append_events: IntCounter,
    pub append_bytes: IntCounter,
    pub append_latency: Histogram,
    pub append_conflicts: IntCounter,
    pub delete_requests: IntCounter,
    /// Events per group commit.
    pub batch_events: Histogram,
    pub batch_commands: Histogram,
    pub commit_seconds: Histogram,
    pub read_requests: IntCounter,
    pub read_events: IntCounter,
    pub read_latency: Histogram,
    pub map_size_bytes: IntGauge,
    pub used_bytes: IntGauge,
    /// Bytes of the pages the databases hold (`crate::store::scavenge::live_bytes`).
    pub live_bytes: IntGauge,
    /// Events and bytes removed by the scavenge slices this node proposed.
    pub scavenged_events: IntCounter,
    pub scavenged_bytes: IntCounter,
    pub last_position: IntGauge,
    pub subscriptions: SubscriptionMetrics,
    pub snapshots: SnapshotMetrics,
    pub integrity: IntegrityMetrics,
}

/// Who found a damaged record: the `found_by` label of `esdb_corrupt_records_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    /// A request's read (answered `-ERR corrupt`).
    Read,
    /// The background scrubber.
    Scrub,
    /// An apply's duplicate or idempotency check (the store stops).
    Apply,
}

impl FoundBy {
    pub const ALL: [FoundBy; 3] = [FoundBy::Read, FoundBy::Scrub, FoundBy::Apply];

    pub const fn as_str(self) -> &'static str {
        match self {
            FoundBy::Read => "read",
            FoundBy::Scrub => "scrub",
            FoundBy::Apply => "apply",
        }
    }
}

/// Handles for record checksums of one store (src/store/checksum.rs, src/store/scrub.rs).
pub struct IntegrityMetrics {
    /// Records failing their checksum, in the order of [`FoundBy::ALL`].
    corrupt_found_by: [IntCounter; 3],
    pub scrubbed_records: IntCounter,
    pub scrub_passes: IntCounter,
}

impl IntegrityMetrics {
    /// Counts one damaged record.
    pub fn corrupt(&self, found_by: FoundBy) {
        self.corrupt_found_by[found_by as usize].inc();
    }

    /// Damaged records found so far by `found_by`.
    pub fn corrupt_count(&self, found_by: FoundBy) -> u64 {
        self.corrupt_found_by[found_by as usize].get()
    }
}

/// Handles for the subscription feature of one store.
pub struct SubscriptionMetrics {
    /// Active subscriptions by `type` label, in the order of [`SUBSCRIPTION_TYPES`].
    pub active: [IntGauge; 5],
    /// Add the number of events of each delivery (one `inc_by` per batch delivered).
    pub events_delivered: IntCounter,
    /// Observe `head - delivered position` at each delivery.
    pub lag_events: Histogram,
    /// A live subscriber fell behind and went back to catch-up reads.
    pub catchup_fallbacks: IntCounter,
}

impl SubscriptionMetrics {
    /// Every active subscription of the store, all types.
    pub fn active_total(&self) -> i64 {
        self.active.iter().map(IntGauge::get).sum()
    }

    /// The gauge of a selector type label (one of [`SUBSCRIPTION_TYPES`]).
    pub fn active(&self, kind: &str) -> &IntGauge {
        let index = SUBSCRIPTION_TYPES
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        &self.active[index]
    }
}

/// Handles for the snapshot feature of one store.
pub struct SnapshotMetrics {
    pub saved: IntCounter,
    pub loaded: IntCounter,
    /// Observe the size in bytes of each saved snapshot.
    pub size_bytes: Histogram,
}

/// Handles for one store's Raft group (set by `raft::observe`, off the hot path).
pub struct RaftMetrics {
    store: String,
    pub term: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes: IntCounter,
    pub last_log_index: IntGauge,
    pub commit_index: IntGauge,
    pub applied_index: IntGauge,
    replication_lag: IntGaugeVec,
}

impl RaftMetrics {
    /// A follower's replication lag, in entries (on the leader).
    pub fn set_replication_lag(&self, follower: u64, entries: u64) {
        self.replication_lag
            .with_label_values(&[&self.store, &follower.to_string()])
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Drops a follower's lag (this node no longer leads, or it left the group).
    pub fn forget_replication_lag(&self, follower: u64) {
        let _ = self
            .replication_lag
            .remove_label_values(&[&self.store, &follower.to_string()]);
    }
}

/// Handles for one transport's connections.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    pub accepted: IntCounter,
    pub refused: IntCounter,
    closed: [IntCounter; 7],
}

impl ConnectionMetrics {
    /// A connection was accepted: counts it and its being open.
    pub fn opened(&self) {
        self.accepted.inc();
        self.open.inc();
    }

    pub fn closed(&self, reason: CloseReason) {
        self.open.dec();
        let index = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        self.closed[index].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_a_handle() {
        let m = metrics();
        assert_eq!(m.errors_by_code.len(), ALL_ERROR_CODES.len());
        m.error_sent(ErrorCode::Internal);
        assert!(m
            .encode_text()
            .contains("esdb_error_sent_total{code=\"internal\"} "));
    }
}
