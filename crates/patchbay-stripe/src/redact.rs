//! The one redaction step for text that comes from Stripe (or whatever stands
//! in for it) on its way into a response, a stored field, an audit record or a
//! log: anything shaped like a Stripe credential is masked, and so is the key of
//! the call verbatim, whatever its shape.
//!
//! [`Redacted`] can only be made here, so code that holds one holds masked text;
//! the client's error type carries nothing else.

use std::fmt;
use std::ops::Deref;

use secrecy::{ExposeSecret, SecretString};

/// Text that has passed through [`redact`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    /// The masked text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Text Patchbay wrote itself, with nothing from outside in it; masked all
    /// the same, so a mistake cannot leak.
    pub(crate) fn ours(text: impl AsRef<str>) -> Self {
        redact(text.as_ref(), None)
    }
}

impl Deref for Redacted {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Prefixes of credentials: secret, restricted and publishable keys, webhook
/// signing secrets, OAuth authorization codes and refresh tokens (OAuth access
/// tokens are `sk_…`).
const PREFIXES: [&str; 9] = [
    "sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_", "whsec_", "ac_", "rt_",
];
/// Marks a client secret: `pi_…_secret_…`, `seti_…_secret_…` and their kind.
const CLIENT_SECRET: &str = "_secret_";
/// Shorter tails are left alone: `ac_` and `rt_` occur in ordinary words, and
/// Stripe's own masks (`sk_test_****4242`) have no tail to speak of.
const MIN_TAIL: usize = 8;
/// A tail this long keeps its last four characters visible, as hints do.
const SHOWN_TAIL: usize = 20;
/// Keys shorter than this are not searched for verbatim (too likely to match by chance).
const MIN_OWN_KEY: usize = 8;
/// Longest text kept: error messages are short, and a longer one is cut
/// (between words, so no credential is left half shown).
const MAX_BYTES: usize = 8 * 1024;

/// Masks every credential-shaped token in `text`, and `own_key` verbatim.
pub fn redact(text: &str, own_key: Option<&SecretString>) -> Redacted {
    let mut text = without_own_key(text, own_key);
    if cut_at(&mut text, MAX_BYTES) {
        text.push_str(" …[truncated]");
    }
    Redacted(mask_shapes(&text))
}

/// [`redact`], keeping at most `max_chars` characters (for stored fields).
pub(crate) fn redact_to_chars(
    text: &str,
    own_key: Option<&SecretString>,
    max_chars: usize,
) -> Redacted {
    let mut text = without_own_key(text, own_key);
    if let Some((at, _)) = text.char_indices().nth(max_chars) {
        cut_at(&mut text, at);
    }
    Redacted(mask_shapes(&text))
}

fn without_own_key(text: &str, own_key: Option<&SecretString>) -> String {
    match own_key.map(ExposeSecret::expose_secret) {
        Some(key) if key.len() >= MIN_OWN_KEY && text.contains(key) => {
            text.replace(key, &crate::hint(key))
        }
        _ => text.to_owned(),
    }
}

/// Cuts `text` to at most `max_bytes`; a word cut in two is dropped when it
/// could be the start of a credential (every shape holds an `_`), so no
/// credential is left half shown. Whether anything was cut.
fn cut_at(text: &mut String, max_bytes: usize) -> bool {
    if text.len() <= max_bytes {
        return false;
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    let word_start = text
        .trim_end_matches(|c: char| is_word(c) || is_tail(c))
        .len();
    if text[word_start..].contains('_') {
        text.truncate(word_start);
    }
    true
}

fn is_tail(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn mask_shapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let at_start = previous.is_none_or(|p| !p.is_ascii_alphanumeric());
        // Key and webhook-secret prefixes are distinctive enough to mask even
        // glued to a word (`%20sk_live_…` in an encoded URL); `ac_` and `rt_`
        // only at a word's start, as they occur inside ordinary words.
        if (at_start || has_strong_prefix(rest))
            && let Some(consumed) = mask_credential(rest, &mut out)
        {
            previous = rest[..consumed].chars().next_back();
            rest = &rest[consumed..];
            continue;
        }
        if at_start && let Some(consumed) = mask_client_secret(rest, &mut out) {
            previous = rest[..consumed].chars().next_back();
            rest = &rest[consumed..];
            continue;
        }
        out.push(c);
        previous = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Whether `text` starts with a key or webhook-secret prefix.
fn has_strong_prefix(text: &str) -> bool {
    PREFIXES[..7].iter().any(|p| text.starts_with(p))
}

/// A prefixed credential at the start of `text`: writes its mask, returns its length.
fn mask_credential(text: &str, out: &mut String) -> Option<usize> {
    let prefix = PREFIXES.iter().find(|p| text.starts_with(**p))?;
    let tail_len = text[prefix.len()..]
        .find(|c: char| !is_tail(c))
        .unwrap_or(text.len() - prefix.len());
    if tail_len < MIN_TAIL {
        return None;
    }
    let tail = &text[prefix.len()..prefix.len() + tail_len];
    out.push_str(prefix);
    out.push_str("***");
    if tail_len >= SHOWN_TAIL {
        out.push_str(&tail[tail_len - 4..]);
    }
    Some(prefix.len() + tail_len)
}

/// A word holding `_secret_` (a client secret) at the start of `text`: keeps
/// the object id before the marker, masks what follows.
fn mask_client_secret(text: &str, out: &mut String) -> Option<usize> {
    let word_len = text.find(|c: char| !is_word(c)).unwrap_or(text.len());
    let word = &text[..word_len];
    let at = word.find(CLIENT_SECRET)?;
    if at == 0 || word_len - at - CLIENT_SECRET.len() == 0 {
        return None;
    }
    out.push_str(&word[..at + CLIENT_SECRET.len()]);
    out.push_str("***");
    Some(word_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> String {
        redact(text, None).into_string()
    }

    #[test]
    fn masks_every_credential_shape() {
        let cases = [
            (
                "Invalid API Key provided: sk_test_51HabcDEF0123456789xyzXYZ4242",
                "Invalid API Key provided: sk_test_***4242",
            ),
            ("key sk_live_abcdefgh1", "key sk_live_***"),
            ("'rk_live_51HabcDEF0123456789xyzQ9'.", "'rk_live_***yzQ9'."),
            ("pk_test_0123456789abcdefghij", "pk_test_***ghij"),
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", "whsec_***aSw="),
            ("code ac_Jb3kLmN0pQ9 used", "code ac_*** used"),
            ("refresh=rt_Jb3kLmN0pQ9xyZ", "refresh=rt_***"),
            (
                "pi_3MtwBw2eZvKYlo2C1_secret_YrKJUKribcBjcG8HVhfZluoGH x",
                "pi_3MtwBw2eZvKYlo2C1_secret_*** x",
            ),
            ("seti_1Abc_secret_Xyz", "seti_1Abc_secret_***"),
        ];
        for (input, expected) in cases {
            assert_eq!(r(input), expected, "{input}");
        }
    }

    #[test]
    fn leaves_ordinary_text_and_stripes_own_masks_alone() {
        for text in [
            "Invalid API Key provided: sk_test_****4242",
            "The provided key 'rk_test_***1234' lacks 'rak_balance_read'.",
            "fact_sheet, contract_id, rt_x, ac_dc, acct_1Nv0FGQ9RKHgCVdK, req_abc123",
            "no_secret_ here, _secret_x, café ünïcode",
            "",
        ] {
            assert_eq!(r(text), text);
        }
    }

    #[test]
    fn masks_the_calls_own_key_verbatim_whatever_its_shape() {
        let key = SecretString::from("sk_test_51HabcDEF0123456789xyzXYZ4242");
        let text = "glued:XXsk_test_51HabcDEF0123456789xyzXYZ4242YY and again sk_test_51HabcDEF0123456789xyzXYZ4242";
        let out = redact(text, Some(&key));
        assert!(!out.contains("51HabcDEF0123456789xyz"), "{out}");
        let odd = SecretString::from("opaque-token-1234567890");
        let out = redact("echo opaque-token-1234567890!", Some(&odd));
        assert_eq!(out.as_str(), "echo …7890!");
    }

    #[test]
    fn long_text_is_cut_between_words() {
        let text = format!(
            "{} sk_test_51HabcDEF0123456789xyzXYZ4242",
            "a ".repeat(4094)
        );
        let out = r(&text);
        assert!(out.len() < 8 * 1024 + 20, "{}", out.len());
        assert!(out.ends_with(" …[truncated]"), "{out}");
        assert!(!out.contains("sk_test_5"), "no half credential is left");
    }

    #[test]
    fn a_cut_keeps_plain_words_whole_up_to_the_limit() {
        let long = "N".repeat(500);
        assert_eq!(redact_to_chars(&long, None, 200).len(), 200);
        let cut = redact_to_chars("Shop sk_live_51HabcDEF0123456789xyzXYZ4242", None, 15);
        assert_eq!(cut.as_str(), "Shop ");
        assert_eq!(redact_to_chars("Shop", None, 15).as_str(), "Shop");
    }

    #[test]
    fn a_key_glued_to_a_word_is_masked_and_the_own_key_verbatim() {
        // A key prefix is distinctive enough to mask even glued to a word.
        assert_eq!(r("Xsk_test_abcdefghijkl"), "Xsk_test_***");
        let key = SecretString::from("sk_test_abcdefghijkl");
        assert_eq!(
            redact("Xsk_test_abcdefghijkl", Some(&key)).as_str(),
            "Xsk_test_…ijkl"
        );
    }

    #[test]
    fn keys_glued_to_a_word_are_masked_but_short_prefixes_inside_words_are_not() {
        let text =
            "url=%20sk_live_51Habcdefghijklmnop1234 and xwhsec_abcdefghijklmnop and bac_12345678x";
        let out = redact(text, None);
        assert!(!out.contains("51Habcdefghijklmnop1234"), "{out}");
        assert!(!out.contains("whsec_abcdefghijklmnop"), "{out}");
        assert!(out.contains("bac_12345678x"), "{out}");
    }
}
