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
