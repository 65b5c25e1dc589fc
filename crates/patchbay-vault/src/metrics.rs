//! Vault metrics: secrets sealed and opened, data keys created, unwrapped and
//! re-wrapped, each by outcome. Labels are fixed names; nothing about the
//! tenant, the key or the secret appears.

use crate::VaultError;

/// What the vault did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// A secret sealed under a data key.
    Seal,
    /// A sealed secret opened.
    Open,
    /// A tenant's data key created and wrapped by the primary master key.
    NewDataKey,
    /// A stored data key unwrapped for use.
    OpenDataKey,
    /// A data key re-wrapped under the primary master key (rotation).
    Rewrap,
}

/// Counts one operation and its outcome; returns the result unchanged.
pub(crate) fn record<T>(
    operation: Operation,
    result: Result<T, VaultError>,
) -> Result<T, VaultError> {
    let operation = match operation {
        Operation::Seal => "seal",
        Operation::Open => "open",
        Operation::NewDataKey => "new_data_key",
        Operation::OpenDataKey => "open_data_key",
        Operation::Rewrap => "rewrap",
    };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("patchbay_vault_operations_total", "operation" => operation, "outcome" => outcome)
        .increment(1);
    result
}
