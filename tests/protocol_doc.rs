//! PROTOCOL.md is the single source of truth; these checks keep it and the code in step.

use esdb_protocol::error::ALL_ERROR_CODES;
use esdb_protocol::limits;

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/PROTOCOL.md");
    std::fs::read_to_string(path).expect("PROTOCOL.md")
}

/// The error table lists exactly the codes the code has, with the same close and retry flags.
#[test]
fn error_table_matches_the_code() {
    let doc = protocol_md();
    let section = doc.split("\n## Errors").nth(1).expect("an Errors section");
    let section = section.split("\n## ").next().unwrap();
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| line.split('|').map(|cell| cell.trim().to_owned()).collect())
        .collect();
    assert_eq!(rows.len(), ALL_ERROR_CODES.len(), "one row per code");
    for (row, code) in rows.iter().zip(ALL_ERROR_CODES) {
        assert_eq!(
            row[1],
            format!("`{}`", code.as_str()),
            "codes in the same order"
        );
        let yes = |flag: bool| if flag { "yes" } else { "no" };
        assert_eq!(
            row[2],
            yes(code.closes_connection()),
            "closes flag of {code}"
        );
        assert_eq!(row[3], yes(code.is_retryable()), "retryable flag of {code}");
    }
}

/// The limits the document states are the ones the code enforces.
#[test]
fn stated_limits_match_the_constants() {
    let doc = protocol_md();
    for (needle, value) in [
        (
            "control line (`max_control_line`) | ",
            limits::MAX_CONTROL_LINE_BYTES,
        ),
        ("payload (`max_payload`) | ", limits::MAX_PAYLOAD_BYTES),
        ("events per `APPEND` | ", limits::MAX_EVENTS_PER_APPEND),
        ("`count` of a read | ", limits::MAX_READ_COUNT as usize),
        ("types per `READTYPES` | ", limits::MAX_TYPES_PER_READ),
        ("`count` of `STREAMS` | ", limits::MAX_STREAMS_PAGE as usize),
        (
            "`count` of `SNAP LIST` | ",
            limits::MAX_SNAPSHOTS_PAGE as usize,
        ),
        (
            "events folded by one `AGG` | ",
            limits::MAX_AGGREGATE_EVENTS as usize,
        ),
    ] {
        let row = doc
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}"));
        assert!(
            row.contains(&format!("| {value}")),
            "{row} should state {value}"
        );
    }
    assert_eq!(
        limits::MAX_AGGREGATE_EVENT_BYTES,
        64 << 20,
        "64 MiB in the AGG limits"
    );
    assert_eq!(
        limits::MAX_AGGREGATE_STATE_BYTES,
        16 << 20,
        "16 MiB in the AGG limits"
    );
    assert_eq!(esdb::server::connection::MAX_PIPELINED_REQUESTS, 256);
    assert!(doc.contains("| 256 unanswered |"));
}

/// The HTTP port's and the WebSocket transport's limits are the ones the code enforces.
#[test]
fn http_and_websocket_limits_match_the_constants() {
    let doc = protocol_md();
    for (needle, value) in [
        (
            "(`HTTP_HEADER_READ_TIMEOUT_MS`) | ",
            esdb::http::HTTP_HEADER_READ_TIMEOUT_MS as usize,
        ),
        (
            "(`HTTP_MAX_HEADER_BYTES`) | ",
            esdb::http::HTTP_MAX_HEADER_BYTES,
        ),
        ("(`HTTP_MAX_HEADERS`) | ", esdb::http::HTTP_MAX_HEADERS),
        (
            "(`--max-http-connections`) | ",
            esdb::config::DEFAULT_MAX_HTTP_CONNECTIONS,
        ),
    ] {
        let row = doc
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}"));
        assert!(
            row.contains(&format!("| {value}")),
            "{row} should state {value}"
        );
    }
    let too_big = doc
        .lines()
        .find(|l| l.starts_with("  | 1009 (too big)"))
        .expect("the 1009 row");
    let max = esdb::http::ws::MAX_WS_MESSAGE_BYTES.to_string();
    assert!(too_big.contains(&max), "{too_big} should state {max}");
}

/// The cluster waits PROTOCOL.md states are the ones the server uses.
#[test]
fn stated_cluster_waits_match_the_constants() {
    let doc = protocol_md();
    let leader_wait = doc
        .lines()
        .find(|l| l.contains("wait for a leader, on a cluster node"))
        .expect("leader wait row");
    assert!(
        leader_wait.contains(&format!("| {} ms", esdb::cluster::LEADER_WAIT_TIMEOUT_MS)),
        "{leader_wait}"
    );
    let commit_wait = doc
        .lines()
        .find(|l| l.contains("wait for a write's commit, on a cluster node"))
        .expect("commit wait row");
    assert!(
        commit_wait.contains(&format!("| {} ms", esdb::cluster::WRITE_OUTCOME_TIMEOUT_MS)),
        "{commit_wait}"
    );
    let after_wait = doc
        .lines()
        .find(|l| l.contains("wait of a request with `after <position>`"))
        .expect("after wait row");
    assert!(
        after_wait.contains(&format!(
            "| {} ms",
            esdb::cluster::reads::AFTER_WAIT_TIMEOUT_MS
        )),
        "{after_wait}"
    );
    let change_wait = doc
        .lines()
        .find(|l| l.contains("wait of a membership change"))
        .expect("membership change row");
    assert!(
        change_wait.contains(&format!(
            "| {} ms",
            esdb::cluster::membership::MEMBERSHIP_CHANGE_TIMEOUT_MS
        )),
        "{change_wait}"
    );
}
