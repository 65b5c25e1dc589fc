//! The test call: proves a key works with the cheapest reads Stripe offers, and
//! learns what it can about the account.
//!
//! A secret key reads `GET /v1/account` (id, name, country, currency). A restricted
//! key usually lacks the account permission, so a short list of reads follows;
//! 200 proves the key, 403 proves it too (valid, but without that permission,
//! which is recorded), 401 proves it invalid. An endpoint the upstream does not
//! have (404, as on local fakes) is skipped. The first 200 ends the probe.
//!
//! On a connected account (`Stripe-Account`, a Connect grant), a 401 or 403 that
//! says the platform key has no access to the account means the account
//! removed the platform (deauthorized): the grant is revoked, not the key.

use patchbay_core::connection::AccountDetails;

use crate::account::Account;
use crate::client::RateKey;
use crate::keys::{KeyKind, StripeKey};
use crate::redact::Redacted;
use crate::{StripeClient, StripeError, StripeRequest};

/// The probes, in order: the account first (it names the account), then cheap lists.
const PROBES: [(&str, &[(&str, &str)]); 3] = [
    ("/v1/account", &[]),
    ("/v1/balance", &[]),
    ("/v1/customers", &[("limit", "1")]),
];

/// What the test call found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    /// Valid or not.
    pub outcome: KeyOutcome,
    /// `Request-Id` of the deciding call.
    pub request_id: Option<String>,
}

/// Valid or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Stripe accepted the key.
    Valid {
        /// The account, when the key may read it.
        account: Option<AccountDetails>,
        /// Restricted-key permissions found missing (`rak_balance_read`).
        missing_permissions: Vec<String>,
    },
    /// Stripe rejected the key (401): wrong, revoked or rolled.
    Invalid {
        /// Stripe's message, masked.
        message: Option<Redacted>,
    },
    /// The key works but may no longer act on the connected account: the
    /// account disconnected the platform (Connect grants only).
    Revoked {
        /// Stripe's message, masked.
        message: Option<Redacted>,
    },
}

/// Whether an error answer on a connected-account call says the platform has
/// no access to that account (Stripe: 401/403, code `account_invalid`, "does
/// not have access to account 'acct_…' … Application access may have been revoked").
pub fn is_account_access_revoked(status: u16, error: Option<&crate::ApiErrorBody>) -> bool {
    if !matches!(status, 401 | 403) {
        return false;
    }
    let Some(error) = error else {
        return false;
    };
    let code = error.code.as_ref().map(|c| c.as_str());
    let message = error.message.as_ref().map_or("", |m| m.as_str());
    code == Some("account_invalid")
        || message.contains("does not have access to account")
        || message.contains("Application access may have been revoked")
}

impl StripeClient {
    /// Runs the test call for `key`, optionally on a connected account and with a
    /// pinned version. `Err` when Stripe could not give an answer (unreachable,
    /// 5xx or 429 after retries, or an answer that fits no rule above).
    pub async fn check_key(
        &self,
        key: &StripeKey,
        stripe_account: Option<&str>,
        stripe_version: Option<&str>,
        rate: Option<RateKey<'_>>,
    ) -> Result<KeyCheck, StripeError> {
        let mut missing = Vec::new();
        let mut last_request_id = None;
        for (path, query) in PROBES {
            // A secret key has every permission: past the account, only a 404
            // from an upstream without /v1/account sends it on to the next probe.
            let request = StripeRequest::get(path, query)
                .on_account(stripe_account.map(str::to_owned))
                .with_version(stripe_version.map(str::to_owned));
            let response = self.send(key.secret(), request, rate).await?;
            last_request_id = response.request_id.clone();
            if stripe_account.is_some() {
                let error = response.error_body();
                if is_account_access_revoked(response.status.as_u16(), error.as_ref()) {
                    return Ok(KeyCheck {
                        outcome: KeyOutcome::Revoked {
                            message: error.and_then(|e| e.message),
                        },
                        request_id: response.request_id,
                    });
                }
            }
            match response.status.as_u16() {
                200 => {
                    let account = if path == "/v1/account" {
                        Some(
                            response
                                .json::<Account>()?
                                .into_details(Some(key.secret()))?,
                        )
                    } else {
                        None
                    };
                    return Ok(KeyCheck {
                        outcome: KeyOutcome::Valid {
                            account,
                            missing_permissions: missing,
                        },
                        request_id: response.request_id,
                    });
                }
                401 => {
                    let message = response.error_body().and_then(|e| e.message);
                    return Ok(KeyCheck {
                        outcome: KeyOutcome::Invalid { message },
                        request_id: response.request_id,
                    });
                }
                403 => {
                    let message = response
                        .error_body()
                        .and_then(|e| e.message)
                        .unwrap_or_default();
                    missing.push(permission_in(&message).unwrap_or_else(|| format!("GET {path}")));
                    if key.kind() == KeyKind::Secret {
                        break;
                    }
                }
                404 => {}
                _ => return Err(response.to_error()),
            }
        }
        if missing.is_empty() {
            return Err(StripeError::InvalidResponse(Redacted::ours(
                "the Stripe API base answered none of the test calls (/v1/account, /v1/balance, /v1/customers): is PATCHBAY_STRIPE_API_BASE right?",
            )));
        }
        Ok(KeyCheck {
            outcome: KeyOutcome::Valid {
                account: None,
                missing_permissions: missing,
            },
            request_id: last_request_id,
        })
    }
}

/// The `rak_…` permission a restricted-key 403 message names.
pub fn missing_permission(message: &str) -> Option<String> {
    permission_in(message)
}

/// The `rak_…` permission a 403 message names.
fn permission_in(message: &str) -> Option<String> {
    let start = message.find("rak_")?;
    let name: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect();
    (name.len() > 4).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_permission_in_stripes_message() {
        let m = "The provided key 'rk_test_***1234' does not have the required permissions for this endpoint on account 'acct_1'. Having the 'rak_balance_read' permission would allow this request to continue.";
        assert_eq!(permission_in(m).as_deref(), Some("rak_balance_read"));
        assert_eq!(permission_in("no permission named"), None);
        assert_eq!(permission_in("rak_"), None);
    }

    #[test]
    fn a_connected_account_without_access_is_revoked() {
        let body = |json: &str| crate::ApiErrorBody::parse(json.as_bytes(), None);
        let revoked = body(
            r#"{"error":{"type":"invalid_request_error","code":"account_invalid","message":"The provided key 'sk_test_***1234' does not have access to account 'acct_1' (or that account does not exist). Application access may have been revoked."}}"#,
        );
        assert!(is_account_access_revoked(403, revoked.as_ref()));
        assert!(is_account_access_revoked(401, revoked.as_ref()));
        assert!(!is_account_access_revoked(500, revoked.as_ref()));
        let bad_key = body(
            r#"{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: sk_test_****1234"}}"#,
        );
        assert!(!is_account_access_revoked(401, bad_key.as_ref()));
        assert!(!is_account_access_revoked(401, None));
    }
}
