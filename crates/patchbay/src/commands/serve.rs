//! `patchbay serve`: the HTTP server (with its connection limits), its
//! background work, and a graceful stop on SIGINT/SIGTERM that lets in-flight
//! requests finish.

use std::path::Path;

use tokio::net::TcpListener;
use tracing::{info, warn};

use super::CommandError;
use crate::config::Settings;

pub async fn run(config: Option<&Path>) -> Result<(), CommandError> {
    let settings = Settings::load(config)?;
    crate::logging::init(&settings.log, settings.log_format);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ])
        .map_err(|e| CommandError(format!("metrics buckets: {e}")))?
        .install_recorder()
        .map_err(|e| warn!(error = %e, "metrics disabled"))
        .ok();
    let limits = crate::server::Limits {
        header_read_timeout: settings.header_read_timeout,
        idle_timeout: settings.idle_timeout,
        max_connections: crate::server::fd_limit::raise_and_fit(settings.max_connections),
    };
    let state = crate::setup::app_state(&settings, metrics).await?;
    let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
        CommandError(format!(
            "cannot listen on {}: {e} (set PATCHBAY_LISTEN to another address)",
            settings.listen
        ))
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| CommandError(e.to_string()))?;
    let background = patchbay_api::services::background::spawn(state.clone());
    let store = state.store.clone();
    let audit_log = state.audit_log.clone();
    let app = patchbay_api::app(state);
    info!(%address, docs = %format!("http://{address}/docs"), "patchbay listening");

    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let served = crate::server::serve(listener, app, limits, async move {
        shutdown_signal().await;
        info!("shutting down: finishing in-flight requests");
        let _ = stopping_tx.send(true);
    });
    let grace = settings.shutdown_grace;
    let deadline = async {
        let mut rx = stopping_rx;
        let _ = rx.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = served => {}
        () = deadline => warn!(?grace, "in-flight requests did not finish within the grace period; stopping anyway"),
    }
    // Jobs in progress get the grace period too; what is still running after
    // it is left to its lease (another replica, or the next start, retries it).
    if tokio::time::timeout(grace, background.stop())
        .await
        .is_err()
    {
        warn!(
            ?grace,
            "background jobs did not finish within the grace period; their leases will expire and they will run again"
        );
    }
    // Audit records of calls (and of the jobs just stopped) still queued are
    // written before the store closes.
    let flushed = audit_log.close(grace).await;
    if flushed.unwritten == 0 {
        info!(events = flushed.written, "audit log flushed");
    } else {
        warn!(
            written = flushed.written,
            unwritten = flushed.unwritten,
            ?grace,
            "audit log not fully flushed (the grace period passed, or the database refused events); the unwritten events are lost"
        );
    }
    store.close().await;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
