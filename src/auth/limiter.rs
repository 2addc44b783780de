//! Slows down guessing: each failed authentication from an address makes that address's next
//! failure wait longer before its answer (and its connection's close).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The wait after a first failure: long enough to cap guessing at a few tries a second per
/// connection, short enough that a mistyped password is not a punishment.
pub const AUTH_FAILURE_DELAY_MS: u64 = 250;
/// The wait doubles with each failure from the same address up to this.
pub const AUTH_FAILURE_DELAY_MAX_MS: u64 = 4_000;
/// An address's failures are forgotten after this long without another.
pub const AUTH_FAILURE_WINDOW_MS: u64 = 60_000;
/// Addresses remembered at once; past it the oldest half is forgotten (a bounded table, even
/// under a spread-out attack).
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;

#[derive(Default)]
pub struct FailureLimiter {
    by_address: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureLimiter {
    /// Records a failure from `address` (if known) and returns how long to wait before
    /// answering it.
    pub fn failed(&self, address: Option<IpAddr>) -> Duration {
        let Some(address) = address else {
            return Duration::from_millis(AUTH_FAILURE_DELAY_MS);
        };
        let mut table = self.by_address.lock().expect("limiter mutex");
        let now = Instant::now();
        let window = Duration::from_millis(AUTH_FAILURE_WINDOW_MS);
        if table.len() >= MAX_TRACKED_ADDRESSES {
            table.retain(|_, (_, last)| now.duration_since(*last) < window);
            if table.len() >= MAX_TRACKED_ADDRESSES {
                let mut lasts: Vec<Instant> = table.values().map(|(_, last)| *last).collect();
                lasts.sort();
                let cutoff = lasts[lasts.len() / 2];
                table.retain(|_, (_, last)| *last > cutoff);
            }
        }
        let entry = table.entry(address).or_insert((0, now));
        if now.duration_since(entry.1) >= window {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        delay_for(entry.0)
    }
}

/// The wait after the `failures`-th failure in a row.
pub fn delay_for(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let delay_ms = AUTH_FAILURE_DELAY_MS.saturating_mul(1 << doublings);
    Duration::from_millis(delay_ms.min(AUTH_FAILURE_DELAY_MAX_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_address_up_to_the_cap() {
        let limiter = FailureLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(limiter.failed(Some(a)), Duration::from_millis(250));
        assert_eq!(limiter.failed(Some(a)), Duration::from_millis(500));
        assert_eq!(limiter.failed(Some(a)), Duration::from_millis(1000));
        assert_eq!(limiter.failed(Some(b)), Duration::from_millis(250));
        assert_eq!(
            delay_for(100),
            Duration::from_millis(AUTH_FAILURE_DELAY_MAX_MS)
        );
    }
}
