//! The client-side reply decoder fed random bytes at random split points: no panic, and the
//! same replies however the bytes are split.
#![no_main]

use bytes::BytesMut;
use esdb_protocol::ReplyDecoder;
use libfuzzer_sys::fuzz_target;

fn decode_split(input: &[u8], pieces: &[u8]) -> Vec<String> {
    let mut decoder = ReplyDecoder::new();
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
        for _ in 0..=input.len() {
            match decoder.decode(&mut buffer) {
                Ok(Some(reply)) => outcomes.push(format!("{reply:?}")),
                Ok(None) => break,
                Err(error) => {
                    outcomes.push(format!("error {error:?}"));
                    return outcomes;
                }
            }
        }
    }
    outcomes
}

fuzz_target!(|data: &[u8]| {
    let (pieces, input) = data.split_at(data.len().min(8));
    assert_eq!(decode_split(input, &[]), decode_split(input, pieces));
});
