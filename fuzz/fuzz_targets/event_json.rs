//! The JSON event parser (`APPEND` payloads, `SNAP SAVE` payloads, the JSON rules): no panic
//! on any input, and whatever is accepted passes the rules every reader applies.
#![no_main]

use esdb_protocol::json;
use esdb_protocol::ops::append::parse_events;
use esdb_protocol::ops::snap::parse_snapshot_payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = parse_events(data) {
        assert!(!events.is_empty(), "an accepted append holds an event");
        for event in events {
            assert!(json::check(event.data.get().as_bytes(), json::MAX_JSON_DEPTH).is_ok());
        }
    }
    let _ = parse_snapshot_payload(data);
    let _ = json::check(data, json::MAX_JSON_DEPTH);
});
