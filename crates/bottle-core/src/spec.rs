//! Resolved manifests: what an agent and its merged bottle chain declare, with the file and line that
//! set every value (its provenance).
//!
//! `bottle-manifest` produces these from files; the plan consumes them. One [`BottleSpec`] type serves
//! both a single file and a merged chain, because merging is just folding specs left to right.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::diag::SourceLocation;

/// Which kind of manifest set a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    Bottle,
    Agent,
    /// A provider template (`provider.toml`): the routes and environment a provider brings.
    Provider,
}

impl fmt::Display for ManifestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bottle => "bottle",
            Self::Agent => "agent",
            Self::Provider => "provider",
        })
    }
}

/// Where a value was set: which manifest, which file, which line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub kind: ManifestKind,
    pub name: String,
    #[serde(flatten)]
    pub location: SourceLocation,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}` at {}:{}", self.kind, self.name, self.location.path.display(), self.location.line)
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    #[serde(rename = "from")]
    pub origin: Origin,
}

impl<T> Sourced<T> {
    pub fn new(value: T, origin: Origin) -> Self {
        Self { value, origin }
    }
}

/// An `env` entry's right-hand side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EnvValue {
    /// Given verbatim to the agent.
    Literal { value: String },
    /// `?` or `?message`: asked for on the terminal at launch; a secret.
    Prompt { message: Option<String> },
    /// `${VAR}`: copied from the host environment at launch; a secret.
    HostVar { var: String },
}

impl EnvValue {
    pub fn is_secret(&self) -> bool {
        !matches!(self, Self::Literal { .. })
    }

    /// How the value is written in a manifest (never a secret's value, which a manifest cannot hold).
    pub fn manifest_form(&self) -> String {
        match self {
            Self::Literal { value } => value.clone(),
            Self::Prompt { message: None } => "?".into(),
            Self::Prompt { message: Some(m) } => format!("?{m}"),
            Self::HostVar { var } => format!("${{{var}}}"),
        }
    }
}

/// `agent_provider`: which agent CLI runs and how it authenticates. Merged per field, last wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProviderSpec {
    pub template: Option<Sourced<String>>,
    pub dockerfile: Option<Sourced<PathBuf>>,
    pub auth_token: Option<Sourced<String>>,
    pub forward_host_credentials: Option<Sourced<bool>>,
    pub settings: Option<Sourced<serde_json::Value>>,
}

/// `git-gate.user`: the commit identity, merged per field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GitUserSpec {
    pub name: Option<Sourced<String>>,
    pub email: Option<Sourced<String>>,
}

impl GitUserSpec {
    /// Overlays `other` on `self`, field by field.
    pub fn overlay(&mut self, other: &GitUserSpec) {
        if other.name.is_some() {
            self.name.clone_from(&other.name);
        }
        if other.email.is_some() {
            self.email.clone_from(&other.email);
        }
    }
}

/// How git-gate authenticates to a repo's upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RepoKey {
    /// A private key file on the host (`identity`).
    Identity { path: String },
    /// A deploy key minted per launch through the forge's API (`provisioned_key`).
    Provisioned { provider: String, token_ref: String },
}

/// One `git-gate.repos.<name>` entry. Merged per field across the chain, later wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GitRepoSpec {
    pub url: Option<Sourced<String>>,
    pub key: Option<Sourced<RepoKey>>,
    pub host_key: Option<Sourced<String>>,
    pub push_refs: Option<Sourced<Vec<String>>>,
    /// The last place that declared this repo; errors about the merged entry point here.
    pub declared_at: Option<Origin>,
}

impl GitRepoSpec {
    pub fn overlay(&mut self, other: &GitRepoSpec) {
        macro_rules! take {
            ($($f:ident),*) => {$( if other.$f.is_some() { self.$f.clone_from(&other.$f); } )*};
        }
        take!(url, key, host_key, push_refs, declared_at);
    }
}

/// `egress.routes[].auth.scheme` and where the credential goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthSpec {
    /// Header the credential is written to (default `authorization`).
    pub header: String,
    /// Scheme word before the token (`Bearer`, `token`, …); absent for bare-key headers.
    pub scheme: Option<String>,
    /// Host environment variable holding the real credential.
    pub token_ref: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathMatchKind {
    Prefix,
    Exact,
    Regex,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathMatch {
    #[serde(rename = "type")]
    pub kind: PathMatchKind,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderMatchKind {
    Exact,
    Regex,
    Present,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderMatch {
    /// Lowercased header name.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: HeaderMatchKind,
    pub value: Option<String>,
}

/// One `matches` entry: every condition present must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MatchSpec {
    pub paths: Vec<PathMatch>,
    /// Uppercased.
    pub methods: Vec<String>,
    pub headers: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundDetector {
    TokenPatterns,
    KnownSecrets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundDetector {
    NaiveInjectionDetection,
}

/// What egress does when outbound DLP finds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMatch {
    /// Hold the request and ask a human.
    Supervise,
    /// Scrub the match, re-scan, forward.
    Redact,
    /// Refuse with 403.
    Block,
}

/// A route's DLP settings as written; `None` means "not said", which resolves to the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DlpSpec {
    pub outbound_detectors: Option<Vec<OutboundDetector>>,
    pub inbound_detectors: Option<Vec<InboundDetector>>,
    pub outbound_on_match: Option<OnMatch>,
}

/// One `egress.routes[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteSpec {
    /// Lowercased host name or IP literal.
    pub host: String,
    /// Explicit port, when the manifest wrote `host:port`.
    pub port: Option<u16>,
    pub auth: Option<AuthSpec>,
    pub matches: Vec<MatchSpec>,
    pub dlp: DlpSpec,
    #[serde(rename = "from")]
    pub origin: Origin,
}

impl RouteSpec {
    /// The identity used for "same host → later wins": host plus explicit port.
    pub fn key(&self) -> (String, Option<u16>) {
        (self.host.clone(), self.port)
    }
}

/// The `egress` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EgressSpec {
    pub log: Option<Sourced<u8>>,
    pub routes: Vec<RouteSpec>,
    /// Extra CA bundle trusted for upstream TLS (host path).
    pub upstream_ca: Option<Sourced<String>>,
    /// Static host entries for upstreams DNS cannot resolve.
    pub hosts: BTreeMap<String, Sourced<IpAddr>>,
}

/// A bottle: one file, or a merged chain of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BottleSpec {
    pub env: BTreeMap<String, Sourced<EnvValue>>,
    pub provider: ProviderSpec,
    pub git_user: GitUserSpec,
    pub git_repos: BTreeMap<String, GitRepoSpec>,
    pub egress: EgressSpec,
}

impl BottleSpec {
    /// Merges `child` on top of `self` with the rules of the manifest format: env per key, git user
    /// per field, repos per name then per field, routes concatenated with a later route replacing an
    /// earlier one for the same host, scalars last-wins.
    pub fn merge(&mut self, child: &BottleSpec) {
        for (k, v) in &child.env {
            self.env.insert(k.clone(), v.clone());
        }
        let p = &child.provider;
        macro_rules! take {
            ($dst:expr, $src:expr, $($f:ident),*) => {$( if $src.$f.is_some() { $dst.$f.clone_from(&$src.$f); } )*};
        }
        take!(self.provider, p, template, dockerfile, auth_token, forward_host_credentials, settings);
        self.git_user.overlay(&child.git_user);
        for (name, repo) in &child.git_repos {
            self.git_repos.entry(name.clone()).or_default().overlay(repo);
        }
        for route in &child.egress.routes {
            self.egress.routes.retain(|r| r.key() != route.key());
            self.egress.routes.push(route.clone());
        }
        take!(self.egress, child.egress, log, upstream_ca);
        for (host, ip) in &child.egress.hosts {
            self.egress.hosts.insert(host.clone(), ip.clone());
        }
    }
}

/// Where an agent file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentSource {
    /// `$BOT_BOTTLE_HOME/agents/`.
    Home,
    /// `./.bot-bottle/agents/` of the current directory.
    Repo,
}

/// An agent manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentSpec {
    pub name: String,
    pub source: AgentSource,
    pub path: PathBuf,
    /// The agent's default bottle chain (`bottle:`), in order.
    pub bottles: Vec<Sourced<String>>,
    pub skills: Vec<Sourced<String>>,
    pub git_user: GitUserSpec,
    /// The Markdown body: the system prompt.
    pub prompt: String,
}
