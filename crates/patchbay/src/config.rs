//! Settings: defaults, then an optional TOML file, then `PATCHBAY_*`
//! environment variables. Secrets are typed as secrets from the start and may
//! come from files (`PATCHBAY_X_FILE`), never from both a file and a variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Directory for the SQLite default and the development keys.
    pub data_dir: PathBuf,
    /// Database URL; the SQLite default when absent.
    pub database_url: Option<SecretString>,
    /// Master keys, primary first.
    pub master_keys: Option<SecretString>,
    /// Platform admin token.
    pub admin_token: Option<SecretString>,
    /// HS256 key that signs connect-session tokens.
    pub session_signing_key: Option<SecretString>,
    /// How long an OAuth state from `auth-url` is accepted.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub oauth_state_ttl: Duration,
    /// Default lifetime of a connect-session token.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub session_ttl: Duration,
    /// Log filter.
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Stripe API base.
    pub stripe_api_base: url::Url,
    /// Stripe Connect base.
    pub stripe_connect_base: url::Url,
    /// Per-attempt timeout for Stripe calls.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub stripe_timeout: Duration,
    /// Connect timeout for Stripe calls.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub stripe_connect_timeout: Duration,
    /// Overall deadline of a Stripe call a client waits on, retries included.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub stripe_interactive_deadline: Duration,
    /// Retries after the first attempt.
    #[serde(deserialize_with = "number")]
    pub stripe_max_retries: u32,
    /// Background re-validation interval.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub revalidate_every: Duration,
    /// Jobs run at once by one replica.
    #[serde(deserialize_with = "number")]
    pub job_concurrency: usize,
    /// How long a claimed job stays reserved for its worker.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub job_lease: Duration,
    /// How often the job worker looks for due work.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub job_poll: Duration,
    /// First delay before a failed job is retried (doubling, with jitter).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub job_backoff: Duration,
    /// Verified-key cache lifetime.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub key_cache_ttl: Duration,
    /// Opened-connection cache lifetime (the proxy and actions).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub connection_cache_ttl: Duration,
    /// Largest request body.
    #[serde(deserialize_with = "number")]
    pub max_body_bytes: usize,
    /// Largest body the raw proxy forwards.
    #[serde(deserialize_with = "number")]
    pub proxy_max_body_bytes: u64,
    /// Extra caller headers the proxy forwards, comma-separated.
    pub proxy_forward_headers: String,
    /// Longest request.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub request_timeout: Duration,
    /// Database pool size.
    #[serde(deserialize_with = "number")]
    pub db_max_connections: u32,
    /// Time in-flight requests get at shutdown.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub shutdown_grace: Duration,
    /// Longest a client may take to send a request's line and headers.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open with no request in flight.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub idle_timeout: Duration,
    /// Most client connections open at once; more wait to be accepted.
    #[serde(deserialize_with = "number")]
    pub max_connections: usize,
    /// Most connections per tenant.
    #[serde(deserialize_with = "number")]
    pub max_connections_per_tenant: u64,
    /// Most unrevoked API keys per tenant.
    #[serde(deserialize_with = "number")]
    pub max_api_keys_per_tenant: u64,
    /// Requests per second a tenant may send (per replica), unless the admin set its own.
    #[serde(deserialize_with = "number")]
    pub tenant_rate_limit: u32,
    /// Requests a tenant may send at once above that rate.
    #[serde(deserialize_with = "number")]
    pub tenant_rate_burst: u32,
    /// Stripe calls a tenant's requests may make at once (per replica).
    #[serde(deserialize_with = "number")]
    pub tenant_max_concurrent_upstream: u32,
    /// How long a request waits for one of its tenant's Stripe slots.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub tenant_upstream_wait: Duration,
    /// How far a Stripe webhook signature's timestamp may be from now.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub webhook_tolerance: Duration,
    /// Largest Stripe event body accepted.
    #[serde(deserialize_with = "number")]
    pub webhook_max_body_bytes: usize,
    /// How long stored events are kept.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub event_retention: Duration,
    /// First retry delay of a failed delivery (doubling, with jitter).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub webhook_retry_base: Duration,
    /// Longest retry delay of a delivery.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub webhook_retry_max: Duration,
    /// How long a delivery is retried before it fails for good.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub webhook_retry_window: Duration,
    /// How long a subscription may fail every delivery before it is disabled.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub webhook_disable_after: Duration,
    /// Longest a delivery request may take.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub webhook_timeout: Duration,
    /// Deliveries made at once by one replica.
    #[serde(deserialize_with = "number")]
    pub webhook_concurrency: usize,
    /// Plain-http and loopback receivers (development); `auto`: allowed on SQLite only.
    pub webhook_allow_insecure_loopback: String,
    /// Networks deliveries may reach although private, comma-separated CIDRs.
    pub webhook_allowed_networks: String,
    /// The public base URL shown in webhook endpoints' `url`.
    pub public_url: Option<url::Url>,
    /// Redis shared by the replicas (`redis://host:6379/0`): cache
    /// invalidations and Stripe rate limits; none when absent.
    pub redis_url: Option<SecretString>,
    /// Prefix of Patchbay's Redis keys and of its invalidation channel
    /// (Redis and PostgreSQL), so deployments sharing one do not collide.
    pub redis_prefix: String,
    /// Stripe live-mode requests per second per connection, each of reads and writes.
    #[serde(deserialize_with = "number")]
    pub stripe_rate_limit_live: u32,
    /// Stripe test-mode requests per second per connection, each of reads and writes.
    #[serde(deserialize_with = "number")]
    pub stripe_rate_limit_test: u32,
}

#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    data_dir: &'static str,
    log: &'static str,
    log_format: LogFormat,
    stripe_api_base: &'static str,
    stripe_connect_base: &'static str,
    stripe_timeout: &'static str,
    stripe_connect_timeout: &'static str,
    stripe_interactive_deadline: &'static str,
    stripe_max_retries: u32,
    revalidate_every: &'static str,
    oauth_state_ttl: &'static str,
    session_ttl: &'static str,
    job_concurrency: usize,
    job_lease: &'static str,
    job_poll: &'static str,
    job_backoff: &'static str,
    key_cache_ttl: &'static str,
    connection_cache_ttl: &'static str,
    max_body_bytes: usize,
    proxy_max_body_bytes: u64,
    proxy_forward_headers: &'static str,
    request_timeout: &'static str,
    db_max_connections: u32,
    shutdown_grace: &'static str,
    header_read_timeout: &'static str,
    idle_timeout: &'static str,
    max_connections: usize,
    max_connections_per_tenant: u64,
    max_api_keys_per_tenant: u64,
    tenant_rate_limit: u32,
    tenant_rate_burst: u32,
    tenant_max_concurrent_upstream: u32,
    tenant_upstream_wait: &'static str,
    webhook_tolerance: &'static str,
    webhook_max_body_bytes: usize,
    event_retention: &'static str,
    webhook_retry_base: &'static str,
    webhook_retry_max: &'static str,
    webhook_retry_window: &'static str,
    webhook_disable_after: &'static str,
    webhook_timeout: &'static str,
    webhook_concurrency: usize,
    webhook_allow_insecure_loopback: &'static str,
    webhook_allowed_networks: &'static str,
    redis_prefix: &'static str,
    stripe_rate_limit_live: u32,
    stripe_rate_limit_test: u32,
}

const DEFAULTS: Defaults = Defaults {
    listen: "127.0.0.1:3000",
    data_dir: "./data",
    log: "info",
    log_format: LogFormat::Text,
    stripe_api_base: "https://api.stripe.com",
    stripe_connect_base: "https://connect.stripe.com",
    stripe_timeout: "30s",
    stripe_connect_timeout: "5s",
    stripe_interactive_deadline: "10s",
    stripe_max_retries: 2,
    revalidate_every: "24h",
    oauth_state_ttl: "10m",
    session_ttl: "30m",
    job_concurrency: 4,
    job_lease: "5m",
    job_poll: "1s",
    job_backoff: "10s",
    key_cache_ttl: "10s",
    connection_cache_ttl: "2s",
    max_body_bytes: 1024 * 1024,
    proxy_max_body_bytes: 32 * 1024 * 1024,
    proxy_forward_headers: "",
    request_timeout: "120s",
    db_max_connections: 16,
    shutdown_grace: "30s",
    header_read_timeout: "10s",
    idle_timeout: "60s",
    max_connections: 4096,
    max_connections_per_tenant: 1000,
    max_api_keys_per_tenant: 100,
    // Two live-mode Stripe accounts' worth of read traffic (Stripe allows 100
    // a second per account); a tenant fronting more gets its own limits.
    tenant_rate_limit: 200,
    tenant_rate_burst: 400,
    tenant_max_concurrent_upstream: 32,
    tenant_upstream_wait: "1s",
    webhook_tolerance: "5m",
    webhook_max_body_bytes: 1024 * 1024,
    event_retention: "30d",
    webhook_retry_base: "30s",
    webhook_retry_max: "6h",
    webhook_retry_window: "72h",
    webhook_disable_after: "72h",
    webhook_timeout: "10s",
    webhook_concurrency: 32,
    webhook_allow_insecure_loopback: "auto",
    webhook_allowed_networks: "",
    redis_prefix: "patchbay",
    stripe_rate_limit_live: 100,
    stripe_rate_limit_test: 25,
};

/// Settings that may come from a file instead of a variable.
const SECRET_FILES: [&str; 5] = [
    "database_url",
    "master_keys",
    "admin_token",
    "session_signing_key",
    "redis_url",
];

/// Why the settings cannot be used. Messages name the setting, never its value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting is malformed or unknown.
    #[error("configuration: {0}")]
    Invalid(String),
    /// Both `X` and `X_FILE` are set.
    #[error("configuration: both PATCHBAY_{0} and PATCHBAY_{0}_FILE are set; use one")]
    Both(String),
    /// A `_FILE` could not be read.
    #[error("configuration: cannot read PATCHBAY_{name}_FILE ({path}): {source}")]
    File {
        /// Setting.
        name: String,
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl Settings {
    /// Loads settings from the process environment and an optional file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Loads settings with `vars` standing in for the environment.
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("PATCHBAY_"))
            .collect();
        let var = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut figment = Figment::from(Serialized::defaults(DEFAULTS));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        for (key, value) in &vars {
            if key.ends_with("_FILE") {
                continue;
            }
            let name = key["PATCHBAY_".len()..].to_ascii_lowercase();
            figment = figment.merge(Serialized::default(&name, value));
        }
        for name in SECRET_FILES {
            let upper = name.to_ascii_uppercase();
            if let Some(path) = var(&format!("PATCHBAY_{upper}_FILE")) {
                if var(&format!("PATCHBAY_{upper}")).is_some() {
                    return Err(ConfigError::Both(upper));
                }
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::File {
                    name: upper.clone(),
                    path: path.clone(),
                    source,
                })?;
                figment = figment.merge(Serialized::default(
                    name,
                    text.trim_end_matches(['\n', '\r']),
                ));
            }
        }
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (name, url) in [
            ("STRIPE_API_BASE", &self.stripe_api_base),
            ("STRIPE_CONNECT_BASE", &self.stripe_connect_base),
        ] {
            if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
                return Err(ConfigError::Invalid(format!(
                    "PATCHBAY_{name} must be an http(s) URL without a query string"
                )));
            }
        }
        if self.revalidate_every < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "PATCHBAY_REVALIDATE_EVERY must be at least 1s".into(),
            ));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(3600)).contains(&self.oauth_state_ttl) {
            return Err(ConfigError::Invalid(
                "PATCHBAY_OAUTH_STATE_TTL must be between 1m and 1h".into(),
            ));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.session_ttl) {
            return Err(ConfigError::Invalid(
                "PATCHBAY_SESSION_TTL must be between 1m and 24h".into(),
            ));
        }
        if self.job_concurrency == 0 || self.db_max_connections == 0 {
            return Err(ConfigError::Invalid(
                "PATCHBAY_JOB_CONCURRENCY and PATCHBAY_DB_MAX_CONNECTIONS must be at least 1"
                    .into(),
            ));
        }
        if self.job_lease < Duration::from_secs(1)
            || self.job_poll < Duration::from_millis(10)
            || self.job_backoff < Duration::from_millis(100)
        {
            return Err(ConfigError::Invalid(
                "PATCHBAY_JOB_LEASE must be at least 1s, PATCHBAY_JOB_POLL at least 10ms and PATCHBAY_JOB_BACKOFF at least 100ms".into(),
            ));
        }
        if self.header_read_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "PATCHBAY_HEADER_READ_TIMEOUT and PATCHBAY_IDLE_TIMEOUT must be longer than 0"
                    .into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "PATCHBAY_MAX_CONNECTIONS must be at least 1".into(),
            ));
        }
        if self.max_connections_per_tenant == 0 || self.max_api_keys_per_tenant == 0 {
            return Err(ConfigError::Invalid(
                "PATCHBAY_MAX_CONNECTIONS_PER_TENANT and PATCHBAY_MAX_API_KEYS_PER_TENANT must be at least 1".into(),
            ));
        }
        if !(1..=patchbay_core::tenant_limits::MAX_REQUESTS).contains(&self.tenant_rate_limit)
            || !(1..=patchbay_core::tenant_limits::MAX_REQUESTS).contains(&self.tenant_rate_burst)
            || !(1..=patchbay_core::tenant_limits::MAX_CONCURRENT_UPSTREAM)
                .contains(&self.tenant_max_concurrent_upstream)
            || self.tenant_upstream_wait > Duration::from_secs(60)
        {
            return Err(ConfigError::Invalid(
                "PATCHBAY_TENANT_RATE_LIMIT and PATCHBAY_TENANT_RATE_BURST must be from 1 to 1000000, PATCHBAY_TENANT_MAX_CONCURRENT_UPSTREAM from 1 to 100000 and PATCHBAY_TENANT_UPSTREAM_WAIT at most 60s".into(),
            ));
        }
        if self.stripe_interactive_deadline.is_zero() {
            return Err(ConfigError::Invalid(
                "PATCHBAY_STRIPE_INTERACTIVE_DEADLINE must be more than 0".into(),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "PATCHBAY_MAX_BODY_BYTES must be at least 1024".into(),
            ));
        }
        if self.proxy_max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "PATCHBAY_PROXY_MAX_BODY_BYTES must be at least 1024".into(),
            ));
        }
        self.proxy_forward_header_names()?;
        self.webhook_allowed_network_list()?;
        if !matches!(
            self.webhook_allow_insecure_loopback.as_str(),
            "auto" | "true" | "false"
        ) {
            return Err(ConfigError::Invalid(
                "PATCHBAY_WEBHOOK_ALLOW_INSECURE_LOOPBACK must be auto, true or false".into(),
            ));
        }
        if self.webhook_tolerance < Duration::from_secs(1)
            || self.webhook_retry_base < Duration::from_millis(100)
            || self.webhook_retry_max < self.webhook_retry_base
            || self.webhook_timeout.is_zero()
            || self.webhook_concurrency == 0
            || self.event_retention < Duration::from_secs(60)
            || self.webhook_max_body_bytes < 1024
        {
            return Err(ConfigError::Invalid(
                "PATCHBAY_WEBHOOK_TOLERANCE must be at least 1s, PATCHBAY_WEBHOOK_RETRY_BASE at least 100ms and at most PATCHBAY_WEBHOOK_RETRY_MAX, PATCHBAY_WEBHOOK_TIMEOUT and PATCHBAY_WEBHOOK_CONCURRENCY more than 0, PATCHBAY_EVENT_RETENTION at least 1m and PATCHBAY_WEBHOOK_MAX_BODY_BYTES at least 1024".into(),
            ));
        }
        self.check_redis()?;
        if let Some(url) = &self.public_url
            && (!matches!(url.scheme(), "http" | "https") || url.query().is_some())
        {
            return Err(ConfigError::Invalid(
                "PATCHBAY_PUBLIC_URL must be an http(s) URL such as https://patchbay.example.com"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Redis and the rate limits: a `redis://` URL (plain TCP), a short
    /// prefix that is a valid channel name everywhere, limits above zero.
    fn check_redis(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url {
            use secrecy::ExposeSecret;
            // The URL may hold a password: the message never quotes it.
            let scheme_ok = url::Url::parse(url.expose_secret())
                .is_ok_and(|u| u.scheme() == "redis" && u.host_str().is_some());
            if !scheme_ok {
                return Err(ConfigError::Invalid(
                    "PATCHBAY_REDIS_URL must be a redis:// URL such as redis://127.0.0.1:6379/0"
                        .into(),
                ));
            }
        }
        let prefix_ok = (1..=40).contains(&self.redis_prefix.len())
            && self
                .redis_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !prefix_ok {
            return Err(ConfigError::Invalid(
                "PATCHBAY_REDIS_PREFIX must be 1 to 40 letters, digits, '_', '-' or '.'".into(),
            ));
        }
        if self.stripe_rate_limit_live == 0 || self.stripe_rate_limit_test == 0 {
            return Err(ConfigError::Invalid(
                "PATCHBAY_STRIPE_RATE_LIMIT_LIVE and PATCHBAY_STRIPE_RATE_LIMIT_TEST must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The networks deliveries may reach although private.
    pub fn webhook_allowed_network_list(
        &self,
    ) -> Result<Vec<patchbay_api::services::webhook_sender::IpNetwork>, ConfigError> {
        self.webhook_allowed_networks
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                n.parse().map_err(|e: String| {
                    ConfigError::Invalid(format!("PATCHBAY_WEBHOOK_ALLOWED_NETWORKS: {e}"))
                })
            })
            .collect()
    }

    /// The extra headers the proxy forwards: valid names, lower case, never
    /// a credential or hop-by-hop header.
    pub fn proxy_forward_header_names(&self) -> Result<Vec<String>, ConfigError> {
        const NEVER: [&str; 12] = [
            "authorization",
            "x-api-key",
            "cookie",
            "proxy-authorization",
            "host",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "te",
            "upgrade",
            "content-length",
            "patchbay-retry",
        ];
        let mut names = Vec::new();
        for name in self
            .proxy_forward_headers
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let lower = name.to_ascii_lowercase();
            let valid = !lower.is_empty()
                && lower
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid || NEVER.contains(&lower.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "PATCHBAY_PROXY_FORWARD_HEADERS: '{name}' cannot be forwarded (credentials and hop-by-hop headers never are)"
                )));
            }
            names.push(lower);
        }
        Ok(names)
    }
}

/// A number from TOML (an integer) or from the environment (text).
fn number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    let n = match Raw::deserialize(d)? {
        Raw::Number(n) => n,
        Raw::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("'{t}' is not a whole number")))?,
    };
    T::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is out of range")))
}

/// Figment's messages, with `PATCHBAY_` names for fields, without values of secrets.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|err| {
            let field = err
                .path
                .last()
                .map(|p| format!("PATCHBAY_{}", p.to_ascii_uppercase()))
                .unwrap_or_else(|| "settings".into());
            match &err.kind {
                figment::error::Kind::UnknownField(name, _) => format!(
                    "unknown setting PATCHBAY_{} (see `patchbay --help`)",
                    name.to_ascii_uppercase()
                ),
                figment::error::Kind::MissingField(name) => {
                    format!("missing setting PATCHBAY_{}", name.to_ascii_uppercase())
                }
                // The kind's text may quote the value: never for a secret.
                _ if SECRET_FILES.iter().any(|s| err.path.iter().any(|p| p == s)) => {
                    format!("{field} is malformed")
                }
                kind => format!("{field}: {kind}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(
            None,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = load(&[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(s.database_url.is_none());
        assert_eq!(s.revalidate_every, Duration::from_secs(86_400));
        assert_eq!(s.key_cache_ttl, Duration::from_secs(10));
        assert_eq!(s.connection_cache_ttl, Duration::from_secs(2));
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.max_connections, 4096);
        assert_eq!(s.stripe_interactive_deadline, Duration::from_secs(10));
        assert_eq!(s.max_connections_per_tenant, 1000);
        assert_eq!(s.max_api_keys_per_tenant, 100);
        assert_eq!(s.webhook_tolerance, Duration::from_secs(300));
        assert_eq!(s.event_retention, Duration::from_secs(30 * 86_400));
        assert_eq!(s.webhook_retry_window, Duration::from_secs(72 * 3600));
        assert!(s.redis_url.is_none());
        assert_eq!(s.redis_prefix, "patchbay");
        assert_eq!(
            (s.stripe_rate_limit_live, s.stripe_rate_limit_test),
            (100, 25)
        );
    }

    #[test]
    fn redis_and_rate_limits_are_checked_without_echoing_the_url() {
        let s = load(&[
            ("PATCHBAY_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0"),
            ("PATCHBAY_REDIS_PREFIX", "pb_test-1"),
            ("PATCHBAY_STRIPE_RATE_LIMIT_TEST", "5"),
        ])
        .unwrap();
        assert!(s.redis_url.is_some());
        assert_eq!(s.redis_prefix, "pb_test-1");
        assert_eq!(s.stripe_rate_limit_test, 5);
        let err = load(&[("PATCHBAY_REDIS_URL", "rediss://:hunter2@example.com")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PATCHBAY_REDIS_URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        for (name, value) in [
            ("PATCHBAY_REDIS_PREFIX", "has space"),
            ("PATCHBAY_REDIS_PREFIX", ""),
            ("PATCHBAY_STRIPE_RATE_LIMIT_LIVE", "0"),
        ] {
            let err = load(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn webhook_settings_are_checked() {
        let s = load(&[
            ("PATCHBAY_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/8, fd00::/8"),
            ("PATCHBAY_WEBHOOK_RETRY_BASE", "1s"),
            ("PATCHBAY_PUBLIC_URL", "https://patchbay.example.com"),
        ])
        .unwrap();
        assert_eq!(s.webhook_allowed_network_list().unwrap().len(), 2);
        for (name, value) in [
            ("PATCHBAY_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/40"),
            ("PATCHBAY_WEBHOOK_ALLOW_INSECURE_LOOPBACK", "maybe"),
            ("PATCHBAY_WEBHOOK_TOLERANCE", "0s"),
            ("PATCHBAY_WEBHOOK_CONCURRENCY", "0"),
        ] {
            let err = load(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn tenant_rate_limits_have_defaults_and_are_checked() {
        let s = load(&[]).unwrap();
        assert_eq!(
            (
                s.tenant_rate_limit,
                s.tenant_rate_burst,
                s.tenant_max_concurrent_upstream
            ),
            (200, 400, 32)
        );
        assert_eq!(s.tenant_upstream_wait, Duration::from_secs(1));
        let s = load(&[
            ("PATCHBAY_TENANT_RATE_LIMIT", "5"),
            ("PATCHBAY_TENANT_RATE_BURST", "10"),
            ("PATCHBAY_TENANT_MAX_CONCURRENT_UPSTREAM", "2"),
            ("PATCHBAY_TENANT_UPSTREAM_WAIT", "250ms"),
        ])
        .unwrap();
        assert_eq!(s.tenant_rate_limit, 5);
        assert_eq!(s.tenant_rate_burst, 10);
        assert_eq!(s.tenant_max_concurrent_upstream, 2);
        assert_eq!(s.tenant_upstream_wait, Duration::from_millis(250));
        for (key, value) in [
            ("PATCHBAY_TENANT_RATE_LIMIT", "0"),
            ("PATCHBAY_TENANT_RATE_BURST", "0"),
            ("PATCHBAY_TENANT_MAX_CONCURRENT_UPSTREAM", "0"),
            ("PATCHBAY_TENANT_UPSTREAM_WAIT", "2m"),
        ] {
            let err = load(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn connection_limits_must_be_positive() {
        for (key, value) in [
            ("PATCHBAY_HEADER_READ_TIMEOUT", "0"),
            ("PATCHBAY_IDLE_TIMEOUT", "0s"),
            ("PATCHBAY_MAX_CONNECTIONS", "0"),
        ] {
            let err = load(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        let s = load(&[
            ("PATCHBAY_HEADER_READ_TIMEOUT", "1s"),
            ("PATCHBAY_IDLE_TIMEOUT", "500ms"),
            ("PATCHBAY_MAX_CONNECTIONS", "8"),
        ])
        .unwrap();
        assert_eq!(s.header_read_timeout, Duration::from_secs(1));
        assert_eq!(s.idle_timeout, Duration::from_millis(500));
        assert_eq!(s.max_connections, 8);
    }

    #[test]
    fn limits_and_the_interactive_deadline_are_configurable_and_checked() {
        let s = load(&[
            ("PATCHBAY_STRIPE_INTERACTIVE_DEADLINE", "500ms"),
            ("PATCHBAY_MAX_CONNECTIONS_PER_TENANT", "5"),
            ("PATCHBAY_MAX_API_KEYS_PER_TENANT", "7"),
        ])
        .unwrap();
        assert_eq!(s.stripe_interactive_deadline, Duration::from_millis(500));
        assert_eq!(s.max_connections_per_tenant, 5);
        assert_eq!(s.max_api_keys_per_tenant, 7);
        for (name, value) in [
            ("PATCHBAY_MAX_CONNECTIONS_PER_TENANT", "0"),
            ("PATCHBAY_MAX_API_KEYS_PER_TENANT", "0"),
            ("PATCHBAY_STRIPE_INTERACTIVE_DEADLINE", "0"),
        ] {
            let err = load(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}

#[cfg(test)]
mod more_tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(
            None,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn environment_overrides_and_types() {
        let s = load(&[
            ("PATCHBAY_LISTEN", "0.0.0.0:8080"),
            ("PATCHBAY_STRIPE_MAX_RETRIES", "5"),
            ("PATCHBAY_REVALIDATE_EVERY", "2s"),
            ("PATCHBAY_KEY_CACHE_TTL", "0"),
            ("PATCHBAY_CONNECTION_CACHE_TTL", "0"),
            (
                "PATCHBAY_ADMIN_TOKEN",
                "12345678901234567890123456789012345",
            ),
            ("PATCHBAY_LOG_FORMAT", "json"),
            ("OTHER_VARIABLE", "ignored"),
        ])
        .unwrap();
        assert_eq!(s.listen.port(), 8080);
        assert_eq!(s.stripe_max_retries, 5);
        assert_eq!(s.revalidate_every, Duration::from_secs(2));
        assert!(s.key_cache_ttl.is_zero());
        assert!(s.connection_cache_ttl.is_zero());
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(
            s.admin_token.unwrap().expose_secret(),
            "12345678901234567890123456789012345"
        );
    }

    #[test]
    fn secrets_from_files_but_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "pba_from_file_0123456789abcdefghijklmnop\n").unwrap();
        let p = path.to_str().unwrap();
        let s = load(&[("PATCHBAY_ADMIN_TOKEN_FILE", p)]).unwrap();
        assert_eq!(
            s.admin_token.unwrap().expose_secret(),
            "pba_from_file_0123456789abcdefghijklmnop"
        );
        let both = load(&[
            ("PATCHBAY_ADMIN_TOKEN_FILE", p),
            ("PATCHBAY_ADMIN_TOKEN", "x"),
        ]);
        assert!(matches!(both, Err(ConfigError::Both(name)) if name == "ADMIN_TOKEN"));
        let missing = load(&[("PATCHBAY_MASTER_KEYS_FILE", "/nonexistent/keys")]);
        assert!(matches!(missing, Err(ConfigError::File { .. })));
    }

    #[test]
    fn mistakes_are_named_and_secrets_not_echoed() {
        let err = load(&[("PATCHBAY_LISTNE", "x")]).unwrap_err().to_string();
        assert!(err.contains("PATCHBAY_LISTNE"), "{err}");
        let err = load(&[("PATCHBAY_REVALIDATE_EVERY", "soon")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PATCHBAY_REVALIDATE_EVERY"), "{err}");
        let err = load(&[("PATCHBAY_STRIPE_API_BASE", "ftp://x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PATCHBAY_STRIPE_API_BASE"), "{err}");
        let err = load(&[("PATCHBAY_LISTEN", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PATCHBAY_LISTEN"), "{err}");
    }

    #[test]
    fn toml_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patchbay.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:4000\"\nstripe_max_retries = 1\nrevalidate_every = \"1h\"\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&path),
            [("PATCHBAY_STRIPE_MAX_RETRIES".to_string(), "3".to_string())],
        )
        .unwrap();
        assert_eq!(s.listen.port(), 4000);
        assert_eq!(s.stripe_max_retries, 3);
        assert_eq!(s.revalidate_every, Duration::from_secs(3600));
    }
}
