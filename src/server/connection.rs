//! One task per connection: read and frame requests, dispatch them, answer in order.
//!
//! The task owns the read half. A separate writer task owns the write half behind a bounded
//! queue, so a client that stops reading stalls only its own connection, and is cut off once
//! a write has made no progress (not one byte taken) for [`WRITE_STALL_TIMEOUT_MS`]: a client
//! that reads slowly but steadily is never cut. Requests are pipelined: up to
//! [`MAX_PIPELINED_REQUESTS`] may be in flight, and their replies are sent in request order
//! (`FuturesOrdered`).
//!
//! Memory a connection can pin is bounded twice over: the reply bytes it has built but not
//! written ([`outbound`](super::outbound): `--max-pending-bytes`, and server-wide
//! `--max-pending-bytes-total`), and the payload it is receiving, which is reserved from the
//! server-wide `--max-read-bytes-in-flight` before the buffer grows for it. Over either, the
//! connection stops reading until there is room.
//!
//! Keepalive as in NATS: after `ping_interval` without a byte from the client the server sends
//! `PING`; once `max_pings_out` PINGs are unanswered, the next check closes the connection with
//! `-ERR stale_connection`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use esdb_protocol::{Decoded, ErrorCode, ProtocolError, Reply, RequestDecoder};

use crate::cmd::dispatch;
use crate::server::outbound::ReplyBudget;
use crate::server::outbound::{reply_bytes, reply_bytes_bound, Credit, Outbound, Queued};
use crate::server::session::{Dispatched, Session};
use crate::server::ServerContext;

/// Requests whose replies are not yet sent. When reached, the connection stops reading until
/// replies go out: the client's pipeline depth is bounded, not the server's memory.
pub const MAX_PIPELINED_REQUESTS: usize = 256;
/// Replies queued for the writer task.
pub const OUTBOUND_QUEUE_REPLIES: usize = 256;
/// Read buffer of a connection that is sending; it grows up to one control line plus one
/// payload.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Read buffer of a connection that has sent nothing yet, or has drained a large buffer:
/// idle connections are many, so each holds little (5,000 idle connections in 64 MiB).
pub const IDLE_READ_BUFFER_BYTES: usize = 512;
/// A write to the client that makes no progress (not one byte taken) for this long closes the
/// connection (a client that stops reading must not pin server memory). Progress, not the
/// time of a whole write: a client reading 20 KB/s receives a 16 MiB reply. Configurable with
/// `--write-stall-timeout-ms`; this is the default.
pub const WRITE_STALL_TIMEOUT_MS: u64 = 10_000;
/// Most bytes the writer gathers from queued replies into one write.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

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
    let (outbound, outbound_rx) = Outbound::channel(OUTBOUND_QUEUE_REPLIES);
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

/// A decoded request waiting for room in the reply budget, and how much it needs.
type Held = (Decoded, usize);

async fn read_loop<R: AsyncRead + Unpin>(
    reader: R,
    access: Access,
    mut gate: crate::auth::Gate,
    outbound: &Outbound,
    context: &Arc<ServerContext>,
    cancel: &CancellationToken,
    write_failed: &CancellationToken,
) -> CloseReason {
    let mut reader = reader;
    let hub = context
        .hub(context.config.default_store())
        .expect("default store is open");
    // A store at its connection quota refuses new connections as the server's own limit
    // does (after INFO, closing); a later USE of a full store only refuses the USE.
    let connection_slot = match hub.store.quota().connect() {
        Ok(slot) => slot,
        Err(refusal) => {
            let message = crate::store::StoreError::Quota(refusal).to_string();
            let _ = outbound.send(Reply::Info(context.info_json())).await;
            let error = ProtocolError::new(ErrorCode::TooManyConnections, message);
            metrics().error_sent(ErrorCode::TooManyConnections);
            let _ = outbound.send(Reply::Err(error)).await;
            return CloseReason::ProtocolError;
        }
    };
    let mut session = Session::new(hub, connection_slot, outbound.clone());
    let mut decoder = RequestDecoder::new();
    let mut buffer = BytesMut::with_capacity(IDLE_READ_BUFFER_BYTES);
    let mut in_flight: FuturesOrdered<BoxFuture<'static, Outgoing>> = FuturesOrdered::new();
    let budget = ReplyBudget::for_connection(
        &context.pending_reply_bytes,
        context.config.max_pending_bytes,
        context.config.max_pending_bytes_total,
    );
    let mut held: Option<Held> = None;
    // Room for the payload being received, from the server-wide budget of read bytes.
    let mut payload_room: Option<OwnedSemaphorePermit> = None;
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
        // Frame and dispatch everything already buffered, up to the pipeline limit and while
        // the reply budget has room.
        while in_flight.len() < MAX_PIPELINED_REQUESTS && held.is_none() {
            let decoded = match decoder.decode(&mut buffer) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break,
                Err(fatal) => {
                    end = Some((CloseReason::ProtocolError, Some(fatal)));
                    break;
                }
            };
            let bound = match &decoded {
                Decoded::Request(request) if !refused(access, request) => {
                    reply_bytes_bound(request)
                }
                _ => None,
            };
            let credit = match bound {
                None => None,
                Some(bound) => match budget.try_reserve(bound) {
                    Some(credit) => Some(credit),
                    None => {
                        held = Some((decoded, bound));
                        break;
                    }
                },
            };
            // Boxed: dispatching's future is large, and unboxed it would sit in every
            // connection's future for its whole life, idle ones included (one allocation per
            // request instead; see `five_thousand_idle_connections_cost_at_most_64_mib`).
            let started = Box::pin(start(
                context,
                &mut session,
                &mut gate,
                access,
                decoded,
                credit,
                &mut in_flight,
            ))
            .await;
            if let Some(error) = started {
                end = Some((CloseReason::AuthFailed, Some(error)));
                break;
            }
        }
        if end.is_some() {
            break;
        }
        // A payload that has not fully arrived: reserve room for it before the buffer grows.
        let payload_len = decoder.pending_payload_bytes();
        let room_fits = match (payload_len, &payload_room) {
            (Some(len), Some(room)) => {
                room.num_permits() == payload_room_permits(context, len) as usize
            }
            _ => false,
        };
        if !room_fits {
            payload_room = payload_len.and_then(|len| reserve_payload_room(context, len).ok());
        }
        size_read_buffer(&mut buffer);
        let can_read = in_flight.len() < MAX_PIPELINED_REQUESTS
            && held.is_none()
            && (payload_len.is_none() || payload_room.is_some());
        tokio::select! {
            credit = budget.reserve(held.as_ref().map_or(0, |(_, bound)| *bound)),
                if held.is_some() =>
            {
                let (decoded, _) = held.take().expect("held");
                let started = Box::pin(start(
                    context,
                    &mut session,
                    &mut gate,
                    access,
                    decoded,
                    Some(credit),
                    &mut in_flight,
                ))
                .await;
                if let Some(error) = started {
                    end = Some((CloseReason::AuthFailed, Some(error)));
                }
            }
            room = wait_payload_room(context, payload_len.unwrap_or(1)),
                if payload_len.is_some() && payload_room.is_none() =>
            {
                payload_room = Some(room);
            }
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
    drop(payload_room);
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

/// Grows a nearly full read buffer to [`READ_BUFFER_BYTES`] (a connection that sends gets
/// room to read in large pieces), and gives back an empty one that a payload made large.
fn size_read_buffer(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > 4 * READ_BUFFER_BYTES {
        *buffer = BytesMut::with_capacity(IDLE_READ_BUFFER_BYTES);
    } else if buffer.capacity() - buffer.len() < IDLE_READ_BUFFER_BYTES {
        buffer.reserve(READ_BUFFER_BYTES);
    }
}

fn refused(access: Access, request: &esdb_protocol::Request) -> bool {
    access == Access::ReadOnly && request.changes_store()
}

/// Dispatches one decoded request (or answers it at once) and queues its reply future. Returns
/// the error to close the connection with when authentication says so.
async fn start(
    context: &Arc<ServerContext>,
    session: &mut Session,
    gate: &mut crate::auth::Gate,
    access: Access,
    decoded: Decoded,
    credit: Option<Credit>,
    in_flight: &mut FuturesOrdered<BoxFuture<'static, Outgoing>>,
) -> Option<ProtocolError> {
    let answer = |reply: Reply| futures::future::ready((reply, None, None)).boxed();
    match decoded {
        Decoded::Request(request) if refused(access, &request) => {
            let error = ProtocolError::new(
                ErrorCode::ReadOnly,
                format!(
                    "{} refused: this connection is read-only (opened with readonly=1)",
                    request.operation()
                ),
            );
            in_flight.push_back(answer(Reply::Err(error)));
        }
        Decoded::Request(mut request) => {
            use crate::auth::gate::Verdict;
            // Boxed: the check's future (credentials, a password hash) would otherwise sit
            // inside every connection's future, idle ones included, for the life of the
            // connection; without authentication there is nothing to check.
            let verdict = if gate.enabled() {
                Box::pin(gate.check(&mut request, session)).await
            } else {
                Verdict::Pass
            };
            match verdict {
                Verdict::Pass => {}
                Verdict::Refuse(error) => {
                    in_flight.push_back(answer(Reply::Err(error)));
                    return None;
                }
                Verdict::Close(error) => return Some(error),
            }
            match dispatch(context, session, request).await {
                Dispatched::Reply(reply) => {
                    in_flight.push_back(reply.map(move |reply| (reply, None, credit)).boxed())
                }
                Dispatched::ReplyThen(reply, then) => {
                    in_flight.push_back(reply.map(move |reply| (reply, Some(then), credit)).boxed())
                }
                Dispatched::NoReply => {}
            }
        }
        Decoded::Invalid(error) => in_flight.push_back(answer(Reply::Err(error))),
    }
    None
}

/// Room for a payload of `payload_len` bytes in the server-wide read budget, if there is some
/// now. A payload larger than the whole budget takes all of it, so it can still arrive.
fn reserve_payload_room(
    context: &ServerContext,
    payload_len: usize,
) -> Result<OwnedSemaphorePermit, tokio::sync::TryAcquireError> {
    let permits = payload_room_permits(context, payload_len);
    context.read_bytes.clone().try_acquire_many_owned(permits)
}

async fn wait_payload_room(context: &ServerContext, payload_len: usize) -> OwnedSemaphorePermit {
    let permits = payload_room_permits(context, payload_len);
    context
        .read_bytes
        .clone()
        .acquire_many_owned(permits)
        .await
        .expect("the read budget is never closed")
}

fn payload_room_permits(context: &ServerContext, payload_len: usize) -> u32 {
    let budget = usize::try_from(context.config.max_read_bytes_in_flight).unwrap_or(usize::MAX);
    u32::try_from(payload_len.min(budget).max(1)).unwrap_or(u32::MAX)
}

/// A reply, a signal to fire once it is queued (see `Dispatched::ReplyThen`), and the room
/// reserved for it.
type Outgoing = (Reply, Option<oneshot::Sender<()>>, Option<Credit>);

async fn send_outgoing(outbound: &Outbound, (reply, then, credit): Outgoing) -> Result<(), ()> {
    let succeeded = !matches!(reply, Reply::Err(_));
    let credit = credit.map(|mut credit| {
        credit.shrink_to(reply_bytes(&reply));
        credit
    });
    outbound.send_with(reply, credit).await.map_err(|_| ())?;
    if let (true, Some(then)) = (succeeded, then) {
        let _ = then.send(());
    }
    Ok(())
}

/// Writes queued replies, batching whatever is queued into one flush. Returns a close reason
/// if the client stopped reading or the socket failed. Every `-ERR` a connection sends passes
/// here, so this is where errors are counted by code.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut replies: mpsc::Receiver<Queued>,
    stall: Duration,
) -> Option<CloseReason> {
    // Grows with the first batch; an idle connection holds only what its INFO took.
    let mut scratch = BytesMut::new();
    // Held until the batch holding their replies is written.
    let mut credits: Vec<Credit> = Vec::new();
    while let Some(queued) = replies.recv().await {
        scratch.clear();
        encode_counted(queued, &mut scratch, &mut credits);
        while scratch.len() < WRITE_BATCH_BYTES {
            let Ok(more) = replies.try_recv() else { break };
            encode_counted(more, &mut scratch, &mut credits);
        }
        if let Err(reason) = write_progressing(&mut writer, &scratch, stall).await {
            return Some(reason);
        }
        credits.clear();
        if scratch.capacity() > WRITE_BATCH_BYTES {
            // A large reply went out; do not keep its buffer for the connection's lifetime.
            scratch = BytesMut::new();
        }
    }
    let _ = writer.shutdown().await;
    None
}

/// Writes all of `bytes`, failing only when one write call takes nothing for `stall`.
async fn write_progressing<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    stall: Duration,
) -> Result<(), CloseReason> {
    let mut written = 0;
    while written < bytes.len() {
        match tokio::time::timeout(stall, writer.write(&bytes[written..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(CloseReason::IoError),
            Ok(Ok(n)) => written += n,
            Err(_) => return Err(CloseReason::SlowConsumer),
        }
    }
    match tokio::time::timeout(stall, writer.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(CloseReason::IoError),
        Err(_) => Err(CloseReason::SlowConsumer),
    }
}

fn encode_counted(queued: Queued, dst: &mut BytesMut, credits: &mut Vec<Credit>) {
    if let Reply::Err(error) = &queued.reply {
        metrics().error_sent(error.code);
    }
    queued.reply.encode(dst);
    credits.extend(queued.credit);
}
