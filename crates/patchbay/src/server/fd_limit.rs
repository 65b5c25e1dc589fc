//! The process's file-descriptor limit: raised to the hard limit at start, and
//! the connection cap kept below it so that the database, Stripe calls and the
//! listener always find a descriptor.

use tracing::{info, warn};

/// Descriptors kept back from client connections.
const RESERVED: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the connection
/// cap that fits under it (`wanted`, or less with a warning).
pub fn raise_and_fit(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => {
                info!(nofile = limit, "file-descriptor limit");
                let room =
                    usize::try_from(limit.saturating_sub(RESERVED).max(1)).unwrap_or(usize::MAX);
                if room < wanted {
                    warn!(
                        nofile = limit,
                        max_connections = room,
                        "PATCHBAY_MAX_CONNECTIONS lowered to fit the file-descriptor limit; raise the hard limit (ulimit -Hn) for more"
                    );
                    return room;
                }
            }
            Err(e) => warn!(error = %e, "cannot read or raise the file-descriptor limit"),
        }
    }
    wanted
}
