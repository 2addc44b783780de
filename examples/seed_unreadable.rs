//! A test tool, not for users: seeds a data dir with events whose JSON the protocol would
//! refuse (as an older server or a damaged disk might have left them), so the client libraries'
//! tests can show how they surface `UNREADABLE` frames and parked unreadable records. Call it
//! while no server runs on the data dir.
//!
//! `seed_unreadable <data_dir> <store> <stream> <data_json>...` appends one event of type
//! `Seeded` per `<data_json>` (which need only be syntactically JSON) to `<stream>`, and exits
//! 0; it exits 2 on bad arguments and 1 when the store refuses.

use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The event type of every seeded event.
const SEEDED_EVENT_TYPE: &str = "Seeded";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data_dir, store, stream, datas @ ..] = args.as_slice() else {
        return usage("missing arguments");
    };
    if datas.is_empty() {
        return usage("give at least one <data_json>");
    }
    if let Err(error) = esdb_protocol::ops::session::validate_store_name(store) {
        return usage(&format!("<store>: {}", error.message));
    }
    if let Err(error) = esdb_protocol::ops::streams::validate_stream_id(stream) {
        return usage(&format!("<stream>: {}", error.message));
    }
    for (index, data) in datas.iter().enumerate() {
        if let Err(error) = syntactically_json(data) {
            return usage(&format!("<data_json> {index} is not JSON: {error}"));
        }
    }
    let events: Vec<(&str, &str)> = datas
        .iter()
        .map(|data| (SEEDED_EVENT_TYPE, data.as_str()))
        .collect();
    match esdb::testing::append_unchecked(Path::new(data_dir), store, stream, &events) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("seed_unreadable: {error}");
            ExitCode::from(1)
        }
    }
}

/// Whether `text` is syntactically JSON at any depth (what `append_unchecked` needs; numbers
/// out of range and lone surrogates are let through, which is the point).
fn syntactically_json(text: &str) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.disable_recursion_limit();
    Box::<RawValue>::deserialize(&mut deserializer)?;
    deserializer.end()
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("seed_unreadable: {problem}");
    eprintln!("usage: seed_unreadable <data_dir> <store> <stream> <data_json>...");
    ExitCode::from(2)
}
