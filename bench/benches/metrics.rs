//! What the metrics cost on the append path. `cargo bench -p esdb-bench --bench metrics`.
//!
//! The server cannot run with metrics switched off, so this measures the metric work itself,
//! exactly as the append path does it, against doing nothing:
//! - `per_append`: what each APPEND request does (clone the store's handles, count the request,
//!   read the clock at receipt and at reply, observe the latency histogram);
//! - `per_batch`: what the writer does once per group commit (batch-size and commit-time
//!   histograms, event/byte/conflict counters, last position), however many appends it holds.
//!
//! Divide by the measured time of an append (bench/README.md) for the relative cost.

use std::time::Instant;

use divan::Bencher;

fn main() {
    divan::main();
}

#[divan::bench]
fn per_append(bencher: Bencher) {
    let metrics = esdb::metrics::metrics().store("bench-metrics");
    bencher.bench_local(|| {
        let metrics = divan::black_box(&metrics).clone();
        metrics.append_requests.inc();
        let started = Instant::now();
        metrics
            .append_latency
            .observe(started.elapsed().as_secs_f64());
    });
}

#[divan::bench]
fn per_batch(bencher: Bencher) {
    let metrics = esdb::metrics::metrics().store("bench-metrics");
    bencher.bench_local(|| {
        let started = Instant::now();
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.batch_commands.observe(divan::black_box(64.0));
        metrics.batch_events.observe(divan::black_box(64.0));
        metrics.append_events.inc_by(divan::black_box(64));
        metrics.append_bytes.inc_by(divan::black_box(6400));
        metrics.append_conflicts.inc_by(divan::black_box(0));
        metrics.last_position.set(divan::black_box(1_000));
    });
}

#[divan::bench]
fn nothing(bencher: Bencher) {
    bencher.bench_local(|| divan::black_box(0u64));
}
