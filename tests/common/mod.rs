//! Test harness: the real `esdb` binary on a port chosen at run time, with its data in a
//! temporary directory, and a small blocking client speaking the protocol over a real socket.
#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use esdb_protocol::{Reply, ReplyDecoder};

/// How long a test waits for any one reply before failing (a hang fails, it does not block).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server process. Killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The HTTP listener (`/metrics`, `/health`, `/ready`, `/stats`, `/ws`).
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server with a fresh temporary data directory.
    pub fn start(extra_args: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("tempdir");
        let data_dir = temp.path().join("data");
        let mut server = Server::start_in(&data_dir, extra_args);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on an existing data directory (for restarts).
    pub fn start_in(data_dir: &Path, extra_args: &[&str]) -> Server {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let (child, addr, http_addr) = spawn_with_http(data_dir, &extra_args, &[]);
        Server {
            child: Some(child),
            addr,
            http_addr,
            data_dir: data_dir.to_owned(),
            extra_args,
            _temp: None,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// `kill -9`: no chance to flush or close anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), libc::SIGTERM);
        self.wait_exit()
    }

    /// Waits for the process to exit (after a signal sent elsewhere).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_with_timeout(&mut child, Duration::from_secs(30))
    }

    /// Starts the server again on the same data directory (after kill9 or terminate).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        let (child, addr, http_addr) = spawn_with_http(&self.data_dir, &self.extra_args, &[]);
        self.child = Some(child);
        self.addr = addr;
        self.http_addr = http_addr;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn signal(pid: i32, signal: i32) {
    // SAFETY: sending a signal to a child we spawned.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            panic!("server did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns `esdb serve` on port 0 and reads the announced address from its first stdout line.
pub fn spawn(data_dir: &Path, extra_args: &[String], envs: &[(&str, &str)]) -> (Child, SocketAddr) {
    let (child, addr, _) = spawn_with_http(data_dir, extra_args, envs);
    (child, addr)
}

/// Spawns `esdb serve` with both listeners on port 0 (unless `extra_args` name them) and reads
/// the protocol and HTTP addresses it announces on its first two stdout lines.
pub fn spawn_with_http(
    data_dir: &Path,
    extra_args: &[String],
    envs: &[(&str, &str)],
) -> (Child, SocketAddr, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_esdb"));
    command.arg("serve").arg("--data-dir").arg(data_dir);
    if !extra_args.iter().any(|a| a == "--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    if !extra_args.iter().any(|a| a == "--http") {
        command.args(["--http", "127.0.0.1:0"]);
    }
    command.args(extra_args).envs(envs.iter().copied());
    command
        .env(
            "ESDB_LOG_LEVEL",
            std::env::var("TEST_ESDB_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("spawn esdb");
    let (addr, http_addr) = read_announced_addrs(&mut child);
    (child, addr, http_addr)
}

/// Reads `esdb listening on <addr> …` and `esdb http on <addr> …` from the child's stdout.
pub fn read_announced_addrs(child: &mut Child) -> (SocketAddr, SocketAddr) {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stdout = BufReader::new(stdout);
    let mut read_addr = |prefix: &str| -> SocketAddr {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read announce line");
        let addr = line
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("expected {prefix:?}…, got {line:?}"));
        addr.parse().expect("socket address")
    };
    let addr = read_addr("esdb listening on ");
    let http_addr = read_addr("esdb http on ");
    (addr, http_addr)
}

/// A plain HTTP/1.1 GET over a real socket: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect http");
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// A blocking protocol client over a real TCP socket.
pub struct Client {
    pub stream: TcpStream,
    buffer: BytesMut,
    decoder: ReplyDecoder,
    pub info: serde_json::Value,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut client = Client {
            stream,
            buffer: BytesMut::new(),
            decoder: ReplyDecoder::new(),
            info: serde_json::Value::Null,
        };
        match client.reply() {
            Reply::Info(json) => client.info = serde_json::from_slice(&json).expect("INFO json"),
            other => panic!("expected INFO, got {other:?}"),
        }
        client
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends one control line (CRLF added).
    pub fn send_line(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Reads the next reply, skipping nothing.
    pub fn reply(&mut self) -> Reply {
        self.try_reply().expect("connection closed before a reply")
    }

    /// The next reply, or `None` if the server closed the connection.
    pub fn try_reply(&mut self) -> Option<Reply> {
        loop {
            if let Some(reply) = self
                .decoder
                .decode(&mut self.buffer)
                .expect("well-formed reply")
            {
                return Some(reply);
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read (timed out?)");
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a line and returns its reply.
    pub fn request(&mut self, line: &str) -> Reply {
        self.send_line(line);
        self.reply()
    }

    /// `APPEND` with a sized payload; returns the reply.
    pub fn append(&mut self, stream: &str, expected: &str, payload: &str) -> Reply {
        let mut frame = format!("APPEND {stream} {expected} {}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload.as_bytes());
        frame.extend_from_slice(b"\r\n");
        self.send_raw(&frame);
        self.reply()
    }

    /// Reads a stream (forward) and returns its records as JSON values.
    pub fn read_stream(&mut self, stream: &str, from: u64, count: u64) -> Vec<serde_json::Value> {
        match self.request(&format!("READ {stream} {from} {count}")) {
            Reply::Events { count, body } => {
                let events: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("json");
                assert_eq!(events.len() as u64, count);
                events
            }
            other => panic!("expected EVENTS, got {other:?}"),
        }
    }

    /// Reads `$all` from `from`, paging until the end.
    pub fn read_all(&mut self) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        loop {
            let reply = self.request(&format!("READALL {} 10000", all.len()));
            let Reply::Events { body, .. } = reply else {
                panic!("expected EVENTS, got {reply:?}")
            };
            let page: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("json");
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }
}

/// A one-event payload.
pub fn event(event_type: &str, data: serde_json::Value) -> String {
    serde_json::json!({"event_type": event_type, "data": data}).to_string()
}
