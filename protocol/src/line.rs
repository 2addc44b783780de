//! nom parsers shared by every operation: the control line and its arguments.
//!
//! Framing uses nom's streaming combinators, so a line or payload that has not fully arrived is
//! `Incomplete` (read more) rather than an error. Arguments are then tokenised with complete
//! parsers on the isolated line.

use nom::bytes::complete::{take_till1, take_while};
use nom::bytes::streaming;
use nom::IResult;
use nom::Parser;

use crate::error::ProtocolError;

/// Arguments are separated by runs of spaces or tabs.
pub fn is_separator(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// Streaming: the bytes of one control line up to (not including) its `\n`, and the length
/// consumed including the `\n`. A trailing `\r` is left on the line; see [`trim_line`].
pub fn control_line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, (line, _newline)) =
        (streaming::take_until("\n"), streaming::tag("\n")).parse(input)?;
    Ok((rest, line))
}

/// Streaming: a payload of exactly `len` bytes followed by CRLF (or a bare LF). Returns the
/// payload; `Err(Error)` means the bytes after the payload are not a line ending.
pub fn payload(input: &[u8], len: usize) -> IResult<&[u8], &[u8]> {
    let (rest, body) = streaming::take(len).parse(input)?;
    let (rest, _end) =
        nom::branch::alt((streaming::tag("\r\n"), streaming::tag("\n"))).parse(rest)?;
    Ok((rest, body))
}

/// Removes the `\r` of a CRLF line ending and separators at both ends.
pub fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    trim_separators(line)
}

fn trim_separators(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_separator(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_separator(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

fn token(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (input, _) = take_while(is_separator).parse(input)?;
    take_till1(is_separator).parse(input)
}

/// A cursor over the arguments of one control line.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a> {
    rest: &'a [u8],
}

impl<'a> Args<'a> {
    pub fn new(line: &'a [u8]) -> Args<'a> {
        Args { rest: line }
    }

    /// The next argument, if any.
    pub fn next_token(&mut self) -> Option<&'a [u8]> {
        match token(self.rest) {
            Ok((rest, tok)) => {
                self.rest = rest;
                Some(tok)
            }
            Err(_) => None,
        }
    }

    /// The next argument as UTF-8 text, or an error naming `what` when absent.
    pub fn required(&mut self, what: &str) -> Result<&'a str, ProtocolError> {
        let tok = self
            .next_token()
            .ok_or_else(|| ProtocolError::invalid_argument(format!("missing {what}")))?;
        utf8(tok, what)
    }

    /// The next argument as UTF-8 text, if present.
    pub fn optional(&mut self, what: &str) -> Result<Option<&'a str>, ProtocolError> {
        self.next_token().map(|tok| utf8(tok, what)).transpose()
    }

    /// Everything left on the line, separators at both ends removed.
    pub fn remainder(self) -> &'a [u8] {
        trim_separators(self.rest)
    }

    /// Fails if arguments are left over, so typos are not silently ignored.
    pub fn finish(self, operation: &str) -> Result<(), ProtocolError> {
        let rest = self.remainder();
        if rest.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::invalid_argument(format!(
                "too many arguments for {operation}: {}",
                snippet(rest)
            )))
        }
    }
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, ProtocolError> {
    std::str::from_utf8(bytes)
        .map_err(|_| ProtocolError::invalid_argument(format!("{what} is not valid UTF-8")))
}

/// Whether a character may not appear in a name (stream id, event type, pattern): whitespace,
/// control characters (Unicode `Cc`) and format characters (`Cf`: bidirectional overrides
/// such as U+202E, zero-width characters such as U+200B, the BOM). Format characters are
/// invisible or reorder text, so two ids that look alike could differ, or one could be shown
/// as another (the "Trojan Source" trick).
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_whitespace() || c.is_control() || is_format_character(c)
}

/// Unicode general category `Cf` (format), as of Unicode 15.1.
pub fn is_format_character(c: char) -> bool {
    const FORMAT_RANGES: [(u32, u32); 21] = [
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let code = c as u32;
    FORMAT_RANGES
        .iter()
        .any(|&(first, last)| (first..=last).contains(&code))
}

/// Parses an unsigned decimal argument.
pub fn parse_u64(text: &str, what: &str) -> Result<u64, ProtocolError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtocolError::invalid_argument(format!(
            "{what} must be a non-negative integer, got {}",
            snippet(text.as_bytes())
        )));
    }
    text.parse::<u64>()
        .map_err(|_| ProtocolError::invalid_argument(format!("{what} is too large: {text}")))
}

/// A short, printable excerpt of client bytes for error messages (never the whole input, and
/// never a quote or line break that would break the `-ERR` line).
pub fn snippet(bytes: &[u8]) -> String {
    const SNIPPET_BYTES_MAX: usize = 32;
    let shown = &bytes[..bytes.len().min(SNIPPET_BYTES_MAX)];
    let mut text: String = String::from_utf8_lossy(shown)
        .chars()
        .map(|c| if c.is_control() || c == '\'' { '?' } else { c })
        .collect();
    if bytes.len() > SNIPPET_BYTES_MAX {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_line_is_incomplete_until_newline() {
        assert!(matches!(
            control_line(b"PING\r"),
            Err(nom::Err::Incomplete(_))
        ));
        assert_eq!(control_line(b"PING\r\nX"), Ok((&b"X"[..], &b"PING\r"[..])));
        assert_eq!(control_line(b"PING\nX"), Ok((&b"X"[..], &b"PING"[..])));
    }

    #[test]
    fn payload_needs_its_terminator() {
        assert!(matches!(payload(b"abc", 3), Err(nom::Err::Incomplete(_))));
        assert!(matches!(payload(b"abc\r", 3), Err(nom::Err::Incomplete(_))));
        assert_eq!(payload(b"abc\r\n", 3), Ok((&b""[..], &b"abc"[..])));
        assert_eq!(payload(b"abc\n", 3), Ok((&b""[..], &b"abc"[..])));
        assert!(matches!(payload(b"abcd\r\n", 3), Err(nom::Err::Error(_))));
    }

    #[test]
    fn args_split_on_runs_of_spaces_and_tabs() {
        let mut args = Args::new(b"  a \t bb   ccc  ");
        assert_eq!(args.next_token(), Some(&b"a"[..]));
        assert_eq!(args.next_token(), Some(&b"bb"[..]));
        assert_eq!(args.remainder(), b"ccc");
    }

    #[test]
    fn format_and_control_characters_are_forbidden_in_names() {
        for c in [
            '\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}', '\u{00AD}', '\u{7F}', '\u{85}',
        ] {
            assert!(is_forbidden_in_name(c), "{c:?}");
        }
        for c in ['a', 'é', '日', '-', '$', '\u{1F600}'] {
            assert!(!is_forbidden_in_name(c), "{c:?}");
        }
    }

    #[test]
    fn snippet_is_bounded_and_quote_free() {
        assert_eq!(snippet(b"it's\r\n"), "it?s??");
        assert!(snippet(&[b'x'; 100]).chars().count() <= 33);
    }
}
