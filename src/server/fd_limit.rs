//! File descriptors: the soft limit is raised to the hard limit at start, and the connection
//! limit is kept below it, so the connection past it is refused with
//! `-ERR too_many_connections` instead of hanging in the backlog while `accept` fails with
//! EMFILE. HTTP connections get their own share of the descriptors, so that a flood of them
//! (slowloris) cannot starve the protocol port, nor the protocol's connections the HTTP port.

/// Descriptors kept for everything but client connections: the listeners, epoll, the
/// runtime's own, and the sockets of connections being refused.
pub const FDS_RESERVED: u64 = 128;
/// Descriptors one store keeps open: LMDB's data and lock files, the Raft log's segments and
/// directory.
pub const FDS_PER_STORE: u64 = 32;
/// Highest soft limit asked for when the hard limit is unlimited.
const FDS_MAX: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_to_hard_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let wanted = if limit.rlim_max == libc::RLIM_INFINITY {
        nr_open().unwrap_or(FDS_MAX).min(FDS_MAX)
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(wanted);
        }
        return Ok(limit.rlim_cur);
    }
    Ok(limit.rlim_cur)
}

/// The kernel's ceiling for a process's descriptors.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// At most this fraction (1 / N) of the descriptors left for clients goes to HTTP connections
/// when there are too few for both configured limits.
pub const HTTP_FDS_SHARE_DIVISOR: usize = 4;

/// The (protocol, HTTP) connection limits that fit `fd_limit` descriptors together: the
/// configured ones, or less. When both do not fit, HTTP gets at most a quarter of what is
/// left for clients and the protocol the rest (at least one each).
pub fn connection_limits(
    configured: usize,
    configured_http: usize,
    fd_limit: u64,
    stores: usize,
) -> (usize, usize) {
    let reserved = FDS_RESERVED + FDS_PER_STORE * stores as u64;
    let fits = usize::try_from(fd_limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    if configured.saturating_add(configured_http) <= fits {
        return (configured, configured_http);
    }
    let http = configured_http.min(fits / HTTP_FDS_SHARE_DIVISOR).max(1);
    let protocol = configured.min(fits.saturating_sub(http)).max(1);
    (protocol, http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limits_leave_room_for_the_server_s_own_descriptors() {
        // 1024 - 160 reserved = 864 for clients: a quarter for HTTP, the rest for the protocol.
        assert_eq!(connection_limits(10_000, 1024, 1024, 1), (648, 216));
        assert_eq!(connection_limits(100, 100, 1024, 1), (100, 100), "both fit");
        assert_eq!(
            connection_limits(800, 100, 1024, 1),
            (764, 100),
            "the protocol gets the rest"
        );
        assert_eq!(connection_limits(100, 1024, 1024, 1), (100, 216));
        assert_eq!(
            connection_limits(100, 100, 10, 1),
            (1, 1),
            "at least one each"
        );
        let plenty = 1 << 20;
        assert_eq!(connection_limits(10_000, 1024, plenty, 1), (10_000, 1024));
    }
}
