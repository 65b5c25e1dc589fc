//! What of a request line may reach metric labels and logs: the method as one
//! of a closed set of names, and any client text cut short with control
//! characters escaped, so a caller cannot grow the metrics or flood the log.

use std::borrow::Cow;

use axum::http::Method;

/// Longest method shown in a log line or an error message.
pub const MAX_METHOD_SHOWN: usize = 64;
/// Longest path shown in a log line or an error message.
pub const MAX_PATH_SHOWN: usize = 512;

/// The method as a metric label: a standard method's name, else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// `text` cut to `max` characters (marked with `…`), control characters escaped.
pub fn shown(text: &str, max: usize) -> Cow<'_, str> {
    let plain = text.chars().count() <= max && !text.chars().any(char::is_control);
    if plain {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(max + 8);
    for c in text.chars().take(max) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if text.chars().count() > max {
        out.push('…');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_and_others_are_other() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let junk = Method::from_bytes(b"MXYZZYXYZZYXYZZY").unwrap();
        assert_eq!(method_label(&junk), "other");
        let lower = Method::from_bytes(b"get").unwrap();
        assert_eq!(method_label(&lower), "other");
    }

    #[test]
    fn long_text_is_cut_and_control_characters_are_escaped() {
        let long = "M".repeat(1000);
        let cut = shown(&long, MAX_METHOD_SHOWN);
        assert_eq!(cut.chars().count(), MAX_METHOD_SHOWN + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(shown("a\nb\u{1b}[31m", 64), "a\\nb\\u{1b}[31m");
        assert!(matches!(shown("/healthz", 64), Cow::Borrowed("/healthz")));
    }
}
