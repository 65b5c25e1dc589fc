//! Connect sessions: a tenant's backend mints a short-lived token for one end
//! user, so that browser code can start OAuth or submit a key for that end
//! user — and nothing else. The token is an HS256 JWT; it creates at most one
//! connection (its id is recorded as used in the creating transaction).

use std::time::Duration;

use patchbay_core::audit::{parse_session_id, session_id_text};
use patchbay_core::connect::SessionUse;
use patchbay_core::connection::validate_external_id;
use patchbay_core::tenant::TenantStatus;
use patchbay_core::time::add_millis;
use patchbay_core::{TenantId, Timestamp};
use patchbay_vault::{SessionClaims, SessionTokenError};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use super::error::ServiceError;
use super::platforms::check_url;
use crate::auth::AuditContext;
use crate::state::AppState;

/// Shortest and longest lifetime a caller may ask for.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// See [`MIN_TTL`].
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a session lets the browser do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Allowed {
    /// `GET /api/v1/connections/stripe/auth-url`.
    Oauth,
    /// `POST /api/v1/connections` with a key.
    ApiKey,
}

impl Allowed {
    fn as_str(self) -> &'static str {
        match self {
            Self::Oauth => "oauth",
            Self::ApiKey => "api_key",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "oauth" => Some(Self::Oauth),
            "api_key" => Some(Self::ApiKey),
            _ => None,
        }
    }
}

/// A session to mint.
#[derive(Debug)]
pub struct SessionInput {
    /// The end user.
    pub external_id: String,
    /// What the browser may do (at least one).
    pub allowed: Vec<Allowed>,
    /// Where the browser returns after OAuth.
    pub return_to: Option<String>,
    /// Lifetime (default `PATCHBAY_SESSION_TTL`, 30 minutes).
    pub expires_in_seconds: Option<u64>,
}

/// A minted session; the token is shown once.
#[derive(Debug)]
pub struct IssuedSession {
    /// `cs_…`
    pub id: String,
    /// The JWT.
    pub token: SecretString,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The end user.
    pub external_id: String,
    /// What it allows.
    pub allowed: Vec<Allowed>,
    /// Its return URL.
    pub return_to: Option<String>,
}

/// A verified session, as the request's caller.
#[derive(Debug, Clone)]
pub struct SessionPrincipal {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The session.
    pub session_id: Uuid,
    /// The only end user it may act for.
    pub external_id: String,
    /// What it allows.
    pub allowed: Vec<Allowed>,
    /// Its return URL.
    pub return_to: Option<String>,
    /// When it expires.
    pub expires_at: Timestamp,
}

impl SessionPrincipal {
    /// Fails with 403 unless the session allows `what`.
    pub fn require(&self, what: Allowed) -> Result<(), ServiceError> {
        if self.allowed.contains(&what) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(
                "session_forbidden",
                format!("This connect session does not allow '{}'.", what.as_str()),
            ))
        }
    }

    /// The use record a connection created by this session spends.
    pub fn spend(&self) -> SessionUse {
        SessionUse {
            session_id: self.session_id,
            expires_at: self.expires_at,
        }
    }
}

/// Mints a session for one end user.
pub async fn create(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    input: SessionInput,
) -> Result<IssuedSession, ServiceError> {
    let external_id = validate_external_id(&input.external_id)?;
    if input.allowed.is_empty() {
        return Err(ServiceError::unprocessable(
            "parameter_invalid",
            "allowed must name at least one of oauth, api_key.",
        )
        .with_param("allowed"));
    }
    let mut allowed = input.allowed;
    allowed.sort_by_key(|a| a.as_str());
    allowed.dedup();
    if let Some(r) = &input.return_to {
        check_url(r, "return_to")?;
    }
    let ttl = match input.expires_in_seconds {
        None => state.config.session_ttl,
        Some(s) if (MIN_TTL.as_secs()..=MAX_TTL.as_secs()).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            return Err(ServiceError::unprocessable(
                "parameter_invalid",
                format!(
                    "expires_in_seconds must be between {} and {}.",
                    MIN_TTL.as_secs(),
                    MAX_TTL.as_secs()
                ),
            )
            .with_param("expires_in_seconds"));
        }
    };
    let session_id = Uuid::new_v4();
    let id = session_id_text(session_id);
    let issued = state.config.clock.now();
    let expires_at = add_millis(issued, ttl.as_millis());
    let claims = SessionClaims::new(
        &id,
        &tenant.to_string(),
        &external_id,
        allowed.iter().map(|a| a.as_str().to_owned()).collect(),
        issued.timestamp(),
        expires_at.timestamp(),
    )
    .with_return_to(input.return_to.clone());
    let token = state
        .config
        .session_signer
        .sign(&claims)
        .map_err(|e| ServiceError::internal(&e))?;
    let event = ctx.event(
        tenant,
        "connect_session.created",
        &id,
        json!({"external_id": external_id, "allowed": allowed, "expires_at": expires_at}),
    );
    state.store.insert_audit_event(&event).await?;
    Ok(IssuedSession {
        id,
        token,
        expires_at,
        external_id,
        allowed,
        return_to: input.return_to,
    })
}

fn invalid_token(message: &str) -> ServiceError {
    ServiceError::unauthenticated("session_invalid", message.to_owned())
}

/// Verifies a session token: signature, expiry, its tenant still active, and
/// not yet spent.
pub async fn verify(state: &AppState, token: &str) -> Result<SessionPrincipal, ServiceError> {
    let at = state.config.clock.now();
    let claims = state
        .config
        .session_signer
        .verify(token, at.timestamp())
        .map_err(|e| match e {
            SessionTokenError::Expired => invalid_token(
                "This connect session has expired; ask the tenant's backend for a new one.",
            ),
            _ => invalid_token("This connect-session token is not valid."),
        })?;
    let session_id = parse_session_id(&claims.jti)
        .ok_or_else(|| invalid_token("This connect-session token is not valid."))?;
    let tenant: TenantId = claims
        .tid
        .parse()
        .map_err(|_| invalid_token("This connect-session token is not valid."))?;
    let allowed = claims
        .allowed
        .iter()
        .map(|a| Allowed::parse(a))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid_token("This connect-session token is not valid."))?;
    match state.store.get_tenant(tenant).await? {
        Some(t) if t.status == TenantStatus::Active => {}
        _ => {
            return Err(invalid_token(
                "This connect session's tenant is disabled or gone.",
            ));
        }
    }
    if state.store.connect_session_used(tenant, session_id).await? {
        return Err(super::connections::session_used());
    }
    let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0)
        .ok_or_else(|| invalid_token("This connect-session token is not valid."))?;
    Ok(SessionPrincipal {
        tenant_id: tenant,
        session_id,
        external_id: claims.sub,
        allowed,
        return_to: claims.rto,
        expires_at,
    })
}
