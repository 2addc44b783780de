//! Sans-IO parser and encoder for the esdb wire protocol.
//!
//! `protocol/PROTOCOL.md` is the specification; this crate is its executable form, shared by the
//! server and the Rust client. Nothing here does I/O: bytes go in, frames come out.
//!
//! # Layout
//! - [`aggregate`]: the pure fold behind `AGG` (tagged `$sum`/`$overwrite` values), shared with
//!   the Rust client.
//! - [`limits`]: every size limit of the protocol, as named constants.
//! - [`json`]: the one definition of acceptable event JSON (depth, numbers, Unicode), checked
//!   at the door and applied by every reader.
//! - [`error`]: the one table of wire error codes (`-ERR <code> '<message>'`).
//! - [`expected`]: the `<expected>` argument of `APPEND` and `DELETE`.
//! - [`request`]: [`Request`], what a client may send, and [`RequestDecoder`], which frames it.
//! - [`ops`]: one file per operation family, each with its syntax in its doc comment:
//!   [`ops::session`] (CONNECT, PING, PONG, USE, HELP), [`ops::append`] (APPEND and its
//!   payload, tags), [`ops::append_multi`] (APPENDMULTI: several streams, conditions),
//!   [`ops::read`] (READ, READALL, READTYPES, READTAGS), [`ops::streams`] (VERSION, EXISTS,
//!   STREAMS, DELETE), [`ops::subscribe`] (SUB, UNSUB, ACK, NACK, EVENT, LIVE),
//!   [`ops::psub`] (persistent subscription management), [`ops::snap`] (SNAP
//!   SAVE/LOAD/LIST/DELETE/EXISTS), [`ops::agg`] (AGG), [`ops::stats`] (STATS),
//!   [`ops::meta`] (META: stream metadata, retention), [`ops::erasure`] (ENCRYPT, SHRED),
//!   [`ops::scavenge`] (SCAVENGE), [`ops::cluster`] (CLUSTER, CLUSTER ADD/REMOVE), and
//!   [`ops::after`] (the `after <position>` option of the reads and SUB). The server side of
//!   each is the file of the same name in the server's `src/cmd/` (for now `subscribe` and
//!   `psub` excepted: `src/server/subscribe.rs`).
//! - [`reply`]: [`Reply`], what the server sends, with its encoder and a client-side decoder.
//! - [`matching`]: partial matching of a JSON pattern against a record (`event_payload`
//!   subscriptions and append conditions).
//! - [`line`]: the nom parsers shared by every operation (control line, tokens, numbers).
//! - [`time`]: `from_time` values (epoch microseconds or RFC 3339).

pub mod aggregate;
pub mod error;
pub mod expected;
pub mod json;
pub mod limits;
pub mod line;
pub mod matching;
pub mod ops;
pub mod reply;
pub mod request;
pub mod time;

pub use error::{ErrorCode, ProtocolError};
pub use expected::ExpectedVersion;
pub use reply::{Reply, ReplyDecoder};
pub use request::{Decoded, Direction, ReadStart, Request, RequestDecoder};

/// Version of the wire protocol, announced as `proto` in `INFO`.
pub const PROTOCOL_VERSION: u32 = 1;
