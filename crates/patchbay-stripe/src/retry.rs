//! When to retry a Stripe call and how long to wait: exponential backoff with
//! jitter, on connection errors, 409 lock conflicts, 429 and 5xx, with
//! `Stripe-Should-Retry` overriding the status-based choice.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// Retry budget and backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry (doubles each time).
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// Whether a response warrants another attempt.
    pub(crate) fn should_retry_status(status: StatusCode, headers: &HeaderMap) -> bool {
        match headers
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
        {
            Some("true") => return true,
            Some("false") => return false,
            _ => {}
        }
        status == StatusCode::CONFLICT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
    }

    /// The wait before retry number `retry` (1-based): the exponential step,
    /// scaled by a random factor in [0.5, 1) so clients do not retry in step,
    /// and never less than a `Retry-After` the server asked for (capped).
    pub(crate) fn backoff(&self, retry: u32, headers: Option<&HeaderMap>) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16))
            .min(self.max_backoff);
        let jittered = exp.mul_f64(0.5 + jitter() * 0.5);
        let asked = headers
            .and_then(|h| h.get("retry-after"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(self.max_backoff));
        asked.map_or(jittered, |a| a.max(jittered))
    }
}

/// A uniform value in [0, 1).
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    // Without randomness the wait is still bounded; it just loses its spread.
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn status_and_header_decide() {
        let none = HeaderMap::new();
        for s in [409, 429, 500, 502, 503, 504] {
            assert!(
                RetryPolicy::should_retry_status(StatusCode::from_u16(s).unwrap(), &none),
                "{s}"
            );
        }
        for s in [200, 400, 401, 402, 403, 404] {
            assert!(
                !RetryPolicy::should_retry_status(StatusCode::from_u16(s).unwrap(), &none),
                "{s}"
            );
        }
        let mut no = HeaderMap::new();
        no.insert("stripe-should-retry", HeaderValue::from_static("false"));
        assert!(!RetryPolicy::should_retry_status(
            StatusCode::SERVICE_UNAVAILABLE,
            &no
        ));
        let mut yes = HeaderMap::new();
        yes.insert("stripe-should-retry", HeaderValue::from_static("true"));
        assert!(RetryPolicy::should_retry_status(
            StatusCode::BAD_REQUEST,
            &yes
        ));
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let b1 = p.backoff(1, None);
            assert!(
                b1 >= Duration::from_millis(50) && b1 < Duration::from_millis(100),
                "{b1:?}"
            );
            let b3 = p.backoff(3, None);
            assert!(
                b3 >= Duration::from_millis(200) && b3 < Duration::from_millis(400),
                "{b3:?}"
            );
            assert!(p.backoff(30, None) <= Duration::from_millis(1000));
        }
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("60"));
        assert_eq!(p.backoff(1, Some(&h)), Duration::from_millis(1000));
    }
}
