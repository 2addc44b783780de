//! `RequestDecoder` through the crate's public API: every operation, fed whole, byte by byte and
//! split at every offset; malformed requests that keep the connection; fatal framing errors; and
//! property tests over random input and random splits.

mod support;

use bytes::{Bytes, BytesMut};
use esdb_protocol::limits::{
    MAX_CONTROL_LINE_BYTES, MAX_PAYLOAD_BYTES, MAX_READ_COUNT, MAX_STREAMS_PAGE,
    MAX_STREAM_ID_BYTES, MAX_TYPES_PER_READ,
};
use esdb_protocol::ops::session::ConnectOptions;
use esdb_protocol::{
    Decoded, Direction, ErrorCode, ExpectedVersion, ProtocolError, ReadStart, Request,
    RequestDecoder,
};
use proptest::prelude::*;
use support::{byte_by_byte, show, split_at, split_at_all, whole, Run};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fresh decoder, as the `decode` closure the feeding strategies take.
fn decoder() -> impl FnMut(&mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
    let mut decoder = RequestDecoder::new();
    move |buf: &mut BytesMut| decoder.decode(buf)
}

/// Feeds `input` whole, byte by byte and split in two at every offset; each run must decode
/// exactly `expected`, raise no error and consume every byte.
fn assert_decodes(input: &[u8], expected: &[Decoded]) {
    let check = |how: &str, run: Run<Decoded>| {
        assert_eq!(run.error, None, "{how}: {}", show(input));
        assert_eq!(run.frames, expected, "{how}: {}", show(input));
        assert!(
            run.leftover.is_empty(),
            "{how}: {} left {}",
            show(input),
            show(&run.leftover)
        );
    };
    check("whole", whole(decoder(), input));
    check("byte by byte", byte_by_byte(decoder(), input));
    for at in 0..=input.len() {
        check(&format!("split at {at}"), split_at(decoder(), input, at));
    }
}

/// Like [`assert_decodes`], but each run must end in a fatal error with `code` after decoding
/// exactly `before`.
fn assert_fatal(input: &[u8], before: &[Decoded], code: ErrorCode) {
    let check = |how: &str, run: Run<Decoded>| {
        assert_eq!(run.frames, before, "{how}: {}", show(input));
        let error = run
            .error
            .unwrap_or_else(|| panic!("{how}: no error for {}", show(input)));
        assert_eq!(error.code, code, "{how}: {} gave {error}", show(input));
        assert!(error.code.closes_connection(), "{code} must close");
    };
    check("whole", whole(decoder(), input));
    check("byte by byte", byte_by_byte(decoder(), input));
    for at in 0..=input.len() {
        check(&format!("split at {at}"), split_at(decoder(), input, at));
    }
}

/// `<head> <#bytes>\r\n<payload>\r\n`
fn sized(head: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{head} {}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn encoded(request: &Request) -> Vec<u8> {
    let mut dst = BytesMut::new();
    request.encode(&mut dst);
    dst.to_vec()
}

fn s(text: &str) -> String {
    text.to_owned()
}

fn read(stream: &str, from: ReadStart, count: u64, direction: Direction) -> Request {
    Request::Read {
        stream: s(stream),
        from,
        count,
        direction,
    }
}

fn append(stream: &str, expected: ExpectedVersion, payload: &[u8]) -> Request {
    Request::Append {
        stream: s(stream),
        expected,
        payload: Bytes::copy_from_slice(payload),
    }
}

const EVENTS: &[u8] =
    b"[{\"event_type\":\"A\",\"data\":1},\r\n {\"event_type\":\"B\",\"data\":\"x\\ny\"}]";

/// Every operation in its usual spelling and in the variants a person or an old client may
/// type, with the request each must decode to.
fn valid_cases() -> Vec<(Vec<u8>, Request)> {
    use Direction::{Backward, Forward};
    use ExpectedVersion::{Any, Exact, Exists, NoStream};
    use ReadStart::{At, End};
    let long_stream = "s".repeat(MAX_STREAM_ID_BYTES);
    vec![
        // CONNECT, with and without its JSON.
        (
            br#"CONNECT {"name":"cli","lang":"rust","version":"0.1","store":"main"}"#
                .to_vec()
                .into_iter()
                .chain(*b"\r\n")
                .collect(),
            Request::Connect(ConnectOptions {
                name: Some(s("cli")),
                lang: Some(s("rust")),
                version: Some(s("0.1")),
                store: Some(s("main")),
                ..ConnectOptions::default()
            }),
        ),
        (
            b"CONNECT\r\n".to_vec(),
            Request::Connect(ConnectOptions::default()),
        ),
        (
            b"CONNECT {}\r\n".to_vec(),
            Request::Connect(ConnectOptions::default()),
        ),
        (
            b"connect \t{\"name\": \"a b\", \"future_field\": [1]}  \n".to_vec(),
            Request::Connect(ConnectOptions {
                name: Some(s("a b")),
                ..ConnectOptions::default()
            }),
        ),
        // Session.
        (b"PING\r\n".to_vec(), Request::Ping),
        (b"ping\n".to_vec(), Request::Ping),
        (b" \t PING \t \r\n".to_vec(), Request::Ping),
        (b"PONG\r\n".to_vec(), Request::Pong),
        (b"Pong\n".to_vec(), Request::Pong),
        (b"USE main\r\n".to_vec(), Request::Use { store: s("main") }),
        (
            b"use\t\tmy_store-2 \n".to_vec(),
            Request::Use {
                store: s("my_store-2"),
            },
        ),
        (b"HELP\r\n".to_vec(), Request::Help),
        (b"help\n".to_vec(), Request::Help),
        // APPEND with a sized payload (opaque: it may hold CRLF), and inline.
        (
            sized("APPEND user-1 no_stream", EVENTS),
            append("user-1", NoStream, EVENTS),
        ),
        (
            sized("append\tuser-1  any\t", EVENTS),
            append("user-1", Any, EVENTS),
        ),
        (
            b"APPEND s exists 2\n{}\n".to_vec(),
            append("s", Exists, b"{}"),
        ),
        (b"APPEND s 7 0\r\n\r\n".to_vec(), append("s", Exact(7), b"")),
        (
            sized("APPEND s -2", b"PING\r\n"),
            append("s", Any, b"PING\r\n"),
        ),
        (
            b"APPEND user-1 3 {\"event_type\":\"A\",\"data\":{\"x\":\"a  b\"}}\r\n".to_vec(),
            append(
                "user-1",
                Exact(3),
                b"{\"event_type\":\"A\",\"data\":{\"x\":\"a  b\"}}",
            ),
        ),
        (
            b"append  user-1\t-1   [{\"event_type\":\"A\",\"data\":null}] \t\n".to_vec(),
            append(
                "user-1",
                NoStream,
                b"[{\"event_type\":\"A\",\"data\":null}]",
            ),
        ),
        // READ forward (the default), backward, from the end.
        (
            b"READ user-1 0 10\r\n".to_vec(),
            read("user-1", At(0), 10, Forward),
        ),
        (
            b"READ user-1 5 10 forward\r\n".to_vec(),
            read("user-1", At(5), 10, Forward),
        ),
        (
            b"read user-1 5 10 FWD\n".to_vec(),
            read("user-1", At(5), 10, Forward),
        ),
        (
            b"READ user-1 9 3 backward\r\n".to_vec(),
            read("user-1", At(9), 3, Backward),
        ),
        (
            b"READ user-1 end 20 backward\r\n".to_vec(),
            read("user-1", End, 20, Backward),
        ),
        (
            b"Read\tuser-1 \t -1   20\t\tbwd\n".to_vec(),
            read("user-1", End, 20, Backward),
        ),
        (
            b"READ user-1 END 1\r\n".to_vec(),
            read("user-1", End, 1, Forward),
        ),
        (
            b"READ user-1 18446744073709551615 99999999\r\n".to_vec(),
            read("user-1", At(u64::MAX), MAX_READ_COUNT, Forward),
        ),
        (
            format!("READ {long_stream} 0 1\r\n").into_bytes(),
            read(&long_stream, At(0), 1, Forward),
        ),
        // READALL.
        (
            b"READALL 0 100\r\n".to_vec(),
            Request::ReadAll {
                from: At(0),
                count: 100,
                direction: Forward,
            },
        ),
        (
            b"readall end 5 backward\n".to_vec(),
            Request::ReadAll {
                from: End,
                count: 5,
                direction: Backward,
            },
        ),
        // READTYPES with several types (duplicates dropped, order kept).
        (
            b"READTYPES UserCreated,UserRenamed,UserDeleted 7 50\r\n".to_vec(),
            Request::ReadTypes {
                types: vec![s("UserCreated"), s("UserRenamed"), s("UserDeleted")],
                from_position: 7,
                count: 50,
            },
        ),
        (
            b"readtypes\tB,A,B \t0  1\n".to_vec(),
            Request::ReadTypes {
                types: vec![s("B"), s("A")],
                from_position: 0,
                count: 1,
            },
        ),
        // VERSION, EXISTS.
        (
            b"VERSION user-1\r\n".to_vec(),
            Request::Version {
                stream: s("user-1"),
            },
        ),
        (
            b"version\tuser-1\n".to_vec(),
            Request::Version {
                stream: s("user-1"),
            },
        ),
        (
            b"EXISTS user-1\r\n".to_vec(),
            Request::Exists {
                stream: s("user-1"),
            },
        ),
        (
            b"exists  a$b\n".to_vec(),
            Request::Exists { stream: s("a$b") },
        ),
        // STREAMS with no, one and two arguments.
        (
            b"STREAMS\r\n".to_vec(),
            Request::Streams {
                after: None,
                count: MAX_STREAMS_PAGE,
            },
        ),
        (
            b"STREAMS - 10\r\n".to_vec(),
            Request::Streams {
                after: None,
                count: 10,
            },
        ),
        (
            b"streams user-1\n".to_vec(),
            Request::Streams {
                after: Some(s("user-1")),
                count: MAX_STREAMS_PAGE,
            },
        ),
        (
            b"STREAMS user-1\t 5\r\n".to_vec(),
            Request::Streams {
                after: Some(s("user-1")),
                count: 5,
            },
        ),
        (
            b"STREAMS - 123456789\r\n".to_vec(),
            Request::Streams {
                after: None,
                count: MAX_STREAMS_PAGE,
            },
        ),
        // DELETE with and without an expected version.
        (
            b"DELETE user-1\r\n".to_vec(),
            Request::Delete {
                stream: s("user-1"),
                expected: Any,
                hard: false,
            },
        ),
        (
            b"DELETE user-1 4\r\n".to_vec(),
            Request::Delete {
                stream: s("user-1"),
                expected: Exact(4),
                hard: false,
            },
        ),
        (
            b"delete\tuser-1\t\tNO_STREAM\n".to_vec(),
            Request::Delete {
                stream: s("user-1"),
                expected: NoStream,
                hard: false,
            },
        ),
        (
            b"DELETE user-1 -4\r\n".to_vec(),
            Request::Delete {
                stream: s("user-1"),
                expected: Exists,
                hard: false,
            },
        ),
        // Hard delete, with and without an expected version.
        (
            b"DELETE user-1 hard\r\n".to_vec(),
            Request::Delete {
                stream: s("user-1"),
                expected: Any,
                hard: true,
            },
        ),
        (
            b"DELETE user-1 4 HARD\r\n".to_vec(),
            Request::Delete {
                stream: s("user-1"),
                expected: Exact(4),
                hard: true,
            },
        ),
        // META: get, inline set, sized set.
        (
            b"META user-1\r\n".to_vec(),
            Request::Meta {
                stream: s("user-1"),
                payload: None,
            },
        ),
        (
            b"meta user-1 {\"max_count\": 3}\r\n".to_vec(),
            Request::Meta {
                stream: s("user-1"),
                payload: Some(Bytes::from_static(b"{\"max_count\": 3}")),
            },
        ),
        (
            b"META user-1 2\r\n{}\r\n".to_vec(),
            Request::Meta {
                stream: s("user-1"),
                payload: Some(Bytes::from_static(b"{}")),
            },
        ),
        // from_time, as epoch microseconds and as RFC 3339.
        (
            b"READ user-1 from_time 1796230800000000 10\r\n".to_vec(),
            read(
                "user-1",
                ReadStart::Time(1_796_230_800_000_000),
                10,
                Direction::Forward,
            ),
        ),
        (
            b"READALL FROM_TIME 2026-12-02T18:00:00+01:00 5 backward\r\n".to_vec(),
            Request::ReadAll {
                from: ReadStart::Time(1_796_230_800_000_000),
                count: 5,
                direction: Direction::Backward,
            },
        ),
        // READTAGS, like READTYPES.
        (
            b"READTAGS course:c1,student:s1,course:c1 3 20\r\n".to_vec(),
            Request::ReadTags {
                tags: vec![s("course:c1"), s("student:s1")],
                from_position: 3,
                count: 20,
            },
        ),
        // APPENDMULTI, sized and inline: parsed whole, compared by its body.
        (sized("APPENDMULTI", MULTI), append_multi(MULTI)),
        (cat(&[b"appendmulti ", MULTI, b"\r\n"]), append_multi(MULTI)),
    ]
}

const MULTI: &[u8] = br#"{"parts":[{"stream":"a","expected":"no_stream","events":[{"event_type":"A","data":1,"tags":["t"]}]}],"condition":{"query":[{"tags":["t"]}],"after":3}}"#;

fn append_multi(body: &[u8]) -> Request {
    esdb_protocol::ops::append_multi::parse_body(Bytes::copy_from_slice(body)).unwrap()
}

/// Malformed requests the decoder consumes whole and answers with an error code, the
/// connection staying usable.
fn invalid_cases() -> Vec<(Vec<u8>, ErrorCode)> {
    use ErrorCode::{InvalidArgument, InvalidJson, UnknownCommand};
    let too_long_stream = "s".repeat(MAX_STREAM_ID_BYTES + 1);
    let too_many_types = (0..=MAX_TYPES_PER_READ)
        .map(|i| format!("T{i}"))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        // Unknown commands.
        (b"FROB x\r\n".to_vec(), UnknownCommand),
        (b"PINGPONG\r\n".to_vec(), UnknownCommand),
        (b"\xff\xfe\r\n".to_vec(), UnknownCommand),
        (b"PUB foo 1\n".to_vec(), UnknownCommand),
        // Missing arguments.
        (b"USE\r\n".to_vec(), InvalidArgument),
        (b"APPEND\r\n".to_vec(), InvalidArgument),
        (b"APPEND s\r\n".to_vec(), InvalidArgument),
        (b"APPEND s any\r\n".to_vec(), InvalidArgument),
        (b"APPEND s any   \t\r\n".to_vec(), InvalidArgument),
        // Without an expected version the byte count is taken for it, and the payload is missing.
        (b"APPEND s 6\r\n".to_vec(), InvalidArgument),
        (b"READ\r\n".to_vec(), InvalidArgument),
        (b"READ s\r\n".to_vec(), InvalidArgument),
        (b"READ s 0\r\n".to_vec(), InvalidArgument),
        (b"READALL\r\n".to_vec(), InvalidArgument),
        (b"READALL 0\r\n".to_vec(), InvalidArgument),
        (b"READTYPES\r\n".to_vec(), InvalidArgument),
        (b"READTYPES A 0\r\n".to_vec(), InvalidArgument),
        (b"VERSION\r\n".to_vec(), InvalidArgument),
        (b"EXISTS \t \r\n".to_vec(), InvalidArgument),
        (b"DELETE\r\n".to_vec(), InvalidArgument),
        // Too many arguments.
        (b"PING now\r\n".to_vec(), InvalidArgument),
        (b"PONG x\r\n".to_vec(), InvalidArgument),
        (b"HELP me\r\n".to_vec(), InvalidArgument),
        (b"USE a b\r\n".to_vec(), InvalidArgument),
        (b"READ s 0 10 forward x\r\n".to_vec(), InvalidArgument),
        (b"READALL 0 10 backward x\r\n".to_vec(), InvalidArgument),
        (b"READTYPES A 0 10 x\r\n".to_vec(), InvalidArgument),
        (b"VERSION s t\r\n".to_vec(), InvalidArgument),
        (b"EXISTS s t\r\n".to_vec(), InvalidArgument),
        (b"STREAMS - 10 x\r\n".to_vec(), InvalidArgument),
        (b"DELETE s any x\r\n".to_vec(), InvalidArgument),
        // Bad expected versions.
        (
            b"APPEND s maybe {\"event_type\":\"A\",\"data\":1}\r\n".to_vec(),
            InvalidArgument,
        ),
        (b"APPEND s -3 {}\r\n".to_vec(), InvalidArgument),
        (b"DELETE s -5\r\n".to_vec(), InvalidArgument),
        (b"DELETE s 1.5\r\n".to_vec(), InvalidArgument),
        (
            b"DELETE s 99999999999999999999999\r\n".to_vec(),
            InvalidArgument,
        ),
        // Bad stream ids: reserved `$` prefix, over 255 bytes, not UTF-8.
        (b"VERSION $all\r\n".to_vec(), InvalidArgument),
        (b"READ $all 0 10\r\n".to_vec(), InvalidArgument),
        (b"APPEND $x any {}\r\n".to_vec(), InvalidArgument),
        (b"STREAMS $x 10\r\n".to_vec(), InvalidArgument),
        (
            format!("EXISTS {too_long_stream}\r\n").into_bytes(),
            InvalidArgument,
        ),
        (
            format!("DELETE {too_long_stream} any\r\n").into_bytes(),
            InvalidArgument,
        ),
        (b"VERSION \xc3\x28\r\n".to_vec(), InvalidArgument),
        // Bad counts and positions.
        (b"READ s 0 ten\r\n".to_vec(), InvalidArgument),
        (b"READ s 0 -1\r\n".to_vec(), InvalidArgument),
        (b"READ s 0 +5\r\n".to_vec(), InvalidArgument),
        (
            b"READ s 0 99999999999999999999999\r\n".to_vec(),
            InvalidArgument,
        ),
        (b"READ s x 10\r\n".to_vec(), InvalidArgument),
        (b"READALL -2 10\r\n".to_vec(), InvalidArgument),
        (b"READTYPES A end 10\r\n".to_vec(), InvalidArgument),
        (b"READTYPES A 0 x\r\n".to_vec(), InvalidArgument),
        (b"STREAMS - many\r\n".to_vec(), InvalidArgument),
        // Bad directions.
        (b"READ s 0 10 sideways\r\n".to_vec(), InvalidArgument),
        (b"READALL 0 10 up\n".to_vec(), InvalidArgument),
        // Bad event types, store names, CONNECT JSON.
        (b"READTYPES A,,B 0 10\r\n".to_vec(), InvalidArgument),
        (b"READTAGS a,,b 0 10\r\n".to_vec(), InvalidArgument),
        (b"READTAGS t 0\r\n".to_vec(), InvalidArgument),
        (b"APPENDMULTI\r\n".to_vec(), InvalidArgument),
        (b"APPENDMULTI {\"parts\":1}\r\n".to_vec(), InvalidJson),
        (sized("APPENDMULTI", b"[]"), InvalidJson),
        (
            format!("READTYPES {too_many_types} 0 10\r\n").into_bytes(),
            InvalidArgument,
        ),
        (b"USE bad/name\r\n".to_vec(), InvalidArgument),
        (
            b"CONNECT {\"store\":\"../etc\"}\r\n".to_vec(),
            InvalidArgument,
        ),
        (b"CONNECT {not json}\r\n".to_vec(), InvalidJson),
        (b"CONNECT [1]\r\n".to_vec(), InvalidJson),
        // A sized APPEND with a bad header: the payload, which here looks like requests, must
        // be skipped whole.
        (
            sized("APPEND $bad any", b"PING\r\nHELP\r\n"),
            InvalidArgument,
        ),
        (sized("APPEND s maybe", b"PING\r\n"), InvalidArgument),
        (b"APPEND $bad any 0\r\n\r\n".to_vec(), InvalidArgument),
        (b"APPEND $bad any 4\nPING\n".to_vec(), InvalidArgument),
    ]
}

/// The request sent after each malformed one, to show the connection carries on.
const NEXT: &[u8] = b"VERSION next\r\n";

fn next() -> Decoded {
    Decoded::Request(Request::Version { stream: s("next") })
}

// ---------------------------------------------------------------------------------------------
// 1. Every operation, every way of feeding it
// ---------------------------------------------------------------------------------------------

#[test]
fn every_operation_decodes_the_same_however_it_is_fed() {
    for (input, request) in valid_cases() {
        assert_decodes(&input, &[Decoded::Request(request)]);
    }
}

#[test]
fn encoded_requests_decode_to_themselves() {
    for (_, request) in valid_cases() {
        assert_decodes(&encoded(&request), &[Decoded::Request(request)]);
    }
}

#[test]
fn a_pipeline_of_every_operation_decodes_in_order() {
    let cases = valid_cases();
    let input: Vec<u8> = cases.iter().flat_map(|(bytes, _)| bytes.clone()).collect();
    let expected: Vec<Decoded> = cases
        .into_iter()
        .map(|(_, request)| Decoded::Request(request))
        .collect();
    let run = byte_by_byte(decoder(), &input);
    assert_eq!(run.error, None);
    assert_eq!(run.frames, expected);
    assert!(run.leftover.is_empty());
    let run = whole(decoder(), &input);
    assert_eq!(run.error, None);
    assert_eq!(run.frames, expected);
    assert!(run.leftover.is_empty());
}

#[test]
fn blank_lines_are_ignored() {
    assert_decodes(b"\r\n\n \t\r\n\t\n", &[]);
    assert_decodes(
        b"\r\n\nPING\r\n\r\n  \n\t\r\nUSE main\n\n",
        &[
            Decoded::Request(Request::Ping),
            Decoded::Request(Request::Use { store: s("main") }),
        ],
    );
    // A blank line before a sized APPEND, and one right after its payload.
    assert_decodes(
        b"\nAPPEND s any 2\r\n{}\r\n\r\nPONG\r\n",
        &[
            Decoded::Request(append("s", ExpectedVersion::Any, b"{}")),
            Decoded::Request(Request::Pong),
        ],
    );
}

#[test]
fn nothing_is_decoded_before_the_line_ending_arrives() {
    let mut decoder = RequestDecoder::new();
    let mut buf = BytesMut::from(&b"PING\r"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], b"PING\r", "a partial line is left in the buffer");
    buf.extend_from_slice(b"\nPI");
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Decoded::Request(Request::Ping)))
    );
    assert_eq!(&buf[..], b"PI", "only the decoded line is consumed");
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn a_sized_payload_is_awaited_whole() {
    let mut decoder = RequestDecoder::new();
    let mut buf = BytesMut::from(&b"APPEND s any 5\r\nab"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], b"ab", "the header is consumed once");
    // Five bytes, the last two a CRLF that belongs to the payload: its terminator is still due.
    buf.extend_from_slice(b"c\r\n");
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"\r");
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"\nPING\r\n");
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Decoded::Request(append(
            "s",
            ExpectedVersion::Any,
            b"abc\r\n"
        ))))
    );
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Decoded::Request(Request::Ping)))
    );
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(buf.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. Malformed requests: answered, and the connection goes on
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_requests_are_invalid_and_the_next_request_decodes() {
    for (bad, code) in invalid_cases() {
        let input = cat(&[&bad, NEXT]);
        let run = whole(decoder(), &input);
        assert_eq!(run.error, None, "{}", show(&bad));
        assert_eq!(run.frames.len(), 2, "{}: {:?}", show(&bad), run.frames);
        match &run.frames[0] {
            Decoded::Invalid(error) => {
                assert_eq!(error.code, code, "{}: {error}", show(&bad));
                assert!(!error.message.is_empty());
                assert!(!error.code.closes_connection());
            }
            other => panic!("{}: expected Invalid, got {other:?}", show(&bad)),
        }
        assert_eq!(run.frames[1], next(), "{}", show(&bad));
        // Byte by byte and split at every offset give the very same values.
        assert_decodes(&input, &run.frames);
    }
}

#[test]
fn a_bad_sized_append_skips_exactly_its_payload() {
    let input = cat(&[&sized("APPEND $bad any", b"PING\r\nHELP\r\n"), b"PONG\r\n"]);
    let run = whole(decoder(), &input);
    assert_eq!(run.error, None);
    assert!(
        matches!(&run.frames[..], [Decoded::Invalid(e), Decoded::Request(Request::Pong)]
            if e.code == ErrorCode::InvalidArgument && e.message.contains('$')),
        "{:?}",
        run.frames
    );
    assert_decodes(&input, &run.frames);
}

#[test]
fn error_messages_quote_client_bytes_safely() {
    // The message goes between quotes on an `-ERR` line, so it must hold neither a quote nor a
    // line break, and it stays short however long the input.
    let long = "x".repeat(1000);
    for bad in [
        b"FR'OB\r\n".to_vec(),
        b"FROB\x07\x0b\r\n".to_vec(),
        format!("{long}\r\n").into_bytes(),
        format!("READ s 0 {long}\r\n").into_bytes(),
    ] {
        let run = whole(decoder(), &bad);
        let [Decoded::Invalid(error)] = &run.frames[..] else {
            panic!("{}: {:?}", show(&bad), run.frames)
        };
        assert!(
            !error.message.contains(['\'', '\r', '\n']),
            "{:?}",
            error.message
        );
        assert!(error.message.len() < 200, "{:?}", error.message);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Fatal errors: framing is lost, the connection must close
// ---------------------------------------------------------------------------------------------

/// `PING` padded with trailing spaces to a line of exactly `len` bytes, CRLF included.
fn ping_line(len: usize) -> Vec<u8> {
    let mut line = b"PING".to_vec();
    line.resize(len - 2, b' ');
    line.extend_from_slice(b"\r\n");
    line
}

#[test]
fn a_control_line_at_the_limit_is_accepted() {
    let line = ping_line(MAX_CONTROL_LINE_BYTES);
    assert_eq!(line.len(), MAX_CONTROL_LINE_BYTES);
    assert_decodes(&line, &[Decoded::Request(Request::Ping)]);
}

#[test]
fn a_complete_control_line_over_the_limit_is_fatal() {
    let line = ping_line(MAX_CONTROL_LINE_BYTES + 1);
    assert_fatal(&line, &[], ErrorCode::LineTooLong);
    // With bare LF the limit is the same number of bytes.
    let mut lf = line.clone();
    lf.remove(lf.len() - 2);
    lf.insert(4, b' ');
    assert_eq!(lf.len(), MAX_CONTROL_LINE_BYTES + 1);
    assert_fatal(&lf, &[], ErrorCode::LineTooLong);
    // Requests before it are still decoded.
    assert_fatal(
        &cat(&[b"PING\r\n", &line, b"PONG\r\n"]),
        &[Decoded::Request(Request::Ping)],
        ErrorCode::LineTooLong,
    );
}

#[test]
fn a_control_line_without_newline_is_refused_within_one_read_of_the_limit() {
    for read_len in [
        1,
        7,
        100,
        1000,
        MAX_CONTROL_LINE_BYTES,
        MAX_CONTROL_LINE_BYTES + 5,
    ] {
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::new();
        let error = loop {
            buf.extend_from_slice(&vec![b'x'; read_len]);
            match decoder.decode(&mut buf) {
                Ok(None) => assert!(
                    buf.len() <= MAX_CONTROL_LINE_BYTES,
                    "read_len {read_len}: buffered {} bytes",
                    buf.len()
                ),
                Ok(Some(frame)) => panic!("read_len {read_len}: {frame:?}"),
                Err(error) => break error,
            }
        };
        assert_eq!(error.code, ErrorCode::LineTooLong);
        assert!(buf.len() > MAX_CONTROL_LINE_BYTES);
        assert!(
            buf.len() <= MAX_CONTROL_LINE_BYTES + read_len,
            "read_len {read_len}: buffered {} bytes before refusing",
            buf.len()
        );
    }
}

#[test]
fn the_line_limit_counts_only_the_current_line() {
    let mut decoder = RequestDecoder::new();
    let mut buf = BytesMut::from(&b"PING\r\n"[..]);
    buf.extend_from_slice(&vec![b' '; MAX_CONTROL_LINE_BYTES]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Decoded::Request(Request::Ping)))
    );
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), MAX_CONTROL_LINE_BYTES);
    buf.extend_from_slice(b" ");
    let error = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(error.code, ErrorCode::LineTooLong);
}

#[test]
fn a_payload_over_the_limit_is_fatal_before_it_arrives() {
    let over = MAX_PAYLOAD_BYTES + 1;
    for header in [
        format!("APPEND s any {over}\r\n"),
        format!("append s 3 {over}\n"),
        // The limit wins over a bad header: the payload cannot be skipped safely either way.
        format!("APPEND $bad any {over}\r\n"),
        format!("APPEND s maybe {over}\r\n"),
        "APPEND s any 99999999999999999999999999999\r\n".to_owned(),
    ] {
        assert_fatal(header.as_bytes(), &[], ErrorCode::PayloadTooLarge);
    }
    // The error carries the code the spec names.
    let error = whole(decoder(), format!("APPEND s any {over}\r\n").as_bytes())
        .error
        .unwrap();
    assert_eq!(error.code.as_str(), "payload_too_large");
}

#[test]
fn a_payload_at_the_limit_is_accepted() {
    let payload: Vec<u8> = (0..MAX_PAYLOAD_BYTES).map(|i| (i % 251) as u8).collect();
    let input = sized("APPEND big any", &payload);
    let expected = [Decoded::Request(append(
        "big",
        ExpectedVersion::Any,
        &payload,
    ))];
    for read_len in [64 * 1024, 4096 + 17, input.len()] {
        let run = support::feed_chunks(decoder(), input.chunks(read_len));
        assert_eq!(run.error, None, "read_len {read_len}");
        assert!(run.frames == expected, "read_len {read_len}");
        assert!(run.leftover.is_empty());
    }
}

#[test]
fn a_payload_not_followed_by_a_line_ending_is_fatal() {
    for input in [
        &b"APPEND s any 3\r\nabcd\r\n"[..],
        b"APPEND s any 3\r\nabc\rX",
        b"APPEND s any 3\r\nabcPING\r\n",
        b"APPEND s any 0\r\nX\r\n",
        // A bad header does not make a bad frame recoverable.
        b"APPEND $bad any 3\r\nabcd\r\n",
    ] {
        assert_fatal(input, &[], ErrorCode::BadFrame);
    }
    assert_fatal(
        b"PING\nAPPEND s any 3\nabcd\nPONG\n",
        &[Decoded::Request(Request::Ping)],
        ErrorCode::BadFrame,
    );
    let error = whole(decoder(), b"APPEND s any 3\r\nabcd\r\n")
        .error
        .unwrap();
    assert_eq!(error.code.as_str(), "bad_frame");
}

// ---------------------------------------------------------------------------------------------
// 4. Properties
// ---------------------------------------------------------------------------------------------

/// Protocol-flavoured noise: arbitrary bytes mixed with operation names, arguments, numbers,
/// line endings and long runs without a newline.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    let words: Vec<&'static [u8]> = vec![
        b"APPEND ",
        b"append\t",
        b"READ ",
        b"READALL ",
        b"READTYPES ",
        b"CONNECT ",
        b"PING",
        b"PONG",
        b"USE ",
        b"HELP",
        b"VERSION ",
        b"EXISTS ",
        b"STREAMS ",
        b"DELETE ",
        b"s ",
        b"$x ",
        b"any ",
        b"no_stream ",
        b"-1 ",
        b"end ",
        b"0 ",
        b"1",
        b"3",
        b"12",
        b"999999",
        b"1048577",
        b"{}",
        b"{\"event_type\":\"A\",\"data\":1}",
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b"\t",
        b",",
        b"'",
    ];
    let fragment = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..16),
        4 => prop::sample::select(words).prop_map(<[u8]>::to_vec),
        1 => (1usize..3000).prop_map(|n| vec![b'x'; n]),
    ];
    prop::collection::vec(fragment, 0..64).prop_map(|fragments| fragments.concat())
}

/// The last line the decoder consumed, if `consumed` ends with one.
fn last_line(consumed: &[u8]) -> &[u8] {
    let Some(consumed) = consumed.strip_suffix(b"\n") else {
        return b"";
    };
    let start = consumed
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = &consumed[start..];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The byte count of a sized `APPEND` header line.
fn sized_append_len(line: &[u8]) -> Option<usize> {
    let tokens: Vec<&[u8]> = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|t| !t.is_empty())
        .collect();
    match tokens[..] {
        [op, _, _, count]
            if op.eq_ignore_ascii_case(b"APPEND") && count.iter().all(u8::is_ascii_digit) =>
        {
            std::str::from_utf8(count).ok()?.parse().ok()
        }
        _ => None,
    }
}

/// Feeds `input` in chunks of the given sizes (cycled) and checks, whenever the decoder asks
/// for more bytes, that it keeps no more than a control line, or than the payload it awaits.
fn feed_checking_buffer(input: &[u8], sizes: &[usize]) -> Run<Decoded> {
    let mut decoder = RequestDecoder::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    for &size in sizes.iter().cycle() {
        if fed == input.len() {
            break;
        }
        let end = (fed + size).min(input.len());
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before, "frame without consuming input");
                    frames.push(frame);
                }
                Ok(None) => {
                    if buf.len() > MAX_CONTROL_LINE_BYTES {
                        let consumed = &input[..fed - buf.len()];
                        let awaited = sized_append_len(last_line(consumed));
                        assert!(
                            awaited.is_some_and(|len| len <= MAX_PAYLOAD_BYTES && buf.len() <= len + 1),
                            "buffered {} bytes while awaiting {awaited:?}",
                            buf.len()
                        );
                    }
                    break;
                }
                Err(error) => {
                    return Run {
                        frames,
                        error: Some(error),
                        leftover: buf,
                    }
                }
            }
        }
    }
    Run {
        frames,
        error: None,
        leftover: buf,
    }
}

/// What must not depend on how the input was cut: the frames, and the fatal error's code (its
/// message may quote however many bytes had arrived).
fn outcome(run: &Run<Decoded>) -> (&[Decoded], Option<ErrorCode>) {
    (&run.frames, run.error.as_ref().map(|e| e.code))
}

fn stream_id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9é][a-zA-Z0-9_.:@$é-]{0,40}"
}

fn store_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,64}"
}

fn expected_version() -> impl Strategy<Value = ExpectedVersion> {
    prop_oneof![
        Just(ExpectedVersion::Any),
        Just(ExpectedVersion::NoStream),
        Just(ExpectedVersion::Exists),
        any::<u64>().prop_map(ExpectedVersion::Exact),
    ]
}

fn read_start() -> impl Strategy<Value = ReadStart> {
    prop_oneof![
        Just(ReadStart::End),
        any::<u64>().prop_map(ReadStart::At),
        any::<u64>().prop_map(ReadStart::Time)
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Forward), Just(Direction::Backward)]
}

fn any_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("(?s).{0,30}")
}

/// Any well-formed request.
fn request() -> impl Strategy<Value = Request> {
    let connect = (
        any_text(),
        any_text(),
        any_text(),
        proptest::option::of(store_name()),
    )
        .prop_map(|(name, lang, version, store)| {
            Request::Connect(ConnectOptions {
                name,
                lang,
                version,
                store,
                ..ConnectOptions::default()
            })
        });
    let append = (
        stream_id(),
        expected_version(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(stream, expected, payload)| Request::Append {
            stream,
            expected,
            payload: payload.into(),
        });
    let read = (stream_id(), read_start(), 0..=MAX_READ_COUNT, direction()).prop_map(
        |(stream, from, count, direction)| Request::Read {
            stream,
            from,
            count,
            direction,
        },
    );
    let read_all =
        (read_start(), 0..=MAX_READ_COUNT, direction()).prop_map(|(from, count, direction)| {
            Request::ReadAll {
                from,
                count,
                direction,
            }
        });
    let read_types = (
        prop::collection::vec("[A-Za-z][A-Za-z0-9_.:-]{0,20}", 1..=MAX_TYPES_PER_READ),
        any::<u64>(),
        0..=MAX_READ_COUNT,
    )
        .prop_map(|(mut types, from_position, count)| {
            let mut seen = std::collections::HashSet::new();
            types.retain(|t| seen.insert(t.clone()));
            Request::ReadTypes {
                types,
                from_position,
                count,
            }
        });
    let streams = (proptest::option::of(stream_id()), 0..=MAX_STREAMS_PAGE)
        .prop_map(|(after, count)| Request::Streams { after, count });
    let delete =
        (stream_id(), expected_version(), any::<bool>()).prop_map(|(stream, expected, hard)| {
            Request::Delete {
                stream,
                expected,
                hard,
            }
        });
    prop_oneof![
        connect,
        Just(Request::Ping),
        Just(Request::Pong),
        store_name().prop_map(|store| Request::Use { store }),
        Just(Request::Help),
        append,
        read,
        read_all,
        read_types,
        stream_id().prop_map(|stream| Request::Version { stream }),
        stream_id().prop_map(|stream| Request::Exists { stream }),
        streams,
        delete,
    ]
}

/// Every hand-written case, valid or not, with what it decodes to.
fn written_cases() -> Vec<(Vec<u8>, Decoded)> {
    let valid = valid_cases()
        .into_iter()
        .map(|(bytes, request)| (bytes, Decoded::Request(request)));
    let invalid = invalid_cases().into_iter().map(|(bytes, _)| {
        let run = whole(decoder(), &bytes);
        let [frame] = &run.frames[..] else {
            panic!("{}: {:?}", show(&bytes), run.frames)
        };
        (bytes, frame.clone())
    });
    valid.chain(invalid).collect()
}

/// One pipelined request: an encoded random one, or a hand-written case.
fn pipelined() -> impl Strategy<Value = (Vec<u8>, Decoded)> {
    prop_oneof![
        request().prop_map(|request| (encoded(&request), Decoded::Request(request))),
        prop::sample::select(written_cases()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_input_never_panics_or_overbuffers(
        input in noise(),
        sizes in prop::collection::vec(1usize..700, 1..16),
    ) {
        let chunked = feed_checking_buffer(&input, &sizes);
        let bytewise = feed_checking_buffer(&input, &[1]);
        let at_once = whole(decoder(), &input);
        prop_assert_eq!(outcome(&chunked), outcome(&at_once));
        prop_assert_eq!(outcome(&bytewise), outcome(&at_once));
        if let Some(error) = &at_once.error {
            prop_assert!(error.code.closes_connection(), "{}", error);
        }
        for frame in &at_once.frames {
            if let Decoded::Invalid(error) = frame {
                prop_assert!(!error.code.closes_connection(), "{}", error);
            }
        }
    }

    #[test]
    fn input_without_newline_is_held_up_to_the_limit_only(
        input in prop::collection::vec(any::<u8>().prop_filter("no LF", |&b| b != b'\n'), 0..10_000),
        sizes in prop::collection::vec(1usize..3000, 1..8),
    ) {
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::new();
        let mut fed = 0;
        for &size in sizes.iter().cycle() {
            if fed == input.len() {
                break;
            }
            let end = (fed + size).min(input.len());
            buf.extend_from_slice(&input[fed..end]);
            fed = end;
            match decoder.decode(&mut buf) {
                Ok(None) => prop_assert!(buf.len() <= MAX_CONTROL_LINE_BYTES),
                Ok(Some(frame)) => prop_assert!(false, "decoded {:?}", frame),
                Err(error) => {
                    prop_assert_eq!(error.code, ErrorCode::LineTooLong);
                    prop_assert!(buf.len() > MAX_CONTROL_LINE_BYTES);
                    break;
                }
            }
        }
    }

    #[test]
    fn random_splits_of_a_pipeline_decode_identically(
        items in prop::collection::vec(pipelined(), 1..24),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let input: Vec<u8> = items.iter().flat_map(|(bytes, _)| bytes.clone()).collect();
        let expected: Vec<Decoded> = items.into_iter().map(|(_, decoded)| decoded).collect();
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        let run = split_at_all(decoder(), &input, &cuts);
        prop_assert_eq!(run.error, None);
        prop_assert_eq!(run.frames, expected);
        prop_assert!(run.leftover.is_empty());
    }
}
