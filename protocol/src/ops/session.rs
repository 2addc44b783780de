//! Session operations: `CONNECT`, `PING`, `PONG`, `USE`, `HELP` (and the server's `INFO`).
//!
//! # Syntax
//! ```text
//! INFO <json>␍␊                 server → client, once, on connect
//! CONNECT <json>␍␊              → +OK
//! PING␍␊                        → PONG    (either side may send it)
//! PONG␍␊                        → nothing (answers the server's PING)
//! USE <store>␍␊                 → +OK
//! HELP␍␊                        → HELP <#bytes>␍␊<text>␍␊
//! ```
//! `CONNECT`'s JSON object may carry `name`, `lang`, `version` and `store` (which selects the
//! store like `USE`); unknown fields are ignored so newer clients work with older servers.

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;
use crate::limits::MAX_STORE_NAME_BYTES;
use crate::line::{snippet, Args};
use crate::request::{put_line, Request};

/// The JSON object a client sends with `CONNECT`. Its `Debug` never shows `pass` or `token`
/// (requests are logged).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// A user name, with `pass`, when the server requires authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// A token, instead of `user` and `pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl ConnectOptions {
    /// Whether the client sent any credential.
    pub fn has_credentials(&self) -> bool {
        self.user.is_some() || self.pass.is_some() || self.token.is_some()
    }
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("ConnectOptions")
            .field("name", &self.name)
            .field("lang", &self.lang)
            .field("version", &self.version)
            .field("store", &self.store)
            .field("user", &self.user)
            .field("pass", &redacted(&self.pass))
            .field("token", &redacted(&self.token))
            .finish()
    }
}

pub(crate) fn parse_connect(args: Args<'_>) -> Result<Request, ProtocolError> {
    let json = args.remainder();
    if json.is_empty() {
        return Ok(Request::Connect(ConnectOptions::default()));
    }
    let options: ConnectOptions = serde_json::from_slice(json).map_err(|error| {
        ProtocolError::invalid_json(format!("CONNECT needs a JSON object: {error}"))
    })?;
    if let Some(store) = &options.store {
        validate_store_name(store)?;
    }
    Ok(Request::Connect(options))
}

pub(crate) fn encode_connect(options: &ConnectOptions, dst: &mut BytesMut) {
    let json = serde_json::to_string(options).expect("ConnectOptions always serialises");
    put_line(dst, &format!("CONNECT {json}"));
}

pub(crate) fn parse_use(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let store = args.required("store name")?;
    validate_store_name(store)?;
    let store = store.to_owned();
    args.finish("USE")?;
    Ok(Request::Use { store })
}

/// A store name is 1 to 64 bytes of ASCII letters, digits, `_` and `-` (it names a directory).
pub fn validate_store_name(name: &str) -> Result<(), ProtocolError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_STORE_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::invalid_argument(format!(
            "store name must be 1 to {MAX_STORE_NAME_BYTES} letters, digits, _ or -, got {}",
            snippet(name.as_bytes())
        )))
    }
}

/// The text `HELP` replies with.
pub const HELP_TEXT: &str = "\
esdb commands (full spec: protocol/PROTOCOL.md)
  APPEND <stream> <expected> <json>        append events (JSON on the same line)
  APPEND <stream> <expected> <#bytes>      append events (payload on the next line)
      <expected>: any | no_stream | exists | <version>
      payload: {\"event_type\":\"T\",\"data\":{...},\"tags\":[...]} or an array of them
  APPENDMULTI <json>|<#bytes>  {\"parts\":[{\"stream\",\"expected\",\"events\"}...],\"condition\":{...}}
  READ <stream> <from_version> <count> [forward|backward]
  READALL <from_position> <count> [forward|backward]
      from_time <RFC 3339 | epoch_us> in place of a version or position
  READTYPES <type>[,<type>...] <from_position> <count>    READTAGS <tag>[,<tag>...] <from> <count>
  VERSION <stream>        EXISTS <stream>        DELETE <stream> [<expected>] [hard]
  META <stream> [<json>]  get or set {\"max_count\":n,\"max_age_ms\":n,\"truncate_before\":v}
  STREAMS [<after>] [<count>]    ENCRYPT <stream>    SHRED <stream>  (crypto-shredding)
  SNAP SAVE <stream> <version> <json>      save {\"data\":...,\"metadata\":{...}}
  SNAP LOAD|DELETE|EXISTS <stream> [<version>]      SNAP LIST <stream>
  AGG <stream> [from_snapshot] [foldr] [raw]    fold the stream's data into its state
  SUB <sid> stream|event_type|event_pattern|event_payload <selector> [<name>]
  UNSUB <sid>    ACK <sid> <positions>    NACK <sid> retry|skip|park <positions>
  PSUB LIST|GET|EXISTS|DELETE|PARKED|REPLAY [<name>]
  USE <store>    CONNECT <json>    PING    HELP    STATS    CLUSTER    SCAVENGE [STATUS]";
