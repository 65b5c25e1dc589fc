//! `patchbay keys`: master-key status, online rotation, generation.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use patchbay_vault::rotation::{Rotation, key_usage};
use secrecy::ExposeSecret;

use super::CommandError;
use crate::cli::{GenerateArgs, KeysCommand, RotateArgs};
use crate::config::Settings;

pub fn generate(args: &GenerateArgs) -> Result<(), CommandError> {
    let key =
        patchbay_vault::generate_master_key(&args.id).map_err(|e| CommandError(e.to_string()))?;
    println!("{}", key.expose_secret());
    Ok(())
}

pub async fn run(config: Option<&Path>, command: KeysCommand) -> Result<(), CommandError> {
    let settings = Settings::load(config)?;
    crate::logging::init(&settings.log, settings.log_format);
    let (store, keyring) = crate::setup::store_and_keyring(&settings).await?;
    let result = match command {
        KeysCommand::Status => status(&keyring, store.as_ref()).await,
        KeysCommand::Rotate(args) => rotate(&keyring, store.as_ref(), &args).await,
        KeysCommand::Generate(args) => generate(&args),
    };
    store.close().await;
    result
}

async fn status(
    keyring: &patchbay_vault::Keyring,
    store: &dyn patchbay_core::Store,
) -> Result<(), CommandError> {
    let usage = key_usage(keyring, store)
        .await
        .map_err(|e| CommandError(format!("cannot read key usage: {e}")))?;
    println!(
        "{:<20} {:<8} {:<11} {:>10}",
        "KEY", "PRIMARY", "CONFIGURED", "DATA KEYS"
    );
    for u in &usage {
        println!(
            "{:<20} {:<8} {:<11} {:>10}",
            u.key_id,
            if u.primary { "yes" } else { "" },
            if u.configured { "yes" } else { "NO" },
            u.data_keys
        );
    }
    let pending: u64 = usage
        .iter()
        .filter(|u| !u.primary)
        .map(|u| u.data_keys)
        .sum();
    if pending == 0 {
        println!("\nEverything is under the primary key; keys with 0 data keys can be removed.");
    } else {
        println!("\n{pending} data key(s) are under older keys: run `patchbay keys rotate`.");
    }
    Ok(())
}

async fn rotate(
    keyring: &patchbay_vault::Keyring,
    store: &dyn patchbay_core::Store,
    args: &RotateArgs,
) -> Result<(), CommandError> {
    let mut rotation = Rotation::new(keyring, store, args.batch_size);
    let total = rotation
        .remaining()
        .await
        .map_err(|e| CommandError(format!("cannot count records: {e}")))?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} re-wrapping [{bar:40}] {pos}/{len} data keys ({per_sec}, eta {eta})",
        )
        .map_err(|e| CommandError(e.to_string()))?
        .progress_chars("=> "),
    );
    // Without a terminal (CI, logs), progress is a line per batch instead of a bar.
    let lines = !args.quiet && !std::io::stderr().is_terminal();
    let started = Instant::now();
    let (mut examined, mut rewrapped, mut batches) = (0u64, 0u64, 0u64);
    loop {
        let outcome = rotation.next_batch().await.map_err(|e| {
            bar.abandon();
            CommandError(format!(
                "rotation stopped after {rewrapped} re-wrapped data keys: {e}. Nothing is lost; run the command again to resume."
            ))
        })?;
        let Some(outcome) = outcome else { break };
        batches += 1;
        examined += outcome.examined;
        rewrapped += outcome.rewrapped;
        if examined > bar.length().unwrap_or(0) {
            bar.set_length(examined);
        }
        bar.set_position(examined);
        if lines {
            eprintln!("re-wrapped {examined}/{total} data keys");
        }
        if args.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        }
    }
    bar.finish_and_clear();
    let remaining = rotation
        .remaining()
        .await
        .map_err(|e| CommandError(format!("cannot count records: {e}")))?;
    println!(
        "Rotation to '{}' finished in {:.1}s: {rewrapped} data key(s) re-wrapped in {batches} batch(es) ({} already done by another process); {remaining} left under older keys.",
        keyring.primary_id(),
        started.elapsed().as_secs_f64(),
        examined - rewrapped,
    );
    Ok(())
}
