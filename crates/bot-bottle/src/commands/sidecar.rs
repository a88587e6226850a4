//! `bot-bottle sidecar --config FILE` (hidden): one bottle's sidecar bundle, in the foreground.
//!
//! Logs go to stderr as JSON lines. SIGTERM or SIGINT stops it gracefully (in-flight requests get a
//! grace period); SIGHUP re-reads the routes from the config file. Any failure to start — config,
//! secrets, CA, a listener that cannot bind — exits non-zero before anything is served.

use std::process::ExitCode;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::SidecarArgs;

pub fn run(args: &SidecarArgs) -> anyhow::Result<ExitCode> {
    super::init_daemon_logs();
    bottle_ca::install_crypto_provider();
    // Two workers: a sidecar serves one bottle; more threads would only cost memory.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: &SidecarArgs) -> anyhow::Result<()> {
    let stop = super::stop_signal()?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let sidecar = bottle_sidecar::Sidecar::start(&args.config).await?;
    let reloader = sidecar.reloader();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reloader.reload() {
                Ok(n) => tracing::info!(routes = n, "routes reloaded"),
                Err(error) => tracing::error!(%error, "reload refused; the routes in force are unchanged"),
            }
        }
    });
    if let Some(addr) = sidecar.egress_addr() {
        tracing::info!(%addr, "egress listening");
    }
    sidecar.serve(stop).await?;
    Ok(())
}
