//! Process limits a server needs raised before it serves.
//!
//! Every agent stream is a socket, so a session-store replica needs a file descriptor per connected host.
//! Container runtimes and systemd commonly start processes with a soft `RLIMIT_NOFILE` of 1,024 and a much
//! higher hard limit (containerd 2 and Docker 25 give 1,024 / 524,288; systemd 240+ 1,024 / 524,288):
//! at 1,024 a replica would refuse the 1,000th host. Raising the soft limit to the hard one is what the
//! hard limit is for (Go's runtime does the same at start); no privilege is needed.

/// The soft and hard `RLIMIT_NOFILE` before and after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit found at start.
    pub before: u64,
    /// The soft limit now (the hard limit, when raising worked).
    pub after: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises this process's soft open-files limit to its hard limit. `None` where the limit cannot be read.
pub fn raise_fd_limit() -> Option<FdLimit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit; getrlimit only writes it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let before = limit.rlim_cur;
    let hard = limit.rlim_max;
    if limit.rlim_cur >= limit.rlim_max {
        return Some(FdLimit { before, after: before, hard });
    }
    let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
    // SAFETY: `raised` is a valid rlimit; setrlimit only reads it.
    let after = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 { hard } else { before };
    Some(FdLimit { before, after, hard })
}

/// [`raise_fd_limit`], logged: at info what it did, at warn when the soft limit stays low.
pub fn raise_fd_limit_logged() {
    match raise_fd_limit() {
        Some(FdLimit { before, after, hard }) if after > before => {
            tracing::info!(before, after, hard, "open files limit raised")
        }
        Some(FdLimit { after, hard, .. }) if after < 16_384 => tracing::warn!(
            soft = after,
            hard,
            "open files limit is low: every agent stream takes one (raise LimitNOFILE or the container's nofile)"
        ),
        Some(_) => {}
        None => tracing::warn!("open files limit unreadable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_fd_limit().expect("RLIMIT_NOFILE is readable on Linux");
        assert!(limit.after >= limit.before);
        assert_eq!(limit.after, limit.hard, "an unprivileged process may raise its soft limit to the hard one");
        assert_eq!(raise_fd_limit().map(|again| again.before), Some(limit.hard), "and it stays raised");
    }
}
