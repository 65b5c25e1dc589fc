//! Stripe API version strings (`Stripe-Version`), as a connection may pin one.

use patchbay_core::ValidationError;

/// Checks a `Stripe-Version` value: a date with an optional release name
/// (`2024-06-20`, `2026-10-28.endive`, `2025-01-27.acacia; checkout_server_update_beta=v1`
/// is refused: betas are per call, not per connection).
pub fn validate_stripe_version(value: &str) -> Result<String, ValidationError> {
    let bad = || {
        ValidationError::invalid(
            "stripe_version",
            format!(
                "'{value}' is not a Stripe API version: expected a date such as 2024-06-20 or 2026-10-28.endive."
            ),
        )
    };
    let (date, release) = match value.split_once('.') {
        Some((d, r)) => (d, Some(r)),
        None => (value, None),
    };
    let date_ok = date.len() == 10
        && date.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    let release_ok = release.is_none_or(|r| {
        !r.is_empty() && r.len() <= 32 && r.chars().all(|c| c.is_ascii_lowercase())
    });
    if date_ok && release_ok {
        Ok(value.to_owned())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_versions() {
        assert!(validate_stripe_version("2024-06-20").is_ok());
        assert!(validate_stripe_version("2026-10-28.endive").is_ok());
        for bad in [
            "",
            "2024-6-20",
            "latest",
            "2024-06-20.",
            "2024-06-20.Endive",
            "2024-06-20; x=y",
        ] {
            assert_eq!(
                validate_stripe_version(bad).unwrap_err().param,
                "stripe_version",
                "{bad}"
            );
        }
    }
}
