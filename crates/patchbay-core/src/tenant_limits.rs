//! A tenant's own limits, set by the platform admin: its request rate on
//! Patchbay's API and its concurrent Stripe calls. Each value left unset
//! (`None`) is the server's default for it.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Highest request rate or burst an override may set.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// Most concurrent Stripe calls an override may allow.
pub const MAX_CONCURRENT_UPSTREAM: u32 = 100_000;

/// A tenant's overrides; `None` is the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    /// Requests per second allowed on average.
    pub requests_per_second: Option<u32>,
    /// Requests allowed at once above that rate.
    pub burst: Option<u32>,
    /// Stripe calls made at once for the tenant's requests.
    pub max_concurrent_upstream: Option<u32>,
}

impl TenantLimits {
    /// Whether every value is the server's default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Checks one value of an override as the caller sent it: a whole number
/// from 1 to `max`, or null for the default. `param` names the field
/// (`limits.burst`).
pub fn validate_limit(
    value: Option<i64>,
    max: u32,
    param: &'static str,
) -> Result<Option<u32>, ValidationError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match u32::try_from(value) {
        Ok(v) if (1..=max).contains(&v) => Ok(Some(v)),
        _ => Err(ValidationError::invalid(
            param,
            format!(
                "{param} must be a whole number from 1 to {max}, or null for the server's default."
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_from_one_to_its_maximum_or_null() {
        assert_eq!(validate_limit(None, 10, "limits.burst").unwrap(), None);
        assert_eq!(
            validate_limit(Some(1), 10, "limits.burst").unwrap(),
            Some(1)
        );
        assert_eq!(
            validate_limit(Some(10), 10, "limits.burst").unwrap(),
            Some(10)
        );
        for bad in [0, -1, 11, i64::MAX] {
            let e = validate_limit(Some(bad), 10, "limits.burst").unwrap_err();
            assert_eq!(e.param, "limits.burst");
            assert!(e.message.contains("from 1 to 10"), "{}", e.message);
        }
    }
}
