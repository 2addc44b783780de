//! esdb: an event store server speaking a NATS-like text protocol over TCP, on LMDB.
//!
//! # Where things are
//! One request's path from the socket to its reply, in order (`APPEND user-1 any {…}` as the
//! example):
//! 1. **Accepted** by [`server::listener`] (TCP; WebSocket arrives through [`http`] and joins
//!    the same path), which spawns one [`server::connection`] task per connection.
//! 2. **Parsed** in the `esdb-protocol` crate (`protocol/src`): the connection's
//!    `RequestDecoder` frames bytes into a `Request`; each operation's syntax is in
//!    `protocol/src/ops/<family>.rs` (`ops/append.rs`).
//! 3. **Checked** by the auth gate ([`auth::gate`]): is the connection authenticated, and
//!    does its principal hold what the operation needs (`write` on `user-1`).
//! 4. **Dispatched** by [`cmd::dispatch`], the table from `Request` to its handler in
//!    `src/cmd/<family>.rs`, named as its parser ([`cmd::append`]). The handler validates,
//!    then reads or submits a command through the connection's [`server::session`], which
//!    keeps the connection's requests in the order they were sent.
//! 5. **Made durable** in [`raft`]: a write becomes a [`store::Command`] submitted with
//!    `Store::submit`; the [`raft::proposer`] batches every queued command into one entry of
//!    the store's Raft log ([`raft::log_store`], segment files: one fdatasync per entry), and
//!    openraft hands committed entries to the [`raft::state_machine`].
//! 6. **Applied** in [`store`]: the state machine queues committed entries for the apply
//!    thread ([`store::writer`]), which runs [`store::command::apply`] in one LMDB transaction
//!    kept open across entries and sends each proposal its outcomes before the commit
//!    ([`store::progress`]: the waiters, and the barrier every read waits on until what it must
//!    see is committed); reads run straight on LMDB ([`store::read`]; snapshots in
//!    [`store::snapshots`], `AGG` in [`store::aggregate`], around the pure fold in
//!    `esdb_protocol::aggregate`). Every stored record carries a CRC32C, checked on each
//!    read ([`store::checksum`]); [`store::scrub`] walks the records in the background.
//!    [`store::scavenge`] removes what deletes and limits hide, in slices that are commands
//!    too, proposed by the leader's [`raft::scavenger`].
//! 7. **Answered**: the handler's reply future resolves (`APPENDED user-1 0 0`, encoded by
//!    `protocol/src/reply.rs`), and [`server::connection`] sends replies in request order
//!    through its outbound queue ([`server::outbound`]).
//!
//! Adding an operation: its parse and encode in `protocol/src/ops/`, a `Request` variant, its
//! handler in `src/cmd/`, a line in [`cmd::dispatch`] (and in the auth gate's table), and its
//! transcript in `protocol/transcripts/`.
//!
//! # Modules
//! - [`config`]: flags, environment, config file, defaults, with every default limit.
//! - [`server`]: the TCP listener, one task per connection, keepalive, sessions, shutdown.
//! - [`cmd`]: what each operation does on the server, one file per operation family, and
//!   the dispatch table.
//! - [`raft`]: the write path: one openraft group per store, its write-ahead log, the
//!   proposer, the state machine over the store (server → raft → store).
//! - [`store`]: the storage engine (LMDB environment per store, apply thread, reads).
//! - [`subscriptions`]: catch-up and persistent subscriptions, the emitter pool, feeds.
//!   Their operations (`SUB`, `PSUB`, …) are handled in [`server::subscribe`].
//! - [`metrics`]: every Prometheus metric, with pre-resolved handles for the hot path.
//! - [`telemetry`]: the seed's telemetry events (`stream.write.start`, …) as `tracing` events.
//! - [`http`]: the HTTP listener: `/metrics`, `/health`, `/ready`, `/stats`, `/ws` (the
//!   protocol over WebSocket), and the web console at `/` ([`http::console`]).
//! - [`testing`]: a path around the protocol's JSON rules, for tests of unreadable records.
//! - [`auth`]: users, tokens, permissions (`CONNECT` credentials, checked before dispatch).
//! - [`tls`]: TLS on the protocol and HTTP ports (rustls).
//! - [`cluster`]: several nodes: the authenticated inter-node port, writes forwarded to the
//!   leader, linearizable reads on any node (read index), reads `after <position>` (wait for
//!   this node to apply it), membership changes (learner, then voter), discovery
//!   (multicast, DNS); each store one Raft group.
//! - [`cli`]: every subcommand but `serve`: the command line client, on the `esdb-client`
//!   crate (`clients/rust`), and `verify`, the offline check of a stopped server's data.
//!
//! The wire protocol is specified in `protocol/PROTOCOL.md`.

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod http;
pub mod metrics;
pub mod raft;
pub mod server;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod testing;
pub mod tls;
