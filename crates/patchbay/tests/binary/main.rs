//! The real `patchbay` binary, as an operator runs it: start-up with and without
//! configuration, refusal on a wrong keyring, logs without secrets at trace
//! level, graceful shutdown, and master-key rotation killed at random points.

mod cli;
mod jobs;
mod logs;
mod metrics_labels;
mod noisy_tenant;
// The same PostgreSQL gate as the API tests (one file, two test binaries).
#[path = "../../../patchbay-api/tests/api/postgres.rs"]
mod postgres;
mod proxy_memory;
mod rotation_crash;
mod shutdown;
mod slow_clients;
mod startup;
mod support;
mod webhooks;
