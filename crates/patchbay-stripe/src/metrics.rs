//! Stripe call metrics: every attempt by path and status, retries by reason,
//! and the per-connection rate limiter's waits. Every label comes from a
//! closed set (a status is one of a few codes or its class), so no answer from
//! Stripe and no caller can add series; connection ids and paths never appear.

use std::time::Duration;

use reqwest::StatusCode;

use crate::rate_limit::RateClass;

/// Which way a call went to Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Built by Patchbay (test calls, actions).
    Api,
    /// The raw proxy.
    Proxy,
    /// Connect OAuth (`/oauth/token`, `/oauth/deauthorize`).
    Connect,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Proxy => "proxy",
            Self::Connect => "connect",
        }
    }
}

/// The status label: the codes Stripe documents answering with, otherwise
/// the class (`1xx`…`5xx`), or `other` beyond 599.
pub(crate) fn status_label(status: StatusCode) -> &'static str {
    const NAMED: [(u16, &str); 14] = [
        (200, "200"),
        (201, "201"),
        (400, "400"),
        (401, "401"),
        (402, "402"),
        (403, "403"),
        (404, "404"),
        (409, "409"),
        (424, "424"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    let code = status.as_u16();
    if let Some((_, label)) = NAMED.iter().find(|(named, _)| *named == code) {
        return label;
    }
    match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// One attempt that got an answer.
pub(crate) fn answered(via: Via, status: StatusCode, elapsed: Duration) {
    attempt(via, status_label(status), elapsed);
}

/// One attempt that got no answer (connection refused, timed out, cut short).
pub(crate) fn unanswered(via: Via, elapsed: Duration) {
    attempt(via, "no_answer", elapsed);
}

fn attempt(via: Via, status: &'static str, elapsed: Duration) {
    let via = via.label();
    metrics::counter!("patchbay_stripe_requests_total", "via" => via, "status" => status)
        .increment(1);
    metrics::histogram!("patchbay_stripe_request_duration_seconds", "via" => via)
        .record(elapsed.as_secs_f64());
}

/// Why a call is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryReason {
    /// A retryable status (409, 429, 5xx, or `Stripe-Should-Retry: true`).
    Status,
    /// No answer.
    NoAnswer,
}

/// One retry about to be made.
pub(crate) fn retry(via: Via, reason: RetryReason) {
    let reason = match reason {
        RetryReason::Status => "status",
        RetryReason::NoAnswer => "no_answer",
    };
    metrics::counter!("patchbay_stripe_retries_total", "via" => via.label(), "reason" => reason)
        .increment(1);
}

/// A request through the per-connection rate limiter: it went at once,
/// waited for its slot, or was refused (its slot was too far away).
pub(crate) fn rate_limited(class: RateClass, waited: Duration, refused: bool) {
    let class = match class {
        RateClass::Read => "read",
        RateClass::Write => "write",
    };
    let outcome = if refused {
        "refused"
    } else if waited >= Duration::from_millis(1) {
        "waited"
    } else {
        "immediate"
    };
    metrics::counter!("patchbay_stripe_rate_limit_total", "class" => class, "outcome" => outcome)
        .increment(1);
    if !refused {
        metrics::histogram!("patchbay_stripe_rate_limit_wait_seconds", "class" => class)
            .record(waited.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_a_closed_set() {
        let mut labels: Vec<&str> = (100..=999)
            .filter_map(|code| StatusCode::from_u16(code).ok())
            .map(status_label)
            .collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), 20, "{labels:?}");
        assert_eq!(status_label(StatusCode::from_u16(418).unwrap()), "4xx");
        assert_eq!(status_label(StatusCode::from_u16(599).unwrap()), "5xx");
        assert_eq!(status_label(StatusCode::from_u16(999).unwrap()), "other");
    }
}
