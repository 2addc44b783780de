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
}
