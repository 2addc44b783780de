//! The control socket: one command per line, one reply line each.
//!
//! - `cut` drops every unsynced write; `cut <seed>` keeps a random subset of them (per file,
//!   each write kept with probability ½, applied in a shuffled order) and drops the rest.
//!   `cut <seed> torn` does the same with writes split at 4 KiB page boundaries first, so a
//!   write may survive in part. Either way directory changes not durable are undone and the filesystem then fails every
//!   operation with EIO. Reply: `ok cut files=… kept=… dropped=… dir_undone=… dir_failed=…`.
//! - `stats`: `ok stats writes=… fsyncs=… dir_fsyncs=… writebacks=… pending_ops=…
//!   pending_bytes=… pending_dir_changes=…`.
//! - `unmount`: replies `ok bye`, unmounts and exits.
//!
//! Anything else gets `err <message>`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use crate::state::State;

/// Longest command line accepted.
const MAX_COMMAND_BYTES: u64 = 256;

/// What the main thread is asked to do.
pub enum Control {
    Unmount,
}

/// Serves control connections, one at a time, until `unmount` (then the process exits).
pub fn serve(listener: UnixListener, state: Arc<Mutex<State>>, main: Sender<Control>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if let Ok(true) = session(stream, &state) {
            let _ = main.send(Control::Unmount);
            return;
        }
    }
}

/// One connection's commands; true when it asked to unmount.
fn session(stream: UnixStream, state: &Arc<Mutex<State>>) -> std::io::Result<bool> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if Read::by_ref(&mut reader)
            .take(MAX_COMMAND_BYTES)
            .read_line(&mut line)?
            == 0
        {
            return Ok(false);
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            [] => continue,
            ["unmount"] => {
                writeln!(writer, "ok bye")?;
                return Ok(true);
            }
            ["stats"] => {
                let s = lock(state).stats();
                format!(
                    "ok stats writes={} fsyncs={} dir_fsyncs={} writebacks={} pending_ops={} pending_bytes={} pending_dir_changes={}",
                    s.writes, s.fsyncs, s.dir_fsyncs, s.writebacks, s.pending_ops, s.pending_bytes, s.pending_dir_changes
                )
            }
            ["cut"] => cut(state, None, false),
            ["cut", seed] | ["cut", seed, "torn"] => match seed.parse::<u64>() {
                Ok(seed) => cut(state, Some(seed), words.len() == 3),
                Err(_) => format!("err the seed must be a number, got {seed}"),
            },
            _ => format!("err unknown command: {}", line.trim()),
        };
        writeln!(writer, "{reply}")?;
    }
}

fn lock(state: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn cut(state: &Arc<Mutex<State>>, seed: Option<u64>, torn: bool) -> String {
    match lock(state).cut(seed, torn) {
        Ok(r) => format!(
            "ok cut files={} kept={} dropped={} dir_undone={} dir_failed={}",
            r.files, r.writes.kept, r.writes.dropped, r.dir_changes.undone, r.dir_changes.failed
        ),
        Err(e) => format!("err cut failed: {e}"),
    }
}
