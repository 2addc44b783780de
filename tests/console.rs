//! The web console as the server serves it (the page itself is driven in a browser by
//! `tests/console/run.sh`): the page and every file it loads, with their content types;
//! `/console/config`; and read-only WebSocket connections (`/ws?readonly=1`), which the page
//! uses and which must refuse every write while reads and catch-up subscriptions work.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::ws::WsClient;
use common::{event, http_get, Server, REPLY_TIMEOUT};
use esdb_protocol::{ErrorCode, Reply};
use tokio_tungstenite::tungstenite::Message;

/// A GET over a real socket: (status, lower-cased headers, body).
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect http");
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(response[..split].to_vec()).expect("UTF-8 headers");
    let body = response[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn expected_content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "text/html; charset=utf-8",
    }
}

/// The `/console/…` files a page or script refers to: `src`/`href` attributes and module
/// imports (`from './x.js'`).
fn references(body: &str) -> Vec<String> {
    let attribute = regex::Regex::new(r#"(?:src|href)="(/console/[^"]+)""#).unwrap();
    let import = regex::Regex::new(r#"from '\./([^']+)'"#).unwrap();
    attribute
        .captures_iter(body)
        .map(|c| c[1].to_owned())
        .chain(
            import
                .captures_iter(body)
                .map(|c| format!("/console/{}", &c[1])),
        )
        .collect()
}

#[test]
fn root_serves_the_page_and_every_file_it_loads_with_its_content_type() {
    let server = Server::start(&[]);
    let (status, headers, body) = get(server.http_addr, "/");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&headers, "content-security-policy").expect("a CSP");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains(r#"<script type="module" src="/console/app.js"></script>"#),
        "{html}"
    );

    // Everything reachable from the page, each file fetched once.
    let mut seen = BTreeSet::from(["/".to_owned()]);
    let mut queue: VecDeque<String> = references(&html).into();
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let (status, headers, body) = get(server.http_addr, &path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            Some(expected_content_type(&path)),
            "{path}"
        );
        assert_eq!(
            header(&headers, "cache-control"),
            Some("no-cache"),
            "{path}"
        );
        assert!(!body.is_empty(), "{path}");
        if path.ends_with(".js") {
            queue.extend(references(
                std::str::from_utf8(&body).expect("UTF-8 script"),
            ));
        }
    }
    for expected in [
        "/console/app.js",
        "/console/client.js",
        "/console/console.css",
        "/console/favicon.svg",
        "/console/tail.js",
        "/console/streams.js",
    ] {
        assert!(seen.contains(expected), "{expected} not loaded: {seen:?}");
    }
    // And the embedded set holds nothing the page does not load.
    let embedded: BTreeSet<String> = esdb::http::console::ASSETS
        .iter()
        .map(|asset| asset.path.to_owned())
        .collect();
    assert_eq!(embedded, seen);

    let (status, _, _) = get(server.http_addr, "/console/nope.js");
    assert_eq!(status, 404);
}

#[test]
fn console_config_tells_whether_writes_are_allowed() {
    let writes = |server: &Server| -> serde_json::Value {
        let (status, headers, body) = get(server.http_addr, "/console/config");
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let config: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(config["stores"], serde_json::json!(["default"]));
        assert_eq!(config["store"], "default");
        assert_eq!(config["cluster"]["mode"], "single_node");
        config["writes"].clone()
    };
    assert_eq!(writes(&Server::start(&[])), false);
    assert_eq!(writes(&Server::start(&["--console-writes"])), true);
    assert_eq!(writes(&Server::start(&["--console-writes=false"])), false);

    let temp = tempfile::tempdir().unwrap();
    let (mut child, _, http_addr) = common::spawn_with_http(
        &temp.path().join("data"),
        &[],
        &[("ESDB_CONSOLE_WRITES", "true")],
    );
    let (status, body) = http_get(http_addr, "/console/config");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["writes"], true, "from ESDB_CONSOLE_WRITES");
}

fn read_only_error(reply: Option<Reply>, operation: &str) {
    match reply {
        Some(Reply::Err(error)) => {
            assert_eq!(error.code, ErrorCode::ReadOnly, "{operation}: {error}");
            assert!(error.message.starts_with(operation), "{error}");
            assert!(error.message.contains("read-only"), "{error}");
        }
        other => panic!("{operation}: expected -ERR read_only, got {other:?}"),
    }
}

async fn send(ws: &mut WsClient, text: &str) {
    ws.send(Message::text(text.to_owned())).await;
}

#[tokio::test]
async fn a_read_only_websocket_refuses_writes_and_serves_reads() {
    let server = Server::start(&[]);
    let mut tcp = server.client();
    let payload = event("Created", serde_json::json!({"name": "Ada"}));
    assert!(matches!(
        tcp.append("user-1", "no_stream", &payload),
        Reply::Appended { .. }
    ));

    let url = format!("ws://{}/ws?readonly=1", server.http_addr);
    let mut ws = WsClient::connect_to(&url).await;
    assert!(matches!(ws.reply().await, Some(Reply::Info(_))));

    // Each write is refused, in request order with the reads pipelined around it.
    let append = format!("APPEND user-1 any {}\r\n{payload}\r\n", payload.len());
    send(
        &mut ws,
        &format!("VERSION user-1\r\n{append}READ user-1 0 10\r\n"),
    )
    .await;
    assert_eq!(
        ws.reply().await,
        Some(Reply::Version {
            stream: "user-1".into(),
            version: 0
        })
    );
    read_only_error(ws.reply().await, "APPEND");
    match ws.reply().await {
        Some(Reply::Events { count: 1, body }) => {
            let events: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(events[0]["data"], serde_json::json!({"name": "Ada"}));
        }
        other => panic!("expected the event, got {other:?}"),
    }
    for (request, operation) in [
        (
            "APPEND other-1 any {\"event_type\":\"A\",\"data\":{}}\r\n",
            "APPEND",
        ),
        ("DELETE user-1\r\n", "DELETE"),
        ("SNAP SAVE user-1 0 {\"data\":{}}\r\n", "SNAP"),
        ("SNAP DELETE user-1\r\n", "SNAP"),
        ("SUB p1 stream user-1 group-1\r\n", "SUB"),
        ("PSUB REPLAY group-1\r\n", "PSUB"),
        ("PSUB DELETE group-1\r\n", "PSUB"),
        ("ACK p1 0\r\n", "ACK"),
        ("NACK p1 park 0\r\n", "NACK"),
    ] {
        send(&mut ws, request).await;
        read_only_error(ws.reply().await, operation);
    }

    // Reads, listings and catch-up subscriptions work; the connection stays open.
    send(
        &mut ws,
        "STREAMS\r\nPSUB LIST\r\nSNAP LIST user-1\r\nSTATS\r\n",
    )
    .await;
    assert!(matches!(
        ws.reply().await,
        Some(Reply::Streams { count: 1, .. })
    ));
    assert!(matches!(
        ws.reply().await,
        Some(Reply::Subs { count: 0, .. })
    ));
    assert!(matches!(
        ws.reply().await,
        Some(Reply::Snapshots { count: 0, .. })
    ));
    assert!(matches!(ws.reply().await, Some(Reply::Stats { .. })));
    send(&mut ws, "SUB t1 stream $all\r\n").await;
    assert_eq!(ws.reply().await, Some(Reply::Ok));
    assert!(matches!(
        ws.reply().await,
        Some(Reply::Event { position: 0, .. })
    ));
    assert!(matches!(ws.reply().await, Some(Reply::Live { .. })));

    // Nothing was written: the stream is as the TCP client left it, no group exists.
    assert_eq!(
        tcp.request("VERSION user-1"),
        Reply::Version {
            stream: "user-1".into(),
            version: 0
        }
    );
    assert!(matches!(
        tcp.request("VERSION other-1"),
        Reply::Version { version: -1, .. }
    ));
    assert!(matches!(
        tcp.request("PSUB LIST"),
        Reply::Subs { count: 0, .. }
    ));

    // A connection opened without the flag (or with readonly=0) writes as usual.
    for url in [
        format!("ws://{}/ws", server.http_addr),
        format!("ws://{}/ws?readonly=0", server.http_addr),
    ] {
        let mut writer = WsClient::connect_to(&url).await;
        assert!(matches!(writer.reply().await, Some(Reply::Info(_))));
        send(&mut writer, &append).await;
        assert!(
            matches!(writer.reply().await, Some(Reply::Appended { .. })),
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_websocket_query_other_than_readonly_is_refused_before_the_upgrade() {
    let server = Server::start(&[]);
    for query in ["readonly=yes", "read_only=1", "readonly=1&x=1"] {
        let url = format!("ws://{}/ws?{query}", server.http_addr);
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "{query}");
                let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
                assert!(body.contains("readonly"), "{query}: {body}");
            }
            other => panic!("{query}: expected HTTP 400, got {other:?}"),
        }
    }
}
