//! Per-store quotas (multi-tenancy): the most bytes and streams a store may hold, how fast it
//! may be written (events and payload bytes per second, token buckets), and how many
//! connections and subscriptions it may have at once. Set in the config file's `[quotas]`
//! table (a store's own entry, else `"*"`), re-read on SIGHUP.
//!
//! Checked when a request arrives, on the node that received it, never inside `apply`: the
//! quota is configuration, not replicated state, and `apply` must not depend on anything but
//! the log. So the size and stream limits are soft by the appends in flight at once (at most
//! the store's write queue): concurrent appends all see the store below its limit. Rates are
//! per node. A store at its limit refuses writes with `quota_exceeded` (permanent until data is
//! deleted and scavenged or the quota raised) and `rate_limited` (retryable after the wait the
//! message names); reads, deletes and scavenges go on, and other stores are not touched.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The config key whose quota applies to every store without its own entry.
pub const ANY_STORE: &str = "*";

/// One store's limits; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    /// Bytes the store's data may take (LMDB pages in use, `esdb_storage_live_bytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Streams the store may hold (deleted ones included until scavenged: their tombstones
    /// and metadata stay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<u64>,
    /// Events appended per second (a burst of one second's worth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appends_per_sec: Option<u64>,
    /// Event payload bytes (data and metadata) appended per second (a burst of one second's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    /// Connections whose requests go to the store at once (`USE`, `CONNECT {"store":…}`, or
    /// the default store a connection starts in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Subscriptions of every type active on the store at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_subscriptions: Option<u64>,
}

/// The config file's `[quotas]` table: store name (or `"*"`) to limits.
pub type QuotaSection = BTreeMap<String, QuotaLimits>;

/// The limits `section` sets for `store`.
pub fn limits_for(section: &QuotaSection, store: &str) -> QuotaLimits {
    section
        .get(store)
        .or_else(|| section.get(ANY_STORE))
        .copied()
        .unwrap_or_default()
}

/// Checks a `[quotas]` table against the stores served.
pub fn validate(section: &QuotaSection, stores: &[String]) -> Result<(), String> {
    for (name, limits) in section {
        if name != ANY_STORE && !stores.iter().any(|store| store == name) {
            return Err(format!(
                "quotas.{name}: no such store (served: {}; \"*\" for every store)",
                stores.join(", ")
            ));
        }
        let zero = [
            ("appends_per_sec", limits.appends_per_sec),
            ("bytes_per_sec", limits.bytes_per_sec),
        ]
        .into_iter()
        .find(|(_, value)| *value == Some(0));
        if let Some((key, _)) = zero {
            return Err(format!(
                "quotas.{name}.{key} must be at least 1 (leave it out for no limit)"
            ));
        }
    }
    Ok(())
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// A size, count or concurrency limit: retrying the same request will not help until
    /// something is deleted, closed or the quota raised.
    Exceeded(String),
    /// A rate: retrying after the named wait can succeed.
    RateLimited(String),
}

/// A token bucket of one second's burst. A request may take more tokens than are left (the
/// bucket goes into debt), so a request larger than the rate still passes once the bucket is
/// full, and the next ones wait for the debt to be repaid.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(rate_per_sec: u64) -> Bucket {
        Bucket {
            tokens: rate_per_sec as f64,
            refilled: Instant::now(),
        }
    }

    /// Takes `amount` if the bucket is not empty or in debt; else the wait, in ms, until it is.
    fn take(&mut self, rate_per_sec: u64, amount: u64, now: Instant) -> Result<(), u64> {
        let rate = rate_per_sec as f64;
        let elapsed_secs = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed_secs * rate).min(rate);
        self.refilled = now;
        if self.tokens <= 0.0 {
            let wait_ms = ((1.0 - self.tokens) / rate * 1000.0).ceil() as u64;
            return Err(wait_ms.max(1));
        }
        self.tokens -= amount as f64;
        Ok(())
    }
}

/// Counts of refusals by limit, for metrics and `STATS`.
#[derive(Debug, Default)]
struct Refusals {
    by_limit: [AtomicU64; LIMIT_NAMES.len()],
}

/// Names of the limits, as `STATS` and the `esdb_quota_refusals_total{limit}` metric show them.
pub const LIMIT_NAMES: [&str; 6] = [
    "max_bytes",
    "max_streams",
    "appends_per_sec",
    "bytes_per_sec",
    "max_connections",
    "max_subscriptions",
];

/// A store's quota: its limits (replaceable on SIGHUP), buckets and connection count.
#[derive(Debug)]
pub struct Quota {
    store: String,
    limits: RwLock<QuotaLimits>,
    appends: Mutex<Bucket>,
    bytes: Mutex<Bucket>,
    connections: AtomicU64,
    subscriptions: AtomicU64,
    refusals: Refusals,
}

/// What a write asks of the rates: its events and payload bytes.
#[derive(Debug, Clone, Copy)]
pub struct WriteUsage {
    pub events: u64,
    pub payload_bytes: u64,
}

impl Quota {
    pub fn unlimited(store: &str) -> Quota {
        Quota {
            store: store.to_owned(),
            limits: RwLock::new(QuotaLimits::default()),
            appends: Mutex::new(Bucket::full(0)),
            bytes: Mutex::new(Bucket::full(0)),
            connections: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            refusals: Refusals::default(),
        }
    }

    /// The store this quota is for.
    pub fn store(&self) -> &str {
        &self.store
    }

    pub fn limits(&self) -> QuotaLimits {
        *self.limits.read().expect("quota lock")
    }

    /// Replaces the limits; buckets whose rate changed start full at the new rate.
    pub fn set_limits(&self, limits: QuotaLimits) {
        let mut current = self.limits.write().expect("quota lock");
        if current.appends_per_sec != limits.appends_per_sec {
            *self.appends.lock().expect("bucket lock") =
                Bucket::full(limits.appends_per_sec.unwrap_or(0));
        }
        if current.bytes_per_sec != limits.bytes_per_sec {
            *self.bytes.lock().expect("bucket lock") =
                Bucket::full(limits.bytes_per_sec.unwrap_or(0));
        }
        *current = limits;
    }

    fn refuse(&self, limit: usize, refusal: QuotaRefusal) -> QuotaRefusal {
        self.refusals.by_limit[limit].fetch_add(1, Ordering::Relaxed);
        crate::metrics::metrics().quota_refused(&self.store, LIMIT_NAMES[limit]);
        refusal
    }

    /// Whether the rates let `usage` through now; takes its tokens if so. A refused write
    /// takes nothing.
    pub fn check_rates(&self, usage: WriteUsage) -> Result<(), QuotaRefusal> {
        let limits = self.limits();
        let now = Instant::now();
        if let Some(rate) = limits.appends_per_sec {
            let mut bucket = self.appends.lock().expect("bucket lock");
            if let Err(wait_ms) = bucket.take(rate, usage.events, now) {
                return Err(self.refuse(
                    2,
                    QuotaRefusal::RateLimited(format!(
                        "store {} is limited to {rate} appended events per second: retry in \
                         {wait_ms} ms",
                        self.store
                    )),
                ));
            }
        }
        if let Some(rate) = limits.bytes_per_sec {
            let mut bucket = self.bytes.lock().expect("bucket lock");
            if let Err(wait_ms) = bucket.take(rate, usage.payload_bytes, now) {
                // Give back the events' tokens this write will not use.
                if let Some(events_rate) = limits.appends_per_sec {
                    let mut appends = self.appends.lock().expect("bucket lock");
                    appends.tokens = (appends.tokens + usage.events as f64).min(events_rate as f64);
                }
                return Err(self.refuse(
                    3,
                    QuotaRefusal::RateLimited(format!(
                        "store {} is limited to {rate} appended bytes per second: retry in \
                         {wait_ms} ms",
                        self.store
                    )),
                ));
            }
        }
        Ok(())
    }

    /// Whether a store holding `live_bytes` may take more data.
    pub fn check_bytes(&self, live_bytes: u64) -> Result<(), QuotaRefusal> {
        match self.limits().max_bytes {
            Some(max) if live_bytes >= max => Err(self.refuse(
                0,
                QuotaRefusal::Exceeded(format!(
                    "store {} holds {live_bytes} bytes, at its quota of {max} (max_bytes): \
                     delete streams and SCAVENGE, or raise the quota",
                    self.store
                )),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a store holding `streams` streams may create `new_streams` more.
    pub fn check_streams(&self, streams: u64, new_streams: u64) -> Result<(), QuotaRefusal> {
        match self.limits().max_streams {
            Some(max) if new_streams > 0 && streams + new_streams > max => Err(self.refuse(
                1,
                QuotaRefusal::Exceeded(format!(
                    "store {} holds {streams} streams, and its quota is {max} (max_streams): \
                     append to an existing stream, or raise the quota",
                    self.store
                )),
            )),
            _ => Ok(()),
        }
    }

    /// A place for one more subscription, held (by the subscription's task) until dropped.
    pub fn subscribe(self: &Arc<Self>) -> Result<Slot, QuotaRefusal> {
        let max = self.limits().max_subscriptions.unwrap_or(u64::MAX);
        match take_slot(&self.subscriptions, max) {
            Ok(()) => Ok(Slot {
                quota: self.clone(),
                kind: SlotKind::Subscription,
            }),
            Err(now) => Err(self.refuse(
                5,
                QuotaRefusal::Exceeded(format!(
                    "store {} has {now} subscriptions, at its quota of {max} \
                     (max_subscriptions)",
                    self.store
                )),
            )),
        }
    }

    /// A place for one more connection, held until the slot is dropped.
    pub fn connect(self: &Arc<Self>) -> Result<Slot, QuotaRefusal> {
        let max = self.limits().max_connections.unwrap_or(u64::MAX);
        match take_slot(&self.connections, max) {
            Ok(()) => Ok(Slot {
                quota: self.clone(),
                kind: SlotKind::Connection,
            }),
            Err(now) => Err(self.refuse(
                4,
                QuotaRefusal::Exceeded(format!(
                    "store {} has {now} connections, at its quota of {max} (max_connections)",
                    self.store
                )),
            )),
        }
    }

    /// Connections in the store now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    /// `{"limits":{…},"connections":…,"subscriptions":…,"refused":{"<limit>":n,…}}` for `STATS`
    /// and `/stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let refused: serde_json::Map<String, serde_json::Value> = LIMIT_NAMES
            .iter()
            .zip(&self.refusals.by_limit)
            .map(|(name, count)| ((*name).to_owned(), count.load(Ordering::Relaxed).into()))
            .collect();
        serde_json::json!({
            "limits": self.limits(),
            "connections": self.connections(),
            "subscriptions": self.subscriptions.load(Ordering::Acquire),
            "refused": refused,
        })
    }
}

/// Takes one of `max` places in `count`; `Err(count now)` when none is left.
fn take_slot(count: &AtomicU64, max: u64) -> Result<(), u64> {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            (now < max).then_some(now + 1)
        })
        .map(|_| ())
}

#[derive(Debug, Clone, Copy)]
enum SlotKind {
    Connection,
    Subscription,
}

/// One connection or subscription counted against a store's `max_connections` or
/// `max_subscriptions`; released on drop.
#[derive(Debug)]
pub struct Slot {
    quota: Arc<Quota>,
    kind: SlotKind,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let count = match self.kind {
            SlotKind::Connection => &self.quota.connections,
            SlotKind::Subscription => &self.quota.subscriptions,
        };
        let before = count.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a slot was released twice");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_lets_a_burst_through_then_waits_for_its_debt() {
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: 10.0,
            refilled: start,
        };
        assert_eq!(
            bucket.take(10, 25, start),
            Ok(()),
            "a full bucket takes a large write"
        );
        let wait_ms = bucket.take(10, 1, start).unwrap_err();
        assert_eq!(wait_ms, 1600, "15 tokens of debt plus one at 10/s");
        let later = start + Duration::from_millis(1600);
        assert_eq!(bucket.take(10, 1, later), Ok(()));
    }

    #[test]
    fn limits_fall_back_to_the_any_store_entry() {
        let mut section = QuotaSection::new();
        section.insert(
            ANY_STORE.into(),
            QuotaLimits {
                max_streams: Some(5),
                ..Default::default()
            },
        );
        section.insert(
            "orders".into(),
            QuotaLimits {
                max_bytes: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(limits_for(&section, "orders").max_streams, None);
        assert_eq!(limits_for(&section, "billing").max_streams, Some(5));
        let stores = vec!["orders".to_owned()];
        assert!(validate(&section, &stores).is_ok());
        section.insert("nope".into(), QuotaLimits::default());
        assert!(validate(&section, &stores)
            .unwrap_err()
            .contains("no such store"));
    }

    #[test]
    fn connection_slots_are_counted_and_released() {
        let quota = Arc::new(Quota::unlimited("test"));
        quota.set_limits(QuotaLimits {
            max_connections: Some(1),
            ..Default::default()
        });
        let first = quota.connect().expect("room for one");
        assert!(matches!(quota.connect(), Err(QuotaRefusal::Exceeded(_))));
        drop(first);
        assert_eq!(quota.connections(), 0);
        let _second = quota.connect().expect("released");
    }
}
