//! The tenant's Stripe Connect platform: its `ca_…` client id, its platform
//! secret key (proven with a test call, sealed) and the redirect URIs it
//! registered with Stripe. One per mode; both may be configured.

use patchbay_core::StoreError;
use patchbay_core::TenantId;
use patchbay_core::connect::{GrantScope, PlatformDeletion, StripePlatform};
use patchbay_core::time::now;
use patchbay_stripe::oauth::is_client_id;
use patchbay_stripe::{KeyKind, StripeKey};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

use super::credentials::platform_context;
use super::error::ServiceError;
use super::test_call::{self, Budget, Verdict};
use crate::auth::AuditContext;
use crate::state::AppState;

/// Most redirect URIs a platform may register here.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Longest URL accepted (redirect URIs, return URLs).
pub const MAX_URL_CHARS: usize = 2000;

/// A platform to configure.
#[derive(Debug)]
pub struct PlatformInput {
    /// `ca_…`
    pub client_id: String,
    /// The platform's secret key; its mode picks the platform configured.
    pub secret_key: SecretString,
    /// Redirect URIs registered with Stripe.
    pub redirect_uris: Vec<String>,
    /// Default scope (`read_write` unless given).
    pub scope: Option<String>,
}

/// Parses a scope, naming `param` when it is not one of Stripe's.
pub(crate) fn parse_scope(value: &str, param: &str) -> Result<GrantScope, ServiceError> {
    GrantScope::parse(value).ok_or_else(|| {
        ServiceError::unprocessable(
            "parameter_invalid",
            format!("'{value}' is not a Connect scope: use read_write or read_only."),
        )
        .with_param(param)
    })
}

/// Checks an absolute http(s) URL with a host, no fragment and no credentials;
/// plain http only for loopback hosts.
pub(crate) fn check_url(value: &str, param: &str) -> Result<Url, ServiceError> {
    let bad = |why: &str| {
        ServiceError::unprocessable("parameter_invalid", format!("{param} {why}")).with_param(param)
    };
    if value.chars().count() > MAX_URL_CHARS {
        return Err(bad(&format!("must be at most {MAX_URL_CHARS} characters.")));
    }
    let url = Url::parse(value)
        .map_err(|_| bad("must be an absolute URL such as https://app.example.com/callback."))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(bad("must use https (http only for localhost).")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host."));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("cannot carry a #fragment or user credentials."));
    }
    Ok(url)
}

/// Configures (or replaces) the platform of the key's mode, after proving the key.
pub async fn put(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    input: PlatformInput,
) -> Result<Vec<StripePlatform>, ServiceError> {
    if !is_client_id(&input.client_id) {
        return Err(ServiceError::unprocessable(
            "parameter_invalid",
            "client_id must be your platform's Connect client id (ca_…), from the Stripe Dashboard's Connect settings.",
        )
        .with_param("client_id"));
    }
    let key = StripeKey::parse(input.secret_key).map_err(|e| {
        ServiceError::unprocessable(e.code, e.message.replace("api_key", "secret_key"))
            .with_param("secret_key")
    })?;
    if key.kind() != KeyKind::Secret {
        return Err(ServiceError::unprocessable(
            "stripe_key_wrong_type",
            "secret_key must be the platform's secret key (sk_…): Stripe's OAuth token exchange accepts no restricted key.",
        )
        .with_param("secret_key"));
    }
    if input.redirect_uris.is_empty() || input.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(ServiceError::unprocessable(
            "parameter_invalid",
            format!("redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs, exactly as registered in the Stripe Dashboard (usually this server's /api/v1/oauth/stripe/callback)."),
        )
        .with_param("redirect_uris"));
    }
    let mut redirect_uris = Vec::with_capacity(input.redirect_uris.len());
    for (i, uri) in input.redirect_uris.iter().enumerate() {
        check_url(uri, &format!("redirect_uris[{i}]"))?;
        if !redirect_uris.contains(uri) {
            redirect_uris.push(uri.clone());
        }
    }
    let scope = input
        .scope
        .as_deref()
        .map(|s| parse_scope(s, "scope"))
        .transpose()?
        .unwrap_or(GrantScope::ReadWrite);

    let verdict = test_call::run(state, &key, None, None, None, Budget::Interactive).await?;
    let proof = match verdict {
        Verdict::Valid(proof) => proof,
        Verdict::Refused(refusal) => {
            let mut answer = refusal.answer;
            answer.param = Some("secret_key".into());
            return Err(answer);
        }
    };
    let data_key_record =
        state.store.tenant_data_key(tenant).await?.ok_or_else(|| {
            ServiceError::internal(&format_args!("tenant {tenant} has no data key"))
        })?;
    let data_key = state.keyring.open_data_key(&data_key_record)?;
    let sealed = data_key.seal(platform_context(tenant, key.livemode()), key.secret())?;
    let at = now();
    let platform = StripePlatform {
        tenant_id: tenant,
        livemode: key.livemode(),
        client_id: input.client_id,
        key_hint: key.hint(),
        platform_account_id: proof.account.and_then(|a| a.stripe_account_id),
        redirect_uris,
        scope,
        created_at: at,
        updated_at: at,
    };
    let event = ctx.event(
        tenant,
        "integration.stripe.configured",
        format_args!("stripe_platform:{}", mode(platform.livemode)),
        json!({
            "client_id": platform.client_id,
            "key_hint": platform.key_hint,
            "livemode": platform.livemode,
            "redirect_uris": platform.redirect_uris,
        }),
    );
    let put = state
        .store
        .put_stripe_platform(&platform, data_key_record.id, &sealed, &event)
        .await;
    state.tenant_changed(tenant).await;
    put.map_err(|e| match e {
            StoreError::Conflict { field: "client_id" } => ServiceError::conflict(
                "integration_in_use",
                format!(
                    "Connect connections in {} mode were granted to the current client id; a new client id would orphan them. Delete them (or the integration with ?force=true) first.",
                    mode(platform.livemode)
                ),
            )
            .with_param("client_id"),
            other => other.into(),
        })?;
    list(state, tenant).await
}

/// The tenant's platforms.
pub async fn list(state: &AppState, tenant: TenantId) -> Result<Vec<StripePlatform>, ServiceError> {
    Ok(state.store.list_stripe_platforms(tenant).await?)
}

/// `test` or `live`.
pub(crate) fn mode(livemode: bool) -> &'static str {
    if livemode { "live" } else { "test" }
}

/// Parses `test` / `live`.
pub(crate) fn parse_mode(value: &str) -> Result<bool, ServiceError> {
    match value {
        "test" => Ok(false),
        "live" => Ok(true),
        other => Err(ServiceError::unprocessable(
            "parameter_invalid",
            format!("'{other}' is not a mode: use test or live."),
        )
        .with_param("mode")),
    }
}

/// Deletes the platform of one mode (or both). Refused while Connect
/// connections depend on it, unless `force` (which removes them too, locally:
/// Stripe is not told; disconnect them one by one to deauthorize them).
pub async fn delete(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    livemode: Option<bool>,
    force: bool,
) -> Result<(), ServiceError> {
    let event = ctx.event(
        tenant,
        "integration.stripe.deleted",
        format_args!("stripe_platform:{}", livemode.map_or("all", mode)),
        json!({"force": force}),
    );
    let deleted = state
        .store
        .delete_stripe_platforms(tenant, livemode, force, &event)
        .await;
    state.tenant_changed(tenant).await;
    match deleted? {
        PlatformDeletion::Deleted { .. } => Ok(()),
        PlatformDeletion::NotFound => Err(ServiceError::not_found(
            "stripe integration",
            livemode.map_or("stripe", mode),
        )),
        PlatformDeletion::InUse { connections } => Err(ServiceError::conflict(
            "integration_in_use",
            format!(
                "{connections} Connect connection(s) act through this platform. Disconnect them first (DELETE /api/v1/connections/{{id}} deauthorizes each at Stripe), or add ?force=true to delete them here without telling Stripe."
            ),
        )),
    }
}
