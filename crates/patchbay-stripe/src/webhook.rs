//! Stripe's webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>,…`,
//! hex HMAC-SHA256 keyed with the whole `whsec_…` string over
//! `"{t}.{raw body}"`. Valid when any `v1` matches any of the endpoint's
//! secrets (several while a secret rolls) in constant time, and `t` is within
//! the tolerance of now. Other schemes (`v0`) are ignored.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Longest header accepted.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most `v1` signatures accepted in one header.
const MAX_SIGNATURES: usize = 16;

/// Why a post is not proven to come from Stripe. The messages never contain
/// a secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error(
        "The Stripe-Signature header is missing: only Stripe's signed posts are accepted here."
    )]
    Missing,
    /// The header does not parse.
    #[error("The Stripe-Signature header is malformed: {0}.")]
    Malformed(&'static str),
    /// No `v1` signature matches a secret of the endpoint.
    #[error(
        "No signature matches this endpoint's signing secret: check that the endpoint's signing_secret is the one Stripe shows for this URL, and that the body reaches Patchbay unchanged."
    )]
    NoMatch,
    /// The signed timestamp is too old (a replay, or a clock far behind).
    #[error(
        "The signature's timestamp is {age_seconds} s old, beyond the {tolerance_seconds} s tolerance (a replayed event, or a wrong clock)."
    )]
    TooOld {
        /// How old.
        age_seconds: i64,
        /// The tolerance.
        tolerance_seconds: u64,
    },
    /// The signed timestamp is in the future beyond the tolerance.
    #[error(
        "The signature's timestamp is {ahead_seconds} s in the future, beyond the {tolerance_seconds} s tolerance (a wrong clock)."
    )]
    InFuture {
        /// How far ahead.
        ahead_seconds: i64,
        /// The tolerance.
        tolerance_seconds: u64,
    },
}

impl SignatureError {
    /// The error code answered.
    pub fn code(&self) -> &'static str {
        "webhook_signature_invalid"
    }
}

struct Parsed<'a> {
    timestamp: i64,
    signatures: Vec<&'a str>,
}

fn parse(header: &str) -> Result<Parsed<'_>, SignatureError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::Malformed("it is too long"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => {
                let t = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed("t is not a Unix time"))?;
                timestamp = Some(t);
            }
            "v1" => {
                signatures.push(value.trim());
                if signatures.len() > MAX_SIGNATURES {
                    return Err(SignatureError::Malformed("it has too many v1 signatures"));
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("it has no t=<timestamp>"))?;
    Ok(Parsed {
        timestamp,
        signatures,
    })
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Verifies a Stripe-signed body against the endpoint's secrets; returns the
/// signed timestamp.
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    secrets: &[&SecretString],
    now_unix: i64,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if header.trim().is_empty() {
        return Err(SignatureError::Missing);
    }
    let parsed = parse(header)?;
    if parsed.signatures.is_empty() {
        return Err(SignatureError::Malformed("it has no v1 signature"));
    }
    let tolerance_seconds = tolerance.as_secs();
    let tol = i64::try_from(tolerance_seconds).unwrap_or(i64::MAX);
    let age = now_unix.saturating_sub(parsed.timestamp);
    if age > tol {
        return Err(SignatureError::TooOld {
            age_seconds: age,
            tolerance_seconds,
        });
    }
    if age.saturating_neg() > tol {
        return Err(SignatureError::InFuture {
            ahead_seconds: age.saturating_neg(),
            tolerance_seconds,
        });
    }
    let given: Vec<[u8; 32]> = parsed
        .signatures
        .iter()
        .filter_map(|s| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(s, &mut out).ok().map(|()| out)
        })
        .collect();
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = mac(secret.expose_secret().as_bytes(), parsed.timestamp, body);
        for g in &given {
            matched |= expected.ct_eq(g);
        }
    }
    if bool::from(matched) {
        Ok(parsed.timestamp)
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// A `Stripe-Signature` value as Stripe would send it (tests, benchmarks).
pub fn sign_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret.as_bytes(), timestamp, body))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret_0123456789";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    const NOW: i64 = 1_763_900_000;
    const TOL: Duration = Duration::from_secs(300);

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_owned())
    }

    #[test]
    fn matches_an_independent_computation() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test_secret_0123456789",
        //   b"1763900000.{\"id\":\"evt_1\",\"type\":\"invoice.paid\"}",hashlib.sha256).hexdigest())'
        assert_eq!(
            sign_header(SECRET, NOW, BODY),
            "t=1763900000,v1=44acd3281c6f69de66bd5feac9ef8cab39c43e5ac2e0ed5befbb17f3d7af2b2f"
        );
    }

    #[test]
    fn accepts_a_valid_signature() {
        let h = sign_header(SECRET, NOW, BODY);
        assert_eq!(
            verify_signature(Some(&h), BODY, &[&s(SECRET)], NOW + 10, TOL),
            Ok(NOW)
        );
    }

    #[test]
    fn refuses_wrong_secret_and_tampered_body() {
        let h = sign_header(SECRET, NOW, BODY);
        assert_eq!(
            verify_signature(Some(&h), BODY, &[&s("whsec_other")], NOW, TOL),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify_signature(Some(&h), b"{\"id\":\"evt_2\"}", &[&s(SECRET)], NOW, TOL),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn refuses_timestamps_outside_the_tolerance() {
        let h = sign_header(SECRET, NOW, BODY);
        assert!(matches!(
            verify_signature(Some(&h), BODY, &[&s(SECRET)], NOW + 301, TOL),
            Err(SignatureError::TooOld {
                age_seconds: 301,
                ..
            })
        ));
        assert!(matches!(
            verify_signature(Some(&h), BODY, &[&s(SECRET)], NOW - 301, TOL),
            Err(SignatureError::InFuture {
                ahead_seconds: 301,
                ..
            })
        ));
        assert!(verify_signature(Some(&h), BODY, &[&s(SECRET)], NOW + 300, TOL).is_ok());
    }

    #[test]
    fn any_v1_and_any_secret_may_match_while_rolling() {
        let old = sign_header("whsec_old_secret", NOW, BODY);
        let new = sign_header(SECRET, NOW, BODY);
        let both = format!("{new},{}", old.split_once(',').unwrap().1);
        // The header carries both signatures; the endpoint knows only the new secret.
        assert!(verify_signature(Some(&both), BODY, &[&s(SECRET)], NOW, TOL).is_ok());
        // The endpoint still accepts its previous secret.
        assert!(
            verify_signature(
                Some(&old),
                BODY,
                &[&s(SECRET), &s("whsec_old_secret")],
                NOW,
                TOL
            )
            .is_ok()
        );
        // A v0 signature alone proves nothing.
        let v0 = new.replace("v1=", "v0=");
        assert_eq!(
            verify_signature(Some(&v0), BODY, &[&s(SECRET)], NOW, TOL),
            Err(SignatureError::Malformed("it has no v1 signature"))
        );
        let garbage = format!("t={NOW},v1=zz,v1=00");
        assert_eq!(
            verify_signature(Some(&garbage), BODY, &[&s(SECRET)], NOW, TOL),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn the_second_v1_may_be_the_match_and_spaces_and_unknown_keys_are_tolerated() {
        let good = sign_header(SECRET, NOW, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!(
            " t = {NOW} , v1={} , scheme=x, v0={}, v1= {v1} ,novalue",
            "00".repeat(32),
            "ab".repeat(32)
        );
        assert_eq!(
            verify_signature(Some(&header), BODY, &[&s(SECRET)], NOW, TOL),
            Ok(NOW)
        );
        // The signature is over the timestamp as sent, so it binds t.
        let shifted = good.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(
            verify_signature(Some(&shifted), BODY, &[&s(SECRET)], NOW, TOL),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn bounds_the_work_a_header_can_ask_for() {
        let secrets = [&s(SECRET)];
        let good = sign_header(SECRET, NOW, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        // 16 signatures are fine, the 17th is refused before any HMAC.
        let sixteen = format!("t={NOW},{}v1={v1}", "v1=00,".repeat(15));
        assert!(verify_signature(Some(&sixteen), BODY, &secrets, NOW, TOL).is_ok());
        let seventeen = format!("t={NOW},{}v1={v1}", "v1=00,".repeat(16));
        assert_eq!(
            verify_signature(Some(&seventeen), BODY, &secrets, NOW, TOL),
            Err(SignatureError::Malformed("it has too many v1 signatures"))
        );
        // Just over 8 KiB, whatever it holds.
        let padded = format!("{good},x={}", "a".repeat(8 * 1024));
        assert_eq!(
            verify_signature(Some(&padded), BODY, &secrets, NOW, TOL),
            Err(SignatureError::Malformed("it is too long"))
        );
        // Extreme timestamps are refused without overflowing.
        for t in [i64::MIN, i64::MAX, -1] {
            let h = format!("t={t},v1={v1}");
            assert!(
                matches!(
                    verify_signature(Some(&h), BODY, &secrets, NOW, TOL),
                    Err(SignatureError::TooOld { .. } | SignatureError::InFuture { .. })
                ),
                "{t}"
            );
        }
        assert!(matches!(
            verify_signature(Some(&good), BODY, &secrets, i64::MIN, TOL),
            Err(SignatureError::InFuture { .. })
        ));
    }

    #[test]
    fn messages_say_what_to_fix_and_never_the_secret_or_the_signature() {
        let good = sign_header(SECRET, NOW, BODY);
        let expected = good.split_once(",v1=").unwrap().1.to_owned();
        let secrets = [&s(SECRET)];
        let errors = [
            verify_signature(None, BODY, &secrets, NOW, TOL).unwrap_err(),
            verify_signature(Some("t=x"), BODY, &secrets, NOW, TOL).unwrap_err(),
            verify_signature(Some(&good), b"{}", &secrets, NOW, TOL).unwrap_err(),
            verify_signature(Some(&good), BODY, &secrets, NOW + 1000, TOL).unwrap_err(),
            verify_signature(Some(&good), BODY, &secrets, NOW - 1000, TOL).unwrap_err(),
        ];
        let says = [
            "missing",
            "malformed",
            "no signature matches",
            "old",
            "future",
        ];
        for (e, says) in errors.iter().zip(says) {
            let m = e.to_string();
            assert!(m.to_lowercase().contains(says), "{m}");
            assert!(!m.contains(SECRET) && !m.contains(&expected), "{m}");
            assert_eq!(e.code(), "webhook_signature_invalid");
        }
        assert!(errors[3].to_string().contains("1000 s old"));
        assert!(errors[3].to_string().contains("300 s"));
    }

    #[test]
    fn refuses_missing_and_malformed_headers() {
        let secrets = [&s(SECRET)];
        assert_eq!(
            verify_signature(None, BODY, &secrets, NOW, TOL),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(Some(" "), BODY, &secrets, NOW, TOL),
            Err(SignatureError::Missing)
        );
        for bad in ["garbage", "v1=abcd", "t=soon,v1=abcd", &format!("t={NOW}")] {
            assert!(
                matches!(
                    verify_signature(Some(bad), BODY, &secrets, NOW, TOL),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let long = format!("t={NOW},{}", "v1=00,".repeat(2000));
        assert!(matches!(
            verify_signature(Some(&long), BODY, &secrets, NOW, TOL),
            Err(SignatureError::Malformed(_))
        ));
        let e = verify_signature(Some("t=1,v1=00"), BODY, &secrets, NOW, TOL).unwrap_err();
        assert!(!e.to_string().contains(SECRET));
        assert_eq!(e.code(), "webhook_signature_invalid");
    }
}
