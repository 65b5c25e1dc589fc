//! The `patchbay` binary: command line, configuration, logging, and the
//! commands `serve`, `migrate`, `openapi` and `keys`.

pub mod cli;
pub mod commands;
pub mod config;
mod duration;
pub mod logging;
mod private_files;
pub mod server;
pub mod setup;

use std::process::ExitCode;

use clap::Parser;

/// Parses the command line and runs the command; errors are printed, not panicked.
pub fn run() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
