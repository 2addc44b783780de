//! How commands print: NDJSON when stdout is not a terminal or with `--json`, else one
//! readable (and, unless `NO_COLOR` is set, colored) line per event.

use std::io::{BufWriter, IsTerminal, Stdout, Write};

use anstyle::{AnsiColor, Style};
use esdb_client::{RecordedEvent, Snapshot};

use crate::cli::common::CliError;

const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();
const TYPE: Style = AnsiColor::Cyan.on_default();
const DATA: Style = AnsiColor::Green.on_default();
const METADATA: Style = AnsiColor::Yellow.on_default();

pub struct Printer {
    out: BufWriter<Stdout>,
    /// NDJSON instead of readable lines.
    pub json: bool,
    color: bool,
    /// Flush after every line (following commands print as events arrive).
    live: bool,
}

impl Printer {
    pub fn new(json_flag: bool) -> Printer {
        let terminal = std::io::stdout().is_terminal();
        Printer {
            out: BufWriter::new(std::io::stdout()),
            json: json_flag || !terminal,
            color: terminal && !matches!(std::env::var_os("NO_COLOR"), Some(v) if !v.is_empty()),
            live: false,
        }
    }

    /// A printer that flushes each line.
    pub fn live(json_flag: bool) -> Printer {
        let mut printer = Printer::new(json_flag);
        printer.live = true;
        printer
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_owned()
        }
    }

    pub fn line(&mut self, text: &str) -> Result<(), CliError> {
        writeln!(self.out, "{text}")?;
        if self.live {
            self.out.flush()?;
        }
        Ok(())
    }

    pub fn event(&mut self, event: &RecordedEvent) -> Result<(), CliError> {
        if self.json {
            return self.line(&event.to_json());
        }
        let mut text = format!(
            "{} {} {} {} {}",
            self.paint(DIM, &format!("#{:<6}", event.position)),
            self.paint(BOLD, &format!("{}@{}", event.stream_id, event.version)),
            self.paint(TYPE, &event.event_type),
            self.paint(DIM, &timestamp(event.epoch_us)),
            self.paint(DATA, event.data.get()),
        );
        if event.metadata.get() != "{}" {
            text.push(' ');
            text.push_str(&self.paint(METADATA, event.metadata.get()));
        }
        self.line(&text)
    }

    pub fn snapshot(&mut self, snapshot: &Snapshot) -> Result<(), CliError> {
        if self.json {
            let text = serde_json::to_string(snapshot).expect("a snapshot serialises");
            return self.line(&text);
        }
        let mut text = format!(
            "{} {} {}",
            self.paint(
                BOLD,
                &format!("{}@{}", snapshot.stream_id, snapshot.version)
            ),
            self.paint(DIM, &timestamp(snapshot.epoch_us)),
            self.paint(DATA, snapshot.data.get()),
        );
        if snapshot.metadata.get() != "{}" {
            text.push(' ');
            text.push_str(&self.paint(METADATA, snapshot.metadata.get()));
        }
        self.line(&text)
    }

    /// A JSON value: compact in NDJSON, indented for a person.
    pub fn value<T: serde::Serialize>(&mut self, value: &T) -> Result<(), CliError> {
        let text = if self.json {
            serde_json::to_string(value)
        } else {
            serde_json::to_string_pretty(value)
        }
        .map_err(|e| CliError::Failed(e.to_string()))?;
        self.line(&text)
    }

    /// A note for a person: on a terminal only, dimmed, on stderr.
    pub fn note(&self, text: &str) {
        if !self.json && std::io::stderr().is_terminal() {
            eprintln!("{}", self.paint(DIM, text));
        }
    }

    pub fn flush(&mut self) -> Result<(), CliError> {
        self.out.flush()?;
        Ok(())
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// `epoch_us` as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn timestamp(epoch_us: u64) -> String {
    let seconds = epoch_us / 1_000_000;
    let millis = (epoch_us / 1000) % 1000;
    let (days, day_seconds) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        day_seconds / 3600,
        (day_seconds / 60) % 60,
        day_seconds % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400_123_456), "2000-02-29T00:00:00.123Z");
        assert_eq!(timestamp(1_795_863_292_199_534), "2026-11-28T10:54:52.199Z");
    }
}
