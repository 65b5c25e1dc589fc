//! Timestamps as Patchbay stores and shows them: UTC, microsecond precision
//! (what PostgreSQL keeps), so a value read back equals the value written.

use chrono::{DateTime, SubsecRound, Utc};

/// A point in time, UTC.
pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to microseconds.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// A timestamp `seconds` from `from` (negative goes back), saturating at the far ends.
pub fn add_seconds(from: Timestamp, seconds: i64) -> Timestamp {
    from.checked_add_signed(chrono::TimeDelta::seconds(seconds))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
