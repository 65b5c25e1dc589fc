//! The commands.

mod keys;
mod migrate;
mod openapi;
mod serve;

use crate::cli::{Cli, Command};

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<(), CommandError> {
    match cli.command {
        Command::Openapi(args) => openapi::run(args),
        Command::Keys(crate::cli::KeysCommand::Generate(args)) => keys::generate(&args),
        Command::Serve => serve::run(cli.config.as_deref()).await,
        Command::Migrate => migrate::run(cli.config.as_deref()).await,
        Command::Keys(command) => keys::run(cli.config.as_deref(), command).await,
    }
}

/// A failed command: a message for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

impl From<crate::setup::SetupError> for CommandError {
    fn from(e: crate::setup::SetupError) -> Self {
        Self(e.0)
    }
}

impl From<crate::config::ConfigError> for CommandError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self(e.to_string())
    }
}
