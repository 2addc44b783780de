//! The nemesis harness in short form (CI): three real `esdb` processes, each in its own network
//! namespace on a bridge, under concurrent writers (exact expected versions), `after` readers
//! and a subscriber, through a few rounds of faults; after each round the checker must find no
//! violation (bench/src/nemesis/check.rs: acknowledged appends present once, in one order, on
//! every node; no expected version accepted twice; gapless positions; `after` reads never older
//! than the token; the subscriber saw everything once, in order). `esdb-bench nemesis` runs
//! the same harness for as many rounds as asked.
//!
//! Needs root (`ip netns`); skipped with a message when namespaces cannot be made.

#[path = "../bench/src/nemesis/mod.rs"]
#[allow(dead_code)]
mod nemesis;

use nemesis::{Config, Kind};

fn short_run(kinds: Vec<Kind>) {
    if !nemesis::available() {
        eprintln!("skipped: cannot create network namespaces (needs root)");
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let history = data.path().join("history.jsonl");
    let config = Config {
        esdb_bin: env!("CARGO_BIN_EXE_esdb").into(),
        rounds: kinds.len(),
        kinds,
        writers: 4,
        streams: 3,
        data_root: data.path().to_owned(),
        history: Some(history.clone()),
    };
    let reports = nemesis::run(&config, &mut |report| eprintln!("{report}")).expect("harness");
    assert_eq!(reports.len(), config.rounds);
    for report in &reports {
        assert!(
            report.violations.is_empty(),
            "round {} ({}): {:#?}",
            report.round,
            report.kind.name(),
            report.violations
        );
        assert!(
            report.acknowledged > 0,
            "round {}: no write acknowledged",
            report.round
        );
        assert!(
            report.reads > 0,
            "round {}: no read with after",
            report.round
        );
    }
    // The history holds an invoke and a completion for every operation, with times.
    let text = std::fs::read_to_string(&history).expect("history");
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let count = |kind: &str, f: &str| {
        entries
            .iter()
            .filter(|e| e["type"] == kind && e["f"] == f)
            .count()
    };
    let completed = count("ok", "append") + count("fail", "append") + count("info", "append");
    assert_eq!(count("invoke", "append"), completed);
    assert!(entries.iter().all(|e| e["time_ns"].is_u64()));
}

#[test]
fn a_killed_leader_then_a_partitioned_one_lose_no_acknowledged_write() {
    short_run(vec![Kind::KillLeader, Kind::PartitionLeader]);
}

#[test]
fn a_bridge_partition_and_delays_keep_one_order_on_every_node() {
    short_run(vec![Kind::Bridge, Kind::Delay]);
}

/// The checker is not a rubber stamp: a lost acknowledged append, an event stored twice, an
/// expected version accepted twice, a stale `after` read and a subscriber that skipped an
/// event are each reported.
#[test]
fn the_checker_reports_lost_duplicated_and_stale_events() {
    use nemesis::check::{check, Record};
    use nemesis::workload::{AfterRead, Attempt, Expected, Outcome, SubscriberLog};
    let record = |position: u64, id: &str, version: u64| Record {
        position,
        event_id: id.into(),
        stream: "s".into(),
        version,
    };
    let acked = |id: &str, expected: Expected, version: u64, position: u64| Attempt {
        event_id: id.into(),
        stream: "s".into(),
        expected,
        node: 1,
        invoked_ns: 0,
        completed_ns: 1,
        outcome: Outcome::Ok { version, position },
    };
    let attempts = vec![
        acked("a", Expected::NoStream, 0, 0),
        acked("b", Expected::Exact(0), 1, 1),
        acked("c", Expected::Exact(0), 1, 2),
    ];
    let good_log = vec![record(0, "a", 0), record(1, "b", 1)];
    let subscriber = |ids: &[(u64, &str)]| SubscriberLog {
        seen: ids.iter().map(|(p, id)| (*p, id.to_string())).collect(),
        ..SubscriberLog::default()
    };
    // The honest history (without "c") passes.
    let sub_ok = subscriber(&[(0, "a"), (1, "b")]);
    assert_eq!(
        check(&good_log, &attempts[..2], &[], &sub_ok, 0),
        Vec::<String>::new()
    );
    // "c" acknowledged at the same expected version as "b", and missing.
    let violations = check(&good_log, &attempts, &[], &sub_ok, 0);
    assert!(
        violations
            .iter()
            .any(|v| v.contains("accepted for 2 appends")),
        "{violations:?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v.contains("event c ") && v.contains("missing")),
        "{violations:?}"
    );
    // An event stored twice: a position gap follows and the id repeats.
    let doubled = vec![record(0, "a", 0), record(1, "b", 1), record(2, "b", 2)];
    let violations = check(&doubled, &attempts[..2], &[], &sub_ok, 0);
    assert!(
        violations.iter().any(|v| v.contains("twice")),
        "{violations:?}"
    );
    // A read after the token that found someone else's (older) event.
    let stale = AfterRead {
        node: 2,
        token: 1,
        position: 1,
        own_event_id: "b".into(),
        found: Some(String::new()),
    };
    let violations = check(&good_log, &attempts[..2], &[stale], &sub_ok, 0);
    assert!(
        violations.iter().any(|v| v.contains("READALL 1 after 1")),
        "{violations:?}"
    );
    // A subscriber that missed "a".
    let violations = check(&good_log, &attempts[..2], &[], &subscriber(&[(1, "b")]), 0);
    assert!(
        violations.iter().any(|v| v.contains("subscriber")),
        "{violations:?}"
    );
}
