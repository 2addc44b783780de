//! What one run of one workload measured: counts, bytes and a latency histogram.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram records, in microseconds (a slower request is clamped here).
pub const MAX_LATENCY_US: u64 = 60_000_000;
/// Significant decimal digits the histogram keeps (3: values within 0.1%).
const HISTOGRAM_DIGITS: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, HISTOGRAM_DIGITS).expect("valid bounds")
}

/// The measuring window of a run: a warm-up whose operations are not counted, then the
/// measured part. Every worker checks the same clock so counts line up.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
}

impl Window {
    pub fn start(warmup: Duration, measure: Duration) -> Window {
        let measure_from = Instant::now() + warmup;
        Window {
            measure_from,
            end: measure_from + measure,
        }
    }

    pub fn is_over(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Whether an operation that started at `sent` belongs to the measured part.
    pub fn counts(&self, sent: Instant) -> bool {
        sent >= self.measure_from && sent < self.end
    }
}

/// One worker's (or, merged, one run's) tally.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Events written or read successfully.
    pub events: u64,
    /// `data` bytes of those events (what the user stored), not wire bytes.
    pub data_bytes: u64,
    /// Requests answered with an error other than an expected conflict.
    pub errors: u64,
    /// Optimistic-concurrency rejections (only the OCC workload expects them).
    pub conflicts: u64,
    /// Request latency, send to reply, in microseconds.
    pub latency_us: Histogram<u64>,
    /// The first error seen, to report.
    pub first_error: Option<String>,
    /// What else the table's notes should say about this run (e.g. a pacer's achieved rate).
    pub note: Option<String>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            events: 0,
            data_bytes: 0,
            errors: 0,
            conflicts: 0,
            latency_us: new_histogram(),
            first_error: None,
            note: None,
        }
    }
}

impl Tally {
    pub fn record_latency(&mut self, sent: Instant) {
        let us = (sent.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latency_us.saturating_record(us);
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message.into());
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.events += other.events;
        self.data_bytes += other.data_bytes;
        self.errors += other.errors;
        self.conflicts += other.conflicts;
        self.latency_us
            .add(&other.latency_us)
            .expect("same histogram bounds");
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        if self.note.is_none() {
            self.note.clone_from(&other.note);
        }
    }
}

/// A run's figures, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub events_per_s: f64,
    pub mb_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub requests: u64,
    pub errors: u64,
    pub conflicts: u64,
    pub first_error: Option<String>,
    pub note: Option<String>,
    /// The latency CDF as (microseconds, fraction at or below) points, for plots.
    pub latency_cdf: Vec<(u64, f64)>,
}

/// Points of the latency CDF kept per run.
const CDF_POINTS: usize = 60;

impl Figures {
    pub fn from_tally(tally: &Tally, measured: Duration) -> Figures {
        let secs = measured.as_secs_f64().max(1e-9);
        let h = &tally.latency_us;
        let latency_cdf = if h.is_empty() {
            Vec::new()
        } else {
            // Evenly spaced up to p90, then denser into the tail (1 - 10^-k up to p99.99).
            let body = (0..CDF_POINTS / 2).map(|i| 0.9 * i as f64 / (CDF_POINTS / 2) as f64);
            let tail = (0..=CDF_POINTS / 2)
                .map(|i| 1.0 - 10f64.powf(-1.0 - 3.0 * i as f64 / (CDF_POINTS / 2) as f64));
            body.chain(tail)
                .map(|q| (h.value_at_quantile(q), q))
                .collect()
        };
        Figures {
            events_per_s: tally.events as f64 / secs,
            mb_per_s: tally.data_bytes as f64 / secs / 1e6,
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            requests: h.len(),
            errors: tally.errors,
            conflicts: tally.conflicts,
            first_error: tally.first_error.clone(),
            note: tally.note.clone(),
            latency_cdf,
        }
    }
}
