//! The `after <position>` option of `READ`, `READALL`, `READTYPES`, `READTAGS`, `AGG` and
//! `SUB`.
//!
//! # Syntax
//! ```text
//! READ <stream> <from_version> <count> [forward|backward] after <position>␍␊
//! READALL <from_position> <count> [forward|backward] after <position>␍␊
//! READTYPES <types> <from_position> <count> after <position>␍␊
//! READTAGS <tags> <from_position> <count> after <position>␍␊
//! AGG <stream> [options] after <position>␍␊
//! SUB <sid> <type> <selector> [<name>] after <position>␍␊
//! SUB <sid> <#bytes> after <position>␍␊<json options>␍␊
//! ```
//! The node answers only once it has applied `$all` position `<position>` (the
//! `last_position` of an `APPENDED` the client got, from any node), so a client reads its own
//! writes on any node without a round to the leader.
//!
//! The option is taken off the line here, before the operation's own parser sees the rest, so
//! the operations' parsers know nothing of it: the request is wrapped in
//! [`Request::After`]. It may stand anywhere after the operation's required arguments. A word
//! `after` in a required argument's place (a stream id, a selector) is that argument, and a
//! lone trailing `after` is left to the operation (a persistent subscription may be named
//! `after`).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::line::{parse_u64, Args};
use crate::request::Request;

/// The option's keyword.
const KEYWORD: &str = "after";

/// How many arguments of `operation` (upper-case) come before options may; `None`: the
/// operation takes no `after`.
fn required_args(operation: &[u8], tokens: &[&[u8]]) -> Option<usize> {
    match operation {
        b"READ" | b"READTYPES" | b"READTAGS" => Some(3),
        b"READALL" => Some(2),
        b"AGG" => Some(1),
        // The full form's second argument is the payload's byte count.
        b"SUB" => match tokens.get(1) {
            Some(second) if !second.is_empty() && second.iter().all(u8::is_ascii_digit) => Some(2),
            _ => Some(3),
        },
        _ => None,
    }
}

/// Takes `after <position>` off the arguments of `operation`: `None` when the operation
/// takes no such option or the line has none; else the position (or why it is malformed)
/// and the line's arguments without the option.
pub(crate) fn split(
    operation: &[u8],
    mut args: Args<'_>,
) -> Option<Result<(u64, Bytes), ProtocolError>> {
    // Most lines have no `after`: they cost one scan, no allocation.
    let rest = args.remainder();
    let keyword = KEYWORD.as_bytes();
    if !rest
        .windows(keyword.len())
        .any(|window| window.eq_ignore_ascii_case(keyword))
    {
        return None;
    }
    let mut tokens = Vec::new();
    while let Some(token) = args.next_token() {
        tokens.push(token);
    }
    let first_option = required_args(operation, &tokens)?;
    let at = (first_option..tokens.len().saturating_sub(1))
        .find(|&i| tokens[i].eq_ignore_ascii_case(KEYWORD.as_bytes()))?;
    let position = std::str::from_utf8(tokens[at + 1])
        .map_err(|_| ProtocolError::invalid_argument("after: position is not valid UTF-8"))
        .and_then(|text| parse_u64(text, "the position after `after`"));
    Some(position.map(|position| {
        let mut rest = BytesMut::new();
        for (i, token) in tokens.iter().enumerate() {
            if i == at || i == at + 1 {
                continue;
            }
            if !rest.is_empty() {
                rest.put_u8(b' ');
            }
            rest.put_slice(token);
        }
        (position, rest.freeze())
    }))
}

/// Encodes `request` with ` after <position>` at the end of its control line (before any
/// payload).
pub(crate) fn encode(position: u64, request: &Request, dst: &mut BytesMut) {
    let mut inner = BytesMut::new();
    request.encode(&mut inner);
    let line_end = inner
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .expect("every request ends its control line with CRLF");
    dst.reserve(inner.len() + 32);
    dst.put_slice(&inner[..line_end]);
    dst.put_slice(format!(" {KEYWORD} {position}").as_bytes());
    dst.put_slice(&inner[line_end..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_line(operation: &str, line: &str) -> Option<Result<(u64, String), ProtocolError>> {
        split(operation.as_bytes(), Args::new(line.as_bytes())).map(|result| {
            result.map(|(position, rest)| (position, String::from_utf8(rest.to_vec()).unwrap()))
        })
    }

    #[test]
    fn the_option_is_found_after_the_required_arguments_only() {
        assert_eq!(
            split_line("READ", "s 0 10 after 7").unwrap().unwrap(),
            (7, "s 0 10".into())
        );
        assert_eq!(
            split_line("READ", "s 0 10 after 7 backward")
                .unwrap()
                .unwrap(),
            (7, "s 0 10 backward".into())
        );
        assert_eq!(
            split_line("AGG", "after after 3 raw").unwrap().unwrap(),
            (3, "after raw".into())
        );
        assert!(split_line("READ", "after 0 10").is_none(), "a stream id");
        assert!(split_line("READ", "s 0 10").is_none());
        assert!(split_line("VERSION", "s after 3").is_none());
        // SUB: a selector or a name `after` stays what it is.
        assert!(split_line("SUB", "s1 stream after").is_none());
        assert!(split_line("SUB", "s1 stream x after").is_none());
        assert_eq!(
            split_line("SUB", "s1 stream after after 2")
                .unwrap()
                .unwrap(),
            (2, "s1 stream after".into())
        );
        assert_eq!(
            split_line("SUB", "s1 87 after 2").unwrap().unwrap(),
            (2, "s1 87".into())
        );
        assert!(split_line("READ", "s 0 10 after x").unwrap().is_err());
        assert!(split_line("READ", "s 0 10 AFTER -1").unwrap().is_err());
    }
}
