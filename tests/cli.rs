//! The `esdb` binary as a command line client, against a real server process: round trips,
//! exit codes, NDJSON when piped, `tail` following another process's append, export and
//! import, `sub --exec`, contexts.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// How long one client command may run before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Checks of a condition that becomes true asynchronously (a subscription registered, a
/// parked event stored), 50 ms apart.
const POLLS: usize = 400;

/// A client command with a private config directory and no server from the environment.
fn esdb(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_esdb"));
    command
        .args(args)
        .env_remove("ESDB_SERVER")
        .env_remove("ESDB_CONTEXT")
        .env("XDG_CONFIG_HOME", config)
        .env("NO_COLOR", "1");
    command
}

/// Runs a command to its end with `stdin`, within [`COMMAND_TIMEOUT`].
fn run(mut command: Command, stdin: &str) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn esdb");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    finish(child)
}

/// Waits for a spawned command (stdout and stderr piped) within [`COMMAND_TIMEOUT`].
fn finish(mut child: Child) -> Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        stdout.read_to_end(&mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        stderr.read_to_end(&mut text).map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            panic!("esdb client command did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap().expect("read stdout"),
        stderr: err.join().unwrap().expect("read stderr"),
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

/// Runs a command that must succeed; its stdout.
fn ok(command: Command, stdin: &str) -> String {
    let output = run(command, stdin);
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        output.status,
        stderr(&output)
    );
    stdout(&output)
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

struct Setup {
    server: Server,
    config: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            server: Server::start(&[]),
            config: tempfile::tempdir().unwrap(),
        }
    }

    fn addr(&self) -> String {
        self.server.addr.to_string()
    }

    /// `esdb <args> --server <this server>`.
    fn esdb(&self, args: &[&str]) -> Command {
        let mut command = esdb(self.config.path(), args);
        command.args(["--server", &self.addr()]);
        command
    }
}

#[test]
fn append_then_read_round_trip() {
    let setup = Setup::new();
    let appended = ok(
        setup.esdb(&[
            "append",
            "user-1",
            "--type",
            "UserCreated",
            "--data",
            r#"{"name":"Ada"}"#,
            "--expect",
            "no_stream",
        ]),
        "",
    );
    assert_eq!(ndjson(&appended)[0]["last_version"], 0);
    let lines = "{\"event_type\":\"UserRenamed\",\"data\":{\"name\":\"Ada L\"},\"metadata\":{\"by\":\"cli\"}}\n\
                 {\"event_type\":\"UserRenamed\",\"data\":{\"name\":\"Ada Lovelace\"}}\n";
    let appended = ndjson(&ok(
        setup.esdb(&["append", "user-1", "--expect", "0"]),
        lines,
    ));
    assert_eq!(appended[0]["events"], 2);
    assert_eq!(appended[0]["last_version"], 2);
    // With --type, each stdin line is one event's data.
    ok(
        setup.esdb(&["append", "user-1", "--type", "Tick", "--expect", "2"]),
        "1\n2\n",
    );

    let events = ndjson(&ok(setup.esdb(&["read", "user-1"]), ""));
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["UserCreated", "UserRenamed", "UserRenamed", "Tick", "Tick"]
    );
    assert_eq!(events[0]["data"]["name"], "Ada");
    assert_eq!(events[1]["metadata"]["by"], "cli");
    assert_eq!(events[4]["data"], 2);
    let newest = ndjson(&ok(
        setup.esdb(&["read", "user-1", "--backward", "--count", "1"]),
        "",
    ));
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["version"], 4);
    let middle = ndjson(&ok(
        setup.esdb(&["read", "user-1", "--from", "1", "--count", "2"]),
        "",
    ));
    assert_eq!(
        middle
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(ok(setup.esdb(&["version", "user-1"]), "").trim(), "4");
    assert_eq!(ok(setup.esdb(&["version", "nobody"]), "").trim(), "-1");
    assert_eq!(ok(setup.esdb(&["streams"]), "").trim(), "user-1");
    let ticks = ndjson(&ok(setup.esdb(&["read-types", "Tick"]), ""));
    assert_eq!(ticks.len(), 2);
    ok(setup.esdb(&["delete", "user-1"]), "");
    assert_eq!(ok(setup.esdb(&["exists", "user-1"]), "").trim(), "false");
    assert_eq!(
        ndjson(&ok(setup.esdb(&["read-all"]), "")).len(),
        5,
        "deleted events stay in $all"
    );
}

#[test]
fn exit_codes_scripts_can_rely_on() {
    let setup = Setup::new();
    ok(
        setup.esdb(&["append", "s", "--type", "T", "--data", "{}"]),
        "",
    );
    let conflict = run(
        setup.esdb(&[
            "append",
            "s",
            "--type",
            "T",
            "--data",
            "{}",
            "--expect",
            "no_stream",
        ]),
        "",
    );
    assert_eq!(conflict.status.code(), Some(1));
    assert!(
        stderr(&conflict).starts_with("esdb: wrong_expected_version: "),
        "{}",
        stderr(&conflict)
    );
    let missing = run(setup.esdb(&["read", "nope"]), "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).starts_with("esdb: stream_not_found: "),
        "{}",
        stderr(&missing)
    );

    for usage in [
        vec!["append", "s", "--bogus"],
        vec!["append", "s", "--type", "T", "--data", "{not json"],
        vec![
            "append", "s", "--expect", "maybe", "--type", "T", "--data", "{}",
        ],
        vec!["tail", "--all", "--type", "T"],
        vec!["read"],
    ] {
        let output = run(setup.esdb(&usage), "");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{usage:?}: {}",
            stderr(&output)
        );
    }
    let no_events = run(setup.esdb(&["append", "s"]), "");
    assert_eq!(no_events.status.code(), Some(2), "{}", stderr(&no_events));

    let mut stopped = Server::start(&[]);
    let addr = stopped.addr.to_string();
    stopped.kill9();
    let unreachable = run(
        esdb(setup.config.path(), &["version", "s", "--server", &addr]),
        "",
    );
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        stderr(&unreachable).contains("no esdb server reachable"),
        "{}",
        stderr(&unreachable)
    );
}

#[test]
fn events_are_ndjson_when_piped() {
    let setup = Setup::new();
    for i in 0..3 {
        let data = format!(r#"{{"i":{i}}}"#);
        ok(
            setup.esdb(&["append", &format!("s-{i}"), "--type", "T", "--data", &data]),
            "",
        );
    }
    let text = ok(setup.esdb(&["read-all"]), "");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        // The server's record, byte for byte: fields in the protocol's order.
        assert!(line.starts_with(r#"{"event_id":""#), "{line}");
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["position"], i as u64);
        assert_eq!(record["stream_id"], format!("s-{i}"));
        assert_eq!(record["data"]["i"], i as u64);
    }
    // --json makes even a plain listing JSON.
    let streams = ndjson(&ok(setup.esdb(&["streams", "--json"]), ""));
    assert_eq!(
        streams,
        [Value::from("s-0"), Value::from("s-1"), Value::from("s-2")]
    );
}

/// Polls `esdb stats` until the store has `subscriptions` active.
fn wait_for_subscriptions(setup: &Setup, subscriptions: u64) {
    for _ in 0..POLLS {
        let stats = ndjson(&ok(setup.esdb(&["stats"]), ""));
        if stats[0]["stores"]["default"]["subscriptions"] == subscriptions {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the store never had {subscriptions} subscriptions");
}

#[test]
fn tail_all_receives_an_event_appended_by_another_process() {
    let setup = Setup::new();
    ok(
        setup.esdb(&["append", "before", "--type", "Old", "--data", "{}"]),
        "",
    );
    let tail = setup
        .esdb(&["tail", "--all", "--count", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tail");
    wait_for_subscriptions(&setup, 1);
    ok(
        setup.esdb(&["append", "after", "--type", "New", "--data", r#"{"x":1}"#]),
        "",
    );
    let output = finish(tail);
    assert!(output.status.success(), "{}", stderr(&output));
    let events = ndjson(&stdout(&output));
    assert_eq!(events.len(), 1, "from the end: only the new event");
    assert_eq!(events[0]["stream_id"], "after");
    assert_eq!(events[0]["data"]["x"], 1);

    let history = ndjson(&ok(
        setup.esdb(&["tail", "--type", "Old", "--from", "start", "--count", "1"]),
        "",
    ));
    assert_eq!(history[0]["stream_id"], "before");
}

/// The fields an import must preserve (not `epoch_us`: the new store's own).
fn preserved(record: &Value) -> Value {
    let mut record = record.clone();
    record.as_object_mut().unwrap().remove("epoch_us");
    record
}

#[test]
fn export_then_import_into_a_fresh_server_gives_the_same_events() {
    let source = Setup::new();
    for i in 0..30 {
        let stream = format!("acct-{}", i % 4);
        let data = format!(r#"{{"n":{i},"text":"é \"q\""}}"#);
        ok(
            source.esdb(&[
                "append",
                &stream,
                "--type",
                "Moved",
                "--data",
                &data,
                "--metadata",
                r#"{"src":"test"}"#,
            ]),
            "",
        );
    }
    let exported = ok(source.esdb(&["export", "--all"]), "");
    assert_eq!(exported.lines().count(), 30);
    let file = source.config.path().join("events.ndjson");
    std::fs::write(&file, &exported).unwrap();

    let target = Setup::new();
    ok(
        target.esdb(&["import", "--file", file.to_str().unwrap()]),
        "",
    );
    let restored = ok(target.esdb(&["export", "--all"]), "");
    let original: Vec<Value> = ndjson(&exported).iter().map(preserved).collect();
    let copy: Vec<Value> = ndjson(&restored).iter().map(preserved).collect();
    assert_eq!(
        copy, original,
        "same ids, streams, versions, positions, data, metadata"
    );

    // Importing again (from stdin this time) writes nothing.
    ok(target.esdb(&["import"]), &exported);
    let stats = ndjson(&ok(target.esdb(&["stats"]), ""));
    assert_eq!(stats[0]["stores"]["default"]["events"], 30);

    let one = ok(source.esdb(&["export", "acct-1"]), "");
    assert!(ndjson(&one).iter().all(|e| e["stream_id"] == "acct-1"));
    assert_eq!(one.lines().count(), 8);
}

#[test]
fn sub_exec_acks_on_success_and_nacks_on_failure() {
    let setup = Setup::new();
    for ok_flag in [true, false, true] {
        let data = format!(r#"{{"ok":{ok_flag}}}"#);
        ok(
            setup.esdb(&["append", "jobs", "--type", "Job", "--data", &data]),
            "",
        );
    }
    let log = setup.config.path().join("handled.ndjson");
    let handler = format!(
        "event=$(cat); printf '%s\\n' \"$event\" >> '{}'; \
         printf '%s' \"$event\" | grep -q '\"ok\":true' && test \"$ESDB_STREAM\" = jobs",
        log.display()
    );
    let output = run(
        setup.esdb(&[
            "sub", "workers", "jobs", "--exec", &handler, "--nack", "park", "--count", "3",
        ]),
        "",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let handled = ndjson(&std::fs::read_to_string(&log).unwrap());
    assert_eq!(
        handled
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(
        stderr(&output).contains("failed"),
        "the nack is reported: {}",
        stderr(&output)
    );

    // The failed one is parked (stored with the next checkpoint), the others acknowledged.
    let mut parked = Vec::new();
    for _ in 0..POLLS {
        parked = ndjson(&ok(setup.esdb(&["psub", "parked", "workers"]), ""));
        if !parked.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        parked
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1]
    );

    // A later consumer, without a selector (the stored one is used), gets only what is new.
    ok(
        setup.esdb(&[
            "append",
            "jobs",
            "--type",
            "Job",
            "--data",
            r#"{"ok":true}"#,
        ]),
        "",
    );
    let next = ndjson(&ok(setup.esdb(&["sub", "workers", "--count", "1"]), ""));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["position"], 3);
    let listed = ndjson(&ok(setup.esdb(&["psub", "list"]), ""));
    assert_eq!(listed[0]["name"], "workers");
    ok(setup.esdb(&["psub", "delete", "workers"]), "");
    let gone = run(setup.esdb(&["psub", "get", "workers"]), "");
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).starts_with("esdb: subscription_not_found: "),
        "{}",
        stderr(&gone)
    );
    let unknown = run(setup.esdb(&["sub", "nobody", "--count", "1"]), "");
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
}

#[test]
fn contexts_and_completions() {
    let setup = Setup::new();
    let config = setup.config.path();
    ok(
        esdb(
            config,
            &[
                "context",
                "save",
                "local",
                "--server",
                &setup.addr(),
                "--select",
            ],
        ),
        "",
    );
    ok(
        esdb(
            config,
            &["context", "save", "elsewhere", "--server", "127.0.0.1:1"],
        ),
        "",
    );
    // No --server: the selected context's.
    ok(
        esdb(config, &["append", "s", "--type", "T", "--data", "{}"]),
        "",
    );
    assert_eq!(ok(esdb(config, &["version", "s"]), "").trim(), "0");
    let listed = ok(esdb(config, &["context", "list"]), "");
    assert!(listed.lines().any(|l| l.starts_with("* local")), "{listed}");
    assert!(
        listed.lines().any(|l| l.starts_with("  elsewhere")),
        "{listed}"
    );
    // --context picks another one; --server overrides any.
    let output = run(
        esdb(config, &["version", "s", "--context", "elsewhere"]),
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    let mut overridden = esdb(config, &["version", "s", "--context", "elsewhere"]);
    overridden.args(["--server", &setup.addr()]);
    assert_eq!(ok(overridden, "").trim(), "0");
    let missing = run(esdb(config, &["context", "select", "nope"]), "");
    assert_eq!(missing.status.code(), Some(2));

    let script = ok(esdb(config, &["completions", "bash"]), "");
    assert!(
        script.contains("read-all") && script.contains("--server"),
        "a bash script"
    );
}

#[test]
fn every_client_subcommand_has_examples_in_its_help() {
    let config = tempfile::tempdir().unwrap();
    let commands: [&[&str]; 29] = [
        &["append"],
        &["read"],
        &["read-all"],
        &["read-types"],
        &["streams"],
        &["version"],
        &["exists"],
        &["delete"],
        &["agg"],
        &["stats"],
        &["tail"],
        &["sub"],
        &["export"],
        &["import"],
        &["completions"],
        &["snap"],
        &["snap", "save"],
        &["snap", "load"],
        &["snap", "list"],
        &["snap", "delete"],
        &["psub"],
        &["psub", "list"],
        &["psub", "get"],
        &["psub", "delete"],
        &["psub", "parked"],
        &["psub", "replay"],
        &["bench", "quick"],
        &["context"],
        &["context", "save"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let help = ok(esdb(config.path(), &args), "");
        assert!(
            help.contains("\nExample"),
            "{command:?} --help has no examples:\n{help}"
        );
    }
}
