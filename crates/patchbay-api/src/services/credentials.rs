//! A connection's credential as a type: an API key, or a Connect grant acting
//! through the tenant's platform key. Opening one yields what a Stripe call
//! needs — the key to send and, for a grant, the `Stripe-Account` to send with
//! it — only in memory: for the call at hand, or for the proxy and actions
//! at most `PATCHBAY_CONNECTION_CACHE_TTL` (see `credential_cache`).

use std::sync::Arc;
use std::time::Instant;

use patchbay_core::connect::{SecretRole, StripePlatform};
use patchbay_core::connection::{AuthMethod, Connection};
use patchbay_core::sealed::SealedSecret;
use patchbay_core::{ConnectionId, DataKeyId, TenantId};
use patchbay_stripe::StripeKey;
use patchbay_vault::{DataKey, SecretContext};
use secrecy::SecretString;

use super::credential_cache::HotConnection;
use super::error::ServiceError;
use crate::state::AppState;

/// The field name bound into a sealed platform key.
const PLATFORM_KEY_FIELD: &str = "platform_secret_key";

/// The record id bound into a sealed platform key: one per tenant and mode.
pub(crate) fn platform_record(livemode: bool) -> &'static str {
    if livemode {
        "stripe_platform:live"
    } else {
        "stripe_platform:test"
    }
}

/// Where a platform key is sealed.
pub(crate) fn platform_context(tenant: TenantId, livemode: bool) -> SecretContext<'static> {
    SecretContext {
        tenant,
        record: platform_record(livemode),
        field: PLATFORM_KEY_FIELD,
    }
}

/// Where a connection's secret of `role` is sealed.
pub(crate) fn secret_context(
    tenant: TenantId,
    record: &str,
    role: SecretRole,
) -> SecretContext<'_> {
    SecretContext {
        tenant,
        record,
        field: role.as_str(),
    }
}

/// The tenant's Connect platform with its key opened.
#[derive(Debug)]
pub struct OpenedPlatform {
    /// The platform.
    pub platform: StripePlatform,
    /// Its secret key (`Debug` shows only the hint).
    pub key: StripeKey,
}

/// Opens the tenant's platform of one mode; `None` when none is configured.
pub async fn open_platform(
    state: &AppState,
    tenant: TenantId,
    livemode: bool,
) -> Result<Option<OpenedPlatform>, ServiceError> {
    let Some(found) = state
        .store
        .get_stripe_platform_secret(tenant, livemode)
        .await?
    else {
        return Ok(None);
    };
    let data_key = state.keyring.open_data_key(&found.data_key)?;
    let text = data_key.open(platform_context(tenant, livemode), &found.secret)?;
    let key = StripeKey::parse(text).map_err(|e| {
        ServiceError::internal(&format_args!(
            "stored platform key no longer parses: {}",
            e.code
        ))
    })?;
    Ok(Some(OpenedPlatform {
        platform: found.platform,
        key,
    }))
}

/// What a connection calls Stripe with.
#[derive(Debug)]
pub enum Credential {
    /// A secret or restricted key of the account itself.
    ApiKey(StripeKey),
    /// A Connect grant: calls use the platform's key on the connected account.
    ConnectGrant(Grant),
}

/// An opened Connect grant.
#[derive(Debug)]
pub struct Grant {
    /// The tenant's platform, key opened.
    pub platform: OpenedPlatform,
    /// The connected account (`acct_…`).
    pub account: String,
    /// The grant's refresh token, when Stripe issued one.
    pub refresh_token: Option<SecretString>,
}

impl Credential {
    /// The key to send.
    pub fn key(&self) -> &StripeKey {
        match self {
            Self::ApiKey(key) => key,
            Self::ConnectGrant(grant) => &grant.platform.key,
        }
    }

    /// The `Stripe-Account` to send with it, for a grant.
    pub fn stripe_account(&self) -> Option<&str> {
        match self {
            Self::ApiKey(_) => None,
            Self::ConnectGrant(grant) => Some(&grant.account),
        }
    }
}

/// A connection with its credential opened. `Debug` shows only hints.
#[derive(Debug)]
pub struct OpenedConnection {
    /// The record.
    pub connection: Connection,
    /// What calls use.
    pub credential: Credential,
    pub(crate) data_key: DataKey,
    pub(crate) data_key_id: DataKeyId,
}

fn not_found(id: ConnectionId) -> ServiceError {
    ServiceError::not_found("connection", &id.to_string())
}

fn open_secret(
    data_key: &DataKey,
    tenant: TenantId,
    record: &str,
    role: SecretRole,
    sealed: &SealedSecret,
) -> Result<SecretString, ServiceError> {
    Ok(data_key.open(secret_context(tenant, record, role), sealed)?)
}

/// Opens a connection's credential.
pub async fn open(
    state: &AppState,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<OpenedConnection, ServiceError> {
    let secrets = state
        .store
        .get_connection_secrets(tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let data_key = state.keyring.open_data_key(&secrets.data_key)?;
    let record = id.to_string();
    let conn = &secrets.connection;
    let missing = |role: SecretRole| {
        ServiceError::internal(&format_args!(
            "connection {id} has no sealed {}",
            role.as_str()
        ))
    };
    let credential = match conn.auth_method {
        AuthMethod::SecretKey | AuthMethod::RestrictedKey => {
            let role = SecretRole::ApiKey;
            let sealed = secrets.secret(role).ok_or_else(|| missing(role))?;
            let text = open_secret(&data_key, tenant, &record, role, sealed)?;
            Credential::ApiKey(StripeKey::parse(text).map_err(|e| {
                ServiceError::internal(&format_args!("stored key no longer parses: {}", e.code))
            })?)
        }
        AuthMethod::Oauth => {
            let account = conn.account.stripe_account_id.clone().ok_or_else(|| {
                ServiceError::internal(&format_args!("Connect connection {id} has no account"))
            })?;
            let platform = open_platform(state, tenant, conn.livemode)
                .await?
                .ok_or_else(|| platform_missing(conn.livemode))?;
            let refresh_token = secrets
                .secret(SecretRole::RefreshToken)
                .map(|sealed| {
                    open_secret(&data_key, tenant, &record, SecretRole::RefreshToken, sealed)
                })
                .transpose()?;
            Credential::ConnectGrant(Grant {
                platform,
                account,
                refresh_token,
            })
        }
    };
    Ok(OpenedConnection {
        connection: secrets.connection,
        credential,
        data_key,
        data_key_id: secrets.data_key.id,
    })
}

/// A connection's record and credential for a call (the proxy, actions):
/// from the short-lived cache when it has them, else opened and cached.
pub async fn open_for_call(
    state: &AppState,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Arc<HotConnection>, ServiceError> {
    let cache = &state.credential_cache;
    if let Some(hot) = cache.get(tenant, id, Instant::now()) {
        return Ok(hot);
    }
    let ticket = cache.ticket();
    let hot = Arc::new(HotConnection::from(open(state, tenant, id).await?));
    cache.insert(tenant, id, hot.clone(), ticket, Instant::now());
    Ok(hot)
}

/// The error when a Connect connection's platform is gone.
pub(crate) fn platform_missing(livemode: bool) -> ServiceError {
    let mode = if livemode { "live" } else { "test" };
    ServiceError::conflict(
        "integration_missing",
        format!(
            "No Stripe Connect platform is configured for {mode} mode: configure it with PUT /api/v1/integrations/stripe and a {mode}-mode secret key."
        ),
    )
}
