//! [`Client`]: one shared connection at a time, to one of a list of servers, re-established
//! with exponential backoff when it is lost; and the retry rule every call follows.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use esdb_protocol::{Reply, Request};

use crate::connection::{encode, Connection};
use crate::error::{Error, Result};
use crate::info::ServerInfo;
use crate::options::ClientOptions;

/// A client of one store. Cheap to clone: clones share the connection, and calls from any
/// number of tasks are pipelined on it (replies come back in request order).
///
/// The list of servers grows with what they tell about their cluster: every address in a
/// greeting's `INFO` `cluster.client_urls` (up to [`MAX_LEARNED_SERVERS`]) is tried after the
/// given ones, so a client given one node's address fails over to the others when it dies.
///
/// Calls retry, on the next server of the list, when the connection fails or the server
/// answers a retryable code (`too_many_connections`, `shutting_down`, `storage_error`, `store_full`,
/// `rate_limited`, `unavailable`);
/// answers of the store itself (`wrong_expected_version`, …) are returned at once. Appends
/// are safe to retry because every [`crate::EventData`] carries its id. Calls in flight when
/// a connection fails are retried independently, so their order of effect is only the order
/// of their replies; use expected versions where order matters.
/// Most server addresses a client learns from greetings (`INFO` `cluster.client_urls`).
pub const MAX_LEARNED_SERVERS: usize = 64;

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    /// The connection calls use now; replaced when it closes.
    current: Mutex<Option<Arc<Connection>>>,
    /// Held while connecting, so a lost connection is re-established once, not by every
    /// waiting call. Holds the index of the next server to try (round-robin).
    connecting: tokio::sync::Mutex<usize>,
    /// Addresses learned from greetings, beyond the options' servers, oldest first.
    learned: Mutex<Vec<String>>,
    next_sid: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.inner.options.servers)
            .field("store", &self.inner.options.store)
            .finish()
    }
}

impl Client {
    /// A client for these options; connects now, so an unreachable server list or an unknown
    /// store is reported here.
    pub async fn connect(options: ClientOptions) -> Result<Client> {
        let client = Client::lazy(options)?;
        client.connection().await?;
        Ok(client)
    }

    /// A client that connects on its first call.
    pub fn lazy(options: ClientOptions) -> Result<Client> {
        if options.servers.is_empty() {
            return Err(Error::Invalid {
                code: esdb_protocol::ErrorCode::InvalidArgument,
                message: "no server address given".to_owned(),
            });
        }
        Ok(Client {
            inner: Arc::new(Inner {
                options,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(0),
                learned: Mutex::new(Vec::new()),
                next_sid: AtomicU64::new(1),
            }),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// `USE`: a client of another store of the same servers, with its own connection (the
    /// store belongs to a connection, so clients sharing one cannot differ in it). Fails with
    /// `store_not_found` when the server does not serve it.
    pub async fn use_store(&self, store: &str) -> Result<Client> {
        esdb_protocol::ops::session::validate_store_name(store).map_err(Error::invalid)?;
        Client::connect(self.inner.options.clone().with_store(store)).await
    }

    /// The store this client works in.
    pub async fn store(&self) -> Result<String> {
        Ok(self.connection().await?.store.clone())
    }

    /// The `INFO` of the server the client is connected to now.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        Ok(self.connection().await?.info.clone())
    }

    /// The address of the server the client is connected to now.
    pub async fn server_addr(&self) -> Result<String> {
        Ok(self.connection().await?.addr.clone())
    }

    /// A round trip (`PING`): resolves once every earlier call's request was answered.
    pub async fn ping(&self) -> Result<()> {
        match self.call(&Request::Ping).await? {
            Reply::Pong => Ok(()),
            other => Err(Error::unexpected("PING", &other)),
        }
    }

    /// Closes the connection; the next call opens a new one. Subscriptions resume on it.
    pub fn disconnect(&self) {
        if let Some(connection) = self.inner.current.lock().expect("current lock").take() {
            connection.close("closed by the client");
        }
    }

    pub(crate) fn next_sid(&self) -> String {
        format!("s{}", self.inner.next_sid.fetch_add(1, Ordering::Relaxed))
    }

    /// The live connection, or a new one: each server of the list in turn, a pause after each
    /// round that reached none, as many rounds as the backoff allows.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>> {
        if let Some(connection) = self.live_connection() {
            return Ok(connection);
        }
        let mut next_server = self.inner.connecting.lock().await;
        if let Some(connection) = self.live_connection() {
            return Ok(connection);
        }
        let options = &self.inner.options;
        let mut servers = self.servers();
        let mut last = String::new();
        for round in 0..=options.backoff.max_retries {
            if round > 0 {
                tokio::time::sleep(options.backoff.delay(round - 1)).await;
            }
            servers = self.servers();
            for _ in 0..servers.len() {
                let addr = &servers[*next_server % servers.len()];
                *next_server = next_server.wrapping_add(1);
                match Connection::open(addr, options).await {
                    Ok(connection) => {
                        self.learn(&connection);
                        *self.inner.current.lock().expect("current lock") =
                            Some(connection.clone());
                        return Ok(connection);
                    }
                    Err(error) if !error.is_retryable() => return Err(error),
                    Err(error) => last = error.to_string(),
                }
            }
        }
        Err(Error::Unavailable {
            servers: servers.join(","),
            attempts: options.backoff.max_retries + 1,
            last,
        })
    }

    /// The servers to try: the options' list, then the addresses learned from greetings.
    pub fn servers(&self) -> Vec<String> {
        let mut servers = self.inner.options.servers.clone();
        servers.extend(
            self.inner
                .learned
                .lock()
                .expect("learned lock")
                .iter()
                .cloned(),
        );
        servers
    }

    /// Adds the cluster's client addresses a greeting names to the servers to try.
    fn learn(&self, connection: &Connection) {
        let Some(cluster) = &connection.info.cluster else {
            return;
        };
        let mut learned = self.inner.learned.lock().expect("learned lock");
        for url in cluster.client_urls.values() {
            let known = self.inner.options.servers.contains(url) || learned.contains(url);
            if !known && learned.len() < MAX_LEARNED_SERVERS {
                learned.push(url.clone());
            }
        }
    }

    fn live_connection(&self) -> Option<Arc<Connection>> {
        let mut current = self.inner.current.lock().expect("current lock");
        match current.as_ref() {
            Some(connection) if !connection.is_closed() => Some(connection.clone()),
            Some(_) => {
                // Closed: the next server in the list gets the first try (round-robin).
                *current = None;
                None
            }
            None => None,
        }
    }

    /// Runs `attempt` on the live connection, again on a new one after a lost connection, a
    /// timeout or a retryable answer, with the backoff's pauses; anything else is returned.
    pub(crate) async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut(Arc<Connection>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let options = &self.inner.options;
        let timeout = Duration::from_millis(options.request_timeout_ms);
        let mut retry = 0;
        loop {
            let connection = self.connection().await?;
            let outcome = match tokio::time::timeout(timeout, attempt(connection.clone())).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // Replies are matched by order, so a connection that lost one is unusable.
                    connection.close("a reply timed out");
                    Err(Error::Timeout(options.request_timeout_ms))
                }
            };
            match outcome {
                Err(error) if error.is_retryable() && retry < options.backoff.max_retries => {
                    if matches!(error, Error::Server { .. }) {
                        // `shutting_down` and the like: let the next try pick another server.
                        connection.close("the server answered a retryable error");
                    }
                    tokio::time::sleep(options.backoff.delay(retry)).await;
                    retry += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// Sends one request (retried as [`Client::with_retries`] says) and returns its reply; an
    /// `-ERR` becomes [`Error::Server`].
    pub(crate) async fn call(&self, request: &Request) -> Result<Reply> {
        self.call_bytes(encode(request)).await
    }

    pub(crate) async fn call_bytes(&self, bytes: Bytes) -> Result<Reply> {
        self.with_retries(|connection| {
            let bytes = bytes.clone();
            async move {
                match connection.request(bytes).await? {
                    Reply::Err(error) => Err(Error::server(error)),
                    reply => Ok(reply),
                }
            }
        })
        .await
    }
}
