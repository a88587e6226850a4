//! One module per subcommand; each exposes `run`.

pub mod audit;
pub mod completions;
pub mod doctor;
pub mod image;
pub mod info;
pub mod relay;
pub mod sidecar;
pub mod start;

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
