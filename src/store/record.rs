//! The event record: the JSON every read returns, built once at append and stored as is.
//!
//! Field order is fixed: `event_id`, `event_type`, `stream_id`, `version`, `position`,
//! `epoch_us`, `data`, `metadata`, then `tags` only when the event has any (format 5; records
//! without tags are as before). `data` and `metadata` are the client's own bytes. An event of
//! an encrypted stream is stored sealed and read opened ([`crate::store::crypto`]); once its
//! stream is shredded it reads with `"data":null` and a last field `"shredded":true`.

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// Builds the record's JSON bytes.
#[allow(clippy::too_many_arguments)]
pub fn build_record(
    event_id: &Uuid,
    event_type: &str,
    stream: &str,
    version: u64,
    position: u64,
    epoch_us: u64,
    data: &RawValue,
    metadata: Option<&RawValue>,
    tags: &[String],
) -> Vec<u8> {
    build_record_from(
        event_id,
        event_type,
        stream,
        version,
        position,
        epoch_us,
        data.get().as_bytes(),
        metadata,
        tags,
    )
}

/// [`build_record`] with `data` as bytes already known to be one JSON value (an opened
/// sealed record's, [`crate::store::crypto`]).
#[allow(clippy::too_many_arguments)]
pub fn build_record_from(
    event_id: &Uuid,
    event_type: &str,
    stream: &str,
    version: u64,
    position: u64,
    epoch_us: u64,
    data: &[u8],
    metadata: Option<&RawValue>,
    tags: &[String],
) -> Vec<u8> {
    let metadata = metadata.map(RawValue::get).unwrap_or("{}");
    let mut out = Vec::with_capacity(
        160 + crate::store::checksum::CHECKSUM_BYTES
            + event_type.len()
            + stream.len()
            + data.len()
            + metadata.len()
            + tags.iter().map(|tag| tag.len() + 3).sum::<usize>()
            + 10,
    );
    out.extend_from_slice(b"{\"event_id\":\"");
    out.extend_from_slice(
        event_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"event_type\":");
    write_json_string(&mut out, event_type);
    out.extend_from_slice(b",\"stream_id\":");
    write_json_string(&mut out, stream);
    out.extend_from_slice(
        format!(",\"version\":{version},\"position\":{position},\"epoch_us\":{epoch_us},\"data\":")
            .as_bytes(),
    );
    out.extend_from_slice(data);
    out.extend_from_slice(b",\"metadata\":");
    out.extend_from_slice(metadata.as_bytes());
    if !tags.is_empty() {
        out.extend_from_slice(b",\"tags\":[");
        for (index, tag) in tags.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_json_string(&mut out, tag);
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

/// A shredded event's record: `"shredded":true` as its last field (its `data` is `null`).
pub fn mark_shredded(mut record: Vec<u8>) -> Vec<u8> {
    debug_assert_eq!(record.last(), Some(&b'}'));
    record.pop();
    record.extend_from_slice(b",\"shredded\":true}");
    record
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

/// The fields of a stored record that the engine itself needs to look at.
#[derive(Debug, Deserialize)]
pub struct RecordPlace {
    pub stream_id: String,
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_valid_json_with_fields_in_order() {
        let data = RawValue::from_string(r#"{"a":[1,"x"]}"#.into()).unwrap();
        let id = Uuid::nil();
        let bytes = build_record(&id, "T\"q", "s-1", 3, 9, 12, &data, None, &[]);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["event_type"], "T\"q");
        assert_eq!(value["stream_id"], "s-1");
        assert_eq!(value["version"], 3);
        assert_eq!(value["position"], 9);
        assert_eq!(value["epoch_us"], 12);
        assert_eq!(value["data"]["a"][1], "x");
        assert_eq!(value["metadata"], serde_json::json!({}));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"event_id":"00000000-0000-0000-0000-000000000000","#));
        assert!(!text.contains("tags"), "no tags field without tags");
        let tags = ["course:c1".to_owned(), "student:\"s\"".to_owned()];
        let bytes = build_record(&id, "T", "s-1", 3, 9, 12, &data, None, &tags);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            value["tags"],
            serde_json::json!(["course:c1", "student:\"s\""])
        );
        assert!(String::from_utf8(bytes)
            .unwrap()
            .ends_with(r#""metadata":{},"tags":["course:c1","student:\"s\""]}"#));
    }
}
