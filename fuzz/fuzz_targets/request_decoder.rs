//! The request decoder fed random bytes at random split points: it never panics, never
//! buffers past its limits, and frames the same requests however the bytes are split.
#![no_main]

use bytes::BytesMut;
use esdb_protocol::limits::{MAX_CONTROL_LINE_BYTES, MAX_PAYLOAD_BYTES};
use esdb_protocol::RequestDecoder;
use libfuzzer_sys::fuzz_target;

/// Every outcome of decoding `input` delivered in pieces of the given sizes (cycled).
fn decode_split(input: &[u8], pieces: &[u8]) -> Vec<String> {
    let mut decoder = RequestDecoder::new();
    let mut buffer = BytesMut::new();
    let mut outcomes = Vec::new();
    let mut offset = 0;
    let mut piece = 0;
    while offset < input.len() {
        let size = pieces
            .get(piece % pieces.len().max(1))
            .map_or(input.len(), |&p| p as usize + 1);
        piece += 1;
        let end = (offset + size).min(input.len());
        buffer.extend_from_slice(&input[offset..end]);
        offset = end;
        // Bounded: each decoded request consumes at least one byte.
        for _ in 0..=input.len() {
            match decoder.decode(&mut buffer) {
                Ok(Some(decoded)) => outcomes.push(format!("{decoded:?}")),
                Ok(None) => break,
                Err(fatal) => {
                    outcomes.push(format!("fatal {fatal:?}"));
                    return outcomes;
                }
            }
        }
        assert!(
            buffer.len() <= MAX_CONTROL_LINE_BYTES + MAX_PAYLOAD_BYTES + 2,
            "the buffer grew past one line and one payload"
        );
    }
    outcomes
}

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the split points, the rest is the stream.
    let (pieces, input) = data.split_at(data.len().min(8));
    let whole = decode_split(input, &[]);
    let split = decode_split(input, pieces);
    assert_eq!(whole, split, "the split changed what was decoded");
});
