//! `CLUSTER`: how this node sees the Raft group of each store, for operators.
//!
//! # Syntax
//! ```text
//! CLUSTER␍␊                      → CLUSTER <#bytes>␍␊<json>␍␊
//! ```
//! The JSON is `{"node_id":…,"stores":{"<name>":{"leader_id":…,"term":…,"members":[…]}}}`
//! (PROTOCOL.md lists the fields). A single server answers too: a one-member group.

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::line::Args;
use crate::request::{put_line, Request};

pub(crate) fn parse_cluster(args: Args<'_>) -> Result<Request, ProtocolError> {
    args.finish("CLUSTER").map(|_| Request::Cluster)
}

pub(crate) fn encode_cluster(dst: &mut BytesMut) {
    put_line(dst, "CLUSTER");
}
