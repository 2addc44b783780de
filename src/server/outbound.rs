//! A connection's outbound queue, and the budgets that bound the reply bytes it may hold.
//!
//! Without a bound, one client that pipelines `READALL 0 10000` (a few bytes sent, up to
//! 16 MiB answered) and never reads makes the server build and hold every reply. So, as NATS's
//! `max_pending`: before a request that can produce a large reply is dispatched, the
//! connection reserves the most bytes its reply can take ([`reply_bytes_bound`]) from its own
//! budget (`--max-pending-bytes`) and from the server's (`--max-pending-bytes-total`). When
//! either is spent the connection stops reading requests until its replies are written. Once a
//! reply is built its reservation shrinks to the reply's size, and it is released when the
//! reply has been written to the socket, so it counts what the server really holds.
//!
//! Replies too small to matter (`APPENDED`, `+OK`, `VERSION`, …, bounded by the pipeline
//! depth) reserve nothing, so the common pipeline of appends pays no accounting.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use esdb_protocol::limits::{
    MAX_AGGREGATE_STATE_BYTES, MAX_PAYLOAD_BYTES, MAX_READ_REPLY_BYTES, MAX_STREAM_ID_BYTES,
};
use esdb_protocol::ops::psub::PsubOp;
use esdb_protocol::ops::snap::SnapRequest;
use esdb_protocol::{Reply, Request};

/// Per-connection default of `--max-pending-bytes`: reply bytes one connection may have
/// built but not yet written (NATS's `max_pending` is 64 MiB too).
pub const DEFAULT_MAX_PENDING_BYTES: u64 = 64 << 20;
/// Server-wide default of `--max-pending-bytes-total`.
pub const DEFAULT_MAX_PENDING_BYTES_TOTAL: u64 = 1 << 30;
/// A reply whose bound is at most this reserves nothing: 256 pipelined of them hold at most
/// a few hundred KiB.
pub const SMALL_REPLY_BYTES: usize = 1024;
/// The control line of a reply with a body, and its CRLFs, above the body's size.
const REPLY_HEADER_BYTES: usize = MAX_STREAM_ID_BYTES + 64;
/// The largest record one event can have: its payload plus what the server adds (ids,
/// position, time, the stream id).
const EVENT_RECORD_BYTES_MAX: usize = MAX_PAYLOAD_BYTES + 1024;

/// Most bytes the reply to `request` can take, or `None` when it is small enough not to count.
pub fn reply_bytes_bound(request: &Request) -> Option<usize> {
    // A read stops before its reply passes MAX_READ_REPLY_BYTES but returns at least one event.
    let events = |count: u64| {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        count
            .saturating_mul(EVENT_RECORD_BYTES_MAX)
            .min(MAX_READ_REPLY_BYTES + EVENT_RECORD_BYTES_MAX)
    };
    let body = match request {
        Request::Read { count, .. }
        | Request::ReadAll { count, .. }
        | Request::ReadTypes { count, .. } => events(*count),
        Request::Streams { count, .. } => usize::try_from(*count)
            .unwrap_or(usize::MAX)
            .saturating_mul(MAX_STREAM_ID_BYTES + 3),
        Request::Agg(_) => MAX_AGGREGATE_STATE_BYTES,
        Request::Snap(SnapRequest::Load { .. }) => EVENT_RECORD_BYTES_MAX,
        Request::Snap(SnapRequest::List { .. }) => MAX_READ_REPLY_BYTES + EVENT_RECORD_BYTES_MAX,
        Request::Psub(PsubOp::List | PsubOp::Parked { .. } | PsubOp::Get { .. }) => {
            MAX_READ_REPLY_BYTES
        }
        Request::Stats | Request::Cluster | Request::ClusterChange(_) => 64 * 1024,
        Request::After { request, .. } => return reply_bytes_bound(request),
        _ => return None,
    };
    Some(body.saturating_add(REPLY_HEADER_BYTES)).filter(|&bound| bound > SMALL_REPLY_BYTES)
}

/// About how many bytes `reply` takes encoded (its body plus a header line).
pub fn reply_bytes(reply: &Reply) -> usize {
    let body = match reply {
        Reply::Info(body)
        | Reply::Events { body, .. }
        | Reply::Streams { body, .. }
        | Reply::Help { body }
        | Reply::Event { body, .. }
        | Reply::Subs { body, .. }
        | Reply::SubInfo { body }
        | Reply::Stats { body }
        | Reply::Cluster { body }
        | Reply::Snapshot { body, .. }
        | Reply::Snapshots { body, .. }
        | Reply::Aggregate { body, .. } => body.len(),
        _ => 0,
    };
    body + REPLY_HEADER_BYTES
}

/// The reply-byte budgets, shared by every connection (the server's) or one (its own).
#[derive(Clone)]
pub struct ReplyBudget {
    connection: Arc<Semaphore>,
    server: Arc<Semaphore>,
    connection_bytes: usize,
    server_bytes: usize,
}

impl ReplyBudget {
    /// A new connection's budget, drawing on the server's.
    pub fn for_connection(
        server: &Arc<Semaphore>,
        connection_bytes: u64,
        server_bytes: u64,
    ) -> ReplyBudget {
        let connection_bytes = clamp_permits(connection_bytes);
        ReplyBudget {
            connection: Arc::new(Semaphore::new(connection_bytes)),
            server: server.clone(),
            connection_bytes,
            server_bytes: clamp_permits(server_bytes),
        }
    }

    /// The server-wide pool, sized `--max-pending-bytes-total`.
    pub fn server_pool(server_bytes: u64) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(clamp_permits(server_bytes)))
    }

    /// What to reserve for a reply bounded by `bound` bytes: never more than either budget, so
    /// a single reply always fits once the earlier ones are written.
    fn permits(&self, bound: usize) -> u32 {
        let bytes = bound.min(self.connection_bytes).min(self.server_bytes);
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// Reserves room for a reply of at most `bound` bytes now, or returns `None` when a budget
    /// is spent (then wait with [`ReplyBudget::reserve`]).
    pub fn try_reserve(&self, bound: usize) -> Option<Credit> {
        let permits = self.permits(bound);
        let connection = self
            .connection
            .clone()
            .try_acquire_many_owned(permits)
            .ok()?;
        let server = self.server.clone().try_acquire_many_owned(permits).ok()?;
        Some(Credit { connection, server })
    }

    /// Waits until a reply of at most `bound` bytes fits both budgets. Cancel-safe: dropping
    /// the future gives back whatever it had taken.
    pub async fn reserve(&self, bound: usize) -> Credit {
        let permits = self.permits(bound);
        let connection = self
            .connection
            .clone()
            .acquire_many_owned(permits)
            .await
            .expect("the budget is never closed");
        let server = self
            .server
            .clone()
            .acquire_many_owned(permits)
            .await
            .expect("the budget is never closed");
        Credit { connection, server }
    }
}

fn clamp_permits(bytes: u64) -> usize {
    usize::try_from(bytes)
        .unwrap_or(usize::MAX)
        .clamp(1, Semaphore::MAX_PERMITS)
}

/// Room reserved for one reply; given back when dropped (once the reply is written).
#[derive(Debug)]
pub struct Credit {
    connection: OwnedSemaphorePermit,
    server: OwnedSemaphorePermit,
}

impl Credit {
    /// Gives back what the built reply does not need.
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.max(1);
        if self.connection.num_permits() > keep {
            let surplus = self.connection.num_permits() - keep;
            drop(self.connection.split(surplus));
            drop(self.server.split(surplus));
        }
    }
}

/// What the writer task receives: a reply, and the room it holds until written.
pub struct Queued {
    pub reply: Reply,
    pub credit: Option<Credit>,
}

/// The sending side of a connection's outbound queue (replies, and the `EVENT`s its
/// subscriptions push).
#[derive(Clone)]
pub struct Outbound {
    sender: mpsc::Sender<Queued>,
}

/// The connection's writer is gone.
#[derive(Debug)]
pub struct Closed;

impl Outbound {
    pub fn channel(capacity: usize) -> (Outbound, mpsc::Receiver<Queued>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Outbound { sender }, receiver)
    }

    pub async fn send(&self, reply: Reply) -> Result<(), Closed> {
        self.send_with(reply, None).await
    }

    pub async fn send_with(&self, reply: Reply, credit: Option<Credit>) -> Result<(), Closed> {
        self.sender
            .send(Queued { reply, credit })
            .await
            .map_err(|_| Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esdb_protocol::{Direction, ReadStart};

    #[test]
    fn large_replies_are_bounded_and_small_ones_reserve_nothing() {
        let read_all = |count| Request::ReadAll {
            from: ReadStart::At(0),
            count,
            direction: Direction::Forward,
        };
        let big = reply_bytes_bound(&read_all(10_000)).expect("counted");
        assert!(big >= MAX_READ_REPLY_BYTES + MAX_PAYLOAD_BYTES, "{big}");
        assert!(reply_bytes_bound(&read_all(u64::MAX)).is_some());
        assert_eq!(reply_bytes_bound(&Request::Ping), None);
        assert!(
            reply_bytes_bound(&read_all(1)).expect("an event can be 1 MiB") > MAX_PAYLOAD_BYTES
        );
    }

    #[tokio::test]
    async fn a_credit_shrinks_to_the_reply_and_is_returned_when_dropped() {
        let server = ReplyBudget::server_pool(100);
        let budget = ReplyBudget::for_connection(&server, 60, 100);
        let mut first = budget.try_reserve(50).expect("fits");
        assert!(
            budget.try_reserve(20).is_none(),
            "the connection's 60 are spent"
        );
        first.shrink_to(10);
        let second = budget.try_reserve(20).expect("fits after shrinking");
        let other = ReplyBudget::for_connection(&server, 1000, 100);
        assert!(
            other.try_reserve(80).is_none(),
            "the server's 100 are spent"
        );
        drop((first, second));
        assert!(other.try_reserve(80).is_some());
        // A reply larger than the budget still gets all of it, so it can be sent.
        assert!(budget.try_reserve(1 << 30).is_some());
    }
}
