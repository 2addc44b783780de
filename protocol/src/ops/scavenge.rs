//! `SCAVENGE`: starts a scavenge of the current store (removing, from disk and every index,
//! the events deletes and stream limits hide) or shows how far it got.
//!
//! # Syntax
//! ```text
//! SCAVENGE␍␊                     → SCAVENGE <json>
//! SCAVENGE STATUS␍␊              → SCAVENGE <json>
//! ```
//! Both answer the store's scavenge state as a JSON object on the reply line:
//! `{"state":"none"|"running"|"done","runs":…,"started_us":…,"up_to_position":…,
//! "position":…,"events_removed":…,"bytes_reclaimed":…}`. `SCAVENGE` starts one unless one is
//! running (then it changes nothing) and answers the state once the start is committed; the
//! scavenge itself runs in the background.
//!
//! # Example
//! ```text
//! SCAVENGE
//! SCAVENGE {"state":"running","runs":1,"started_us":1700000000000000,"up_to_position":3,"position":0,"events_removed":0,"bytes_reclaimed":0}
//! ```

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::line::Args;
use crate::request::{put_line, Request};

pub(crate) fn parse(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let status = match args.optional("STATUS")? {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("STATUS") => true,
        Some(other) => {
            return Err(ProtocolError::invalid_argument(format!(
                "SCAVENGE takes nothing or STATUS, got {}",
                crate::line::snippet(other.as_bytes())
            )))
        }
    };
    args.finish("SCAVENGE")?;
    Ok(Request::Scavenge { status })
}

pub(crate) fn encode(status: bool, dst: &mut BytesMut) {
    put_line(
        dst,
        if status {
            "SCAVENGE STATUS"
        } else {
            "SCAVENGE"
        },
    );
}

#[cfg(test)]
mod tests {
    use crate::request::{Decoded, RequestDecoder};
    use crate::Request;

    fn decode(text: &str) -> Decoded {
        let mut buffer = bytes::BytesMut::from(text);
        RequestDecoder::default()
            .decode(&mut buffer)
            .expect("not fatal")
            .expect("a whole line")
    }

    #[test]
    fn parses_both_forms_and_refuses_others() {
        assert_eq!(
            decode("SCAVENGE\r\n"),
            Decoded::Request(Request::Scavenge { status: false })
        );
        assert_eq!(
            decode("scavenge status\r\n"),
            Decoded::Request(Request::Scavenge { status: true })
        );
        for bad in ["SCAVENGE NOW\r\n", "SCAVENGE STATUS 1\r\n"] {
            let Decoded::Invalid(error) = decode(bad) else {
                panic!("{bad:?} was accepted");
            };
            assert_eq!(error.code.as_str(), "invalid_argument", "{bad:?}");
        }
    }
}
