//! Configuration: command-line flags, `ESDB_*` environment variables, a TOML file, defaults.
//!
//! Precedence, highest first: flag, environment variable, config file, built-in default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

/// Default protocol address. Not NATS's 4222, so both can run side by side; loopback, because
/// there is no authentication yet.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4350";
/// Default HTTP address (`/metrics`, `/health`, `/ready`, `/stats`, `/ws`): the protocol port's
/// neighbour, loopback for the same reason.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8350";
/// Default data directory, relative to where the server starts.
pub const DEFAULT_DATA_DIR: &str = "./esdb-data";
/// Default store name.
pub const DEFAULT_STORE: &str = "default";
/// A connection that sent nothing for this long gets a PING (NATS uses 2 minutes).
pub const DEFAULT_PING_INTERVAL_MS: u64 = 120_000;
/// Unanswered PINGs after which a connection is closed as stale (as NATS).
pub const DEFAULT_MAX_PINGS_OUT: u32 = 2;
/// Concurrent client connections; more are refused with `-ERR too_many_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Concurrent HTTP connections (`/metrics`, `/health`, …, and WebSocket handshakes not yet
/// upgraded); more are answered `503` and closed. Each holds a descriptor for up to
/// `HTTP_HEADER_READ_TIMEOUT_MS` without sending anything, so they are bounded apart from the
/// protocol's connections (an upgraded WebSocket counts against `max_connections` instead).
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 1024;
/// LMDB map size per store: the most one store may hold. The file is sparse.
pub const DEFAULT_MAP_SIZE_MB: usize = 64 * 1024;
/// How long shutdown waits for in-flight requests to be answered.
pub const DEFAULT_SHUTDOWN_DEADLINE_MS: u64 = 10_000;

/// Listen backlog of the protocol port: connections the kernel queues before they are
/// accepted. A burst of connects past it waits for SYN retries (a second each); Linux caps
/// it at `net.core.somaxconn` (4096 on current kernels).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;
/// Bytes of payloads being received (a header read, its payload not yet complete), summed over
/// all connections. A connection whose payload does not fit waits, unread, for room.
pub const DEFAULT_MAX_READ_BYTES_IN_FLIGHT: u64 = 256 << 20;

/// Most emitter tasks per store (the default is the number of cores, up to this).
pub const MAX_EMITTERS: usize = 64;

/// `--small`: defaults for a small device (a Nerves board, a container with little memory).
/// Each applies only where the setting is not given (flag, environment or file win). The
/// sizes are what one process with a few clients needs, not what a shared server does.
pub mod small {
    /// One emitter task per store: fan-out to a handful of subscribers needs no more.
    pub const EMITTERS: usize = 1;
    /// One runtime worker thread (the default is one per core).
    pub const WORKER_THREADS: usize = 1;
    pub const MAX_CONNECTIONS: usize = 256;
    pub const MAX_HTTP_CONNECTIONS: usize = 32;
    pub const LISTEN_BACKLOG: u32 = 128;
    /// 1 GiB per store: the map is address space, and a small device (or a 32-bit one) has
    /// little of it; the data is capped at this.
    pub const MAP_SIZE_MB: usize = 1024;
    /// 4 MiB of replies built and unwritten per connection (still at least one whole reply).
    pub const MAX_PENDING_BYTES: u64 = 4 << 20;
    pub const MAX_PENDING_BYTES_TOTAL: u64 = 32 << 20;
    pub const MAX_READ_BYTES_IN_FLIGHT: u64 = 16 << 20;
    /// No background scrubber: a small device's flash and CPU are better left idle
    /// (`esdb verify` checks offline).
    pub const SCRUB_RECORDS_PER_SEC: u64 = 0;
}

/// The default of a setting: the small profile's under `--small`, else the built-in one.
fn pick<T>(small: bool, small_value: T, default_value: T) -> T {
    if small {
        small_value
    } else {
        default_value
    }
}

fn default_emitters() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_EMITTERS)
}

#[derive(Debug, Parser)]
#[command(
    name = "esdb",
    version,
    about = "An event store server speaking a NATS-like text protocol, and its command line client",
    after_help = "Examples:
  esdb serve --data-dir ./esdb-data
  esdb append user-1 --type UserCreated --data '{\"name\":\"Ada\"}'
  esdb read user-1
  esdb tail --all

Client commands take --server HOST:PORT[,…] (env ESDB_SERVER, default 127.0.0.1:4350) and \
--store, or a saved context (esdb context). Exit codes: 0 ok, 1 error (the wire code on \
stderr), 2 usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: CliCommand,
}

/// Parsed once at start and consumed: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum CliCommand {
    /// Run the server.
    Serve(ServeArgs),
    /// Print an argon2id hash of a password read from stdin, for `password_hash` in the
    /// config file's `[[auth.users]]`.
    Passwd,
    /// The client subcommands (src/cli).
    #[command(flatten)]
    Client(crate::cli::ClientCommand),
}

/// Flags of `esdb serve`. Every one is optional here so that the config file and the defaults
/// can fill in what was not given.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys in snake_case, `stores` a list).
    #[arg(long, env = "ESDB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Small-device profile: one emitter per store, one worker thread, fewer connections,
    /// smaller reply and read budgets, a 1 GiB map; settings given explicitly still win
    /// [default: false].
    #[arg(long, env = "ESDB_SMALL", num_args = 0..=1, default_missing_value = "true")]
    pub small: Option<bool>,
    /// Directory holding one subdirectory per store [default: ./esdb-data].
    #[arg(long, env = "ESDB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Protocol address HOST:PORT; port 0 picks a free port [default: 127.0.0.1:4350].
    #[arg(long, env = "ESDB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HTTP address HOST:PORT for /metrics, /health, /ready, /stats and the WebSocket
    /// endpoint /ws; port 0 picks a free port [default: 127.0.0.1:8350].
    #[arg(long, env = "ESDB_HTTP")]
    pub http: Option<SocketAddr>,
    /// A store to serve (repeatable; the env var takes a comma-separated list). The first is
    /// the one a connection starts in [default: default].
    #[arg(long = "store", env = "ESDB_STORE", value_delimiter = ',')]
    pub stores: Vec<String>,
    /// Idle time before the server PINGs a connection [default: 120000].
    #[arg(long, env = "ESDB_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Unanswered PINGs before the connection is closed [default: 2].
    #[arg(long, env = "ESDB_MAX_PINGS_OUT")]
    pub max_pings_out: Option<u32>,
    /// Most concurrent connections [default: 10000].
    #[arg(long, env = "ESDB_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most concurrent HTTP connections (WebSockets count in --max-connections once upgraded)
    /// [default: 1024].
    #[arg(long, env = "ESDB_MAX_HTTP_CONNECTIONS")]
    pub max_http_connections: Option<usize>,
    /// LMDB map size per store in MiB: the most a store may hold [default: 65536].
    #[arg(long, env = "ESDB_MAP_SIZE_MB")]
    pub map_size_mb: Option<usize>,
    /// How long shutdown waits for in-flight requests [default: 10000].
    #[arg(long, env = "ESDB_SHUTDOWN_DEADLINE_MS")]
    pub shutdown_deadline_ms: Option<u64>,
    /// A write to a client stalled this long closes the connection [default: 10000].
    #[arg(long, env = "ESDB_WRITE_STALL_TIMEOUT_MS")]
    pub write_stall_timeout_ms: Option<u64>,
    /// Reply bytes one connection may have built but not yet written; past it the connection's
    /// requests are not read until its replies go out [default: 67108864].
    #[arg(long, env = "ESDB_MAX_PENDING_BYTES")]
    pub max_pending_bytes: Option<u64>,
    /// The same, summed over all connections [default: 1073741824].
    #[arg(long, env = "ESDB_MAX_PENDING_BYTES_TOTAL")]
    pub max_pending_bytes_total: Option<u64>,
    /// Bytes of partly received payloads, summed over all connections [default: 268435456].
    #[arg(long, env = "ESDB_MAX_READ_BYTES_IN_FLIGHT")]
    pub max_read_bytes_in_flight: Option<u64>,
    /// Listen backlog of the protocol port [default: 1024].
    #[arg(long, env = "ESDB_LISTEN_BACKLOG")]
    pub listen_backlog: Option<u32>,
    /// Records per second the background scrubber checks in each store (their checksums);
    /// 0 turns it off [default: 1000; 0 under --small].
    #[arg(long, env = "ESDB_SCRUB_RECORDS_PER_SEC")]
    pub scrub_records_per_sec: Option<u64>,
    /// Events per second a scavenge (`SCAVENGE`) examines in each store; 0: scavenges are
    /// started but never run [default: 50000].
    #[arg(long, env = "ESDB_SCAVENGE_EVENTS_PER_SEC")]
    pub scavenge_events_per_sec: Option<u64>,
    /// Emitter tasks per store fanning events out to subscribers [default: number of cores].
    #[arg(long, env = "ESDB_EMITTERS")]
    pub emitters: Option<usize>,
    /// Log level or filter (RUST_LOG syntax) [default: info, or RUST_LOG].
    #[arg(long, env = "ESDB_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "ESDB_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Let the web console (at / on the HTTP port) offer writes (appends, replaying parked
    /// events), behind a switch on the page; without it the console is read-only
    /// [default: false].
    #[arg(long, env = "ESDB_CONSOLE_WRITES", num_args = 0..=1, default_missing_value = "true")]
    pub console_writes: Option<bool>,
    /// Security (src/auth, src/tls): TLS certificate chain (PEM) for the protocol and HTTP
    /// ports; with --tls-key, both ports speak only TLS.
    #[arg(long, env = "ESDB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "ESDB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "ESDB_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Encrypted streams (src/store/crypto.rs): a file holding the master key, 64 hex digits
    /// (`openssl rand -hex 32`), which wraps every stream's data key. Without it `ENCRYPT` is
    /// refused. Every node of a cluster needs the same key.
    #[arg(long, env = "ESDB_ENCRYPTION_KEY_FILE")]
    pub encryption_key_file: Option<PathBuf>,
    /// Serve /metrics without a bearer token even when authentication is on [default: false].
    #[arg(long, env = "ESDB_METRICS_OPEN", num_args = 0..=1, default_missing_value = "true")]
    pub metrics_open: Option<bool>,
    /// Clusters (src/cluster): this node's id, unique in the cluster and kept for the life
    /// of its data directory.
    #[arg(long, env = "ESDB_NODE_ID")]
    pub node_id: Option<u64>,
    /// The inter-node address HOST:PORT this node listens on for its peers (Raft, forwarded
    /// requests); peers dial it as it is written in their --peers.
    #[arg(long, env = "ESDB_RAFT")]
    pub raft: Option<SocketAddr>,
    /// The other voters, `<id>=<host:port>,…` (their --raft addresses; this node's own entry
    /// may be included). Without it the server is a single node.
    #[arg(long, env = "ESDB_PEERS")]
    pub peers: Option<String>,
    /// The secret every node of the cluster shares (at least 16 bytes); peers prove it with
    /// an HMAC-SHA256 challenge, it is never sent. Prefer the environment variable.
    #[arg(long, env = "ESDB_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// The client address HOST:PORT this node tells the others and clients (`INFO`'s
    /// `cluster.client_urls`, where clients fail over to) [default: the --listen address, its
    /// host replaced by --raft's when it listens on 0.0.0.0 or ::].
    #[arg(long, env = "ESDB_ADVERTISE")]
    pub advertise: Option<String>,
    /// A new node joining a running cluster: members' inter-node (--raft) addresses,
    /// `HOST:PORT,…`, asked in turn to add this node (learner, then voter once caught up).
    /// A node whose stores are already members ignores it. Without --peers, --join or
    /// --discovery, a node with --node-id and --raft waits to be added (`esdb cluster add`).
    #[arg(long, env = "ESDB_JOIN")]
    pub join: Option<String>,
    /// Raft log entries a cluster node keeps behind each checkpoint: a follower less far
    /// behind catches up from the log, one further behind (or a new node) from a copy of the
    /// store [default: 10000].
    #[arg(long, env = "ESDB_RAFT_LOG_KEPT_ENTRIES")]
    pub raft_log_kept_entries: Option<u64>,
    /// A cluster node's election timeout, lower bound in ms (the upper is a quarter more): a
    /// follower stands for election once its leader was silent for upper + a random pick
    /// between the two. Raise it on disks whose fsync can stall longer [default: 400].
    #[arg(long, env = "ESDB_RAFT_ELECTION_TIMEOUT_MS")]
    pub raft_election_timeout_ms: Option<u64>,
    /// Inter-node TLS: this node's certificate (PEM), presented to peers both ways. With
    /// --cluster-tls-key and --cluster-tls-ca, nodes speak only mutual TLS to each other.
    #[arg(long, env = "ESDB_CLUSTER_TLS_CERT")]
    pub cluster_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --cluster-tls-cert.
    #[arg(long, env = "ESDB_CLUSTER_TLS_KEY")]
    pub cluster_tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs every node's certificate: a peer without one it signed is
    /// refused.
    #[arg(long, env = "ESDB_CLUSTER_TLS_CA")]
    pub cluster_tls_ca: Option<PathBuf>,
    /// Find the other nodes instead of --peers: `multicast` (authenticated UDP announcements)
    /// or `dns` (the A/AAAA records of --dns-name, at this node's --raft port).
    #[arg(long, env = "ESDB_DISCOVERY")]
    pub discovery: Option<DiscoveryMethod>,
    /// With --discovery: the voters of a new cluster; the lowest id initializes it once it
    /// knows this many nodes (itself included) [default: 3].
    #[arg(long, env = "ESDB_EXPECT")]
    pub expect: Option<usize>,
    /// The multicast group [default: 239.255.0.1].
    #[arg(long, env = "ESDB_MULTICAST_GROUP")]
    pub multicast_group: Option<std::net::Ipv4Addr>,
    /// The multicast UDP port [default: 45892].
    #[arg(long, env = "ESDB_MULTICAST_PORT")]
    pub multicast_port: Option<u16>,
    /// The interface (its IPv4 address) announcements go out on and the group is joined on
    /// [default: --raft's host when it is an IPv4 address, else the system's choice].
    #[arg(long, env = "ESDB_MULTICAST_INTERFACE")]
    pub multicast_interface: Option<std::net::Ipv4Addr>,
    /// Time between announcements (multicast) or resolutions (dns) [default: 5000].
    #[arg(long, env = "ESDB_DISCOVERY_INTERVAL_MS")]
    pub discovery_interval_ms: Option<u64>,
    /// With --discovery dns: the name to resolve (a Kubernetes headless service).
    #[arg(long, env = "ESDB_DNS_NAME")]
    pub dns_name: Option<String>,
}

/// `--discovery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryMethod {
    Multicast,
    Dns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    small: Option<bool>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    http: Option<SocketAddr>,
    stores: Option<Vec<String>>,
    ping_interval_ms: Option<u64>,
    max_pings_out: Option<u32>,
    max_connections: Option<usize>,
    max_http_connections: Option<usize>,
    map_size_mb: Option<usize>,
    shutdown_deadline_ms: Option<u64>,
    emitters: Option<usize>,
    write_stall_timeout_ms: Option<u64>,
    max_pending_bytes: Option<u64>,
    max_pending_bytes_total: Option<u64>,
    max_read_bytes_in_flight: Option<u64>,
    listen_backlog: Option<u32>,
    scrub_records_per_sec: Option<u64>,
    scavenge_events_per_sec: Option<u64>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    console_writes: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    encryption_key_file: Option<PathBuf>,
    metrics_open: Option<bool>,
    node_id: Option<u64>,
    raft: Option<SocketAddr>,
    peers: Option<String>,
    cluster_secret: Option<String>,
    advertise: Option<String>,
    join: Option<String>,
    raft_log_kept_entries: Option<u64>,
    raft_election_timeout_ms: Option<u64>,
    cluster_tls_cert: Option<PathBuf>,
    cluster_tls_key: Option<PathBuf>,
    cluster_tls_ca: Option<PathBuf>,
    discovery: Option<DiscoveryMethod>,
    expect: Option<usize>,
    multicast_group: Option<std::net::Ipv4Addr>,
    multicast_port: Option<u16>,
    multicast_interface: Option<std::net::Ipv4Addr>,
    discovery_interval_ms: Option<u64>,
    dns_name: Option<String>,
    /// Users, tokens and permissions (src/auth/users.rs).
    auth: Option<crate::auth::AuthSection>,
    /// Per-store quotas (src/store/quota.rs).
    quotas: Option<crate::store::quota::QuotaSection>,
}

/// The server's resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--small`: the defaults of [`small`] were used where nothing was given.
    pub small: bool,
    /// Runtime worker threads; `None`: one per core (tokio's default).
    pub worker_threads: Option<usize>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub stores: Vec<String>,
    pub ping_interval_ms: u64,
    pub max_pings_out: u32,
    pub max_connections: usize,
    pub max_http_connections: usize,
    pub map_size_mb: usize,
    pub shutdown_deadline_ms: u64,
    pub emitters: usize,
    pub write_stall_timeout_ms: u64,
    /// `--max-pending-bytes`, `--max-pending-bytes-total` (see `server::outbound`).
    pub max_pending_bytes: u64,
    pub max_pending_bytes_total: u64,
    pub max_read_bytes_in_flight: u64,
    pub listen_backlog: u32,
    /// `--scrub-records-per-sec` (src/store/scrub.rs); 0: no scrubber.
    pub scrub_records_per_sec: u64,
    /// `--scavenge-events-per-sec` (src/raft/scavenger.rs).
    pub scavenge_events_per_sec: u64,
    pub log_level: Option<String>,
    pub log_format: LogFormat,
    /// Whether the web console may offer writes (`--console-writes`).
    pub console_writes: bool,
    /// The config file, re-read on SIGHUP for users, tokens and permissions.
    pub config_path: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    /// The master key of encrypted streams (`--encryption-key-file`), read once at start.
    pub master_key: Option<&'static crate::store::crypto::MasterKey>,
    /// Whether `/metrics` is served without a token when authentication is on.
    pub metrics_open: bool,
    pub auth: crate::auth::AuthSection,
    /// `[quotas]`: per-store limits, re-read on SIGHUP (src/store/quota.rs).
    pub quotas: crate::store::quota::QuotaSection,
    /// `--node-id`, `--raft`, `--peers`, `--cluster-secret`; `None`: a single node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config::resolve(ServeArgs::default()).expect("defaults are valid")
    }
}

impl Config {
    /// Merges flags and environment (already in `args`), the config file, and defaults.
    pub fn resolve(args: ServeArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let stores = if !args.stores.is_empty() {
            args.stores
        } else {
            file.stores
                .unwrap_or_else(|| vec![DEFAULT_STORE.to_owned()])
        };
        let small = args.small.or(file.small).unwrap_or(false);
        let cluster = resolve_cluster(ClusterArgs {
            node_id: args.node_id.or(file.node_id),
            raft: args.raft.or(file.raft),
            peers: args.peers.or(file.peers),
            secret: args.cluster_secret.or(file.cluster_secret),
            advertise: args.advertise.or(file.advertise),
            join: args.join.or(file.join),
            log_kept_entries: args.raft_log_kept_entries.or(file.raft_log_kept_entries),
            election_timeout_ms: args
                .raft_election_timeout_ms
                .or(file.raft_election_timeout_ms),
        })?;
        let cluster_tls = resolve_cluster_tls(
            cluster.is_some(),
            args.cluster_tls_cert.or(file.cluster_tls_cert),
            args.cluster_tls_key.or(file.cluster_tls_key),
            args.cluster_tls_ca.or(file.cluster_tls_ca),
        )?;
        let cluster = cluster.map(|cluster| crate::cluster::ClusterConfig {
            tls: cluster_tls,
            ..cluster
        });
        let cluster = match cluster {
            Some(mut cluster) => {
                cluster.discovery = resolve_discovery(
                    &cluster,
                    DiscoveryArgs {
                        method: args.discovery.or(file.discovery),
                        expect: args.expect.or(file.expect),
                        group: args.multicast_group.or(file.multicast_group),
                        port: args.multicast_port.or(file.multicast_port),
                        interface: args.multicast_interface.or(file.multicast_interface),
                        interval_ms: args.discovery_interval_ms.or(file.discovery_interval_ms),
                        dns_name: args.dns_name.or(file.dns_name),
                    },
                )?;
                Some(cluster)
            }
            None if args.discovery.or(file.discovery).is_some() => {
                return Err("--discovery is for clusters: give --node-id and --raft too".into())
            }
            None => None,
        };
        let config = Config {
            cluster,
            small,
            worker_threads: small.then_some(self::small::WORKER_THREADS),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            http: args
                .http
                .or(file.http)
                .unwrap_or_else(|| DEFAULT_HTTP.parse().expect("valid default")),
            stores,
            ping_interval_ms: args
                .ping_interval_ms
                .or(file.ping_interval_ms)
                .unwrap_or(DEFAULT_PING_INTERVAL_MS),
            max_pings_out: args
                .max_pings_out
                .or(file.max_pings_out)
                .unwrap_or(DEFAULT_MAX_PINGS_OUT),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(pick(small, small::MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS)),
            max_http_connections: args
                .max_http_connections
                .or(file.max_http_connections)
                .unwrap_or(pick(
                    small,
                    small::MAX_HTTP_CONNECTIONS,
                    DEFAULT_MAX_HTTP_CONNECTIONS,
                )),
            map_size_mb: args.map_size_mb.or(file.map_size_mb).unwrap_or(pick(
                small,
                small::MAP_SIZE_MB,
                DEFAULT_MAP_SIZE_MB,
            )),
            shutdown_deadline_ms: args
                .shutdown_deadline_ms
                .or(file.shutdown_deadline_ms)
                .unwrap_or(DEFAULT_SHUTDOWN_DEADLINE_MS),
            write_stall_timeout_ms: args
                .write_stall_timeout_ms
                .or(file.write_stall_timeout_ms)
                .unwrap_or(crate::server::connection::WRITE_STALL_TIMEOUT_MS),
            max_pending_bytes: args
                .max_pending_bytes
                .or(file.max_pending_bytes)
                .unwrap_or(pick(
                    small,
                    small::MAX_PENDING_BYTES,
                    crate::server::outbound::DEFAULT_MAX_PENDING_BYTES,
                )),
            max_pending_bytes_total: args
                .max_pending_bytes_total
                .or(file.max_pending_bytes_total)
                .unwrap_or(pick(
                    small,
                    small::MAX_PENDING_BYTES_TOTAL,
                    crate::server::outbound::DEFAULT_MAX_PENDING_BYTES_TOTAL,
                )),
            max_read_bytes_in_flight: args
                .max_read_bytes_in_flight
                .or(file.max_read_bytes_in_flight)
                .unwrap_or(pick(
                    small,
                    small::MAX_READ_BYTES_IN_FLIGHT,
                    DEFAULT_MAX_READ_BYTES_IN_FLIGHT,
                )),
            listen_backlog: args.listen_backlog.or(file.listen_backlog).unwrap_or(pick(
                small,
                small::LISTEN_BACKLOG,
                DEFAULT_LISTEN_BACKLOG,
            )),
            scrub_records_per_sec: args
                .scrub_records_per_sec
                .or(file.scrub_records_per_sec)
                .unwrap_or(pick(
                    small,
                    small::SCRUB_RECORDS_PER_SEC,
                    crate::store::scrub::DEFAULT_SCRUB_RECORDS_PER_SEC,
                )),
            scavenge_events_per_sec: args
                .scavenge_events_per_sec
                .or(file.scavenge_events_per_sec)
                .unwrap_or(crate::raft::scavenger::DEFAULT_SCAVENGE_EVENTS_PER_SEC),
            emitters: args.emitters.or(file.emitters).unwrap_or_else(|| {
                if small {
                    self::small::EMITTERS
                } else {
                    default_emitters()
                }
            }),
            log_level: args.log_level.or(file.log_level),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            console_writes: args.console_writes.or(file.console_writes).unwrap_or(false),
            config_path: args.config,
            tls_cert: args.tls_cert.or(file.tls_cert),
            tls_key: args.tls_key.or(file.tls_key),
            tls_client_ca: args.tls_client_ca.or(file.tls_client_ca),
            master_key: match args.encryption_key_file.or(file.encryption_key_file) {
                // Leaked once per process: the stores' database handles refer to it.
                Some(path) => Some(&*Box::leak(Box::new(
                    crate::store::crypto::MasterKey::read_hex_file(&path)?,
                ))),
                None => None,
            },
            metrics_open: args.metrics_open.or(file.metrics_open).unwrap_or(false),
            auth: file.auth.unwrap_or_default(),
            quotas: file.quotas.unwrap_or_default(),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for store in &self.stores {
            esdb_protocol::ops::session::validate_store_name(store).map_err(|e| e.message)?;
            if !seen.insert(store) {
                return Err(format!("store {store} named twice"));
            }
        }
        if self.stores.is_empty() {
            return Err("at least one store is needed".into());
        }
        crate::store::quota::validate(&self.quotas, &self.stores)?;
        if self.emitters == 0 || self.emitters > MAX_EMITTERS {
            return Err(format!("emitters must be 1 to {MAX_EMITTERS}"));
        }
        if self.max_pending_bytes == 0
            || self.max_pending_bytes_total == 0
            || self.max_read_bytes_in_flight == 0
            || self.listen_backlog == 0
        {
            return Err("max_pending_bytes, max_pending_bytes_total, \
                        max_read_bytes_in_flight and listen_backlog must be > 0"
                .into());
        }
        if self.write_stall_timeout_ms == 0 {
            return Err("write_stall_timeout_ms must be > 0".into());
        }
        if self.ping_interval_ms == 0
            || self.max_connections == 0
            || self.max_http_connections == 0
            || self.map_size_mb == 0
        {
            return Err(
                "ping_interval_ms, max_connections, max_http_connections and \
                        map_size_mb must be > 0"
                    .into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("tls_client_ca needs tls_cert and tls_key".into());
        }
        Ok(())
    }

    /// The store a connection starts in.
    pub fn default_store(&self) -> &str {
        &self.stores[0]
    }
}

/// The cluster settings: a node is a cluster node with `--node-id` and `--raft` (and a
/// secret); `--peers` names the first voters, `--join` members to ask to be added by, and
/// neither means waiting for `CLUSTER ADD`.
/// `--cluster-tls-cert`, `--cluster-tls-key`, `--cluster-tls-ca`: all three, on a cluster
/// node, or none.
fn resolve_cluster_tls(
    clustered: bool,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<crate::cluster::ClusterTlsPaths>, String> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) if clustered => {
            Ok(Some(crate::cluster::ClusterTlsPaths { cert, key, ca }))
        }
        (Some(_), Some(_), Some(_)) => Err(
            "--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca are for cluster nodes: \
             give --node-id and --raft too"
                .into(),
        ),
        _ => Err(
            "inter-node TLS needs all of --cluster-tls-cert, --cluster-tls-key and \
             --cluster-tls-ca"
                .into(),
        ),
    }
}

/// The most `--raft-election-timeout-ms` may be: a minute without a leader is an outage, not
/// a timeout.
const MAX_ELECTION_TIMEOUT_MS: u64 = 60_000;

/// The cluster settings as given (flag, environment, or file).
struct ClusterArgs {
    node_id: Option<u64>,
    raft: Option<SocketAddr>,
    peers: Option<String>,
    secret: Option<String>,
    advertise: Option<String>,
    join: Option<String>,
    log_kept_entries: Option<u64>,
    election_timeout_ms: Option<u64>,
}

fn resolve_cluster(given: ClusterArgs) -> Result<Option<crate::cluster::ClusterConfig>, String> {
    let ClusterArgs {
        node_id,
        raft,
        peers,
        secret,
        advertise,
        join,
        log_kept_entries,
        election_timeout_ms,
    } = given;
    if node_id.is_none() && raft.is_none() && peers.is_none() && join.is_none() {
        if advertise.is_some() || log_kept_entries.is_some() || election_timeout_ms.is_some() {
            return Err(
                "--advertise, --raft-log-kept-entries and --raft-election-timeout-ms are for \
                 clusters: give --node-id and --raft too"
                    .into(),
            );
        }
        return Ok(None);
    }
    let election_timeout_min_ms =
        election_timeout_ms.unwrap_or(crate::raft::node::ELECTION_TIMEOUT_MIN_MS);
    let heartbeat_ms = crate::raft::node::HEARTBEAT_INTERVAL_MS;
    if election_timeout_min_ms <= heartbeat_ms || election_timeout_min_ms > MAX_ELECTION_TIMEOUT_MS
    {
        return Err(format!(
            "--raft-election-timeout-ms must be above the {heartbeat_ms} ms heartbeat and at \
             most {MAX_ELECTION_TIMEOUT_MS}"
        ));
    }
    let node_id = node_id.ok_or("a cluster node needs --node-id")?;
    if node_id == 0 {
        return Err("--node-id must be at least 1".into());
    }
    let raft_addr = raft.ok_or("a cluster node needs --raft HOST:PORT")?;
    if raft_addr.port() == 0 {
        return Err("--raft needs a fixed port: peers dial it".into());
    }
    let secret = secret.ok_or(
        "a cluster node needs a cluster secret (--cluster-secret or ESDB_CLUSTER_SECRET): \
         peers must prove it before they are served",
    )?;
    if secret.len() < crate::cluster::MIN_SECRET_BYTES {
        return Err(format!(
            "the cluster secret must be at least {} bytes",
            crate::cluster::MIN_SECRET_BYTES
        ));
    }
    let peers = match peers {
        Some(peers) => crate::cluster::ClusterConfig::parse_peers(&peers, node_id, raft_addr)?,
        None => std::collections::BTreeMap::new(),
    };
    let join = match join {
        Some(join) => crate::cluster::ClusterConfig::parse_join(&join, raft_addr)?,
        None => Vec::new(),
    };
    if !join.is_empty() && !peers.is_empty() {
        return Err("--join is for a node joining a running cluster: drop --peers".into());
    }
    let advertise = advertise
        .map(|text| crate::cluster::ClusterConfig::parse_advertise(&text))
        .transpose()?;
    Ok(Some(crate::cluster::ClusterConfig {
        advertise,
        node_id,
        raft_addr,
        peers,
        join,
        log_kept_entries: log_kept_entries
            .unwrap_or(crate::raft::node::CLUSTER_LOG_ENTRIES_KEPT_AFTER_CHECKPOINT),
        election_timeout_min_ms,
        tls: None,
        discovery: None,
        secret: secret.into_bytes(),
    }))
}

/// The discovery settings, as given.
struct DiscoveryArgs {
    method: Option<DiscoveryMethod>,
    expect: Option<usize>,
    group: Option<std::net::Ipv4Addr>,
    port: Option<u16>,
    interface: Option<std::net::Ipv4Addr>,
    interval_ms: Option<u64>,
    dns_name: Option<String>,
}

/// `--discovery` and its settings: none of them without it, never with --peers or --join.
fn resolve_discovery(
    cluster: &crate::cluster::ClusterConfig,
    args: DiscoveryArgs,
) -> Result<Option<crate::cluster::discovery::DiscoveryConfig>, String> {
    use crate::cluster::discovery::{self, DiscoveryConfig, Method};
    let Some(method) = args.method else {
        if args.expect.is_some() || args.group.is_some() || args.dns_name.is_some() {
            return Err("--expect, --multicast-* and --dns-name need --discovery".into());
        }
        return Ok(None);
    };
    if !cluster.peers.is_empty() || !cluster.join.is_empty() {
        return Err("--discovery finds the peers: drop --peers and --join".into());
    }
    let expect = args.expect.unwrap_or(3);
    if expect == 0 {
        return Err("--expect must be at least 1".into());
    }
    let interval_ms = args.interval_ms.unwrap_or(discovery::DEFAULT_INTERVAL_MS);
    if interval_ms == 0 {
        return Err("--discovery-interval-ms must be at least 1".into());
    }
    let method = match method {
        DiscoveryMethod::Multicast => {
            let group = args.group.unwrap_or(discovery::DEFAULT_MULTICAST_GROUP);
            if !group.is_multicast() {
                return Err(format!(
                    "--multicast-group: {group} is not a multicast address"
                ));
            }
            let interface = args.interface.unwrap_or(match cluster.raft_addr.ip() {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
            });
            Method::Multicast {
                group,
                port: args.port.unwrap_or(discovery::DEFAULT_MULTICAST_PORT),
                interface,
            }
        }
        DiscoveryMethod::Dns => Method::Dns {
            name: args
                .dns_name
                .ok_or("--discovery dns needs --dns-name NAME")?,
        },
    };
    if cluster.raft_addr.ip().is_unspecified() {
        return Err(
            "--discovery: the others dial this node at --raft, so it must be the address \
             they reach, not a wildcard"
                .into(),
        );
    }
    Ok(Some(DiscoveryConfig {
        method,
        interval_ms,
        expect,
    }))
}

fn read_file_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
}
