//! Stripe API keys as Patchbay accepts them: secret (`sk_`) or restricted (`rk_`),
//! test or live. Anything else is refused with a message saying what it is.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Secret or restricted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `sk_…`: full access.
    Secret,
    /// `rk_…`: the permissions chosen in the dashboard.
    Restricted,
}

/// A well-formed Stripe secret or restricted key. The key text stays secret.
#[derive(Clone)]
pub struct StripeKey {
    secret: SecretString,
    kind: KeyKind,
    livemode: bool,
}

impl fmt::Debug for StripeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StripeKey({})", self.hint())
    }
}

/// Why a string is not a usable key. Messages never repeat the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KeyError {
    /// `stripe_key_malformed`, `stripe_key_publishable`, `stripe_key_wrong_type`.
    pub code: &'static str,
    /// What is wrong and what to paste instead.
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> KeyError {
    KeyError {
        code,
        message: message.into(),
    }
}

/// Shortest part after `sk_test_` and the like: real keys have 24 or (today) 99
/// characters there; anything much shorter was cut off while copying.
const MIN_BODY: usize = 16;
/// Longest key Stripe issues fits well within this.
const MAX_LEN: usize = 255;

impl StripeKey {
    /// Checks the shape of a pasted key.
    pub fn parse(raw: SecretString) -> Result<Self, KeyError> {
        let text = raw.expose_secret();
        if text.is_empty() {
            return Err(err("stripe_key_malformed", "api_key cannot be empty."));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(err(
                "stripe_key_malformed",
                "api_key contains whitespace: paste the key exactly as the Stripe dashboard shows it.",
            ));
        }
        let wrong = |what: &str| {
            err(
                "stripe_key_wrong_type",
                format!(
                    "This is {what}, not an API key: a secret key (sk_…) or restricted key (rk_…) is needed."
                ),
            )
        };
        if text.starts_with("pk_") {
            return Err(err(
                "stripe_key_publishable",
                "This is a publishable key (pk_…): a secret or restricted key is needed; publishable keys only work in browsers.",
            ));
        }
        if text.starts_with("whsec_") {
            return Err(wrong("a webhook signing secret (whsec_…)"));
        }
        if text.starts_with("ca_") {
            return Err(wrong("a Connect client id (ca_…)"));
        }
        if text.starts_with("acct_") {
            return Err(wrong("an account id (acct_…)"));
        }
        if text.starts_with("ac_") {
            return Err(wrong("an OAuth authorization code (ac_…)"));
        }
        let (kind, livemode, body) = if let Some(b) = text.strip_prefix("sk_test_") {
            (KeyKind::Secret, false, b)
        } else if let Some(b) = text.strip_prefix("sk_live_") {
            (KeyKind::Secret, true, b)
        } else if let Some(b) = text.strip_prefix("rk_test_") {
            (KeyKind::Restricted, false, b)
        } else if let Some(b) = text.strip_prefix("rk_live_") {
            (KeyKind::Restricted, true, b)
        } else {
            return Err(err(
                "stripe_key_malformed",
                "api_key is not a Stripe secret or restricted key: it must start with sk_test_, sk_live_, rk_test_ or rk_live_.",
            ));
        };
        if text.len() > MAX_LEN
            || body.len() < MIN_BODY
            || !body.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(err(
                "stripe_key_malformed",
                format!(
                    "api_key is not a well-formed Stripe key: after the prefix it needs at least {MIN_BODY} letters and digits, and nothing else."
                ),
            ));
        }
        Ok(Self {
            kind,
            livemode,
            secret: raw,
        })
    }

    /// Secret or restricted.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Live (`true`) or test mode.
    pub fn livemode(&self) -> bool {
        self.livemode
    }

    /// The key, for the `Authorization` header and for sealing.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// `sk_test_…4242`: enough to recognise the key, never enough to use it.
    pub fn hint(&self) -> String {
        hint(self.secret.expose_secret())
    }
}

/// The hint for any key text: its prefix up to the mode and its last four characters.
pub fn hint(key: &str) -> String {
    let prefix_len = key.match_indices('_').nth(1).map_or(0, |(i, _)| i + 1);
    let (prefix, rest) = key.split_at(prefix_len);
    let tail: String = {
        let chars: Vec<char> = rest.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    };
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StripeKey, KeyError> {
        StripeKey::parse(SecretString::from(s))
    }

    #[test]
    fn accepts_the_four_prefixes() {
        let body = "51HabcDEF0123456789xyzXYZ4242";
        for (prefix, kind, live) in [
            ("sk_test_", KeyKind::Secret, false),
            ("sk_live_", KeyKind::Secret, true),
            ("rk_test_", KeyKind::Restricted, false),
            ("rk_live_", KeyKind::Restricted, true),
        ] {
            let key = parse(&format!("{prefix}{body}")).unwrap();
            assert_eq!(key.kind(), kind);
            assert_eq!(key.livemode(), live);
            assert_eq!(key.hint(), format!("{prefix}…4242"));
        }
    }

    #[test]
    fn rejects_with_a_reason_and_never_echoes_the_key() {
        let cases = [
            ("", "stripe_key_malformed"),
            ("pk_test_51HabcDEF0123456789xyz", "stripe_key_publishable"),
            ("pk_live_51HabcDEF0123456789xyz", "stripe_key_publishable"),
            ("whsec_51HabcDEF0123456789xyz", "stripe_key_wrong_type"),
            ("ca_51HabcDEF0123456789xyz", "stripe_key_wrong_type"),
            ("acct_51HabcDEF0123456789xyz", "stripe_key_wrong_type"),
            ("ac_51HabcDEF0123456789xyz", "stripe_key_wrong_type"),
            ("sk_test_51HabcDEF 0123456789xyz", "stripe_key_malformed"),
            (" sk_test_51HabcDEF0123456789xyz", "stripe_key_malformed"),
            ("sk_test_51HabcDEF0123456789xyz\n", "stripe_key_malformed"),
            ("sk_test_short", "stripe_key_malformed"),
            ("sk_test_51HabcDEF0123456789xyz!", "stripe_key_malformed"),
            ("sk_prod_51HabcDEF0123456789xyz", "stripe_key_malformed"),
            ("hello", "stripe_key_malformed"),
        ];
        for (input, code) in cases {
            let e = parse(input).unwrap_err();
            assert_eq!(e.code, code, "{input:?}");
            if input.len() > 8 {
                assert!(!e.message.contains(input.trim()), "{input:?} echoed");
            }
        }
        let long = format!("sk_test_{}", "a".repeat(300));
        assert!(parse(&long).is_err());
        assert!(
            parse("pk_test_x")
                .unwrap_err()
                .message
                .contains("publishable keys only work in browsers")
        );
    }

    #[test]
    fn debug_shows_only_the_hint() {
        let key = parse("sk_live_51HabcDEF0123456789xyzWx9Q").unwrap();
        assert_eq!(format!("{key:?}"), "StripeKey(sk_live_…Wx9Q)");
    }

    #[test]
    fn hint_of_odd_text_does_not_panic() {
        assert_eq!(hint(""), "…");
        assert_eq!(hint("sk_test_ab"), "sk_test_…ab");
        assert_eq!(hint("abc"), "…abc");
        assert_eq!(hint("sk_test_é日本語x"), "sk_test_…日本語x");
    }
}
