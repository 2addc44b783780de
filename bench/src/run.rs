//! Runs each workload against each backend, interleaved, each on a freshly started server.

use std::path::PathBuf;

use serde::Serialize;

use crate::esdb::server::EsdbServer;
use crate::measure::{Figures, Tally};
use crate::workloads::{append, occ, read, scavenge, subscribe, Kind, Params, Spec};

/// What a workload runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Esdb,
    /// nats-server's default: acks before fsync (the store syncs on its own interval).
    JetStream,
    /// `sync_interval: always`: fsync before every ack (nats-server 2.10+ only).
    JetStreamSyncAlways,
}

impl Backend {
    pub fn label(self) -> &'static str {
        match self {
            Backend::Esdb => "esdb",
            Backend::JetStream => "JetStream (default sync)",
            Backend::JetStreamSyncAlways => "JetStream (sync always)",
        }
    }
}

/// Where to run: a server this harness starts, or one already running.
pub struct Setup {
    pub esdb_bin: Option<PathBuf>,
    pub esdb_addr: Option<std::net::SocketAddr>,
    pub data_root: PathBuf,
    /// The master key esdb is started with (`--encrypt-streams`).
    pub master_key: Option<crate::esdb::server::MasterKeyFile>,
    #[cfg(feature = "nats")]
    pub nats: Option<crate::jetstream::server::NatsInfo>,
    pub params: Params,
}

/// One backend's result for one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub backend: Backend,
    pub figures: Figures,
}

pub async fn run_one(setup: &Setup, spec: &Spec, backend: Backend) -> anyhow::Result<Figures> {
    let tally = match backend {
        Backend::Esdb => {
            let (_server, addr) = match setup.esdb_addr {
                Some(addr) => (None, addr),
                None => {
                    let bin = setup.esdb_bin.as_deref().expect("esdb binary located");
                    let args = match &setup.master_key {
                        Some(key) => key.server_args(),
                        None => Vec::new(),
                    };
                    let server = EsdbServer::start_with(bin, &setup.data_root, &args)?;
                    let addr = server.addr;
                    (Some(server), addr)
                }
            };
            run_esdb(addr, spec, &setup.params).await?
        }
        #[cfg(feature = "nats")]
        Backend::JetStream | Backend::JetStreamSyncAlways => {
            let info = setup.nats.as_ref().expect("nats located");
            let server = crate::jetstream::NatsServer::start(
                info,
                &setup.data_root,
                backend == Backend::JetStreamSyncAlways,
            )
            .await?;
            run_jetstream(&server, spec, &setup.params).await?
        }
        #[cfg(not(feature = "nats"))]
        Backend::JetStream | Backend::JetStreamSyncAlways => {
            anyhow::bail!("built without the `nats` feature")
        }
    };
    Ok(Figures::from_tally(&tally, setup.params.measure))
}

pub async fn run_esdb(
    addr: std::net::SocketAddr,
    spec: &Spec,
    params: &Params,
) -> anyhow::Result<Tally> {
    match spec.kind {
        Kind::Append {
            conns,
            window,
            batch,
        } => {
            let load = append::AppendLoad {
                conns,
                window,
                batch,
                event_bytes: spec.event_bytes,
            };
            append::esdb(addr, &load, params).await
        }
        Kind::Occ { conns, streams } => {
            let load = occ::OccLoad {
                conns,
                streams,
                event_bytes: spec.event_bytes,
            };
            occ::esdb(addr, &load, params).await
        }
        Kind::ReadStream => read::esdb(addr, read::Target::Stream, spec.event_bytes, params).await,
        Kind::ReadAll => read::esdb(addr, read::Target::All, spec.event_bytes, params).await,
        Kind::Subscribe {
            rate_per_s,
            subscribers,
        } => {
            let load = subscribe::SubscribeLoad {
                rate_per_s,
                subscribers,
                event_bytes: spec.event_bytes,
            };
            subscribe::esdb(addr, &load, params).await
        }
        Kind::Scavenge => scavenge::esdb(addr, spec.event_bytes, params).await,
    }
}

#[cfg(feature = "nats")]
pub async fn run_jetstream(
    server: &crate::jetstream::NatsServer,
    spec: &Spec,
    params: &Params,
) -> anyhow::Result<Tally> {
    match spec.kind {
        Kind::Append {
            conns,
            window,
            batch,
        } => {
            let load = append::AppendLoad {
                conns,
                window,
                batch,
                event_bytes: spec.event_bytes,
            };
            append::jetstream(server, &load, params).await
        }
        Kind::Occ { conns, streams } => {
            let load = occ::OccLoad {
                conns,
                streams,
                event_bytes: spec.event_bytes,
            };
            occ::jetstream(server, &load, params).await
        }
        Kind::ReadStream => {
            read::jetstream(server, read::Target::Stream, spec.event_bytes, params).await
        }
        Kind::ReadAll => read::jetstream(server, read::Target::All, spec.event_bytes, params).await,
        Kind::Subscribe {
            rate_per_s,
            subscribers,
        } => {
            let load = subscribe::SubscribeLoad {
                rate_per_s,
                subscribers,
                event_bytes: spec.event_bytes,
            };
            subscribe::jetstream(server, &load, params).await
        }
        Kind::Scavenge => anyhow::bail!("{} has no JetStream counterpart", spec.id),
    }
}
