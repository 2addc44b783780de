//! Crypto-shredding: `ENCRYPT`, `SHRED`.
//!
//! # Syntax
//! ```text
//! ENCRYPT <stream>␍␊   → +OK    (gives a new stream its own data key)
//! SHRED <stream>␍␊     → +OK    (destroys it: the stream's data reads back as null)
//! ```
//! `ENCRYPT` is for a stream that has never held an event; repeating it is a no-op. `SHRED`
//! is for a stream made with `ENCRYPT`; repeating it is a no-op too.

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::line::Args;
use crate::ops::streams::validate_stream_id;
use crate::request::{put_line, Request};

pub(crate) fn parse_encrypt(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let stream = validate_stream_id(args.required("stream id")?)?;
    args.finish("ENCRYPT")?;
    Ok(Request::Encrypt { stream })
}

pub(crate) fn parse_shred(mut args: Args<'_>) -> Result<Request, ProtocolError> {
    let stream = validate_stream_id(args.required("stream id")?)?;
    args.finish("SHRED")?;
    Ok(Request::Shred { stream })
}

pub(crate) fn encode(request: &Request, dst: &mut BytesMut) {
    let line = match request {
        Request::Encrypt { stream } => format!("ENCRYPT {stream}"),
        Request::Shred { stream } => format!("SHRED {stream}"),
        other => unreachable!("erasure::encode called with {}", other.operation()),
    };
    put_line(dst, &line);
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use crate::request::{Decoded, Request, RequestDecoder};

    fn decode(line: &str) -> Decoded {
        let mut buf = BytesMut::from(line);
        RequestDecoder::default()
            .decode(&mut buf)
            .expect("not fatal")
            .expect("a whole line")
    }

    #[test]
    fn encrypt_and_shred_round_trip() {
        for request in [
            Request::Encrypt {
                stream: "user-1".into(),
            },
            Request::Shred {
                stream: "user-1".into(),
            },
        ] {
            let mut wire = BytesMut::new();
            request.encode(&mut wire);
            let text = String::from_utf8(wire.to_vec()).unwrap();
            assert_eq!(decode(&text), Decoded::Request(request));
        }
    }

    #[test]
    fn a_missing_extra_or_reserved_stream_is_refused() {
        for line in [
            "ENCRYPT\r\n",
            "SHRED\r\n",
            "ENCRYPT a b\r\n",
            "SHRED $all\r\n",
        ] {
            assert!(
                matches!(decode(line), Decoded::Invalid(_)),
                "{line:?} should be refused"
            );
        }
    }
}
