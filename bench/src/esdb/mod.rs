//! The esdb side: starting the server, and a minimal async client on the protocol crate.

pub mod client;
pub mod server;
