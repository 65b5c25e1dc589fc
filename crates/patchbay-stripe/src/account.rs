//! The Stripe account behind a key: what Patchbay keeps of Stripe's account
//! object (bounded and checked, since it is stored and shown), and the rule
//! that a key rotation stays on the same account unless the caller accepts a
//! change.

use patchbay_core::connection::AccountDetails;
use secrecy::SecretString;
use serde::Deserialize;

use crate::StripeError;
use crate::redact::{Redacted, redact_to_chars};

/// Longest part after `acct_` accepted (Stripe's are 16 characters today).
pub const MAX_ACCOUNT_ID_TAIL: usize = 64;
/// Longest account name kept, in characters; longer ones are cut.
pub const MAX_ACCOUNT_NAME_CHARS: usize = 200;

/// `GET /v1/account`, the fields read.
#[derive(Deserialize)]
pub(crate) struct Account {
    id: String,
    email: Option<String>,
    country: Option<String>,
    default_currency: Option<String>,
    settings: Option<Settings>,
    business_profile: Option<BusinessProfile>,
}

#[derive(Deserialize)]
struct Settings {
    dashboard: Option<Dashboard>,
}

#[derive(Deserialize)]
struct Dashboard {
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct BusinessProfile {
    name: Option<String>,
}

/// Whether `id` is an account id: `acct_` and 1 to 64 letters and digits.
pub fn is_account_id(id: &str) -> bool {
    id.strip_prefix("acct_").is_some_and(|tail| {
        (1..=MAX_ACCOUNT_ID_TAIL).contains(&tail.len())
            && tail.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

impl Account {
    /// What is kept: a malformed id refuses the whole answer (the id decides
    /// which business a connection reaches); a malformed country or currency
    /// is dropped; the name is masked, cleaned and cut.
    pub(crate) fn into_details(
        self,
        own_key: Option<&SecretString>,
    ) -> Result<AccountDetails, StripeError> {
        if !is_account_id(&self.id) {
            return Err(StripeError::InvalidResponse(Redacted::ours(format!(
                "Stripe's answer to GET /v1/account carries a malformed account id (expected acct_ followed by 1 to {MAX_ACCOUNT_ID_TAIL} letters and digits)"
            ))));
        }
        let display = self
            .settings
            .and_then(|s| s.dashboard)
            .and_then(|d| d.display_name);
        let business = self.business_profile.and_then(|b| b.name);
        let account_name = [display, business, self.email]
            .into_iter()
            .flatten()
            .find_map(|n| clean_name(&n, own_key));
        Ok(AccountDetails {
            stripe_account_id: Some(self.id),
            account_name,
            country: self
                .country
                .filter(|c| letters(c, 2))
                .map(|c| c.to_ascii_uppercase()),
            default_currency: self
                .default_currency
                .filter(|c| letters(c, 3))
                .map(|c| c.to_ascii_lowercase()),
        })
    }
}

fn letters(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_alphabetic())
}

/// A name fit to store: masked, control characters gone, at most
/// [`MAX_ACCOUNT_NAME_CHARS`]; `None` when nothing is left.
fn clean_name(name: &str, own_key: Option<&SecretString>) -> Option<String> {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let masked = redact_to_chars(cleaned.trim(), own_key, MAX_ACCOUNT_NAME_CHARS);
    let name = masked.trim_end();
    (!name.is_empty()).then(|| name.to_owned())
}

/// How the account a new key reaches compares with the connection's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChange {
    /// The same account, proven.
    Same,
    /// Not proven the same, and the caller accepted that: record it as an
    /// account change. `None` where an account is unknown.
    Accepted {
        /// The account the connection knew.
        from: Option<String>,
        /// The account the new key reaches.
        to: Option<String>,
    },
}

/// Why a rotation is refused: a stable code and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRefusal {
    /// `account_mismatch`, `account_unverifiable` or `account_unknown`.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
}

/// The rule for rotating a connection's key: the new key must be proven to
/// reach the account the connection knows. When either account is unknown
/// (a restricted key that cannot read `/v1/account`, or a connection stored
/// without validation) nothing is proven, and the rotation is refused unless
/// the caller sets `allow_account_change`.
pub fn check_rotation(
    known: Option<&str>,
    reached: Option<&str>,
    allow_account_change: bool,
) -> Result<AccountChange, AccountRefusal> {
    const OPT_IN: &str = "To accept that the connection may move to another Stripe account, send \"allow_account_change\": true; the change is audited.";
    let refusal = match (known, reached) {
        (Some(known), Some(new)) if known == new => return Ok(AccountChange::Same),
        (Some(known), Some(new)) => AccountRefusal {
            code: "account_mismatch",
            message: format!(
                "The new key belongs to Stripe account {new}, but this connection is for {known}. Rotate to a key of {known}, or create a new connection. {OPT_IN}"
            ),
        },
        (Some(known), None) => AccountRefusal {
            code: "account_unverifiable",
            message: format!(
                "The new key cannot read its account (it lacks the 'Account' read permission), so Patchbay cannot confirm it belongs to {known}. Grant that permission to the restricted key, or rotate to a secret key. {OPT_IN}"
            ),
        },
        (None, _) => AccountRefusal {
            code: "account_unknown",
            message: format!(
                "This connection's Stripe account is not known (its key cannot read the account, or it was stored without validation), so Patchbay cannot prove the new key reaches the same account. If the current key can read its account, run POST /api/v1/connections/{{id}}/validate first; otherwise create a new connection for the new key. {OPT_IN}"
            ),
        },
    };
    if allow_account_change {
        Ok(AccountChange::Accepted {
            from: known.map(str::to_owned),
            to: reached.map(str::to_owned),
        })
    } else {
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn details(value: serde_json::Value) -> Result<AccountDetails, StripeError> {
        serde_json::from_value::<Account>(value)
            .unwrap()
            .into_details(None)
    }

    #[test]
    fn account_ids_are_acct_and_a_short_alphanumeric_tail() {
        assert!(is_account_id("acct_1Nv0FGQ9RKHgCVdK"));
        for bad in [
            "",
            "acct_",
            "acct_1Nv0/../x",
            "acct_1 2",
            "cus_1Nv0FGQ9RKHgCVdK",
            "ACCT_1",
            &format!("acct_{}", "a".repeat(65)),
        ] {
            assert!(!is_account_id(bad), "{bad}");
        }
    }

    #[test]
    fn name_prefers_the_dashboard_name() {
        let d = details(json!({
            "id": "acct_1", "email": "a@b.co", "country": "US", "default_currency": "usd",
            "settings": {"dashboard": {"display_name": "Acme"}},
            "business_profile": {"name": "Acme Inc"}
        }))
        .unwrap();
        assert_eq!(d.account_name.as_deref(), Some("Acme"));
        let d = details(json!({"id": "acct_2", "email": "a@b.co"})).unwrap();
        assert_eq!(d.account_name.as_deref(), Some("a@b.co"));
    }

    #[test]
    fn fields_are_bounded_checked_and_masked() {
        let d = details(json!({
            "id": "acct_1Acme", "country": "usa", "default_currency": "dollars",
            "settings": {"dashboard": {"display_name": format!("  \u{7}{}", "N".repeat(5000))}},
        }))
        .unwrap();
        assert_eq!(d.account_name.unwrap(), "N".repeat(MAX_ACCOUNT_NAME_CHARS));
        assert_eq!((d.country, d.default_currency), (None, None));
        let d = details(json!({
            "id": "acct_1Acme", "country": "de", "default_currency": "EUR",
            "settings": {"dashboard": {"display_name": "  "}},
            "business_profile": {"name": "Shop sk_live_51HabcDEF0123456789xyzXYZ4242"},
        }))
        .unwrap();
        assert_eq!(d.country.as_deref(), Some("DE"));
        assert_eq!(d.default_currency.as_deref(), Some("eur"));
        assert_eq!(d.account_name.as_deref(), Some("Shop sk_live_***4242"));
        let bad = details(json!({"id": format!("acct_{}", "x".repeat(500))})).unwrap_err();
        assert!(bad.to_string().contains("malformed account id"), "{bad}");
        assert!(!bad.to_string().contains("xxxx"));
    }

    #[test]
    fn rotation_stays_on_a_proven_account_unless_a_change_is_accepted() {
        let a = Some("acct_1A");
        let b = Some("acct_1B");
        assert_eq!(check_rotation(a, a, false), Ok(AccountChange::Same));
        assert_eq!(check_rotation(a, a, true), Ok(AccountChange::Same));
        for (known, reached, code) in [
            (a, b, "account_mismatch"),
            (a, None, "account_unverifiable"),
            (None, b, "account_unknown"),
            (None, None, "account_unknown"),
        ] {
            let refused = check_rotation(known, reached, false).unwrap_err();
            assert_eq!(refused.code, code);
            assert!(refused.message.contains("allow_account_change"));
            assert_eq!(
                check_rotation(known, reached, true),
                Ok(AccountChange::Accepted {
                    from: known.map(str::to_owned),
                    to: reached.map(str::to_owned),
                })
            );
        }
    }
}
