//! Micro-benchmarks of the protocol crate: framing requests and replies, and parsing an
//! APPEND payload into events. `cargo bench -p esdb-bench --bench parser`.

use bytes::BytesMut;
use divan::counter::ItemsCount;
use divan::Bencher;
use esdb_protocol::ops::append::parse_events;
use esdb_protocol::{ExpectedVersion, Reply, ReplyDecoder, Request, RequestDecoder};

fn main() {
    divan::main();
}

/// Requests pipelined in one buffer per iteration.
const PIPELINED: usize = 1000;

fn event_json(data_bytes: usize) -> String {
    format!(
        "{{\"event_type\":\"BenchEvent\",\"data\":{{\"p\":\"{}\"}}}}",
        "x".repeat(data_bytes.saturating_sub(8))
    )
}

fn append_bytes(data_bytes: usize) -> BytesMut {
    let request = Request::Append {
        stream: "order-12345".into(),
        expected: ExpectedVersion::Exact(41),
        payload: event_json(data_bytes).into(),
    };
    let mut one = BytesMut::new();
    request.encode(&mut one);
    let mut all = BytesMut::with_capacity(one.len() * PIPELINED);
    for _ in 0..PIPELINED {
        all.extend_from_slice(&one);
    }
    all
}

#[divan::bench(args = [100, 1024, 10 * 1024])]
fn decode_append_requests(bencher: Bencher, data_bytes: usize) {
    let input = append_bytes(data_bytes);
    bencher
        .counter(ItemsCount::new(PIPELINED))
        .with_inputs(|| input.clone())
        .bench_local_values(|mut buf| {
            let mut decoder = RequestDecoder::new();
            let mut n = 0;
            while let Some(decoded) = decoder.decode(&mut buf).expect("valid") {
                divan::black_box(decoded);
                n += 1;
            }
            assert_eq!(n, PIPELINED);
        });
}

#[divan::bench(args = [1, 100])]
fn parse_append_payload(bencher: Bencher, events: usize) {
    let one = event_json(100);
    let payload = if events == 1 {
        one
    } else {
        format!("[{}]", vec![one; events].join(","))
    };
    bencher
        .counter(ItemsCount::new(events))
        .bench(|| parse_events(divan::black_box(payload.as_bytes())).expect("valid"));
}

#[divan::bench]
fn decode_appended_replies(bencher: Bencher) {
    let mut one = BytesMut::new();
    Reply::Appended {
        stream: "order-12345".into(),
        last_version: 41,
        last_position: 1_234_567,
    }
    .encode(&mut one);
    let mut input = BytesMut::new();
    for _ in 0..PIPELINED {
        input.extend_from_slice(&one);
    }
    bencher
        .counter(ItemsCount::new(PIPELINED))
        .with_inputs(|| input.clone())
        .bench_local_values(|mut buf| {
            let mut decoder = ReplyDecoder::new();
            while let Some(reply) = decoder.decode(&mut buf).expect("valid") {
                divan::black_box(reply);
            }
        });
}
