//! A minimal async esdb connection: requests encoded by `esdb-protocol`, replies decoded by its
//! `ReplyDecoder`. It sends pre-encoded bytes so the load generator spends as little CPU as
//! possible on the two cores it shares with the server.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::BytesMut;
use esdb_protocol::{Reply, ReplyDecoder, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one reply may take before the run fails (a hang fails, it does not block).
pub const REPLY_TIMEOUT_MS: u64 = 30_000;
/// Initial read buffer; it grows to the largest reply (a read page).
const READ_BUFFER_BYTES: usize = 64 * 1024;

pub struct Conn {
    stream: TcpStream,
    read_buf: BytesMut,
    decoder: ReplyDecoder,
}

impl Conn {
    /// Connects and consumes the server's `INFO` greeting.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to esdb at {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            read_buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
            decoder: ReplyDecoder::new(),
        };
        match conn.recv().await? {
            Reply::Info(_) => Ok(conn),
            other => bail!("expected INFO, got {other:?}"),
        }
    }

    /// Writes already-encoded requests.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    pub async fn send(&mut self, request: &Request) -> anyhow::Result<()> {
        let mut bytes = BytesMut::new();
        request.encode(&mut bytes);
        self.send_raw(&bytes).await
    }

    /// The next reply to a request (server PINGs are answered and skipped).
    pub async fn recv(&mut self) -> anyhow::Result<Reply> {
        let timeout = Duration::from_millis(REPLY_TIMEOUT_MS);
        loop {
            match self.decoder.decode(&mut self.read_buf)? {
                Some(Reply::Ping) => self.send(&Request::Pong).await?,
                Some(reply) => return Ok(reply),
                None => {
                    let read =
                        tokio::time::timeout(timeout, self.stream.read_buf(&mut self.read_buf))
                            .await
                            .context("no reply from esdb in time")??;
                    if read == 0 {
                        bail!("esdb closed the connection");
                    }
                }
            }
        }
    }

    /// A reply already in the read buffer, without waiting for the socket.
    pub fn buffered(&mut self) -> anyhow::Result<Option<Reply>> {
        match self.decoder.decode(&mut self.read_buf)? {
            Some(Reply::Ping) => bail!("server PING between replies: use recv"),
            other => Ok(other),
        }
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&mut self, request: &Request) -> anyhow::Result<Reply> {
        self.send(request).await?;
        self.recv().await
    }
}

/// An `APPEND` already encoded, to send as is.
pub fn encode(request: &Request) -> bytes::Bytes {
    let mut bytes = BytesMut::new();
    request.encode(&mut bytes);
    bytes.freeze()
}

/// The read side of a connection whose write side is used elsewhere (a paced writer that must
/// not wait for replies before sending the next request).
pub struct ReplyReader {
    read: tokio::net::tcp::OwnedReadHalf,
    read_buf: BytesMut,
    decoder: ReplyDecoder,
}

impl Conn {
    /// Splits the connection: replies are read here, requests written to the write half.
    /// Server `PING`s are skipped, not answered: the server pings only a client that has been
    /// silent for its ping interval, which a writer sending every few hundred µs never is.
    pub fn into_split(self) -> (ReplyReader, tokio::net::tcp::OwnedWriteHalf) {
        let (read, write) = self.stream.into_split();
        (
            ReplyReader {
                read,
                read_buf: self.read_buf,
                decoder: self.decoder,
            },
            write,
        )
    }
}

impl ReplyReader {
    pub async fn recv(&mut self) -> anyhow::Result<Reply> {
        let timeout = Duration::from_millis(REPLY_TIMEOUT_MS);
        loop {
            match self.decoder.decode(&mut self.read_buf)? {
                Some(Reply::Ping) => {}
                Some(reply) => return Ok(reply),
                None => {
                    let read =
                        tokio::time::timeout(timeout, self.read.read_buf(&mut self.read_buf))
                            .await
                            .context("no reply from esdb in time")??;
                    if read == 0 {
                        bail!("esdb closed the connection");
                    }
                }
            }
        }
    }
}
