//! Per-connection rate limiting at Stripe's limits, so a burst queues briefly
//! instead of drawing 429s. Reads and writes are counted apart.
//!
//! A sliding log: each key keeps the start times of its last `limit` requests
//! (some of them reserved in the near future). A new request starts no earlier
//! than one window after the request `limit` places before it, so no window of
//! that length ever holds more than `limit` starts. Slots are handed out in
//! arrival order, so waiting callers are served first come, first served.
//!
//! This limiter counts for its own process; [`Limiter`] lets the client use
//! one shared by every replica instead (see [`crate::rate_limit_redis`]).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

/// Hands out request slots under Stripe's limits; the client waits with it
/// before each attempt and does not care where the counting happens.
#[async_trait]
pub trait Limiter: Send + Sync + std::fmt::Debug {
    /// Waits for a slot for `key` (a connection, in one mode, reads or
    /// writes apart). Fails at once, reserving nothing, when the slot is
    /// further away than the limits' `max_wait`; the error says when to retry.
    async fn acquire(&self, key: &str, livemode: bool, class: RateClass) -> Result<(), Duration>;
}

/// Requests per window for each mode and class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live-mode requests per window, each of reads and writes (Stripe: 100/s).
    pub live: u32,
    /// Test-mode requests per window, each of reads and writes (Stripe: 25/s).
    pub test: u32,
    /// The window. Slightly over a second, so clock jitter between here and
    /// Stripe never lets one of Stripe's one-second windows see too many.
    pub window: Duration,
    /// Longest a request may wait for its slot before failing fast.
    pub max_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            live: 100,
            test: 25,
            window: Duration::from_millis(1050),
            max_wait: Duration::from_secs(10),
        }
    }
}

/// Read or write, as Stripe counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// GET and friends.
    Read,
    /// Everything that changes something.
    Write,
}

/// The in-process sliding log (see the module documentation).
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: Limits,
    logs: Mutex<HashMap<(String, bool, RateClass), VecDeque<Instant>>>,
}

#[async_trait]
impl Limiter for RateLimiter {
    async fn acquire(&self, key: &str, livemode: bool, class: RateClass) -> Result<(), Duration> {
        self.wait_for_slot(key, livemode, class).await
    }
}

impl RateLimiter {
    /// A limiter counting in this process.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            logs: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot for `key`. Fails at once, reserving nothing, when the
    /// slot is further away than `max_wait`; the error says when to retry.
    pub(crate) async fn wait_for_slot(
        &self,
        key: &str,
        livemode: bool,
        class: RateClass,
    ) -> Result<(), Duration> {
        let now = Instant::now();
        let slot = self.reserve(key, livemode, class, now)?;
        // A free slot is taken at once: tokio's timer rounds every deadline up
        // to its next millisecond tick, so sleeping until "now" would add up
        // to a millisecond to every call that is not limited at all.
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
        Ok(())
    }

    fn reserve(
        &self,
        key: &str,
        livemode: bool,
        class: RateClass,
        now: Instant,
    ) -> Result<Instant, Duration> {
        let limit = if livemode {
            self.limits.live
        } else {
            self.limits.test
        }
        .max(1) as usize;
        let mut logs = self.logs.lock();
        if logs.len() > 10_000 {
            // Forget keys idle for a whole window; they cannot constrain anyone.
            let window = self.limits.window;
            logs.retain(|_, log| log.back().is_some_and(|t| *t + window > now));
        }
        let log = logs.entry((key.to_owned(), livemode, class)).or_default();
        let slot = if log.len() < limit {
            now.max(log.back().copied().unwrap_or(now))
        } else {
            now.max(log[log.len() - limit] + self.limits.window)
        };
        if slot > now + self.limits.max_wait {
            return Err(slot - now);
        }
        log.push_back(slot);
        while log.len() > limit {
            log.pop_front();
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(test: u32, max_wait_ms: u64) -> RateLimiter {
        RateLimiter::new(Limits {
            live: 100,
            test,
            window: Duration::from_millis(1000),
            max_wait: Duration::from_millis(max_wait_ms),
        })
    }

    #[test]
    fn no_window_holds_more_than_the_limit() {
        let l = limiter(25, 60_000);
        let start = Instant::now();
        let slots: Vec<Instant> = (0..200)
            .map(|_| l.reserve("conn", false, RateClass::Read, start).unwrap())
            .collect();
        for (i, s) in slots.iter().enumerate() {
            let in_window = slots[i..]
                .iter()
                .take_while(|t| **t < *s + Duration::from_millis(1000))
                .count();
            assert!(in_window <= 25, "window from slot {i} holds {in_window}");
        }
        // 200 requests at 25 per second need seven more windows after the first.
        assert_eq!(slots[199] - start, Duration::from_millis(7000));
    }

    #[tokio::test]
    async fn a_free_slot_is_taken_without_waiting_for_the_timer() {
        use futures::FutureExt;
        let l = limiter(3, 60_000);
        for i in 0..3 {
            assert!(
                l.wait_for_slot("a", false, RateClass::Read)
                    .now_or_never()
                    .is_some(),
                "request {i} is under the limit: it must not wait for a timer tick"
            );
        }
        // The fourth must wait for the window to pass.
        assert!(
            l.wait_for_slot("a", false, RateClass::Read)
                .now_or_never()
                .is_none()
        );
    }

    #[test]
    fn classes_keys_and_modes_are_separate() {
        let l = limiter(2, 0);
        let now = Instant::now();
        for _ in 0..2 {
            l.reserve("a", false, RateClass::Read, now).unwrap();
        }
        assert!(l.reserve("a", false, RateClass::Read, now).is_err());
        assert!(l.reserve("a", false, RateClass::Write, now).is_ok());
        assert!(l.reserve("b", false, RateClass::Read, now).is_ok());
        assert!(l.reserve("a", true, RateClass::Read, now).is_ok());
    }

    #[test]
    fn refuses_beyond_max_wait_without_reserving() {
        let l = limiter(1, 500);
        let now = Instant::now();
        l.reserve("a", false, RateClass::Read, now).unwrap();
        let wait = l.reserve("a", false, RateClass::Read, now).unwrap_err();
        assert_eq!(wait, Duration::from_millis(1000));
        // Later, once the window has passed, a slot is free at once.
        let later = now + Duration::from_millis(1000);
        assert_eq!(
            l.reserve("a", false, RateClass::Read, later).unwrap(),
            later
        );
    }
}
