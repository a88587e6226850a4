//! One module per subcommand; each exposes `run`.

pub mod audit;
pub mod bottles;
pub mod completions;
pub mod cp;
pub mod dashboard;
pub mod doctor;
pub mod image;
pub mod info;
pub mod launch;
pub mod pick;
pub mod provider;
pub mod pty_bridge;
pub mod relay;
pub mod selftest;
pub mod sidecar;
pub mod start;
pub mod supervise;
pub mod workspace;

use bottle_core::spec::{AgentSpec, Sourced};
use bottle_manifest::{Catalog, ResolvedBottles};

use crate::context::Context;

/// Loads `agent` and the bottles it runs in: `--bottle` flags when given, else its `bottle:`.
pub fn resolve_agent(
    catalog: &Catalog,
    agent: &str,
    bottle_flags: &[String],
) -> anyhow::Result<(AgentSpec, ResolvedBottles)> {
    let spec = catalog.agent(agent)?;
    let names: Vec<String> = if bottle_flags.is_empty() {
        spec.bottles.iter().map(|b: &Sourced<String>| b.value.clone()).collect()
    } else {
        bottle_flags.to_vec()
    };
    if names.is_empty() {
        return Err(bottle_core::Diagnostic::new(format!("agent `{agent}` names no bottle"))
            .at(bottle_core::SourceLocation { path: spec.path.clone(), line: 1, col: 1 })
            .key("bottle")
            .hint("add `bottle: <name>` to the agent's frontmatter, or pass `--bottle <name>`")
            .into());
    }
    let bottles = catalog.resolve_bottles(&names)?;
    Ok((spec, bottles))
}

/// Shared by `info` and `start`.
pub fn context(global: &crate::cli::GlobalArgs) -> anyhow::Result<Context> {
    Context::new(global)
}

/// JSON log lines on stderr for the long-running hidden commands (`sidecar`, `relay`); the filter comes
/// from `BOT_BOTTLE_LOG` (default `info`).
pub fn init_daemon_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOT_BOTTLE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// A future that resolves on SIGTERM or SIGINT. The handlers are installed now, before anything is
/// served, so a signal that arrives early is not lost (and, as PID 1 in a container, not ignored).
pub fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

/// A backend error with its `hint:` line, as the CLI prints every error.
pub fn backend_error(err: bottle_backend::Error) -> anyhow::Error {
    let hint = err.hint();
    let text = format!("{:#}", anyhow::Error::new(err));
    match hint {
        Some(hint) => anyhow::anyhow!("{text}\nhint: {hint}"),
        None => anyhow::anyhow!(text),
    }
}
