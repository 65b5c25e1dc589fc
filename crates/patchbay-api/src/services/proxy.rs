//! The rules of the raw proxy that are not HTTP plumbing: which connection a
//! caller reaches, whether it may be called, and with which credential,
//! connected account and API version the request leaves.

use patchbay_core::ConnectionId;
use patchbay_core::api_key::Scope;
use patchbay_core::connection::ConnectionStatus;
use patchbay_stripe::StripeKey;
use patchbay_stripe::oauth::is_account_id;

use super::credentials::{Credential, open_for_call};
use super::error::ServiceError;
use crate::auth::TenantPrincipal;
use crate::state::AppState;

/// What a proxied request leaves with.
#[derive(Debug)]
pub struct Target {
    /// The connection.
    pub connection: ConnectionId,
    /// Its mode (the rate limit differs).
    pub livemode: bool,
    /// The key to send.
    pub key: StripeKey,
    /// `Stripe-Account`, if any.
    pub stripe_account: Option<String>,
    /// `Stripe-Version`, if any (the caller's, else the connection's pin).
    pub stripe_version: Option<String>,
}

/// How the caller addressed the connection.
#[derive(Debug, Clone, Copy)]
pub enum Addressed {
    /// `/api/v1/connections/{id}/proxy/…`: any key with the `proxy` scope
    /// (a key bound to a connection uses the root paths).
    ById(ConnectionId),
    /// `/v1/…`, `/v2/…` at the root: the connection the key is bound to.
    Root,
}

/// Resolves the connection, checks the caller may use it, and opens its credential.
pub async fn target(
    state: &AppState,
    caller: &TenantPrincipal,
    addressed: Addressed,
    stripe_account: Option<&str>,
    stripe_context: Option<&str>,
    stripe_version: Option<&str>,
) -> Result<Target, ServiceError> {
    if !caller.scopes.allows(Scope::Proxy) {
        return Err(ServiceError::forbidden(
            "insufficient_scope",
            "This API key lacks the 'proxy' scope needed here.",
        ));
    }
    let id = match (addressed, caller.connection_id) {
        (Addressed::ById(id), None) => id,
        (Addressed::ById(_), Some(bound)) => {
            return Err(ServiceError::forbidden(
                "api_key_bound",
                format!(
                    "This key is bound to connection {bound}: it calls Stripe's own paths at the server's root (/v1/…, /v2/…), like a Stripe key."
                ),
            ));
        }
        (Addressed::Root, Some(bound)) => bound,
        (Addressed::Root, None) => {
            return Err(ServiceError::bad_request(
                "api_key_not_bound",
                "/v1/… and /v2/… at the root need a key bound to one connection: create one with POST /api/v1/api-keys {\"scopes\":[\"proxy\"],\"connection_id\":\"conn_…\"} and give it to the SDK as its API key. Or call /api/v1/connections/{id}/proxy/v1/… with this key.",
            ));
        }
    };
    let opened = open_for_call(state, caller.tenant_id, id).await?;
    let conn = &opened.connection;
    if conn.status != ConnectionStatus::Active {
        return Err(ServiceError::conflict(
            "connection_not_active",
            format!(
                "Connection {id} is '{}', not 'active': validate it (POST /api/v1/connections/{id}/validate) or fix its credential first.",
                conn.status.as_str()
            ),
        ));
    }
    if let Some(account) = stripe_account
        && !is_account_id(account)
    {
        return Err(ServiceError::bad_request(
            "parameter_invalid",
            "Stripe-Account must be a connected account id (acct_…).",
        )
        .with_param("Stripe-Account"));
    }
    let stripe_account = match (&opened.credential, stripe_account) {
        (Credential::ConnectGrant(grant), Some(asked)) if asked != grant.account => {
            return Err(ServiceError::bad_request(
                "stripe_account_conflict",
                "This connection is a Connect grant for another account; its calls always carry its own Stripe-Account.",
            )
            .with_param("Stripe-Account"));
        }
        (Credential::ConnectGrant(grant), _) => Some(grant.account.clone()),
        (Credential::ApiKey(_), asked) => asked.map(str::to_owned),
    };
    // Stripe-Context supersedes Stripe-Account: with the platform key it could
    // reach any account of the platform, not just this grant's.
    if let (Credential::ConnectGrant(grant), Some(context)) = (&opened.credential, stripe_context)
        && context != grant.account
    {
        return Err(ServiceError::bad_request(
            "stripe_account_conflict",
            "This connection is a Connect grant: its calls act only on its own account, so Stripe-Context may only name that account.",
        )
        .with_param("Stripe-Context"));
    }
    let stripe_version = stripe_version
        .map(str::to_owned)
        .or_else(|| conn.stripe_version.clone());
    let livemode = conn.livemode;
    let key = opened.credential.key().clone();
    Ok(Target {
        connection: id,
        livemode,
        key,
        stripe_account,
        stripe_version,
    })
}
