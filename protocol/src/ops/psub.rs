//! Persistent subscription management: `PSUB LIST|GET|EXISTS|DELETE|PARKED|REPLAY`.
//!
//! # Syntax
//! ```text
//! PSUB LIST␍␊                               → SUBS <count> <#bytes>␍␊<JSON array>␍␊
//! PSUB GET <name>␍␊                         → SUBINFO <#bytes>␍␊<JSON object>␍␊
//! PSUB EXISTS <name>␍␊                      → SUBEXISTS <name> 1|0
//! PSUB DELETE <name> [<type>]␍␊             → +OK
//! PSUB PARKED <name> [<from>] [<count>]␍␊   → EVENTS <count> <#bytes>␍␊<records>␍␊
//! PSUB REPLAY <name>␍␊                      → +OK
//! ```
//! A persistent subscription is identified by its name within a store (the seed's "key").
//! `DELETE` with a `<type>` deletes only if the subscription is of that type (the seed's
//! unsubscribe by type and name).

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::limits::MAX_READ_COUNT;
use crate::line::{parse_u64, snippet, Args};
use crate::ops::subscribe::validate_name;
use crate::request::{put_line, Request};

/// One `PSUB` operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsubOp {
    List,
    Get {
        name: String,
    },
    Exists {
        name: String,
    },
    Delete {
        name: String,
        type_name: Option<String>,
    },
    Parked {
        name: String,
        from_position: u64,
        count: u64,
    },
    Replay {
        name: String,
    },
}

const TYPE_NAMES: [&str; 4] = ["stream", "event_type", "event_pattern", "event_payload"];

pub(crate) fn parse(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let verb = args.required("PSUB verb")?.to_ascii_uppercase();
    let op = match verb.as_str() {
        "LIST" => PsubOp::List,
        "GET" => PsubOp::Get {
            name: validate_name(args.required("name")?)?,
        },
        "EXISTS" => PsubOp::Exists {
            name: validate_name(args.required("name")?)?,
        },
        "DELETE" => {
            let name = validate_name(args.required("name")?)?;
            let type_name = match args.optional("type")? {
                None => None,
                Some(text) => {
                    let lower = text.to_ascii_lowercase();
                    if !TYPE_NAMES.contains(&lower.as_str()) {
                        return Err(ProtocolError::new(
                            crate::ErrorCode::UnknownSelectorType,
                            format!("unknown subscription type {}", snippet(text.as_bytes())),
                        ));
                    }
                    Some(lower)
                }
            };
            PsubOp::Delete { name, type_name }
        }
        "PARKED" => {
            let name = validate_name(args.required("name")?)?;
            let from_position = match args.optional("from_position")? {
                None => 0,
                Some(text) => parse_u64(text, "from_position")?,
            };
            let count = match args.optional("count")? {
                None => MAX_READ_COUNT,
                Some(text) => parse_u64(text, "count")?.min(MAX_READ_COUNT),
            };
            PsubOp::Parked {
                name,
                from_position,
                count,
            }
        }
        "REPLAY" => PsubOp::Replay {
            name: validate_name(args.required("name")?)?,
        },
        other => {
            return Err(ProtocolError::invalid_argument(format!(
                "PSUB verb must be LIST, GET, EXISTS, DELETE, PARKED or REPLAY, got {}",
                snippet(other.as_bytes())
            )))
        }
    };
    args.finish("PSUB")?;
    Ok(Request::Psub(op))
}

pub(crate) fn encode(op: &PsubOp, dst: &mut BytesMut) {
    let line = match op {
        PsubOp::List => "PSUB LIST".to_owned(),
        PsubOp::Get { name } => format!("PSUB GET {name}"),
        PsubOp::Exists { name } => format!("PSUB EXISTS {name}"),
        PsubOp::Delete {
            name,
            type_name: None,
        } => format!("PSUB DELETE {name}"),
        PsubOp::Delete {
            name,
            type_name: Some(t),
        } => format!("PSUB DELETE {name} {t}"),
        PsubOp::Parked {
            name,
            from_position,
            count,
        } => {
            format!("PSUB PARKED {name} {from_position} {count}")
        }
        PsubOp::Replay { name } => format!("PSUB REPLAY {name}"),
    };
    put_line(dst, &line);
}
