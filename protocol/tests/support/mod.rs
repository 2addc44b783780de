//! Feeding strategies shared by the integration tests: the same input is handed to a decoder
//! whole, one byte at a time, or in arbitrary chunks, the way a socket might deliver it.

use bytes::BytesMut;
use esdb_protocol::ProtocolError;

/// Everything a decoder produced from one input.
#[derive(Debug)]
pub struct Run<T> {
    /// The frames decoded, in order.
    pub frames: Vec<T>,
    /// The fatal error that stopped decoding, if any (nothing is fed after it).
    pub error: Option<ProtocolError>,
    /// Bytes left in the buffer at the end.
    pub leftover: BytesMut,
}

/// Appends each chunk to one buffer and, after each, calls `decode` until it needs more bytes.
/// Checks on the way that every frame consumes input, so a decoder cannot loop forever.
pub fn feed_chunks<'a, T>(
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Run<T> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(
                        buf.len() < before,
                        "a frame was produced without consuming input"
                    );
                    frames.push(frame);
                }
                Ok(None) => break,
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

/// The input in one piece.
pub fn whole<T>(
    decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
    input: &[u8],
) -> Run<T> {
    feed_chunks(decode, [input])
}

/// The input one byte at a time.
pub fn byte_by_byte<T>(
    decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
    input: &[u8],
) -> Run<T> {
    feed_chunks(decode, input.chunks(1))
}

/// The input in two pieces, cut at `at`.
pub fn split_at<T>(
    decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
    input: &[u8],
    at: usize,
) -> Run<T> {
    let (head, tail) = input.split_at(at);
    feed_chunks(decode, [head, tail])
}

/// The input cut at each of `cuts` (any order, duplicates and out-of-range values allowed).
pub fn split_at_all<T>(
    decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
    input: &[u8],
    cuts: &[usize],
) -> Run<T> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(0);
    cuts.push(input.len());
    cuts.sort_unstable();
    let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &input[w[0]..w[1]]).collect();
    feed_chunks(decode, chunks)
}

/// Shows input bytes in assertion messages.
pub fn show(input: &[u8]) -> String {
    String::from_utf8_lossy(input).escape_debug().to_string()
}
