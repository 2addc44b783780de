//! What the server sends: replies, its `INFO` greeting and its `PING`s.
//!
//! # Syntax
//! ```text
//! INFO <json>␍␊
//! +OK␍␊
//! -ERR <code> '<message>'␍␊
//! PING␍␊ / PONG␍␊
//! APPENDED <stream> <last_version> <last_position>␍␊
//! APPENDEDMULTI <parts> <#bytes>␍␊<JSON array, one object per part>␍␊
//! EVENTS <count> <#bytes>␍␊<JSON array>␍␊
//! VERSION <stream> <version>␍␊
//! EXISTS <stream> 0|1␍␊
//! STREAMS <count> <#bytes>␍␊<JSON array>␍␊
//! HELP <#bytes>␍␊<text>␍␊
//! EVENT <sid> <stream> <version> <position> <#bytes>␍␊<record>␍␊
//! LIVE <sid>␍␊
//! SUBS <count> <#bytes>␍␊<JSON array>␍␊
//! SUBINFO <#bytes>␍␊<JSON object>␍␊
//! SUBEXISTS <name> 0|1␍␊
//! STATS <#bytes>␍␊<JSON object>␍␊
//! CLUSTER <#bytes>␍␊<JSON object>␍␊
//! SNAPSHOT <stream> <version> <#bytes>␍␊<snapshot record>␍␊
//! SNAPSHOTS <count> <#bytes>␍␊<JSON array of snapshot records>␍␊
//! AGG <stream> <version> <#bytes>␍␊<state JSON object>␍␊
//! META <stream> <JSON object>␍␊
//! ```
//! The `-ERR` message runs from the first `'` to the last `'` of the line.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ErrorCode, ProtocolError};
use crate::limits::MAX_CONTROL_LINE_BYTES;
use crate::line::{self, parse_u64, Args};

/// Largest reply body a client accepts (the server's `MAX_READ_REPLY_BYTES` plus one event).
pub const MAX_REPLY_BODY_BYTES: usize =
    crate::limits::MAX_READ_REPLY_BYTES + crate::limits::MAX_PAYLOAD_BYTES;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Info(Bytes),
    Ok,
    Ping,
    Pong,
    Err(ProtocolError),
    Appended {
        stream: String,
        last_version: u64,
        last_position: u64,
    },
    /// `APPENDMULTI`: each part's result, a JSON array in the parts' order.
    AppendedMulti {
        count: u64,
        body: Bytes,
    },
    Events {
        count: u64,
        body: Bytes,
    },
    Version {
        stream: String,
        version: i64,
    },
    Exists {
        stream: String,
        exists: bool,
    },
    Streams {
        count: u64,
        body: Bytes,
    },
    Help {
        body: Bytes,
    },
    /// A subscription delivers an event (pushed, between replies).
    Event {
        sid: String,
        stream: String,
        version: u64,
        position: u64,
        body: Bytes,
    },
    /// A subscription has delivered all history and is now live (pushed, once).
    Live {
        sid: String,
    },
    /// A subscription met a stored record it cannot match (it breaks the JSON rules): pushed
    /// in its place, so the event is reported rather than skipped; the subscription goes on.
    Unreadable {
        sid: String,
        stream: String,
        version: u64,
        position: u64,
        reason: String,
    },
    Subs {
        count: u64,
        body: Bytes,
    },
    SubInfo {
        body: Bytes,
    },
    SubExists {
        name: String,
        exists: bool,
    },
    Stats {
        body: Bytes,
    },
    /// `CLUSTER`: a JSON object.
    Cluster {
        body: Bytes,
    },
    /// `SNAP LOAD`: one snapshot record.
    Snapshot {
        stream: String,
        version: u64,
        body: Bytes,
    },
    /// `SNAP LIST`: a JSON array of snapshot records.
    Snapshots {
        count: u64,
        body: Bytes,
    },
    /// `AGG`: the folded state and the stream version it reflects.
    Aggregate {
        stream: String,
        version: u64,
        body: Bytes,
    },
    /// `META <stream>`: the stream's metadata, a small JSON object on the reply line.
    Meta {
        stream: String,
        body: Bytes,
    },
    /// `SCAVENGE`, `SCAVENGE STATUS`: the store's scavenge state, a JSON object on the line.
    Scavenge {
        body: Bytes,
    },
}

impl Reply {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Err(ProtocolError::new(code, message))
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Reply::Info(json) => put_parts(dst, &[b"INFO ", json]),
            Reply::Ok => dst.put_slice(b"+OK\r\n"),
            Reply::Ping => dst.put_slice(b"PING\r\n"),
            Reply::Pong => dst.put_slice(b"PONG\r\n"),
            Reply::Err(error) => {
                let message = one_line(&error.message);
                put_parts(
                    dst,
                    &[
                        b"-ERR ",
                        error.code.as_str().as_bytes(),
                        b" '",
                        message.as_bytes(),
                        b"'",
                    ],
                );
            }
            Reply::Appended {
                stream,
                last_version,
                last_position,
            } => put_parts(
                dst,
                &[format!("APPENDED {stream} {last_version} {last_position}").as_bytes()],
            ),
            Reply::Events { count, body } => put_sized(dst, &format!("EVENTS {count}"), body),
            Reply::AppendedMulti { count, body } => {
                put_sized(dst, &format!("APPENDEDMULTI {count}"), body)
            }
            Reply::Version { stream, version } => {
                put_parts(dst, &[format!("VERSION {stream} {version}").as_bytes()])
            }
            Reply::Exists { stream, exists } => put_parts(
                dst,
                &[format!("EXISTS {stream} {}", u8::from(*exists)).as_bytes()],
            ),
            Reply::Streams { count, body } => put_sized(dst, &format!("STREAMS {count}"), body),
            Reply::Help { body } => put_sized(dst, "HELP", body),
            Reply::Event {
                sid,
                stream,
                version,
                position,
                body,
            } => put_sized(
                dst,
                &format!("EVENT {sid} {stream} {version} {position}"),
                body,
            ),
            Reply::Live { sid } => put_parts(dst, &[b"LIVE ", sid.as_bytes()]),
            Reply::Unreadable {
                sid,
                stream,
                version,
                position,
                reason,
            } => put_parts(
                dst,
                &[
                    format!("UNREADABLE {sid} {stream} {version} {position} '").as_bytes(),
                    one_line(reason).as_bytes(),
                    b"'",
                ],
            ),
            Reply::Subs { count, body } => put_sized(dst, &format!("SUBS {count}"), body),
            Reply::SubInfo { body } => put_sized(dst, "SUBINFO", body),
            Reply::SubExists { name, exists } => put_parts(
                dst,
                &[format!("SUBEXISTS {name} {}", u8::from(*exists)).as_bytes()],
            ),
            Reply::Stats { body } => put_sized(dst, "STATS", body),
            Reply::Cluster { body } => put_sized(dst, "CLUSTER", body),
            Reply::Snapshot {
                stream,
                version,
                body,
            } => put_sized(dst, &format!("SNAPSHOT {stream} {version}"), body),
            Reply::Snapshots { count, body } => put_sized(dst, &format!("SNAPSHOTS {count}"), body),
            Reply::Aggregate {
                stream,
                version,
                body,
            } => put_sized(dst, &format!("AGG {stream} {version}"), body),
            Reply::Meta { stream, body } => {
                put_parts(dst, &[b"META ", stream.as_bytes(), b" ", body])
            }
            Reply::Scavenge { body } => put_parts(dst, &[b"SCAVENGE ", body]),
        }
    }

    /// The reply as bytes, for callers that keep encoded replies.
    pub fn to_bytes(&self) -> Bytes {
        let mut dst = BytesMut::new();
        self.encode(&mut dst);
        dst.freeze()
    }
}

fn put_parts(dst: &mut BytesMut, parts: &[&[u8]]) {
    dst.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + 2);
    for part in parts {
        dst.put_slice(part);
    }
    dst.put_slice(b"\r\n");
}

fn put_sized(dst: &mut BytesMut, head: &str, body: &[u8]) {
    let head = format!("{head} {}\r\n", body.len());
    dst.reserve(head.len() + body.len() + 2);
    dst.put_slice(head.as_bytes());
    dst.put_slice(body);
    dst.put_slice(b"\r\n");
}

/// A reply line that announced a body of this many bytes.
#[derive(Debug)]
struct PendingBody {
    kind: BodyKind,
    count: u64,
    len: usize,
}

#[derive(Debug, Clone)]
enum BodyKind {
    Events,
    AppendedMulti,
    Streams,
    Help,
    Event {
        sid: String,
        stream: String,
        version: u64,
        position: u64,
    },
    Subs,
    SubInfo,
    Stats,
    Cluster,
    Snapshot {
        stream: String,
        version: u64,
    },
    Snapshots,
    Aggregate {
        stream: String,
        version: u64,
    },
}

/// Client-side decoder of server output.
#[derive(Debug, Default)]
pub struct ReplyDecoder {
    pending: Option<PendingBody>,
}

impl ReplyDecoder {
    pub fn new() -> ReplyDecoder {
        ReplyDecoder::default()
    }

    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
        if let Some(pending) = self.pending.take() {
            return self.decode_body(buf, pending);
        }
        let line_len = match line::control_line(buf) {
            Ok((_, line)) => line.len() + 1,
            Err(nom::Err::Incomplete(_)) if buf.len() > MAX_CONTROL_LINE_BYTES * 2 => {
                return Err(bad_reply("reply line too long"))
            }
            Err(_) => return Ok(None),
        };
        let line = buf.split_to(line_len).freeze();
        let text = std::str::from_utf8(line::trim_line(&line[..line_len - 1]))
            .map_err(|_| bad_reply("reply line is not UTF-8"))?;
        match parse_reply_line(text)? {
            LineReply::Done(reply) => Ok(Some(reply)),
            LineReply::Body(pending) => {
                if pending.len > MAX_REPLY_BODY_BYTES {
                    return Err(bad_reply("reply body too large"));
                }
                self.decode_body(buf, pending)
            }
        }
    }

    fn decode_body(
        &mut self,
        buf: &mut BytesMut,
        pending: PendingBody,
    ) -> Result<Option<Reply>, ProtocolError> {
        let consumed = match line::payload(buf, pending.len) {
            Ok((rest, _)) => buf.len() - rest.len(),
            Err(nom::Err::Incomplete(_)) => {
                self.pending = Some(pending);
                return Ok(None);
            }
            Err(_) => return Err(bad_reply("reply body not followed by CRLF")),
        };
        let body = buf.split_to(consumed).freeze().slice(..pending.len);
        Ok(Some(match pending.kind {
            BodyKind::Events => Reply::Events {
                count: pending.count,
                body,
            },
            BodyKind::AppendedMulti => Reply::AppendedMulti {
                count: pending.count,
                body,
            },
            BodyKind::Streams => Reply::Streams {
                count: pending.count,
                body,
            },
            BodyKind::Help => Reply::Help { body },
            BodyKind::Event {
                sid,
                stream,
                version,
                position,
            } => Reply::Event {
                sid,
                stream,
                version,
                position,
                body,
            },
            BodyKind::Subs => Reply::Subs {
                count: pending.count,
                body,
            },
            BodyKind::SubInfo => Reply::SubInfo { body },
            BodyKind::Stats => Reply::Stats { body },
            BodyKind::Cluster => Reply::Cluster { body },
            BodyKind::Snapshot { stream, version } => Reply::Snapshot {
                stream,
                version,
                body,
            },
            BodyKind::Snapshots => Reply::Snapshots {
                count: pending.count,
                body,
            },
            BodyKind::Aggregate { stream, version } => Reply::Aggregate {
                stream,
                version,
                body,
            },
        }))
    }
}

/// Messages come from our own code, but never let one break its line.
fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// The text between the first and the last `'` of a reply's remainder (or all of it).
fn quoted_message(rest: &[u8]) -> &str {
    let rest = std::str::from_utf8(rest).unwrap_or_default();
    match (rest.find('\''), rest.rfind('\'')) {
        (Some(start), Some(end)) if end > start => &rest[start + 1..end],
        _ => rest,
    }
}

enum LineReply {
    Done(Reply),
    Body(PendingBody),
}

fn bad_reply(message: &str) -> ProtocolError {
    ProtocolError::new(ErrorCode::BadFrame, message)
}

fn parse_reply_line(text: &str) -> Result<LineReply, ProtocolError> {
    let mut args = Args::new(text.as_bytes());
    let name = args.required("reply")?;
    let done = |reply| Ok(LineReply::Done(reply));
    match name {
        "+OK" => done(Reply::Ok),
        "PING" => done(Reply::Ping),
        "PONG" => done(Reply::Pong),
        "INFO" => done(Reply::Info(Bytes::copy_from_slice(args.remainder()))),
        "-ERR" => {
            let code_text = args.required("error code")?;
            let code =
                ErrorCode::parse(code_text).ok_or_else(|| bad_reply("unknown error code"))?;
            let message = quoted_message(args.remainder());
            done(Reply::Err(ProtocolError::new(code, message)))
        }
        "APPENDED" => {
            let stream = args.required("stream")?.to_owned();
            let last_version = parse_u64(args.required("version")?, "version")?;
            let last_position = parse_u64(args.required("position")?, "position")?;
            done(Reply::Appended {
                stream,
                last_version,
                last_position,
            })
        }
        "VERSION" => {
            let stream = args.required("stream")?.to_owned();
            let version = args
                .required("version")?
                .parse::<i64>()
                .map_err(|_| bad_reply("bad VERSION"))?;
            done(Reply::Version { stream, version })
        }
        "EXISTS" => {
            let stream = args.required("stream")?.to_owned();
            let exists = match args.required("flag")? {
                "1" => true,
                "0" => false,
                _ => return Err(bad_reply("EXISTS flag must be 0 or 1")),
            };
            done(Reply::Exists { stream, exists })
        }
        "EVENTS" | "STREAMS" | "SNAPSHOTS" | "APPENDEDMULTI" => {
            let count = parse_u64(args.required("count")?, "count")?;
            let len = parse_u64(args.required("#bytes")?, "#bytes")? as usize;
            let kind = match name {
                "EVENTS" => BodyKind::Events,
                "STREAMS" => BodyKind::Streams,
                "APPENDEDMULTI" => BodyKind::AppendedMulti,
                _ => BodyKind::Snapshots,
            };
            Ok(LineReply::Body(PendingBody { kind, count, len }))
        }
        "SNAPSHOT" | "AGG" => {
            let stream = args.required("stream")?.to_owned();
            let version = parse_u64(args.required("version")?, "version")?;
            let len = parse_u64(args.required("#bytes")?, "#bytes")? as usize;
            let kind = if name == "AGG" {
                BodyKind::Aggregate { stream, version }
            } else {
                BodyKind::Snapshot { stream, version }
            };
            Ok(LineReply::Body(PendingBody {
                kind,
                count: 0,
                len,
            }))
        }
        "HELP" | "STATS" | "CLUSTER" => {
            let len = parse_u64(args.required("#bytes")?, "#bytes")? as usize;
            let kind = match name {
                "HELP" => BodyKind::Help,
                "STATS" => BodyKind::Stats,
                _ => BodyKind::Cluster,
            };
            Ok(LineReply::Body(PendingBody {
                kind,
                count: 0,
                len,
            }))
        }
        "EVENT" => {
            let sid = args.required("sid")?.to_owned();
            let stream = args.required("stream")?.to_owned();
            let version = parse_u64(args.required("version")?, "version")?;
            let position = parse_u64(args.required("position")?, "position")?;
            let len = parse_u64(args.required("#bytes")?, "#bytes")? as usize;
            let kind = BodyKind::Event {
                sid,
                stream,
                version,
                position,
            };
            Ok(LineReply::Body(PendingBody {
                kind,
                count: 1,
                len,
            }))
        }
        "META" => {
            let stream = args.required("stream")?.to_owned();
            let body = Bytes::copy_from_slice(args.remainder());
            done(Reply::Meta { stream, body })
        }
        "SCAVENGE" => done(Reply::Scavenge {
            body: Bytes::copy_from_slice(args.remainder()),
        }),
        "LIVE" => done(Reply::Live {
            sid: args.required("sid")?.to_owned(),
        }),
        "UNREADABLE" => {
            let sid = args.required("sid")?.to_owned();
            let stream = args.required("stream")?.to_owned();
            let version = parse_u64(args.required("version")?, "version")?;
            let position = parse_u64(args.required("position")?, "position")?;
            done(Reply::Unreadable {
                sid,
                stream,
                version,
                position,
                reason: quoted_message(args.remainder()).to_owned(),
            })
        }
        "SUBS" => {
            let count = parse_u64(args.required("count")?, "count")?;
            let len = parse_u64(args.required("#bytes")?, "#bytes")? as usize;
            Ok(LineReply::Body(PendingBody {
                kind: BodyKind::Subs,
                count,
                len,
            }))
        }
        "SUBINFO" => {
            let len = parse_u64(args.required("#bytes")?, "#bytes")? as usize;
            Ok(LineReply::Body(PendingBody {
                kind: BodyKind::SubInfo,
                count: 0,
                len,
            }))
        }
        "SUBEXISTS" => {
            let name = args.required("name")?.to_owned();
            let exists = match args.required("flag")? {
                "1" => true,
                "0" => false,
                _ => return Err(bad_reply("SUBEXISTS flag must be 0 or 1")),
            };
            done(Reply::SubExists { name, exists })
        }
        _ => Err(bad_reply("unknown reply")),
    }
}
