//! `Request::changes_store`: which requests a read-only connection refuses. Every operation,
//! decoded from its wire form, so the classification is checked against what clients send.

use bytes::BytesMut;
use esdb_protocol::{Decoded, Request, RequestDecoder};

fn decode(line: &str) -> Request {
    let mut buffer = BytesMut::from(line.as_bytes());
    match RequestDecoder::new().decode(&mut buffer) {
        Ok(Some(Decoded::Request(request))) => request,
        other => panic!("{line:?} decoded to {other:?}"),
    }
}

#[test]
fn writes_and_persistent_subscription_changes_change_the_store() {
    let writes = [
        "APPEND s-1 any {\"event_type\":\"A\",\"data\":{}}\r\n",
        "APPENDMULTI {\"parts\":[{\"stream\":\"s-1\",\"events\":[{\"event_type\":\"A\",\"data\":{}}]}]}\r\n",
        "DELETE s-1\r\n",
        "DELETE s-1 any hard\r\n",
        "META s-1 {\"max_count\":2}\r\n",
        "SNAP SAVE s-1 0 {\"data\":{}}\r\n",
        "SNAP DELETE s-1\r\n",
        "SNAP DELETE s-1 3\r\n",
        "SUB s1 stream $all group-1\r\n",
        "ACK s1 ..4\r\n",
        "NACK s1 park 3\r\n",
        "PSUB DELETE group-1\r\n",
        "PSUB REPLAY group-1\r\n",
    ];
    for line in writes {
        assert!(decode(line).changes_store(), "{line:?} changes the store");
    }
}

#[test]
fn reads_catch_up_subscriptions_and_session_requests_do_not() {
    let reads = [
        "CONNECT {\"name\":\"console\"}\r\n",
        "PING\r\n",
        "PONG\r\n",
        "USE default\r\n",
        "HELP\r\n",
        "READ s-1 0 10\r\n",
        "READ s-1 end 10 backward\r\n",
        "READALL 0 10\r\n",
        "READALL from_time 0 10\r\n",
        "META s-1\r\n",
        "READTYPES A,B 0 10\r\n",
        "READTAGS t:1,t:2 0 10\r\n",
        "VERSION s-1\r\n",
        "EXISTS s-1\r\n",
        "STREAMS\r\n",
        "STREAMS user- 20\r\n",
        "SNAP LOAD s-1\r\n",
        "SNAP LIST s-1\r\n",
        "SNAP EXISTS s-1 2\r\n",
        "AGG s-1\r\n",
        "SUB s1 stream $all\r\n",
        "SUB s2 event_type A,B\r\n",
        "UNSUB s1\r\n",
        "PSUB LIST\r\n",
        "PSUB GET group-1\r\n",
        "PSUB EXISTS group-1\r\n",
        "PSUB PARKED group-1 0 10\r\n",
        "STATS\r\n",
        "CLUSTER\r\n",
    ];
    for line in reads {
        assert!(!decode(line).changes_store(), "{line:?} only reads");
    }
}
