//! What runs as the agent in a bottle, per provider template.
//!
//! Only the built-in `shell` template launches today (the agent is `bash`); the Claude Code, Codex
//! and Pi templates and user plugins need their own images and configuration and are refused with a
//! clear message rather than started half-configured.

use bottle_core::Diagnostic;

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

/// The agent's command line inside the bottle for `template` in `mode` (the interactive form for
/// a detached bottle, which `attach` runs).
pub fn command(template: &str, mode: &Mode) -> anyhow::Result<Vec<String>> {
    match template {
        "shell" => Ok(match mode {
            Mode::Headless(prompt) => vec!["bash".into(), "-lc".into(), prompt.clone()],
            Mode::Interactive | Mode::Detached => vec!["bash".into(), "-l".into()],
        }),
        other => Err(Diagnostic::new(format!("provider template `{other}` cannot be launched yet"))
            .key("agent_provider.template")
            .hint(
                "use `agent_provider.template: shell` (the agent is bash); `start --dry-run` shows any template's plan",
            )
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_runs_bash() {
        assert_eq!(command("shell", &Mode::Interactive).unwrap(), ["bash", "-l"]);
        assert_eq!(command("shell", &Mode::Headless("echo hi".into())).unwrap(), ["bash", "-lc", "echo hi"]);
        assert!(command("claude", &Mode::Interactive).is_err());
    }
}
