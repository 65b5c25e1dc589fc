//! Timestamps as Patchbay stores and shows them: UTC, microsecond precision
//! (what PostgreSQL keeps), so a value read back equals the value written;
//! and the bounds on timestamps clients send (1970 to ten years ahead), so
//! every timestamp written back is RFC 3339 in UTC.

use chrono::{DateTime, SubsecRound, Utc};

use crate::ValidationError;

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

/// How far ahead an accepted timestamp may lie, in years.
pub const MAX_YEARS_AHEAD: i64 = 10;

/// Checks a timestamp a client sent: not before 1970, at most
/// [`MAX_YEARS_AHEAD`] years after `now`. Whatever offset it came with, it is
/// kept (and written back) in UTC, so every timestamp Patchbay writes is
/// RFC 3339 with `Z` — a far-future value with a negative offset would
/// otherwise roll over into year 10000, which RFC 3339 cannot express.
pub fn check_accepted(
    value: Timestamp,
    param: &'static str,
    now: Timestamp,
) -> Result<Timestamp, ValidationError> {
    let latest = add_seconds(now, MAX_YEARS_AHEAD * 366 * 24 * 3600);
    if value < DateTime::<Utc>::UNIX_EPOCH || value > latest {
        return Err(ValidationError::invalid(
            param,
            format!(
                "{param} must be between 1970-01-01T00:00:00Z and {MAX_YEARS_AHEAD} years from now ({}).",
                rfc3339(latest)
            ),
        ));
    }
    Ok(value.trunc_subsecs(6))
}

/// Checks a timestamp that must also lie in the future (an expiry).
pub fn check_future(
    value: Timestamp,
    param: &'static str,
    now: Timestamp,
) -> Result<Timestamp, ValidationError> {
    let value = check_accepted(value, param, now)?;
    if value <= now {
        return Err(ValidationError::invalid(
            param,
            format!("{param} must be in the future."),
        ));
    }
    Ok(value)
}

/// RFC 3339 in UTC with a `Z`, as every response writes timestamps.
pub fn rfc3339(value: Timestamp) -> String {
    value.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A timestamp `millis` milliseconds after `from`, saturating at the far end.
pub fn add_millis(from: Timestamp, millis: u128) -> Timestamp {
    let millis = i64::try_from(millis).unwrap_or(i64::MAX);
    from.checked_add_signed(chrono::TimeDelta::milliseconds(millis))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn parse(text: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn accepted_timestamps_are_bounded_and_named() {
        let now = parse("2026-11-23T12:00:00Z");
        for bad in [
            "9999-12-31T23:59:59-05:00",
            "2037-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            let e = check_accepted(parse(bad), "expires_at", now).unwrap_err();
            assert_eq!(e.param, "expires_at", "{bad}");
            assert!(e.message.contains("10 years"), "{}", e.message);
        }
        let ok = check_accepted(parse("2027-06-01T12:00:00+02:00"), "expires_at", now).unwrap();
        assert_eq!(rfc3339(ok), "2027-06-01T10:00:00Z");
        assert!(check_accepted(Utc.timestamp_opt(0, 0).unwrap(), "t", now).is_ok());
    }

    #[test]
    fn future_means_after_now() {
        let now = parse("2026-11-23T12:00:00Z");
        assert_eq!(
            check_future(now, "expires_at", now).unwrap_err().message,
            "expires_at must be in the future."
        );
        assert!(check_future(parse("2026-11-23T12:00:01Z"), "expires_at", now).is_ok());
    }
}
