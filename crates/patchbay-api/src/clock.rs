//! The time the API-key verifier reads: wall-clock time for key expiry,
//! monotonic time for cache lifetimes. Servers use [`SystemClock`]; tests use
//! an [`OffsetClock`] and move it forward instead of sleeping.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use parking_lot::Mutex;
use patchbay_core::Timestamp;
use patchbay_core::time::{add_seconds, now};

/// A source of time.
pub trait Clock: Send + Sync + Debug {
    /// Wall-clock time, to microseconds.
    fn now(&self) -> Timestamp;
    /// Monotonic time.
    fn instant(&self) -> Instant;
}

/// The machine's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// Real time plus an offset that only grows: [`OffsetClock::advance`] makes
/// time pass at once, for tests. Both clocks move by the same amount.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset: Mutex<Duration>,
}

impl OffsetClock {
    /// Moves both clocks forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock() += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock()
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let offset = self.offset();
        let seconds = i64::try_from(offset.as_secs()).unwrap_or(i64::MAX);
        let shifted = add_seconds(now(), seconds);
        shifted
            .checked_add_signed(TimeDelta::microseconds(i64::from(offset.subsec_micros())))
            .unwrap_or(shifted)
    }

    fn instant(&self) -> Instant {
        Instant::now() + self.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_clock_moves_both_clocks_by_the_offset() {
        let clock = OffsetClock::default();
        let (wall, mono) = (now(), Instant::now());
        clock.advance(Duration::from_millis(90_500));
        clock.advance(Duration::from_secs(10));
        let (shifted_wall, shifted_mono) = (clock.now(), clock.instant());
        let (wall_after, mono_after) = (now(), Instant::now());
        let expected = Duration::from_millis(100_500);
        assert!(shifted_mono >= mono + expected && shifted_mono <= mono_after + expected);
        let expected = TimeDelta::milliseconds(100_500);
        assert!(shifted_wall >= wall + expected && shifted_wall <= wall_after + expected);
    }
}
