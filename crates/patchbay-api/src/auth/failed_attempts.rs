//! Throttles guessing: after [`MAX_FAILURES`] wrong secrets for one key id
//! within [`WINDOW`], further tokens for that key id are refused without
//! running argon2id until the window ends. Key ids are public (they appear in
//! listings and in every token), so without this anyone could make a replica
//! spend an argon2id run per request on a real key id.
//!
//! The rightful holder is not locked out on a replica that has verified the
//! key before: a token whose digest matches the verified-key cache never gets
//! here. Failures for key ids that do not exist are not recorded (they cost no
//! argon2id), so random ids cannot fill the table.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use patchbay_core::ApiKeyId;
use tokio::time::Instant;

/// Wrong secrets allowed per key id within one window.
pub const MAX_FAILURES: u32 = 10;
/// The counting window, and the longest a lock lasts.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Key ids tracked at once; beyond it finished windows are dropped first.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl Window {
    fn ends(&self) -> Instant {
        self.started + WINDOW
    }
}

/// Failed verifications per key id, on this replica.
#[derive(Debug, Default)]
pub struct FailedAttempts {
    windows: Mutex<HashMap<ApiKeyId, Window>>,
}

impl FailedAttempts {
    /// `Err(retry_after)` while `key_id` is locked.
    pub fn check(&self, key_id: ApiKeyId, now: Instant) -> Result<(), Duration> {
        let windows = self.windows.lock();
        match windows.get(&key_id) {
            Some(w) if w.failures >= MAX_FAILURES && w.ends() > now => Err(w.ends() - now),
            _ => Ok(()),
        }
    }

    /// Counts a wrong secret for an existing key id; true when this one locks it.
    pub fn record(&self, key_id: ApiKeyId, now: Instant) -> bool {
        let mut windows = self.windows.lock();
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&key_id) {
            windows.retain(|_, w| w.ends() > now);
            if windows.len() >= MAX_TRACKED {
                // Only reachable with 100,000 real key ids under attack at once;
                // forgetting beats growing without bound.
                windows.clear();
            }
        }
        let window = windows.entry(key_id).or_insert(Window {
            started: now,
            failures: 0,
        });
        if window.ends() <= now {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
        window.failures == MAX_FAILURES
    }

    /// The right secret was presented: start counting afresh.
    pub fn clear(&self, key_id: ApiKeyId) {
        self.windows.lock().remove(&key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_until_the_window_ends() {
        let attempts = FailedAttempts::default();
        let key = ApiKeyId::new();
        let other = ApiKeyId::new();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert!(attempts.check(key, t0).is_ok(), "locked after {i} failures");
            let locks = attempts.record(key, t0 + Duration::from_secs(u64::from(i)));
            assert_eq!(locks, i + 1 == MAX_FAILURES);
        }
        let at = t0 + Duration::from_secs(20);
        assert_eq!(attempts.check(key, at), Err(Duration::from_secs(40)));
        assert!(
            attempts.check(other, at).is_ok(),
            "another key id is not locked"
        );
        assert!(
            attempts.check(key, t0 + WINDOW).is_ok(),
            "the lock ends with the window"
        );
    }

    #[test]
    fn a_new_window_counts_from_zero() {
        let attempts = FailedAttempts::default();
        let key = ApiKeyId::new();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            attempts.record(key, t0);
        }
        let later = t0 + WINDOW + Duration::from_secs(1);
        attempts.record(key, later);
        assert!(attempts.check(key, later).is_ok());
    }

    #[test]
    fn success_clears_the_count() {
        let attempts = FailedAttempts::default();
        let key = ApiKeyId::new();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            attempts.record(key, t0);
        }
        assert!(attempts.check(key, t0).is_err());
        attempts.clear(key);
        assert!(attempts.check(key, t0).is_ok());
    }
}
