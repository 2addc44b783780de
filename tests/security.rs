//! Authentication and permissions, black-box against the real server: every refusal is
//! checked to have written (or delivered) nothing.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{event, http_get, signal, Client, Server};
use esdb_protocol::{ErrorCode, Reply};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const SCRAPER_TOKEN: &str = "scraper-token-0123456789abcdef";

/// `esdb passwd`, the real subcommand.
fn passwd(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_esdb"))
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn esdb passwd");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let output = child.wait_with_output().expect("passwd output");
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

/// A config with: admin (token, everything), alice (user, everything in `default`), orders
/// (user, orders-* only), bob (user, read in default) and a scraper token with no grants.
fn auth_config(include_bob: bool) -> String {
    // Hashed once per test process, so a rewritten config keeps everyone's credential.
    static HASHES: std::sync::OnceLock<[String; 3]> = std::sync::OnceLock::new();
    let [alice, orders, bob] = HASHES.get_or_init(|| {
        [
            passwd("alice-pass"),
            passwd("orders-pass"),
            passwd("bob-pass"),
        ]
    });
    let mut config = format!(
        r#"
stores = ["default", "audit"]

[[auth.tokens]]
name = "admin"
token = "{ADMIN_TOKEN}"
permissions = {{ "*" = ["all"] }}

[[auth.tokens]]
name = "scraper"
token = "{SCRAPER_TOKEN}"

[[auth.users]]
name = "alice"
password_hash = "{alice}"
permissions = {{ default = ["all"] }}

[[auth.users]]
name = "orders"
password_hash = "{orders}"
permissions = {{ default = ["read:orders-*", "write:orders-*", "subscribe", "snapshot:orders-1"] }}
"#
    );
    if include_bob {
        config.push_str(&format!(
            r#"
[[auth.users]]
name = "bob"
password_hash = "{bob}"
permissions = {{ default = ["read"] }}
"#
        ));
    }
    config
}

fn start_with_config(config: &str, extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("esdb.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start(&args), dir)
}

fn config_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("esdb.toml")
}

fn login(server: &Server, credentials: &str) -> Client {
    let mut client = server.client();
    assert_eq!(client.request(&format!("CONNECT {credentials}")), Reply::Ok);
    client
}

fn admin(server: &Server) -> Client {
    login(server, &format!(r#"{{"token":"{ADMIN_TOKEN}"}}"#))
}

fn error_code(reply: &Reply) -> ErrorCode {
    match reply {
        Reply::Err(error) => error.code,
        other => panic!("expected -ERR, got {other:?}"),
    }
}

fn assert_denied(reply: Reply, permission: &str) {
    match reply {
        Reply::Err(error) => {
            assert_eq!(error.code, ErrorCode::PermissionDenied, "{error:?}");
            assert!(
                error.message.contains(&format!("needs {permission} ")),
                "names {permission}: {}",
                error.message
            );
        }
        other => panic!("expected permission_denied, got {other:?}"),
    }
}

/// The number of events in `store`, read by the admin.
fn event_count(server: &Server, store: &str) -> usize {
    let mut admin = admin(server);
    assert_eq!(admin.request(&format!("USE {store}")), Reply::Ok);
    admin.read_all().len()
}

fn metric(server: &Server, line_prefix: &str) -> f64 {
    let (status, body) = http_get_with_token(server, "/metrics", Some(SCRAPER_TOKEN));
    assert_eq!(status, 200);
    body.lines()
        .find(|line| line.starts_with(line_prefix))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().unwrap())
}

fn http_get_with_token(server: &Server, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(server.http_addr).unwrap();
    stream
        .set_read_timeout(Some(common::REPLY_TIMEOUT))
        .unwrap();
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{authorization}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn before_connect_only_session_operations_are_accepted() {
    let (server, _dir) = start_with_config(&auth_config(false), &[]);
    let mut client = server.client();
    assert_eq!(client.info["auth_required"], true);
    assert_eq!(client.info["tls_required"], false);
    assert_eq!(
        client.info["stores"],
        serde_json::json!([]),
        "no store names before auth"
    );
    assert_eq!(client.request("PING"), Reply::Pong);
    assert!(matches!(client.request("HELP"), Reply::Help { .. }));
    let refused = [
        format!("APPEND s-1 any {}", event("E", serde_json::json!({}))),
        "READ s-1 0 10".to_owned(),
        "READALL 0 10".to_owned(),
        "DELETE s-1".to_owned(),
        "SUB x stream $all".to_owned(),
        "SNAP SAVE s-1 0 {\"data\":{}}".to_owned(),
        "PSUB LIST".to_owned(),
        "STATS".to_owned(),
        "USE audit".to_owned(),
    ];
    for line in &refused {
        assert_eq!(
            error_code(&client.request(line)),
            ErrorCode::AuthRequired,
            "{line}"
        );
    }
    // The connection stays usable: authenticate and work.
    assert_eq!(
        client.request(&format!(r#"CONNECT {{"token":"{ADMIN_TOKEN}"}}"#)),
        Reply::Ok
    );
    assert_eq!(
        client.request("STREAMS"),
        Reply::Streams {
            count: 0,
            body: "[]".into()
        }
    );
    assert_eq!(
        event_count(&server, "default"),
        0,
        "nothing was written before CONNECT"
    );
    assert_eq!(
        client.request("PING"),
        Reply::Pong,
        "no SUB was made: no EVENT came"
    );
}

#[test]
fn a_failed_connect_is_refused_closed_and_counted() {
    let (server, _dir) = start_with_config(&auth_config(false), &[]);
    let before = metric(&server, "esdb_auth_failures_total{transport=\"tcp\"}");
    let attempts = [
        r#"{"user":"alice","pass":"wrong"}"#,
        r#"{"user":"nobody","pass":"alice-pass"}"#,
        r#"{"token":"not-a-token-at-all-0123"}"#,
        r#"{"name":"no credentials"}"#,
        r#"{"user":"alice"}"#,
    ];
    for credentials in attempts {
        let mut client = server.client();
        let mut pipelined = format!("CONNECT {credentials}\r\n");
        pipelined.push_str(&format!(
            "APPEND s-1 any {}\r\n",
            event("E", serde_json::json!({}))
        ));
        client.send_raw(pipelined.as_bytes());
        assert_eq!(
            error_code(&client.reply()),
            ErrorCode::AuthFailed,
            "{credentials}"
        );
        assert_eq!(
            client.try_reply(),
            None,
            "closed after auth_failed: {credentials}"
        );
    }
    let after = metric(&server, "esdb_auth_failures_total{transport=\"tcp\"}");
    assert_eq!(after - before, attempts.len() as f64);
    assert_eq!(
        event_count(&server, "default"),
        0,
        "the pipelined APPENDs wrote nothing"
    );
    // Right credentials work, by password and by token.
    let mut alice = login(
        &server,
        r#"{"user":"alice","pass":"alice-pass","name":"a"}"#,
    );
    assert!(matches!(
        alice.append("s-1", "any", &event("E", serde_json::json!({}))),
        Reply::Appended { .. }
    ));
}

#[test]
fn repeated_failures_from_one_address_wait_longer() {
    let (server, _dir) = start_with_config(&auth_config(false), &[]);
    let mut waits = Vec::new();
    for _ in 0..3 {
        let mut client = server.client();
        let started = Instant::now();
        client.send_line(r#"CONNECT {"user":"alice","pass":"guess"}"#);
        assert_eq!(error_code(&client.reply()), ErrorCode::AuthFailed);
        waits.push(started.elapsed());
    }
    // The documented lower bounds: 250 ms, then doubling per failure from the address.
    for (wait, floor_ms) in waits.iter().zip([250, 500, 1000]) {
        assert!(*wait >= Duration::from_millis(floor_ms), "{waits:?}");
    }
}

#[test]
fn permissions_refuse_what_is_not_granted_and_write_nothing() {
    let (server, _dir) = start_with_config(&auth_config(false), &[]);
    let mut orders = login(&server, r#"{"user":"orders","pass":"orders-pass"}"#);
    let payload = event("Placed", serde_json::json!({"n": 1}));
    let before = metric(
        &server,
        "esdb_permission_denied_total{permission=\"write\"}",
    );
    assert_denied(orders.append("users-1", "any", &payload), "write");
    assert!(matches!(
        orders.append("orders-1", "any", &payload),
        Reply::Appended { .. }
    ));
    assert_denied(orders.request("DELETE orders-1"), "admin");
    assert_denied(orders.request("READ users-1 0 10"), "read");
    assert_denied(orders.request("READALL 0 10"), "read");
    assert_denied(orders.request("READTYPES Placed 0 10"), "read");
    assert_denied(orders.request("STREAMS"), "read");
    assert_denied(orders.request("STATS"), "admin");
    assert_denied(
        orders.request("SNAP SAVE orders-2 0 {\"data\":{}}"),
        "snapshot",
    );
    assert_denied(orders.request("SUB p event_type Placed billing"), "read");
    assert_denied(orders.request("PSUB DELETE billing"), "admin");
    assert_eq!(
        orders.request("SNAP SAVE orders-1 0 {\"data\":{}}"),
        Reply::Ok
    );
    assert_eq!(orders.read_stream("orders-1", 0, 10).len(), 1);
    // Another store: not granted, so it does not exist for this user; nor does a missing one.
    let audit = orders.request("USE audit");
    let missing = orders.request("USE nowhere");
    assert_eq!(error_code(&audit), ErrorCode::StoreNotFound);
    let (Reply::Err(audit), Reply::Err(missing)) = (audit, missing) else {
        unreachable!()
    };
    assert_eq!(
        audit.message.replace("audit", "X"),
        missing.message.replace("nowhere", "X"),
        "the same answer, so store names do not leak"
    );
    let mut connect_audit = server.client();
    let reply =
        connect_audit.request(r#"CONNECT {"user":"orders","pass":"orders-pass","store":"audit"}"#);
    assert_eq!(error_code(&reply), ErrorCode::StoreNotFound);
    let after = metric(
        &server,
        "esdb_permission_denied_total{permission=\"write\"}",
    );
    assert_eq!(after - before, 1.0, "the refusal is counted");
    // Nothing refused was written: only orders-1's event and snapshot.
    let mut admin = admin(&server);
    assert_eq!(admin.read_all().len(), 1);
    assert_eq!(
        error_code(&admin.request("READ users-1 0 1")),
        ErrorCode::StreamNotFound
    );
    assert_eq!(
        error_code(&admin.request("SNAP LOAD orders-2")),
        ErrorCode::SnapshotNotFound
    );
    assert_eq!(
        admin.request("PSUB EXISTS billing"),
        Reply::SubExists {
            name: "billing".into(),
            exists: false
        }
    );
}

#[test]
fn subscriptions_deliver_only_events_the_user_may_read() {
    let (server, _dir) = start_with_config(&auth_config(false), &[]);
    let mut alice = login(&server, r#"{"user":"alice","pass":"alice-pass"}"#);
    for stream in ["users-1", "orders-1", "users-2"] {
        assert!(matches!(
            alice.append(stream, "any", &event("E", serde_json::json!({}))),
            Reply::Appended { .. }
        ));
    }
    let mut orders = login(&server, r#"{"user":"orders","pass":"orders-pass"}"#);
    // The refusal first: once a SUB is accepted its history is pushed at once, and an EVENT
    // frame could arrive before the next request's reply.
    assert_denied(orders.request("SUB u stream users-1"), "read");
    assert_denied(orders.request("SUB u stream users-1 after 0"), "read");
    // Both accepted; a subscription's history may arrive before the other SUB's +OK. With
    // `after`, a SUB is filtered the same way.
    orders.send_line("SUB all stream $all after 2");
    orders.send_line("SUB e event_type E");
    let mut seen = Vec::new();
    let (mut live, mut accepted) = (0, 0);
    while live < 2 || accepted < 2 {
        match orders.reply() {
            Reply::Ok => accepted += 1,
            Reply::Event { sid, stream, .. } => seen.push(format!("{sid}:{stream}")),
            Reply::Live { .. } => live += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Live events: a forbidden one, then an allowed one; PING fences the connection.
    for stream in ["users-3", "orders-2"] {
        assert!(matches!(
            alice.append(stream, "any", &event("E", serde_json::json!({}))),
            Reply::Appended { .. }
        ));
    }
    let mut live_seen = 0;
    while live_seen < 2 {
        match orders.reply() {
            Reply::Event { sid, stream, .. } => {
                seen.push(format!("{sid}:{stream}"));
                if stream == "orders-2" {
                    live_seen += 1;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(orders.request("PING"), Reply::Pong);
    seen.sort();
    assert_eq!(
        seen,
        ["all:orders-1", "all:orders-2", "e:orders-1", "e:orders-2"]
    );
}

#[test]
fn sighup_reloads_users_and_closes_revoked_connections() {
    let (mut server, dir) = start_with_config(&auth_config(true), &[]);
    let mut bob = login(&server, r#"{"user":"bob","pass":"bob-pass"}"#);
    let mut alice = login(&server, r#"{"user":"alice","pass":"alice-pass"}"#);
    assert_eq!(
        bob.request("STREAMS"),
        Reply::Streams {
            count: 0,
            body: "[]".into()
        }
    );
    std::fs::write(config_path(&dir), auth_config(false)).unwrap();
    signal(server.pid(), libc::SIGHUP);
    // Bob's open connection is told and closed; a write he pipelines now does nothing.
    let reply = bob.reply();
    assert_eq!(error_code(&reply), ErrorCode::AuthFailed, "{reply:?}");
    assert_eq!(bob.try_reply(), None);
    let mut again = server.client();
    again.send_line(r#"CONNECT {"user":"bob","pass":"bob-pass"}"#);
    assert_eq!(error_code(&again.reply()), ErrorCode::AuthFailed);
    // Alice's connection was not dropped.
    assert_eq!(alice.request("PING"), Reply::Pong);
    assert!(matches!(
        alice.append("s", "any", &event("E", serde_json::json!({}))),
        Reply::Appended { .. }
    ));
    // A config that does not parse changes nothing.
    std::fs::write(config_path(&dir), "[[auth.users]]\nname = 1\n").unwrap();
    signal(server.pid(), libc::SIGHUP);
    assert_eq!(alice.request("PING"), Reply::Pong);
    let _alice_again = login(&server, r#"{"user":"alice","pass":"alice-pass"}"#);
    assert!(server.terminate().success());
}

#[test]
fn http_endpoints_want_a_bearer_token_except_health_and_ready() {
    let (server, _dir) = start_with_config(&auth_config(false), &[]);
    assert_eq!(http_get(server.http_addr, "/health").0, 200);
    assert_eq!(http_get(server.http_addr, "/ready").0, 200);
    assert_eq!(http_get_with_token(&server, "/metrics", None).0, 401);
    assert_eq!(
        http_get_with_token(&server, "/metrics", Some("wrong-wrong-wrong-wrong")).0,
        401
    );
    assert_eq!(
        http_get_with_token(&server, "/metrics", Some(SCRAPER_TOKEN)).0,
        200
    );
    assert_eq!(http_get_with_token(&server, "/stats", None).0, 401);
    assert_eq!(
        http_get_with_token(&server, "/stats", Some(SCRAPER_TOKEN)).0,
        403
    );
    let (status, body) = http_get_with_token(&server, "/stats", Some(ADMIN_TOKEN));
    assert_eq!(status, 200);
    assert!(body.contains("\"audit\""));
    let (open, _dir2) = start_with_config(&auth_config(false), &["--metrics-open"]);
    assert_eq!(http_get_with_token(&open, "/metrics", None).0, 200);
    assert_eq!(http_get_with_token(&open, "/stats", None).0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_needs_connect_or_a_bearer_token() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let (server, _dir) =
        tokio::task::spawn_blocking(|| start_with_config(&auth_config(false), &[]))
            .await
            .unwrap();
    let url = format!("ws://{}/ws", server.http_addr);
    // Collects text until `until` appears in it.
    async fn read_until<S>(socket: &mut S, until: &str) -> String
    where
        S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    {
        let mut text = String::new();
        while !text.contains(until) {
            let message = tokio::time::timeout(common::REPLY_TIMEOUT, socket.next()).await;
            match message.expect("reply in time") {
                Some(Ok(Message::Text(t))) => text.push_str(t.as_str()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
        text
    }
    let append = format!(
        "APPEND ws-1 any {}\r\nPING\r\n",
        event("E", serde_json::json!({}))
    );
    let (mut plain, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    plain.send(Message::text(append.clone())).await.unwrap();
    let text = read_until(&mut plain, "PONG").await;
    assert!(text.contains("-ERR auth_required"), "{text}");
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    let (mut authorized, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    authorized.send(Message::text(append)).await.unwrap();
    let text = read_until(&mut authorized, "PONG").await;
    assert!(text.contains("APPENDED ws-1 0 0"), "{text}");
    let mut bad = url.as_str().into_client_request().unwrap();
    bad.headers_mut()
        .insert("Authorization", "Bearer nope".parse().unwrap());
    assert!(
        tokio_tungstenite::connect_async(bad).await.is_err(),
        "401 before the upgrade"
    );
    let count = tokio::task::spawn_blocking(move || event_count(&server, "default"))
        .await
        .unwrap();
    assert_eq!(count, 1, "only the authorized APPEND wrote");
}

#[test]
fn without_users_nothing_changes_and_loopback_does_not_warn() {
    let server = Server::start(&[]);
    let mut client = server.client();
    assert_eq!(client.info["auth_required"], false);
    assert_eq!(client.info["stores"], serde_json::json!(["default"]));
    assert!(matches!(
        client.append("s", "any", &event("E", serde_json::json!({}))),
        Reply::Appended { .. }
    ));
    assert_eq!(http_get(server.http_addr, "/metrics").0, 200);
}

#[test]
fn a_non_loopback_listener_without_auth_warns_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_esdb"))
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("ESDB_LOG_LEVEL", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = common::read_announced_addrs(&mut child);
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WITHOUT AUTHENTICATION"), "{stderr}");
}

#[test]
fn a_bad_auth_section_stops_the_server_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("esdb.toml");
    for bad in [
        "[[auth.users]]\nname = \"a\"\npassword_hash = \"plain-text\"\n",
        "[[auth.tokens]]\nname = \"t\"\ntoken = \"short\"\n",
        "[[auth.tokens]]\nname = \"t\"\ntoken = \"0123456789abcdef0\"\npermissions = { default = [\"reed\"] }\n",
    ] {
        std::fs::write(&path, bad).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_esdb"))
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--config"])
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(!output.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("auth"), "{bad}");
        assert!(!Path::new(&dir.path().join("data")).exists(), "nothing created: {bad}");
    }
}
