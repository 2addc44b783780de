//! The run's history: one JSON object a line, an `invoke` when an operation is sent and an
//! `ok` / `fail` / `info` when its outcome is known (`info`: unknown, it may or may not have
//! taken effect), with nanoseconds since the run started, as Jepsen/Knossos/Porcupine-style
//! linearizability checkers take it. Nemesis actions are `info` entries of process `nemesis`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

pub struct History {
    started: Instant,
    out: Option<Mutex<BufWriter<File>>>,
}

impl History {
    /// A history written to `path` (none kept when `None`).
    pub fn new(path: Option<&Path>) -> Result<History, String> {
        let out = match path {
            Some(path) => {
                let file =
                    File::create(path).map_err(|e| format!("history {}: {e}", path.display()))?;
                Some(Mutex::new(BufWriter::new(file)))
            }
            None => None,
        };
        let history = History {
            started: Instant::now(),
            out,
        };
        let wall_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        history.write(json!({"process": "harness", "type": "info", "f": "start",
            "time_ns": 0, "value": {"epoch_us": wall_us}}));
        Ok(history)
    }

    /// Nanoseconds since the run started (the history's clock).
    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Records one entry; returns its time.
    pub fn record(
        &self,
        process: &str,
        kind: &str,
        f: &str,
        node: Option<u32>,
        value: Value,
    ) -> u64 {
        let time_ns = self.now_ns();
        self.write(
            json!({"process": process, "type": kind, "f": f, "node": node,
            "time_ns": time_ns, "value": value}),
        );
        time_ns
    }

    fn write(&self, entry: Value) {
        if let Some(out) = &self.out {
            let mut out = out.lock().expect("history lock");
            // A history that cannot be written is not worth stopping the run for.
            let _ = writeln!(out, "{entry}");
        }
    }

    pub fn flush(&self) {
        if let Some(out) = &self.out {
            let _ = out.lock().expect("history lock").flush();
        }
    }
}
