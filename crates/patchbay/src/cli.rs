//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ENVIRONMENT: &str = "\
CONFIGURATION
  Defaults, then the TOML file given with --config, then PATCHBAY_* variables.
  Secrets also read from files: PATCHBAY_X_FILE instead of PATCHBAY_X (never both).

  PATCHBAY_LISTEN                  address to serve on [127.0.0.1:3000]
  PATCHBAY_DATA_DIR                directory for the SQLite default and dev keys [./data]
  PATCHBAY_DATABASE_URL(_FILE)     sqlite://path.db or postgres://user@host/db
                                   [sqlite://<data dir>/patchbay.db]
  PATCHBAY_MASTER_KEYS(_FILE)      \"k2:<base64 32 bytes>,k1:<base64>\"; the first is primary.
                                   Without it, SQLite uses a generated dev key in the data
                                   directory (with a warning); PostgreSQL refuses to start.
  PATCHBAY_ADMIN_TOKEN(_FILE)      platform admin token (32+ characters). Without it, SQLite
                                   generates one into <data dir>/admin-token (printed once,
                                   on a terminal only).
  PATCHBAY_SESSION_SIGNING_KEY(_FILE)  HS256 key (32+ bytes) signing connect-session tokens.
                                   Without it, SQLite generates one into <data dir>/session.key;
                                   PostgreSQL (several replicas share it) refuses to start.
  PATCHBAY_OAUTH_STATE_TTL         how long an OAuth state from auth-url is accepted [10m]
  PATCHBAY_SESSION_TTL             default lifetime of a connect-session token [30m]
  PATCHBAY_LOG                     log filter, e.g. info or patchbay=debug [info]
  PATCHBAY_LOG_FORMAT              text or json [text]
  PATCHBAY_STRIPE_API_BASE         [https://api.stripe.com]
  PATCHBAY_STRIPE_CONNECT_BASE     [https://connect.stripe.com]
  PATCHBAY_STRIPE_TIMEOUT          per attempt [30s]
  PATCHBAY_STRIPE_CONNECT_TIMEOUT  [5s]
  PATCHBAY_STRIPE_MAX_RETRIES      retries after the first attempt [2]
  PATCHBAY_STRIPE_INTERACTIVE_DEADLINE  overall deadline of a Stripe call a client waits on
                                   (create, validate, rotate), retries included [10s]
  PATCHBAY_REVALIDATE_EVERY        background re-validation interval per connection [24h]
  PATCHBAY_JOB_CONCURRENCY         background jobs run at once per replica [4]
  PATCHBAY_JOB_LEASE               how long a claimed job is reserved for its worker [5m]
  PATCHBAY_JOB_POLL                how often the job worker looks for due work [1s]
  PATCHBAY_JOB_BACKOFF             first retry delay of a failed job, doubling [10s]
  PATCHBAY_KEY_CACHE_TTL           how long a verified API key is trusted (0 disables); the
                                   fallback bound when replicas cannot reach each other [10s]
  PATCHBAY_CONNECTION_CACHE_TTL    how long the proxy and actions reuse an opened connection (0 disables) [2s]
  PATCHBAY_REDIS_URL(_FILE)        redis://host:6379/0 shared by the replicas: cache invalidations
                                   (instead of PostgreSQL NOTIFY) and Stripe rate limits. Optional;
                                   when Redis is down, local limits and the TTL apply []
  PATCHBAY_REDIS_PREFIX            prefix of Redis keys and of the invalidation channel [patchbay]
  PATCHBAY_STRIPE_RATE_LIMIT_LIVE  Stripe live-mode requests/s per connection, reads and writes
                                   each (shared through Redis when set) [100]
  PATCHBAY_STRIPE_RATE_LIMIT_TEST  the same in test mode [25]
  PATCHBAY_MAX_BODY_BYTES          largest request body [1048576]
  PATCHBAY_PROXY_MAX_BODY_BYTES    largest body the raw proxy forwards, uploads included [33554432]
  PATCHBAY_PROXY_FORWARD_HEADERS   extra caller headers the proxy forwards, comma-separated []
  PATCHBAY_REQUEST_TIMEOUT         longest a request may run [120s]
  PATCHBAY_DB_MAX_CONNECTIONS      PostgreSQL pool size; SQLite: at most 2 x cores readers [16]
  PATCHBAY_SHUTDOWN_GRACE          time in-flight requests get at shutdown [30s]
  PATCHBAY_HEADER_READ_TIMEOUT     longest a client may take to send a request's headers [10s]
  PATCHBAY_IDLE_TIMEOUT            longest a connection stays open with no request [60s]
  PATCHBAY_MAX_CONNECTIONS         client connections open at once; more wait (also
                                   bounded by the file-descriptor limit) [4096]
  PATCHBAY_MAX_CONNECTIONS_PER_TENANT  most connections one tenant may have [1000]
  PATCHBAY_MAX_API_KEYS_PER_TENANT     most unrevoked API keys one tenant may have [100]
  PATCHBAY_TENANT_RATE_LIMIT       requests per second one tenant may send, per replica;
                                   the admin may set a tenant's own [200]
  PATCHBAY_TENANT_RATE_BURST       requests one tenant may send at once above that rate [400]
  PATCHBAY_TENANT_MAX_CONCURRENT_UPSTREAM  Stripe calls one tenant's requests may make at once,
                                   per replica [32]
  PATCHBAY_TENANT_UPSTREAM_WAIT    how long a request waits for one of those before 429 [1s]
  PATCHBAY_PUBLIC_URL              public base URL of webhook endpoints' url [the request's host]
  PATCHBAY_WEBHOOK_TOLERANCE       accepted age of a Stripe webhook signature [5m]
  PATCHBAY_WEBHOOK_MAX_BODY_BYTES  largest Stripe event body [1048576]
  PATCHBAY_EVENT_RETENTION         how long stored events are kept [30d]
  PATCHBAY_WEBHOOK_RETRY_BASE      first retry delay of a failed delivery, doubling [30s]
  PATCHBAY_WEBHOOK_RETRY_MAX       longest retry delay of a delivery [6h]
  PATCHBAY_WEBHOOK_RETRY_WINDOW    how long a delivery is retried [72h]
  PATCHBAY_WEBHOOK_DISABLE_AFTER   failing time after which a subscription is disabled [72h]
  PATCHBAY_WEBHOOK_TIMEOUT         longest a delivery request may take [10s]
  PATCHBAY_WEBHOOK_CONCURRENCY     deliveries made at once per replica [32]
  PATCHBAY_WEBHOOK_ALLOW_INSECURE_LOOPBACK  http and loopback receivers: auto (on SQLite only),
                                   true or false [auto]
  PATCHBAY_WEBHOOK_ALLOWED_NETWORKS  private networks deliveries may reach, CIDRs []
";

/// Patchbay keeps tenants' Stripe connections in an encrypted vault, proves
/// each with a test call, and lets tenants act through them.
#[derive(Debug, Parser)]
#[command(name = "patchbay", version, after_long_help = ENVIRONMENT, after_help = "Run with --help for every configuration variable.")]
pub struct Cli {
    /// A TOML file with settings (keys as the variables, lowercase, without PATCHBAY_).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the HTTP server (applies pending migrations first). Stops gracefully
    /// on SIGINT or SIGTERM, letting in-flight requests finish.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document, or write it to a file.
    Openapi(OpenapiArgs),
    /// Master encryption keys: status, rotation, generation.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// Arguments of `openapi`.
#[derive(Debug, Args)]
pub struct OpenapiArgs {
    /// Write to this file instead of printing (e.g. openapi/openapi.json).
    #[arg(long, value_name = "PATH")]
    pub write: Option<PathBuf>,
}

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show how many records each master key id protects. Retire an old key
    /// (remove it from PATCHBAY_MASTER_KEYS) only when its count is 0.
    Status,
    /// Re-wrap every record under the primary (first) master key. Runs online
    /// beside the servers, in batches of one transaction each; safe to interrupt
    /// and run again, and to run from several places at once.
    Rotate(RotateArgs),
    /// Print a new random master key as `id:base64`, for PATCHBAY_MASTER_KEYS.
    Generate(GenerateArgs),
}

/// Arguments of `keys rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Records per batch (one transaction each).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Pause between batches, to spare a busy database (milliseconds).
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    /// No progress bar (for logs and scripts).
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `keys generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The new key's id.
    #[arg(long, default_value = "k1")]
    pub id: String,
}
