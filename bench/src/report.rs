//! The report: results.json, the markdown table, and the verdict against the issue's targets.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::disk::DiskLimits;
use crate::run::{Backend, Run};
use crate::workloads::{Kind, Params, Spec};

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    /// `df` of the data root: filesystem, size, type.
    pub disk: String,
    /// /proc/loadavg when the run started: other work on the machine shows here.
    pub loadavg_at_start: String,
}

impl Machine {
    pub fn describe(data_root: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        let df = run("df", &["-hT", data_root.to_str().unwrap_or("/")]);
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: run("uname", &["-r"]),
            disk: df
                .lines()
                .last()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub spec: Spec,
    pub runs: Vec<Run>,
}

impl Row {
    pub fn get(&self, backend: Backend) -> Option<&Run> {
        self.runs.iter().find(|r| r.backend == backend)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub date: String,
    pub machine: Machine,
    pub esdb_version: String,
    pub nats_server: Option<String>,
    pub jetstream_sync_always_supported: Option<bool>,
    pub params: Params,
    pub disk: DiskLimits,
    pub rows: Vec<Row>,
    pub targets: Vec<TargetCheck>,
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn find(rows: &[Row], pred: impl Fn(&Spec) -> bool) -> Option<&Row> {
    rows.iter().find(|r| pred(&r.spec))
}

fn esdb_rate(row: Option<&Row>) -> Option<f64> {
    Some(row?.get(Backend::Esdb)?.figures.events_per_s)
}

fn append_row(rows: &[Row], c: usize, w: usize, b: usize, s: usize) -> Option<&Row> {
    find(rows, |spec| {
        matches!(spec.kind, Kind::Append { conns, window, batch } if conns == c && window == w && batch == b)
            && spec.event_bytes == s
    })
}

/// Where esdb stands against each target of the issue.
pub fn check_targets(rows: &[Row], disk: &DiskLimits) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    let row64 = append_row(rows, 64, 1, 1, 100);
    let esdb64 = esdb_rate(row64);
    let js64 = row64
        .and_then(|r| r.get(Backend::JetStream))
        .map(|r| r.figures.events_per_s);
    checks.push(TargetCheck {
        target: "durable single-event appends, 64 conn: ≥ 150k events/s".into(),
        measured: esdb64.map_or("not run".into(), |v| format!("{} events/s", fmt_rate(v))),
        met: esdb64.map(|v| v >= 150_000.0),
    });
    checks.push(TargetCheck {
        target: "… and ahead of JetStream on the same workload".into(),
        measured: match (esdb64, js64) {
            (Some(e), Some(j)) => format!("esdb/JetStream = {:.2}", e / j),
            _ => "JetStream not run".into(),
        },
        met: esdb64.zip(js64).map(|(e, j)| e > j),
    });
    let batch100 = esdb_rate(append_row(rows, crate::workloads::BATCH_CONNS, 1, 100, 100));
    checks.push(TargetCheck {
        target: "batched appends of 100 events: ≥ 1M events/s".into(),
        measured: batch100.map_or("not run".into(), |v| format!("{} events/s", fmt_rate(v))),
        met: batch100.map(|v| v >= 1e6),
    });
    let single = esdb_rate(append_row(rows, 1, 1, 1, 100));
    checks.push(TargetCheck {
        target: "one connection appending sequentially: ≥ 70% of the fdatasync rate".into(),
        measured: single.map_or("not run".into(), |v| {
            format!(
                "{:.0} appends/s = {:.0}% of {:.0} fdatasync/s",
                v,
                100.0 * v / disk.fdatasync_per_s,
                disk.fdatasync_per_s
            )
        }),
        met: single.map(|v| v >= 0.70 * disk.fdatasync_per_s),
    });
    let read = esdb_rate(find(rows, |s| matches!(s.kind, Kind::ReadStream)));
    checks.push(TargetCheck {
        target: "reading one stream: ≥ 5M events/s".into(),
        measured: read.map_or("not run".into(), |v| format!("{} events/s", fmt_rate(v))),
        met: read.map(|v| v >= 5e6),
    });
    let sub = find(rows, |s| {
        matches!(
            s.kind,
            Kind::Subscribe {
                rate_per_s: 10_000,
                subscribers: 1
            }
        )
    })
    .and_then(|r| r.get(Backend::Esdb));
    checks.push(TargetCheck {
        target: "subscription delivery p99 ≤ 1 ms at 10k events/s".into(),
        measured: sub.map_or("not run".into(), |r| {
            format!(
                "p99 {} µs ({} deliveries/s, {} errors)",
                r.figures.p99_us,
                fmt_rate(r.figures.events_per_s),
                r.figures.errors
            )
        }),
        met: sub.map(|r| r.figures.p99_us <= 1000 && r.figures.errors == 0),
    });
    checks
}

pub fn markdown(results: &Results) -> String {
    let backends: Vec<Backend> = {
        let mut b = vec![Backend::Esdb];
        for candidate in [Backend::JetStream, Backend::JetStreamSyncAlways] {
            if results.rows.iter().any(|r| r.get(candidate).is_some()) {
                b.push(candidate);
            }
        }
        b
    };
    let mut md = String::new();
    let m = &results.machine;
    let _ = writeln!(
        md,
        "Run of {} on {} cores of {}, kernel {}, data on `{}`; load average at start: {}. \
         {} s measured after {} s warm-up per workload and backend; each on a fresh server.\n",
        results.date,
        m.cores,
        m.cpu_model,
        m.kernel,
        m.disk,
        m.loadavg_at_start,
        results.params.measure.as_secs_f64(),
        results.params.warmup.as_secs_f64(),
    );
    if let Some(nats) = &results.nats_server {
        let _ = writeln!(
            md,
            "JetStream: {nats}, file storage, default sync (acknowledges before fsync). \
             `sync_interval: always` (fsync before each ack): {}.\n",
            match results.jetstream_sync_always_supported {
                Some(true) => "measured, in its own column",
                _ => "not supported by this nats-server version, so not measured",
            }
        );
    }
    let mut header =
        String::from("| workload | esdb events/s | esdb MB/s | esdb p50 / p99 / p99.9 µs");
    let mut rule = String::from("|---|---:|---:|---:");
    for b in &backends[1..] {
        let _ = write!(
            header,
            " | {} events/s | p50 / p99 / p99.9 µs | esdb / it",
            b.label()
        );
        rule.push_str("|---:|---:|---:");
    }
    header.push_str(" | notes |");
    rule.push_str("|---|");
    let _ = writeln!(md, "{header}\n{rule}");
    for row in &results.rows {
        let esdb = row.get(Backend::Esdb);
        let lat = |r: Option<&Run>| {
            r.map_or("–".into(), |r| {
                format!(
                    "{} / {} / {}",
                    r.figures.p50_us, r.figures.p99_us, r.figures.p999_us
                )
            })
        };
        let _ = write!(
            md,
            "| {} | {} | {} | {}",
            row.spec.title,
            esdb.map_or("–".into(), |r| fmt_rate(r.figures.events_per_s)),
            esdb.map_or("–".into(), |r| format!("{:.1}", r.figures.mb_per_s)),
            lat(esdb)
        );
        let mut notes = Vec::new();
        for b in &backends[1..] {
            let other = row.get(*b);
            let ratio = match (esdb, other) {
                (Some(e), Some(o)) if o.figures.events_per_s > 0.0 => {
                    format!("{:.2}", e.figures.events_per_s / o.figures.events_per_s)
                }
                _ => "–".into(),
            };
            let _ = write!(
                md,
                " | {} | {} | {}",
                other.map_or("–".into(), |r| fmt_rate(r.figures.events_per_s)),
                lat(other),
                ratio
            );
        }
        for run in &row.runs {
            let f = &run.figures;
            if let Some(note) = &f.note {
                notes.push(format!("{}: {note}", run.backend.label()));
            }
            if f.conflicts > 0 {
                notes.push(format!(
                    "{}: {:.1}% conflicts",
                    run.backend.label(),
                    100.0 * f.conflicts as f64 / f.requests.max(1) as f64
                ));
            }
            if f.errors > 0 {
                notes.push(format!(
                    "{}: {} errors ({})",
                    run.backend.label(),
                    f.errors,
                    f.first_error.as_deref().unwrap_or("")
                ));
            }
        }
        let _ = writeln!(md, " | {} |", notes.join("; "));
    }
    let d = &results.disk;
    let _ = writeln!(
        md,
        "\n**The disk's own limit** (same run, same filesystem): {:.0} fdatasync/s \
         (4 KiB overwrite + fdatasync, p50 {} µs, p99 {} µs); sequential write {:.0} MB/s.\n",
        d.fdatasync_per_s, d.fdatasync_p50_us, d.fdatasync_p99_us, d.seq_write_mb_per_s
    );
    if let Some(v) = esdb_rate(append_row(&results.rows, 1, 1, 1, 100)) {
        let _ = writeln!(
            md,
            "- one connection, one event per append, waiting for each: {:.0}/s = {:.0}% of the \
             fdatasync rate (an acknowledged append costs one fdatasync of the Raft log, so 100% \
             is the bound).",
            v,
            100.0 * v / d.fdatasync_per_s
        );
    }
    for row in results
        .rows
        .iter()
        .filter(|r| matches!(r.spec.kind, Kind::Append { batch, .. } if batch > 1))
    {
        if let Some(e) = row.get(Backend::Esdb) {
            let _ = writeln!(
                md,
                "- {}: {:.1} MB/s of event data = {:.1}% of the sequential write bandwidth.",
                row.spec.title,
                e.figures.mb_per_s,
                100.0 * e.figures.mb_per_s / d.seq_write_mb_per_s
            );
        }
    }
    let _ = writeln!(
        md,
        "\n**Targets** (from the issue):\n\n| target | measured | met |\n|---|---|---|"
    );
    for t in &results.targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(md, "| {} | {} | {} |", t.target, t.measured, met);
    }
    md
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
