//! `AGG`: a stream folded into its state on the server, and the same fold for events read
//! here ([`fold_events`], over the protocol crate's [`esdb_protocol::aggregate`]).

use esdb_protocol::aggregate::{self, FoldOrder, State};
use esdb_protocol::ops::agg::AggRequest;
use esdb_protocol::ops::streams::validate_stream_id;
use esdb_protocol::{Reply, Request};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;

/// How `AGG` folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateOptions {
    /// Start from the newest snapshot's data and fold only the events after it.
    pub from_snapshot: bool,
    pub order: FoldOrder,
    /// Keep tagged values (`{"$sum": n}`) instead of finalizing them.
    pub raw: bool,
}

impl Default for AggregateOptions {
    fn default() -> AggregateOptions {
        AggregateOptions {
            from_snapshot: false,
            order: FoldOrder::Left,
            raw: false,
        }
    }
}

/// The answer to `AGG`.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The stream's current version: the newest event the state reflects.
    pub version: u64,
    pub state: State,
}

impl Client {
    /// Folds the stream on the server and returns the state alone.
    pub async fn aggregate(&self, stream: &str, options: AggregateOptions) -> Result<Aggregate> {
        let stream = validate_stream_id(stream).map_err(Error::invalid)?;
        let request = AggRequest {
            stream,
            from_snapshot: options.from_snapshot,
            order: options.order,
            finalize: !options.raw,
        };
        match self.call(&Request::Agg(request)).await? {
            Reply::Aggregate { version, body, .. } => Ok(Aggregate {
                version,
                state: serde_json::from_slice(&body)?,
            }),
            other => Err(Error::unexpected("AGG", &other)),
        }
    }
}

/// Folds events read by the client exactly as `AGG` does on the server, from `initial` (a
/// snapshot's data, or `{}`); finalize with [`aggregate::finalize`].
pub fn fold_events<'a, I>(order: FoldOrder, initial: State, events: I) -> Result<State>
where
    I: IntoIterator<Item = &'a RecordedEvent>,
{
    let data: Vec<serde_json::Value> = events
        .into_iter()
        .map(RecordedEvent::data_value)
        .collect::<Result<_>>()?;
    Ok(aggregate::fold(order, initial, data.iter()))
}
