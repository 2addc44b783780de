//! The HTTP listener (`--http`): operators' endpoints and the WebSocket transport.
//!
//! | path | answer |
//! |---|---|
//! | `/`, `/console/…` | the web console, a single page embedded in the binary ([`console`]) |
//! | `/metrics` | every metric of [`crate::metrics`], Prometheus text format |
//! | `/health` | `200 ok` while the process runs (liveness probe) |
//! | `/ready` | `200 ready` while the stores are open, else `503` (readiness probe; later: and the node has a Raft leader) |
//! | `/stats` | per-store counts as JSON, the same as the `STATS` operation |
//! | `/ws` | the esdb protocol over WebSocket ([`ws`]) |
//!
//! Connections are served by hyper directly (not `axum::serve`) so that every connection is
//! bounded (PROTOCOL.md "HTTP limits"):
//! - a client that does not finish sending a request's headers, a WebSocket handshake
//!   included, is cut off [`HTTP_HEADER_READ_TIMEOUT_MS`] after it started (slowloris), and so
//!   is a kept-alive connection that sends no next request;
//! - headers larger than [`HTTP_MAX_HEADER_BYTES`], or more than [`HTTP_MAX_HEADERS`] of them,
//!   get `431` and a close;
//! - at most `--max-http-connections` are open at once; the one past it gets a `503`
//!   ([`HTTP_TOO_MANY_CONNECTIONS_RESPONSE`]) and a close without being read. An upgraded
//!   WebSocket leaves this count for the protocol's (`--max-connections`).

pub mod auth;
pub mod console;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::metrics;
use crate::server::ServerContext;

/// Longest time a client may take to send an HTTP request's headers (a WebSocket handshake
/// is one such request): bounds what a slow or silent client holds.
pub const HTTP_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Largest request head (request line and headers, CRLFs included): ample for browsers and
/// scrapers (a bearer token, cookies), small enough that a connection pins little memory.
pub const HTTP_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header lines in one request.
pub const HTTP_MAX_HEADERS: usize = 64;
/// What the connection past `--max-http-connections` is sent before it is closed (it is not
/// read: the answer does not depend on the request).
pub const HTTP_TOO_MANY_CONNECTIONS_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain\r\ncontent-length: 31\r\nretry-after: 1\r\nconnection: close\r\n\r\n\
too many HTTP connections open\n";
/// Longest time the refusal of a connection past the limit may take to send: a client that
/// does not read it must not hold the descriptor.
const HTTP_REFUSAL_TIMEOUT_MS: u64 = 1_000;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub context: Arc<ServerContext>,
    pub cancel: CancellationToken,
    /// WebSocket connections are tracked with the TCP ones, so shutdown drains both.
    pub tracker: TaskTracker,
    /// The port speaks only HTTPS (and WSS) when set (`--tls-cert`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/stats", get(stats))
        .route("/ws", get(ws::upgrade))
        .merge(console::routes())
        .with_state(state)
}

/// Serves HTTP connections from `listener` until `cancel`, then asks the open ones to finish
/// (WebSocket connections end with the protocol connections, through `cancel`).
pub async fn accept_loop(listener: TcpListener, state: HttpState) {
    let cancel = state.cancel.clone();
    let tls = state.tls.clone();
    let limit = state.context.config.max_http_connections;
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    let router = router(state);
    // The same accepts as the protocol port's (backoff after a failure).
    let mut acceptor = crate::server::listener::Acceptor::new(listener, "http accept failed");
    while let Some((socket, peer)) = acceptor.next(&cancel).await {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics().http_connections_refused.inc();
            tokio::spawn(refuse(socket, tls.is_some()));
            continue;
        };
        // The peer's address reaches the WebSocket handler (failed CONNECTs are slowed per
        // address).
        let peer_router = router.clone().layer(axum::Extension(ws::PeerAddress(peer)));
        let service = TowerToHyperService::new(peer_router);
        let (cancel, tls) = (cancel.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(socket), service, cancel).await,
                Some(tls) => {
                    let refusal = crate::tls::PLAIN_TEXT_HTTP_REFUSAL;
                    if let Some(socket) = crate::tls::accept(&tls, socket, refusal).await {
                        serve_connection(TokioIo::new(socket), service, cancel).await
                    }
                }
            }
            // Held until the connection ends, or until it became a WebSocket (hyper's
            // connection future ends at the upgrade).
            drop(permit);
        });
    }
}

/// Answers a connection past `--max-http-connections` with a `503` and closes it. A TLS port's
/// client would not understand plain text, so it is closed without an answer.
async fn refuse(mut socket: tokio::net::TcpStream, tls: bool) {
    use tokio::io::AsyncWriteExt;
    if !tls {
        let write = socket.write_all(HTTP_TOO_MANY_CONNECTIONS_RESPONSE);
        let _ = tokio::time::timeout(Duration::from_millis(HTTP_REFUSAL_TIMEOUT_MS), write).await;
        let _ = socket.shutdown().await;
    }
}

/// Serves one HTTP connection (plain or TLS) until it ends or `cancel`.
async fn serve_connection<I, S>(io: I, service: S, cancel: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send + 'static,
    S::Future: Send,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    {
        {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(HTTP_HEADER_READ_TIMEOUT_MS))
                .max_header_size(HTTP_MAX_HEADER_BYTES)
                .max_headers(HTTP_MAX_HEADERS);
            let connection = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = cancel.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        }
    }
}

async fn metrics_text(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if !state.context.config.metrics_open {
        if let Err(refusal) = auth::check(&state, &headers, Some(auth::Need::AnyToken)) {
            return *refusal;
        }
    }
    state.context.refresh_storage_gauges();
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        metrics().encode_text(),
    )
        .into_response()
}

async fn ready(State(state): State<HttpState>) -> Response {
    if state.context.stores_open() && !state.cancel.is_cancelled() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn stats(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(refusal) = auth::check(&state, &headers, Some(auth::Need::AdminEverywhere)) {
        return *refusal;
    }
    let context = state.context.clone();
    match tokio::task::spawn_blocking(move || context.stats_json()).await {
        Ok(Ok(json)) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Ok(Err(error)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "stats failed\n").into_response(),
    }
}
