//! The generic cell rate algorithm: one instant per tenant (the theoretical
//! arrival time, TAT) instead of a bucket refilled by a timer. A request at
//! `now` is allowed if `TAT - now` is at most the tolerance `(burst - 1) × T`
//! (`T` = one request's share of a second), and then moves TAT by `T`.

use std::time::{Duration, Instant};

/// A rate: requests per second on average, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second (at least 1).
    pub per_second: u32,
    /// Requests allowed at once (at least 1).
    pub burst: u32,
}

impl Rate {
    /// One request's share of a second (`T`).
    fn interval(self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }

    /// How far ahead of now TAT may run (`(burst - 1) × T`).
    fn tolerance(self) -> Duration {
        self.interval() * (self.burst.max(1) - 1)
    }

    /// The window of the advertised policy, in whole seconds: the time an
    /// emptied burst takes to refill (at least 1 s).
    pub fn window_seconds(self) -> u64 {
        u64::from(self.burst.max(1))
            .div_ceil(u64::from(self.per_second.max(1)))
            .max(1)
    }
}

/// What the limiter decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allowed {
        /// Requests that could still be sent at once now.
        remaining: u32,
        /// Until the whole burst is available again.
        reset: Duration,
    },
    /// Refused.
    Limited {
        /// Until one more request would be allowed.
        retry_after: Duration,
        /// Until the whole burst is available again.
        reset: Duration,
    },
}

/// One tenant's state.
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    tat: Instant,
}

impl Gcra {
    /// A fresh state: the whole burst available at `now`.
    pub fn new(now: Instant) -> Self {
        Self { tat: now }
    }

    /// Whether the whole burst is available at `now` (the state says nothing
    /// a fresh one would not, so it may be forgotten).
    pub fn is_full(&self, now: Instant) -> bool {
        self.tat <= now
    }

    /// Decides one request at `now`, and counts it if allowed.
    pub fn check(&mut self, rate: Rate, now: Instant) -> Decision {
        let interval = rate.interval();
        let tolerance = rate.tolerance();
        let tat = self.tat.max(now);
        let ahead = tat - now;
        if ahead > tolerance {
            return Decision::Limited {
                retry_after: ahead - tolerance,
                reset: ahead,
            };
        }
        self.tat = tat + interval;
        let spare = tolerance - ahead;
        let remaining = spare.as_nanos() / interval.as_nanos().max(1);
        Decision::Allowed {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset: ahead + interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_second: 10,
        burst: 3,
    };

    fn allowed(d: Decision) -> u32 {
        match d {
            Decision::Allowed { remaining, .. } => remaining,
            Decision::Limited { .. } => panic!("refused: {d:?}"),
        }
    }

    #[test]
    fn a_burst_is_allowed_at_once_then_the_rate() {
        let t0 = Instant::now();
        let mut g = Gcra::new(t0);
        assert_eq!(allowed(g.check(RATE, t0)), 2);
        assert_eq!(allowed(g.check(RATE, t0)), 1);
        assert_eq!(allowed(g.check(RATE, t0)), 0);
        let Decision::Limited { retry_after, reset } = g.check(RATE, t0) else {
            panic!("the fourth request at once is refused");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        assert_eq!(reset, Duration::from_millis(300));
        // A refusal is not counted: one interval later one more request passes.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(allowed(g.check(RATE, t1)), 0);
        assert!(matches!(g.check(RATE, t1), Decision::Limited { .. }));
        // After a full refill the whole burst is back.
        let t2 = t1 + Duration::from_millis(300);
        assert!(g.is_full(t2));
        assert_eq!(allowed(g.check(RATE, t2)), 2);
    }

    #[test]
    fn a_steady_stream_at_the_rate_is_never_refused() {
        let t0 = Instant::now();
        let mut g = Gcra::new(t0);
        for i in 0..1000u32 {
            let at = t0 + Duration::from_millis(100) * i;
            allowed(g.check(RATE, at));
        }
    }

    #[test]
    fn a_burst_of_one_spaces_requests_by_the_interval() {
        let rate = Rate {
            per_second: 4,
            burst: 1,
        };
        let t0 = Instant::now();
        let mut g = Gcra::new(t0);
        assert_eq!(allowed(g.check(rate, t0)), 0);
        let Decision::Limited { retry_after, .. } = g.check(rate, t0 + Duration::from_millis(100))
        else {
            panic!("too soon");
        };
        assert_eq!(retry_after, Duration::from_millis(150));
        allowed(g.check(rate, t0 + Duration::from_millis(250)));
    }

    #[test]
    fn the_policy_window_is_the_refill_time_in_whole_seconds() {
        let w = |per_second, burst| Rate { per_second, burst }.window_seconds();
        assert_eq!(w(200, 400), 2);
        assert_eq!(w(3, 10), 4);
        assert_eq!(w(100, 1), 1);
    }
}
