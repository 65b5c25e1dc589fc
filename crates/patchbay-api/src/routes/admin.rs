//! `/api/v1/admin/keys`: which master keys protect how many records, so an
//! old key is retired only when nothing depends on it.

use axum::extract::State;
use serde::Serialize;

use super::common::StandardErrors;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::state::AppState;

/// Master keys and what they protect.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyStatus {
    /// The key new data keys are wrapped with.
    #[schema(example = "k2")]
    pub primary: String,
    /// Every key id configured or still in use.
    pub keys: Vec<MasterKeyUsage>,
    /// Records still wrapped by a key other than the primary; run
    /// `patchbay keys rotate` until this is 0.
    pub pending_rotation: u64,
}

/// One master key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MasterKeyUsage {
    /// The key id.
    #[schema(example = "k1")]
    pub id: String,
    /// Whether it is the primary.
    pub primary: bool,
    /// Whether this server has it (an unconfigured id in use would stop start-up).
    pub configured: bool,
    /// Tenant data keys it wraps.
    pub data_keys: u64,
}

/// Master-key status
///
/// How many data keys each master key id wraps, and how many still wait for `patchbay
/// keys rotate`. Retire an old master key only when its count is 0. Platform admin
/// token only.
#[utoipa::path(get, path = "/api/v1/admin/keys", tag = "admin",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Master key usage", body = KeyStatus, example = super::examples::key_status), StandardErrors))]
pub async fn key_status(
    _: Admin,
    State(state): State<AppState>,
) -> Result<axum::Json<KeyStatus>, ApiError> {
    let usage = patchbay_vault::rotation::key_usage(&state.keyring, state.store.as_ref()).await?;
    let pending_rotation = usage
        .iter()
        .filter(|u| !u.primary)
        .map(|u| u.data_keys)
        .sum();
    Ok(axum::Json(KeyStatus {
        primary: state.keyring.primary_id().to_owned(),
        keys: usage
            .into_iter()
            .map(|u| MasterKeyUsage {
                id: u.key_id,
                primary: u.primary,
                configured: u.configured,
                data_keys: u.data_keys,
            })
            .collect(),
        pending_rotation,
    }))
}
