//! Raising the open-file limit, which a load test with thousands of sockets
//! (ours and the servers', which inherit it) would otherwise hit.

use std::sync::Once;

static RAISED: Once = Once::new();

/// Raises this process's soft `RLIMIT_NOFILE` to the hard limit, once.
/// Children spawned afterwards inherit it. Best effort.
pub fn raise_fd_limit() {
    RAISED.call_once(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    });
}
