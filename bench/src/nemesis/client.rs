//! A small blocking esdb connection for the nemesis clients: requests written as protocol
//! text, replies decoded by `esdb-protocol`. Every wait is bounded: a node that is killed,
//! stopped or cut off shows up as an error here, never as a hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use esdb_protocol::{Reply, ReplyDecoder};

/// How long a connect may take.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// How long one reply may take. Longer than the server's own waits (leader 5 s, commit 10 s),
/// so the server's `unavailable` normally arrives first.
pub const REPLY_TIMEOUT_MS: u64 = 12_000;
const READ_CHUNK_BYTES: usize = 64 * 1024;

pub struct Conn {
    stream: TcpStream,
    buffer: BytesMut,
    decoder: ReplyDecoder,
    pub info: serde_json::Value,
}

impl Conn {
    /// Connects (from the calling thread's namespace) and reads the `INFO` greeting.
    pub fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(CONNECT_TIMEOUT_MS))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_millis(REPLY_TIMEOUT_MS)))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(Duration::from_millis(REPLY_TIMEOUT_MS)))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            buffer: BytesMut::new(),
            decoder: ReplyDecoder::new(),
            info: serde_json::Value::Null,
        };
        match conn.recv()? {
            Reply::Info(json) => {
                conn.info = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
                Ok(conn)
            }
            other => Err(format!("expected INFO, got {other:?}")),
        }
    }

    /// Sets how long `recv` waits (subscribers wait less, to notice a stuck node).
    pub fn set_reply_timeout(&self, timeout: Duration) {
        let _ = self.stream.set_read_timeout(Some(timeout));
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    /// The next reply; server `PING`s are answered and skipped.
    pub fn recv(&mut self) -> Result<Reply, String> {
        loop {
            match self.decoder.decode(&mut self.buffer) {
                Ok(Some(Reply::Ping)) => self.send(b"PONG\r\n")?,
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable reply: {e:?}")),
            }
            let mut chunk = [0u8; READ_CHUNK_BYTES];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(TIMED_OUT.into())
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Sends one line (CRLF added) and returns its reply.
    pub fn request(&mut self, line: &str) -> Result<Reply, String> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.recv()
    }

    /// `APPEND` with a sized payload.
    pub fn append(&mut self, stream: &str, expected: &str, payload: &str) -> Result<Reply, String> {
        let mut frame = format!("APPEND {stream} {expected} {}\r\n", payload.len()).into_bytes();
        frame.extend_from_slice(payload.as_bytes());
        frame.extend_from_slice(b"\r\n");
        self.send(&frame)?;
        self.recv()
    }
}

/// What `recv` returns when no reply came in time.
pub const TIMED_OUT: &str = "no reply in time";
