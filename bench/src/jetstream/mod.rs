//! The JetStream side: finding or installing `nats-server`, starting it on loopback with a
//! temporary store, and connecting to it with `async-nats`.
//!
//! Mapping: one file-storage stream (`bench`) holds every event; an esdb stream `s` is the
//! subject `ev.s`. Appends are publishes that wait for the JetStream ack; optimistic concurrency
//! is the `Nats-Expected-Last-Subject-Sequence` header; reads are an ordered push consumer
//! replaying from the start.

pub mod server;

pub use server::NatsServer;

/// The one stream every workload writes to.
pub const STREAM_NAME: &str = "bench";
/// Subjects of that stream.
pub const SUBJECTS: &str = "ev.>";

/// The subject of an esdb-style stream id.
pub fn subject(stream: &str) -> String {
    format!("ev.{stream}")
}
