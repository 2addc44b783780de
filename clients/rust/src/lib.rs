//! Async Rust client for esdb, on tokio, speaking the protocol of `protocol/PROTOCOL.md`
//! through the `esdb-protocol` crate's encoder and decoder.
//!
//! ```no_run
//! use esdb_client::{Client, ClientOptions, EventData, ExpectedVersion, ReadOptions};
//! use futures::TryStreamExt;
//!
//! # async fn example() -> esdb_client::Result<()> {
//! let client = Client::connect(ClientOptions::servers("127.0.0.1:4350")).await?;
//! let event = EventData::json("UserCreated", &serde_json::json!({"name": "Ada"}))?;
//! client.append("user-1", ExpectedVersion::NoStream, [event]).await?;
//! let events: Vec<_> = client.read_stream("user-1", ReadOptions::forward()).try_collect().await?;
//! assert_eq!(events[0].event_type, "UserCreated");
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`client`]: [`Client`]: the shared connection, reconnects and failover, the retry rule.
//! - `connection` (private): one TCP connection: pipelined requests, replies in order,
//!   pushes routed by subscription id.
//! - [`streams`], [`read`]: appends, versions, deletes; reads as paging `Stream`s.
//! - [`subscription`]: catch-up and persistent subscriptions as `Stream`s.
//! - [`psub`], [`snapshots`], [`aggregate`], [`info`]: `PSUB`, `SNAP`, `AGG`, `STATS`/`INFO`.
//! - [`error`]: [`Error`], carrying the wire code of the server's answers.

pub mod aggregate;
pub mod client;
mod connection;
pub mod error;
pub mod event;
pub mod info;
pub mod multi;
pub mod options;
pub mod psub;
pub mod read;
pub mod snapshots;
pub mod streams;
pub mod subscription;
mod tls;

pub use aggregate::{fold_events, Aggregate, AggregateOptions};
pub use client::Client;
pub use error::{Error, Result};
pub use event::{AppendResult, EventData, RecordedEvent, UnreadableEvent};
pub use info::{ClusterInfo, RaftStatus, ServerInfo, Stats, StoreStats};
pub use multi::{AppendCondition, AppendPart, PartResult, QueryItem};
pub use options::{Backoff, ClientOptions, Credentials, TlsOptions};
pub use psub::{PersistentSubscriptions, SubscriptionInfo};
pub use read::{EventStream, ReadOptions};
pub use snapshots::{Snapshot, SnapshotData, Snapshots};
pub use subscription::{Acker, CatchUpSubscription, PersistentSubscription, SubscriptionEvent};

/// The protocol crate, for what this crate takes from it as is.
pub use esdb_protocol as protocol;
/// The fold behind `AGG`, to fold events read by the client the way the server does.
pub use esdb_protocol::aggregate::{self as fold, finalize, FoldOrder, State};
pub use esdb_protocol::ops::subscribe::{NackAction, Selector, StartFrom, SubscriptionOptions};
pub use esdb_protocol::{Direction, ErrorCode, ExpectedVersion, ReadStart};
