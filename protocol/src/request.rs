//! What a client may send, and the decoder that frames it out of a byte buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ErrorCode, ProtocolError};
use crate::expected::ExpectedVersion;
use crate::limits::{MAX_CONTROL_LINE_BYTES, MAX_PAYLOAD_BYTES};
use crate::line::{self, snippet, Args};
use crate::ops::agg::AggRequest;
use crate::ops::append_multi::AppendMultiRequest;
use crate::ops::psub::PsubOp;
use crate::ops::snap::SnapRequest;
use crate::ops::subscribe::{AckItem, NackAction, SubscribeRequest};
use crate::ops::{
    after, agg, append, append_multi, cluster, erasure, meta, psub, read, scavenge, session, snap,
    stats, streams, subscribe,
};

/// Direction of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// Where a read starts: a version (or position), or the end (`end`, or `-1`), which is useful
/// for reading backward from the newest event, or a commit time (`from_time <t>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStart {
    At(u64),
    End,
    /// `from_time`, in microseconds since the epoch: forward, the first event committed at or
    /// after it; backward, the last event committed at or before it.
    Time(u64),
}

/// One client request. Syntax of each is in the `ops` module that parses it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Connect(session::ConnectOptions),
    Ping,
    Pong,
    Use {
        store: String,
    },
    Help,
    Append {
        stream: String,
        expected: ExpectedVersion,
        payload: Bytes,
    },
    Read {
        stream: String,
        from: ReadStart,
        count: u64,
        direction: Direction,
    },
    ReadAll {
        from: ReadStart,
        count: u64,
        direction: Direction,
    },
    ReadTypes {
        types: Vec<String>,
        from_position: u64,
        count: u64,
    },
    /// `READTAGS`: the events carrying any of `tags`, in position order.
    ReadTags {
        tags: Vec<String>,
        from_position: u64,
        count: u64,
    },
    /// `APPENDMULTI`: one atomic append to several streams, optionally conditional; parsed
    /// whole when its body arrives (so the permissions of every stream are known before it is
    /// dispatched).
    AppendMulti(AppendMultiRequest),
    Version {
        stream: String,
    },
    Exists {
        stream: String,
    },
    Streams {
        after: Option<String>,
        count: u64,
    },
    Delete {
        stream: String,
        expected: ExpectedVersion,
        /// `hard`: leave a tombstone, so the stream can never be written again.
        hard: bool,
    },
    /// `ENCRYPT <stream>`: gives a new stream its own data key ([`crate::ops::erasure`]).
    Encrypt {
        stream: String,
    },
    /// `SHRED <stream>`: destroys an encrypted stream's data key.
    Shred {
        stream: String,
    },
    /// `META <stream>` (get, `payload` `None`) or `META <stream> <json>` (set).
    Meta {
        stream: String,
        payload: Option<Bytes>,
    },
    Subscribe(SubscribeRequest),
    Unsubscribe {
        sid: String,
    },
    Ack {
        sid: String,
        positions: Vec<AckItem>,
    },
    Nack {
        sid: String,
        action: NackAction,
        positions: Vec<AckItem>,
    },
    Psub(PsubOp),
    Stats,
    /// `CLUSTER`: this node's view of each store's Raft group.
    Cluster,
    /// `CLUSTER ADD` / `CLUSTER REMOVE`: a membership change of every store's group.
    ClusterChange(crate::ops::cluster::MemberChange),
    Snap(SnapRequest),
    Agg(AggRequest),
    /// `SCAVENGE` (start one, `status` false) or `SCAVENGE STATUS` ([`crate::ops::scavenge`]).
    Scavenge {
        status: bool,
    },
    /// A read (`READ`, `READALL`, `READTYPES`, `AGG`) or `SUB` with `after <position>`: served
    /// once the node has applied that `$all` position ([`crate::ops::after`]).
    After {
        position: u64,
        request: Box<Request>,
    },
}

impl Request {
    /// The operation name as written on the wire.
    pub fn operation(&self) -> &'static str {
        match self {
            Request::Connect(_) => "CONNECT",
            Request::Ping => "PING",
            Request::Pong => "PONG",
            Request::Use { .. } => "USE",
            Request::Help => "HELP",
            Request::Append { .. } => "APPEND",
            Request::Read { .. } => "READ",
            Request::ReadAll { .. } => "READALL",
            Request::ReadTypes { .. } => "READTYPES",
            Request::ReadTags { .. } => "READTAGS",
            Request::AppendMulti(_) => "APPENDMULTI",
            Request::Version { .. } => "VERSION",
            Request::Exists { .. } => "EXISTS",
            Request::Streams { .. } => "STREAMS",
            Request::Delete { .. } => "DELETE",
            Request::Encrypt { .. } => "ENCRYPT",
            Request::Shred { .. } => "SHRED",
            Request::Meta { .. } => "META",
            Request::Subscribe(_) => "SUB",
            Request::Unsubscribe { .. } => "UNSUB",
            Request::Ack { .. } => "ACK",
            Request::Nack { .. } => "NACK",
            Request::Psub(_) => "PSUB",
            Request::Stats => "STATS",
            Request::Cluster | Request::ClusterChange(_) => "CLUSTER",
            Request::Snap(_) => "SNAP",
            Request::Agg(_) => "AGG",
            Request::Scavenge { .. } => "SCAVENGE",
            Request::After { request, .. } => request.operation(),
        }
    }

    /// Whether the request changes what the store holds: events, snapshots, or a persistent
    /// subscription's stored state (creating or joining one, acknowledging, deleting,
    /// replaying). A read-only connection refuses exactly these (`read_only`). Exhaustive on
    /// purpose, so a new operation must be classified.
    pub fn changes_store(&self) -> bool {
        match self {
            Request::Append { .. }
            | Request::AppendMulti(_)
            | Request::Delete { .. }
            | Request::Encrypt { .. }
            | Request::Shred { .. } => true,
            Request::Meta { payload, .. } => payload.is_some(),
            Request::Scavenge { status } => !status,
            Request::Snap(snap) => match snap {
                SnapRequest::Save { .. } | SnapRequest::Delete { .. } => true,
                SnapRequest::Load { .. }
                | SnapRequest::List { .. }
                | SnapRequest::Exists { .. } => false,
            },
            Request::Subscribe(request) => request.name.is_some(),
            Request::Ack { .. } | Request::Nack { .. } => true,
            Request::After { request, .. } => request.changes_store(),
            // Membership is written to every store's log.
            Request::ClusterChange(_) => true,
            Request::Psub(op) => match op {
                PsubOp::Delete { .. } | PsubOp::Replay { .. } => true,
                PsubOp::List
                | PsubOp::Get { .. }
                | PsubOp::Exists { .. }
                | PsubOp::Parked { .. } => false,
            },
            Request::Connect(_)
            | Request::Ping
            | Request::Pong
            | Request::Use { .. }
            | Request::Help
            | Request::Read { .. }
            | Request::ReadAll { .. }
            | Request::ReadTypes { .. }
            | Request::ReadTags { .. }
            | Request::Version { .. }
            | Request::Exists { .. }
            | Request::Streams { .. }
            | Request::Unsubscribe { .. }
            | Request::Stats
            | Request::Cluster
            | Request::Agg(_) => false,
        }
    }

    /// Encodes the request as a client sends it (the Rust client and tests use this).
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Request::Connect(options) => session::encode_connect(options, dst),
            Request::Ping => dst.put_slice(b"PING\r\n"),
            Request::Pong => dst.put_slice(b"PONG\r\n"),
            Request::Use { store } => put_line(dst, &format!("USE {store}")),
            Request::Help => dst.put_slice(b"HELP\r\n"),
            Request::Append {
                stream,
                expected,
                payload,
            } => append::encode(stream, *expected, payload, dst),
            Request::Read { .. }
            | Request::ReadAll { .. }
            | Request::ReadTypes { .. }
            | Request::ReadTags { .. } => read::encode(self, dst),
            Request::AppendMulti(multi) => append_multi::encode(&multi.payload, dst),
            Request::Version { .. }
            | Request::Exists { .. }
            | Request::Streams { .. }
            | Request::Delete { .. } => streams::encode(self, dst),
            Request::Encrypt { .. } | Request::Shred { .. } => erasure::encode(self, dst),
            Request::Subscribe(_)
            | Request::Unsubscribe { .. }
            | Request::Ack { .. }
            | Request::Nack { .. } => subscribe::encode(self, dst),
            Request::Psub(op) => psub::encode(op, dst),
            Request::Stats => stats::encode_stats(dst),
            Request::Cluster => cluster::encode_cluster(dst),
            Request::ClusterChange(change) => cluster::encode_change(change, dst),
            Request::Snap(snap) => snap.encode(dst),
            Request::Meta { stream, payload } => meta::encode(stream, payload.as_deref(), dst),
            Request::Agg(agg) => agg.encode(dst),
            Request::Scavenge { status } => scavenge::encode(*status, dst),
            Request::After { position, request } => after::encode(*position, request, dst),
        }
    }
}

pub(crate) fn put_line(dst: &mut BytesMut, line: &str) {
    dst.reserve(line.len() + 2);
    dst.put_slice(line.as_bytes());
    dst.put_slice(b"\r\n");
}

/// What one call of [`RequestDecoder::decode`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A well-formed request.
    Request(Request),
    /// A malformed request that was consumed whole; answer `-ERR` and carry on.
    Invalid(ProtocolError),
}

/// What a payload-carrying request learned from its control line.
#[derive(Debug)]
pub(crate) enum PayloadHeader {
    /// `APPEND`, `SNAP SAVE`: the request, its payload still empty.
    Request(Request),
    /// The full form of `SUB`: its options are the payload.
    Subscribe { sid: String },
    /// `APPENDMULTI`: the request is its payload, parsed when it arrives.
    AppendMulti,
    /// A header with `after <position>` ([`after`]).
    After {
        position: u64,
        header: Box<PayloadHeader>,
    },
}

impl PayloadHeader {
    fn complete(self, payload: Bytes) -> Result<Request, ProtocolError> {
        match self {
            PayloadHeader::Request(request) => Ok(request.with_payload(payload)),
            PayloadHeader::Subscribe { sid } => subscribe::complete_full_form(sid, &payload),
            PayloadHeader::AppendMulti => append_multi::parse_body(payload),
            PayloadHeader::After { position, header } => {
                header.complete(payload).map(|request| Request::After {
                    position,
                    request: Box::new(request),
                })
            }
        }
    }
}

/// The end of a control line that carries a payload: a byte count (the payload follows on the
/// next line) or, for people typing, the JSON itself. `header` is the request with an empty
/// payload, or the error to answer (after skipping a sized payload, to keep the framing).
pub(crate) fn sized_or_inline(
    line: &Bytes,
    body: &[u8],
    header: Result<Request, ProtocolError>,
    operation: &str,
) -> LineOutcome {
    if !body.is_empty() && body.iter().all(u8::is_ascii_digit) {
        return sized_payload(body, header.map(PayloadHeader::Request));
    }
    let result = header.and_then(|request| {
        if body.is_empty() {
            return Err(ProtocolError::invalid_argument(format!(
                "{operation} needs a payload: a byte count, or the JSON on the same line"
            )));
        }
        let start = body.as_ptr() as usize - line.as_ptr() as usize;
        Ok(request.with_payload(line.slice(start..start + body.len())))
    });
    LineOutcome::Done(result)
}

/// A control line announcing a payload of `digits` bytes (ASCII digits). A count beyond
/// `max_payload` is refused here, and named as the client wrote it: a count that overflows
/// `usize` (`10^23`) must not be reported as `usize::MAX`.
pub(crate) fn sized_payload(
    digits: &[u8],
    header: Result<PayloadHeader, ProtocolError>,
) -> LineOutcome {
    let payload_len = std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse::<usize>().ok());
    match payload_len {
        Some(payload_len) if payload_len <= MAX_PAYLOAD_BYTES => LineOutcome::NeedsPayload {
            payload_len,
            header,
        },
        _ => LineOutcome::Fatal(payload_too_large(&snippet(digits))),
    }
}

fn payload_too_large(declared: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::PayloadTooLarge,
        format!("payload of {declared} bytes exceeds max_payload {MAX_PAYLOAD_BYTES}"),
    )
}

/// A header whose payload has not fully arrived yet, kept so the line is not parsed again on
/// every read while a large payload trickles in.

#[derive(Debug)]
struct PendingPayload {
    payload_len: usize,
    /// The parsed header, or the error to answer once the payload has been skipped.
    header: Result<PayloadHeader, ProtocolError>,
}

/// Frames requests out of a connection's read buffer.
///
/// `decode` returns `Ok(None)` when more bytes are needed, `Ok(Some(_))` for each request
/// (well-formed or not), and `Err` when framing is lost; the caller then answers `-ERR` and
/// closes the connection.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    pending: Option<PendingPayload>,
}

impl RequestDecoder {
    pub fn new() -> RequestDecoder {
        RequestDecoder::default()
    }

    /// The size of the payload being waited for, when a header has been read but its payload
    /// has not fully arrived: what the connection's buffer is about to grow to. The server
    /// counts it against its budget of read bytes in flight.
    pub fn pending_payload_bytes(&self) -> Option<usize> {
        self.pending.as_ref().map(|pending| pending.payload_len)
    }

    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            if let Some(pending) = self.pending.take() {
                return self.decode_payload(buf, pending);
            }
            let line_len = match line::control_line(buf) {
                Ok((_, line)) => line.len() + 1,
                Err(nom::Err::Incomplete(_)) => {
                    // Checked on partial lines too, so a client that never sends a newline
                    // cannot grow the buffer past the limit.
                    if buf.len() > MAX_CONTROL_LINE_BYTES {
                        return Err(line_too_long());
                    }
                    return Ok(None);
                }
                Err(_) => unreachable!("take_until only fails with Incomplete"),
            };
            if line_len > MAX_CONTROL_LINE_BYTES {
                return Err(line_too_long());
            }
            let line = buf.split_to(line_len).freeze();
            let trimmed = line::trim_line(&line[..line_len - 1]);
            if trimmed.is_empty() {
                // A bare Enter typed in telnet: nothing to answer.
                continue;
            }
            let start = trimmed.as_ptr() as usize - line.as_ptr() as usize;
            let trimmed = line.slice(start..start + trimmed.len());
            match parse_line(&trimmed) {
                LineOutcome::Done(result) => {
                    return Ok(Some(match result {
                        Ok(request) => Decoded::Request(request),
                        Err(error) => Decoded::Invalid(error),
                    }))
                }
                LineOutcome::Fatal(error) => return Err(error),
                LineOutcome::NeedsPayload {
                    payload_len,
                    header,
                } => {
                    if payload_len > MAX_PAYLOAD_BYTES {
                        return Err(payload_too_large(&payload_len.to_string()));
                    }
                    self.pending = Some(PendingPayload {
                        payload_len,
                        header,
                    });
                }
            }
        }
    }

    fn decode_payload(
        &mut self,
        buf: &mut BytesMut,
        pending: PendingPayload,
    ) -> Result<Option<Decoded>, ProtocolError> {
        let consumed = match line::payload(buf, pending.payload_len) {
            Ok((rest, _)) => buf.len() - rest.len(),
            Err(nom::Err::Incomplete(_)) => {
                // The limit was checked on the header, so this reserve is bounded.
                buf.reserve(pending.payload_len + 2 - buf.len().min(pending.payload_len + 2));
                self.pending = Some(pending);
                return Ok(None);
            }
            Err(_) => {
                return Err(ProtocolError::new(
                    ErrorCode::BadFrame,
                    format!(
                        "payload of {} bytes is not followed by CRLF: the byte count is wrong",
                        pending.payload_len
                    ),
                ))
            }
        };
        let frame = buf.split_to(consumed).freeze();
        let payload = frame.slice(..pending.payload_len);
        Ok(Some(
            match pending.header.and_then(|header| header.complete(payload)) {
                Ok(request) => Decoded::Request(request),
                Err(error) => Decoded::Invalid(error),
            },
        ))
    }
}

impl Request {
    /// The request with its payload filled in, for the operations that carry one.
    pub(crate) fn with_payload(self, payload: Bytes) -> Request {
        match self {
            Request::Append {
                stream, expected, ..
            } => Request::Append {
                stream,
                expected,
                payload,
            },
            Request::Snap(snap) => Request::Snap(snap.with_payload(payload)),
            Request::Meta { stream, .. } => Request::Meta {
                stream,
                payload: Some(payload),
            },
            other => unreachable!("{} carries no payload", other.operation()),
        }
    }
}

/// The message names no length: how much of the line had arrived when the limit was noticed
/// depends on how the bytes were split, and the answer must not (the request decoder fuzz
/// target found the length differing between splits).
fn line_too_long() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::LineTooLong,
        format!("control line longer than {MAX_CONTROL_LINE_BYTES} bytes"),
    )
}

/// Outcome of parsing one control line.
pub(crate) enum LineOutcome {
    Done(Result<Request, ProtocolError>),
    /// The header parsed into its request with an empty payload, or the error to answer.
    NeedsPayload {
        payload_len: usize,
        header: Result<PayloadHeader, ProtocolError>,
    },
    /// Framing is lost (a byte count beyond `max_payload`): answer and close.
    Fatal(ProtocolError),
}

fn parse_line(line: &Bytes) -> LineOutcome {
    let mut args = Args::new(line);
    let name = args.next_token().unwrap_or_default();
    let name = name.to_ascii_uppercase();
    match after::split(&name, args) {
        None => parse_operation(&name, line, args),
        Some(Err(error)) => LineOutcome::Done(Err(error)),
        Some(Ok((position, rest))) => match parse_operation(&name, &rest, Args::new(&rest)) {
            LineOutcome::Done(result) => LineOutcome::Done(result.map(|request| Request::After {
                position,
                request: Box::new(request),
            })),
            LineOutcome::NeedsPayload {
                payload_len,
                header,
            } => LineOutcome::NeedsPayload {
                payload_len,
                header: header.map(|header| PayloadHeader::After {
                    position,
                    header: Box::new(header),
                }),
            },
            fatal @ LineOutcome::Fatal(_) => fatal,
        },
    }
}

/// Parses the operation `name` (upper-case) from its arguments `args` (on `line`).
fn parse_operation(name: &[u8], line: &Bytes, args: Args<'_>) -> LineOutcome {
    let done = |result| LineOutcome::Done(result);
    match name {
        b"APPEND" => append::parse(line, args),
        b"CONNECT" => done(session::parse_connect(args)),
        b"PING" => done(args.finish("PING").map(|_| Request::Ping)),
        b"PONG" => done(args.finish("PONG").map(|_| Request::Pong)),
        b"USE" => done(session::parse_use(args)),
        b"HELP" => done(args.finish("HELP").map(|_| Request::Help)),
        b"READ" => done(read::parse_read(args)),
        b"READALL" => done(read::parse_read_all(args)),
        b"READTYPES" => done(read::parse_read_types(args)),
        b"READTAGS" => done(read::parse_read_tags(args)),
        b"APPENDMULTI" => append_multi::parse(line, args),
        b"VERSION" => done(streams::parse_version(args)),
        b"EXISTS" => done(streams::parse_exists(args)),
        b"STREAMS" => done(streams::parse_streams(args)),
        b"DELETE" => done(streams::parse_delete(args)),
        b"ENCRYPT" => done(erasure::parse_encrypt(args)),
        b"SHRED" => done(erasure::parse_shred(args)),
        b"META" => meta::parse(line, args),
        b"SUB" => subscribe::parse_sub(args),
        b"UNSUB" => done(subscribe::parse_unsub(args)),
        b"ACK" => done(subscribe::parse_ack(args)),
        b"NACK" => done(subscribe::parse_nack(args)),
        b"PSUB" => done(psub::parse(args)),
        b"STATS" => done(stats::parse_stats(args)),
        b"CLUSTER" => done(cluster::parse_cluster(args)),
        b"SNAP" => snap::parse(line, args),
        b"AGG" => done(agg::parse(args)),
        b"SCAVENGE" => done(scavenge::parse(args)),
        _ => done(Err(ProtocolError::new(
            ErrorCode::UnknownCommand,
            format!("unknown command {} (try HELP)", snippet(name)),
        ))),
    }
}
