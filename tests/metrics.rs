//! Observability, black-box: a scripted workload over the protocol, then `/metrics` scraped
//! over real HTTP must count exactly what was done; `/health`, `/ready` and `/stats` answer;
//! the protocol works over WebSocket at `/ws`; every metric is named by the rule and has help.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use esdb_protocol::{ErrorCode, Reply};
use tokio_tungstenite::tungstenite::Message;

use common::ws::WsClient;
use common::{event, http_get, Server, REPLY_TIMEOUT};

/// One scrape: `(name, labels) → value`.
struct Scrape(BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Scrape {
    fn take(addr: SocketAddr) -> Scrape {
        let (status, body) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        let mut samples = BTreeMap::new();
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("label pair");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            samples.insert((name.to_owned(), labels), value.parse().expect("number"));
        }
        Scrape(samples)
    }

    /// The value of `name` with exactly these labels (0 if absent would hide bugs: panics).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = (name.to_owned(), labels);
        *self
            .0
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {key:?}"))
    }
}

/// Scrapes until `done` holds (connection close counts are updated just after the socket
/// closes, so the scrape may race them); fails after the reply timeout.
fn scrape_until(addr: SocketAddr, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let started = Instant::now();
    loop {
        let scrape = Scrape::take(addr);
        if done(&scrape) || started.elapsed() > REPLY_TIMEOUT {
            return scrape;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn error_code(reply: Reply) -> ErrorCode {
    match reply {
        Reply::Err(error) => error.code,
        other => panic!("expected -ERR, got {other:?}"),
    }
}

#[test]
fn scripted_workload_is_counted_exactly() {
    let server = Server::start(&[]);
    let store = [("store", "default")];
    let mut client = server.client();
    let one = event("Created", serde_json::json!({"n": 1}));
    let two = format!(
        "[{},{}]",
        event("Renamed", serde_json::json!(2)),
        event("Renamed", serde_json::json!(3))
    );
    assert!(matches!(
        client.append("s1", "no_stream", &one),
        Reply::Appended { .. }
    ));
    assert!(matches!(
        client.append("s1", "0", &two),
        Reply::Appended { .. }
    ));
    // An optimistic-concurrency conflict, and errors of four more codes.
    let conflict = client.append("s1", "no_stream", &one);
    assert_eq!(error_code(conflict), ErrorCode::WrongExpectedVersion);
    assert_eq!(
        error_code(client.append("s1", "any", "{oops")),
        ErrorCode::InvalidJson
    );
    assert_eq!(
        error_code(client.request("READ nope 0 10")),
        ErrorCode::StreamNotFound
    );
    assert_eq!(
        error_code(client.request("BOGUS")),
        ErrorCode::UnknownCommand
    );
    assert_eq!(client.read_stream("s1", 0, 10).len(), 3);
    // A connection that quits, and one closed for a protocol error.
    let mut quitter = server.client();
    assert_eq!(quitter.request("PING"), Reply::Pong);
    drop(quitter);
    let mut offender = server.client();
    offender.send_line("APPEND s2 any 99999999");
    assert_eq!(error_code(offender.reply()), ErrorCode::PayloadTooLarge);
    assert!(offender.try_reply().is_none(), "closed after the error");

    let scrape = scrape_until(server.http_addr, |s| {
        s.get(
            "esdb_connection_closed_total",
            &[("transport", "tcp"), ("reason", "client_quit")],
        ) == 1.0
            && s.get(
                "esdb_connection_closed_total",
                &[("transport", "tcp"), ("reason", "protocol_error")],
            ) == 1.0
    });
    assert_eq!(scrape.get("esdb_append_requests_total", &store), 4.0);
    assert_eq!(scrape.get("esdb_append_events_total", &store), 3.0);
    assert_eq!(scrape.get("esdb_append_conflicts_total", &store), 1.0);
    assert_eq!(scrape.get("esdb_append_latency_seconds_count", &store), 4.0);
    assert_eq!(scrape.get("esdb_writer_batch_events_sum", &store), 3.0);
    assert_eq!(scrape.get("esdb_read_events_total", &store), 3.0);
    assert_eq!(scrape.get("esdb_read_requests_total", &store), 2.0);
    assert_eq!(scrape.get("esdb_storage_last_position", &store), 2.0);
    assert!(scrape.get("esdb_storage_used_bytes", &store) > 0.0);
    assert!(
        scrape.get("esdb_storage_map_size_bytes", &store)
            >= scrape.get("esdb_storage_used_bytes", &store)
    );
    for (code, count) in [
        ("wrong_expected_version", 1.0),
        ("invalid_json", 1.0),
        ("stream_not_found", 1.0),
        ("unknown_command", 1.0),
        ("payload_too_large", 1.0),
        ("stream_deleted", 0.0),
    ] {
        assert_eq!(
            scrape.get("esdb_error_sent_total", &[("code", code)]),
            count,
            "{code}"
        );
    }
    let tcp = [("transport", "tcp")];
    assert_eq!(scrape.get("esdb_connection_accepted_total", &tcp), 3.0);
    assert_eq!(scrape.get("esdb_connection_open_connections", &tcp), 1.0);
    assert_eq!(
        scrape.get(
            "esdb_connection_closed_total",
            &[("transport", "tcp"), ("reason", "idle")]
        ),
        0.0
    );
    drop(client);
}

/// The log's fdatasync is what makes an append durable; LMDB commits behind it, one commit for
/// many appends. A lone client's sequential appends must not each cost an LMDB commit (its
/// scattered pages and fdatasync): something that reads after every applied entry (a read
/// waits for the commit) or commits whenever writes pause would make them do so.
#[test]
fn a_lone_clients_appends_share_lmdb_commits() {
    const APPENDS: u32 = 300;
    let server = Server::start(&[]);
    let store = [("store", "default")];
    let mut client = server.client();
    for n in 0..APPENDS {
        let body = event("Counted", serde_json::json!({ "n": n }));
        assert!(
            matches!(client.append("one", "any", &body), Reply::Appended { .. }),
            "append {n}"
        );
    }
    let scrape = Scrape::take(server.http_addr);
    assert_eq!(
        scrape.get("esdb_append_requests_total", &store),
        f64::from(APPENDS)
    );
    let commits = scrape.get("esdb_writer_commit_seconds_count", &store);
    assert!(
        commits <= f64::from(APPENDS / 3),
        "{commits} LMDB commits for {APPENDS} sequential appends"
    );
}

#[test]
fn health_ready_and_stats_answer() {
    let server = Server::start(&["--store", "default", "--store", "audit"]);
    assert_eq!(
        http_get(server.http_addr, "/health"),
        (200, "ok\n".to_owned())
    );
    assert_eq!(
        http_get(server.http_addr, "/ready"),
        (200, "ready\n".to_owned())
    );
    assert_eq!(http_get(server.http_addr, "/nowhere").0, 404);
    let mut client = server.client();
    client.append("s", "any", &event("T", serde_json::json!(1)));
    let (status, body) = http_get(server.http_addr, "/stats");
    assert_eq!(status, 200);
    let mut stats: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    // Each store's Raft group: a single node leading its own log, everything applied.
    for store in ["default", "audit"] {
        let raft = stats["stores"][store]
            .as_object_mut()
            .expect("store stats")
            .remove("raft")
            .expect("raft status");
        assert_eq!(raft["node_id"], 1, "{raft}");
        assert_eq!(raft["state"], "leader", "{raft}");
        assert_eq!(raft["leader_id"], 1, "{raft}");
        assert!(raft["term"].as_u64().expect("term") >= 1, "{raft}");
        assert_eq!(raft["applied_index"], raft["last_log_index"], "{raft}");
    }
    assert_eq!(
        stats,
        serde_json::json!({"stores": {
            "default": {"streams": 1, "events": 1, "last_position": 0, "subscriptions": 0},
            "audit": {"streams": 0, "events": 0, "last_position": -1, "subscriptions": 0},
        }})
    );
    // STATS over the protocol says the same, but for the Raft indexes, which a checkpoint
    // taken between the two requests moves (each is checked above).
    match client.request("STATS") {
        Reply::Stats { body } => {
            let mut again: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for store in ["default", "audit"] {
                let raft = again["stores"][store]
                    .as_object_mut()
                    .unwrap()
                    .remove("raft");
                assert_eq!(raft.unwrap()["state"], "leader");
            }
            assert_eq!(again, stats);
        }
        other => panic!("expected STATS, got {other:?}"),
    }
}

/// A WebSocket client that decodes replies from the concatenation of message payloads.
#[tokio::test]
async fn websocket_speaks_the_protocol() {
    let server = Server::start(&[]);
    let mut ws = WsClient::connect(server.http_addr).await;
    assert!(matches!(ws.reply().await, Some(Reply::Info(_))));
    // One request split across two Text messages, then one in a Binary message.
    let payload = event("Created", serde_json::json!({"name": "Ada"}));
    let frame = format!("APPEND u-1 no_stream {}\r\n{payload}\r\n", payload.len());
    let (first, second) = frame.split_at(10);
    ws.send(Message::text(first)).await;
    ws.send(Message::text(second)).await;
    assert_eq!(
        ws.reply().await,
        Some(Reply::Appended {
            stream: "u-1".into(),
            last_version: 0,
            last_position: 0
        })
    );
    // Two requests in one Binary message.
    ws.send(Message::binary(
        b"READ u-1 0 10\r\nVERSION u-1\r\n".to_vec(),
    ))
    .await;
    match ws.reply().await {
        Some(Reply::Events { count: 1, body }) => {
            let events: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(events[0]["data"], serde_json::json!({"name": "Ada"}));
        }
        other => panic!("expected EVENTS, got {other:?}"),
    }
    assert_eq!(
        ws.reply().await,
        Some(Reply::Version {
            stream: "u-1".into(),
            version: 0
        })
    );
    assert!(ws.text_messages > 0, "UTF-8 output arrives as Text");
    // The same data over TCP.
    let mut tcp = server.client();
    assert_eq!(tcp.read_stream("u-1", 0, 10).len(), 1);
    // Errors over WebSocket are protocol errors, and framing errors close it.
    ws.send(Message::text("APPEND u-1 any 99999999\r\n")).await;
    assert!(matches!(
        ws.reply().await,
        Some(Reply::Err(e)) if e.code == ErrorCode::PayloadTooLarge
    ));
    assert_eq!(ws.reply().await, None, "closed after a framing error");

    let ws_labels = [("transport", "ws")];
    let scrape = tokio::task::spawn_blocking(move || {
        let scrape = scrape_until(server.http_addr, |s| {
            s.get(
                "esdb_connection_closed_total",
                &[("transport", "ws"), ("reason", "protocol_error")],
            ) == 1.0
        });
        drop(server);
        scrape
    })
    .await
    .unwrap();
    assert_eq!(
        scrape.get("esdb_connection_accepted_total", &ws_labels),
        1.0
    );
    assert_eq!(
        scrape.get("esdb_connection_open_connections", &ws_labels),
        0.0
    );
    assert_eq!(
        scrape.get(
            "esdb_connection_closed_total",
            &[("transport", "ws"), ("reason", "protocol_error")]
        ),
        1.0
    );
}

#[test]
fn every_metric_has_help_text_and_follows_the_naming_rule() {
    let metrics = esdb::metrics::metrics();
    // Families appear once they have a labelled child: resolve every handle set.
    let _ = metrics.store("naming_test");
    let _ = metrics.connections(esdb::metrics::Transport::Tcp);
    let _ = metrics.connections(esdb::metrics::Transport::Ws);
    // The Raft and cluster families too: other tests in this binary may create them first, so
    // the rule must hold for them whatever order the tests run in.
    metrics.raft("naming_test").set_replication_lag(2, 0);
    metrics.cluster_peer_up.with_label_values(&["2"]).set(0);
    let name_rule = regex::Regex::new(r"^esdb_[a-z]+_[a-z_]+$").unwrap();
    let families = metrics.registry.gather();
    assert!(families.len() >= 25, "only {} families", families.len());
    for family in families {
        let name = family.name();
        assert!(
            name_rule.is_match(name),
            "{name} breaks esdb_<subsystem>_<what>_<unit>"
        );
        assert!(!family.help().trim().is_empty(), "{name} has no help text");
        use prometheus::proto::MetricType;
        let units: &[&str] = match family.get_field_type() {
            MetricType::COUNTER => &["_total"],
            MetricType::HISTOGRAM => &["_seconds", "_bytes", "_events", "_commands"],
            // Raft's own units (entries, log indexes, terms) and Prometheus's 0/1 conventions
            // (`_up`, `_is_leader`) are units too.
            _ => &[
                "_bytes",
                "_position",
                "_connections",
                "_subscriptions",
                "_entries",
                "_index",
                "_term",
                "_is_leader",
                "_up",
            ],
        };
        assert!(
            units.iter().any(|unit| name.ends_with(unit)),
            "{name} should end in one of {units:?}"
        );
    }
}

/// The Grafana dashboard only queries metrics that exist.
#[test]
fn grafana_dashboard_uses_only_defined_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/grafana/esdb-dashboard.json"
    );
    let dashboard = std::fs::read_to_string(path).expect("dashboard");
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("valid JSON");
    let metrics = esdb::metrics::metrics();
    let _ = metrics.store("dashboard_test");
    let _ = metrics.connections(esdb::metrics::Transport::Tcp);
    // Labelled families show up once a label value exists: the cluster panels query these.
    metrics.raft("dashboard_test").set_replication_lag(2, 0);
    metrics.cluster_peer_up.with_label_values(&["2"]).set(1);
    let defined: Vec<String> = metrics
        .registry
        .gather()
        .iter()
        .map(|family| family.name().to_owned())
        .collect();
    let used = regex::Regex::new(r"esdb_[a-z_]+").unwrap();
    for name in used.find_iter(&dashboard).map(|m| m.as_str()) {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            defined.iter().any(|d| d == base),
            "dashboard queries unknown {name}"
        );
    }
}
