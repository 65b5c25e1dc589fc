//! Runs the Stripe test call and turns its outcome into what Patchbay records
//! (a status and last error) or answers (the error a refused creation gets).

use patchbay_core::Timestamp;
use patchbay_core::connection::{AccountDetails, ConnectionStatus, LastError, ValidationRecord};
use patchbay_stripe::{KeyOutcome, RateKey, StripeError, StripeKey};

use super::error::{ErrorKind, ServiceError};
use crate::state::AppState;

/// What the test call established.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The key works.
    Valid(Proof),
    /// Stripe refused the key, or gave no verdict.
    Refused(Refusal),
}

/// A working key's account and missing permissions.
#[derive(Debug)]
pub(crate) struct Proof {
    pub account: Option<AccountDetails>,
    pub missing_permissions: Vec<String>,
}

/// Why the key is not proven.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// `invalid` (Stripe said 401) or `error` (no verdict).
    pub status: ConnectionStatus,
    /// What is recorded on the connection.
    pub error: LastError,
    /// What a caller waiting on a creation or rotation gets.
    pub answer: ServiceError,
}

/// How long the test call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// A caller is waiting: one deadline across all attempts
    /// (`PATCHBAY_STRIPE_INTERACTIVE_DEADLINE`), then 504.
    Interactive,
    /// The background validator: the per-attempt timeout and the retries.
    Background,
}

/// Runs the test call with `key`, on the connected account `stripe_account`
/// when given (a Connect grant: `GET /v1/account` as that account).
pub(crate) async fn run(
    state: &AppState,
    key: &StripeKey,
    stripe_account: Option<&str>,
    stripe_version: Option<&str>,
    rate: Option<RateKey<'_>>,
    budget: Budget,
) -> Result<Verdict, ServiceError> {
    let call = state
        .stripe
        .check_key(key, stripe_account, stripe_version, rate);
    let outcome = match budget {
        Budget::Interactive => state.stripe.interactive(call).await,
        Budget::Background => call.await,
    };
    match outcome {
        Ok(check) => Ok(match check.outcome {
            KeyOutcome::Valid {
                account,
                missing_permissions,
            } => Verdict::Valid(Proof {
                account,
                missing_permissions,
            }),
            KeyOutcome::Invalid { .. } if stripe_account.is_some() => {
                Verdict::Refused(platform_key_invalid(check.request_id))
            }
            KeyOutcome::Invalid { .. } => Verdict::Refused(invalid(check.request_id)),
            KeyOutcome::Revoked { .. } => Verdict::Refused(revoked(check.request_id)),
        }),
        Err(StripeError::RateLimited { retry_after_ms }) => Err(ServiceError::new(
            ErrorKind::RateLimited,
            "connection_rate_limited",
            "Too many Stripe calls are queued for this connection; retry shortly.",
        )
        .with_retry_after(retry_after_ms.div_ceil(1000))),
        Err(StripeError::DeadlineExceeded { deadline }) => Err(ServiceError::new(
            ErrorKind::UpstreamTimeout,
            "stripe_timeout",
            format!(
                "Stripe did not answer the test call within {} (PATCHBAY_STRIPE_INTERACTIVE_DEADLINE), retries included. Nothing was stored or changed; retry later, or send \"validate\": false to store a new connection as pending.",
                humane(deadline)
            ),
        )),
        Err(StripeError::InvalidRequest(detail)) => Err(ServiceError::internal(&detail)),
        Err(e) => Ok(Verdict::Refused(unknown(&e))),
    }
}

/// `10s`, `1.5s` or `300ms`.
fn humane(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms > 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

fn request_id_note(request_id: Option<&str>) -> String {
    request_id
        .map(|r| format!(" Stripe request id: {r}."))
        .unwrap_or_default()
}

fn invalid(request_id: Option<String>) -> Refusal {
    let answer = ServiceError::unprocessable(
        "stripe_key_invalid",
        format!(
            "Stripe rejected this key (401): it is wrong, revoked, expired or was rolled. Nothing was stored.{}",
            request_id_note(request_id.as_deref())
        ),
    )
    .with_param("api_key");
    Refusal {
        status: ConnectionStatus::Invalid,
        error: LastError {
            code: "stripe_key_invalid".into(),
            message: "Stripe rejected the key (401): it is wrong, revoked, expired or was rolled."
                .into(),
            stripe_request_id: request_id,
        },
        answer,
    }
}

fn platform_key_invalid(request_id: Option<String>) -> Refusal {
    let message = "Stripe rejected the tenant's Connect platform key (401): it was rolled or revoked. Configure the new one with PUT /api/v1/integrations/stripe.";
    Refusal {
        status: ConnectionStatus::Invalid,
        error: LastError {
            code: "platform_key_invalid".into(),
            message: message.into(),
            stripe_request_id: request_id.clone(),
        },
        answer: ServiceError::unprocessable(
            "platform_key_invalid",
            format!("{message}{}", request_id_note(request_id.as_deref())),
        ),
    }
}

fn revoked(request_id: Option<String>) -> Refusal {
    let message = "The connected account removed this platform's access (deauthorized the Connect grant); connect it again to use it.";
    Refusal {
        status: ConnectionStatus::Revoked,
        error: LastError {
            code: "stripe_access_revoked".into(),
            message: message.into(),
            stripe_request_id: request_id.clone(),
        },
        answer: ServiceError::unprocessable(
            "stripe_access_revoked",
            format!("{message}{}", request_id_note(request_id.as_deref())),
        ),
    }
}

fn unknown(e: &StripeError) -> Refusal {
    let request_id = e.request_id().map(str::to_owned);
    let (code, kind, message) = match e {
        StripeError::Unreachable { message, .. } => (
            "stripe_unreachable",
            ErrorKind::UpstreamFailed,
            format!("Stripe could not be reached for the test call ({message})."),
        ),
        StripeError::Api { status: 429, .. } => (
            "stripe_rate_limited",
            ErrorKind::UpstreamRateLimited,
            "Stripe rate-limited the test call (429) even after retries.".to_owned(),
        ),
        StripeError::Api { status, .. } if *status >= 500 => (
            "stripe_unavailable",
            ErrorKind::UpstreamFailed,
            format!("Stripe failed the test call with {status} even after retries."),
        ),
        other => (
            "stripe_unexpected_response",
            ErrorKind::UpstreamFailed,
            format!("Stripe answered the test call in an unexpected way: {other}."),
        ),
    };
    let mut answer = ServiceError::new(
        kind,
        code,
        format!(
            "{message} Nothing was stored; retry, or send \"validate\": false to store the connection as pending.{}",
            request_id_note(request_id.as_deref())
        ),
    );
    if kind == ErrorKind::UpstreamRateLimited {
        answer = answer.with_retry_after(2);
    }
    Refusal {
        status: ConnectionStatus::Error,
        error: LastError {
            code: code.into(),
            message,
            stripe_request_id: request_id,
        },
        answer,
    }
}

impl Verdict {
    /// The record to store for this verdict.
    pub(crate) fn record(&self, at: Timestamp) -> ValidationRecord {
        let (status, account, missing_permissions, last_error) = match self {
            Verdict::Valid(proof) => (
                ConnectionStatus::Active,
                proof.account.clone(),
                proof.missing_permissions.clone(),
                None,
            ),
            Verdict::Refused(refusal) => (
                refusal.status,
                None,
                Vec::new(),
                Some(refusal.error.clone()),
            ),
        };
        ValidationRecord {
            status,
            account,
            missing_permissions,
            validated_at: at,
            last_error,
        }
    }
}
