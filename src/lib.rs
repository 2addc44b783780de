//! esdb: an event store server speaking a NATS-like text protocol over TCP, on LMDB.
//!
//! # Where things are
//! A request's path through the code, in order:
//! 1. **Parsed** in the `esdb-protocol` crate (`protocol/src`): `RequestDecoder` frames bytes
//!    into a `Request`; each operation's syntax is in `protocol/src/ops/<family>.rs`.
//! 2. **Dispatched** in [`server::dispatch`]: one function per operation turns a `Request`
//!    into a future of its `Reply`.
//! 3. **Applied** in [`store`]: writes become a [`store::Command`] run by
//!    [`store::command::apply`] on the writer thread ([`store::writer`], group commit); reads
//!    run straight on LMDB ([`store::read`]; snapshots in [`store::snapshots`], `AGG` in
//!    [`store::aggregate`], around the pure fold in `esdb_protocol::aggregate`).
//! 4. **Answered** in [`server::connection`]: replies go out in request order.
//!
//! # Modules
//! - [`config`]: flags, environment, config file, defaults, with every default limit.
//! - [`server`]: the TCP listener, one task per connection, keepalive, shutdown.
//! - [`store`]: the storage engine (LMDB environment per store, writer thread, reads).
//! - [`subscriptions`]: catch-up and persistent subscriptions, the emitter pool, feeds.
//!   Their operations are dispatched in [`server::subscribe`].
//! - [`metrics`]: every Prometheus metric, with pre-resolved handles for the hot path.
//! - [`telemetry`]: the seed's telemetry events (`stream.write.start`, …) as `tracing` events.
//! - [`http`]: the HTTP listener: `/metrics`, `/health`, `/ready`, `/stats`, `/ws` (the
//!   protocol over WebSocket), and the web console at `/` ([`http::console`]).
//! - [`cli`]: every subcommand but `serve`: the command line client, on the `esdb-client`
//!   crate (`clients/rust`).
//!
//! The wire protocol is specified in `protocol/PROTOCOL.md`.

pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod raft;
pub mod server;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod testing;
