//! Event payloads of an exact `data` size, the same bytes for esdb and JetStream.

use bytes::Bytes;

/// The event type every benchmark event carries.
pub const EVENT_TYPE: &str = "BenchEvent";

/// `data` of exactly `data_bytes` bytes of JSON: `{"p":"xxx…"}` (at least 8 bytes).
pub fn data_json(data_bytes: usize) -> String {
    let filler = data_bytes.saturating_sub(8);
    format!("{{\"p\":\"{}\"}}", "x".repeat(filler))
}

/// One event object as `APPEND` takes it.
pub fn event(data_bytes: usize) -> String {
    format!(
        "{{\"event_type\":\"{EVENT_TYPE}\",\"data\":{}}}",
        data_json(data_bytes)
    )
}

/// The `APPEND` payload for `batch` events: one object, or an array of them.
pub fn append_payload(batch: usize, data_bytes: usize) -> Bytes {
    if batch == 1 {
        return Bytes::from(event(data_bytes));
    }
    let one = event(data_bytes);
    let mut out = String::with_capacity(batch * (one.len() + 1) + 2);
    out.push('[');
    for i in 0..batch {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&one);
    }
    out.push(']');
    Bytes::from(out)
}

/// Smallest `data` a stamped event can have: the stamp itself with 8+11-digit numbers.
pub const MIN_STAMPED_DATA_BYTES: usize = 48;

/// `data` of exactly `data_bytes` bytes (at least [`MIN_STAMPED_DATA_BYTES`]) carrying the
/// event's sequence number and send time: `{"seq":S,"t":T,"p":"xxx…"}`. A subscriber reads
/// both back with [`stamp_of`] to check order and measure append-to-delivery latency.
pub fn stamped_data(seq: u64, sent_us: u64, data_bytes: usize) -> String {
    let head = format!("{{\"seq\":{seq},\"t\":{sent_us},\"p\":\"");
    let filler = data_bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(filler))
}

/// One stamped event object as `APPEND` takes it (and as it is published to JetStream).
pub fn stamped_event(seq: u64, sent_us: u64, data_bytes: usize) -> String {
    format!(
        "{{\"event_type\":\"{EVENT_TYPE}\",\"data\":{}}}",
        stamped_data(seq, sent_us, data_bytes)
    )
}

/// The (sequence number, send time in µs) of a stamped event, found in an event record or a
/// JetStream message by a byte search (no JSON parse: a fan-out run reads ~1M of them per
/// second on the cores the server uses too).
pub fn stamp_of(body: &[u8]) -> Option<(u64, u64)> {
    const SEQ: &[u8] = b"\"seq\":";
    const T: &[u8] = b",\"t\":";
    let at = body.windows(SEQ.len()).position(|w| w == SEQ)? + SEQ.len();
    let (seq, rest) = leading_number(&body[at..])?;
    let rest = rest.strip_prefix(T)?;
    let (sent_us, _) = leading_number(rest)?;
    Some((seq, sent_us))
}

fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()?;
    Some((value, &bytes[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_has_the_exact_size() {
        for size in [8, 100, 1024, 10 * 1024] {
            let data = data_json(size);
            assert_eq!(data.len(), size);
            serde_json::from_str::<serde_json::Value>(&data).unwrap();
        }
        let batch = append_payload(10, 100);
        let parsed: Vec<serde_json::Value> = serde_json::from_slice(&batch).unwrap();
        assert_eq!(parsed.len(), 10);
    }

    #[test]
    fn stamps_round_trip_at_the_exact_size() {
        for (seq, t) in [(0, 0), (7, 123_456), (99_999_999, 99_999_999_999)] {
            let data = stamped_data(seq, t, 100);
            assert_eq!(data.len(), 100, "{data}");
            serde_json::from_str::<serde_json::Value>(&data).unwrap();
            let record =
                format!("{{\"event_id\":\"x\",\"position\":3,\"data\":{data},\"metadata\":{{}}}}");
            assert_eq!(stamp_of(record.as_bytes()), Some((seq, t)));
        }
        assert_eq!(stamp_of(b"{\"p\":\"xx\"}"), None);
    }
}
