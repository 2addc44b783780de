//! Points in time on the wire: `from_time` arguments of reads (and subscriptions).
//!
//! A time is written either as microseconds since the Unix epoch (the unit of every record's
//! `epoch_us`), or as an RFC 3339 timestamp: `2026-12-02T17:00:00Z`,
//! `2026-12-02T18:00:00.250+01:00` (a fraction of up to 9 digits, truncated to microseconds;
//! `t` and `z` and a space in place of `T` are accepted, as RFC 3339 allows). Times before
//! the epoch are refused: no event can carry one.

use crate::error::ProtocolError;
use crate::line::snippet;

/// Parses a `from_time` value into microseconds since the Unix epoch.
pub fn parse_time(text: &str) -> Result<u64, ProtocolError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map_err(|_| bad_time(text));
    }
    parse_rfc3339(text.as_bytes()).ok_or_else(|| bad_time(text))
}

fn bad_time(text: &str) -> ProtocolError {
    ProtocolError::invalid_argument(format!(
        "from_time must be microseconds since the epoch or an RFC 3339 time \
         (2026-12-02T17:00:00Z), got {}",
        snippet(text.as_bytes())
    ))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `None` when malformed, out of range or before
/// the epoch.
fn parse_rfc3339(text: &[u8]) -> Option<u64> {
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let expect = |at: usize, allowed: &[u8]| text.get(at).is_some_and(|b| allowed.contains(b));
    let separators = [
        (4, &b"-"[..]),
        (7, b"-"),
        (10, b"Tt "),
        (13, b":"),
        (16, b":"),
    ];
    if !separators.iter().all(|&(at, allowed)| expect(at, allowed)) {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    // A leap second (:60) is accepted as RFC 3339 allows, and counts as the next second.
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut micros = 0u64;
    if text.get(at) == Some(&b'.') {
        let start = at + 1;
        let mut end = start;
        while text.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        for (index, &digit) in text[start..end].iter().enumerate() {
            if index < 6 {
                micros = micros * 10 + u64::from(digit - b'0');
            }
        }
        micros *= 10u64.pow(6u32.saturating_sub((end - start) as u32));
        at = end;
    }
    let offset_seconds: i64 = match text.get(at)? {
        b'Z' | b'z' if text.len() == at + 1 => 0,
        sign @ (b'+' | b'-') if text.len() == at + 6 && text[at + 3] == b':' => {
            let (hours, minutes) = (digits(at + 1..at + 3)?, digits(at + 4..at + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = (hours * 3600 + minutes * 60) as i64;
            if *sign == b'+' {
                seconds
            } else {
                -seconds
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year as i64, month as i64, day as i64);
    let local = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64;
    let utc = local - offset_seconds;
    let seconds = u64::try_from(utc).ok()?;
    seconds.checked_mul(1_000_000)?.checked_add(micros)
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_microseconds_and_rfc3339_agree() {
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(
            parse_time("1795863292199534").unwrap(),
            1_795_863_292_199_534
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time("2026-12-02T17:00:00Z").unwrap(),
            1_796_230_800_000_000
        );
        assert_eq!(
            parse_time("2026-12-02T18:00:00.25+01:00").unwrap(),
            1_796_230_800_250_000
        );
        assert_eq!(
            parse_time("2026-12-02t16:30:00.123456789-00:30").unwrap(),
            1_796_230_800_123_456
        );
        assert_eq!(
            parse_time("2024-02-29 00:00:00z").unwrap(),
            1_709_164_800_000_000
        );
    }

    #[test]
    fn malformed_times_are_refused() {
        for text in [
            "",
            "-1",
            "12a",
            "2026-12-02",
            "2026-12-02T17:00:00",
            "2026-13-02T17:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T17:00:00.Z",
            "2026-12-02T17:00:00.1234567890Z",
            "2026-12-02T17:00:00+1:00",
            "2026-12-02T17:00:00Zjunk",
            "1969-12-31T23:59:59Z",
            "99999999999999999999",
        ] {
            let error = parse_time(text).unwrap_err();
            assert_eq!(error.code.as_str(), "invalid_argument", "{text:?}");
        }
    }
}
