//! The server: listener, connections, sessions, shutdown. What each operation does is in
//! [`crate::cmd`], one file per operation family.
//!
//! - [`listener`]: accepts TCP connections under the connection limit (WebSocket connections
//!   arrive through [`crate::http`] and share the limit).
//! - [`connection`]: one task per connection: framing, the auth gate, pipelining, keepalive,
//!   draining; it hands each request to [`crate::cmd::dispatch`] and sends the replies in
//!   request order.
//! - [`session`]: a connection's state that requests change or depend on, and the order its
//!   requests take effect in ([`session::write`], [`session::read`]); [`session::Dispatched`]
//!   is what every handler returns.
//! - [`outbound`]: a connection's reply queue, and the budgets bounding the reply bytes held.
//! - [`subscribe`]: `SUB`, `UNSUB`, `ACK`, `NACK` and `PSUB`, not yet moved to
//!   [`crate::cmd`] (they keep their own order, outside [`session`]).
//! - [`context`]: state shared by all connections.
//! - [`data_lock`]: one data directory, one process.
//! - [`fd_limit`]: the descriptor limit, and the connection limits that fit in it.

pub mod connection;
pub mod context;
pub mod data_lock;
pub mod fd_limit;
pub mod listener;
pub mod outbound;
pub mod session;
pub mod subscribe;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::store::{StoreOptions, Stores};
pub use context::ServerContext;

/// Opens the stores, listens, serves until `shutdown` resolves, then drains connections and
/// closes the stores cleanly.
pub async fn run(mut config: Config, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    limit_connections_to_descriptors(&mut config);
    // Ports first: a server that cannot bind them creates nothing on disk.
    let listener = bind_protocol_port(config.listen, config.listen_backlog)
        .map_err(|e| format!("binding {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let http_listener = TcpListener::bind(config.http)
        .await
        .map_err(|e| format!("binding http {}: {e}", config.http))?;
    let http_local = http_listener.local_addr().map_err(|e| e.to_string())?;
    let raft_listener = match &config.cluster {
        Some(cluster) => Some(
            TcpListener::bind(cluster.raft_addr)
                .await
                .map_err(|e| format!("binding the inter-node port {}: {e}", cluster.raft_addr))?,
        ),
        None => None,
    };
    // Certificates before anything on disk too: a bad path must not leave a half-started node.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::Tls::new(
            cert,
            key,
            config.tls_client_ca.as_deref(),
        )?),
        _ => None,
    };
    let auth = Arc::new(crate::auth::Auth::new(&config.auth)?);
    // Before the announcement, so whoever waits for it has seen the warning too.
    warn_if_open(&config, &auth, local, http_local);
    // Then the data directory, for this process alone, before anything in it is opened.
    let _lock = data_lock::acquire(&config.data_dir)?;
    let options = StoreOptions {
        map_size_bytes: config.map_size_mb << 20,
        master_key: config.master_key,
    };
    let stores = Stores::open(&config.data_dir, &config.stores, &options)
        .map_err(|e| format!("opening stores in {}: {e}", config.data_dir.display()))?;
    for store in stores.iter() {
        store.quota().set_limits(crate::store::quota::limits_for(
            &config.quotas,
            store.name(),
        ));
    }
    let quotas: Vec<_> = stores.iter().map(|store| store.quota().clone()).collect();
    for store in stores.iter() {
        store
            .start_scrubber(config.scrub_records_per_sec)
            .map_err(|e| format!("store {}: {e}", store.name()))?;
    }
    let cluster = match (&config.cluster, raft_listener) {
        (Some(cluster_config), Some(raft_listener)) => {
            crate::cluster::check_node_id(&config.data_dir, cluster_config.node_id)?;
            let client_url = cluster_config.client_url(local);
            let tls = match &cluster_config.tls {
                Some(paths) => Some(Arc::new(crate::cluster::transport::ClusterTls::new(
                    &paths.cert,
                    &paths.key,
                    &paths.ca,
                )?)),
                None => None,
            };
            let cluster = crate::cluster::Cluster::new(cluster_config.clone(), client_url, tls);
            tokio::spawn(crate::cluster::listener::accept_loop(
                raft_listener,
                cluster.clone(),
            ));
            cluster.spawn_pinger();
            if let Some(discovery) = &cluster_config.discovery {
                cluster.start_discovery(discovery)?;
            }
            Some(cluster)
        }
        _ => None,
    };
    let mut nodes = Vec::new();
    let mut raft = BTreeMap::new();
    for store in stores.iter() {
        let node = match &cluster {
            Some(cluster) => crate::raft::Node::start_clustered(store, cluster).await?,
            None => crate::raft::Node::start(store).await?,
        };
        raft.insert(store.name().to_owned(), node.status());
        crate::raft::scavenger::spawn(store, node.status(), config.scavenge_events_per_sec);
        nodes.push((store.name().to_owned(), node));
    }
    if let Some(cluster) = &cluster {
        // Once every store's group is registered: it asks for those not yet initialized.
        if !cluster.config.join.is_empty() {
            tokio::spawn(cluster.clone().join(cluster.config.join.clone()));
        }
    }
    // Both ports are bound before either is announced: a script that read both lines can
    // connect to both. The first line's format is relied on by scripts and tests.
    announce(&format!(
        "esdb listening on {local} (protocol tcp; stores: {}; data: {})",
        config.stores.join(","),
        config.data_dir.display()
    ));
    announce(&format!(
        "esdb http on {http_local} (console at /; /metrics /health /ready /stats /ws)"
    ));
    if let Some(cluster) = &config.cluster {
        announce(&format!(
            "esdb cluster node {} on {} (peers: {})",
            cluster.node_id,
            cluster.raft_addr,
            cluster
                .peers
                .iter()
                .map(|(id, addr)| format!("{id}={addr}"))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    let mut context = ServerContext::new(config.clone(), auth.clone(), stores, raft);
    context.cluster = cluster.clone();
    context.listening_on = Some(local);
    let context = Arc::new(context);
    let cancel = CancellationToken::new();
    crate::auth::reload::spawn_on_sighup(
        config.config_path.clone(),
        auth,
        tls.as_ref()
            .map(|tls| tls.certificates.clone())
            .into_iter()
            .chain(
                cluster
                    .as_ref()
                    .and_then(|c| c.tls.as_ref().map(|t| t.certificate.clone())),
            )
            .collect(),
        quotas,
        cancel.clone(),
    )?;
    let tracker = TaskTracker::new();
    let http_state = crate::http::HttpState {
        tls: tls.as_ref().map(|tls| tls.http.clone()),
        context: context.clone(),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
    };
    let http = tokio::spawn(crate::http::accept_loop(http_listener, http_state));
    let protocol_tls = tls.as_ref().map(|tls| tls.protocol.clone());
    let accept = listener::accept_loop(
        listener,
        protocol_tls,
        context.clone(),
        cancel.clone(),
        tracker.clone(),
    );
    // A store whose write path failed (its log could not be written, or a committed entry
    // could not be applied) stops the server loudly instead of answering every write with an
    // error: the log holds what was acknowledged, and a restart replays it.
    let failures = nodes.iter().map(|(name, node)| {
        let (name, failure) = (name.clone(), node.failure());
        Box::pin(async move { format!("store {name}: {}", failure.await) })
    });
    let failed = futures::future::select_all(failures);
    let mut outcome = Ok(());
    tokio::select! {
        _ = accept => {}
        _ = shutdown => tracing::info!("shutdown requested"),
        (reason, _, _) = failed => {
            tracing::error!(%reason, "write path failed; stopping the server");
            outcome = Err(format!("{reason}; stopping (a restart replays the log)"));
        }
    }
    cancel.cancel();
    let _ = http.await;
    tracker.close();
    let deadline = Duration::from_millis(config.shutdown_deadline_ms);
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown deadline");
    }
    let stores = context.take_stores();
    drop(context);
    // Persistent subscriptions save their checkpoints as they stop: the write path stays up
    // until every other holder of a store has let go, then stops, then the stores close.
    stores.wait_until_unshared(deadline).await;
    for (_, node) in nodes {
        node.shutdown().await;
    }
    if let Some(cluster) = &cluster {
        cluster.stop.cancel();
    }
    tokio::task::spawn_blocking(move || stores.close(deadline))
        .await
        .map_err(|e| format!("closing stores: {e}"))?;
    tracing::info!("shutdown complete");
    outcome
}

/// Raises the descriptor limit as far as allowed, and lowers the connection limits (protocol
/// and HTTP) to fit it.
fn limit_connections_to_descriptors(config: &mut Config) {
    let fd_limit = match fd_limit::raise_to_hard_limit() {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the file descriptor limit");
            return;
        }
    };
    let (fits, fits_http) = fd_limit::connection_limits(
        config.max_connections,
        config.max_http_connections,
        fd_limit,
        config.stores.len(),
    );
    if (fits, fits_http) != (config.max_connections, config.max_http_connections) {
        tracing::warn!(
            fd_limit,
            configured = config.max_connections,
            configured_http = config.max_http_connections,
            max_connections = fits,
            max_http_connections = fits_http,
            "the file descriptor limit allows fewer connections than --max-connections and \
             --max-http-connections"
        );
        config.max_connections = fits;
        config.max_http_connections = fits_http;
    }
}

/// The protocol listener, with its backlog (`--listen-backlog`; `TcpListener::bind` would
/// fix it at 128).
fn bind_protocol_port(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Warns loudly when a port anyone on the network can reach lets anyone in.
fn warn_if_open(
    config: &Config,
    auth: &crate::auth::Auth,
    protocol: std::net::SocketAddr,
    http: std::net::SocketAddr,
) {
    let exposed: Vec<String> = [protocol, http]
        .iter()
        .filter(|addr| !addr.ip().is_loopback())
        .map(|addr| addr.to_string())
        .collect();
    if exposed.is_empty() {
        return;
    }
    if !auth.enabled() {
        let line = format!(
            "WARNING: esdb listens on {} beyond loopback WITHOUT AUTHENTICATION: anyone who \
             can reach it can read and delete every event. Add users or tokens to the config \
             file ([[auth.users]], README \"Security\").",
            exposed.join(" and ")
        );
        tracing::warn!("{line}");
        eprintln!("{line}");
    }
    if config.tls_cert.is_none() {
        tracing::warn!(
            addresses = exposed.join(" and "),
            "listening beyond loopback without TLS: credentials and events cross the network \
             in clear text (--tls-cert, --tls-key)"
        );
    }
}

/// Prints the one line scripts wait for, on stdout, flushed.
fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
