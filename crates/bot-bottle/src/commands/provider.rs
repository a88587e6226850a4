//! What runs as the agent in a bottle: the provider template (`bottle-provider`) applied to the
//! plan, its image, its credential and its command line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bottle_core::Diagnostic;
use bottle_core::plan::LaunchPlan;
use bottle_provider::Provider;
use bottle_provider::apply::HostView;

/// How the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// On this terminal, interactively.
    Interactive,
    /// `--headless --prompt TEXT`: the provider's non-interactive form.
    Headless(String),
    /// `--detach`: nothing runs yet; `attach` runs the interactive form later.
    Detached,
}

/// The host's Codex login, `~/.codex/auth.json` (`$CODEX_HOME/auth.json` when that is set).
pub fn codex_auth_path(user_home: &Path) -> PathBuf {
    std::env::var_os("CODEX_HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| user_home.join(".codex"), PathBuf::from)
        .join("auth.json")
}

/// Loads the plan's provider template and applies it: routes, environment, credential, skills.
pub fn load_and_apply(
    plan: &mut LaunchPlan,
    bot_home: &Path,
    user_home: &Path,
    env_set: BTreeSet<String>,
) -> Result<Provider, Diagnostic> {
    let provider = bottle_provider::load(&plan.provider.template, bot_home)?;
    let codex_auth = codex_auth_path(user_home);
    let host = HostView { env_set, codex_auth_exists: codex_auth.is_file(), codex_auth };
    bottle_provider::apply(&provider, plan, &host)?;
    Ok(provider)
}

/// The agent's command line for `mode` (the interactive form for a detached bottle, which `attach`
/// runs), started from the workspace when the bottle has one; `resume` asks for the provider's
/// resume form.
pub fn command(
    provider: &Provider,
    vars: &bottle_provider::Vars,
    mode: &Mode,
    resume: bool,
) -> Result<Vec<String>, Diagnostic> {
    let mode = match mode {
        Mode::Headless(p) => bottle_provider::Mode::Headless(p.clone()),
        Mode::Interactive | Mode::Detached => bottle_provider::Mode::Interactive,
    };
    let argv =
        bottle_provider::render::command(&provider.template, &provider.name, &provider.path, vars, &mode, resume)?;
    // A workspace (`start --cwd`) is where the agent starts, whatever directory the backend opens.
    Ok(if vars.workdir == bottle_core::plan::GUEST_WORKSPACE { super::workspace::in_workspace(&argv) } else { argv })
}

/// Which Dockerfile builds the agent image, first found wins: the bottle's own
/// (`bottles/<name>.Dockerfile` beside the last bottle of the chain that has one), the manifest's
/// `agent_provider.dockerfile`, the plugin's `Dockerfile`; `None` means the built-in recipe.
pub fn dockerfile(plan: &LaunchPlan, provider: &Provider, bot_home: &Path) -> Result<Option<PathBuf>, Diagnostic> {
    for name in plan.bottles.iter().rev() {
        let own = bot_home.join("bottles").join(format!("{name}.Dockerfile"));
        if own.is_file() {
            return Ok(Some(own));
        }
    }
    if let Some(path) = &plan.provider.dockerfile {
        if !path.is_file() {
            return Err(Diagnostic::new(format!("`agent_provider.dockerfile` `{}` is not a file", path.display()))
                .key("agent_provider.dockerfile")
                .hint("point it at a Dockerfile (built FROM `${BOT_BOTTLE_BASE}`, the agent base image)"));
        }
        return Ok(Some(path.clone()));
    }
    Ok(provider.plugin_dockerfile())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_runs_bash() {
        let p = bottle_provider::builtin("shell").expect("shell");
        let vars = bottle_provider::Vars::default();
        assert_eq!(command(&p, &vars, &Mode::Interactive, false).expect("argv"), ["bash", "-l"]);
        assert_eq!(
            command(&p, &vars, &Mode::Headless("echo hi".into()), false).expect("argv"),
            ["bash", "-l", "-c", "echo hi"]
        );
    }

    #[test]
    fn a_workspace_is_where_the_agent_starts_and_what_claude_trusts() {
        let p = bottle_provider::builtin("claude").expect("claude");
        let vars = bottle_provider::Vars {
            home: "/home/node".into(),
            workdir: bottle_core::plan::GUEST_WORKSPACE.into(),
            ..bottle_provider::Vars::default()
        };
        let argv = command(&p, &vars, &Mode::Interactive, false).expect("argv");
        assert_eq!(argv[..3], ["sh", "-c", "cd /home/node/workspace && exec \"$@\""]);
        assert_eq!(argv[4], "claude");
        let rendered = bottle_provider::render::render(&p.template, &p.name, &p.path, &vars).expect("render");
        let config = rendered.files.iter().find(|f| f.path.ends_with("/.claude.json")).expect(".claude.json");
        let json: serde_json::Value = serde_json::from_slice(&config.contents).expect("json");
        assert_eq!(json["projects"]["/home/node/workspace"]["hasTrustDialogAccepted"], true);
    }
}
