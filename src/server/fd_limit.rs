//! File descriptors: the soft limit is raised to the hard limit at start, and the connection
//! limit is kept below it, so the connection past it is refused with
//! `-ERR too_many_connections` instead of hanging in the backlog while `accept` fails with
//! EMFILE.

/// Descriptors kept for everything but client connections: the listeners, epoll, the
/// runtime's own, HTTP requests (`/metrics`, `/health`), and the socket of a connection being
/// refused.
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

/// The connection limit that fits `fd_limit` descriptors: `configured`, or less.
pub fn connection_limit(configured: usize, fd_limit: u64, stores: usize) -> usize {
    let reserved = FDS_RESERVED + FDS_PER_STORE * stores as u64;
    let fits = usize::try_from(fd_limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    configured.min(fits.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_room_for_the_server_s_own_descriptors() {
        assert_eq!(connection_limit(10_000, 1024, 1), 1024 - 160);
        assert_eq!(connection_limit(100, 1024, 1), 100);
        assert_eq!(connection_limit(100, 10, 1), 1, "at least one");
    }
}
