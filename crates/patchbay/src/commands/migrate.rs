//! `patchbay migrate`: apply pending migrations and exit.

use std::path::Path;

use super::CommandError;
use crate::config::Settings;

pub async fn run(config: Option<&Path>) -> Result<(), CommandError> {
    let settings = Settings::load(config)?;
    crate::logging::init(&settings.log, settings.log_format);
    let store = crate::setup::open_store(&settings).await?;
    store.close().await;
    eprintln!("migrations applied");
    Ok(())
}
