//! Turns settings into running parts: the store, the keyring (checked against
//! the data), the admin token, the Stripe client and the application state.
//! Development conveniences (generated master key and admin token) apply only
//! to SQLite, and say so loudly.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use patchbay_api::services::jobs::JobSettings;
use patchbay_api::services::redis_feed::RedisChangeFeed;
use patchbay_api::services::webhook_sender::OutboundPolicy;
use patchbay_api::state::WebhookSettings;
use patchbay_api::tenant_limits::TenantLimitSettings;
use patchbay_api::{ApiConfig, AppState};
use patchbay_core::Store;
use patchbay_core::change_feed::ChangeFeed;
use patchbay_store::{PoolSettings, is_postgres_url};
use patchbay_stripe::rate_limit_redis::RedisLimiter;
use patchbay_stripe::redis_link::RedisLink;
use patchbay_stripe::{ClientConfig, Limits, RetryPolicy, StripeClient};
use patchbay_vault::api_token::generate_admin_token;
use patchbay_vault::{Keyring, SessionSigner, generate_master_key, verify_keyring_against_store};
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, warn};

use crate::config::Settings;
use crate::private_files;

/// A start-up failure, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

fn fail(message: impl Into<String>) -> SetupError {
    SetupError(message.into())
}

/// The database URL in use: the configured one, or SQLite in the data directory.
pub fn database_url(settings: &Settings) -> Result<SecretString, SetupError> {
    if let Some(url) = &settings.database_url {
        return Ok(url.clone());
    }
    create_data_dir(settings)?;
    let path = settings.data_dir.join("patchbay.db");
    Ok(SecretString::from(format!("sqlite://{}", path.display())))
}

/// Opens the store (and applies migrations).
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, SetupError> {
    let url = database_url(settings)?;
    let sqlite_file = private_files::sqlite_file(url.expose_secret());
    if let Some(file) = &sqlite_file {
        private_files::secure_database(file).map_err(|e| {
            fail(format!(
                "cannot create the database file {} readable by its owner only: {e}",
                file.display()
            ))
        })?;
    }
    let pool = PoolSettings {
        max_connections: settings.db_max_connections,
        ..PoolSettings::default()
    };
    let store = patchbay_store::open(url.expose_secret(), &pool, true)
        .await
        .map_err(|e| fail(format!("cannot open the database: {e}")))?;
    if let Some(file) = &sqlite_file {
        // Opening created the -wal and -shm files: make sure they are private too.
        private_files::secure_database(file)
            .map_err(|e| fail(format!("cannot restrict {}: {e}", file.display())))?;
    }
    Ok(store)
}

fn is_sqlite(settings: &Settings) -> bool {
    settings
        .database_url
        .as_ref()
        .is_none_or(|u| !is_postgres_url(u.expose_secret()))
}

/// Writes a new secret file readable by its owner only; fails if it exists.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn read_trimmed(path: &Path) -> Result<SecretString, SetupError> {
    std::fs::read_to_string(path)
        .map(|s| SecretString::from(s.trim().to_owned()))
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))
}

/// A file in the data directory, which is created on demand.
fn dev_file(settings: &Settings, name: &str) -> Result<PathBuf, SetupError> {
    create_data_dir(settings)?;
    Ok(settings.data_dir.join(name))
}

/// The data directory, created readable by its owner only.
fn create_data_dir(settings: &Settings) -> Result<(), SetupError> {
    private_files::create_dir(&settings.data_dir).map_err(|e| {
        fail(format!(
            "cannot create the data directory {}: {e}",
            settings.data_dir.display()
        ))
    })
}

/// The master keyring from configuration. On SQLite without configured keys, a
/// development key is generated into the data directory. Touches no database.
pub fn keyring(settings: &Settings) -> Result<Keyring, SetupError> {
    let spec = match &settings.master_keys {
        Some(spec) => spec.clone(),
        None if is_sqlite(settings) => {
            let path = dev_file(settings, "master.key")?;
            if !path.exists() {
                let key = generate_master_key("dev").map_err(|e| fail(e.to_string()))?;
                write_private(&path, key.expose_secret()).map_err(|e| {
                    fail(format!(
                        "cannot write the development master key {}: {e}",
                        path.display()
                    ))
                })?;
            }
            warn!(
                path = %path.display(),
                "PATCHBAY_MASTER_KEYS is not set: secrets are sealed with a DEVELOPMENT master key kept next to the database. \
                 Anyone with both files can read every secret. Set PATCHBAY_MASTER_KEYS (see `patchbay keys generate`) for real use."
            );
            read_trimmed(&path)?
        }
        None => {
            return Err(fail(
                "PATCHBAY_MASTER_KEYS (or PATCHBAY_MASTER_KEYS_FILE) is required with PostgreSQL: \
                 generate a key with `patchbay keys generate --id k1` and keep it outside the database",
            ));
        }
    };
    Keyring::parse(&spec).map_err(|e| fail(e.to_string()))
}

/// Checks the keyring against the database and records check values for new keys;
/// refuses when they do not match.
pub async fn verify_keyring(keyring: &Keyring, store: &dyn Store) -> Result<(), SetupError> {
    verify_keyring_against_store(keyring, store)
        .await
        .map_err(|e| fail(format!("refusing to start: {e}")))?;
    info!(primary = keyring.primary_id(), keys = ?keyring.key_ids(), "master keyring verified");
    Ok(())
}

/// Opens the store and checks the keyring against it: what every command needs.
pub async fn store_and_keyring(
    settings: &Settings,
) -> Result<(Arc<dyn Store>, Arc<Keyring>), SetupError> {
    let keyring = keyring(settings)?;
    let store = open_store(settings).await?;
    verify_keyring(&keyring, store.as_ref()).await?;
    Ok((store, Arc::new(keyring)))
}

/// The admin token. On SQLite without one configured, a token is generated
/// into the data directory and printed once.
pub fn admin_token(settings: &Settings) -> Result<SecretString, SetupError> {
    if let Some(token) = &settings.admin_token {
        if token.expose_secret().len() < 32 {
            return Err(fail("PATCHBAY_ADMIN_TOKEN must be at least 32 characters"));
        }
        return Ok(token.clone());
    }
    if !is_sqlite(settings) {
        return Err(fail(
            "PATCHBAY_ADMIN_TOKEN (or PATCHBAY_ADMIN_TOKEN_FILE) is required with PostgreSQL",
        ));
    }
    let path = dev_file(settings, "admin-token")?;
    if path.exists() {
        return read_trimmed(&path);
    }
    let token = generate_admin_token().map_err(|e| fail(e.to_string()))?;
    write_private(&path, token.expose_secret()).map_err(|e| {
        fail(format!(
            "cannot write the admin token {}: {e}",
            path.display()
        ))
    })?;
    announce_admin_token(
        &token,
        &path,
        std::io::stderr().is_terminal(),
        &mut std::io::stderr(),
    );
    Ok(token)
}

/// Shows a generated admin token once, on a terminal only: stderr that is a
/// pipe or a file goes to a log collector, which would keep it. Otherwise a
/// log event (JSON in JSON mode, like every other line) names the file.
fn announce_admin_token(token: &SecretString, path: &Path, terminal: bool, out: &mut dyn Write) {
    if !terminal {
        tracing::warn!(
            file = %path.display(),
            "generated the platform admin token; read it from the file (it is printed only on a terminal)"
        );
        return;
    }
    // A closed stderr loses the notice, not the token: it is in the file.
    let _ = writeln!(
        out,
        "\nGenerated the platform admin token (shown once; also saved in {}):\n\n    {}\n",
        path.display(),
        token.expose_secret()
    );
}

/// The key that signs connect-session tokens. On SQLite without one
/// configured, a key is generated into the data directory (kept across
/// restarts, so issued sessions stay valid); PostgreSQL requires one, shared
/// by every replica.
pub fn session_signer(settings: &Settings) -> Result<SessionSigner, SetupError> {
    let key = match &settings.session_signing_key {
        Some(key) => key.clone(),
        None if is_sqlite(settings) => {
            let path = dev_file(settings, "session.key")?;
            if !path.exists() {
                let key = generate_admin_token().map_err(|e| fail(e.to_string()))?;
                write_private(&path, key.expose_secret()).map_err(|e| {
                    fail(format!(
                        "cannot write the development session signing key {}: {e}",
                        path.display()
                    ))
                })?;
            }
            read_trimmed(&path)?
        }
        None => {
            return Err(fail(
                "PATCHBAY_SESSION_SIGNING_KEY (or PATCHBAY_SESSION_SIGNING_KEY_FILE) is required with PostgreSQL: \
                 every replica must verify the connect-session tokens the others sign (32+ random bytes, e.g. `openssl rand -base64 48`)",
            ));
        }
    };
    SessionSigner::new(&key).map_err(|e| fail(format!("PATCHBAY_SESSION_SIGNING_KEY: {e}")))
}

/// The Stripe client from settings.
/// The Redis shared by the replicas, when one is configured (nothing is
/// opened yet: Redis may come up after Patchbay).
pub fn redis_link(settings: &Settings) -> Result<Option<Arc<RedisLink>>, SetupError> {
    settings
        .redis_url
        .as_ref()
        .map(|url| {
            RedisLink::open(url.expose_secret())
                .map(Arc::new)
                .map_err(fail)
        })
        .transpose()
}

/// The Stripe client; its rate limits are shared through Redis when `redis` is given.
pub fn stripe_client(
    settings: &Settings,
    redis: Option<&Arc<RedisLink>>,
) -> Result<StripeClient, SetupError> {
    let config = ClientConfig {
        api_base: settings.stripe_api_base.clone(),
        connect_base: settings.stripe_connect_base.clone(),
        connect_timeout: settings.stripe_connect_timeout,
        timeout: settings.stripe_timeout,
        interactive_deadline: settings.stripe_interactive_deadline,
        retry: RetryPolicy {
            max_retries: settings.stripe_max_retries,
            ..RetryPolicy::default()
        },
        limits: Limits {
            live: settings.stripe_rate_limit_live,
            test: settings.stripe_rate_limit_test,
            ..Limits::default()
        },
    };
    match redis {
        Some(link) => {
            let limiter = RedisLimiter::new(link.clone(), &settings.redis_prefix, config.limits);
            StripeClient::with_limiter(config, Arc::new(limiter))
        }
        None => StripeClient::new(config),
    }
    .map_err(|e| fail(e.to_string()))
}

/// API settings from settings.
pub fn api_config(settings: &Settings) -> ApiConfig {
    ApiConfig {
        max_body_bytes: settings.max_body_bytes,
        request_timeout: settings.request_timeout,
        key_cache_ttl: settings.key_cache_ttl,
        connection_cache_ttl: settings.connection_cache_ttl,
        revalidate_every: settings.revalidate_every,
        jobs: JobSettings {
            poll_every: settings.job_poll,
            lease: settings.job_lease,
            concurrency: settings.job_concurrency,
            backoff_base: settings.job_backoff,
            ..JobSettings::default()
        },
        max_connections_per_tenant: settings.max_connections_per_tenant,
        max_api_keys_per_tenant: settings.max_api_keys_per_tenant,
        tenant_limits: TenantLimitSettings {
            requests_per_second: settings.tenant_rate_limit,
            burst: settings.tenant_rate_burst,
            max_concurrent_upstream: settings.tenant_max_concurrent_upstream,
            upstream_wait: settings.tenant_upstream_wait,
        },
        oauth_state_ttl: settings.oauth_state_ttl,
        proxy_max_body_bytes: settings.proxy_max_body_bytes,
        // Checked when the settings were loaded.
        proxy_forward_headers: settings.proxy_forward_header_names().unwrap_or_default(),
        session_ttl: settings.session_ttl,
        webhooks: WebhookSettings {
            tolerance: settings.webhook_tolerance,
            max_body_bytes: settings.webhook_max_body_bytes,
            retention: settings.event_retention,
            retry_base: settings.webhook_retry_base,
            retry_max: settings.webhook_retry_max,
            retry_window: settings.webhook_retry_window,
            disable_after: settings.webhook_disable_after,
            timeout: settings.webhook_timeout,
            concurrency: settings.webhook_concurrency,
            policy: OutboundPolicy {
                allow_insecure_loopback: match settings.webhook_allow_insecure_loopback.as_str() {
                    "true" => true,
                    "false" => false,
                    // Development: the embedded SQLite default.
                    _ => settings
                        .database_url
                        .as_ref()
                        .is_none_or(|u| !is_postgres_url(u.expose_secret())),
                },
                // Checked when the settings were loaded.
                allowed_networks: settings.webhook_allowed_network_list().unwrap_or_default(),
            },
            public_url: settings.public_url.as_ref().map(|u| u.as_str().to_owned()),
        },
        channel_prefix: settings.redis_prefix.clone(),
        ..ApiConfig::default()
    }
}

/// Everything `serve` needs.
pub async fn app_state(
    settings: &Settings,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<AppState, SetupError> {
    // Everything that needs no database is checked first, so a start refused
    // for a configuration mistake leaves the database untouched.
    let keyring = keyring(settings)?;
    let admin = admin_token(settings)?;
    let signer = session_signer(settings)?;
    let redis = redis_link(settings)?;
    let stripe = stripe_client(settings, redis.as_ref())?;
    let store = open_store(settings).await?;
    verify_keyring(&keyring, store.as_ref()).await?;
    let keyring = Arc::new(keyring);
    // Redis carries the replicas' cache invalidations when configured, else
    // the database does if it can (PostgreSQL); SQLite is one process.
    let change_feed: Option<Arc<dyn ChangeFeed>> = match redis {
        Some(link) => Some(Arc::new(RedisChangeFeed::new(link))),
        None => store.change_feed(),
    };
    info!(
        invalidation = change_feed.as_ref().map_or("in-process", |f| f.transport()),
        rate_limits = if settings.redis_url.is_some() {
            "redis"
        } else {
            "per replica"
        },
        "replica coordination"
    );
    Ok(AppState::new(
        store,
        keyring,
        stripe,
        Some(&admin),
        ApiConfig {
            session_signer: Arc::new(signer),
            change_feed,
            ..api_config(settings)
        },
        metrics,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_is_shown_on_a_terminal_only() {
        let token = SecretString::from("pba_shown_only_on_a_terminal_0123456789");
        let path = Path::new("/srv/patchbay/admin-token");
        let mut terminal = Vec::new();
        announce_admin_token(&token, path, true, &mut terminal);
        let terminal = String::from_utf8(terminal).unwrap();
        assert!(terminal.contains(token.expose_secret()), "{terminal}");
        // Not a terminal: nothing is written there; a log event names the file.
        let mut pipe = Vec::new();
        announce_admin_token(&token, path, false, &mut pipe);
        assert!(pipe.is_empty(), "{}", String::from_utf8_lossy(&pipe));
    }
}
