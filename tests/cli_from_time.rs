//! `esdb read`, `read-all`, `tail` and `sub` with `--from <time>` (RFC 3339, or @epoch_us),
//! against the real server binary: the reads start at the first event committed at or after
//! the time, through the protocol's `from_time`.

mod common;

use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use common::{event, Server};
use esdb_protocol::Reply;

fn esdb(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args(args)
        .args(["--server", &server.addr.to_string(), "--json"])
        .env_remove("ESDB_SERVER")
        .env_remove("ESDB_CONTEXT")
        .env("XDG_CONFIG_HOME", server.data_dir.join("no-config"))
        .stdin(Stdio::null())
        .output()
        .expect("run esdb")
}

/// The `version` (or `position`) of each NDJSON event the command printed.
fn printed(output: &Output, field: &str) -> Vec<u64> {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()[field]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn from_a_time_starts_at_the_first_event_committed_at_or_after_it() {
    let server = Server::start(&[]);
    let mut client = server.client();
    for n in 0..3 {
        let reply = client.append("s", "any", &event("Counted", json!(n)));
        assert!(matches!(reply, Reply::Appended { .. }), "{reply:?}");
        // Distinct commit times: each append is committed at least 1 µs after the last.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let events = client.read_stream("s", 0, 10);
    let second_us = events[1]["epoch_us"].as_u64().unwrap();
    let at_second = format!("@{second_us}");

    assert_eq!(
        printed(
            &esdb(&server, &["read", "s", "--from", &at_second]),
            "version"
        ),
        [1, 2]
    );
    let from_1970 = ["read", "s", "--from", "1970-01-01T00:00:00Z"];
    assert_eq!(printed(&esdb(&server, &from_1970), "version"), [0, 1, 2]);
    let from_2100 = ["read", "s", "--from", "2100-01-01T00:00:00Z"];
    assert_eq!(
        printed(&esdb(&server, &from_2100), "version"),
        Vec::<u64>::new()
    );
    let backward = ["read", "s", "--from", &at_second, "--backward"];
    assert_eq!(printed(&esdb(&server, &backward), "version"), [1, 0]);
    let all = ["read-all", "--from", &at_second];
    assert_eq!(printed(&esdb(&server, &all), "position"), [1, 2]);
    let tail = ["tail", "s", "--from", &at_second, "--count", "2"];
    assert_eq!(printed(&esdb(&server, &tail), "version"), [1, 2]);
    let sub = ["sub", "audit", "s", "--from", &at_second, "--count", "2"];
    assert_eq!(printed(&esdb(&server, &sub), "version"), [1, 2]);

    // A bare number is a version; anything else that is not a time is a usage error (exit 2).
    for bad in ["yesterday", "2026-13-01T00:00:00Z", "@soon"] {
        let output = esdb(&server, &["read", "s", "--from", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}: {output:?}");
    }
}
