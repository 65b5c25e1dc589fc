//! Signing deliveries in the Standard Webhooks format (standardwebhooks.com):
//! secrets are `whsec_<base64 of the key>`, a signature is
//! `v1,<base64 HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>`, and several
//! signatures (one per secret, while a secret rolls) are separated by spaces.
//! Receivers verify with the `standardwebhooks` library of their language.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a generated secret.
pub const SECRET_BYTES: usize = 32;

/// A secret that is not `whsec_<base64>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a Standard Webhooks secret must be whsec_ followed by base64")]
pub struct StandardWebhooksError;

/// A fresh secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> SecretString {
    let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
    getrandom::fill(bytes.as_mut()).expect("the operating system's random source");
    SecretString::from(format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(bytes.as_ref())
    ))
}

/// `whsec_…` and the secret's last four characters.
pub fn secret_hint(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{SECRET_PREFIX}…{tail}")
}

fn key(secret: &SecretString) -> Result<Zeroizing<Vec<u8>>, StandardWebhooksError> {
    let text = secret.expose_secret();
    let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| StandardWebhooksError)?;
    if key.is_empty() {
        return Err(StandardWebhooksError);
    }
    Ok(Zeroizing::new(key))
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// One signature: `v1,<base64>`.
pub fn sign(
    secret: &SecretString,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, StandardWebhooksError> {
    let key = key(secret)?;
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac(&key, msg_id, timestamp, body))
    ))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[&SecretString],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, StandardWebhooksError> {
    let signatures = secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// Whether any `v1` signature of `header` is `secret`'s (constant time).
pub fn verify(
    secret: &SecretString,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let Ok(key) = key(secret) else {
        return false;
    };
    let expected = mac(&key, msg_id, timestamp, body);
    let mut matched = subtle::Choice::from(0);
    for part in header.split(' ') {
        if let Some(b64) = part.strip_prefix("v1,")
            && let Ok(given) = STANDARD.decode(b64)
            && given.len() == expected.len()
        {
            matched |= expected.ct_eq(&given[..]);
        }
    }
    bool::from(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"ev_1","type":"invoice.paid"}"#;

    #[test]
    fn generated_secrets_are_whsec_base64_of_32_bytes() {
        let s = generate_secret();
        let text = s.expose_secret();
        assert!(text.starts_with("whsec_"));
        assert_eq!(key(&s).unwrap().len(), SECRET_BYTES);
        assert_ne!(text, generate_secret().expose_secret());
        assert_eq!(secret_hint("whsec_abcdefgh"), "whsec_…efgh");
    }

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks specification.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verifies_with_the_standardwebhooks_crate_including_while_rolling() {
        let old = generate_secret();
        let new = generate_secret();
        let ts = chrono_now();
        let header = signature_header(&[&new, &old], "ev_1", ts, BODY).unwrap();
        assert_eq!(header.split(' ').count(), 2);
        for secret in [&new, &old] {
            let wh = standardwebhooks::Webhook::new(secret.expose_secret()).unwrap();
            let mut headers = http02_headers(&header, ts);
            // The crate signs as we do, and we verify what it signs.
            let theirs = wh.sign("ev_1", ts, BODY).unwrap();
            assert_eq!(theirs, sign(secret, "ev_1", ts, BODY).unwrap());
            assert!(verify(secret, "ev_1", ts, BODY, &theirs));
            wh.verify(BODY, &headers).unwrap();
            // A tampered body, another id or another timestamp fails.
            assert!(wh.verify(b"{}", &headers).is_err());
            headers.insert("webhook-id", "ev_2".parse().unwrap());
            assert!(wh.verify(BODY, &headers).is_err());
            let headers = http02_headers(&header, ts - 1);
            assert!(wh.verify(BODY, &headers).is_err());
            assert!(verify(secret, "ev_1", ts, BODY, &header));
        }
        let other = generate_secret();
        assert!(!verify(&other, "ev_1", ts, BODY, &header));
        assert!(!verify(&new, "ev_2", ts, BODY, &header));
    }

    #[test]
    fn a_secret_that_is_not_base64_is_an_error_without_the_secret() {
        let bad = SecretString::from("whsec_not base64!".to_owned());
        let e = sign(&bad, "ev_1", 1, BODY).unwrap_err();
        assert!(!e.to_string().contains("not base64!"));
    }

    #[test]
    fn agrees_with_the_standardwebhooks_crate_on_many_inputs() {
        let bodies: [&[u8]; 4] = [
            b"",
            b"{}",
            BODY,
            "{\"name\":\"Zo\u{eb} \u{1f600}\"}".as_bytes(),
        ];
        for (i, body) in bodies.iter().enumerate() {
            let secret = generate_secret();
            let wh = standardwebhooks::Webhook::new(secret.expose_secret()).unwrap();
            for ts in [0, 1, 1_763_900_000, i64::MAX] {
                let id = format!("ev_{i}_{ts}");
                assert_eq!(
                    sign(&secret, &id, ts, body).unwrap(),
                    wh.sign(&id, ts, body).unwrap(),
                    "{id}"
                );
            }
        }
    }

    #[test]
    fn verify_reads_every_space_separated_v1_and_nothing_else() {
        let secret = generate_secret();
        let good = sign(&secret, "ev_1", 5, BODY).unwrap();
        let b64 = good.strip_prefix("v1,").unwrap();
        assert!(verify(&secret, "ev_1", 5, BODY, &good));
        assert!(verify(
            &secret,
            "ev_1",
            5,
            BODY,
            &format!("v1,AAAA v1a,xyz {good}")
        ));
        // Another version, a bare signature or a truncated one prove nothing.
        for bad in [
            format!("v2,{b64}"),
            b64.to_owned(),
            format!("v1,{}", &b64[..b64.len() - 4]),
            String::new(),
            "v1,".to_owned(),
        ] {
            assert!(!verify(&secret, "ev_1", 5, BODY, &bad), "{bad}");
        }
        // A secret that does not decode verifies nothing.
        let bad = SecretString::from("whsec_***".to_owned());
        assert!(!verify(&bad, "ev_1", 5, BODY, &good));
    }

    #[test]
    fn headers_sign_with_each_secret_in_order() {
        let (a, b) = (generate_secret(), generate_secret());
        let header = signature_header(&[&a, &b], "ev_1", 7, BODY).unwrap();
        let expected = format!(
            "{} {}",
            sign(&a, "ev_1", 7, BODY).unwrap(),
            sign(&b, "ev_1", 7, BODY).unwrap()
        );
        assert_eq!(header, expected);
        assert_eq!(
            signature_header(&[&a], "ev_1", 7, BODY).unwrap(),
            sign(&a, "ev_1", 7, BODY).unwrap()
        );
        let bad = SecretString::from("whsec_%%%".to_owned());
        assert_eq!(
            signature_header(&[&a, &bad], "ev_1", 7, BODY),
            Err(StandardWebhooksError)
        );
        let empty = SecretString::from("whsec_".to_owned());
        assert!(sign(&empty, "ev_1", 7, BODY).is_err());
    }

    #[test]
    fn hints_show_only_the_last_four_characters() {
        let s = generate_secret();
        let text = s.expose_secret();
        let hint = secret_hint(text);
        assert_eq!(hint.chars().count(), "whsec_…".chars().count() + 4);
        assert!(text.ends_with(hint.strip_prefix("whsec_…").unwrap()));
        assert_eq!(secret_hint("ab"), "whsec_…ab");
        assert_eq!(secret_hint("whsec_ééééé"), "whsec_…éééé");
    }

    fn chrono_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn http02_headers(signature: &str, ts: i64) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("webhook-id", "ev_1".parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", signature.parse().unwrap());
        h
    }
}
