//! Replays every golden transcript in `protocol/transcripts/` (format: its `README.md`) against
//! a fresh real server, decoding the server's output with this crate's reply decoder
//! (`esdb_client::protocol::ReplyDecoder`, the one a `Client` reads with): once with each step
//! written whole and the output decoded as it arrives, once written and decoded a byte at a
//! time.
//!
//! The lines matched are the decoded replies encoded back, and every decoded reply must encode
//! back to exactly the bytes it was decoded from: a decoder that misreads or drops a field
//! fails here, even where the transcript has a placeholder for it.

mod common;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use esdb_client::protocol::{Reply, ReplyDecoder};
use regex::Regex;

use common::Server;

/// How long the server has to send each expected line (or to close, for `<closed>`).
const LINE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Fewer transcripts than this means the directory was not found whole.
const MIN_TRANSCRIPTS: usize = 14;
/// Transcripts this replayer cannot replay, each with the reason (printed by every run).
const SKIPPED: &[(&str, &str)] = &[];

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

fn parse_transcript(text: &str) -> Result<Transcript, String> {
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
        } else if !(line.is_empty() || line.starts_with('#')) {
            return Err(format!(
                "transcript line must start with C: , S: or #: {line:?}"
            ));
        }
    }
    if !current.send.is_empty() || !current.expect.is_empty() {
        steps.push(current);
    }
    Ok(Transcript { server_args, steps })
}

/// The bytes a step sends: each line plus CRLF, `<#>` replaced by the byte length of the next.
fn step_bytes(step: &Step) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (index, line) in step.send.iter().enumerate() {
        let line = if line.contains("<#>") {
            let next = step
                .send
                .get(index + 1)
                .ok_or("<#> needs a following C: line")?;
            line.replace("<#>", &next.len().to_string())
        } else {
            line.clone()
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// An expected line as an anchored regular expression: placeholders become their patterns,
/// everything else is literal.
fn pattern(expected: &str) -> Regex {
    let placeholders = [
        ("<any>", ".*"),
        (
            "<uuid>",
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ),
        ("<int>", "-?[0-9]+"),
    ];
    let mut regex = String::from("^");
    let mut rest = expected;
    'outer: while let Some(c) = rest.chars().next() {
        for (name, replacement) in placeholders {
            if let Some(after) = rest.strip_prefix(name) {
                regex.push_str(replacement);
                rest = after;
                continue 'outer;
            }
        }
        regex.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        rest = &rest[c.len_utf8()..];
    }
    regex.push('$');
    Regex::new(&regex).expect("an escaped pattern is valid")
}

/// Server output as transcript lines, through the client's decoder: each reply's control line,
/// then the body of a sized reply split on line breaks.
struct LineReader {
    stream: TcpStream,
    decoder: ReplyDecoder,
    byte_at_a_time: bool,
    /// Received, not yet given to the decoder.
    received: BytesMut,
    /// Given to the decoder, not yet taken by it.
    buffer: BytesMut,
    /// A copy of `buffer`: the decoder takes from its front, so what it took can be recovered.
    buffer_copy: BytesMut,
    /// The bytes the decoder took for the reply it has not finished yet.
    frame: Vec<u8>,
    lines: VecDeque<String>,
    closed: bool,
}

impl LineReader {
    fn new(stream: TcpStream, byte_at_a_time: bool) -> LineReader {
        LineReader {
            stream,
            decoder: ReplyDecoder::new(),
            byte_at_a_time,
            received: BytesMut::new(),
            buffer: BytesMut::new(),
            buffer_copy: BytesMut::new(),
            frame: Vec::new(),
            lines: VecDeque::new(),
            closed: false,
        }
    }

    /// The next line, or `None` once the server closed the connection.
    fn next_line(&mut self) -> Result<Option<String>, String> {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while self.lines.is_empty() {
            if let Some(reply) = self.next_reply()? {
                self.push_lines(&reply)?;
                continue;
            }
            if self.closed {
                if !self.frame.is_empty() || !self.buffer.is_empty() {
                    let partial = [&self.frame[..], &self.buffer[..]].concat();
                    return Err(format!("partial reply at close: {}", show(&partial)));
                }
                return Ok(None);
            }
            self.read(deadline)?;
        }
        Ok(self.lines.pop_front())
    }

    /// Feeds received bytes to the decoder (one at a time, or all) until it gives a reply.
    fn next_reply(&mut self) -> Result<Option<Reply>, String> {
        loop {
            let decoded = self.decoder.decode(&mut self.buffer);
            let taken = self.buffer_copy.len() - self.buffer.len();
            self.frame
                .extend_from_slice(&self.buffer_copy.split_to(taken));
            match decoded {
                Ok(Some(reply)) => return Ok(Some(reply)),
                Ok(None) => {}
                Err(error) => {
                    let frame = [&self.frame[..], &self.buffer[..]].concat();
                    return Err(format!(
                        "the decoder refused {}: {}",
                        show(&frame),
                        error.message
                    ));
                }
            }
            if self.received.is_empty() {
                return Ok(None);
            }
            let feed = if self.byte_at_a_time {
                1
            } else {
                self.received.len()
            };
            let bytes = self.received.split_to(feed);
            self.buffer.extend_from_slice(&bytes);
            self.buffer_copy.extend_from_slice(&bytes);
        }
    }

    /// Checks that `reply` encodes back to the bytes it was decoded from, and queues its lines.
    fn push_lines(&mut self, reply: &Reply) -> Result<(), String> {
        let wire = std::mem::take(&mut self.frame);
        let encoded = reply.to_bytes();
        if encoded[..] != wire[..] {
            return Err(format!(
                "the decoder lost something: received {}, decoded {reply:?}, which encodes as {}",
                show(&wire),
                show(&encoded)
            ));
        }
        let text = String::from_utf8(wire).map_err(|_| "a reply is not UTF-8".to_owned())?;
        let (line, body) = text
            .split_once('\n')
            .expect("an encoded reply ends its line");
        self.lines.push_back(line.trim_end_matches('\r').to_owned());
        // A sized reply: its body, then the CRLF that ends it.
        if let Some(body) = body.strip_suffix("\r\n") {
            let body_lines = body
                .split('\n')
                .map(|l| l.trim_end_matches('\r').to_owned());
            self.lines.extend(body_lines);
        }
        Ok(())
    }

    fn read(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no line from the server within {LINE_TIMEOUT:?}"));
        }
        self.stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("setting the read timeout: {e}"))?;
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => self.closed = true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("no line from the server within {LINE_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("reading from the server: {e}")),
        }
        Ok(())
    }
}

/// Bytes as text for a failure message.
fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

fn transcripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../protocol/transcripts")
        .canonicalize()
        .expect("protocol/transcripts exists")
}

/// Replays one transcript on a fresh server; `Err` says what did not match.
fn replay(text: &str, byte_at_a_time: bool) -> Result<(), String> {
    let transcript = parse_transcript(text)?;
    if transcript.steps.is_empty() {
        return Err("the transcript has no steps".to_owned());
    }
    // `{transcripts}` in a flag is the transcripts directory (a config file shipped beside them).
    let directory = transcripts_dir().to_string_lossy().into_owned();
    let args: Vec<String> = transcript
        .server_args
        .iter()
        .map(|arg| arg.replace("{transcripts}", &directory))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with(&args);
    let stream = TcpStream::connect(server.addr).map_err(|e| format!("connecting: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(LINE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = LineReader::new(stream, byte_at_a_time);
    for step in &transcript.steps {
        let closes = step.expect.iter().any(|e| e == "<closed>");
        let bytes = step_bytes(step)?;
        // A step after which the server closes is written whole: bytes still arriving after the
        // server closed make its kernel reset the connection, which can discard the -ERR before
        // it is read. (The decoder still takes it a byte at a time.)
        let written = if byte_at_a_time && !closes {
            bytes
                .iter()
                .try_for_each(|byte| writer.write_all(std::slice::from_ref(byte)))
        } else {
            writer.write_all(&bytes)
        };
        // A server that closes on a fatal error may do so before the rest of the step is sent.
        if let Err(error) = written {
            if !closes {
                return Err(format!("writing {:?}: {error}", step.send));
            }
        }
        for expected in &step.expect {
            check_line(&mut reader, step, expected)?;
        }
    }
    Ok(())
}

fn check_line(reader: &mut LineReader, step: &Step, expected: &str) -> Result<(), String> {
    let after = &step.send;
    let actual = reader
        .next_line()
        .map_err(|e| format!("after sending {after:?}: {e}"))?;
    match actual {
        None if expected == "<closed>" => Ok(()),
        Some(actual) if expected == "<closed>" => Err(format!(
            "after sending {after:?}: expected the server to close, got {actual:?}"
        )),
        None => Err(format!(
            "after sending {after:?}: the server closed; expected {expected:?}"
        )),
        Some(actual) if pattern(expected).is_match(&actual) => Ok(()),
        Some(actual) => Err(format!(
            "after sending {after:?}\n expected: {expected}\n   actual: {actual}"
        )),
    }
}

/// Replays every transcript not in [`SKIPPED`]; fails naming every one that did not replay.
fn replay_all(byte_at_a_time: bool) {
    let dir = transcripts_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read the transcripts dir")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= MIN_TRANSCRIPTS,
        "expected the golden transcripts in {}, found {}",
        dir.display(),
        paths.len()
    );
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().expect("a file name").to_string_lossy();
        if let Some((_, reason)) = SKIPPED.iter().find(|(skipped, _)| *skipped == name) {
            println!("skipped {name}: {reason}");
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read a transcript");
        if let Err(failure) = replay(&text, byte_at_a_time) {
            failures.push(format!("{name}: {failure}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_transcript_replays_whole() {
    replay_all(false);
}

#[test]
fn every_transcript_replays_byte_at_a_time() {
    replay_all(true);
}

#[test]
fn patterns_match_only_what_they_say() {
    assert!(pattern("APPENDED s <int> 0").is_match("APPENDED s 12 0"));
    assert!(pattern("VERSION s <int>").is_match("VERSION s -1"));
    assert!(!pattern("APPENDED s <int> 0").is_match("APPENDED s x 0"));
    assert!(!pattern("APPENDED s <int> 0").is_match("APPENDED s 12 1"));
    assert!(pattern("a.b").is_match("a.b"));
    assert!(!pattern("a.b").is_match("axb"));
    assert!(!pattern("PONG").is_match("PONGX"));
    assert!(!pattern("PONG").is_match("XPONG"));
    assert!(pattern("INFO <any>").is_match("INFO {\"a\":1}"));
    let uuid = pattern("[{\"id\":\"<uuid>\"}]");
    assert!(uuid.is_match("[{\"id\":\"6f1c1a5e-8f55-4e2a-9a4a-0d5f7b1f2c3d\"}]"));
    assert!(!uuid.is_match("[{\"id\":\"6F1C1A5E-8f55-4e2a-9a4a-0d5f7b1f2c3d\"}]"));
    assert!(!uuid.is_match("[{\"id\":\"6f1c1a5e\"}]"));
}

#[test]
fn a_wrong_expectation_fails_the_replay() {
    let right = "S: INFO <any>\nC: PING\nS: PONG\n";
    assert_eq!(replay(right, false), Ok(()));
    let wrong_line = "S: INFO <any>\nC: PING\nS: PONGX\n";
    let failure = replay(wrong_line, false).expect_err("PONG is not PONGX");
    assert!(failure.contains("expected: PONGX"), "{failure}");
    let wrong_close = "S: INFO <any>\nC: PING\nS: <closed>\n";
    let failure = replay(wrong_close, true).expect_err("PING does not close");
    assert!(
        failure.contains("expected the server to close"),
        "{failure}"
    );
}
