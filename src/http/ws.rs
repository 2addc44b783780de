//! `/ws`: the esdb protocol over WebSocket, byte for byte the same as over TCP.
//!
//! The WebSocket is bridged to the ordinary connection code ([`connection::serve`]) through an
//! in-memory pipe (`tokio::io::duplex`):
//! - every Binary or Text message's payload is appended to the protocol byte stream, so a
//!   message may carry one request, several, or part of one (frames may span messages);
//! - whatever the server writes goes back as messages of at most [`WS_BRIDGE_BUFFER_BYTES`]
//!   bytes (plus up to 3 bytes of a split character). A message is Text when its bytes are
//!   UTF-8, which protocol output nearly always is (browsers then get strings), else Binary. A
//!   message may hold several replies or part of one: clients must decode the concatenation.
//!
//! A frame or message the WebSocket rules forbid fails the connection: the replies to the
//! requests already received are sent, then a Close with the RFC 6455 code ([`failure_close`]):
//! 1002 for a protocol error (an unmasked client frame, reserved bits or opcodes, a stray
//! continuation, a fragmented or oversized control frame), 1007 for a Text message that is not
//! UTF-8, 1009 for a frame or message over [`MAX_WS_MESSAGE_BYTES`] (refused from its header,
//! before its payload is read).
//!
//! So a WebSocket connection can do everything a TCP one can, with the same limits, keepalive
//! and connection limit; its metrics carry `transport="ws"`. Unless it is opened with
//! `/ws?readonly=1` (the web console's way): then every request that would change the store is
//! refused with `-ERR read_only` ([`Access::ReadOnly`]).

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use esdb_protocol::limits::{MAX_CONTROL_LINE_BYTES, MAX_PAYLOAD_BYTES};
use esdb_protocol::{ErrorCode, Reply};

use crate::http::HttpState;
use crate::metrics::{metrics, Transport};
use crate::server::connection::{self, Access};

/// Largest WebSocket message (and frame) accepted: one control line plus the largest payload
/// and its CRLF, so a client may send each request as one message. Larger messages close the
/// connection (tungstenite refuses them before buffering them whole).
pub const MAX_WS_MESSAGE_BYTES: usize = MAX_CONTROL_LINE_BYTES + MAX_PAYLOAD_BYTES + 2;
/// tungstenite's read buffer per connection (its default, 128 KiB, is a lot per idle client).
pub const WS_READ_BUFFER_BYTES: usize = 16 * 1024;
/// The in-memory pipe between the WebSocket and the connection, each way. Bounds what is in
/// flight between them (backpressure passes through), and the size of outgoing messages.
pub const WS_BRIDGE_BUFFER_BYTES: usize = 64 * 1024;
/// A Close frame's reason is at most 123 bytes (a control frame's 125, less the code).
const CLOSE_REASON_MAX_BYTES: usize = 123;

/// The HTTP handler: checks the handshake and its query (`readonly`), then serves the
/// protocol on the upgraded socket.
pub async fn upgrade(
    State(state): State<HttpState>,
    peer: Option<axum::Extension<PeerAddress>>,
    headers: axum::http::HeaderMap,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let access = match access_from_query(uri.query()) {
        Ok(access) => access,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let principal = match crate::http::auth::check(&state, &headers, None) {
        Ok(principal) => principal,
        Err(refusal) => return *refusal,
    };
    let peer = peer.map_or_else(|| "websocket".to_owned(), |p| p.0 .0.to_string());
    let gate = crate::auth::Gate::new(state.context.auth.clone(), &peer, "ws", principal);
    // Held until the connection ends, so shutdown waits for it like for a TCP connection.
    let token = state.tracker.token();
    upgrade
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            serve(socket, access, gate, peer, state).await;
            drop(token);
        })
}

/// The connection's access from the `/ws` query string: `readonly=1` (or `true`) makes it
/// read-only, `readonly=0` (or `false`) or no query leaves it read-write. Anything else is
/// refused, so that a misspelt parameter cannot quietly open a writable connection.
pub fn access_from_query(query: Option<&str>) -> Result<Access, String> {
    let mut access = None;
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "readonly" {
            return Err(format!(
                "unknown /ws query parameter {key:?}: the only one is readonly"
            ));
        }
        if access.is_some() {
            return Err("readonly given twice".to_owned());
        }
        access = Some(match value {
            "1" | "true" => Access::ReadOnly,
            "0" | "false" => Access::ReadWrite,
            _ => {
                return Err(format!(
                    "readonly must be 1, true, 0 or false, not {value:?}"
                ))
            }
        });
    }
    Ok(access.unwrap_or_default())
}

/// The client's address, put in each request's extensions by the HTTP accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddress(pub std::net::SocketAddr);

async fn serve(
    mut socket: WebSocket,
    access: Access,
    gate: crate::auth::Gate,
    peer: String,
    state: HttpState,
) {
    let context = state.context;
    let Ok(permit) = context.connections.clone().try_acquire_owned() else {
        context.connection_metrics(Transport::Ws).refused.inc();
        metrics().error_sent(ErrorCode::TooManyConnections);
        let reply = Reply::error(ErrorCode::TooManyConnections, "connection limit reached");
        let _ = socket.send(to_message(reply.to_bytes())).await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    };
    let (server_side, bridge_side) = tokio::io::duplex(WS_BRIDGE_BUFFER_BYTES);
    let (bridge_read, bridge_write) = tokio::io::split(bridge_side);
    let (sink, stream) = socket.split();
    let (failure_sender, failure) = tokio::sync::oneshot::channel();
    let inbound = tokio::spawn(ws_to_bridge(stream, bridge_write, failure_sender));
    let serve = connection::serve_gated(
        server_side,
        peer,
        Transport::Ws,
        access,
        gate,
        context,
        state.cancel,
    );
    tokio::join!(serve, bridge_to_ws(bridge_read, sink, failure));
    // The connection is over; stop waiting for client messages nobody will read.
    inbound.abort();
    drop(permit);
}

/// Client messages → the connection's input. Ends (EOF to the connection) when the client
/// closes or the socket fails; when a frame broke the WebSocket rules, first hands the Close
/// to send to `failure`.
async fn ws_to_bridge(
    mut stream: SplitStream<WebSocket>,
    mut bridge: WriteHalf<DuplexStream>,
    failure: tokio::sync::oneshot::Sender<CloseFrame>,
) {
    while let Some(received) = stream.next().await {
        let message = match received {
            Ok(message) => message,
            Err(error) => {
                if let Some(close) = failure_close(error) {
                    tracing::debug!(code = close.code, reason = %close.reason, "websocket failed");
                    metrics()
                        .ws_failed
                        .with_label_values(&[&close.code.to_string()])
                        .inc();
                    let _ = failure.send(close);
                }
                break;
            }
        };
        let bytes = match message {
            Message::Text(text) => Bytes::from(text),
            Message::Binary(bytes) => bytes,
            Message::Close(_) => break,
            // Answered by the WebSocket layer itself.
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if bridge.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = bridge.shutdown().await;
}

/// The Close frame answering a read error: a frame or message that broke the rules gets the
/// code RFC 6455 names for it; `None` when the socket itself failed (nobody to tell).
fn failure_close(error: axum::Error) -> Option<CloseFrame> {
    use tungstenite::Error;
    let error = error.into_inner().downcast::<Error>().ok()?;
    let (code, reason) = match *error {
        Error::Capacity(ref capacity) => (
            close_code::SIZE,
            format!("{capacity}; the most is {MAX_WS_MESSAGE_BYTES} bytes"),
        ),
        Error::Utf8(_) => (
            close_code::INVALID,
            "a Text message is not UTF-8 (send Binary)".to_owned(),
        ),
        Error::Protocol(ref protocol) => (close_code::PROTOCOL, protocol.to_string()),
        _ => return None,
    };
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(truncate_reason(reason)),
    })
}

/// `reason` cut to what a Close frame can hold, on a character boundary.
fn truncate_reason(mut reason: String) -> String {
    if reason.len() > CLOSE_REASON_MAX_BYTES {
        let mut end = CLOSE_REASON_MAX_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// The connection's output → messages to the client, until the connection ends; then a Close:
/// the one `failure` holds if the client broke the WebSocket rules, else a plain one.
async fn bridge_to_ws(
    mut bridge: ReadHalf<DuplexStream>,
    mut sink: SplitSink<WebSocket, Message>,
    mut failure: tokio::sync::oneshot::Receiver<CloseFrame>,
) {
    let mut buffer = BytesMut::with_capacity(WS_BRIDGE_BUFFER_BYTES);
    let mut client_gone = false;
    loop {
        match bridge.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if client_gone {
            // Keep draining so the connection is not stalled; it ends once the client's EOF
            // reaches it.
            buffer.clear();
            continue;
        }
        if let Some(message) = take_message(&mut buffer) {
            client_gone = sink.send(message).await.is_err();
        }
    }
    if !client_gone {
        if !buffer.is_empty() {
            let _ = sink.send(Message::Binary(buffer.split().freeze())).await;
        }
        let _ = sink.send(Message::Close(failure.try_recv().ok())).await;
    }
}

/// The next message to send from `buffer`: all of it as Text when it is UTF-8; when it ends in
/// the middle of a character, the part before it (the rest waits for its next bytes); else all
/// of it as Binary.
fn take_message(buffer: &mut BytesMut) -> Option<Message> {
    match std::str::from_utf8(buffer) {
        Ok(_) => Some(to_message(buffer.split().freeze())),
        Err(error) if error.error_len().is_none() => {
            let valid = error.valid_up_to();
            (valid > 0).then(|| to_message(buffer.split_to(valid).freeze()))
        }
        Err(_) => Some(Message::Binary(buffer.split().freeze())),
    }
}

fn to_message(bytes: Bytes) -> Message {
    match Utf8Bytes::try_from(bytes) {
        Ok(text) => Message::Text(text),
        Err(_) => unreachable!("callers pass UTF-8"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readonly_query_is_parsed_strictly() {
        assert_eq!(access_from_query(None), Ok(Access::ReadWrite));
        assert_eq!(access_from_query(Some("")), Ok(Access::ReadWrite));
        assert_eq!(access_from_query(Some("readonly=1")), Ok(Access::ReadOnly));
        assert_eq!(
            access_from_query(Some("readonly=true")),
            Ok(Access::ReadOnly)
        );
        assert_eq!(access_from_query(Some("readonly=0")), Ok(Access::ReadWrite));
        assert_eq!(
            access_from_query(Some("readonly=false")),
            Ok(Access::ReadWrite)
        );
        assert!(access_from_query(Some("readonly")).is_err());
        assert!(access_from_query(Some("readonly=yes")).is_err());
        assert!(access_from_query(Some("read_only=1")).is_err());
        assert!(access_from_query(Some("readonly=1&x=2")).is_err());
        assert!(access_from_query(Some("readonly=1&readonly=0")).is_err());
    }

    #[test]
    fn output_is_text_when_utf8_and_characters_are_never_split() {
        let mut buffer = BytesMut::from(&b"APPENDED s 0 0\r\n"[..]);
        assert!(matches!(take_message(&mut buffer), Some(Message::Text(_))));
        assert!(buffer.is_empty());
        // "é" is 0xC3 0xA9; the buffer ends after its first byte.
        let mut buffer = BytesMut::from(&b"ab\xC3"[..]);
        match take_message(&mut buffer) {
            Some(Message::Text(text)) => assert_eq!(text.as_str(), "ab"),
            other => panic!("{other:?}"),
        }
        assert_eq!(&buffer[..], b"\xC3");
        assert!(take_message(&mut buffer).is_none(), "waits for the rest");
        buffer.extend_from_slice(b"\xA9");
        assert!(matches!(take_message(&mut buffer), Some(Message::Text(_))));
        let mut buffer = BytesMut::from(&b"\xFF\xFE"[..]);
        assert!(matches!(
            take_message(&mut buffer),
            Some(Message::Binary(_))
        ));
    }
}
