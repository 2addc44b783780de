//! `Reply::encode` and `ReplyDecoder` through the crate's public API: every reply round-trips
//! however its bytes arrive, and the error code table says which errors close the connection.

mod support;

use bytes::{Bytes, BytesMut};
use esdb_protocol::error::ALL_ERROR_CODES;
use esdb_protocol::ops::session::HELP_TEXT;
use esdb_protocol::{ErrorCode, ProtocolError, Reply, ReplyDecoder};
use proptest::prelude::*;
use support::{byte_by_byte, show, split_at, split_at_all, whole, Run};

/// A fresh decoder, as the `decode` closure the feeding strategies take.
fn decoder() -> impl FnMut(&mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
    let mut decoder = ReplyDecoder::new();
    move |buf: &mut BytesMut| decoder.decode(buf)
}

fn encoded(replies: &[Reply]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    for reply in replies {
        reply.encode(&mut dst);
    }
    dst.to_vec()
}

/// Feeds `input` whole, byte by byte and split in two at every offset; each run must decode
/// exactly `expected`, raise no error and consume every byte.
fn assert_decodes(input: &[u8], expected: &[Reply]) {
    let check = |how: &str, run: Run<Reply>| {
        assert_eq!(run.error, None, "{how}: {}", show(input));
        assert_eq!(run.frames, expected, "{how}: {}", show(input));
        assert!(run.leftover.is_empty(), "{how}: {}", show(input));
    };
    check("whole", whole(decoder(), input));
    check("byte by byte", byte_by_byte(decoder(), input));
    for at in 0..=input.len() {
        check(&format!("split at {at}"), split_at(decoder(), input, at));
    }
}

/// Encodes `reply` and checks it decodes to itself however it is fed.
fn assert_round_trips(reply: Reply) {
    assert_decodes(&encoded(std::slice::from_ref(&reply)), &[reply]);
}

/// One of each variant, with bodies that hold line breaks and values at their extremes.
fn every_reply() -> Vec<Reply> {
    vec![
        Reply::Info(Bytes::from_static(
            br#"{"server_id":"esdb-1","proto":1,"max_payload":1048576,"note":"a  b"}"#,
        )),
        Reply::Ok,
        Reply::Ping,
        Reply::Pong,
        Reply::error(
            ErrorCode::WrongExpectedVersion,
            "expected 3, stream is at 5",
        ),
        Reply::error(ErrorCode::InvalidArgument, ""),
        Reply::Appended {
            stream: "user-1".to_owned(),
            last_version: 0,
            last_position: 0,
        },
        Reply::Appended {
            stream: "ünïcode$:id".to_owned(),
            last_version: u64::MAX,
            last_position: u64::MAX - 1,
        },
        Reply::Events {
            count: 2,
            body: Bytes::from_static(b"[{\"data\":\"a\\r\\nb\"},\r\n{\"data\":2}]"),
        },
        Reply::Events {
            count: 0,
            body: Bytes::from_static(b"[]"),
        },
        Reply::Events {
            count: 0,
            body: Bytes::new(),
        },
        Reply::AppendedMulti {
            count: 1,
            body: Bytes::from_static(
                br#"[{"stream":"a","first_version":0,"last_version":1,"first_position":4,"last_position":5}]"#,
            ),
        },
        Reply::Version {
            stream: "user-1".to_owned(),
            version: -1,
        },
        Reply::Version {
            stream: "user-1".to_owned(),
            version: i64::MAX,
        },
        Reply::Exists {
            stream: "user-1".to_owned(),
            exists: true,
        },
        Reply::Exists {
            stream: "user-2".to_owned(),
            exists: false,
        },
        Reply::Streams {
            count: 2,
            body: Bytes::from_static(br#"["a","b"]"#),
        },
        Reply::Help {
            body: Bytes::from_static(HELP_TEXT.as_bytes()),
        },
    ]
}

#[test]
fn every_reply_round_trips_however_it_is_fed() {
    for reply in every_reply() {
        assert_round_trips(reply);
    }
}

#[test]
fn a_pipeline_of_every_reply_decodes_in_order() {
    let replies = every_reply();
    assert_decodes(&encoded(&replies), &replies);
}

#[test]
fn every_error_code_round_trips_with_a_quoted_message() {
    for code in ALL_ERROR_CODES {
        for message in [
            "it's 'quoted' here",
            "'",
            "''",
            "ends with a quote'",
            "  spaces\tand tabs  ",
        ] {
            let reply = Reply::error(code, message);
            let bytes = reply.to_bytes();
            assert!(bytes.starts_with(format!("-ERR {} '", code.as_str()).as_bytes()));
            assert_round_trips(reply);
        }
    }
}

#[test]
fn an_error_message_cannot_break_its_line() {
    let reply = Reply::error(ErrorCode::Internal, "line one\r\nline two\n'three'");
    let mut input = encoded(&[reply]);
    assert_eq!(
        input.iter().filter(|&&b| b == b'\n').count(),
        1,
        "{}",
        show(&input)
    );
    input.extend_from_slice(b"+OK\r\n");
    assert_decodes(
        &input,
        &[
            Reply::error(ErrorCode::Internal, "line one  line two 'three'"),
            Reply::Ok,
        ],
    );
}

#[test]
fn replies_tolerate_bare_lf_and_extra_separators() {
    assert_decodes(
        b"+OK\nPONG \t\r\nVERSION\ts  7\nEVENTS 1 2\n[]\n",
        &[
            Reply::Ok,
            Reply::Pong,
            Reply::Version {
                stream: "s".to_owned(),
                version: 7,
            },
            Reply::Events {
                count: 1,
                body: Bytes::from_static(b"[]"),
            },
        ],
    );
}

#[test]
fn malformed_replies_are_fatal() {
    for input in [
        &b"WHAT\r\n"[..],
        b"-ERR no_such_code 'x'\r\n",
        b"EVENTS 1 2\r\n[]X\r\n",
        b"HELP 1\r\nab\r\n",
        b"VERSION s seven\r\n",
        b"\xff\r\n",
    ] {
        let run = whole(decoder(), input);
        assert!(run.frames.is_empty(), "{}", show(input));
        assert!(run.error.is_some(), "{}: no error", show(input));
    }
    let run = whole(decoder(), b"+OK\r\nEVENTS 1 2\r\n[]X\r\n");
    assert_eq!(run.frames, [Reply::Ok]);
    assert_eq!(run.error.map(|e| e.code), Some(ErrorCode::BadFrame));
}

#[test]
fn error_code_table() {
    use ErrorCode::*;
    let closing = [
        PayloadTooLarge,
        LineTooLong,
        BadFrame,
        TooManyConnections,
        StaleConnection,
        ShuttingDown,
        AuthFailed,
        TlsRequired,
    ];
    let retryable = [
        TooManyConnections,
        ShuttingDown,
        StorageError,
        StoreFull,
        RateLimited,
        Unavailable,
    ];
    for code in ALL_ERROR_CODES {
        assert_eq!(
            code.closes_connection(),
            closing.contains(&code),
            "closes_connection({code})"
        );
        assert_eq!(
            code.is_retryable(),
            retryable.contains(&code),
            "is_retryable({code})"
        );
        assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        assert_eq!(code.to_string(), code.as_str());
    }
    let closing_names: Vec<&str> = ALL_ERROR_CODES
        .iter()
        .filter(|code| code.closes_connection())
        .map(|code| code.as_str())
        .collect();
    assert_eq!(
        closing_names,
        [
            "payload_too_large",
            "line_too_long",
            "bad_frame",
            "too_many_connections",
            "stale_connection",
            "shutting_down",
            "auth_failed",
            "tls_required"
        ]
    );
    let mut names: Vec<&str> = ALL_ERROR_CODES.iter().map(|c| c.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALL_ERROR_CODES.len(), "codes are unique");
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn stream_id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9é][a-zA-Z0-9_.:@$é-]{0,40}"
}

fn body() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

/// Any reply the server may send.
fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        "\\{[a-z0-9 :,\"]{0,40}\\}".prop_map(|json| Reply::Info(json.into())),
        Just(Reply::Ok),
        Just(Reply::Ping),
        Just(Reply::Pong),
        (prop::sample::select(&ALL_ERROR_CODES[..]), "[^\r\n]{0,40}")
            .prop_map(|(code, message)| Reply::error(code, message)),
        (stream_id(), any::<u64>(), any::<u64>()).prop_map(
            |(stream, last_version, last_position)| Reply::Appended {
                stream,
                last_version,
                last_position,
            }
        ),
        (any::<u64>(), body()).prop_map(|(count, body)| Reply::Events { count, body }),
        (any::<u64>(), body()).prop_map(|(count, body)| Reply::AppendedMulti { count, body }),
        (stream_id(), any::<i64>())
            .prop_map(|(stream, version)| Reply::Version { stream, version }),
        (stream_id(), any::<bool>()).prop_map(|(stream, exists)| Reply::Exists { stream, exists }),
        (any::<u64>(), body()).prop_map(|(count, body)| Reply::Streams { count, body }),
        body().prop_map(|body| Reply::Help { body }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_splits_of_replies_decode_identically(
        replies in prop::collection::vec(reply(), 1..16),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..32),
    ) {
        let input = encoded(&replies);
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        let run = split_at_all(decoder(), &input, &cuts);
        prop_assert_eq!(run.error, None);
        prop_assert_eq!(run.frames, replies);
        prop_assert!(run.leftover.is_empty());
    }

    #[test]
    fn arbitrary_server_output_never_panics(
        input in prop::collection::vec(any::<u8>(), 0..512),
        prefix in prop::sample::select(vec![
            &b""[..], b"-ERR ", b"-ERR bad_frame '", b"EVENTS 1 ", b"STREAMS 2 3\r\n",
            b"HELP 4\r\n", b"VERSION s ", b"APPENDED s 1 ", b"EXISTS s ", b"INFO ",
        ]),
    ) {
        let input = [prefix, &input[..]].concat();
        let at_once = whole(decoder(), &input);
        let bytewise = byte_by_byte(decoder(), &input);
        prop_assert_eq!(&at_once.frames, &bytewise.frames);
        prop_assert_eq!(at_once.error.is_some(), bytewise.error.is_some());
    }
}
