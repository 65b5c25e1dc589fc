//! Stripe connections: creation by API key after a successful test call,
//! reading, editing, re-validation (keys and Connect grants alike), atomic key
//! rotation and deletion (a Connect grant is deauthorized first, see `oauth`).

use std::collections::BTreeMap;

use patchbay_core::connect::{ConnectionSecret, SecretRole, SessionUse};
use patchbay_core::connection::{
    AccountDetails, AuthMethod, Connection, ConnectionDetails, ConnectionFilter, ConnectionStatus,
    LastError, Provider, ValidationRecord, validate_external_id,
};
use patchbay_core::metadata::MetadataPatch;
use patchbay_core::store::{NewConnection, SecretRotation, Updated};
use patchbay_core::tenant::validate_name;
use patchbay_core::time::{add_seconds, now};
use patchbay_core::webhook::types;
use patchbay_core::{
    ConnectionId, Metadata, Page, PageRequest, StoreError, TenantId, ValidationError,
};
use patchbay_stripe::{
    AccountChange, KeyError, KeyKind, RateKey, StripeKey, check_rotation, validate_stripe_version,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::credentials::secret_context;
pub use super::credentials::{Credential, OpenedConnection, open};
use super::error::ServiceError;
use super::quotas;
use super::test_call::{self, Budget, Verdict};
use super::{CAS_ATTEMPTS, next_updated_at};
use crate::auth::AuditContext;
use crate::state::AppState;

/// Longest grace period for a replaced key.
pub const MAX_KEEP_PREVIOUS_SECONDS: u64 = 30 * 24 * 3600;

/// A connection to create.
#[derive(Debug)]
pub struct NewConnectionInput {
    /// Must be Stripe.
    pub provider: Provider,
    /// The pasted key.
    pub api_key: SecretString,
    /// The tenant's reference.
    pub external_id: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Pinned API version.
    pub stripe_version: Option<String>,
    /// Run the test call first (default); without it the connection is `pending`.
    pub validate: bool,
    /// The connect session creating it (spent by the creation).
    pub session: Option<SessionUse>,
}

/// A key rotation's options.
#[derive(Debug, Default)]
pub struct RotateOptions {
    /// Keep the replaced key, sealed, for this many seconds.
    pub keep_previous_for_seconds: Option<u64>,
    /// Accept that the new key may reach another Stripe account than the
    /// connection's (or one that cannot be proven the same); audited.
    pub allow_account_change: bool,
}

/// What a PATCH may change; `Some(None)` clears a field.
#[derive(Debug, Default)]
pub struct ConnectionPatch {
    /// Display name.
    pub name: Option<Option<String>>,
    /// Metadata merge patch.
    pub metadata: Option<Option<MetadataPatch>>,
    /// External id.
    pub external_id: Option<Option<String>>,
    /// Pinned API version.
    pub stripe_version: Option<Option<String>>,
}

fn key_error(e: KeyError) -> ServiceError {
    ServiceError::unprocessable(e.code, e.message).with_param("api_key")
}

fn external_id_taken(external_id: &str) -> ServiceError {
    ServiceError::conflict(
        "external_id_taken",
        format!("A connection with external_id '{external_id}' already exists for this tenant."),
    )
    .with_param("external_id")
}

pub(crate) fn store_error(e: StoreError, external_id: Option<&str>) -> ServiceError {
    match (e, external_id) {
        (
            StoreError::Conflict {
                field: "external_id",
            },
            Some(ext),
        ) => external_id_taken(ext),
        (StoreError::Conflict { field: "session" }, _) => session_used(),
        (e, _) => e.into(),
    }
}

/// A connect session that has already created its connection.
pub(crate) fn session_used() -> ServiceError {
    ServiceError::forbidden(
        "session_used",
        "This connect session has already created its connection; ask the tenant's backend for a new one.",
    )
}

fn auth_method(key: &StripeKey) -> AuthMethod {
    match key.kind() {
        KeyKind::Secret => AuthMethod::SecretKey,
        KeyKind::Restricted => AuthMethod::RestrictedKey,
    }
}

fn not_found(id: ConnectionId) -> ServiceError {
    ServiceError::not_found("connection", &id.to_string())
}

/// Creates a connection. Runs the test call first (unless told not to) and
/// stores nothing when it fails.
pub async fn create(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    input: NewConnectionInput,
) -> Result<Connection, ServiceError> {
    // One provider so far; a second one will make this match non-exhaustive.
    let Provider::Stripe = input.provider;
    let key = StripeKey::parse(input.api_key).map_err(key_error)?;
    let external_id = input
        .external_id
        .as_deref()
        .map(validate_external_id)
        .transpose()?;
    let name = input
        .name
        .as_deref()
        .map(|n| validate_name(n, "name"))
        .transpose()?;
    let metadata = Metadata::new(input.metadata, "metadata")?;
    let stripe_version = input
        .stripe_version
        .as_deref()
        .map(validate_stripe_version)
        .transpose()?;
    quotas::check_connections(state, tenant).await?;
    if let Some(ext) = &external_id
        && state
            .store
            .find_connection_by_external_id(tenant, ext)
            .await?
            .is_some()
    {
        return Err(external_id_taken(ext));
    }
    let data_key_record =
        state.store.tenant_data_key(tenant).await?.ok_or_else(|| {
            ServiceError::internal(&format_args!("tenant {tenant} has no data key"))
        })?;

    let at = now();
    let every = state.config.revalidate_every;
    let (status, account, missing_permissions, validated_at, next_validation_at) = if input.validate
    {
        let proof = match test_call::run(
            state,
            &key,
            None,
            stripe_version.as_deref(),
            None,
            Budget::Interactive,
        )
        .await?
        {
            Verdict::Valid(proof) => proof,
            Verdict::Refused(refusal) => return Err(refusal.answer),
        };
        (
            ConnectionStatus::Active,
            proof.account.unwrap_or_default(),
            proof.missing_permissions,
            Some(at),
            add_seconds(at, every.as_secs() as i64),
        )
    } else {
        // Pending connections are validated by the next background pass.
        (
            ConnectionStatus::Pending,
            AccountDetails::default(),
            Vec::new(),
            None,
            at,
        )
    };

    let id = ConnectionId::new();
    let data_key = state.keyring.open_data_key(&data_key_record)?;
    let id_text = id.to_string();
    let secret = data_key.seal(
        secret_context(tenant, &id_text, SecretRole::ApiKey),
        key.secret(),
    )?;
    let connection = Connection {
        id,
        tenant_id: tenant,
        provider: Provider::Stripe,
        auth_method: auth_method(&key),
        livemode: key.livemode(),
        status,
        account,
        key_hint: key.hint(),
        external_id: external_id.clone(),
        name,
        metadata,
        stripe_version,
        missing_permissions,
        last_validated_at: validated_at,
        last_error: None,
        previous_key_hint: None,
        previous_key_expires_at: None,
        grant: None,
        created_at: at,
        updated_at: at,
    };
    let event = ctx.event(
        tenant,
        "connection.created",
        id,
        json!({
            "key_hint": connection.key_hint,
            "status": connection.status,
            "livemode": connection.livemode,
            "stripe_account_id": connection.account.stripe_account_id,
        }),
    );
    let new = NewConnection {
        connection,
        data_key_id: data_key_record.id,
        secrets: vec![ConnectionSecret::new(SecretRole::ApiKey, secret)],
        jobs: vec![super::jobs::revalidation(tenant, id, next_validation_at)],
        session: input.session,
    };
    state
        .store
        .create_connection(&new, &event)
        .await
        .map_err(|e| store_error(e, external_id.as_deref()))?;
    if next_validation_at <= at {
        state.job_wakeup.wake();
    }
    super::events::emit_connection(state, types::CONNECTION_CREATED, &new.connection, json!({}))
        .await;
    Ok(new.connection)
}

/// One connection.
pub async fn get(
    state: &AppState,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Connection, ServiceError> {
    state
        .store
        .get_connection(tenant, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Connections matching `filter`, newest first.
pub async fn list(
    state: &AppState,
    tenant: TenantId,
    filter: &ConnectionFilter,
    page: &PageRequest<ConnectionId>,
) -> Result<Page<Connection>, ServiceError> {
    Ok(state.store.list_connections(tenant, filter, page).await?)
}

/// Changes name, metadata, external id or pinned version.
pub async fn update(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: ConnectionId,
    patch: ConnectionPatch,
) -> Result<Connection, ServiceError> {
    let name = patch
        .name
        .map(|n| n.as_deref().map(|n| validate_name(n, "name")).transpose())
        .transpose()?;
    let external_id = patch
        .external_id
        .map(|e| e.as_deref().map(validate_external_id).transpose())
        .transpose()?;
    let stripe_version = patch
        .stripe_version
        .map(|v| v.as_deref().map(validate_stripe_version).transpose())
        .transpose()?;
    for _ in 0..CAS_ATTEMPTS {
        let current = get(state, tenant, id).await?;
        let mut details: ConnectionDetails = current.details();
        if let Some(name) = &name {
            details.name = name.clone();
        }
        if let Some(ext) = &external_id {
            details.external_id = ext.clone();
        }
        if let Some(version) = &stripe_version {
            details.stripe_version = version.clone();
        }
        match &patch.metadata {
            Some(Some(p)) => details.metadata = current.metadata.patched(p.clone(), "metadata")?,
            Some(None) => details.metadata = Metadata::default(),
            None => {}
        }
        if details == current.details() {
            // Nothing to change: no write, no audit event, no new updated_at.
            return Ok(current);
        }
        let event = ctx.event(tenant, "connection.updated", id, json!({
                "name_changed": details.name != current.name,
                "metadata_changed": details.metadata != current.metadata,
                "external_id": (details.external_id != current.external_id).then_some(&details.external_id),
                "stripe_version": (details.stripe_version != current.stripe_version).then_some(&details.stripe_version),
            }));
        let updated = state
            .store
            .update_connection_details(
                tenant,
                id,
                &details,
                current.updated_at,
                next_updated_at(current.updated_at),
                &event,
            )
            .await;
        state.connection_changed(tenant, id).await;
        let updated = updated.map_err(|e| store_error(e, details.external_id.as_deref()))?;
        match updated {
            Updated::Applied(c) => return Ok(c),
            Updated::NotFound => return Err(not_found(id)),
            Updated::Stale => continue,
        }
    }
    Err(ServiceError::conflict(
        "concurrent_update",
        "The connection kept changing while this update was applied; retry it.",
    ))
}

/// Deletes a connection and its sealed secrets. A Connect grant is
/// deauthorized at Stripe first (see [`super::oauth::disconnect`]).
pub async fn delete(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<super::oauth::Disconnect, ServiceError> {
    let current = get(state, tenant, id).await?;
    let outcome = if current.auth_method == AuthMethod::Oauth {
        super::oauth::disconnect(state, ctx, tenant, &current).await?
    } else {
        let event = ctx.event(
            tenant,
            "connection.deleted",
            id,
            json!({"key_hint": current.key_hint}),
        );
        if !state.store.delete_connection(tenant, id, &event).await? {
            return Err(not_found(id));
        }
        super::oauth::Disconnect::Deleted
    };
    // Deleted, or revoking (no more calls through it) either way.
    state.connection_changed(tenant, id).await;
    match &outcome {
        super::oauth::Disconnect::Deleted => {
            super::events::emit_connection(state, types::CONNECTION_DELETED, &current, json!({}))
                .await;
        }
        super::oauth::Disconnect::Pending(updated) => {
            super::events::emit_status_change(state, &current, updated).await;
        }
    }
    Ok(outcome)
}

/// Marks a connection `revoked` with why (Stripe told Patchbay the access is
/// gone), unless it is already revoked or being disconnected. True if changed.
pub async fn mark_revoked(
    state: &AppState,
    tenant: TenantId,
    id: ConnectionId,
    code: &str,
    message: &str,
) -> Result<bool, ServiceError> {
    let Some(before) = state.store.get_connection(tenant, id).await? else {
        return Ok(false);
    };
    if matches!(
        before.status,
        ConnectionStatus::Revoked | ConnectionStatus::Revoking
    ) {
        return Ok(false);
    }
    let record = ValidationRecord {
        status: ConnectionStatus::Revoked,
        account: None,
        missing_permissions: before.missing_permissions.clone(),
        validated_at: now(),
        last_error: Some(LastError {
            code: code.to_owned(),
            message: message.to_owned(),
            stripe_request_id: None,
        }),
    };
    let event = AuditContext::system().event(
        tenant,
        "connection.revoked",
        id,
        json!({"reason": code, "previous_status": before.status}),
    );
    let recorded = state
        .store
        .record_validation(tenant, id, &record, Some(&event))
        .await;
    state.connection_changed(tenant, id).await;
    let Some(after) = recorded? else {
        return Ok(false);
    };
    super::events::emit_status_change(state, &before, &after).await;
    Ok(true)
}

/// Why a validation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A caller asked (`POST /connections/{id}/validate`): always audited.
    Request,
    /// The background validator: audited only when the status changes.
    Schedule,
}

/// Re-runs the test call and records the outcome.
pub async fn validate(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: ConnectionId,
    trigger: Trigger,
) -> Result<Connection, ServiceError> {
    let opened = open(state, tenant, id).await?;
    let conn = &opened.connection;
    if conn.status == ConnectionStatus::Revoking {
        return Err(super::oauth::revoking(id));
    }
    let rate = conn.id.to_string();
    let verdict = test_call::run(
        state,
        opened.credential.key(),
        opened.credential.stripe_account(),
        conn.stripe_version.as_deref(),
        Some(RateKey {
            key: &rate,
            livemode: conn.livemode,
        }),
        match trigger {
            Trigger::Request => Budget::Interactive,
            Trigger::Schedule => Budget::Background,
        },
    )
    .await?;
    let record = verdict.record(now());
    let changed = record.status != conn.status;
    let event = (trigger == Trigger::Request || changed).then(|| {
        ctx.event(tenant, "connection.validated", id, json!({
                "status": record.status,
                "previous_status": conn.status,
                "error_code": record.last_error.as_ref().map(|e| &e.code),
                "stripe_request_id": record.last_error.as_ref().and_then(|e| e.stripe_request_id.as_ref()),
            }))
    });
    let recorded = state
        .store
        .record_validation(tenant, id, &record, event.as_ref())
        .await;
    state.connection_changed(tenant, id).await;
    let recorded = recorded?.ok_or_else(|| not_found(id))?;
    super::events::emit_status_change(state, conn, &recorded).await;
    if trigger == Trigger::Request {
        // The schedule normally exists since creation; a request re-creates it
        // if its job ever died (a no-op while one is pending).
        let next = add_seconds(
            recorded.updated_at.max(now()),
            state.config.revalidate_every.as_secs() as i64,
        );
        state
            .store
            .enqueue_job(&super::jobs::revalidation(tenant, id, next))
            .await?;
    }
    Ok(recorded)
}

/// Replaces the connection's key after proving the new one reaches the same
/// account in the same mode (or the caller accepting an account change); the
/// swap is one statement, so a concurrent call uses the old key or the new
/// one, never neither.
pub async fn rotate(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: ConnectionId,
    api_key: SecretString,
    options: RotateOptions,
) -> Result<Connection, ServiceError> {
    let RotateOptions {
        keep_previous_for_seconds,
        allow_account_change,
    } = options;
    if let Some(secs) = keep_previous_for_seconds
        && !(1..=MAX_KEEP_PREVIOUS_SECONDS).contains(&secs)
    {
        return Err(ValidationError::invalid(
            "keep_previous_for_seconds",
            format!("keep_previous_for_seconds must be between 1 and {MAX_KEEP_PREVIOUS_SECONDS} (30 days); leave it out to destroy the old key at once."),
        )
        .into());
    }
    let new_key = StripeKey::parse(api_key).map_err(key_error)?;
    let opened = open(state, tenant, id).await?;
    let conn = &opened.connection;
    let Credential::ApiKey(current_key) = &opened.credential else {
        return Err(ServiceError::unprocessable(
            "rotation_not_supported",
            "This connection is a Stripe Connect grant: it has no key to rotate. Refresh it with POST /api/v1/connections/{id}/refresh, or connect the account again.",
        ));
    };
    if new_key.livemode() != conn.livemode {
        let mode = |live: bool| if live { "live" } else { "test" };
        return Err(ServiceError::unprocessable(
            "mode_mismatch",
            format!(
                "The new key is a {}-mode key but this connection is in {} mode; a connection's mode never changes. Create a new connection instead.",
                mode(new_key.livemode()),
                mode(conn.livemode)
            ),
        )
        .with_param("api_key"));
    }
    if new_key.secret().expose_secret() == current_key.secret().expose_secret() {
        return Err(ServiceError::unprocessable(
            "same_key",
            "The new key is the key this connection already uses.",
        )
        .with_param("api_key"));
    }
    let rate = conn.id.to_string();
    let verdict = test_call::run(
        state,
        &new_key,
        None,
        conn.stripe_version.as_deref(),
        Some(RateKey {
            key: &rate,
            livemode: conn.livemode,
        }),
        Budget::Interactive,
    )
    .await?;
    let reached = match &verdict {
        Verdict::Valid(proof) => proof
            .account
            .as_ref()
            .and_then(|a| a.stripe_account_id.as_deref()),
        Verdict::Refused(refusal) => return Err(refusal.answer.clone()),
    };
    let change = check_rotation(
        conn.account.stripe_account_id.as_deref(),
        reached,
        allow_account_change,
    )
    .map_err(|refusal| {
        ServiceError::unprocessable(refusal.code, refusal.message).with_param("api_key")
    })?;

    let at = now();
    let id_text = id.to_string();
    let secret = opened.data_key.seal(
        secret_context(tenant, &id_text, SecretRole::ApiKey),
        new_key.secret(),
    )?;
    let previous = keep_previous_for_seconds
        .map(|secs| -> Result<_, ServiceError> {
            let sealed = opened.data_key.seal(
                secret_context(tenant, &id_text, SecretRole::PreviousApiKey),
                current_key.secret(),
            )?;
            Ok((sealed, current_key.hint(), add_seconds(at, secs as i64)))
        })
        .transpose()?;
    let mut validation = verdict.record(at);
    let account_change = match &change {
        AccountChange::Same => None,
        AccountChange::Accepted { from, to } => {
            if to.is_none() {
                // The old account's details no longer describe the key.
                validation.account = Some(AccountDetails::default());
            }
            Some(json!({"from": from, "to": to, "accepted_by_caller": true}))
        }
    };
    let rotation = SecretRotation {
        auth_method: auth_method(&new_key),
        key_hint: new_key.hint(),
        data_key_id: opened.data_key_id,
        secret,
        previous,
        validation,
        updated_at: next_updated_at(conn.updated_at),
    };
    let event = ctx.event(
        tenant,
        "connection.rotated",
        id,
        json!({
            "previous_key_hint": conn.key_hint,
            "key_hint": rotation.key_hint,
            "previous_key_kept_until": rotation.previous.as_ref().map(|p| p.2),
            "stripe_account_id": reached,
            "account_change": account_change,
        }),
    );
    let rotated = state
        .store
        .rotate_connection_secret(tenant, id, &rotation, &event)
        .await;
    state.connection_changed(tenant, id).await;
    rotated?.ok_or_else(|| not_found(id))
}
