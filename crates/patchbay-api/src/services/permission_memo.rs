//! What this replica last recorded about a connection's restricted-key
//! permissions, so an action does not write the same observation to the
//! database on every call.
//!
//! Actions learn a permission from each answer (2xx: granted; 403 naming a
//! `rak_…` permission: missing). A changed answer is always written at once;
//! an unchanged one is written again only after [`REFRESH`], so the stored
//! `observed_at` and Stripe request id stay at most that old while a busy
//! connection's calls cost no write. Bounded: when full, the memo starts over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use patchbay_core::ConnectionId;

/// How long an unchanged observation goes unwritten.
pub const REFRESH: Duration = Duration::from_secs(300);

/// Most connections remembered.
const CAPACITY: usize = 20_000;

/// Per permission: whether it was granted, and when that was written.
type Written = HashMap<String, (bool, Instant)>;

/// The memo.
#[derive(Debug, Default)]
pub struct PermissionMemo {
    seen: Mutex<HashMap<ConnectionId, Written>>,
}

impl PermissionMemo {
    /// Whether an observation must be written: it differs from the last one
    /// written, or that one is older than [`REFRESH`].
    pub fn should_record(
        &self,
        id: ConnectionId,
        permission: &str,
        granted: bool,
        now: Instant,
    ) -> bool {
        let seen = self.seen.lock();
        !matches!(
            seen.get(&id).and_then(|m| m.get(permission)),
            Some(&(was, at)) if was == granted && now.duration_since(at) < REFRESH
        )
    }

    /// Notes an observation as written.
    pub fn recorded(&self, id: ConnectionId, permission: &str, granted: bool, now: Instant) {
        let mut seen = self.seen.lock();
        if seen.len() >= CAPACITY {
            seen.clear();
        }
        seen.entry(id)
            .or_default()
            .insert(permission.to_owned(), (granted, now));
    }

    /// Forgets a connection (its credential changed: what held may not).
    pub fn forget(&self, id: ConnectionId) {
        self.seen.lock().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_observations_are_written_once_per_refresh() {
        let memo = PermissionMemo::default();
        let id = ConnectionId::new();
        let t0 = Instant::now();
        assert!(memo.should_record(id, "rak_customer_read", true, t0));
        memo.recorded(id, "rak_customer_read", true, t0);
        assert!(!memo.should_record(id, "rak_customer_read", true, t0 + Duration::from_secs(1)));
        assert!(
            memo.should_record(id, "rak_customer_read", false, t0),
            "a change is written"
        );
        assert!(
            memo.should_record(id, "rak_charge_read", true, t0),
            "per permission"
        );
        assert!(memo.should_record(id, "rak_customer_read", true, t0 + REFRESH));
        memo.forget(id);
        assert!(memo.should_record(id, "rak_customer_read", true, t0));
    }
}
