//! Hostile WebSocket frames and HTTP requests against the real server (issue 16): fragmented,
//! unmasked, oversized, binary and non-UTF-8 frames; oversized headers, slowloris, floods of
//! connections and 1,000 concurrent `/metrics` requests. Each case asserts the documented
//! answer (PROTOCOL.md "WebSocket transport", "HTTP limits"), that a bystander connection is
//! unharmed, and that the server still serves.
//!
//! WebSocket frames are written by hand over a real socket: a client library would refuse to
//! send most of them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{http_get, Client, Server, REPLY_TIMEOUT};
use esdb_protocol::limits::{MAX_CONTROL_LINE_BYTES, MAX_PAYLOAD_BYTES};

/// The server's largest WebSocket message: one control line, the largest payload and CRLF.
const MAX_WS_MESSAGE_BYTES: usize = MAX_CONTROL_LINE_BYTES + MAX_PAYLOAD_BYTES + 2;
/// The server's limits on a request head (src/http/mod.rs).
const HTTP_MAX_HEADER_BYTES: usize = 16 * 1024;
const HTTP_MAX_HEADERS: usize = 64;
const HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One client frame: FIN bit, opcode, payload, masked with `MASK` unless `masked` is false.
fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    frame_length(&mut out, mask_bit, payload.len() as u64);
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

fn frame_length(out: &mut Vec<u8>, mask_bit: u8, length: u64) {
    if length < 126 {
        out.push(mask_bit | length as u8);
    } else if length <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(length as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&length.to_be_bytes());
    }
}

fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, true)
}

/// A frame from the server.
struct ServerFrame {
    opcode: u8,
    payload: Vec<u8>,
}

/// A WebSocket opened by hand on `/ws`, its frames written and read byte by byte.
struct RawWs {
    stream: TcpStream,
    /// Text and Binary payloads received, concatenated: the protocol byte stream.
    data: Vec<u8>,
    /// Payloads of the Pongs received.
    pongs: Vec<Vec<u8>>,
}

/// What ended a WebSocket: the Close frame's code and reason, or `None` for a bare TCP close.
type Ending = Option<(u16, String)>;

impl RawWs {
    fn open(http_addr: SocketAddr) -> RawWs {
        let (status, stream) = handshake(http_addr, "Sec-WebSocket-Version: 13\r\n");
        assert_eq!(status, 101, "upgrade");
        let mut ws = RawWs {
            stream,
            data: Vec::new(),
            pongs: Vec::new(),
        };
        ws.read_until("INFO ");
        ws
    }

    /// Writes bytes; the server may already have closed (a write past its refusal may fail).
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut bytes = vec![0; n];
        match self.stream.read_exact(&mut bytes) {
            Ok(()) => Some(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("no frame within {REPLY_TIMEOUT:?}: the server hangs")
            }
            Err(_) => None,
        }
    }

    /// The next frame, or `None` once the TCP connection ended.
    fn read_frame(&mut self) -> Option<ServerFrame> {
        let head = self.read_exact(2)?;
        assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
        let length = match head[1] & 0x7f {
            126 => u16::from_be_bytes(self.read_exact(2)?.try_into().unwrap()) as usize,
            127 => u64::from_be_bytes(self.read_exact(8)?.try_into().unwrap()) as usize,
            n => n as usize,
        };
        let payload = self.read_exact(length)?;
        Some(ServerFrame {
            opcode: head[0] & 0x0f,
            payload,
        })
    }

    /// Handles one frame: data is collected, Pongs kept; returns the ending at a Close.
    fn take_frame(&mut self) -> Option<Ending> {
        let Some(frame) = self.read_frame() else {
            return Some(None);
        };
        match frame.opcode {
            TEXT | BINARY | CONTINUATION => self.data.extend_from_slice(&frame.payload),
            PONG => self.pongs.push(frame.payload),
            CLOSE if frame.payload.len() >= 2 => {
                let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                let reason = String::from_utf8(frame.payload[2..].to_vec()).expect("UTF-8");
                return Some(Some((code, reason)));
            }
            CLOSE => return Some(Some((1005, String::new()))),
            _ => {}
        }
        None
    }

    /// Reads until the protocol output holds `needle`; panics if the WebSocket ends first.
    fn read_until(&mut self, needle: &str) {
        while !self.text().contains(needle) {
            if let Some(ending) = self.take_frame() {
                panic!(
                    "ended ({ending:?}) before {needle:?}; got {:?}",
                    self.text()
                );
            }
        }
    }

    /// Reads until the server closes; the Close's code and reason.
    fn read_until_close(&mut self) -> Ending {
        loop {
            if let Some(ending) = self.take_frame() {
                return ending;
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Sends a WebSocket handshake for `/ws` with `extra` headers; the status and the socket.
fn handshake(http_addr: SocketAddr, extra: &str) -> (u16, TcpStream) {
    let mut stream = TcpStream::connect(http_addr).expect("connect http");
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {http_addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).expect("handshake");
    let head = read_head(&mut stream);
    (status_of(&head), stream)
}

/// Reads a response head byte by byte (so nothing after it is consumed).
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("response head cut short ({other:?}): {head:?}"),
        }
    }
    String::from_utf8(head).expect("UTF-8 head")
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"))
}

/// A TCP and a WebSocket connection opened before the abuse, checked after it.
struct Bystanders {
    tcp: Client,
    ws: RawWs,
}

impl Bystanders {
    fn open(server: &Server) -> Bystanders {
        Bystanders {
            tcp: server.client(),
            ws: RawWs::open(server.http_addr),
        }
    }

    /// The bystanders still work, and new connections are served on both ports.
    fn assert_unharmed(mut self, server: &Server) {
        assert_eq!(self.tcp.request("PING"), esdb_protocol::Reply::Pong);
        self.ws.send(&masked(true, TEXT, b"PING\r\n"));
        self.ws.read_until("PONG\r\n");
        assert_eq!(server.client().request("PING"), esdb_protocol::Reply::Pong);
        let mut fresh = RawWs::open(server.http_addr);
        fresh.send(&masked(true, BINARY, b"PING\r\n"));
        fresh.read_until("PONG\r\n");
        assert_eq!(http_get(server.http_addr, "/health"), (200, "ok\n".into()));
    }
}

/// The stream does not exist: nothing of the refused request was written.
fn assert_not_written(server: &Server, stream: &str) {
    let reply = server.client().request(&format!("VERSION {stream}"));
    assert!(
        matches!(reply, esdb_protocol::Reply::Version { version: -1, .. }),
        "{stream}: {reply:?}"
    );
}

fn append_request(stream: &str, payload: &[u8]) -> Vec<u8> {
    let mut request = format!("APPEND {stream} any {}\r\n", payload.len()).into_bytes();
    request.extend_from_slice(payload);
    request.extend_from_slice(b"\r\n");
    request
}

/// A request split over a Text frame and two continuations, with a Ping between them (control
/// frames may interleave a fragmented message), is one request: it is answered and written.
#[test]
fn a_fragmented_message_is_reassembled_and_control_frames_may_interleave() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let mut ws = RawWs::open(server.http_addr);
    let request = append_request(
        "fragmented",
        common::event("Split", serde_json::json!({})).as_bytes(),
    );
    let (first, rest) = request.split_at(10);
    let (second, third) = rest.split_at(20);
    ws.send(&masked(false, TEXT, first));
    ws.send(&masked(true, PING, b"still there?"));
    ws.send(&masked(false, CONTINUATION, second));
    ws.send(&masked(true, CONTINUATION, third));
    ws.read_until("APPENDED fragmented 0 0");
    assert_eq!(ws.pongs, vec![b"still there?".to_vec()]);
    assert_eq!(server.client().read_stream("fragmented", 0, 10).len(), 1);
    bystanders.assert_unharmed(&server);
}

/// A continuation frame with no message to continue fails the WebSocket with 1002 (protocol
/// error), after the replies to what came before it.
#[test]
fn a_stray_continuation_frame_fails_the_websocket_with_1002() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let mut ws = RawWs::open(server.http_addr);
    ws.send(&masked(true, TEXT, b"PING\r\n"));
    ws.send(&masked(true, CONTINUATION, b"PING\r\n"));
    let ending = ws.read_until_close();
    assert_eq!(ws.text().matches("PONG\r\n").count(), 1, "{}", ws.text());
    let (code, reason) = ending.expect("a Close frame");
    assert_eq!(code, 1002, "{reason}");
    assert!(reason.contains("continue"), "{reason}");
    bystanders.assert_unharmed(&server);
}

/// A new message started while a fragmented one is unfinished fails with 1002, and the
/// unfinished message, a whole APPEND, is never applied.
#[test]
fn an_interrupted_fragmented_message_fails_with_1002_and_writes_nothing() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let mut ws = RawWs::open(server.http_addr);
    let request = append_request(
        "interrupted",
        common::event("Lost", serde_json::json!({})).as_bytes(),
    );
    ws.send(&masked(false, TEXT, &request));
    ws.send(&masked(true, BINARY, b"PING\r\n"));
    let (code, _) = ws.read_until_close().expect("a Close frame");
    assert_eq!(code, 1002);
    assert!(!ws.text().contains("APPENDED"), "{}", ws.text());
    assert_not_written(&server, "interrupted");
    bystanders.assert_unharmed(&server);
}

/// A client frame without a mask fails the WebSocket with 1002 (RFC 6455 §5.1: the server
/// must close); the request in it is not served.
#[test]
fn an_unmasked_client_frame_fails_the_websocket_with_1002() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let mut ws = RawWs::open(server.http_addr);
    let request = append_request(
        "unmasked",
        common::event("Bare", serde_json::json!({})).as_bytes(),
    );
    ws.send(&frame(true, TEXT, &request, false));
    let (code, reason) = ws.read_until_close().expect("a Close frame");
    assert_eq!(code, 1002, "{reason}");
    assert!(reason.contains("unmasked"), "{reason}");
    assert!(!ws.text().contains("APPENDED"), "{}", ws.text());
    assert_not_written(&server, "unmasked");
    bystanders.assert_unharmed(&server);
}

/// Binary messages carry the protocol like Text ones, whatever their bytes: a payload that is
/// not UTF-8 is the protocol's business (`-ERR invalid_json`), and the connection stays open.
#[test]
fn binary_frames_carry_the_protocol_whatever_their_bytes() {
    let server = Server::start(&[]);
    let mut ws = RawWs::open(server.http_addr);
    ws.send(&masked(true, BINARY, b"PING\r\n"));
    ws.read_until("PONG\r\n");
    ws.send(&masked(
        true,
        BINARY,
        &append_request("binary", b"\xff\xfe\x00{"),
    ));
    ws.read_until("-ERR invalid_json");
    ws.send(&masked(true, BINARY, b"PING\r\n"));
    ws.read_until("invalid_json");
    while ws.text().matches("PONG\r\n").count() < 2 {
        assert!(
            ws.take_frame().is_none(),
            "open after the error: {}",
            ws.text()
        );
    }
    assert_not_written(&server, "binary");
}

/// A Text message that is not UTF-8 fails the WebSocket with 1007 (invalid data), and its
/// requests are not served: the message is refused whole.
#[test]
fn a_text_message_that_is_not_utf8_fails_with_1007() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let mut ws = RawWs::open(server.http_addr);
    ws.send(&masked(true, TEXT, b"PING\r\nPING\r\n\xc3("));
    let (code, reason) = ws.read_until_close().expect("a Close frame");
    assert_eq!(code, 1007, "{reason}");
    assert!(!ws.text().contains("PONG"), "{}", ws.text());
    bystanders.assert_unharmed(&server);
}

/// A frame announcing more than the largest message is refused from its header with 1009
/// (too big): the server does not wait for, nor buffer, the payload. A 64-bit length with its
/// top bit set (forbidden by RFC 6455) is refused likewise.
#[test]
fn an_oversized_frame_is_refused_from_its_header_with_1009() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    for length in [MAX_WS_MESSAGE_BYTES as u64 + 1, 1 << 40, u64::MAX] {
        let mut ws = RawWs::open(server.http_addr);
        let mut header = vec![0x80 | BINARY];
        frame_length(&mut header, 0x80, length);
        header.extend_from_slice(&MASK);
        header.extend_from_slice(b"APPEND huge any 5\r\n");
        ws.send(&header);
        let (code, reason) = ws.read_until_close().expect("a Close frame");
        assert_eq!(code, 1009, "length {length}: {reason}");
        assert!(
            reason.contains(&MAX_WS_MESSAGE_BYTES.to_string()),
            "{reason}"
        );
    }
    // A message with the largest payload, in one frame, is taken.
    let mut ws = RawWs::open(server.http_addr);
    let data = "x".repeat(MAX_PAYLOAD_BYTES - 100);
    let payload = common::event("Big", serde_json::Value::String(data));
    assert!(payload.len() <= MAX_PAYLOAD_BYTES);
    ws.send(&masked(
        true,
        BINARY,
        &append_request("largest", payload.as_bytes()),
    ));
    ws.read_until("APPENDED largest 0 0");
    bystanders.assert_unharmed(&server);
}

/// A message over the limit sent as many small fragments is refused with 1009 as soon as its
/// fragments add up to more than the limit; nothing of it is served.
#[test]
fn a_message_over_the_limit_in_small_fragments_is_refused_with_1009() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let mut ws = RawWs::open(server.http_addr);
    let fragment = vec![b' '; 64 * 1024];
    let mut sent = 0;
    ws.send(&masked(false, BINARY, b"PING\r\n"));
    while sent <= MAX_WS_MESSAGE_BYTES {
        ws.send(&masked(false, CONTINUATION, &fragment));
        sent += fragment.len();
    }
    let (code, reason) = ws.read_until_close().expect("a Close frame");
    assert_eq!(code, 1009, "{reason}");
    assert!(!ws.text().contains("PONG"), "{}", ws.text());
    bystanders.assert_unharmed(&server);
}

/// Control frames that break RFC 6455 §5.5 and frames with reserved bits or opcodes each fail
/// the WebSocket with 1002.
#[test]
fn malformed_control_frames_and_reserved_bits_fail_with_1002() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ping over 125 bytes", masked(true, PING, &[b'p'; 126])),
        ("fragmented ping", masked(false, PING, b"p")),
        ("RSV1 without an extension", {
            let mut frame = masked(true, TEXT, b"PING\r\n");
            frame[0] |= 0x40;
            frame
        }),
        ("reserved data opcode 3", masked(true, 0x3, b"PING\r\n")),
        ("reserved control opcode 11", masked(true, 0xB, b"")),
    ];
    for (name, bytes) in cases {
        let mut ws = RawWs::open(server.http_addr);
        ws.send(&bytes);
        let ending = ws.read_until_close();
        assert!(matches!(ending, Some((1002, _))), "{name}: {ending:?}");
    }
    bystanders.assert_unharmed(&server);
}

/// Handshakes that are not WebSocket handshakes get an HTTP 4xx, not an upgrade or a hang.
#[test]
fn bad_websocket_handshakes_are_refused_with_4xx() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let (status, _) = handshake(server.http_addr, "Sec-WebSocket-Version: 8\r\n");
    assert!((400..500).contains(&status), "version 8: {status}");
    let (status, _) = handshake(server.http_addr, "");
    assert!((400..500).contains(&status), "no version: {status}");
    let (status, _) = http_get(server.http_addr, "/ws");
    assert!((400..500).contains(&status), "plain GET: {status}");
    bystanders.assert_unharmed(&server);
}

/// Sends a request head with the given headers; returns the response status and whether the
/// server then closed the connection.
fn request_with_headers(http_addr: SocketAddr, headers: &[String]) -> (u16, bool) {
    let mut stream = TcpStream::connect(http_addr).expect("connect http");
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let mut request = format!("GET /health HTTP/1.1\r\nHost: {http_addr}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let head = read_head(&mut stream);
    let status = status_of(&head);
    let mut rest = Vec::new();
    // After a 200 the connection is kept alive (the read times out); after a 431 it closes.
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let closed = loop {
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    (status, closed)
}

/// A request head over 16 KiB, or with more than 64 headers, gets `431` and a close; one just
/// within both limits is served.
#[test]
fn oversized_request_headers_get_431_and_a_close() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let addr = server.http_addr;
    let big = |bytes: usize| vec![format!("X-Padding: {}", "a".repeat(bytes))];
    assert_eq!(
        request_with_headers(addr, &big(HTTP_MAX_HEADER_BYTES / 2)).0,
        200
    );
    assert_eq!(
        request_with_headers(addr, &big(HTTP_MAX_HEADER_BYTES)),
        (431, true)
    );
    let many = |count: usize| -> Vec<String> {
        (0..count).map(|i| format!("X-Header-{i}: {i}")).collect()
    };
    // `Host` is one of the 64.
    assert_eq!(
        request_with_headers(addr, &many(HTTP_MAX_HEADERS - 1)).0,
        200
    );
    assert_eq!(
        request_with_headers(addr, &many(HTTP_MAX_HEADERS)),
        (431, true)
    );
    // A WebSocket handshake is held to the same limits.
    let padding = format!("X-Padding: {}\r\n", "a".repeat(HTTP_MAX_HEADER_BYTES));
    let (status, _) = handshake(addr, &format!("Sec-WebSocket-Version: 13\r\n{padding}"));
    assert_eq!(status, 431);
    bystanders.assert_unharmed(&server);
}

/// A client that sends its request head a byte at a time (slowloris) is cut off when the
/// header timeout (10 s from the request's start) runs out, however steadily it sends; other
/// clients are served meanwhile.
#[test]
fn a_slowloris_client_is_cut_off_at_the_header_timeout() {
    let server = Server::start(&[]);
    let bystanders = Bystanders::open(&server);
    let mut slow = TcpStream::connect(server.http_addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
        server.http_addr
    );
    let started = Instant::now();
    slow.write_all(head.as_bytes()).unwrap();
    let mut closed_after = None;
    // Bounded: the cut is due after 10 s; give up after three times that.
    while started.elapsed() < 3 * HTTP_HEADER_READ_TIMEOUT {
        if slow.write_all(b"a").is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut byte = [0u8; 64];
        match slow.read(&mut byte) {
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(n) => panic!("a response to a request never finished: {:?}", &byte[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
        }
        // Others are served while it dribbles.
        if started.elapsed() < Duration::from_secs(2) {
            assert_eq!(http_get(server.http_addr, "/health").0, 200);
        }
    }
    let closed_after = closed_after.expect("the slow client was never cut off");
    assert!(
        closed_after >= HTTP_HEADER_READ_TIMEOUT - Duration::from_millis(500),
        "cut after {closed_after:?}, before the documented timeout"
    );
    bystanders.assert_unharmed(&server);
}

/// Opens `count` HTTP connections that send nothing.
fn silent_http_connections(http_addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| TcpStream::connect(http_addr).expect("connect"))
        .collect()
}

/// The HTTP connection past `--max-http-connections` is answered `503` and closed without
/// being read; the protocol port (TCP and an already open WebSocket) is unaffected, and once
/// connections close, requests are served again.
#[test]
fn the_http_connection_past_the_limit_gets_503_and_a_close() {
    let server = Server::start(&["--max-http-connections", "8"]);
    let bystanders = Bystanders::open(&server);
    // The WebSocket bystander has left the HTTP count (it is a protocol connection now).
    let silent = silent_http_connections(server.http_addr, 8);
    let mut extra = TcpStream::connect(server.http_addr).expect("connect");
    extra.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let mut response = String::new();
    extra
        .read_to_string(&mut response)
        .expect("a response and a close");
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert!(response.contains("retry-after: 1"), "{response}");
    assert!(
        response.ends_with("too many HTTP connections open\n"),
        "{response}"
    );
    let metrics_refused = {
        drop(silent);
        // The server notices the closed connections asynchronously: retry, bounded.
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let (status, body) = http_get(server.http_addr, "/metrics");
            if status == 200 {
                break body;
            }
            assert!(Instant::now() < deadline, "still refused: {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(
        metrics_refused.lines().any(
            |line| line.starts_with("esdb_http_connection_refused_total ")
                && line != "esdb_http_connection_refused_total 0"
        ),
        "the refusal is counted"
    );
    bystanders.assert_unharmed(&server);
}

/// A server process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Under a hard limit of 256 descriptors, 300 HTTP connections that never send a byte do not
/// starve the protocol port: the HTTP port takes its share and refuses the rest with `503`,
/// and a protocol client is still greeted and served.
#[test]
fn a_flood_of_silent_http_connections_cannot_take_the_protocol_port_s_descriptors() {
    let temp = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_esdb"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(temp.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("ESDB_LOG_LEVEL", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn esdb");
    let (addr, http_addr) = common::read_announced_addrs(&mut child);
    let _child = Killed(child);
    let silent = silent_http_connections(http_addr, 300);
    // Greeted well within the 10 s header timeout: the greeting cannot be waiting for the
    // silent connections to be cut and their descriptors freed.
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(HTTP_HEADER_READ_TIMEOUT / 2))
        .unwrap();
    let mut greeting = [0u8; 5];
    stream
        .read_exact(&mut greeting)
        .expect("INFO while the HTTP port is flooded, not a wait for a free descriptor");
    assert_eq!(&greeting, b"INFO ");
    // Each refused one is answered and closed; the ones kept wait, silent (until the header
    // timeout closes them without an answer).
    let mut refused = 0;
    for mut stream in silent.iter() {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut response = Vec::new();
        match stream.read_to_end(&mut response) {
            Ok(_) if response.is_empty() => {}
            Ok(_) => {
                assert!(response.starts_with(b"HTTP/1.1 503 "), "{response:?}");
                refused += 1;
            }
            Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock),
        }
    }
    assert!(
        refused >= 200,
        "only {refused} of 300 refused under 256 descriptors"
    );
    let mut client = Client::connect(addr);
    assert_eq!(client.request("PING"), esdb_protocol::Reply::Pong);
    let payload = common::event("Still", serde_json::json!({}));
    assert!(matches!(
        client.append("after-flood", "any", &payload),
        esdb_protocol::Reply::Appended { .. }
    ));
    drop(silent);
}

/// Raises this process's soft descriptor limit to its hard limit (the test holds 1,000
/// sockets).
fn raise_own_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 2048,
        "needs 2048 descriptors, has {}",
        limit.rlim_cur
    );
}

/// 1,000 `/metrics` requests open at once (all connected, then all sent, then all read) are
/// all answered 200 with the metrics, and the protocol port serves meanwhile.
#[test]
fn a_thousand_concurrent_metrics_requests_are_all_served() {
    const REQUESTS: usize = 1_000;
    raise_own_descriptor_limit();
    let server = Server::start(&["--metrics-open"]);
    let bystanders = Bystanders::open(&server);
    let (addr, http_addr) = (server.addr, server.http_addr);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bodies = runtime.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sockets = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            sockets.push(
                tokio::net::TcpStream::connect(http_addr)
                    .await
                    .expect("connect"),
            );
        }
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: {http_addr}\r\nConnection: close\r\n\r\n");
        for socket in &mut sockets {
            socket.write_all(request.as_bytes()).await.expect("send");
        }
        // All 1,000 are open and asked; the protocol port serves meanwhile.
        assert_eq!(
            Client::connect(addr).request("PING"),
            esdb_protocol::Reply::Pong
        );
        let reads = sockets.into_iter().map(|mut socket| {
            tokio::spawn(async move {
                let mut response = Vec::new();
                tokio::time::timeout(REPLY_TIMEOUT * 3, socket.read_to_end(&mut response))
                    .await
                    .expect("a response in time")
                    .expect("read");
                String::from_utf8(response).expect("UTF-8")
            })
        });
        let mut bodies = Vec::with_capacity(REQUESTS);
        for read in reads.collect::<Vec<_>>() {
            bodies.push(read.await.expect("task"));
        }
        bodies
    });
    for response in &bodies {
        assert!(
            response.starts_with("HTTP/1.1 200 "),
            "{}",
            &response[..response.len().min(200)]
        );
        assert!(
            response.contains("esdb_connection_open_connections"),
            "metrics in the body"
        );
    }
    assert_eq!(bodies.len(), REQUESTS);
    bystanders.assert_unharmed(&server);
}
