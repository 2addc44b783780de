//! One task per connection: read and frame requests, dispatch them, answer in order.
//!
//! The task owns the read half. A separate writer task owns the write half behind a bounded
//! queue, so a client that stops reading stalls only its own connection and is cut off after
//! [`WRITE_STALL_TIMEOUT_MS`]. Requests are pipelined: up to [`MAX_PIPELINED_REQUESTS`] may be
//! in flight, and their replies are sent in request order (`FuturesOrdered`).
//!
//! Keepalive as in NATS: after `ping_interval` without a byte from the client the server sends
//! `PING`; once `max_pings_out` PINGs are unanswered, the next check closes the connection with
//! `-ERR stale_connection`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use esdb_protocol::{Decoded, ErrorCode, ProtocolError, Reply, RequestDecoder};

use crate::server::dispatch::{dispatch, Dispatched, Session};
use crate::server::ServerContext;

/// Requests whose replies are not yet sent. When reached, the connection stops reading until
/// replies go out: the client's pipeline depth is bounded, not the server's memory.
pub const MAX_PIPELINED_REQUESTS: usize = 256;
/// Replies queued for the writer task.
pub const OUTBOUND_QUEUE_REPLIES: usize = 256;
/// Initial read buffer; it grows up to one control line plus one payload.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;
/// A write to the client that makes no progress for this long closes the connection (a
/// client that stops reading must not pin server memory). Configurable with
/// `--write-stall-timeout-ms`; this is the default.
pub const WRITE_STALL_TIMEOUT_MS: u64 = 10_000;

/// Why a connection ended (logged, and the `reason` label of `esdb_connection_closed_total`).
pub use crate::metrics::CloseReason;
use crate::metrics::{metrics, Transport};

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    #[default]
    ReadWrite,
    /// Every request that would change the store is answered `-ERR read_only` (WebSocket
    /// connections opened with `?readonly=1`, as the web console's are).
    ReadOnly,
}

/// Serves one client connection, over any byte stream (a TCP socket, or the WebSocket bridge
/// in `crate::http::ws`), until it ends.
pub async fn serve<S>(
    stream: S,
    peer: String,
    transport: Transport,
    context: Arc<ServerContext>,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_with_access(stream, peer, transport, Access::ReadWrite, context, cancel).await
}

/// [`serve`], with the connection limited to `access`.
pub async fn serve_with_access<S>(
    stream: S,
    peer: String,
    transport: Transport,
    access: Access,
    context: Arc<ServerContext>,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let gate = crate::auth::Gate::new(context.auth.clone(), &peer, transport.as_str(), None);
    serve_gated(stream, peer, transport, access, gate, context, cancel).await
}

/// [`serve_with_access`], with the connection's authentication state (`gate`: already
/// authenticated when the transport carried credentials, an HTTP bearer token).
pub async fn serve_gated<S>(
    stream: S,
    peer: String,
    transport: Transport,
    access: Access,
    gate: crate::auth::Gate,
    context: Arc<ServerContext>,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let connection_metrics = context.connection_metrics(transport);
    connection_metrics.opened();
    let (reader, writer) = tokio::io::split(stream);
    let (outbound, outbound_rx) = mpsc::channel::<Reply>(OUTBOUND_QUEUE_REPLIES);
    let stall = Duration::from_millis(context.config.write_stall_timeout_ms);
    // When writing fails (the client stopped reading, or the socket broke), the reader must
    // stop too, or the connection would linger half-dead.
    let write_failed = CancellationToken::new();
    let writer_task = {
        let write_failed = write_failed.clone();
        tokio::spawn(async move {
            let failure = write_loop(writer, outbound_rx, stall).await;
            if failure.is_some() {
                write_failed.cancel();
            }
            failure
        })
    };
    let reason = read_loop(
        reader,
        access,
        gate,
        &outbound,
        &context,
        &cancel,
        &write_failed,
    )
    .await;
    // Closing the queue lets the writer flush what is queued and finish.
    drop(outbound);
    let reason = match writer_task.await {
        Ok(Some(write_failure))
            if matches!(reason, CloseReason::ClientQuit | CloseReason::IoError) =>
        {
            write_failure
        }
        _ => reason,
    };
    connection_metrics.closed(reason);
    tracing::debug!(%peer, transport = transport.as_str(), ?reason, "connection closed");
}

async fn read_loop<R: AsyncRead + Unpin>(
    reader: R,
    access: Access,
    mut gate: crate::auth::Gate,
    outbound: &mpsc::Sender<Reply>,
    context: &Arc<ServerContext>,
    cancel: &CancellationToken,
    write_failed: &CancellationToken,
) -> CloseReason {
    let mut reader = reader;
    let hub = context
        .hub(context.config.default_store())
        .expect("default store is open");
    let mut session = Session::new(hub, outbound.clone());
    let mut decoder = RequestDecoder::new();
    let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut in_flight: FuturesOrdered<BoxFuture<'static, Outgoing>> = FuturesOrdered::new();
    let ping_interval = context.ping_interval();
    let mut ping_timer =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    let mut last_heard = Instant::now();
    let mut pings_out: u32 = 0;
    let mut end: Option<(CloseReason, Option<ProtocolError>)> = None;

    if outbound
        .send(Reply::Info(context.info_json()))
        .await
        .is_err()
    {
        return CloseReason::IoError;
    }
    while end.is_none() {
        // Frame and dispatch everything already buffered, up to the pipeline limit.
        while in_flight.len() < MAX_PIPELINED_REQUESTS {
            match decoder.decode(&mut buffer) {
                Ok(Some(Decoded::Request(request))) if refused(access, &request) => {
                    let error = ProtocolError::new(
                        ErrorCode::ReadOnly,
                        format!(
                            "{} refused: this connection is read-only (opened with readonly=1)",
                            request.operation()
                        ),
                    );
                    in_flight.push_back(futures::future::ready((Reply::Err(error), None)).boxed());
                }
                Ok(Some(Decoded::Request(mut request))) => {
                    use crate::auth::gate::Verdict;
                    match gate.check(&mut request, &mut session).await {
                        Verdict::Pass => {}
                        Verdict::Refuse(error) => {
                            let refusal = futures::future::ready((Reply::Err(error), None));
                            in_flight.push_back(refusal.boxed());
                            continue;
                        }
                        Verdict::Close(error) => {
                            end = Some((CloseReason::AuthFailed, Some(error)));
                            break;
                        }
                    }
                    match dispatch(context, &mut session, request).await {
                        Dispatched::Reply(reply) => {
                            in_flight.push_back(reply.map(|reply| (reply, None)).boxed())
                        }
                        Dispatched::ReplyThen(reply, then) => {
                            in_flight.push_back(reply.map(|reply| (reply, Some(then))).boxed())
                        }
                        Dispatched::NoReply => {}
                    }
                }
                Ok(Some(Decoded::Invalid(error))) => {
                    in_flight.push_back(futures::future::ready((Reply::Err(error), None)).boxed());
                }
                Ok(None) => break,
                Err(fatal) => {
                    end = Some((CloseReason::ProtocolError, Some(fatal)));
                    break;
                }
            }
        }
        if end.is_some() {
            break;
        }
        let can_read = in_flight.len() < MAX_PIPELINED_REQUESTS;
        tokio::select! {
            _ = cancel.cancelled() => end = Some((CloseReason::Shutdown, None)),
            _ = write_failed.cancelled() => end = Some((CloseReason::IoError, None)),
            revoked = gate.revoked() => end = Some((CloseReason::AuthFailed, Some(revoked))),
            Some(outgoing) = in_flight.next(), if !in_flight.is_empty() => {
                if send_outgoing(outbound, outgoing).await.is_err() {
                    return CloseReason::IoError;
                }
            }
            read = reader.read_buf(&mut buffer), if can_read => match read {
                Ok(0) => end = Some((CloseReason::ClientQuit, None)),
                Ok(_) => {
                    last_heard = Instant::now();
                    pings_out = 0;
                }
                Err(_) => end = Some((CloseReason::IoError, None)),
            },
            _ = ping_timer.tick() => {
                if last_heard.elapsed() >= ping_interval {
                    if pings_out >= context.config.max_pings_out {
                        let error = ProtocolError::new(ErrorCode::StaleConnection, "no PONG to the server's PINGs");
                        end = Some((CloseReason::Stale, Some(error)));
                    } else if outbound.send(Reply::Ping).await.is_ok() {
                        pings_out += 1;
                    }
                }
            }
        }
    }
    let (reason, final_error) = end.expect("loop ends with a reason");
    // Answer everything already accepted (its writes may be durable by now), bounded by the
    // shutdown deadline, then the error that ended the connection, if any.
    let deadline = Duration::from_millis(context.config.shutdown_deadline_ms);
    let drain = async {
        while let Some(outgoing) = in_flight.next().await {
            if send_outgoing(outbound, outgoing).await.is_err() {
                return;
            }
        }
    };
    if tokio::time::timeout(deadline, drain).await.is_err() {
        tracing::warn!("replies still pending at the drain deadline");
    }
    if let Some(error) = final_error {
        let _ = outbound.send(Reply::Err(error)).await;
    }
    reason
}

fn refused(access: Access, request: &esdb_protocol::Request) -> bool {
    access == Access::ReadOnly && request.changes_store()
}

/// A reply, and a signal to fire once it is queued (see `Dispatched::ReplyThen`).
type Outgoing = (Reply, Option<oneshot::Sender<()>>);

async fn send_outgoing(outbound: &mpsc::Sender<Reply>, (reply, then): Outgoing) -> Result<(), ()> {
    let succeeded = !matches!(reply, Reply::Err(_));
    outbound.send(reply).await.map_err(|_| ())?;
    if let (true, Some(then)) = (succeeded, then) {
        let _ = then.send(());
    }
    Ok(())
}

/// Writes queued replies, batching whatever is queued into one flush. Returns a close reason
/// if the client stopped reading or the socket failed. Every `-ERR` a connection sends passes
/// here, so this is where errors are counted by code.
async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut replies: mpsc::Receiver<Reply>,
    stall: Duration,
) -> Option<CloseReason> {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut scratch = BytesMut::with_capacity(16 * 1024);
    while let Some(reply) = replies.recv().await {
        scratch.clear();
        encode_counted(&reply, &mut scratch);
        while let Ok(more) = replies.try_recv() {
            encode_counted(&more, &mut scratch);
            if scratch.len() >= 256 * 1024 {
                break;
            }
        }
        let write = async {
            writer.write_all(&scratch).await?;
            writer.flush().await
        };
        match tokio::time::timeout(stall, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Some(CloseReason::IoError),
            Err(_) => return Some(CloseReason::SlowConsumer),
        }
    }
    let _ = writer.shutdown().await;
    None
}

fn encode_counted(reply: &Reply, dst: &mut BytesMut) {
    if let Reply::Err(error) = reply {
        metrics().error_sent(error.code);
    }
    reply.encode(dst);
}
