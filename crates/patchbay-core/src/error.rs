//! The two error kinds the domain knows: bad input ([`ValidationError`]) and
//! storage failures ([`StoreError`]). The API crate turns both into its envelope.

use std::borrow::Cow;

/// Input that breaks a domain rule. `param` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// The request field at fault, in the form the caller sent it (`metadata.order_id`).
    pub param: Cow<'static, str>,
    /// A stable machine-readable code (`parameter_invalid`, `parameter_missing`, …).
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ValidationError {
    /// A field whose value is not acceptable.
    pub fn invalid(param: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            code: "parameter_invalid",
            message: message.into(),
        }
    }

    /// A required field that is absent.
    pub fn missing(param: impl Into<Cow<'static, str>>) -> Self {
        let param = param.into();
        Self {
            message: format!("Missing required parameter: {param}."),
            param,
            code: "parameter_missing",
        }
    }

    /// Replaces the code with a more specific one.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

/// A storage operation that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; `field` names the field that must be unique.
    #[error("{field} is already in use")]
    Conflict {
        /// The API field whose value collided (`external_id`).
        field: &'static str,
    },
    /// The database could not be reached or timed out; retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, corruption or an unexpected database answer.
    #[error("database error: {0}")]
    Internal(String),
}
