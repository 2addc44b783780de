//! The malformed-input catalogue: every case in `tests/malformed/*.case` is sent to the real
//! server, over TCP and over WebSocket, and must be answered with exactly the `-ERR` codes it
//! names, close the connection or not as it says, and write nothing.
//!
//! A case file is lines of `<directive> <argument>` (`#` starts a comment):
//! - `send <text>`: bytes, with escapes `\r \n \t \\ \xHH \u{H…}` (the argument runs to the end
//!   of the line, trailing spaces included);
//! - `repeat <n> <text>`: the text, escaped likewise, `n` times;
//! - `random <n> <seed>`: `n` pseudo-random bytes from a seeded generator;
//! - `sized <header>` … `end-sized`: the parts between form a payload; the header's `{#}`
//!   becomes its length, and CRLF follows it;
//! - `expect <code>`: the next reply is `-ERR <code>` (repeatable, in order; `*` allows any
//!   number of errors of any code);
//! - `closes yes|no|any`; `message <text>`: the first error's message contains it.
//!
//! After the case's bytes, a connection that must stay open is sent `PING`: every reply before
//! its `PONG` must be an expected error. `tests/malformed/generate.py` wrote the cases.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use esdb_protocol::{Reply, ReplyDecoder};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::Server;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Closes {
    Yes,
    No,
    Any,
}

#[derive(Debug)]
struct Case {
    name: String,
    bytes: Vec<u8>,
    expect: Vec<String>,
    closes: Closes,
    message: Option<String>,
}

fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next().expect("escape") {
            'r' => out.push(b'\r'),
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            '\\' => out.push(b'\\'),
            'x' => {
                let hex: String = [chars.next().unwrap(), chars.next().unwrap()]
                    .iter()
                    .collect();
                out.push(u8::from_str_radix(&hex, 16).expect("\\xHH"));
            }
            'u' => {
                assert_eq!(chars.next(), Some('{'));
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap();
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            other => panic!("unknown escape \\{other}"),
        }
    }
    out
}

/// xorshift64*: deterministic bytes for the random stream.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn parse_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).expect("case file");
    let mut case = Case {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        bytes: Vec::new(),
        expect: Vec::new(),
        closes: Closes::No,
        message: None,
    };
    let mut sized: Option<(String, Vec<u8>)> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (directive, argument) = line.split_once(' ').unwrap_or((line, ""));
        let target = match &mut sized {
            Some((_, payload)) => payload,
            None => &mut case.bytes,
        };
        match directive {
            "send" => target.extend(unescape(argument)),
            "repeat" => {
                let (count, text) = argument.split_once(' ').expect("repeat <n> <text>");
                target.extend(unescape(text).repeat(count.parse().expect("count")));
            }
            "random" => {
                let (len, seed) = argument.split_once(' ').expect("random <n> <seed>");
                target.extend(random_bytes(len.parse().unwrap(), seed.parse().unwrap()));
            }
            "sized" => sized = Some((argument.to_owned(), Vec::new())),
            "end-sized" => {
                let (header, payload) = sized.take().expect("sized before end-sized");
                let header = header.replace("{#}", &payload.len().to_string());
                case.bytes.extend(unescape(&header));
                case.bytes.extend(b"\r\n");
                case.bytes.extend(payload);
                case.bytes.extend(b"\r\n");
            }
            "expect" => case.expect.push(argument.to_owned()),
            "closes" => {
                case.closes = match argument {
                    "yes" => Closes::Yes,
                    "no" => Closes::No,
                    "any" => Closes::Any,
                    other => panic!("closes {other}"),
                }
            }
            "message" => case.message = Some(argument.to_owned()),
            other => panic!("{}: unknown directive {other}", path.display()),
        }
    }
    assert!(
        sized.is_none(),
        "{}: sized without end-sized",
        path.display()
    );
    assert!(
        !case.expect.is_empty(),
        "{}: expects nothing",
        path.display()
    );
    case
}

fn cases() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/malformed")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "case"))
        .collect();
    paths.sort();
    paths.iter().map(|path| parse_case(path)).collect()
}

/// What the server answered to a case: the replies before the sentinel `PONG` (or before the
/// close), and whether it closed.
struct Outcome {
    replies: Vec<Reply>,
    closed: bool,
}

/// Whether the outcome is what the case expects; the mismatch, if not.
fn check(case: &Case, transport: &str, outcome: &Outcome) -> Result<(), String> {
    let context = format!("case {} over {transport}", case.name);
    let mut codes = Vec::new();
    for reply in &outcome.replies {
        match reply {
            Reply::Err(error) => codes.push(error.code.as_str().to_owned()),
            other => {
                return Err(format!(
                    "{context}: a reply that is not an error: {other:?}"
                ))
            }
        }
    }
    if case.expect != ["*"] && codes != case.expect {
        return Err(format!(
            "{context}: expected {:?}, got {:?}",
            case.expect, outcome.replies
        ));
    }
    let closes_right = match case.closes {
        Closes::Yes => outcome.closed,
        Closes::No => !outcome.closed,
        Closes::Any => true,
    };
    if !closes_right {
        return Err(format!(
            "{context}: closed is {}, expected {:?}",
            outcome.closed, case.closes
        ));
    }
    if let (Some(needle), Some(Reply::Err(error))) = (&case.message, outcome.replies.first()) {
        if !error.message.contains(needle.as_str()) {
            return Err(format!(
                "{context}: message {:?} lacks {needle:?}",
                error.message
            ));
        }
    }
    Ok(())
}

/// Decodes replies from `buffer` into `outcome` until the sentinel `PONG`; true when seen.
fn drain(decoder: &mut ReplyDecoder, buffer: &mut BytesMut, outcome: &mut Outcome) -> bool {
    while let Some(reply) = decoder
        .decode(buffer)
        .expect("the server's replies are well-formed")
    {
        match reply {
            Reply::Pong => return true,
            Reply::Ping => {}
            other => outcome.replies.push(other),
        }
    }
    false
}

fn run_tcp(server: &Server, case: &Case) -> Outcome {
    let client = server.client();
    let mut writer = client.stream.try_clone().expect("clone");
    let bytes = case.bytes.clone();
    let sentinel = case.closes != Closes::Yes;
    // Written from another thread: the server answers while it reads, and a client that
    // does not read would stall it.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
        if sentinel {
            let _ = writer.write_all(b"\r\nPING\r\n");
        }
    });
    let mut stream = client.stream;
    let mut decoder = ReplyDecoder::new();
    let mut buffer = BytesMut::new();
    let mut outcome = Outcome {
        replies: Vec::new(),
        closed: false,
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if drain(&mut decoder, &mut buffer, &mut outcome) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                outcome.closed = true;
                break;
            }
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("case {}: no reply in time", case.name)
            }
            // Reset: the server closed while our bytes were still arriving.
            Err(_) => {
                outcome.closed = true;
                break;
            }
        }
    }
    let _ = sender.join();
    outcome
}

async fn run_ws(server: &Server, case: &Case) -> Outcome {
    let url = format!("ws://{}/ws", server.http_addr);
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("handshake");
    let (mut sink, mut stream) = socket.split();
    let bytes = case.bytes.clone();
    let sentinel = case.closes != Closes::Yes;
    let sender = tokio::spawn(async move {
        // Messages of 64 KiB: under the server's message limit, and one request may span
        // several.
        for chunk in bytes.chunks(64 * 1024) {
            if sink.send(Message::binary(chunk.to_vec())).await.is_err() {
                return;
            }
        }
        if sentinel {
            let _ = sink.send(Message::binary(&b"\r\nPING\r\n"[..])).await;
        }
        // Keep the sink open until the reader is done with the connection.
        std::future::pending::<()>().await;
    });
    let mut decoder = ReplyDecoder::new();
    let mut buffer = BytesMut::new();
    let mut outcome = Outcome {
        replies: Vec::new(),
        closed: false,
    };
    let mut seen_info = false;
    loop {
        if !seen_info {
            if let Some(reply) = decoder.decode(&mut buffer).expect("well-formed") {
                assert!(matches!(reply, Reply::Info(_)), "INFO first, got {reply:?}");
                seen_info = true;
                continue;
            }
        } else if drain(&mut decoder, &mut buffer, &mut outcome) {
            break;
        }
        let message = tokio::time::timeout(common::REPLY_TIMEOUT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("case {}: no reply in time", case.name));
        match message {
            Some(Ok(Message::Text(text))) => buffer.extend_from_slice(text.as_bytes()),
            Some(Ok(Message::Binary(bytes))) => buffer.extend_from_slice(&bytes),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                outcome.closed = true;
                break;
            }
            Some(Ok(_)) => {}
        }
    }
    sender.abort();
    outcome
}

/// Nothing any case sent was written: no event, no snapshot, no persistent subscription.
fn assert_nothing_written(server: &Server, after: &str) {
    let mut client = server.client();
    match client.request("READALL 0 10") {
        Reply::Events { count, .. } => assert_eq!(count, 0, "an event was written by {after}"),
        other => panic!("after {after}: {other:?}"),
    }
    match client.request("SNAP LOAD s") {
        Reply::Err(error) => assert_eq!(error.code.as_str(), "snapshot_not_found", "{after}"),
        other => panic!("a snapshot was written by {after}: {other:?}"),
    }
    match client.request("PSUB LIST") {
        Reply::Subs { count, .. } => assert_eq!(count, 0, "a subscription was made by {after}"),
        other => panic!("after {after}: {other:?}"),
    }
}

#[test]
fn the_catalogue_has_at_least_60_cases() {
    assert!(cases().len() >= 60, "{} cases", cases().len());
}

#[test]
fn every_malformed_case_over_tcp() {
    let server = Server::start(&[]);
    let mut failures = Vec::new();
    for case in cases() {
        let outcome = run_tcp(&server, &case);
        failures.extend(check(&case, "tcp", &outcome).err());
        assert_nothing_written(&server, &case.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_case_over_websocket() {
    let server = Server::start(&[]);
    let mut failures = Vec::new();
    for case in cases() {
        let outcome = run_ws(&server, &case).await;
        failures.extend(check(&case, "websocket", &outcome).err());
        let server = &server;
        let name = case.name.clone();
        tokio::task::block_in_place(|| assert_nothing_written(server, &name));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
