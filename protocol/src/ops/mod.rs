//! One file per operation family: how each is parsed and encoded, with its syntax. The
//! server side of each family is the file of the same name in the server's `src/cmd/` (for
//! now `subscribe` and `psub` excepted: `src/server/subscribe.rs`).

pub mod after;
pub mod agg;
pub mod append;
pub mod append_multi;
pub mod cluster;
pub mod erasure;
pub mod meta;
pub mod psub;
pub mod read;
pub mod scavenge;
pub mod session;
pub mod snap;
pub mod stats;
pub mod streams;
pub mod subscribe;
