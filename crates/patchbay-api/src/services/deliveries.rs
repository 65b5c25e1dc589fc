//! One delivery attempt (a `webhook.deliver` job): the event signed in the
//! Standard Webhooks format with the subscription's secret (and the previous
//! one while it rolls), posted through the SSRF-safe sender, and the outcome
//! recorded with the job's in one transaction, under the job's lease.
//!
//! Failures retry with exponential backoff and jitter for the retry window,
//! never sooner than a 429/503 `Retry-After`; a subscription failing for
//! longer than `disable_after` is disabled with the reason.

use std::time::Duration;

use bytes::Bytes;
use patchbay_core::job::{Job, JobOutcome};
use patchbay_core::time::{add_millis, now, rfc3339};
use patchbay_core::webhook::{
    AttemptRecord, AttemptWrite, DeliveryAttempt, DeliveryStatus, DeliveryWork, Event, EventSource,
    SubscriptionHealth, SubscriptionStatus,
};
use patchbay_core::{DeliveryId, Timestamp};
use patchbay_vault::standard_webhooks::signature_header;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use serde_json::json;
use tracing::{debug, warn};
use uuid::Uuid;

use super::jobs::{backoff_between, random_unit};
use super::webhook_secrets;
use crate::state::AppState;

/// The body of a delivery: Patchbay's envelope around the event's payload
/// (Stripe's event verbatim, or Patchbay's own).
pub fn body(event: &Event) -> String {
    let head = json!({
        "id": event.id.to_string(),
        "type": event.event_type,
        "timestamp": rfc3339(event.created),
        "created": event.created.timestamp(),
        "source": event.source.as_str(),
        "connection_id": connection_of(event),
        "endpoint_id": event.endpoint_id.map(|e| e.to_string()),
        "account": event.account,
        "livemode": event.livemode,
    })
    .to_string();
    // The payload is stored JSON (verified on the way in, or built here):
    // spliced in as it is, so Stripe's event reaches the tenant byte for byte.
    let mut out = String::with_capacity(head.len() + event.payload.len() + 9);
    out.push_str(&head[..head.len() - 1]);
    out.push_str(",\"data\":");
    out.push_str(&event.payload);
    out.push('}');
    out
}

/// The connection an event is about: the stored link, or, for Patchbay's
/// own event about a deleted connection (stored detached), the connection
/// its payload describes.
fn connection_of(event: &Event) -> Option<String> {
    if let Some(c) = event.connection_id {
        return Some(c.to_string());
    }
    if event.source != EventSource::Patchbay {
        return None;
    }
    let payload: serde_json::Value = serde_json::from_str(&event.payload).ok()?;
    payload["data"]["object"]["id"].as_str().map(str::to_owned)
}

/// Runs one attempt of the delivery job and records it.
pub async fn run(state: &AppState, job: &Job, lease_token: Uuid) {
    let Some(tenant) = job.tenant_id else {
        finish(
            state,
            job,
            lease_token,
            JobOutcome::Dead {
                error: "a delivery job without a tenant".into(),
            },
        )
        .await;
        return;
    };
    let id = DeliveryId::from_uuid(job.subject);
    let work = match state.store.delivery_work(tenant, id, now()).await {
        Ok(Some(work)) => work,
        // The event (past retention), the subscription or the tenant is gone.
        Ok(None) => return finish(state, job, lease_token, JobOutcome::Done).await,
        Err(e) => {
            let run_at = add_millis(now(), 5_000);
            return finish(
                state,
                job,
                lease_token,
                JobOutcome::Retry {
                    run_at,
                    error: e.to_string(),
                },
            )
            .await;
        }
    };
    if work.delivery.status != DeliveryStatus::Pending {
        return finish(state, job, lease_token, JobOutcome::Done).await;
    }
    let (record, outcome) = attempt(state, &work).await;
    let write = AttemptWrite {
        record,
        job: job.id,
        lease_token,
        outcome,
    };
    match state.delivery_recorder.record(write).await {
        Ok(true) => {}
        Ok(false) => {
            warn!(delivery = %id, "a delivery attempt ended after its lease was lost; another worker owns it")
        }
        Err(e) => {
            warn!(delivery = %id, error = %e, "could not record a delivery attempt; it runs again after its lease")
        }
    }
}

async fn finish(state: &AppState, job: &Job, lease_token: Uuid, outcome: JobOutcome) {
    if let Err(e) = state
        .store
        .finish_job(job.id, lease_token, &outcome, now())
        .await
    {
        warn!(job = %job.id, error = %e, "could not finish a delivery job; it runs again after its lease");
    }
}

/// Makes the attempt; says what to record and what the job does next.
async fn attempt(state: &AppState, work: &DeliveryWork) -> (AttemptRecord, JobOutcome) {
    let settings = &state.config.webhooks;
    let sub = &work.subscription.subscription;
    let number = work.delivery.attempts + 1;
    let started = now();
    let record = |attempt: DeliveryAttempt,
                  status: DeliveryStatus,
                  next: Option<Timestamp>,
                  health: SubscriptionHealth| AttemptRecord {
        tenant_id: work.delivery.tenant_id,
        delivery_id: work.delivery.id,
        subscription_id: sub.id,
        attempt,
        status,
        next_attempt_at: next,
        health,
    };
    if sub.status != SubscriptionStatus::Enabled {
        let error = format!(
            "not sent: the subscription is disabled ({})",
            sub.disabled_reason.as_deref().unwrap_or("no reason given")
        );
        metrics::counter!("patchbay_webhook_deliveries_total", "outcome" => "skipped").increment(1);
        return (
            record(
                DeliveryAttempt {
                    attempt: number,
                    attempted_at: started,
                    status_code: None,
                    duration_ms: 0,
                    error: Some(error),
                    response_snippet: String::new(),
                },
                DeliveryStatus::Failed,
                None,
                SubscriptionHealth::Unchanged,
            ),
            JobOutcome::Done,
        );
    }

    let body = body(&work.event);
    let timestamp = started.timestamp();
    let msg_id = work.event.id.to_string();
    let headers = match webhook_secrets::open(
        state,
        work.delivery.tenant_id,
        &sub.id.to_string(),
        &work.subscription.data_key,
        &work.subscription.secret,
        work.subscription.previous.as_ref(),
    )
    .map_err(|e| e.message)
    .and_then(|(current, previous)| {
        let mut secrets = vec![&current];
        secrets.extend(previous.as_ref());
        signature_header(&secrets, &msg_id, timestamp, body.as_bytes()).map_err(|e| e.to_string())
    }) {
        Ok(signature) => delivery_headers(&msg_id, timestamp, &signature),
        Err(error) => {
            // The vault could not open the secret: retrying will not help
            // until an operator fixes the keys; keep the delivery for a
            // manual redelivery.
            warn!(delivery = %work.delivery.id, %error, "could not sign a delivery");
            return (
                record(
                    DeliveryAttempt {
                        attempt: number,
                        attempted_at: started,
                        status_code: None,
                        duration_ms: 0,
                        error: Some(format!("not sent: could not sign ({error})")),
                        response_snippet: String::new(),
                    },
                    DeliveryStatus::Failed,
                    None,
                    SubscriptionHealth::Unchanged,
                ),
                JobOutcome::Done,
            );
        }
    };
    let sent = state
        .webhook_sender
        .send(&sub.url, headers, Bytes::from(body))
        .await;
    let attempt = DeliveryAttempt {
        attempt: number,
        attempted_at: started,
        status_code: sent.status,
        duration_ms: u32::try_from(sent.duration.as_millis()).unwrap_or(u32::MAX),
        error: sent.error.clone(),
        response_snippet: sent.snippet.clone(),
    };
    if sent.delivered() {
        debug!(delivery = %work.delivery.id, attempt = number, "delivered");
        metrics::counter!("patchbay_webhook_deliveries_total", "outcome" => "delivered")
            .increment(1);
        return (
            record(
                attempt,
                DeliveryStatus::Succeeded,
                None,
                // Only a run of failures needs ending (saves a statement per delivery).
                if sub.failing_since.is_some() {
                    SubscriptionHealth::Delivered
                } else {
                    SubscriptionHealth::Unchanged
                },
            ),
            JobOutcome::Done,
        );
    }
    let what = match (sent.status, &sent.error) {
        (_, Some(error)) => error.clone(),
        (Some(status), None) => format!("HTTP {status}"),
        (None, None) => "no answer".into(),
    };
    let health = SubscriptionHealth::Failed {
        disable_if_failing_since: started
            .checked_sub_signed(chrono_duration(settings.disable_after))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
        reason: format!(
            "Every delivery to {} failed for longer than {} (last: {what}). Fix the receiver, then re-enable the subscription (PATCH with {{\"enabled\": true}}) and redeliver what it missed.",
            sub.url,
            humanize(settings.disable_after)
        ),
    };
    let deadline = work
        .delivery
        .created_at
        .checked_add_signed(chrono_duration(settings.retry_window))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    let delay = backoff_between(
        settings.retry_base,
        settings.retry_max,
        number,
        random_unit(),
    )
    .max(sent.retry_after.unwrap_or_default());
    let next = add_millis(started, delay.as_millis());
    if next > deadline {
        metrics::counter!("patchbay_webhook_deliveries_total", "outcome" => "failed").increment(1);
        return (
            record(attempt, DeliveryStatus::Failed, None, health),
            JobOutcome::Done,
        );
    }
    metrics::counter!("patchbay_webhook_deliveries_total", "outcome" => "retried").increment(1);
    (
        record(attempt, DeliveryStatus::Pending, Some(next), health),
        JobOutcome::Retry {
            run_at: next,
            error: what,
        },
    )
}

fn delivery_headers(msg_id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(5);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("Patchbay-Webhooks/", env!("CARGO_PKG_VERSION"))),
    );
    // Ids, digits and base64 are always valid header values.
    if let Ok(v) = HeaderValue::from_str(msg_id) {
        headers.insert(HeaderName::from_static("webhook-id"), v);
    }
    headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from(timestamp),
    );
    if let Ok(v) = HeaderValue::from_str(signature) {
        headers.insert(HeaderName::from_static("webhook-signature"), v);
    }
    headers
}

fn chrono_duration(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_core::webhook::EventSource;
    use patchbay_core::{EventId, TenantId};

    #[test]
    fn the_body_wraps_the_payload_verbatim() {
        let at = now();
        let event = Event {
            id: EventId::new(),
            tenant_id: TenantId::new(),
            source: EventSource::Stripe,
            endpoint_id: None,
            connection_id: None,
            stripe_event_id: Some("evt_1".into()),
            event_type: "invoice.paid".into(),
            account: None,
            livemode: false,
            created: at,
            received_at: at,
            payload: "{\"id\":\"evt_1\",  \"type\":\"invoice.paid\"}".into(),
        };
        let b = body(&event);
        assert!(b.ends_with(",\"data\":{\"id\":\"evt_1\",  \"type\":\"invoice.paid\"}}"));
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["id"], event.id.to_string());
        assert_eq!(v["type"], "invoice.paid");
        assert_eq!(v["created"], at.timestamp());
        assert_eq!(v["data"]["id"], "evt_1");
        assert_eq!(humanize(Duration::from_secs(72 * 3600)), "72 h");
        assert_eq!(humanize(Duration::from_secs(90)), "90 s");
    }
}
