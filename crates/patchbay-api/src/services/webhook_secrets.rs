//! What webhook endpoints and event subscriptions share: their event lists,
//! and signing secrets sealed with the tenant's data key (bound to the record
//! and to their role, current or previous), rolled with a grace period.

use std::time::Duration;

use patchbay_core::sealed::{DataKeyRecord, SealedSecret};
use patchbay_core::time::add_millis;
use patchbay_core::webhook::{ALL_EVENTS, SecretRoll};
use patchbay_core::{TenantId, Timestamp};
use patchbay_vault::SecretContext;
use secrecy::SecretString;

use super::error::ServiceError;
use crate::state::AppState;

/// The role of the current secret in its sealed associated data.
const CURRENT: &str = "signing_secret";
/// The role of the previous secret, kept while a secret rolls.
const PREVIOUS: &str = "previous_signing_secret";

/// Most event types in one list.
pub const MAX_EVENT_TYPES: usize = 256;
/// Longest grace period for a rolled secret (a week).
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The grace period when none is given (a day, as Stripe's roll).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Checks an event-type list: `*` or names such as `invoice.paid`
/// (lowercase letters, digits, `_` and `.`), without repeats. `None`
/// becomes `["*"]` unless `required`.
pub fn event_list(
    events: Option<Vec<String>>,
    required: bool,
) -> Result<Vec<String>, ServiceError> {
    let bad = |message: String| {
        ServiceError::unprocessable("parameter_invalid", message).with_param("events")
    };
    let Some(events) = events else {
        if required {
            return Err(bad(
                "events is required: the event types to deliver, such as [\"invoice.paid\", \"connection.status_changed\"], or [\"*\"] for all.".into(),
            ));
        }
        return Ok(vec![ALL_EVENTS.to_owned()]);
    };
    if events.is_empty() || events.len() > MAX_EVENT_TYPES {
        return Err(bad(format!(
            "events must list 1 to {MAX_EVENT_TYPES} event types (or [\"*\"] for all)."
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        let valid = e == ALL_EVENTS
            || (!e.is_empty()
                && e.len() <= 100
                && e.contains('.')
                && !e.starts_with('.')
                && !e.ends_with('.')
                && e.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'
                }));
        if !valid {
            return Err(bad(format!(
                "events[{i}] '{}' is not an event type: use names such as invoice.paid, or * for all.",
                e.chars().take(100).collect::<String>()
            ))
            .with_param(format!("events[{i}]")));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// A grace period in seconds, checked (`None`: a day).
pub fn grace(seconds: Option<u64>, param: &str) -> Result<Duration, ServiceError> {
    let grace = seconds.map_or(DEFAULT_GRACE, Duration::from_secs);
    if grace > MAX_GRACE {
        return Err(ServiceError::unprocessable(
            "parameter_invalid",
            format!(
                "{param} must be 0 to {} seconds (a week).",
                MAX_GRACE.as_secs()
            ),
        )
        .with_param(param));
    }
    Ok(grace)
}

fn context<'a>(tenant: TenantId, record: &'a str, previous: bool) -> SecretContext<'a> {
    SecretContext {
        tenant,
        record,
        field: if previous { PREVIOUS } else { CURRENT },
    }
}

/// The tenant's current data key record.
pub async fn data_key(state: &AppState, tenant: TenantId) -> Result<DataKeyRecord, ServiceError> {
    state
        .store
        .tenant_data_key(tenant)
        .await?
        .ok_or_else(|| ServiceError::internal(&format_args!("tenant {tenant} has no data key")))
}

/// Seals a new current secret of `record`.
pub fn seal(
    state: &AppState,
    tenant: TenantId,
    record: &str,
    key: &DataKeyRecord,
    secret: &SecretString,
) -> Result<SealedSecret, ServiceError> {
    let data_key = state.keyring.open_data_key(key)?;
    Ok(data_key.seal(context(tenant, record, false), secret)?)
}

/// Opens a record's current secret and, when given, its previous one.
pub fn open(
    state: &AppState,
    tenant: TenantId,
    record: &str,
    key: &DataKeyRecord,
    current: &SealedSecret,
    previous: Option<&SealedSecret>,
) -> Result<(SecretString, Option<SecretString>), ServiceError> {
    let data_key = state.keyring.open_data_key(key)?;
    let current = data_key.open(context(tenant, record, false), current)?;
    let previous = previous
        .map(|p| data_key.open(context(tenant, record, true), p))
        .transpose()?;
    Ok((current, previous))
}

/// A roll to `new`: the current secret (opened from `current` under `key`)
/// is re-sealed as the previous one until `at + grace` (dropped at once when
/// the grace is zero); everything is sealed with the tenant's current data key.
#[allow(clippy::too_many_arguments)]
pub async fn roll(
    state: &AppState,
    tenant: TenantId,
    record: &str,
    key: &DataKeyRecord,
    current: &SealedSecret,
    new: &SecretString,
    new_hint: String,
    grace: Duration,
    at: Timestamp,
) -> Result<SecretRoll, ServiceError> {
    let (old, _) = open(state, tenant, record, key, current, None)?;
    let now_key = data_key(state, tenant).await?;
    let data_key = state.keyring.open_data_key(&now_key)?;
    let secret = data_key.seal(context(tenant, record, false), new)?;
    let previous = if grace.is_zero() {
        None
    } else {
        Some((
            data_key.seal(context(tenant, record, true), &old)?,
            add_millis(at, grace.as_millis()),
        ))
    };
    Ok(SecretRoll {
        data_key_id: now_key.id,
        secret,
        hint: new_hint,
        previous,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lists_default_dedupe_and_name_the_bad_entry() {
        assert_eq!(event_list(None, false).unwrap(), vec!["*"]);
        assert_eq!(
            event_list(None, true).unwrap_err().param.as_deref(),
            Some("events")
        );
        assert_eq!(
            event_list(
                Some(vec![
                    "invoice.paid".into(),
                    "invoice.paid".into(),
                    "*".into()
                ]),
                true
            )
            .unwrap(),
            vec!["invoice.paid", "*"]
        );
        let e = event_list(
            Some(vec!["invoice.paid".into(), "Invoice Paid".into()]),
            true,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("events[1]"));
        assert!(event_list(Some(vec![]), false).is_err());
        assert!(event_list(Some(vec!["invoice".into()]), false).is_err());
        assert!(event_list(Some(vec![".paid".into()]), false).is_err());
    }

    #[test]
    fn grace_is_bounded_to_a_week() {
        assert_eq!(grace(None, "g").unwrap(), DEFAULT_GRACE);
        assert_eq!(grace(Some(0), "g").unwrap(), Duration::ZERO);
        assert!(grace(Some(MAX_GRACE.as_secs() + 1), "g").is_err());
    }
}
