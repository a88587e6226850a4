//! Frontmatter → typed specs, with an error for every value that is not what the format says.
//!
//! The conversion is written out by hand rather than derived, because the errors are the product:
//! each one names the file, line, column and key path, quotes the offending value (never an env
//! value, which may be a secret), and suggests the fix.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use bottle_core::diag::{Diagnostic, did_you_mean};
use bottle_core::spec::{
    AuthSpec, BottleSpec, DlpSpec, EgressSpec, EnvValue, GitRepoSpec, GitUserSpec, HeaderMatch, HeaderMatchKind,
    InboundDetector, MatchSpec, OnMatch, OutboundDetector, PathMatch, PathMatchKind, ProviderSpec, RepoKey, RouteSpec,
    Sourced,
};

use crate::doc::Doc;
use crate::yaml::{Key, Node, NodeKind, is_bool};

type Result<T> = std::result::Result<T, Diagnostic>;

/// Top-level keys of a bottle.
pub const BOTTLE_KEYS: [&str; 5] = ["extends", "env", "agent_provider", "git-gate", "egress"];
/// Top-level keys of an agent.
pub const AGENT_KEYS: [&str; 3] = ["bottle", "skills", "git-gate"];
/// Claude Code subagent keys, tolerated on agents so one file can serve both tools.
pub const CLAUDE_SUBAGENT_KEYS: [&str; 14] = [
    "name",
    "description",
    "tools",
    "disallowedTools",
    "model",
    "color",
    "permissionMode",
    "mcpServers",
    "hooks",
    "maxTurns",
    "memory",
    "effort",
    "background",
    "isolation",
];
/// Keys a bottle may hold that an agent (above all a repository's) may not.
pub const BOTTLE_ONLY_KEYS: [&str; 4] = ["extends", "env", "agent_provider", "egress"];

/// Keys of the original format that are gone, with what replaced them.
fn removed_key_hint(key_path: &str) -> Option<&'static str> {
    Some(match key_path {
        "supervise" => "`supervise` was removed: the supervise plane is always on; delete the key",
        "runtime" => "`runtime` was removed: gVisor is detected and used automatically when it works; delete the key",
        "git" => "`git` was replaced by `git-gate` (`user` and `repos.<name>.{url, identity, host_key}`)",
        "egress_proxy" | "cred_proxy" => {
            "this key was replaced by `egress.routes` (`host`, `auth.scheme`, `auth.token_ref`)"
        }
        "egress.allowlist" => {
            "`egress.allowlist` was replaced by `egress.routes`: write one `- host: …` route per host"
        }
        "path_allowlist" => "`path_allowlist` was replaced by `matches: [{paths: [{type: prefix, value: /…}]}]`",
        _ => return None,
    })
}

/// Joins a key path: `egress` + `routes` → `egress.routes`.
pub fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

pub(crate) struct Reader<'a> {
    pub doc: &'a Doc,
}

impl<'a> Reader<'a> {
    pub fn new(doc: &'a Doc) -> Self {
        Self { doc }
    }

    fn what(&self) -> String {
        format!("{} `{}`", self.doc.kind, self.doc.name)
    }

    pub fn map<'n>(&self, node: &'n Node, path: &str) -> Result<&'n [(Key, Node)]> {
        match &node.kind {
            NodeKind::Map(entries) => Ok(entries),
            NodeKind::Null => Ok(&[]),
            _ => Err(self
                .doc
                .value_error(node, format!("`{path}` must be a mapping, found {}", node.type_name()))
                .key(path)),
        }
    }

    pub fn seq<'n>(&self, node: &'n Node, path: &str) -> Result<&'n [Node]> {
        match &node.kind {
            NodeKind::Seq(items) => Ok(items),
            NodeKind::Null => Ok(&[]),
            _ => Err(self
                .doc
                .value_error(node, format!("`{path}` must be a list, found {}", node.type_name()))
                .key(path)),
        }
    }

    /// A string value. Numbers are accepted as their text; booleans and nothing are not.
    pub fn string(&self, node: &Node, path: &str) -> Result<String> {
        match &node.kind {
            NodeKind::Scalar { text, quoted } if *quoted || is_bool(text).is_none() => Ok(text.clone()),
            _ => Err(self
                .doc
                .value_error(node, format!("`{path}` must be a string, found {}", node.type_name()))
                .key(path)),
        }
    }

    pub fn non_empty_string(&self, node: &Node, path: &str) -> Result<String> {
        let s = self.string(node, path)?;
        if s.trim().is_empty() {
            return Err(self.doc.value_error(node, format!("`{path}` is empty")).key(path));
        }
        Ok(s)
    }

    pub fn boolean(&self, node: &Node, path: &str) -> Result<bool> {
        match &node.kind {
            NodeKind::Scalar { text, quoted: false } if is_bool(text).is_some() => {
                Ok(is_bool(text).unwrap_or_default())
            }
            _ => Err(self
                .doc
                .value_error(node, format!("`{path}` must be `true` or `false`, found {}", node.type_name()))
                .key(path)),
        }
    }

    /// A string or a list of strings (`extends`, `bottle`), each with its node.
    pub fn string_or_list<'n>(&self, node: &'n Node, path: &str) -> Result<Vec<(String, &'n Node)>> {
        match &node.kind {
            NodeKind::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| Ok((self.non_empty_string(item, &format!("{path}[{i}]"))?, item)))
                .collect(),
            _ => Ok(vec![(self.non_empty_string(node, path)?, node)]),
        }
    }

    /// Refuses keys outside `allowed`, with a did-you-mean or the migration hint of a removed key.
    pub fn check_keys(&self, entries: &[(Key, Node)], allowed: &[&str], path: &str, tolerated: &[&str]) -> Result<()> {
        for (key, _) in entries {
            if allowed.contains(&key.name.as_str()) || tolerated.contains(&key.name.as_str()) {
                continue;
            }
            let full = join(path, &key.name);
            let mut d = self.doc.key_error(key, format!("unknown key `{full}` in {}", self.what())).key(full.clone());
            if let Some(hint) = removed_key_hint(&full) {
                d.message = format!("`{full}` is no longer supported in {}", self.what());
                d = d.hint(hint);
            } else if let Some(s) = did_you_mean(&key.name, allowed.iter().copied()) {
                d = d.hint(format!("did you mean `{}`?", join(path, s)));
            } else {
                let list: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
                d = d.hint(format!("allowed here: {}", list.join(", ")));
            }
            return Err(d);
        }
        Ok(())
    }
}

/// The error for a `*_ref`/`auth_token` value that is not a variable name. It never quotes the value
/// or shows the line: a value that is not a name is most likely the credential itself, pasted in.
fn not_a_var_name(path: &str) -> String {
    format!("`{path}` must name a host environment variable (its value is not shown: it may be a credential)")
}

/// Whether a would-be variable name is more likely a pasted credential: a known token prefix, or a
/// long mix of lowercase letters and digits (variable names are conventionally `UPPER_SNAKE`).
fn looks_like_credential(s: &str) -> bool {
    const PREFIXES: [&str; 14] = [
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
        "xox",
        "sk-",
        "sk_",
        "AKIA",
        "ASIA",
        "AIza",
        "npm_",
    ];
    let mixed = s.len() >= 24 && s.chars().any(|c| c.is_ascii_lowercase()) && s.chars().any(|c| c.is_ascii_digit());
    mixed || PREFIXES.iter().any(|p| s.starts_with(p) && s.len() > p.len() + 8)
}

/// A host variable name that is a name, not a credential pasted where a name belongs.
fn is_var_ref(s: &str) -> bool {
    is_env_name(s) && !looks_like_credential(s)
}

fn is_env_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn is_kebab(s: &str) -> bool {
    bottle_core::ManifestName::parse(s).is_ok()
}

/// The parts of a bottle file: its spec and the parents it names.
#[derive(Debug, Clone)]
pub struct BottleFile {
    pub spec: BottleSpec,
    pub extends: Vec<Sourced<String>>,
}

impl Reader<'_> {
    /// Converts a bottle's frontmatter.
    pub fn bottle(&self, root: &Node) -> Result<BottleFile> {
        let entries = self.map(root, "frontmatter")?;
        self.check_keys(entries, &BOTTLE_KEYS, "", &[])?;
        let mut file = BottleFile { spec: BottleSpec::default(), extends: Vec::new() };
        for (key, value) in entries {
            match key.name.as_str() {
                "extends" => {
                    for (name, node) in self.string_or_list(value, "extends")? {
                        if !is_kebab(&name) {
                            return Err(self
                                .doc
                                .value_error(
                                    node,
                                    format!("`extends` names `{name}`, which is not a valid bottle name"),
                                )
                                .key("extends")
                                .hint("bottle names are file stems: lowercase letters, digits and `-`"));
                        }
                        file.extends.push(Sourced::new(name, self.doc.origin(node.pos)));
                    }
                }
                "env" => file.spec.env = self.env(value)?,
                "agent_provider" => file.spec.provider = self.provider(value)?,
                "git-gate" => {
                    let (user, repos) = self.git_gate(value, true)?;
                    file.spec.git_user = user;
                    file.spec.git_repos = repos;
                }
                "egress" => file.spec.egress = self.egress(value)?,
                _ => {}
            }
        }
        Ok(file)
    }

    fn env(&self, node: &Node) -> Result<BTreeMap<String, Sourced<EnvValue>>> {
        let mut env = BTreeMap::new();
        for (key, value) in self.map(node, "env")? {
            let path = join("env", &key.name);
            if !is_env_name(&key.name) {
                return Err(self
                    .doc
                    .key_error(key, format!("`{}` is not a valid environment variable name", key.name))
                    .key(path)
                    .hint("use letters, digits and `_`, not starting with a digit (e.g. `API_BASE_URL`)"));
            }
            // Env values may be secrets: errors here never show the line or the value.
            let text = match &value.kind {
                NodeKind::Scalar { text, .. } => text.clone(),
                NodeKind::Null => {
                    return Err(self
                        .doc
                        .error_hidden(key.pos, format!("env `{}` has no value", key.name))
                        .key(path)
                        .hint(
                            "give a literal, `?` to ask for it at launch, or `${HOST_VAR}` to copy a host variable",
                        ));
                }
                _ => {
                    return Err(self
                        .doc
                        .error_hidden(
                            value.pos,
                            format!("env `{}` must be a string, found {}", key.name, value.type_name()),
                        )
                        .key(path));
                }
            };
            let parsed = if let Some(message) = text.strip_prefix('?') {
                let message = message.trim();
                EnvValue::Prompt { message: (!message.is_empty()).then(|| message.to_owned()) }
            } else if let Some(var) = text.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                if !is_env_name(var) {
                    return Err(self
                        .doc
                        .error_hidden(
                            value.pos,
                            format!("env `{}` reads host variable `{var}`, which is not a valid name", key.name),
                        )
                        .key(path)
                        .hint("write `${NAME}` with letters, digits and `_`"));
                }
                EnvValue::HostVar { var: var.to_owned() }
            } else if text.contains("${") {
                return Err(self
                    .doc
                    .error_hidden(value.pos, format!("env `{}` mixes text and `${{…}}`", key.name))
                    .key(path)
                    .hint(
                        "only a whole value `${HOST_VAR}` is copied from the host; there is no partial interpolation",
                    ));
            } else {
                EnvValue::Literal { value: text }
            };
            env.insert(key.name.clone(), Sourced::new(parsed, self.doc.origin(key.pos)));
        }
        Ok(env)
    }

    fn provider(&self, node: &Node) -> Result<ProviderSpec> {
        const KEYS: [&str; 5] = ["template", "dockerfile", "auth_token", "forward_host_credentials", "settings"];
        let entries = self.map(node, "agent_provider")?;
        self.check_keys(entries, &KEYS, "agent_provider", &[])?;
        let mut spec = ProviderSpec::default();
        for (key, value) in entries {
            let path = join("agent_provider", &key.name);
            let origin = self.doc.origin(value.pos);
            match key.name.as_str() {
                "template" => {
                    let t = self.non_empty_string(value, &path)?;
                    if !is_kebab(&t) {
                        return Err(self
                            .doc
                            .value_error(value, format!("`{path}` is `{t}`, which is not a template name"))
                            .key(path)
                            .hint("use `claude`, `codex`, `pi`, `shell` or the name of a plugin under `contrib/`"));
                    }
                    spec.template = Some(Sourced::new(t, origin));
                }
                "dockerfile" => {
                    spec.dockerfile = Some(Sourced::new(PathBuf::from(self.non_empty_string(value, &path)?), origin));
                }
                "auth_token" => {
                    let var = self.non_empty_string(value, &path)?;
                    if !is_var_ref(&var) {
                        return Err(self
                            .doc
                            .error_hidden(value.pos, not_a_var_name(&path))
                            .key(path)
                            .hint("give the variable's name, not its value (e.g. `BOT_BOTTLE_CLAUDE_OAUTH_TOKEN`)"));
                    }
                    spec.auth_token = Some(Sourced::new(var, origin));
                }
                "forward_host_credentials" => {
                    spec.forward_host_credentials = Some(Sourced::new(self.boolean(value, &path)?, origin));
                }
                "settings" => spec.settings = Some(Sourced::new(to_json(value), origin)),
                _ => {}
            }
        }
        Ok(spec)
    }

    /// `git-gate`; `repos_allowed` is false on agents.
    pub fn git_gate(&self, node: &Node, repos_allowed: bool) -> Result<(GitUserSpec, BTreeMap<String, GitRepoSpec>)> {
        let entries = self.map(node, "git-gate")?;
        if !repos_allowed && let Some((key, _)) = entries.iter().find(|(k, _)| k.name == "repos") {
            return Err(self
                    .doc
                    .key_error(key, format!("`git-gate.repos` is not allowed in {}", self.what()))
                    .key("git-gate.repos")
                    .hint("repos carry credentials and belong in a bottle under `$BOT_BOTTLE_HOME/bottles/`; an agent may set only `git-gate.user`"));
        }
        let allowed: &[&str] = if repos_allowed { &["user", "repos"] } else { &["user"] };
        self.check_keys(entries, allowed, "git-gate", &[])?;
        let mut user = GitUserSpec::default();
        let mut repos = BTreeMap::new();
        for (key, value) in entries {
            match key.name.as_str() {
                "user" => {
                    let fields = self.map(value, "git-gate.user")?;
                    self.check_keys(fields, &["name", "email"], "git-gate.user", &[])?;
                    for (k, v) in fields {
                        let path = join("git-gate.user", &k.name);
                        let s = self.non_empty_string(v, &path)?;
                        if k.name == "email" && !s.contains('@') {
                            return Err(self
                                .doc
                                .value_error(v, format!("`{path}` is `{s}`, which is not an email address"))
                                .key(path));
                        }
                        let sourced = Some(Sourced::new(s, self.doc.origin(v.pos)));
                        if k.name == "name" {
                            user.name = sourced;
                        } else {
                            user.email = sourced;
                        }
                    }
                }
                "repos" => {
                    for (name_key, repo) in self.map(value, "git-gate.repos")? {
                        let repo_spec = self.git_repo(name_key, repo)?;
                        repos.insert(name_key.name.clone(), repo_spec);
                    }
                }
                _ => {}
            }
        }
        Ok((user, repos))
    }

    fn git_repo(&self, name_key: &Key, node: &Node) -> Result<GitRepoSpec> {
        const KEYS: [&str; 5] = ["url", "identity", "provisioned_key", "host_key", "push_refs"];
        let base = join("git-gate.repos", &name_key.name);
        let name_ok = name_key.name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name_key.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name_key.name.ends_with(".git");
        if !name_ok {
            return Err(self
                .doc
                .key_error(name_key, format!("`{}` is not a valid git-gate repo name", name_key.name))
                .key(base)
                .hint("the name becomes the mirror's path (`<name>.git`): use letters, digits, `-`, `_`, `.`, without a `.git` suffix"));
        }
        let entries = self.map(node, &base)?;
        self.check_keys(entries, &KEYS, &base, &[])?;
        let mut spec = GitRepoSpec { declared_at: Some(self.doc.origin(name_key.pos)), ..GitRepoSpec::default() };
        let mut key_seen: Option<&Key> = None;
        for (key, value) in entries {
            let path = join(&base, &key.name);
            let origin = self.doc.origin(value.pos);
            match key.name.as_str() {
                "url" => {
                    let url = self.non_empty_string(value, &path)?;
                    if !is_ssh_url(&url) {
                        return Err(self
                            .doc
                            .value_error(value, format!("`{path}` is `{url}`, which is not an SSH URL"))
                            .key(path)
                            .hint("git-gate forwards pushes over SSH: use `ssh://git@host[:port]/owner/repo.git` or `git@host:owner/repo.git`"));
                    }
                    spec.url = Some(Sourced::new(url, origin));
                }
                "identity" | "provisioned_key" => {
                    if let Some(first) = key_seen {
                        return Err(self
                            .doc
                            .key_error(key, format!("`{base}` sets both `{}` and `{}`", first.name, key.name))
                            .key(path)
                            .hint("use an existing key file (`identity`) or a per-launch deploy key (`provisioned_key`), not both"));
                    }
                    key_seen = Some(key);
                    let repo_key = if key.name == "identity" {
                        RepoKey::Identity { path: self.non_empty_string(value, &path)? }
                    } else {
                        let fields = self.map(value, &path)?;
                        self.check_keys(fields, &["provider", "token_ref"], &path, &[])?;
                        let mut provider = None;
                        let mut token_ref = None;
                        for (k, v) in fields {
                            let p = join(&path, &k.name);
                            let s = self.non_empty_string(v, &p)?;
                            if k.name == "provider" {
                                if s != "gitea" {
                                    return Err(self
                                        .doc
                                        .value_error(v, format!("`{p}` is `{s}`, which is not a supported forge"))
                                        .key(p)
                                        .hint("supported: `gitea`"));
                                }
                                provider = Some(s);
                            } else {
                                if !is_var_ref(&s) {
                                    return Err(self
                                        .doc
                                        .error_hidden(v.pos, not_a_var_name(&p))
                                        .key(p)
                                        .hint("give the variable's name, not the token itself"));
                                }
                                token_ref = Some(s);
                            }
                        }
                        let (Some(provider), Some(token_ref)) = (provider, token_ref) else {
                            return Err(self
                                .doc
                                .key_error(key, format!("`{path}` needs both `provider` and `token_ref`"))
                                .key(path));
                        };
                        RepoKey::Provisioned { provider, token_ref }
                    };
                    spec.key = Some(Sourced::new(repo_key, origin));
                }
                "host_key" => {
                    let line = self.non_empty_string(value, &path)?;
                    if !is_host_key(&line) {
                        return Err(self
                            .doc
                            .value_error(value, format!("`{path}` is not an SSH public host key"))
                            .key(path)
                            .hint("paste a line like `ssh-ed25519 AAAAC3Nza…` (from `ssh-keyscan -t ed25519 host`, with or without the leading host name)"));
                    }
                    spec.host_key = Some(Sourced::new(line, origin));
                }
                "push_refs" => {
                    let mut globs = Vec::new();
                    for (i, item) in self.seq(value, &path)?.iter().enumerate() {
                        let g = self.non_empty_string(item, &format!("{path}[{i}]"))?;
                        if !g.starts_with("refs/") {
                            return Err(self
                                .doc
                                .value_error(item, format!("`{path}[{i}]` is `{g}`, which is not a ref glob"))
                                .key(format!("{path}[{i}]"))
                                .hint("write full ref globs such as `refs/heads/agent/*`"));
                        }
                        globs.push(g);
                    }
                    spec.push_refs = Some(Sourced::new(globs, origin));
                }
                _ => {}
            }
        }
        Ok(spec)
    }

    fn egress(&self, node: &Node) -> Result<EgressSpec> {
        const KEYS: [&str; 4] = ["log", "routes", "upstream_ca", "hosts"];
        let entries = self.map(node, "egress")?;
        self.check_keys(entries, &KEYS, "egress", &[])?;
        let mut spec = EgressSpec::default();
        for (key, value) in entries {
            let path = join("egress", &key.name);
            match key.name.as_str() {
                "log" => {
                    let level = match &value.kind {
                        NodeKind::Scalar { text, quoted: false } => text.parse::<u8>().ok().filter(|l| *l <= 2),
                        _ => None,
                    };
                    let Some(level) = level else {
                        let shown = scalar_text(value);
                        return Err(self
                            .doc
                            .value_error(value, format!("`egress.log` must be 0, 1 or 2, found {shown}"))
                            .key(path)
                            .hint("0 logs denials and warnings, 1 adds a line per request, 2 adds full headers"));
                    };
                    spec.log = Some(Sourced::new(level, self.doc.origin(value.pos)));
                }
                "routes" => {
                    let mut seen: BTreeMap<(String, Option<u16>), usize> = BTreeMap::new();
                    for (i, item) in self.seq(value, &path)?.iter().enumerate() {
                        let route = self.route(item, &format!("egress.routes[{i}]"))?;
                        if let Some(line) = seen.get(&route.key()) {
                            return Err(self
                                .doc
                                .value_error(
                                    item,
                                    format!("duplicate route for host `{}` in {}", route.host, self.what()),
                                )
                                .key(format!("egress.routes[{i}].host"))
                                .note(format!("first route for this host is on line {line}"))
                                .hint("one route per host: merge the two routes' `matches` into one list"));
                        }
                        seen.insert(route.key(), route.origin.location.line);
                        spec.routes.push(route);
                    }
                }
                "upstream_ca" => {
                    spec.upstream_ca =
                        Some(Sourced::new(self.non_empty_string(value, &path)?, self.doc.origin(value.pos)));
                }
                "hosts" => {
                    for (host_key, ip) in self.map(value, &path)? {
                        let p = join(&path, &host_key.name);
                        let host = host_key.name.to_ascii_lowercase();
                        if !is_hostname(&host) {
                            return Err(self
                                .doc
                                .key_error(host_key, format!("`{}` is not a host name", host_key.name))
                                .key(p));
                        }
                        let text = self.non_empty_string(ip, &p)?;
                        let Ok(addr) = text.parse::<IpAddr>() else {
                            return Err(self
                                .doc
                                .value_error(ip, format!("`{p}` is `{text}`, which is not an IP address"))
                                .key(p)
                                .hint("static host entries map a name to an IPv4 or IPv6 address"));
                        };
                        spec.hosts.insert(host, Sourced::new(addr, self.doc.origin(ip.pos)));
                    }
                }
                _ => {}
            }
        }
        Ok(spec)
    }

    fn route(&self, node: &Node, base: &str) -> Result<RouteSpec> {
        const KEYS: [&str; 4] = ["host", "auth", "matches", "dlp"];
        let entries = self.map(node, base)?;
        if let Some((key, _)) = entries.iter().find(|(k, _)| k.name == "role") {
            return Err(self
                .doc
                .key_error(key, format!("`{base}.role` is reserved and cannot be set"))
                .key(join(base, "role"))
                .hint("delete the key"));
        }
        if let Some((key, _)) = entries.iter().find(|(k, _)| k.name == "path_allowlist") {
            return Err(self
                .doc
                .key_error(key, format!("`{base}.path_allowlist` is no longer supported"))
                .key(join(base, "path_allowlist"))
                .hint("use `matches: [{paths: [{type: prefix, value: /api/}]}]`"));
        }
        self.check_keys(entries, &KEYS, base, &[])?;
        let Some((_, host_node)) = entries.iter().find(|(k, _)| k.name == "host") else {
            return Err(self
                .doc
                .error(node.pos, 1, format!("`{base}` has no `host`"))
                .key(join(base, "host"))
                .hint("every route names the exact host it allows, e.g. `host: api.github.com`"));
        };
        let host_path = join(base, "host");
        let raw_host = self.non_empty_string(host_node, &host_path)?;
        let (host, port) = parse_route_host(&raw_host).map_err(|hint| {
            self.doc
                .value_error(host_node, format!("`{host_path}` is `{raw_host}`, which is not a host"))
                .key(host_path.clone())
                .hint(hint)
        })?;
        let mut route = RouteSpec {
            host,
            port,
            auth: None,
            matches: Vec::new(),
            dlp: DlpSpec::default(),
            origin: self.doc.origin(host_node.pos),
        };
        for (key, value) in entries {
            let path = join(base, &key.name);
            match key.name.as_str() {
                "auth" => route.auth = Some(self.auth(value, &path)?),
                "matches" => {
                    for (i, m) in self.seq(value, &path)?.iter().enumerate() {
                        route.matches.push(self.match_entry(m, &format!("{path}[{i}]"))?);
                    }
                }
                "dlp" => route.dlp = self.dlp(value, &path)?,
                _ => {}
            }
        }
        Ok(route)
    }

    fn auth(&self, node: &Node, base: &str) -> Result<AuthSpec> {
        let entries = self.map(node, base)?;
        self.check_keys(entries, &["scheme", "token_ref", "header"], base, &[])?;
        let mut scheme = None;
        let mut token_ref = None;
        let mut header = None;
        for (key, value) in entries {
            let path = join(base, &key.name);
            let s = self.non_empty_string(value, &path)?;
            match key.name.as_str() {
                "scheme" => {
                    if !s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)) {
                        return Err(self
                            .doc
                            .value_error(value, format!("`{path}` is `{s}`, which is not an auth scheme"))
                            .key(path)
                            .hint("write the word that precedes the token, e.g. `Bearer` or `token`"));
                    }
                    scheme = Some(s);
                }
                "token_ref" => {
                    if !is_var_ref(&s) {
                        return Err(self
                            .doc
                            .error_hidden(value.pos, not_a_var_name(&path))
                            .key(path)
                            .hint("give the variable's name, not the token (e.g. `GITHUB_TOKEN`); the value is read at launch and held by the sidecar only"));
                    }
                    token_ref = Some(s);
                }
                "header" => {
                    if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                        return Err(self
                            .doc
                            .value_error(value, format!("`{path}` is `{s}`, which is not a header name"))
                            .key(path));
                    }
                    header = Some(s.to_ascii_lowercase());
                }
                _ => {}
            }
        }
        let Some(token_ref) = token_ref else {
            return Err(self
                .doc
                .error(node.pos, 1, format!("`{base}` has no `token_ref`"))
                .key(join(base, "token_ref"))
                .hint("name the host environment variable that holds the credential"));
        };
        let header = header.unwrap_or_else(|| "authorization".into());
        if scheme.is_none() && header == "authorization" {
            return Err(self
                .doc
                .error(node.pos, 1, format!("`{base}` has no `scheme`"))
                .key(join(base, "scheme"))
                .hint("set `scheme: Bearer` (or `token`), or `header:` for APIs that take a bare key"));
        }
        Ok(AuthSpec { header, scheme, token_ref })
    }

    fn match_entry(&self, node: &Node, base: &str) -> Result<MatchSpec> {
        let entries = self.map(node, base)?;
        self.check_keys(entries, &["paths", "methods", "headers"], base, &[])?;
        let mut spec = MatchSpec::default();
        for (key, value) in entries {
            let path = join(base, &key.name);
            let items = self.seq(value, &path)?;
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{path}[{i}]");
                match key.name.as_str() {
                    "paths" => spec.paths.push(self.path_match(item, &ip)?),
                    "methods" => {
                        let m = self.non_empty_string(item, &ip)?.to_ascii_uppercase();
                        const METHODS: [&str; 9] =
                            ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
                        if !METHODS.contains(&m.as_str()) {
                            let mut d = self
                                .doc
                                .value_error(item, format!("`{ip}` is `{m}`, which is not an HTTP method"))
                                .key(ip);
                            if let Some(s) = did_you_mean(&m, METHODS) {
                                d = d.hint(format!("did you mean `{s}`?"));
                            }
                            return Err(d);
                        }
                        spec.methods.push(m);
                    }
                    "headers" => spec.headers.push(self.header_match(item, &ip)?),
                    _ => {}
                }
            }
        }
        Ok(spec)
    }

    fn path_match(&self, node: &Node, base: &str) -> Result<PathMatch> {
        let entries = self.map(node, base)?;
        self.check_keys(entries, &["type", "value"], base, &[])?;
        let mut kind = PathMatchKind::Prefix;
        let mut value = None;
        for (key, v) in entries {
            let path = join(base, &key.name);
            if key.name == "type" {
                let t = self.non_empty_string(v, &path)?;
                kind = match t.as_str() {
                    "prefix" | "PathPrefix" => PathMatchKind::Prefix,
                    "exact" | "Exact" => PathMatchKind::Exact,
                    "regex" | "RegularExpression" => PathMatchKind::Regex,
                    _ => {
                        return Err(self
                            .doc
                            .value_error(v, format!("`{path}` is `{t}`, which is not a path match type"))
                            .key(path)
                            .hint("use `prefix`, `exact` or `regex`"));
                    }
                };
            } else {
                value = Some((self.non_empty_string(v, &path)?, v, path));
            }
        }
        let Some((value, vnode, vpath)) = value else {
            return Err(self.doc.error(node.pos, 1, format!("`{base}` has no `value`")).key(join(base, "value")));
        };
        match kind {
            PathMatchKind::Regex => {
                if let Err(e) = regex::Regex::new(&value) {
                    return Err(self
                        .doc
                        .value_error(vnode, format!("`{vpath}` is not a valid regular expression"))
                        .key(vpath)
                        .note(e.to_string().lines().last().unwrap_or_default().trim().to_owned()));
                }
            }
            _ if !value.starts_with('/') => {
                return Err(self
                    .doc
                    .value_error(vnode, format!("`{vpath}` is `{value}`, which does not start with `/`"))
                    .key(vpath)
                    .hint("paths are matched against the request path, e.g. `/api/v1/`"));
            }
            _ => {}
        }
        Ok(PathMatch { kind, value })
    }

    fn header_match(&self, node: &Node, base: &str) -> Result<HeaderMatch> {
        let entries = self.map(node, base)?;
        self.check_keys(entries, &["name", "value", "type"], base, &[])?;
        let mut name = None;
        let mut value = None;
        let mut kind = None;
        for (key, v) in entries {
            let path = join(base, &key.name);
            let s = self.string(v, &path)?;
            match key.name.as_str() {
                "name" => {
                    if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                        return Err(self
                            .doc
                            .value_error(v, format!("`{path}` is `{s}`, which is not a header name"))
                            .key(path));
                    }
                    name = Some(s.to_ascii_lowercase());
                }
                "value" => value = Some((s, v, path)),
                _ => {
                    kind = Some(match s.as_str() {
                        "exact" | "Exact" => HeaderMatchKind::Exact,
                        "regex" | "RegularExpression" => HeaderMatchKind::Regex,
                        "present" => HeaderMatchKind::Present,
                        _ => {
                            return Err(self
                                .doc
                                .value_error(v, format!("`{path}` is `{s}`, which is not a header match type"))
                                .key(path)
                                .hint("use `exact`, `regex` or `present`"));
                        }
                    });
                }
            }
        }
        let Some(name) = name else {
            return Err(self.doc.error(node.pos, 1, format!("`{base}` has no `name`")).key(join(base, "name")));
        };
        let kind = kind.unwrap_or(if value.is_some() { HeaderMatchKind::Exact } else { HeaderMatchKind::Present });
        if kind == HeaderMatchKind::Regex
            && let Some((v, vnode, vpath)) = &value
            && regex::Regex::new(v).is_err()
        {
            return Err(self
                .doc
                .value_error(vnode, format!("`{vpath}` is not a valid regular expression"))
                .key(vpath.clone()));
        }
        if kind != HeaderMatchKind::Present && value.is_none() {
            return Err(self
                .doc
                .error(node.pos, 1, format!("`{base}` has no `value`"))
                .key(join(base, "value"))
                .hint("give a `value`, or `type: present` to only require the header"));
        }
        Ok(HeaderMatch { name, kind, value: value.map(|(v, _, _)| v) })
    }

    fn dlp(&self, node: &Node, base: &str) -> Result<DlpSpec> {
        let entries = self.map(node, base)?;
        self.check_keys(entries, &["outbound_detectors", "inbound_detectors", "outbound_on_match"], base, &[])?;
        let mut spec = DlpSpec::default();
        for (key, value) in entries {
            let path = join(base, &key.name);
            match key.name.as_str() {
                "outbound_detectors" => {
                    spec.outbound_detectors = Some(self.detectors(
                        value,
                        &path,
                        &[
                            ("token_patterns", OutboundDetector::TokenPatterns),
                            ("known_secrets", OutboundDetector::KnownSecrets),
                        ],
                    )?);
                }
                "inbound_detectors" => {
                    spec.inbound_detectors = Some(self.detectors(
                        value,
                        &path,
                        &[("naive_injection_detection", InboundDetector::NaiveInjectionDetection)],
                    )?);
                }
                _ => {
                    let s = self.non_empty_string(value, &path)?;
                    spec.outbound_on_match = Some(match s.as_str() {
                        "supervise" => OnMatch::Supervise,
                        "redact" => OnMatch::Redact,
                        "block" => OnMatch::Block,
                        _ => {
                            let mut d = self
                                .doc
                                .value_error(value, format!("`{path}` is `{s}`, which is not a match policy"))
                                .key(path);
                            d = d.hint(match did_you_mean(&s, ["supervise", "redact", "block"]) {
                                Some(m) => format!("did you mean `{m}`? (choose `supervise`, `redact` or `block`)"),
                                None => {
                                    "choose `supervise` (ask a human), `redact` (scrub and forward) or `block` (refuse)"
                                        .into()
                                }
                            });
                            return Err(d);
                        }
                    });
                }
            }
        }
        Ok(spec)
    }

    /// A detector list, or `false` for none (`true` means the defaults, i.e. not said).
    fn detectors<T: Copy + Ord>(&self, node: &Node, path: &str, known: &[(&str, T)]) -> Result<Vec<T>> {
        if let NodeKind::Scalar { text, quoted: false } = &node.kind
            && let Some(b) = is_bool(text)
        {
            return Ok(if b { known.iter().map(|(_, d)| *d).collect() } else { Vec::new() });
        }
        let mut out = Vec::new();
        for (i, item) in self.seq(node, path)?.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let s = self.non_empty_string(item, &ip)?;
            let Some((_, d)) = known.iter().find(|(n, _)| *n == s) else {
                let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                let mut d = self.doc.value_error(item, format!("`{ip}` is `{s}`, which is not a detector")).key(ip);
                d = d.hint(match did_you_mean(&s, names.iter().copied()) {
                    Some(m) => format!("did you mean `{m}`?"),
                    None => format!("known detectors here: {}; or `false` for none", names.join(", ")),
                });
                return Err(d);
            };
            if !out.contains(d) {
                out.push(*d);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The parsed parts of an agent file (the spec is assembled by the loader, which knows the source).
#[derive(Debug, Clone, Default)]
pub struct AgentFile {
    pub bottles: Vec<Sourced<String>>,
    pub skills: Vec<(Sourced<String>, crate::yaml::Pos)>,
    pub git_user: GitUserSpec,
}

impl Reader<'_> {
    /// Converts an agent's frontmatter. `from_repo` agents get a pointed refusal for bottle keys.
    pub fn agent(&self, root: &Node, from_repo: bool) -> Result<AgentFile> {
        let entries = self.map(root, "frontmatter")?;
        for (key, _) in entries {
            if BOTTLE_ONLY_KEYS.contains(&key.name.as_str()) {
                let d = self
                    .doc
                    .key_error(key, format!("`{}` is a bottle key and cannot be set in {}", key.name, self.what()))
                    .key(key.name.clone());
                return Err(if from_repo {
                    d.hint("a repository's agents cannot define bottles: credentials, routes and remotes come only from `$BOT_BOTTLE_HOME/bottles/`; reference a bottle with `bottle: <name>` instead")
                } else {
                    d.hint(
                        "put it in a bottle under `$BOT_BOTTLE_HOME/bottles/` and reference it with `bottle: <name>`",
                    )
                });
            }
        }
        self.check_keys(entries, &AGENT_KEYS, "", &CLAUDE_SUBAGENT_KEYS)?;
        let mut file = AgentFile::default();
        for (key, value) in entries {
            match key.name.as_str() {
                "bottle" => {
                    for (name, node) in self.string_or_list(value, "bottle")? {
                        if !is_kebab(&name) {
                            return Err(self
                                .doc
                                .value_error(node, format!("`bottle` names `{name}`, which is not a valid bottle name"))
                                .key("bottle")
                                .hint("bottle names are file stems: lowercase letters, digits and `-`"));
                        }
                        file.bottles.push(Sourced::new(name, self.doc.origin(node.pos)));
                    }
                }
                "skills" => {
                    for (i, item) in self.seq(value, "skills")?.iter().enumerate() {
                        let path = format!("skills[{i}]");
                        let name = self.non_empty_string(item, &path)?;
                        if !is_kebab(&name) {
                            return Err(self
                                .doc
                                .value_error(item, format!("`{path}` is `{name}`, which is not a skill name"))
                                .key(path)
                                .hint("skill names are kebab-case directory names under `~/.claude/skills/`"));
                        }
                        file.skills.push((Sourced::new(name, self.doc.origin(item.pos)), item.pos));
                    }
                }
                "git-gate" => file.git_user = self.git_gate(value, false)?.0,
                _ => {}
            }
        }
        Ok(file)
    }
}

fn scalar_text(node: &Node) -> String {
    match &node.kind {
        NodeKind::Scalar { text, .. } => format!("`{text}`"),
        _ => node.type_name().to_owned(),
    }
}

fn to_json(node: &Node) -> serde_json::Value {
    match &node.kind {
        NodeKind::Null => serde_json::Value::Null,
        NodeKind::Scalar { text, quoted } => {
            if !quoted {
                if let Some(b) = is_bool(text) {
                    return b.into();
                }
                if let Ok(n) = text.parse::<i64>() {
                    return n.into();
                }
                if let Ok(f) = text.parse::<f64>()
                    && let Some(n) = serde_json::Number::from_f64(f)
                {
                    return n.into();
                }
            }
            text.clone().into()
        }
        NodeKind::Seq(items) => items.iter().map(to_json).collect(),
        NodeKind::Map(entries) => entries.iter().map(|(k, v)| (k.name.clone(), to_json(v))).collect(),
    }
}

/// `ssh://[user@]host[:port]/path` or scp-like `user@host:path`.
fn is_ssh_url(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("ssh://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host.split(':').next().unwrap_or_default();
        return !host.is_empty() && !path.is_empty();
    }
    if url.contains("://") {
        return false;
    }
    match url.split_once(':') {
        Some((user_host, path)) => {
            let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
            !host.is_empty() && !path.is_empty() && !user_host.contains('/')
        }
        None => false,
    }
}

/// A known_hosts-style line: optional host patterns, then `<type> <base64>`, optional comment.
fn is_host_key(line: &str) -> bool {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let is_type = |t: &str| {
        t.starts_with("ssh-") || t.starts_with("ecdsa-sha2-") || t.starts_with("sk-ssh-") || t.starts_with("sk-ecdsa-")
    };
    let is_b64 =
        |s: &str| s.len() >= 16 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    parts.windows(2).take(2).any(|w| is_type(w[0]) && is_b64(w[1]))
}

/// Validates a DNS host name (lowercase input) or IP literal.
fn is_hostname(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        })
}

/// Splits `host[:port]` (or `[v6]:port`) and validates both; `Err` carries a hint.
pub fn parse_route_host(raw: &str) -> std::result::Result<(String, Option<u16>), String> {
    let s = raw.trim().to_ascii_lowercase();
    if s.contains("://") {
        return Err("write only the host name (e.g. `api.github.com`), without a scheme or path".into());
    }
    if s.contains('/') || s.contains('?') {
        return Err("write only the host name; restrict paths with `matches: [{paths: …}]`".into());
    }
    if s.contains('*') {
        return Err("routes name exact hosts, not patterns: list each host as its own route".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("close the IPv6 literal with `]`")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("write `[v6-address]:port`".into()),
        };
        (h.to_owned(), port)
    } else if s.matches(':').count() > 1 {
        (s.clone(), None)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.clone(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("`{p}` is not a port (1–65535)")),
        },
    };
    if !is_hostname(&host) {
        return Err("use a DNS name (letters, digits, `-`, dots) or an IP literal".into());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls() {
        for ok in ["ssh://git@example.com/o/r.git", "ssh://git@example.com:2222/o/r.git", "git@example.com:o/r.git"] {
            assert!(is_ssh_url(ok), "{ok}");
        }
        for bad in ["https://example.com/o/r.git", "example.com", "ssh://example.com", "/local/path"] {
            assert!(!is_ssh_url(bad), "{bad}");
        }
    }

    #[test]
    fn route_hosts() {
        assert_eq!(parse_route_host("API.GitHub.com"), Ok(("api.github.com".into(), None)));
        assert_eq!(parse_route_host("example.com:8443"), Ok(("example.com".into(), Some(8443))));
        assert_eq!(parse_route_host("[::1]:443"), Ok(("::1".into(), Some(443))));
        assert_eq!(parse_route_host("10.0.0.1"), Ok(("10.0.0.1".into(), None)));
        for bad in ["https://x.com", "x.com/api", "*.x.com", "x.com:0", "x.com:99999", "bad host", "-x.com", "a..b"] {
            assert!(parse_route_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_keys() {
        assert!(is_host_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"));
        assert!(is_host_key(
            "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        ));
        assert!(!is_host_key("SHA256:abcdef"));
        assert!(!is_host_key("ssh-ed25519"));
    }
}
