//! Stripe Connect OAuth (Standard accounts): the authorize URL with a
//! single-use state, the callback's code exchange that stores the grant as a
//! connection, refreshing a grant's tokens, and disconnecting (deauthorize at
//! Stripe first; a job retries while Stripe cannot be reached).

use std::time::Duration;

use patchbay_core::audit::{Actor, AuditEvent};
use patchbay_core::connect::{
    ConnectionSecret, GrantInfo, GrantScope, OAuthState, SecretRole, SessionUse, StripePlatform,
};
use patchbay_core::connection::{
    AccountDetails, AuthMethod, Connection, ConnectionStatus, LastError, Provider,
    validate_external_id,
};
use patchbay_core::job::{NewJob, kinds};
use patchbay_core::store::{GrantUpdate, NewConnection, RefreshLease};
use patchbay_core::time::{add_millis, add_seconds, now};
use patchbay_core::{ConnectionId, Metadata, TenantId, Timestamp};
use patchbay_stripe::oauth::{
    AuthorizeParams, Grant as StripeGrant, OAuthError, OAuthScope, STRIPE_USER_FIELDS,
};
use patchbay_stripe::{RateKey, hint};
use patchbay_vault::key_hash::secret_digest;
use secrecy::ExposeSecret;
use serde_json::json;
use tracing::{info, warn};
use uuid::Uuid;

use super::connections::store_error;
use super::credentials::{
    Credential, OpenedPlatform, open, open_platform, platform_missing, secret_context,
};
use super::error::{ErrorKind, ServiceError};
use super::platforms::{check_url, mode, parse_mode, parse_scope};
use super::quotas;
use super::test_call::{self, Budget};
use super::{jobs, next_updated_at};
use crate::auth::AuditContext;
use crate::state::AppState;

/// How long a refresh may hold a grant's lease.
const REFRESH_LEASE: Duration = Duration::from_secs(30);
/// How long a refresh waits for another one on the same grant.
const REFRESH_WAIT: Duration = Duration::from_secs(15);
/// Attempts of a deauthorization job (with backoff, about two days at the defaults).
pub const DEAUTHORIZE_ATTEMPTS: u32 = 30;

/// What `auth-url` is asked for.
#[derive(Debug, Default)]
pub struct AuthUrlInput {
    /// One of the platform's registered redirect URIs (default: its first).
    pub redirect_uri: Option<String>,
    /// The end user's reference; the connection gets it.
    pub external_id: Option<String>,
    /// `read_write` or `read_only` (default: the platform's).
    pub scope: Option<String>,
    /// `test` or `live` (default: the only platform configured).
    pub mode: Option<String>,
    /// `login` or `register`.
    pub stripe_landing: Option<String>,
    /// Ask Stripe to show the account chooser even when signed in.
    pub always_prompt: bool,
    /// `stripe_user[email]` … to prefill Stripe's form.
    pub stripe_user: Vec<(String, String)>,
    /// Where the end user's browser goes after the callback.
    pub return_to: Option<String>,
}

/// A connect session starting the flow: its end user and return URL are fixed.
#[derive(Debug, Clone)]
pub struct SessionBinding {
    /// The session's use record, spent when the connection is stored.
    pub session: SessionUse,
    /// The end user.
    pub external_id: String,
    /// The return URL the tenant's backend fixed, if any.
    pub return_to: Option<String>,
}

/// The authorize URL to send the end user to.
#[derive(Debug)]
pub struct AuthUrl {
    /// Stripe's authorize URL.
    pub url: String,
    /// The state in it (also for the tenant's records).
    pub state: String,
    /// When the state stops being accepted.
    pub expires_at: Timestamp,
}

fn invalid(param: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::unprocessable("parameter_invalid", message).with_param(param)
}

/// Picks the platform `auth-url` uses.
async fn pick_platform(
    state: &AppState,
    tenant: TenantId,
    mode_param: Option<&str>,
) -> Result<StripePlatform, ServiceError> {
    let mut platforms = state.store.list_stripe_platforms(tenant).await?;
    let wanted = mode_param.map(parse_mode).transpose()?;
    match wanted {
        Some(live) => platforms
            .into_iter()
            .find(|p| p.livemode == live)
            .ok_or_else(|| platform_missing(live)),
        None if platforms.len() == 1 => Ok(platforms.remove(0)),
        None if platforms.is_empty() => Err(ServiceError::conflict(
            "integration_missing",
            "No Stripe Connect platform is configured: set your client id and platform key with PUT /api/v1/integrations/stripe first.",
        )),
        None => Err(invalid(
            "mode",
            "Both a test and a live Connect platform are configured: say which with mode=test or mode=live.",
        )),
    }
}

/// A new state value: 256 random bits, URL-safe.
fn new_state() -> Result<String, ServiceError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ServiceError::internal(&e))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Builds Stripe's authorize URL and stores the flow's state (hashed).
pub async fn auth_url(
    state: &AppState,
    tenant: TenantId,
    input: AuthUrlInput,
    session: Option<SessionBinding>,
) -> Result<AuthUrl, ServiceError> {
    let platform = pick_platform(state, tenant, input.mode.as_deref()).await?;
    let redirect_uri = match input.redirect_uri {
        Some(uri) if platform.redirect_uris.contains(&uri) => uri,
        Some(uri) => {
            return Err(invalid(
                "redirect_uri",
                format!(
                    "'{}' is not a redirect URI registered for this platform; register it with PUT /api/v1/integrations/stripe (and in the Stripe Dashboard), or use one of: {}.",
                    uri.chars().take(200).collect::<String>(),
                    platform.redirect_uris.join(", ")
                ),
            ));
        }
        None => platform.redirect_uris.first().cloned().ok_or_else(|| {
            invalid(
                "redirect_uri",
                "The platform has no redirect URI registered.",
            )
        })?,
    };
    let scope = input
        .scope
        .as_deref()
        .map(|s| parse_scope(s, "scope"))
        .transpose()?
        .unwrap_or(platform.scope);
    if let Some(landing) = input.stripe_landing.as_deref()
        && !matches!(landing, "login" | "register")
    {
        return Err(invalid(
            "stripe_landing",
            "stripe_landing must be login or register.",
        ));
    }
    for (field, value) in &input.stripe_user {
        let param = format!("stripe_user[{field}]");
        if !STRIPE_USER_FIELDS.contains(&field.as_str()) {
            return Err(invalid(
                &param,
                format!(
                    "Stripe's authorize page does not take {param}; it takes stripe_user[{}].",
                    STRIPE_USER_FIELDS.join("], stripe_user[")
                ),
            ));
        }
        if value.chars().count() > 500 || value.chars().any(char::is_control) {
            return Err(invalid(
                &param,
                format!("{param} must be at most 500 characters, without control characters."),
            ));
        }
    }
    let (external_id, return_to, session_use) = match session {
        Some(binding) => {
            if input
                .external_id
                .as_ref()
                .is_some_and(|e| *e != binding.external_id)
            {
                return Err(ServiceError::forbidden(
                    "session_scope_mismatch",
                    "This connect session is for another external_id.",
                ));
            }
            if input
                .return_to
                .as_ref()
                .is_some_and(|r| Some(r) != binding.return_to.as_ref())
            {
                return Err(invalid(
                    "return_to",
                    "The connect session fixes return_to; leave it out.",
                ));
            }
            (
                Some(binding.external_id),
                binding.return_to,
                Some(binding.session),
            )
        }
        None => {
            let external_id = input
                .external_id
                .as_deref()
                .map(validate_external_id)
                .transpose()?;
            if let Some(r) = &input.return_to {
                check_url(r, "return_to")?;
            }
            (external_id, input.return_to, None)
        }
    };

    let value = new_state()?;
    let at = now();
    let expires_at = add_millis(at, state.config.oauth_state_ttl.as_millis());
    let record = OAuthState {
        state_hash: secret_digest(&value),
        tenant_id: tenant,
        livemode: platform.livemode,
        external_id,
        redirect_uri: redirect_uri.clone(),
        return_to,
        scope,
        session: session_use,
        created_at: at,
        expires_at,
    };
    state.store.create_oauth_state(&record).await?;
    let url = state.stripe.authorize_url(&AuthorizeParams {
        client_id: &platform.client_id,
        scope: Some(oauth_scope(scope)),
        state: &value,
        redirect_uri: &redirect_uri,
        stripe_landing: input.stripe_landing.as_deref(),
        always_prompt: input.always_prompt,
        stripe_user: &input.stripe_user,
    });
    Ok(AuthUrl {
        url: url.into(),
        state: value,
        expires_at,
    })
}

fn oauth_scope(scope: GrantScope) -> OAuthScope {
    match scope {
        GrantScope::ReadWrite => OAuthScope::ReadWrite,
        GrantScope::ReadOnly => OAuthScope::ReadOnly,
    }
}

fn grant_scope(scope: OAuthScope) -> GrantScope {
    match scope {
        OAuthScope::ReadWrite => GrantScope::ReadWrite,
        OAuthScope::ReadOnly => GrantScope::ReadOnly,
    }
}

/// What Stripe's redirect brought.
#[derive(Debug, Default)]
pub struct CallbackInput {
    /// `ac_…`
    pub code: Option<String>,
    /// The state `auth-url` issued.
    pub state: Option<String>,
    /// `access_denied`, … when the end user or Stripe refused.
    pub error: Option<String>,
    /// Stripe's words for it.
    pub error_description: Option<String>,
}

/// How the callback ended, for a flow whose state was valid.
#[derive(Debug)]
pub struct CallbackOutcome {
    /// Where to send the browser, if the flow named a return URL.
    pub return_to: Option<String>,
    /// The connection, or why there is none.
    pub result: Result<Connected, ServiceError>,
}

/// A stored grant.
#[derive(Debug)]
pub struct Connected {
    /// The connection.
    pub connection: Connection,
    /// New (`true`) or re-linked.
    pub created: bool,
}

fn state_invalid() -> ServiceError {
    ServiceError::bad_request(
        "oauth_state_invalid",
        "This OAuth state is unknown, was already used, or expired. Start the connection again from auth-url.",
    )
    .with_param("state")
}

/// The callback's work. `Err` only for a state that authenticates nothing
/// (unknown, used, expired): then nobody is told where to go.
pub async fn callback(
    state: &AppState,
    input: CallbackInput,
) -> Result<CallbackOutcome, ServiceError> {
    let value = input
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .ok_or_else(state_invalid)?;
    let flow = state
        .store
        .take_oauth_state(&secret_digest(value), now())
        .await?
        .ok_or_else(state_invalid)?;
    let return_to = flow.return_to.clone();
    let result = complete(state, &flow, input).await;
    let ctx = callback_context(&flow);
    match &result {
        Ok(done) => {
            info!(tenant = %flow.tenant_id, connection = %done.connection.id, created = done.created, "Connect grant stored")
        }
        Err(e) => {
            let event = ctx.event(
                flow.tenant_id,
                "connection.oauth_failed",
                "stripe_oauth",
                json!({"code": e.code, "external_id": flow.external_id, "livemode": flow.livemode}),
            );
            if let Err(store) = state.store.insert_audit_event(&event).await {
                warn!(error = %store, "could not record a failed OAuth callback");
            }
        }
    }
    Ok(CallbackOutcome { return_to, result })
}

fn callback_context(flow: &OAuthState) -> AuditContext {
    AuditContext {
        actor: flow.session.map_or(Actor::OAuthCallback, |s| {
            Actor::ConnectSession(s.session_id)
        }),
        request_id: None,
        client_request_id: None,
    }
}

/// Bounded text from outside, for messages.
fn clip(text: &str) -> String {
    let clipped: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    patchbay_stripe::redact(&clipped, None).into_string()
}

async fn complete(
    state: &AppState,
    flow: &OAuthState,
    input: CallbackInput,
) -> Result<Connected, ServiceError> {
    if let Some(error) = input.error.as_deref() {
        let description = input.error_description.as_deref().map(clip);
        return Err(if error == "access_denied" {
            ServiceError::bad_request(
                "access_denied",
                "The Stripe account holder declined to connect their account.",
            )
        } else {
            ServiceError::new(
                ErrorKind::InvalidRequest,
                "oauth_refused",
                format!(
                    "Stripe ended the authorization with '{}'{}.",
                    clip(error),
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                ),
            )
        });
    }
    let code = input
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 255)
        .ok_or_else(|| {
            ServiceError::bad_request(
                "parameter_missing",
                "The callback carries no authorization code.",
            )
            .with_param("code")
        })?;
    let platform = open_platform(state, flow.tenant_id, flow.livemode)
        .await?
        .ok_or_else(|| platform_missing(flow.livemode))?;
    // Limits before any Stripe call: a new connection must fit (a re-link does not add one).
    let relink = match &flow.external_id {
        Some(ext) => state
            .store
            .find_connection_by_external_id(flow.tenant_id, ext)
            .await?
            .is_some(),
        None => false,
    };
    if !relink {
        quotas::check_connections(state, flow.tenant_id).await?;
    }
    let grant = exchange(state, &platform, code).await?;
    if !patchbay_stripe::oauth::is_account_id(&grant.stripe_user_id) {
        return Err(ServiceError::new(
            ErrorKind::UpstreamFailed,
            "stripe_unexpected_response",
            "Stripe's token answer named no valid connected account (stripe_user_id).",
        ));
    }
    if grant.livemode != flow.livemode {
        return Err(ServiceError::unprocessable(
            "mode_mismatch",
            format!(
                "Stripe granted a {}-mode connection to a {}-mode flow.",
                mode(grant.livemode),
                mode(flow.livemode)
            ),
        ));
    }
    // A grant that could not be stored is not deauthorized here: the account
    // may well be connected already (a re-link, a second tab of the same
    // session, another end user of the tenant), and deauthorizing removes the
    // platform's access to the account as a whole. The failure is audited
    // with the account, and the tenant decides.
    store_grant(state, flow, &platform, grant).await
}

/// Maps an OAuth failure to what callers are told.
fn oauth_error(e: OAuthError, during: &str) -> ServiceError {
    match e {
        OAuthError::Refused { code, description } if code == "invalid_grant" => {
            ServiceError::bad_request(
                "invalid_grant",
                format!(
                    "Stripe refused the {during}: the authorization code or refresh token was already used, expired, or was issued to another platform{}. Start the connection again.",
                    description.map(|d| format!(" ({d})")).unwrap_or_default()
                ),
            )
        }
        OAuthError::Refused { code, description } => ServiceError::new(
            ErrorKind::InvalidRequest,
            "oauth_refused",
            format!(
                "Stripe refused the {during} with '{code}'{}. Check the platform's client id and key (PUT /api/v1/integrations/stripe).",
                description.map(|d| format!(": {d}")).unwrap_or_default()
            ),
        ),
        OAuthError::Unavailable(why) => ServiceError::new(
            ErrorKind::UpstreamFailed,
            "stripe_unavailable",
            format!(
                "Stripe's Connect service could not complete the {during}: {why}. Try again shortly."
            ),
        ),
    }
}

/// An OAuth call in flight (boxed: a generic future here trips the compiler's
/// `Send` inference for the handlers awaiting it).
type OAuthCall<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, OAuthError>> + Send + 'a>>;

/// Runs an OAuth call within the interactive deadline.
async fn within_deadline<T>(state: &AppState, call: OAuthCall<'_, T>) -> Result<T, OAuthError> {
    let deadline = state.stripe.config().interactive_deadline;
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(OAuthError::Unavailable(format!(
                "no answer within {} ms",
                deadline.as_millis()
            )))
        })
}

async fn exchange(
    state: &AppState,
    platform: &OpenedPlatform,
    code: &str,
) -> Result<StripeGrant, ServiceError> {
    within_deadline(
        state,
        Box::pin(state.stripe.exchange_code(
            platform.key.secret(),
            &platform.platform.client_id,
            code,
        )),
    )
    .await
    .map_err(|e| oauth_error(e, "authorization code exchange"))
}

/// Creates the connection (or re-links the same end user's same account).
async fn store_grant(
    state: &AppState,
    flow: &OAuthState,
    platform: &OpenedPlatform,
    grant: StripeGrant,
) -> Result<Connected, ServiceError> {
    let account = grant.stripe_user_id.clone();
    let tenant = flow.tenant_id;
    let scope = grant.scope.map(grant_scope).unwrap_or(flow.scope);
    // Prove the grant as the connected account; its verdict is recorded
    // either way: a grant in hand is never thrown away for a slow Stripe.
    let rate = format!("acct:{account}");
    let verdict = test_call::run(
        state,
        &platform.key,
        Some(&account),
        None,
        Some(RateKey {
            key: &rate,
            livemode: flow.livemode,
        }),
        Budget::Interactive,
    )
    .await;
    let at = now();
    let validation = match &verdict {
        Ok(v) => Some(v.record(at)),
        Err(_) => None,
    };
    let data_key_record = state
        .store
        .tenant_data_key(tenant)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| ServiceError::internal(&format_args!("tenant {tenant} has no data key")))?;
    let data_key = state
        .keyring
        .open_data_key(&data_key_record)
        .map_err(ServiceError::from)?;
    let ctx = callback_context(flow);

    let existing = match &flow.external_id {
        Some(ext) => state
            .store
            .find_connection_by_external_id(tenant, ext)
            .await
            .map_err(ServiceError::from)?,
        None => None,
    };
    if let Some(existing) = existing {
        let same = existing.auth_method == AuthMethod::Oauth
            && existing.livemode == flow.livemode
            && existing.account.stripe_account_id.as_deref() == Some(account.as_str());
        if !same {
            return Err(ServiceError::conflict(
                if existing.auth_method == AuthMethod::Oauth {
                    "account_mismatch"
                } else {
                    "external_id_taken"
                },
                format!(
                    "external_id '{}' already names a connection to another Stripe account or by API key; delete it first or use another external_id.",
                    existing.external_id.as_deref().unwrap_or_default()
                ),
            ));
        }
        let record = existing.id.to_string();
        let secrets = seal_grant(&data_key, tenant, &record, &grant)?;
        let update = GrantUpdate {
            data_key_id: data_key_record.id,
            secrets,
            key_hint: hint(grant.access_token.expose_secret()),
            scope,
            validation,
            refreshed_at: at,
            updated_at: next_updated_at(existing.updated_at),
            lease_token: None,
            session: flow.session,
        };
        let event = ctx.event(
            tenant,
            "connection.relinked",
            existing.id,
            json!({
                "stripe_account_id": account, "scope": scope, "livemode": flow.livemode,
            }),
        );
        let connection = state
            .store
            .apply_grant(tenant, existing.id, &update, &event)
            .await
            .map_err(|e| store_error(e, flow.external_id.as_deref()))?
            .ok_or_else(|| {
                ServiceError::conflict(
                    "connection_changed",
                    "The connection changed during the callback; start again.",
                )
            })?;
        state.connection_changed(tenant, existing.id).await;
        return Ok(Connected {
            connection,
            created: false,
        });
    }

    quotas::check_connections(state, tenant).await?;
    let id = ConnectionId::new();
    let record = id.to_string();
    let secrets = seal_grant(&data_key, tenant, &record, &grant)?;
    let (status, details, missing, validated_at, last_error) = match validation {
        Some(v) => (
            v.status,
            v.account.unwrap_or_default(),
            v.missing_permissions,
            Some(v.validated_at),
            v.last_error,
        ),
        None => (
            ConnectionStatus::Pending,
            AccountDetails::default(),
            Vec::new(),
            None,
            None,
        ),
    };
    let connection = Connection {
        id,
        tenant_id: tenant,
        provider: Provider::Stripe,
        auth_method: AuthMethod::Oauth,
        livemode: flow.livemode,
        status,
        account: AccountDetails {
            stripe_account_id: Some(account.clone()),
            ..details
        },
        key_hint: hint(grant.access_token.expose_secret()),
        external_id: flow.external_id.clone(),
        name: None,
        metadata: Metadata::default(),
        stripe_version: None,
        missing_permissions: missing,
        last_validated_at: validated_at,
        last_error,
        previous_key_hint: None,
        previous_key_expires_at: None,
        grant: Some(GrantInfo {
            client_id: platform.platform.client_id.clone(),
            scope,
            refreshed_at: None,
        }),
        created_at: at,
        updated_at: at,
    };
    let next = if validated_at.is_some() {
        add_seconds(at, state.config.revalidate_every.as_secs() as i64)
    } else {
        at
    };
    let new = NewConnection {
        connection,
        data_key_id: data_key_record.id,
        secrets,
        jobs: vec![jobs::revalidation(tenant, id, next)],
        session: flow.session,
    };
    let event = ctx.event(
        tenant,
        "connection.created",
        id,
        json!({
            "auth_method": "oauth",
            "stripe_account_id": account,
            "scope": scope,
            "livemode": flow.livemode,
            "status": new.connection.status,
        }),
    );
    state
        .store
        .create_connection(&new, &event)
        .await
        .map_err(|e| store_error(e, flow.external_id.as_deref()))?;
    if next <= at {
        state.job_wakeup.wake();
    }
    super::events::emit_connection(
        state,
        patchbay_core::webhook::types::CONNECTION_CREATED,
        &new.connection,
        serde_json::json!({}),
    )
    .await;
    Ok(Connected {
        connection: new.connection,
        created: true,
    })
}

fn seal_grant(
    data_key: &patchbay_vault::DataKey,
    tenant: TenantId,
    record: &str,
    grant: &StripeGrant,
) -> Result<Vec<ConnectionSecret>, ServiceError> {
    let mut secrets = vec![ConnectionSecret::new(
        SecretRole::AccessToken,
        data_key.seal(
            secret_context(tenant, record, SecretRole::AccessToken),
            &grant.access_token,
        )?,
    )];
    if let Some(refresh) = &grant.refresh_token {
        secrets.push(ConnectionSecret::new(
            SecretRole::RefreshToken,
            data_key.seal(
                secret_context(tenant, record, SecretRole::RefreshToken),
                refresh,
            )?,
        ));
    }
    Ok(secrets)
}

/// Refreshes a grant's tokens (`grant_type=refresh_token`). Refreshes of one
/// grant are serialized by a lease in the database, across replicas: a second
/// caller waits for the first and answers with its result, so no token is lost.
pub async fn refresh(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Connection, ServiceError> {
    let started = now();
    let before = open(state, tenant, id).await?;
    let Credential::ConnectGrant(_) = &before.credential else {
        return Err(ServiceError::unprocessable(
            "refresh_not_supported",
            "Only Stripe Connect connections have tokens to refresh; an API-key connection is rotated with POST /api/v1/connections/{id}/rotate.",
        ));
    };
    if before.connection.status == ConnectionStatus::Revoking {
        return Err(revoking(id));
    }
    let token = Uuid::new_v4();
    let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
    let mut waited = false;
    loop {
        let at = now();
        match state
            .store
            .lease_grant_refresh(
                tenant,
                id,
                token,
                add_millis(at, REFRESH_LEASE.as_millis()),
                at,
            )
            .await?
        {
            RefreshLease::Acquired => break,
            RefreshLease::NotFound => {
                return Err(ServiceError::not_found("connection", &id.to_string()));
            }
            RefreshLease::Held => {
                waited = true;
                if tokio::time::Instant::now() >= deadline {
                    return Err(ServiceError::conflict(
                        "refresh_in_progress",
                        "Another refresh of this connection is still running; retry in a few seconds.",
                    )
                    .with_retry_after(2));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let result = refresh_leased(state, ctx, tenant, id, token, started, waited).await;
    if result.is_err()
        && let Err(e) = state.store.release_grant_refresh(tenant, id, token).await
    {
        warn!(error = %e, connection = %id, "could not release a refresh lease; it expires on its own");
    }
    result
}

async fn refresh_leased(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    id: ConnectionId,
    token: Uuid,
    started: Timestamp,
    waited: bool,
) -> Result<Connection, ServiceError> {
    // Read again under the lease: a refresh that finished meanwhile replaced the tokens.
    let opened = open(state, tenant, id).await?;
    let conn = &opened.connection;
    if waited
        && conn
            .grant
            .as_ref()
            .and_then(|g| g.refreshed_at)
            .is_some_and(|r| r >= started)
    {
        state.store.release_grant_refresh(tenant, id, token).await?;
        return Ok(opened.connection);
    }
    let Credential::ConnectGrant(grant) = &opened.credential else {
        return Err(ServiceError::internal(
            &"a Connect connection opened as an API key",
        ));
    };
    let refresh_token = grant.refresh_token.as_ref().ok_or_else(|| {
        ServiceError::unprocessable(
            "refresh_token_missing",
            "Stripe issued no refresh token for this grant; connect the account again to renew it.",
        )
    })?;
    let client_id = conn
        .grant
        .as_ref()
        .map_or(grant.platform.platform.client_id.as_str(), |g| {
            g.client_id.as_str()
        });
    let fresh = within_deadline(
        state,
        Box::pin(
            state
                .stripe
                .refresh_grant(grant.platform.key.secret(), client_id, refresh_token),
        ),
    )
    .await
    .map_err(|e| oauth_error(e, "token refresh"))?;
    if fresh.stripe_user_id != grant.account {
        return Err(ServiceError::new(
            ErrorKind::UpstreamFailed,
            "stripe_unexpected_response",
            "Stripe refreshed the grant for another account than this connection's; nothing was changed.",
        ));
    }
    let record = id.to_string();
    let secrets = seal_grant(&opened.data_key, tenant, &record, &fresh)?;
    let at = now();
    let scope = fresh
        .scope
        .map(grant_scope)
        .or(conn.grant.as_ref().map(|g| g.scope))
        .unwrap_or(GrantScope::ReadWrite);
    let update = GrantUpdate {
        data_key_id: opened.data_key_id,
        secrets,
        key_hint: hint(fresh.access_token.expose_secret()),
        scope,
        validation: None,
        refreshed_at: at,
        updated_at: next_updated_at(conn.updated_at),
        lease_token: Some(token),
        session: None,
    };
    let event = ctx.event(
        tenant,
        "connection.refreshed",
        id,
        json!({
            "stripe_account_id": grant.account, "scope": scope,
        }),
    );
    let refreshed = state
        .store
        .apply_grant(tenant, id, &update, &event)
        .await?
        .ok_or_else(|| {
            ServiceError::conflict(
                "refresh_conflict",
                "The refresh took longer than its lease and another one replaced the tokens; read the connection again.",
            )
        })?;
    state.connection_changed(tenant, id).await;
    Ok(refreshed)
}

/// The error for calls through a connection being disconnected.
pub(crate) fn revoking(id: ConnectionId) -> ServiceError {
    ServiceError::conflict(
        "connection_revoking",
        format!(
            "Connection {id} is being disconnected: Stripe has not yet confirmed the deauthorization, which is retried in the background."
        ),
    )
}

/// What a disconnect did.
#[derive(Debug)]
pub enum Disconnect {
    /// Stripe confirmed; the connection and its tokens are gone.
    Deleted,
    /// Stripe could not confirm; the connection is `revoking` and a job retries.
    Pending(Box<Connection>),
}

/// Disconnects a Connect connection: deauthorize at Stripe, then destroy the
/// tokens. When Stripe cannot confirm, the connection becomes `revoking` and
/// a job retries with backoff until it does. The caller
/// (`connections::delete`) announces the change on the invalidation bus.
pub async fn disconnect(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    connection: &Connection,
) -> Result<Disconnect, ServiceError> {
    let id = connection.id;
    let account = connection
        .account
        .stripe_account_id
        .clone()
        .unwrap_or_default();
    if shares_account(state, tenant, connection).await? {
        // Another connection still uses the account (deauthorizing would
        // cut it off too): only this connection goes.
        let event = ctx.event(
            tenant,
            "connection.deleted",
            id,
            json!({"auth_method": "oauth", "stripe_account_id": account, "deauthorized": false,
                   "reason": "another connection uses the account"}),
        );
        let deleted = state.store.delete_connection(tenant, id, &event).await;
        return if deleted? {
            Ok(Disconnect::Deleted)
        } else {
            Err(ServiceError::not_found("connection", &id.to_string()))
        };
    }
    let platform = open_platform(state, tenant, connection.livemode).await?;
    let failure = match &platform {
        Some(p) => {
            let client_id = connection
                .grant
                .as_ref()
                .map_or(p.platform.client_id.as_str(), |g| g.client_id.as_str());
            match within_deadline(
                state,
                Box::pin(
                    state
                        .stripe
                        .deauthorize(p.key.secret(), client_id, &account),
                ),
            )
            .await
            {
                Ok(()) => None,
                // Stripe refused (a wrong client id or platform key): retrying
                // cannot help until the tenant fixes its platform, so the
                // caller hears it now and the connection stays as it is.
                Err(e) if !e.is_transient() => return Err(oauth_error(e, "deauthorization")),
                Err(e) => Some(oauth_error(e, "deauthorization")),
            }
        }
        None => Some(platform_missing(connection.livemode)),
    };
    match failure {
        None => {
            let event = ctx.event(
                tenant,
                "connection.deleted",
                id,
                json!({
                    "auth_method": "oauth", "stripe_account_id": account, "deauthorized": true,
                }),
            );
            let deleted = state.store.delete_connection(tenant, id, &event).await;
            if deleted? {
                Ok(Disconnect::Deleted)
            } else {
                Err(ServiceError::not_found("connection", &id.to_string()))
            }
        }
        Some(e) => {
            let error = LastError {
                code: "deauthorization_pending".into(),
                message: format!(
                    "Stripe has not confirmed the deauthorization yet ({}: {}); it is retried in the background.",
                    e.code, e.message
                ),
                stripe_request_id: None,
            };
            let job = NewJob::new(
                kinds::CONNECT_DEAUTHORIZE,
                id.uuid(),
                add_millis(now(), state.config.jobs.backoff_base.as_millis()),
            )
            .for_tenant(tenant)
            .max_attempts(DEAUTHORIZE_ATTEMPTS);
            let event = ctx.event(
                tenant,
                "connection.revoking",
                id,
                json!({
                    "stripe_account_id": account, "reason": e.code,
                }),
            );
            let updated = state
                .store
                .mark_connection_revoking(tenant, id, &error, &job, &event)
                .await;
            let updated =
                updated?.ok_or_else(|| ServiceError::not_found("connection", &id.to_string()))?;
            Ok(Disconnect::Pending(Box::new(updated)))
        }
    }
}

/// The deauthorization job: a `revoking` connection (subject) or an unused
/// grant (payload with `stripe_user_id`). Done once Stripe confirms.
pub async fn run_deauthorize_job(
    state: &AppState,
    tenant: TenantId,
    subject: Uuid,
) -> Result<(), String> {
    let id = ConnectionId::from_uuid(subject);
    let Some(conn) = state
        .store
        .get_connection(tenant, id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let account = conn.account.stripe_account_id.clone().unwrap_or_default();
    let shared = shares_account(state, tenant, &conn)
        .await
        .map_err(|e| format!("{}: {}", e.code, e.message))?;
    if !shared {
        let platform = open_platform(state, tenant, conn.livemode)
            .await
            .map_err(|e| format!("{}: {}", e.code, e.message))?
            .ok_or_else(|| {
                format!(
                    "no {}-mode Connect platform to deauthorize with",
                    mode(conn.livemode)
                )
            })?;
        let client_id = conn.grant.as_ref().map_or_else(
            || platform.platform.client_id.clone(),
            |g| g.client_id.clone(),
        );
        state
            .stripe
            .deauthorize(platform.key.secret(), &client_id, &account)
            .await
            .map_err(|e| e.to_string())?;
    }
    let event = AuditEvent::new(
        Some(tenant),
        Actor::System,
        "connection.deleted",
        Some(conn.id.to_string()),
        json!({"auth_method": "oauth", "stripe_account_id": account, "deauthorized": !shared}),
        None,
    );
    let deleted = state
        .store
        .delete_connection(tenant, conn.id, &event)
        .await
        .map_err(|e| e.to_string())?;
    if deleted {
        state.connection_changed(tenant, conn.id).await;
        super::events::emit_connection(
            state,
            patchbay_core::webhook::types::CONNECTION_DELETED,
            &conn,
            json!({}),
        )
        .await;
    }
    info!(connection = %conn.id, deauthorized = !shared, "disconnected and deleted");
    Ok(())
}

/// Whether another Connect connection of the tenant, in the same mode, acts on
/// the same account (deauthorizing would cut it off too).
async fn shares_account(
    state: &AppState,
    tenant: TenantId,
    conn: &Connection,
) -> Result<bool, ServiceError> {
    let Some(account) = conn.account.stripe_account_id.clone() else {
        return Ok(false);
    };
    let filter = patchbay_core::connection::ConnectionFilter {
        livemode: Some(conn.livemode),
        stripe_account_id: Some(account),
        ..Default::default()
    };
    let page = state
        .store
        .list_connections(tenant, &filter, &patchbay_core::PageRequest::first(10))
        .await?;
    Ok(page
        .data
        .iter()
        .any(|other| other.id != conn.id && other.auth_method == AuthMethod::Oauth))
}
