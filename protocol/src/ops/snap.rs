//! `SNAP`: snapshots of a stream's folded state, keyed by (stream, version).
//!
//! # Syntax
//! ```text
//! SNAP SAVE <stream> <version> <#bytes>␍␊<payload>␍␊    → +OK
//! SNAP SAVE <stream> <version> <json>␍␊                 → +OK   (inline payload)
//! SNAP LOAD <stream> [<version>]␍␊      → SNAPSHOT <stream> <version> <#bytes>␍␊<record>␍␊
//! SNAP LIST <stream> [<from_version> [<count>]]␍␊   → SNAPSHOTS <count> <#bytes>␍␊<array>␍␊
//! SNAP DELETE <stream> [<version>]␍␊    → +OK
//! SNAP EXISTS <stream> [<version>]␍␊    → EXISTS <stream> 1|0
//! ```
//! The payload is `{"data": <any JSON>, "metadata": <object>?, "keep": <n ≥ 1>?}`. `SAVE`
//! overwrites a snapshot at the same version; with `keep`, it then deletes all but the
//! stream's newest `keep` snapshots. `LOAD` without a version loads the newest; `LIST` is ascending by
//! version, from `<from_version>` (default 0), at most `<count>` (default and maximum
//! `MAX_SNAPSHOTS_PAGE`). `DELETE` without a version deletes every snapshot of the stream.
//!
//! # Record
//! `{"stream_id":"…","version":n,"data":…,"metadata":{…},"epoch_us":n}`
//!
//! # Example
//! ```text
//! SNAP SAVE cart-1 4 {"data":{"total":12}}
//! +OK
//! SNAP LOAD cart-1
//! SNAPSHOT cart-1 4 80
//! {"stream_id":"cart-1","version":4,"data":{"total":12},"metadata":{},"epoch_us":1795863292199534}
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ProtocolError;
use crate::json::check_payload_value as check_json_rules;
use crate::limits::MAX_SNAPSHOTS_PAGE;
use crate::line::{parse_u64, snippet, Args};
use crate::ops::streams::validate_stream_id;
use crate::request::{put_line, sized_or_inline, LineOutcome, Request};

/// One `SNAP` request.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapRequest {
    Save {
        stream: String,
        version: u64,
        /// `{"data": …, "metadata": …}`, checked by [`parse_snapshot_payload`].
        payload: Bytes,
    },
    Load {
        stream: String,
        /// `None`: the newest.
        version: Option<u64>,
    },
    List {
        stream: String,
        from_version: u64,
        count: u64,
    },
    Delete {
        stream: String,
        /// `None`: every snapshot of the stream.
        version: Option<u64>,
    },
    Exists {
        stream: String,
        /// `None`: any snapshot of the stream.
        version: Option<u64>,
    },
}

pub(crate) fn parse(line: &Bytes, mut args: Args<'_>) -> LineOutcome {
    let sub = args.next_token().unwrap_or_default().to_ascii_uppercase();
    let done =
        |result: Result<SnapRequest, ProtocolError>| LineOutcome::Done(result.map(Request::Snap));
    match sub.as_slice() {
        b"SAVE" => parse_save(line, args),
        b"LOAD" => done(
            parse_stream_and_version(args, "SNAP LOAD")
                .map(|(stream, version)| SnapRequest::Load { stream, version }),
        ),
        b"LIST" => done(parse_list(args)),
        b"DELETE" => done(
            parse_stream_and_version(args, "SNAP DELETE")
                .map(|(stream, version)| SnapRequest::Delete { stream, version }),
        ),
        b"EXISTS" => done(
            parse_stream_and_version(args, "SNAP EXISTS")
                .map(|(stream, version)| SnapRequest::Exists { stream, version }),
        ),
        b"" => done(Err(ProtocolError::invalid_argument(
            "SNAP needs SAVE, LOAD, LIST, DELETE or EXISTS",
        ))),
        other => done(Err(ProtocolError::invalid_argument(format!(
            "unknown SNAP operation {} (SAVE, LOAD, LIST, DELETE or EXISTS)",
            snippet(other)
        )))),
    }
}

fn parse_save(line: &Bytes, mut args: Args<'_>) -> LineOutcome {
    let stream = args.required("stream id").and_then(validate_stream_id);
    let version = args
        .required("version")
        .and_then(|text| parse_u64(text, "version"));
    let body = args.remainder();
    let header = stream.and_then(|stream| {
        version.map(|version| {
            Request::Snap(SnapRequest::Save {
                stream,
                version,
                payload: Bytes::new(),
            })
        })
    });
    sized_or_inline(line, body, header, "SNAP SAVE")
}

fn parse_stream_and_version(
    mut args: Args<'_>,
    operation: &str,
) -> Result<(String, Option<u64>), ProtocolError> {
    let stream = validate_stream_id(args.required("stream id")?)?;
    let version = args
        .optional("version")?
        .map(|text| parse_u64(text, "version"))
        .transpose()?;
    args.finish(operation)?;
    Ok((stream, version))
}

fn parse_list(mut args: Args<'_>) -> Result<SnapRequest, ProtocolError> {
    let stream = validate_stream_id(args.required("stream id")?)?;
    let from_version = match args.optional("from_version")? {
        None => 0,
        Some(text) => parse_u64(text, "from_version")?,
    };
    let count = match args.optional("count")? {
        None => MAX_SNAPSHOTS_PAGE,
        Some(text) => parse_u64(text, "count")?.min(MAX_SNAPSHOTS_PAGE),
    };
    args.finish("SNAP LIST")?;
    Ok(SnapRequest::List {
        stream,
        from_version,
        count,
    })
}

impl SnapRequest {
    /// The stream the request is about.
    pub fn stream(&self) -> &str {
        match self {
            SnapRequest::Save { stream, .. }
            | SnapRequest::Load { stream, .. }
            | SnapRequest::List { stream, .. }
            | SnapRequest::Delete { stream, .. }
            | SnapRequest::Exists { stream, .. } => stream,
        }
    }

    /// A `Save` with its payload filled in (the decoder parses the header before the payload
    /// has arrived); any other request unchanged.
    pub(crate) fn with_payload(self, payload: Bytes) -> SnapRequest {
        match self {
            SnapRequest::Save {
                stream, version, ..
            } => SnapRequest::Save {
                stream,
                version,
                payload,
            },
            other => other,
        }
    }

    /// Encodes the request as a client sends it (`SAVE` with a sized payload).
    pub fn encode(&self, dst: &mut BytesMut) {
        let with_version = |name: &str, stream: &str, version: &Option<u64>| match version {
            Some(version) => format!("SNAP {name} {stream} {version}"),
            None => format!("SNAP {name} {stream}"),
        };
        let line = match self {
            SnapRequest::Save {
                stream,
                version,
                payload,
            } => {
                let header = format!("SNAP SAVE {stream} {version} {}\r\n", payload.len());
                dst.reserve(header.len() + payload.len() + 2);
                dst.put_slice(header.as_bytes());
                dst.put_slice(payload);
                dst.put_slice(b"\r\n");
                return;
            }
            SnapRequest::Load { stream, version } => with_version("LOAD", stream, version),
            SnapRequest::List {
                stream,
                from_version,
                count,
            } => format!("SNAP LIST {stream} {from_version} {count}"),
            SnapRequest::Delete { stream, version } => with_version("DELETE", stream, version),
            SnapRequest::Exists { stream, version } => with_version("EXISTS", stream, version),
        };
        put_line(dst, &line);
    }
}

/// The `SNAP SAVE` payload as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotInputWire {
    data: Box<RawValue>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    keep: Option<u64>,
}

/// A validated `SNAP SAVE` payload.
#[derive(Debug, Clone)]
pub struct SnapshotInput {
    /// Any JSON value, kept as the client's bytes.
    pub data: Box<RawValue>,
    /// A JSON object, kept as the client's bytes; `None` means `{}`.
    pub metadata: Option<Box<RawValue>>,
    /// Retention: after saving, keep only the stream's newest `keep` snapshots (by version).
    pub keep: Option<u64>,
}

/// Parses and validates a `SNAP SAVE` payload: `{"data": …, "metadata": {…}?, "keep": n?}`.
pub fn parse_snapshot_payload(payload: &[u8]) -> Result<SnapshotInput, ProtocolError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ProtocolError::invalid_json(format!(
            "snapshot payload must be an object {{\"data\":…,\"metadata\":{{…}}}}, got {}",
            snippet(payload)
        )));
    }
    let wire: SnapshotInputWire = serde_json::from_slice(payload)
        .map_err(|e| ProtocolError::invalid_json(format!("bad snapshot JSON: {e}")))?;
    check_json_rules("snapshot data", &wire.data)?;
    if let Some(metadata) = &wire.metadata {
        if !metadata.get().starts_with('{') {
            return Err(ProtocolError::invalid_json(
                "snapshot metadata must be a JSON object",
            ));
        }
        check_json_rules("snapshot metadata", metadata)?;
    }
    if wire.keep == Some(0) {
        return Err(ProtocolError::invalid_argument(
            "keep must be at least 1 (SNAP DELETE removes every snapshot)",
        ));
    }
    Ok(SnapshotInput {
        data: wire.data,
        metadata: wire.metadata,
        keep: wire.keep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<SnapRequest, ProtocolError> {
        let line = Bytes::copy_from_slice(text.as_bytes());
        let mut args = Args::new(&line);
        args.next_token();
        match parse(&line, args) {
            LineOutcome::Done(result) => result.map(|request| match request {
                Request::Snap(snap) => snap,
                other => panic!("not a SNAP: {other:?}"),
            }),
            LineOutcome::NeedsPayload { .. } | LineOutcome::Fatal(_) => panic!("needs payload"),
        }
    }

    #[test]
    fn subcommands_parse() {
        assert_eq!(
            parse_text("SNAP load s").unwrap(),
            SnapRequest::Load {
                stream: "s".into(),
                version: None
            }
        );
        assert_eq!(
            parse_text("SNAP LOAD s 3").unwrap(),
            SnapRequest::Load {
                stream: "s".into(),
                version: Some(3)
            }
        );
        assert_eq!(
            parse_text("SNAP LIST s").unwrap(),
            SnapRequest::List {
                stream: "s".into(),
                from_version: 0,
                count: MAX_SNAPSHOTS_PAGE
            }
        );
        assert_eq!(
            parse_text("SNAP LIST s 2 99999").unwrap(),
            SnapRequest::List {
                stream: "s".into(),
                from_version: 2,
                count: MAX_SNAPSHOTS_PAGE
            }
        );
        assert_eq!(
            parse_text("SNAP SAVE s 1 {\"data\":1}").unwrap(),
            SnapRequest::Save {
                stream: "s".into(),
                version: 1,
                payload: Bytes::from_static(b"{\"data\":1}")
            }
        );
        for bad in [
            "SNAP",
            "SNAP FROB s",
            "SNAP LOAD",
            "SNAP LOAD s -1",
            "SNAP LOAD s 1 2",
            "SNAP EXISTS $all",
            "SNAP SAVE s x {}",
            "SNAP SAVE s 1",
        ] {
            let error = parse_text(bad).unwrap_err();
            assert_eq!(error.code.as_str(), "invalid_argument", "{bad}");
        }
    }

    #[test]
    fn payloads_are_checked() {
        let ok = parse_snapshot_payload(br#"{"data":[1],"metadata":{"m":1}}"#).unwrap();
        assert_eq!(ok.data.get(), "[1]");
        assert!(parse_snapshot_payload(br#"{"data":null}"#)
            .unwrap()
            .metadata
            .is_none());
        for bad in [
            &b""[..],
            b"[1]",
            b"{",
            br#"{"metadata":{}}"#,
            br#"{"data":1,"metadata":2}"#,
            br#"{"data":1,"typo":2}"#,
            br#"{"data":1,"keep":-1}"#,
        ] {
            let error = parse_snapshot_payload(bad).unwrap_err();
            assert_eq!(error.code.as_str(), "invalid_json");
        }
        assert_eq!(
            parse_snapshot_payload(br#"{"data":1,"keep":2}"#)
                .unwrap()
                .keep,
            Some(2)
        );
        let error = parse_snapshot_payload(br#"{"data":1,"keep":0}"#).unwrap_err();
        assert_eq!(error.code.as_str(), "invalid_argument");
    }
}

#[cfg(test)]
mod framing_tests {
    use super::*;
    use crate::reply::{Reply, ReplyDecoder};
    use crate::request::{Decoded, RequestDecoder};

    #[test]
    fn a_sized_save_is_framed_even_when_its_header_is_bad() {
        let mut buf =
            BytesMut::from(&b"SNAP SAVE s 2 10\r\n{\"data\":1}\r\nSNAP SAVE s x 2\r\n{}\r\n"[..]);
        let mut decoder = RequestDecoder::new();
        let first = decoder.decode(&mut buf).unwrap().unwrap();
        let save = SnapRequest::Save {
            stream: "s".into(),
            version: 2,
            payload: Bytes::from_static(b"{\"data\":1}"),
        };
        assert_eq!(first, Decoded::Request(Request::Snap(save.clone())));
        let second = decoder.decode(&mut buf).unwrap().unwrap();
        assert!(matches!(second, Decoded::Invalid(e) if e.code.as_str() == "invalid_argument"));
        assert!(buf.is_empty());
        let mut encoded = BytesMut::new();
        save.encode(&mut encoded);
        assert_eq!(&encoded[..], b"SNAP SAVE s 2 10\r\n{\"data\":1}\r\n");
    }

    #[test]
    fn snapshot_and_aggregate_replies_round_trip() {
        let replies = [
            Reply::Snapshot {
                stream: "s".into(),
                version: 3,
                body: Bytes::from_static(b"{\"version\":3}"),
            },
            Reply::Snapshots {
                count: 0,
                body: Bytes::from_static(b"[]"),
            },
            Reply::Aggregate {
                stream: "s".into(),
                version: 9,
                body: Bytes::from_static(b"{\"n\":4}"),
            },
        ];
        let mut buf = BytesMut::new();
        for reply in &replies {
            reply.encode(&mut buf);
        }
        let mut decoder = ReplyDecoder::new();
        for reply in &replies {
            assert_eq!(decoder.decode(&mut buf).unwrap().as_ref(), Some(reply));
        }
        assert!(buf.is_empty());
    }
}
