//! Provider templates: what runs as the agent in a bottle, described as data.
//!
//! A provider is one `provider.toml` (schema: [`Template`], reference: `docs/providers.md`). The
//! built-ins — `claude`, `codex`, `pi`, `shell` — ship inside the binary; a user plugin lives at
//! `$BOT_BOTTLE_HOME/contrib/<name>/provider.toml` with an optional `Dockerfile` beside it, and is
//! selected with `agent_provider.template: <name>`. A plugin may not take a built-in's name.
//!
//! Everything here is pure except [`load`], which reads the plugin file: parsing, checking every
//! `{{variable}}` a template uses, applying a template to a launch plan ([`apply`]) and rendering
//! its files, environment and command line for one bottle ([`render`]). Host credentials that are
//! files rather than variables (Codex's `auth.json`) are read and checked by [`codex`].

pub mod apply;
pub mod codex;
pub mod render;
mod schema;

use std::path::{Path, PathBuf};

use bottle_core::Diagnostic;
use bottle_core::diag::SourceLocation;

pub use apply::apply;
pub use render::{Mode, Rendered, Vars};
pub use schema::{
    CredentialSource, CredentialTemplate, FileFormat, FileTemplate, HeadlessTemplate, ImageTemplate, McpTemplate,
    PromptMode, PromptTemplate, RouteAuthTemplate, RouteTemplate, Template,
};

/// The built-in templates, name and text.
const BUILTINS: [(&str, &str); 4] = [
    ("claude", include_str!("../templates/claude/provider.toml")),
    ("codex", include_str!("../templates/codex/provider.toml")),
    ("pi", include_str!("../templates/pi/provider.toml")),
    ("shell", include_str!("../templates/shell/provider.toml")),
];

/// Where a template came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Shipped inside the binary.
    Builtin,
    /// `$BOT_BOTTLE_HOME/contrib/<name>/`: the directory holding `provider.toml`.
    Plugin { dir: PathBuf },
}

/// A parsed, checked template and where it came from.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub source: Source,
    /// The file as written: `<built-in>/claude/provider.toml` or the plugin's path.
    pub path: PathBuf,
    pub template: Template,
}

impl Provider {
    /// The plugin's `Dockerfile`, when it has one.
    pub fn plugin_dockerfile(&self) -> Option<PathBuf> {
        match &self.source {
            Source::Plugin { dir } => Some(dir.join("Dockerfile")).filter(|p| p.is_file()),
            Source::Builtin => None,
        }
    }

    /// Where a value of this template was written, for diagnostics and plan provenance.
    pub fn location(&self) -> SourceLocation {
        SourceLocation { path: self.path.clone(), line: 1, col: 1 }
    }

    pub fn is_builtin(&self) -> bool {
        self.source == Source::Builtin
    }
}

/// Names of the built-in templates.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}

/// The built-in template `name`.
pub fn builtin(name: &str) -> Option<Provider> {
    let (name, text) = BUILTINS.iter().find(|(n, _)| *n == name)?;
    let path = PathBuf::from(format!("<built-in>/{name}/provider.toml"));
    // A built-in that does not parse is a bug caught by the tests, never a user error.
    let template = schema::parse(text, &path).ok()?;
    Some(Provider { name: (*name).to_owned(), source: Source::Builtin, path, template })
}

/// The template `name`: a built-in, else the plugin under `bot_home/contrib/<name>/`.
pub fn load(name: &str, bot_home: &Path) -> Result<Provider, Diagnostic> {
    if let Some(p) = builtin(name) {
        return Ok(p);
    }
    let dir = bot_home.join("contrib").join(name);
    let path = dir.join("provider.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Diagnostic::new(format!("cannot read provider template `{name}`: {e}"))
            .at(SourceLocation { path: path.clone(), line: 1, col: 1 })
            .key("agent_provider.template")
            .hint(format!(
                "built-in templates are {}; a plugin is `{}`",
                builtin_names().collect::<Vec<_>>().join(", "),
                path.display()
            ))
    })?;
    let template = schema::parse(&text, &path)?;
    Ok(Provider { name: name.to_owned(), source: Source::Plugin { dir }, path, template })
}

/// Parses a template's text; `path` names it in errors. What `load` does after reading a plugin.
pub fn parse(text: &str, path: &Path) -> Result<Template, Diagnostic> {
    schema::parse(text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_and_checks() {
        for (name, text) in BUILTINS {
            let path = PathBuf::from(format!("<built-in>/{name}/provider.toml"));
            if let Err(e) = schema::parse(text, &path) {
                panic!("built-in `{name}` does not parse:\n{e}");
            }
            assert!(builtin(name).is_some());
        }
        assert!(builtin("nope").is_none());
    }

    #[test]
    fn plugins_load_from_contrib_and_cannot_shadow_builtins() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join("contrib/echo");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("provider.toml"), "command = [\"/usr/local/bin/echo-agent\"]\n").expect("write");
        let p = load("echo", home.path()).expect("loads");
        assert_eq!(p.template.command, ["/usr/local/bin/echo-agent"]);
        assert_eq!(p.source, Source::Plugin { dir: dir.clone() });
        assert!(p.plugin_dockerfile().is_none());
        std::fs::write(dir.join("Dockerfile"), "FROM x\n").expect("write");
        assert_eq!(p.plugin_dockerfile(), Some(dir.join("Dockerfile")));

        // A contrib directory named like a built-in is never read.
        let shadow = home.path().join("contrib/claude");
        std::fs::create_dir_all(&shadow).expect("mkdir");
        std::fs::write(shadow.join("provider.toml"), "command = [\"evil\"]\n").expect("write");
        assert_eq!(load("claude", home.path()).expect("built-in").template.command, ["claude"]);

        let missing = load("absent", home.path()).expect_err("no such plugin");
        assert!(missing.to_string().contains("contrib/absent/provider.toml"), "{missing}");
    }
}
