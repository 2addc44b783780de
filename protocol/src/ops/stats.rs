//! `STATS`: per-store counts, for operators.
//!
//! # Syntax
//! ```text
//! STATS␍␊                        → STATS <#bytes>␍␊<json>␍␊
//! ```
//! The JSON is `{"stores":{"<name>":{"streams":…,"events":…,"last_position":…,
//! "subscriptions":…}}}`, one entry per store the server serves (the same as HTTP `/stats`).

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::line::Args;
use crate::request::{put_line, Request};

pub(crate) fn parse_stats(args: Args<'_>) -> Result<Request, ProtocolError> {
    args.finish("STATS").map(|_| Request::Stats)
}

pub(crate) fn encode_stats(dst: &mut BytesMut) {
    put_line(dst, "STATS");
}
