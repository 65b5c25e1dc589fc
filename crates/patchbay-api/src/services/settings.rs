//! A tenant's settings: the browser origins allowed to call the
//! connect-session routes (CORS).

use patchbay_core::TenantId;
use serde_json::json;
use url::Url;

use super::error::ServiceError;
use crate::auth::AuditContext;
use crate::state::AppState;

/// Most origins one tenant may list.
pub const MAX_ORIGINS: usize = 20;

/// Normalizes an origin: `scheme://host[:port]`, https (http only for
/// loopback hosts), no path, query or credentials.
pub fn normalize_origin(value: &str, param: &str) -> Result<String, ServiceError> {
    let bad = |why: &str| {
        ServiceError::unprocessable(
            "parameter_invalid",
            format!("{param} must be a browser origin such as https://app.example.com: {why}"),
        )
        .with_param(param)
    };
    if value.len() > 300 {
        return Err(bad("too long."));
    }
    let url = Url::parse(value).map_err(|_| bad("not a URL."))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(bad("https only (http for localhost).")),
    }
    if url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || url.path() != "/"
        || value.ends_with('/') && value.matches('/').count() > 2
    {
        return Err(bad("only scheme, host and port; no path."));
    }
    Ok(url.origin().ascii_serialization())
}

/// The tenant's allowed origins.
pub async fn allowed_origins(
    state: &AppState,
    tenant: TenantId,
) -> Result<Vec<String>, ServiceError> {
    Ok(state.store.allowed_origins(tenant).await?)
}

/// Replaces the tenant's allowed origins.
pub async fn set_allowed_origins(
    state: &AppState,
    ctx: &AuditContext,
    tenant: TenantId,
    origins: &[String],
) -> Result<Vec<String>, ServiceError> {
    if origins.len() > MAX_ORIGINS {
        return Err(ServiceError::unprocessable(
            "parameter_invalid",
            format!("allowed_origins may list at most {MAX_ORIGINS} origins."),
        )
        .with_param("allowed_origins"));
    }
    let mut normalized = origins
        .iter()
        .enumerate()
        .map(|(i, o)| normalize_origin(o, &format!("allowed_origins[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    normalized.sort();
    normalized.dedup();
    let event = ctx.event(
        tenant,
        "tenant.settings_updated",
        tenant,
        json!({"allowed_origins": normalized}),
    );
    if !state
        .store
        .set_allowed_origins(tenant, &normalized, &event)
        .await?
    {
        return Err(ServiceError::not_found("tenant", &tenant.to_string()));
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_or_refused() {
        let ok = |v: &str| normalize_origin(v, "o").unwrap();
        assert_eq!(ok("https://App.Example.com"), "https://app.example.com");
        assert_eq!(
            ok("https://app.example.com:8443"),
            "https://app.example.com:8443"
        );
        assert_eq!(ok("http://localhost:3000"), "http://localhost:3000");
        for bad in [
            "http://app.example.com",
            "https://app.example.com/path",
            "https://u:p@app.example.com",
            "app.example.com",
            "https://app.example.com?x=1",
            "*",
        ] {
            assert!(normalize_origin(bad, "o").is_err(), "{bad}");
        }
    }
}
