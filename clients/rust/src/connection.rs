//! One TCP connection to a server, shared by every call of a client.
//!
//! A writer task sends requests in the order calls hand them over; before writing a request it
//! queues the call's waiter, so the reader task, which takes replies off the socket, gives each
//! reply to the oldest waiter (the protocol answers in request order). Pushed `EVENT` and
//! `LIVE` frames are not replies: the reader routes them by sid to their subscription's
//! bounded channel, and never waits on one, so a slow consumer cannot hold up the replies of
//! other calls or the pushes of other subscriptions. `UNREADABLE` (a stored record a payload
//! subscription could not parse, in place of its `EVENT`) is routed the same way. Server
//! `PING`s are answered here.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use esdb_protocol::ops::session::ConnectOptions;
use esdb_protocol::{Reply, ReplyDecoder, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::event::UnreadableEvent;
use crate::info::ServerInfo;
use crate::options::{ClientOptions, Credentials};
use crate::tls::{self, Stream};

type OwnedReadHalf = ReadHalf<Box<dyn Stream>>;
type OwnedWriteHalf = WriteHalf<Box<dyn Stream>>;

/// Requests queued for the writer before callers wait for room (the server itself stops
/// reading past 256 unanswered requests, so a deeper queue would only hold memory).
const OUTGOING_QUEUE_REQUESTS: usize = 512;
/// The writer gathers queued requests into one write up to about this many bytes.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Room kept free in the read buffer before each read.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What the reader hands a subscription.
#[derive(Debug)]
pub(crate) enum Push {
    Event {
        position: u64,
        body: Bytes,
    },
    /// In place of an `EVENT`: the server could not parse the stored record.
    Unreadable(UnreadableEvent),
    Live,
}

/// What the reader does when a subscription's channel is full.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Overflow {
    /// End the subscription on the server (`UNSUB`) and close the channel, also when the
    /// buffered events would pass `max_bytes`: the consumer drains what is buffered, then
    /// subscribes again from where it is (catch-up subscriptions).
    Pause { max_bytes: usize },
    /// Drop the event: the server delivers it again after its ack timeout (persistent
    /// subscriptions, whose in-flight window keeps this rare).
    Drop,
}

pub(crate) struct Route {
    pub tx: mpsc::Sender<Push>,
    pub overflow: Overflow,
    /// Bytes of event bodies in the channel: added here, taken off by the consumer.
    pub buffered_bytes: Arc<AtomicUsize>,
}

enum Waiter {
    Reply(oneshot::Sender<Result<Reply>>),
    /// A request whose reply nobody awaits (`UNSUB` of a dropped subscription, re-sent `ACK`s).
    Discard,
}

impl Waiter {
    fn fail(self, reason: &str) {
        if let Waiter::Reply(tx) = self {
            let _ = tx.send(Err(Error::Disconnected(reason.to_owned())));
        }
    }
}

struct Outgoing {
    bytes: Bytes,
    /// `None`: the request gets no reply (`PONG`).
    waiter: Option<Waiter>,
}

#[derive(Default)]
struct Pending {
    /// Why the connection closed, once it has.
    closed: Option<String>,
    waiters: VecDeque<Waiter>,
}

struct Shared {
    pending: Mutex<Pending>,
    routes: Mutex<HashMap<String, Route>>,
    token: CancellationToken,
}

impl Shared {
    /// Queues the request's waiter and its bytes for writing, unless the connection closed.
    fn enqueue(&self, outgoing: Outgoing, buf: &mut BytesMut) -> bool {
        let mut pending = self.pending.lock().expect("pending lock");
        if let Some(reason) = &pending.closed {
            if let Some(waiter) = outgoing.waiter {
                waiter.fail(reason);
            }
            return false;
        }
        if let Some(waiter) = outgoing.waiter {
            pending.waiters.push_back(waiter);
        }
        buf.extend_from_slice(&outgoing.bytes);
        true
    }

    fn close(&self, reason: &str) {
        let waiters = {
            let mut pending = self.pending.lock().expect("pending lock");
            if pending.closed.is_none() {
                pending.closed = Some(reason.to_owned());
            }
            std::mem::take(&mut pending.waiters)
        };
        for waiter in waiters {
            waiter.fail(reason);
        }
        self.token.cancel();
        // After the cancel, so a route added concurrently is either refused or cleared here.
        self.routes.lock().expect("routes lock").clear();
    }

    fn close_reason(&self) -> String {
        self.pending
            .lock()
            .expect("pending lock")
            .closed
            .clone()
            .unwrap_or_else(|| "connection closed".to_owned())
    }
}

/// A live connection. Dropping the last handle closes it.
pub(crate) struct Connection {
    outgoing: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
    pub info: ServerInfo,
    pub addr: String,
    /// The store this connection works in.
    pub store: String,
}

impl Connection {
    /// Connects, reads the `INFO` greeting, and identifies the client with `CONNECT` (which
    /// also selects the store, as `USE` does).
    pub async fn open(addr: &str, options: &ClientOptions) -> Result<Arc<Connection>> {
        let connect_timeout = Duration::from_millis(options.connect_timeout_ms);
        let greeted = tokio::time::timeout(connect_timeout, greet(addr, options))
            .await
            .map_err(|_| {
                Error::Connect(format!(
                    "connecting to {addr}: no greeting within {} ms",
                    options.connect_timeout_ms
                ))
            })??;
        let (read, write, buf, decoder, info) = greeted;
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE_REQUESTS);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            routes: Mutex::new(HashMap::new()),
            token: CancellationToken::new(),
        });
        tokio::spawn(write_loop(write, rx, shared.clone()));
        tokio::spawn(read_loop(
            read,
            buf,
            decoder,
            shared.clone(),
            tx.downgrade(),
        ));
        let store = options.store.clone().unwrap_or_else(|| info.store.clone());
        let connection = Arc::new(Connection {
            outgoing: tx,
            shared,
            info,
            addr: addr.to_owned(),
            store,
        });
        let connect = Request::Connect(ConnectOptions {
            name: options.name.clone(),
            lang: Some("rust".to_owned()),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            store: options.store.clone(),
            ..credentials(options)
        });
        let timeout = Duration::from_millis(options.request_timeout_ms);
        let reply = tokio::time::timeout(timeout, connection.request(encode(&connect)))
            .await
            .map_err(|_| Error::Timeout(options.request_timeout_ms));
        match reply {
            Ok(Ok(Reply::Ok)) => Ok(connection),
            Ok(Ok(Reply::Err(error))) => {
                connection.close("CONNECT refused");
                Err(Error::server(error))
            }
            Ok(Ok(other)) => {
                connection.close("bad CONNECT reply");
                Err(Error::unexpected("CONNECT", &other))
            }
            Ok(Err(error)) | Err(error) => {
                connection.close("CONNECT failed");
                Err(error)
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    pub fn close(&self, reason: &str) {
        self.shared.close(reason);
    }

    /// Sends one request and waits for its reply (an `-ERR` is a reply, not an `Err`).
    pub async fn request(&self, bytes: Bytes) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        let outgoing = Outgoing {
            bytes,
            waiter: Some(Waiter::Reply(tx)),
        };
        if self.outgoing.send(outgoing).await.is_err() {
            return Err(Error::Disconnected(self.shared.close_reason()));
        }
        rx.await
            .unwrap_or_else(|_| Err(Error::Disconnected(self.shared.close_reason())))
    }

    /// Sends a request without waiting, its reply discarded.
    pub fn send_discarding(&self, bytes: Bytes) {
        send_discarding(&self.outgoing, bytes);
    }

    /// Routes pushes for `sid` to `route` from now on. Refused on a closed connection, so a
    /// subscription never waits on a channel nobody will close.
    pub fn add_route(&self, sid: &str, route: Route) -> Result<()> {
        let mut routes = self.shared.routes.lock().expect("routes lock");
        if self.shared.token.is_cancelled() {
            return Err(Error::Disconnected(self.shared.close_reason()));
        }
        routes.insert(sid.to_owned(), route);
        Ok(())
    }

    pub fn remove_route(&self, sid: &str) {
        self.shared.routes.lock().expect("routes lock").remove(sid);
    }

    /// Ends a subscription without waiting: its pushes are dropped from now on, and `UNSUB`
    /// goes out with its reply discarded.
    pub fn unsubscribe_quietly(&self, sid: &str) {
        self.remove_route(sid);
        if !self.is_closed() {
            self.send_discarding(encode(&Request::Unsubscribe {
                sid: sid.to_owned(),
            }));
        }
    }
}

pub(crate) fn encode(request: &Request) -> Bytes {
    let mut bytes = BytesMut::new();
    request.encode(&mut bytes);
    bytes.freeze()
}

fn send_discarding(outgoing: &mpsc::Sender<Outgoing>, bytes: Bytes) {
    let message = Outgoing {
        bytes,
        waiter: Some(Waiter::Discard),
    };
    if let Err(mpsc::error::TrySendError::Full(message)) = outgoing.try_send(message) {
        // Never wait here (the reader and `Drop`s call this): a task waits for room instead.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let outgoing = outgoing.clone();
            runtime.spawn(async move {
                let _ = outgoing.send(message).await;
            });
        }
    }
}

type Greeted = (
    OwnedReadHalf,
    OwnedWriteHalf,
    BytesMut,
    ReplyDecoder,
    ServerInfo,
);

/// `CONNECT`'s credential fields.
fn credentials(options: &ClientOptions) -> ConnectOptions {
    match &options.credentials {
        None => ConnectOptions::default(),
        Some(Credentials::User { user, pass }) => ConnectOptions {
            user: Some(user.clone()),
            pass: Some(pass.clone()),
            ..ConnectOptions::default()
        },
        Some(Credentials::Token(token)) => ConnectOptions {
            token: Some(token.clone()),
            ..ConnectOptions::default()
        },
    }
}

async fn greet(addr: &str, options: &ClientOptions) -> Result<Greeted> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::Connect(format!("connecting to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let stream: Box<dyn Stream> = match &options.tls {
        None => Box::new(stream),
        Some(tls_options) => Box::new(tls::connect(addr, stream, tls_options).await?),
    };
    let (mut read, write) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut decoder = ReplyDecoder::new();
    loop {
        match decoder
            .decode(&mut buf)
            .map_err(|e| Error::Protocol(e.message))?
        {
            Some(Reply::Info(json)) => {
                let info: ServerInfo = serde_json::from_slice(&json)
                    .map_err(|e| Error::Protocol(format!("INFO from {addr}: {e}")))?;
                return Ok((read, write, buf, decoder, info));
            }
            // `too_many_connections`, `shutting_down`: retryable answers in place of INFO.
            Some(Reply::Err(error)) => return Err(Error::server(error)),
            Some(other) => return Err(Error::unexpected("connect (INFO)", &other)),
            None => {}
        }
        let read_bytes = read
            .read_buf(&mut buf)
            .await
            .map_err(|e| Error::Connect(format!("reading INFO from {addr}: {e}")))?;
        if read_bytes == 0 {
            return Err(Error::Connect(format!(
                "{addr} closed the connection before INFO"
            )));
        }
    }
}

async fn write_loop(
    mut write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut buf = BytesMut::new();
    let reason = 'run: loop {
        let first = tokio::select! {
            message = rx.recv() => message,
            _ = shared.token.cancelled() => break 'run shared.close_reason(),
        };
        let Some(first) = first else {
            break "the client dropped the connection".to_owned();
        };
        buf.clear();
        if !shared.enqueue(first, &mut buf) {
            break shared.close_reason();
        }
        while buf.len() < WRITE_BATCH_BYTES {
            let Ok(next) = rx.try_recv() else { break };
            if !shared.enqueue(next, &mut buf) {
                break 'run shared.close_reason();
            }
        }
        tokio::select! {
            written = write.write_all(&buf) => {
                if let Err(e) = written {
                    break format!("writing to the server: {e}");
                }
            }
            _ = shared.token.cancelled() => break shared.close_reason(),
        }
    };
    shared.close(&reason);
    rx.close();
    while let Ok(message) = rx.try_recv() {
        if let Some(waiter) = message.waiter {
            waiter.fail(&reason);
        }
    }
    let _ = write.shutdown().await;
}

async fn read_loop(
    mut read: OwnedReadHalf,
    mut buf: BytesMut,
    mut decoder: ReplyDecoder,
    shared: Arc<Shared>,
    outgoing: mpsc::WeakSender<Outgoing>,
) {
    let reason = 'run: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(reply)) => {
                    if let Err(reason) = dispatch(&shared, &outgoing, reply) {
                        break 'run reason;
                    }
                }
                Ok(None) => break,
                Err(error) => break 'run format!("undecodable reply: {}", error.message),
            }
        }
        if buf.capacity() - buf.len() < READ_BUFFER_BYTES / 4 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        tokio::select! {
            read_bytes = read.read_buf(&mut buf) => match read_bytes {
                Ok(0) => break "the server closed the connection".to_owned(),
                Ok(_) => {}
                Err(e) => break format!("reading from the server: {e}"),
            },
            _ = shared.token.cancelled() => break shared.close_reason(),
        }
    };
    shared.close(&reason);
}

/// Hands one frame of server output to its destination; `Err` closes the connection.
fn dispatch(
    shared: &Shared,
    outgoing: &mpsc::WeakSender<Outgoing>,
    reply: Reply,
) -> std::result::Result<(), String> {
    match reply {
        Reply::Ping => {
            if let Some(tx) = outgoing.upgrade() {
                // Anything the client sends answers a PING, so a full queue answers it too.
                let _ = tx.try_send(Outgoing {
                    bytes: Bytes::from_static(b"PONG\r\n"),
                    waiter: None,
                });
            }
        }
        Reply::Event {
            sid,
            position,
            body,
            ..
        } => route(shared, outgoing, sid, Push::Event { position, body }),
        Reply::Live { sid } => route(shared, outgoing, sid, Push::Live),
        Reply::Unreadable {
            sid,
            stream,
            version,
            position,
            reason,
        } => route(
            shared,
            outgoing,
            sid,
            Push::Unreadable(UnreadableEvent {
                stream,
                version,
                position,
                reason,
            }),
        ),
        Reply::Info(_) => {}
        reply => {
            let waiter = shared
                .pending
                .lock()
                .expect("pending lock")
                .waiters
                .pop_front();
            match (waiter, reply) {
                (Some(Waiter::Reply(tx)), reply) => {
                    let _ = tx.send(Ok(reply));
                }
                (Some(Waiter::Discard), _) => {}
                // An error nobody asked for: the server is ending the connection
                // (`shutting_down`, `stale_connection`).
                (None, Reply::Err(error)) => return Err(format!("{error}")),
                (None, other) => return Err(format!("reply without a request: {other:?}")),
            }
        }
    }
    Ok(())
}

fn route(shared: &Shared, outgoing: &mpsc::WeakSender<Outgoing>, sid: String, push: Push) {
    let mut routes = shared.routes.lock().expect("routes lock");
    let Some(target) = routes.get(&sid) else {
        // Ended on our side; frames sent before the server saw the UNSUB still arrive.
        return;
    };
    let bytes = match &push {
        Push::Event { body, .. } => body.len(),
        Push::Unreadable(_) | Push::Live => 0,
    };
    let buffered = target.buffered_bytes.load(Ordering::Acquire);
    let end = match target.overflow {
        // Always room for one event, however large.
        Overflow::Pause { max_bytes } if buffered > 0 && buffered + bytes > max_bytes => true,
        overflow => match target.tx.try_send(push) {
            Ok(()) => {
                target.buffered_bytes.fetch_add(bytes, Ordering::AcqRel);
                false
            }
            Err(mpsc::error::TrySendError::Full(_)) => matches!(overflow, Overflow::Pause { .. }),
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        },
    };
    if end {
        routes.remove(&sid);
        drop(routes);
        if let Some(tx) = outgoing.upgrade() {
            send_discarding(&tx, encode(&Request::Unsubscribe { sid }));
        }
    }
}
