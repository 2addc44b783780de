//! `CLUSTER`: how this node sees the Raft group of each store, for operators; and
//! `CLUSTER ADD` / `CLUSTER REMOVE`: membership changes.
//!
//! # Syntax
//! ```text
//! CLUSTER␍␊                                        → CLUSTER <#bytes>␍␊<json>␍␊
//! CLUSTER ADD <node-id> <raft-addr> [<client-addr>]␍␊ → CLUSTER <#bytes>␍␊<json>␍␊
//! CLUSTER REMOVE <node-id>␍␊                         → CLUSTER <#bytes>␍␊<json>␍␊
//! ```
//! The JSON is `{"node_id":…,"stores":{"<name>":{"leader_id":…,"term":…,"members":[…]}}}`
//! (PROTOCOL.md lists the fields). A single server answers `CLUSTER` too: a one-member group.

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::line::{parse_u64, Args};
use crate::request::{put_line, Request};

/// Longest `HOST:PORT` accepted in `CLUSTER ADD`.
pub const MAX_ADDRESS_BYTES: usize = 255;

/// A membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Add the node as a learner, then promote it to voter once it has caught up.
    Add {
        node_id: u64,
        raft_addr: String,
        client_addr: Option<String>,
    },
    /// Remove the node from the voters (and the cluster).
    Remove { node_id: u64 },
}

pub(crate) fn parse_cluster(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let Some(sub) = args.optional("subcommand")? else {
        return Ok(Request::Cluster);
    };
    let change = if sub.eq_ignore_ascii_case("ADD") {
        let node_id = parse_u64(args.required("node id")?, "node id")?;
        let raft_addr = address(args.required("raft address")?, "raft address")?;
        let client_addr = args
            .optional("client address")?
            .map(|text| address(text, "client address"))
            .transpose()?;
        MemberChange::Add {
            node_id,
            raft_addr,
            client_addr,
        }
    } else if sub.eq_ignore_ascii_case("REMOVE") {
        let node_id = parse_u64(args.required("node id")?, "node id")?;
        MemberChange::Remove { node_id }
    } else {
        return Err(ProtocolError::invalid_argument(format!(
            "CLUSTER takes no argument, ADD or REMOVE, not {}",
            crate::line::snippet(sub.as_bytes())
        )));
    };
    args.finish("CLUSTER")?;
    if matches!(
        change,
        MemberChange::Add { node_id: 0, .. } | MemberChange::Remove { node_id: 0 }
    ) {
        return Err(ProtocolError::invalid_argument(
            "node id 0 is not a node id",
        ));
    }
    Ok(Request::ClusterChange(change))
}

/// `HOST:PORT`, a port from 1 to 65535.
fn address(text: &str, what: &str) -> Result<String, ProtocolError> {
    let bad = || {
        ProtocolError::invalid_argument(format!(
            "{what} {} is not HOST:PORT",
            crate::line::snippet(text.as_bytes())
        ))
    };
    if text.len() > MAX_ADDRESS_BYTES {
        return Err(bad());
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(port) if port != 0 && !host.is_empty() => Ok(text.to_owned()),
        _ => Err(bad()),
    }
}

pub(crate) fn encode_cluster(dst: &mut BytesMut) {
    put_line(dst, "CLUSTER");
}

pub(crate) fn encode_change(change: &MemberChange, dst: &mut BytesMut) {
    match change {
        MemberChange::Add {
            node_id,
            raft_addr,
            client_addr: Some(client),
        } => put_line(dst, &format!("CLUSTER ADD {node_id} {raft_addr} {client}")),
        MemberChange::Add {
            node_id, raft_addr, ..
        } => put_line(dst, &format!("CLUSTER ADD {node_id} {raft_addr}")),
        MemberChange::Remove { node_id } => put_line(dst, &format!("CLUSTER REMOVE {node_id}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Request, ProtocolError> {
        parse_cluster(Args::new(line.as_bytes()))
    }

    #[test]
    fn add_and_remove_parse_and_round_trip() {
        assert_eq!(parse("").unwrap(), Request::Cluster);
        let add = parse("ADD 4 10.0.0.4:7350 10.0.0.4:4350").unwrap();
        assert_eq!(
            add,
            Request::ClusterChange(MemberChange::Add {
                node_id: 4,
                raft_addr: "10.0.0.4:7350".into(),
                client_addr: Some("10.0.0.4:4350".into()),
            })
        );
        let remove = parse("remove 2").unwrap();
        assert_eq!(
            remove,
            Request::ClusterChange(MemberChange::Remove { node_id: 2 })
        );
        for request in [add, remove] {
            let mut encoded = BytesMut::new();
            request.encode(&mut encoded);
            let line = std::str::from_utf8(&encoded).unwrap();
            let args = line.trim_end().strip_prefix("CLUSTER ").unwrap();
            assert_eq!(parse(args).unwrap(), request);
        }
    }

    #[test]
    fn bad_changes_are_refused() {
        for bad in [
            "ADD",
            "ADD 4",
            "ADD x 10.0.0.4:7350",
            "ADD 0 10.0.0.4:7350",
            "ADD 4 10.0.0.4",
            "ADD 4 10.0.0.4:0",
            "ADD 4 :7350",
            "ADD 4 a:1 b:2 c:3",
            "REMOVE",
            "REMOVE 2 3",
            "JOIN 4",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
