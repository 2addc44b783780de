//! Replays every golden transcript in `protocol/transcripts/` against a fresh real server, over
//! a real socket: once with each step written whole, once written a byte at a time.
//!
//! The transcript format is specified in `protocol/transcripts/README.md`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use common::Server;

/// One exchange: lines the client sends together, then lines it expects back.
#[derive(Debug, Default)]
struct Step {
    send: Vec<String>,
    expect: Vec<String>,
}

struct Transcript {
    server_args: Vec<String>,
    steps: Vec<Step>,
}

fn parse_transcript(text: &str) -> Transcript {
    let mut server_args = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut current = Step::default();
    for line in text.lines() {
        if let Some(args) = line.strip_prefix("#! server-args:") {
            server_args.extend(args.split_whitespace().map(str::to_owned));
        } else if let Some(sent) = line.strip_prefix("C: ") {
            if !current.expect.is_empty() {
                steps.push(std::mem::take(&mut current));
            }
            current.send.push(sent.to_owned());
        } else if let Some(expected) = line.strip_prefix("S: ") {
            current.expect.push(expected.to_owned());
        } else {
            assert!(
                line.is_empty() || line.starts_with('#'),
                "transcript line must start with C: , S: or # : {line:?}"
            );
        }
    }
    if !current.send.is_empty() || !current.expect.is_empty() {
        steps.push(current);
    }
    Transcript { server_args, steps }
}

/// The bytes a step sends: each line plus CRLF, `<#>` replaced by the next line's length.
fn step_bytes(step: &Step) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, line) in step.send.iter().enumerate() {
        let line = if line.contains("<#>") {
            let next = step
                .send
                .get(index + 1)
                .expect("<#> needs a following C: line");
            line.replace("<#>", &next.len().to_string())
        } else {
            line.clone()
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn pattern(expected: &str) -> Regex {
    let mut regex = String::from("^");
    let mut rest = expected;
    let placeholders = [
        ("<any>", ".*"),
        (
            "<uuid>",
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ),
        ("<int>", "-?[0-9]+"),
    ];
    'outer: while !rest.is_empty() {
        for (name, replacement) in placeholders {
            if let Some(after) = rest.strip_prefix(name) {
                regex.push_str(replacement);
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap();
        regex.push_str(&regex::escape(&c.to_string()));
        rest = &rest[c.len_utf8()..];
    }
    regex.push('$');
    Regex::new(&regex).expect("valid pattern")
}

/// Reads server output as transcript lines: a control line, and for sized replies (`EVENTS`,
/// `STREAMS`, `HELP`, `SNAPSHOT`, `SNAPSHOTS`, `AGG`) the body read by its byte count and split on line breaks.
struct LineReader {
    stream: TcpStream,
    buffer: Vec<u8>,
    lines: std::collections::VecDeque<String>,
    closed: bool,
}

impl LineReader {
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("reading from server: {e}"),
        }
    }

    fn next_line(&mut self) -> Option<String> {
        if let Some(line) = self.lines.pop_front() {
            return Some(line);
        }
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buffer.drain(..end + 2).take(end).collect())
                    .expect("utf-8 line");
                if let Some(len) = body_length(&line) {
                    while self.buffer.len() < len + 2 {
                        assert!(self.fill(), "connection closed inside a body");
                    }
                    let body: Vec<u8> = self.buffer.drain(..len + 2).take(len).collect();
                    let body = String::from_utf8(body).expect("utf-8 body");
                    self.lines.extend(
                        body.split('\n')
                            .map(|l| l.trim_end_matches('\r').to_owned()),
                    );
                }
                return Some(line);
            }
            if self.closed || !self.fill() {
                self.closed = true;
                assert!(
                    self.buffer.is_empty(),
                    "partial line at close: {:?}",
                    self.buffer
                );
                return None;
            }
        }
    }
}

fn body_length(line: &str) -> Option<usize> {
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["EVENTS" | "STREAMS" | "SNAPSHOTS" | "SUBS" | "APPENDEDMULTI", _, len] => len.parse().ok(),
        ["SNAPSHOT" | "AGG", _, _, len] => len.parse().ok(),
        ["EVENT", _, _, _, _, len] => len.parse().ok(),
        ["HELP" | "STATS" | "SUBINFO" | "CLUSTER", len] => len.parse().ok(),
        _ => None,
    }
}

fn replay(path: &Path, byte_at_a_time: bool) {
    let text = std::fs::read_to_string(path).expect("read transcript");
    let transcript = parse_transcript(&text);
    // `{transcripts}` in a flag is this directory (a config file shipped beside the transcript).
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/transcripts");
    let args: Vec<String> = transcript
        .server_args
        .iter()
        .map(|arg| arg.replace("{transcripts}", directory))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = LineReader {
        stream,
        buffer: Vec::new(),
        lines: Default::default(),
        closed: false,
    };
    let name = path.file_name().unwrap().to_string_lossy();
    for step in &transcript.steps {
        let bytes = step_bytes(step);
        let written = if byte_at_a_time {
            bytes
                .iter()
                .try_for_each(|byte| writer.write_all(std::slice::from_ref(byte)))
        } else {
            writer.write_all(&bytes)
        };
        // A server that closes on a fatal error may do so before the rest of the step is sent.
        if let Err(error) = written {
            assert!(step.expect.iter().any(|e| e == "<closed>"), "{error}");
        }
        for expected in &step.expect {
            let actual = reader.next_line();
            if expected == "<closed>" {
                assert_eq!(
                    actual, None,
                    "{name}: expected the server to close the connection"
                );
                continue;
            }
            let actual = actual.unwrap_or_else(|| {
                panic!(
                    "{name}: connection closed; expected {expected:?} after sending {:?}",
                    step.send
                )
            });
            assert!(
                pattern(expected).is_match(&actual),
                "{name}: after sending {:?}\n expected: {expected}\n   actual: {actual}",
                step.send
            );
        }
    }
}

fn transcripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/transcripts");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("transcripts dir")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 8,
        "expected the golden transcripts in {}",
        dir.display()
    );
    paths
}

#[test]
fn every_transcript_replays_whole() {
    for path in transcripts() {
        replay(&path, false);
    }
}

#[test]
fn every_transcript_replays_byte_at_a_time() {
    for path in transcripts() {
        replay(&path, true);
    }
}

#[test]
fn patterns_match_only_what_they_say() {
    assert!(pattern("APPENDED s <int> 0").is_match("APPENDED s 12 0"));
    assert!(!pattern("APPENDED s <int> 0").is_match("APPENDED s x 0"));
    assert!(pattern("a.b").is_match("a.b"));
    assert!(!pattern("a.b").is_match("axb"));
    assert!(pattern("[{\"id\":\"<uuid>\"}]")
        .is_match("[{\"id\":\"6f1c1a5e-8f55-4e2a-9a4a-0d5f7b1f2c3d\"}]"));
}
