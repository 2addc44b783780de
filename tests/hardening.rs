//! What an attacker found (issue 16), each closed and tested from outside: replies a client
//! never reads, payloads it never finishes, slow readers, the descriptor limit, the backlog.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use esdb_protocol::{ErrorCode, Reply, ReplyDecoder};

use common::{Client, Server};

/// About 1 MB of event data: 16 of them make one `READALL` reply reach its 16 MiB limit.
fn big_event() -> String {
    common::event("Big", serde_json::Value::String("x".repeat(1_000_000)))
}

/// Appends `events` events of about 1 MB each.
fn fill(client: &mut Client, events: u64) {
    let payload = big_event();
    for version in 0..events {
        match client.append("big", "any", &payload) {
            Reply::Appended { last_version, .. } => assert_eq!(last_version, version),
            other => panic!("expected APPENDED, got {other:?}"),
        }
    }
}

/// The server's anonymous memory (heap; LMDB's file-backed map does not count), in MiB.
fn rss_anon_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|line| line.starts_with("RssAnon:"))
        .expect("RssAnon");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("kB");
    kib / 1024
}

/// The highest anonymous memory seen over `window`, sampled every 50 ms.
fn peak_rss_anon_mib(pid: i32, window: Duration) -> u64 {
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < window {
        peak = peak.max(rss_anon_mib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    peak
}

/// A raw connection that has read its INFO line and then sends without reading.
fn silent_connection(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(common::REPLY_TIMEOUT))
        .unwrap();
    let mut byte = [0u8; 1];
    // The INFO line, byte by byte, so nothing after it is consumed.
    loop {
        stream.read_exact(&mut byte).expect("INFO");
        if byte[0] == b'\n' {
            return stream;
        }
    }
}

/// Reads `replies` replies from a connection and checks each is a non-empty `EVENTS`.
fn read_event_replies(stream: &mut TcpStream, replies: usize) {
    let mut decoder = ReplyDecoder::new();
    let mut buffer = BytesMut::new();
    let mut seen = 0;
    let mut chunk = vec![0u8; 256 * 1024];
    while seen < replies {
        if let Some(reply) = decoder.decode(&mut buffer).expect("well-formed") {
            match reply {
                Reply::Events { count, .. } => assert!(count > 0),
                other => panic!("expected EVENTS, got {other:?}"),
            }
            seen += 1;
            continue;
        }
        let n = stream.read(&mut chunk).expect("read (timed out?)");
        assert!(n > 0, "closed after {seen} of {replies} replies");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// 24 pipelined `READALL`s, each answered with 16 MiB, never read: before the bound the server
/// built all of them (~400 MB); now it builds at most `--max-pending-bytes` ahead of what the
/// client reads, and every reply still arrives, in order, once the client reads.
#[test]
fn a_client_that_never_reads_pins_at_most_its_pending_bytes() {
    let server = Server::start(&["--max-pending-bytes", "20971520"]);
    fill(&mut server.client(), 16);
    let before = rss_anon_mib(server.pid());
    let mut stream = silent_connection(&server);
    stream
        .write_all("READALL 0 10000\r\n".repeat(24).as_bytes())
        .expect("send");
    let peak = peak_rss_anon_mib(server.pid(), Duration::from_secs(4));
    assert!(
        peak < before + 150,
        "the server grew from {before} MiB to {peak} MiB for one client that never reads"
    );
    read_event_replies(&mut stream, 24);
}

/// The same across connections: three such clients together stay within
/// `--max-pending-bytes-total`, and each gets all its replies when it reads.
#[test]
fn clients_that_never_read_pin_at_most_the_server_wide_bound() {
    let server = Server::start(&["--max-pending-bytes-total", "41943040"]);
    fill(&mut server.client(), 16);
    let before = rss_anon_mib(server.pid());
    let mut streams: Vec<TcpStream> = (0..3).map(|_| silent_connection(&server)).collect();
    for stream in &mut streams {
        stream
            .write_all("READALL 0 10000\r\n".repeat(8).as_bytes())
            .expect("send");
    }
    let peak = peak_rss_anon_mib(server.pid(), Duration::from_secs(4));
    assert!(
        peak < before + 150,
        "the server grew from {before} MiB to {peak} MiB for three clients that never read"
    );
    // Another client is not starved of small replies meanwhile.
    assert_eq!(server.client().request("PING"), Reply::Pong);
    // Read concurrently: the room one client's replies hold is freed as it reads, and a
    // client whose replies wait on others' room is not starved once they read.
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| std::thread::spawn(move || read_event_replies(&mut stream, 8)))
        .collect();
    for reader in readers {
        reader.join().expect("every reply arrives");
    }
}

/// Sends `APPEND <stream> any <len>` and all of an event payload of `len` bytes but its last
/// `missing` bytes (and the CRLF).
fn partial_append(server: &Server, stream_id: &str, missing: usize) -> (TcpStream, Vec<u8>) {
    let mut stream = silent_connection(server);
    let len = 1024 * 1024;
    let prefix = br#"{"event_type":"Big","data":""#;
    let mut payload = prefix.to_vec();
    payload.resize(len - 2, b'y');
    payload.extend_from_slice(b"\"}");
    let mut frame = format!("APPEND {stream_id} any {len}\r\n").into_bytes();
    frame.extend_from_slice(&payload[..len - missing]);
    stream.write_all(&frame).expect("send");
    let mut rest = payload[len - missing..].to_vec();
    rest.extend_from_slice(b"\r\n");
    (stream, rest)
}

/// Two connections each hold a half-sent 1 MiB payload, filling a 2 MiB
/// `--max-read-bytes-in-flight`: a third connection's payload is not read (its memory is not
/// taken) until one of them completes, and then it is.
#[test]
fn half_sent_payloads_count_against_the_server_wide_read_budget() {
    let server = Server::start(&["--max-read-bytes-in-flight", "2097152"]);
    let (mut first, first_rest) = partial_append(&server, "a", 1);
    let (_second, _) = partial_append(&server, "b", 1);
    // Both headers and payloads have been read (the budget is theirs) once a request sent
    // after them on another connection is answered... which it is: PING carries no payload.
    std::thread::sleep(Duration::from_millis(500));
    let mut third = server.client();
    assert_eq!(
        third.request("PING"),
        Reply::Pong,
        "requests without payload go on"
    );
    third.send_raw(format!("APPEND c any {}\r\n{}\r\n", big_event().len(), big_event()).as_bytes());
    third
        .stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut byte = [0u8; 1];
    match third.stream.read(&mut byte) {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("the third payload was read past the budget: {other:?}"),
    }
    // The first completes; its room goes to the third.
    first.write_all(&first_rest).expect("send the rest");
    let mut first_reader = BufReader::new(first);
    let mut line = String::new();
    first_reader.read_line(&mut line).expect("reply");
    assert!(line.starts_with("APPENDED a 0 "), "{line}");
    third
        .stream
        .set_read_timeout(Some(common::REPLY_TIMEOUT))
        .unwrap();
    let mut reader = BufReader::new(&third.stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("reply");
    assert!(line.starts_with("APPENDED c 0 "), "{line}");
}

/// A client reading steadily but slowly (64 KiB every 20 ms, with a small receive buffer)
/// receives a 16 MiB reply although that takes several times `--write-stall-timeout-ms`:
/// the rule is no progress, not the time of a whole write.
#[test]
fn a_slow_but_steady_reader_is_not_cut_off() {
    let server = Server::start(&["--write-stall-timeout-ms", "1000"]);
    fill(&mut server.client(), 16);
    let mut stream = silent_connection(&server);
    set_receive_buffer(&stream, 64 * 1024);
    stream.write_all(b"READALL 0 10000\r\n").expect("send");
    let mut decoder = ReplyDecoder::new();
    let mut buffer = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let started = Instant::now();
    loop {
        if let Some(reply) = decoder.decode(&mut buffer).expect("well-formed") {
            match reply {
                Reply::Events { count, body } => {
                    assert!(count > 1, "{count}");
                    assert!(body.len() > 8 << 20, "a reply of {} bytes", body.len());
                }
                other => panic!("expected EVENTS, got {other:?}"),
            }
            break;
        }
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "cut off after {:?}", started.elapsed());
        buffer.extend_from_slice(&chunk[..n]);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        started.elapsed() > Duration::from_millis(1000),
        "the reply took longer than the stall timeout, or the test proves nothing"
    );
}

fn set_receive_buffer(stream: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket we own, with a c_int value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF");
}

/// A server process killed when dropped, also when the test panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `esdb serve` with `RLIMIT_NOFILE` set to `soft`/`hard` for it.
fn spawn_with_fd_limit(soft: u64, hard: u64) -> (Killed, std::net::SocketAddr, tempfile::TempDir) {
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
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn esdb");
    let (addr, _) = common::read_announced_addrs(&mut child);
    (Killed(child), addr, temp)
}

/// Under a hard limit of 256 descriptors, 300 connections each get `INFO` or
/// `-ERR too_many_connections` and a close: none hangs in the backlog (accept failing with
/// EMFILE), and the server still serves the ones it took.
#[test]
fn connections_past_the_descriptor_limit_are_refused_not_left_hanging() {
    let (_child, addr, _temp) = spawn_with_fd_limit(256, 256);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(&mut stream)
            .read_line(&mut line)
            .expect("a first line, not a hang");
        if line.starts_with("INFO ") {
            accepted.push(stream);
        } else {
            assert!(line.starts_with("-ERR too_many_connections "), "{line}");
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "256 descriptors cannot hold 300 connections and the server"
    );
    assert!(accepted.len() >= 64, "{} accepted", accepted.len());
    let stream = accepted.pop().expect("one");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    (&stream).write_all(b"PING\r\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "PONG\r\n");
}

/// The soft descriptor limit is raised to the hard one at start.
#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_limit() {
    let (child, _addr, _temp) = spawn_with_fd_limit(256, 4096);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.0.id())).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("Max open files");
    let soft: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(soft[3], "4096", "{line}");
}

/// The listen backlog is 1024 by default (`TcpListener::bind` gives 128) and
/// `--listen-backlog` sets it. `ss` shows a listening socket's backlog as its Send-Q.
#[test]
fn the_listen_backlog_is_configurable_with_a_larger_default() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for (args, expected) in [(&[][..], 1024), (&["--listen-backlog", "300"][..], 300)] {
        let server = Server::start(args);
        let output = Command::new("ss")
            .args(["-ltnH", &format!("sport = :{}", server.addr.port())])
            .output()
            .expect("ss (iproute2)");
        let text = String::from_utf8_lossy(&output.stdout);
        let send_q: u32 = text
            .split_whitespace()
            .nth(2)
            .and_then(|q| q.parse().ok())
            .unwrap_or_else(|| panic!("ss output: {text}"));
        assert_eq!(send_q, expected.min(somaxconn), "{text}");
    }
}

/// `store_full` is retryable and does not close; a byte count that overflows is reported as
/// sent (the catalogue in tests/malformed covers more).
#[test]
fn an_overflowing_byte_count_is_named_as_sent() {
    let server = Server::start(&[]);
    let mut client = server.client();
    client.send_line("APPEND s any 100000000000000000000000");
    match client.try_reply() {
        Some(Reply::Err(error)) => {
            assert_eq!(error.code, ErrorCode::PayloadTooLarge);
            assert!(
                error.message.contains("100000000000000000000000 bytes"),
                "{}",
                error.message
            );
        }
        other => panic!("expected payload_too_large, got {other:?}"),
    }
    assert!(ErrorCode::StoreFull.is_retryable() && !ErrorCode::StoreFull.closes_connection());
}
