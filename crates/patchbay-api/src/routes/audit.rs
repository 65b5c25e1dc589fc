//! `/api/v1/audit-events`: who did what, when. Tenants see their own events
//! (with an `admin` scoped key); the platform admin sees everyone's.

use axum::extract::State;
use chrono::{DateTime, Utc};
use patchbay_core::api_key::Scope;
use patchbay_core::audit::AuditEvent;
use patchbay_core::store::AuditFilter;
use patchbay_core::{AuditEventId, TenantId};
use serde::{Deserialize, Serialize};

use super::common::{ListResponse, StandardErrors, page};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Query, parse_id};
use crate::state::AppState;

/// One audit record. Details never contain secrets, only ids, hints and outcomes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEventObject {
    /// `aud_…`
    pub id: AuditEventId,
    /// Always `audit_event`.
    #[schema(example = "audit_event")]
    pub object: &'static str,
    /// The tenant concerned.
    pub tenant_id: Option<TenantId>,
    /// `admin`, `system`, or the API key id that acted.
    #[schema(example = "key_01jq3v6k8e9r0f7t5b2n4m6p8s")]
    pub actor: String,
    /// What happened: `connection.created`, `connection.rotated`, `api_key.revoked`, …
    #[schema(example = "connection.rotated")]
    pub action: String,
    /// The record acted on.
    pub target_id: Option<String>,
    /// Outcome and context.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Patchbay's own id (`req_…`, the `x-request-id` response header) of the
    /// request that caused it.
    pub request_id: Option<String>,
    /// The `x-request-id` the caller sent with that request, if it was well
    /// formed (up to 64 letters, digits, `-`, `_`, `.`): the caller's, unverified.
    pub client_request_id: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl From<AuditEvent> for AuditEventObject {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            object: "audit_event",
            tenant_id: e.tenant_id,
            actor: e.actor.to_string(),
            action: e.action,
            target_id: e.target_id,
            details: e.details,
            request_id: e.request_id,
            client_request_id: e.client_request_id,
            created_at: e.created_at,
        }
    }
}

/// Filters and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAuditEvents {
    /// 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// An event id: list older events.
    #[param(value_type = Option<AuditEventId>)]
    pub starting_after: Option<String>,
    /// An event id: list newer events.
    #[param(value_type = Option<AuditEventId>)]
    pub ending_before: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only events about this record.
    pub target_id: Option<String>,
    /// Platform admin only: only this tenant's events.
    #[param(value_type = Option<TenantId>)]
    pub tenant_id: Option<String>,
}

/// List audit events
///
/// Who did what, when: a page of audit events, newest first. A tenant key with the
/// `admin` scope sees its tenant's events; the platform admin token sees all and may
/// filter by `tenant_id`. Events carry the request id and hints, never secrets.
#[utoipa::path(get, path = "/api/v1/audit-events", tag = "audit", params(ListAuditEvents),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of events", body = ListResponse<AuditEventObject>, example = super::examples::audit_event_list), StandardErrors))]
pub async fn list_audit_events(
    principal: Principal,
    State(state): State<AppState>,
    Query(query): Query<ListAuditEvents>,
) -> Result<axum::Json<ListResponse<AuditEventObject>>, ApiError> {
    let tenant = match (&principal, &query.tenant_id) {
        (Principal::Admin, Some(t)) => Some(parse_id(t, "tenant_id")?),
        (Principal::Admin, None) => None,
        (Principal::Tenant(t), None) => {
            t.require(Scope::Admin)?;
            Some(t.tenant_id)
        }
        (Principal::Tenant(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "parameter_unknown",
                "tenant_id is a platform-admin filter; a tenant key always lists its own tenant's events.",
            )
            .with_param("tenant_id"));
        }
    };
    let request = page(
        query.limit,
        query.starting_after.as_deref(),
        query.ending_before.as_deref(),
    )?;
    let filter = AuditFilter {
        action: query.action,
        target_id: query.target_id,
    };
    let page = state
        .store
        .list_audit_events(tenant, &filter, &request)
        .await?;
    Ok(axum::Json(ListResponse::new(
        page.data.into_iter().map(Into::into).collect(),
        page.has_more,
        "/api/v1/audit-events",
    )))
}
