//! The real `patchbay` binary, as an operator runs it: start-up with and without
//! configuration, refusal on a wrong keyring, logs without secrets at trace
//! level, graceful shutdown, master-key rotation killed at random points, Stripe
//! failing under load, and PostgreSQL restarted under load.

mod cli;
mod fault_stripe;
mod faults;
mod jobs;
mod logs;
mod metrics_families;
mod metrics_labels;
mod noisy_tenant;
// The same PostgreSQL gate as the API tests (one file, two test binaries).
#[path = "../../../patchbay-api/tests/api/postgres.rs"]
mod postgres;
mod postgres_restart;
mod proxy_memory;
mod redis;
mod replica_failover;
mod replicas;
mod rotation_crash;
mod shutdown;
mod slow_clients;
mod startup;
mod support;
mod webhooks;
