//! Accepts TCP connections, under the connection limit, until cancelled; [`Acceptor`] is the
//! accept-with-backoff the HTTP port shares.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use esdb_protocol::{ErrorCode, Reply};

use crate::metrics::{metrics, Transport};
use crate::server::connection;
use crate::server::ServerContext;

/// Longest pause after a failed accept (e.g. out of file descriptors); doubles from 1 ms.
const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;

/// A listening port's accepts, for the protocol and HTTP ports alike: a failed accept (out of
/// file descriptors, say) is logged and retried after a pause that doubles from 1 ms up to
/// [`ACCEPT_BACKOFF_MAX_MS`], and is back to 1 ms after the next success.
pub(crate) struct Acceptor {
    listener: TcpListener,
    /// The pause after the next failed accept.
    backoff_ms: u64,
    /// What the log line of a failed accept says.
    failure: &'static str,
}

impl Acceptor {
    pub(crate) fn new(listener: TcpListener, failure: &'static str) -> Acceptor {
        Acceptor {
            listener,
            backoff_ms: 1,
            failure,
        }
    }

    /// The next connection, with `TCP_NODELAY` set, or `None` once `cancel` fires.
    pub(crate) async fn next(
        &mut self,
        cancel: &CancellationToken,
    ) -> Option<(TcpStream, std::net::SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => return None,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((socket, peer)) => {
                    self.backoff_ms = 1;
                    let _ = socket.set_nodelay(true);
                    return Some((socket, peer));
                }
                Err(error) => {
                    tracing::warn!(%error, "{}", self.failure);
                    tokio::time::sleep(Duration::from_millis(self.backoff_ms)).await;
                    self.backoff_ms = (self.backoff_ms * 2).min(ACCEPT_BACKOFF_MAX_MS);
                }
            }
        }
    }
}

/// `tls`: the port speaks only TLS (`--tls-cert`), handshaken in the connection's task.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    context: Arc<ServerContext>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = context.connections.clone();
    let connection_metrics = context.connection_metrics(Transport::Tcp);
    let mut acceptor = Acceptor::new(listener, "accept failed");
    while let Some((mut socket, peer)) = acceptor.next(&cancel).await {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            connection_metrics.refused.inc();
            metrics().error_sent(ErrorCode::TooManyConnections);
            tracker.spawn(async move {
                let reply = Reply::error(ErrorCode::TooManyConnections, "connection limit reached");
                let _ = socket.write_all(&reply.to_bytes()).await;
            });
            continue;
        };
        let (context, cancel, tls) = (context.clone(), cancel.clone(), tls.clone());
        tracker.spawn(async move {
            let peer = peer.to_string();
            match tls {
                None => connection::serve(socket, peer, Transport::Tcp, context, cancel).await,
                // Boxed: a TLS connection's future (the handshake, the TLS stream's state) is
                // several times a plain one's; unboxed, every plain connection's task would be
                // sized for it too.
                Some(tls) => {
                    Box::pin(async move {
                        let refusal = crate::tls::PLAIN_TEXT_PROTOCOL_REFUSAL;
                        if let Some(socket) = crate::tls::accept(&tls, socket, refusal).await {
                            // A verified client certificate may name a user (`certificate =
                            // true`): the connection starts authenticated as it.
                            let principal = crate::tls::client_common_name(&socket)
                                .and_then(|name| context.auth.certificate_user(&name));
                            let gate = crate::auth::Gate::new(
                                context.auth.clone(),
                                &peer,
                                Transport::Tcp.as_str(),
                                principal,
                            );
                            connection::serve_gated(
                                socket,
                                peer,
                                Transport::Tcp,
                                connection::Access::ReadWrite,
                                gate,
                                context,
                                cancel,
                            )
                            .await
                        }
                    })
                    .await
                }
            }
            drop(permit);
        });
    }
}
