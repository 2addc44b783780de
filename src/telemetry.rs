//! The seed's telemetry events, as `tracing` events.
//!
//! The seed (reckon-db) emits `:telemetry` events that handlers attach to; here each is a
//! `tracing` event at DEBUG level with target [`TARGET`] and the event's name as its `name`, with
//! the seed's measurements and metadata as fields. They cost one atomic load each when not
//! enabled. See `docs/telemetry.md` for the list and how to attach a subscriber.

/// The `tracing` target of every telemetry event: enable them with
/// `RUST_LOG=esdb::telemetry=debug` (or `--log-level info,esdb::telemetry=debug`).
pub const TARGET: &str = "esdb::telemetry";

/// Microseconds since the Unix epoch (the seed's `system_time`).
pub fn system_time_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// Emits a telemetry event: `telemetry!("stream.write.start", store = …, …)`.
#[macro_export]
macro_rules! telemetry {
    ($name:literal, $($fields:tt)*) => {
        ::tracing::event!(
            name: $name,
            target: "esdb::telemetry",
            ::tracing::Level::DEBUG,
            event = $name,
            $($fields)*
        )
    };
}

/// Whether telemetry events are enabled, to skip building their fields when they are not.
pub fn enabled() -> bool {
    tracing::enabled!(target: "esdb::telemetry", tracing::Level::DEBUG)
}

/// `subscription.created`: call when a subscription starts.
pub fn subscription_created(store: &str, kind: &str, selector: &str, name: &str) {
    telemetry!(
        "subscription.created",
        system_time = system_time_us(),
        store_id = store,
        r#type = kind,
        selector,
        subscription_name = name
    );
}

/// `subscription.deleted`: call when a subscription ends.
pub fn subscription_deleted(store: &str, name: &str) {
    telemetry!(
        "subscription.deleted",
        system_time = system_time_us(),
        store_id = store,
        subscription_name = name
    );
}

/// `snapshot.created`: call when a snapshot is saved.
pub fn snapshot_created(
    store: &str,
    stream: &str,
    version: u64,
    size_bytes: u64,
    duration_us: u64,
) {
    telemetry!(
        "snapshot.created",
        system_time = system_time_us(),
        store_id = store,
        stream_id = stream,
        version,
        size_bytes,
        duration_us
    );
}

/// `cluster.node.up`: a peer answers pings again (`cluster::Cluster`'s pinger).
pub fn cluster_node_up(node: u64, member_count: u64) {
    telemetry!("cluster.node.up", node, member_count);
}

/// `cluster.node.down`: a peer stopped answering pings; `reason` says how.
pub fn cluster_node_down(node: u64, member_count: u64, reason: &str) {
    telemetry!("cluster.node.down", node, member_count, reason);
}

/// `cluster.leader.elected`: this node saw a new leader of a store's group (`raft::observe`).
pub fn cluster_leader_elected(leader: u64, previous_leader: Option<u64>) {
    telemetry!("cluster.leader.elected", leader, previous_leader = ?previous_leader);
}

/// `scavenge.started`: a `SCAVENGE` started a scavenge of the positions before `up_to_position`.
pub fn scavenge_started(store: &str, up_to_position: u64) {
    telemetry!(
        "scavenge.started",
        system_time = system_time_us(),
        store_id = store,
        up_to_position
    );
}

/// `scavenge.completed`: the scavenge's walk reached its end (the seed's `deleted_count`, and
/// the bytes of records and index entries removed).
pub fn scavenge_completed(store: &str, status: &crate::store::scavenge::ScavengeStatus) {
    telemetry!(
        "scavenge.completed",
        system_time = system_time_us(),
        store_id = store,
        deleted_count = status.events_removed,
        bytes_reclaimed = status.bytes_reclaimed,
        duration_us = system_time_us().saturating_sub(status.started_us),
        up_to_position = status.up_to_position
    );
}
