//! The launch plan: everything a launch will do, resolved without side effects.
//!
//! [`resolve`] is a pure function of (agent, merged bottle chain, options, host facts). It reads no
//! environment and touches no file; the host facts it needs arrive as data, and secret *values* never
//! arrive at all — only the names of the variables that are set — so a plan cannot contain one.
//! `start --dry-run` prints this; a launch executes it; cleanup undoes it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::diag::Diagnostic;
use crate::ids::{BackendKind, Color, Label, ManifestName, Slug};
use crate::secret::redacted;
use crate::spec::{
    AgentSource, AgentSpec, AuthSpec, BottleSpec, EnvValue, GitUserSpec, InboundDetector, MatchSpec, OnMatch, Origin,
    OutboundDetector, RepoKey, Sourced,
};

/// Version of the plan's JSON shape; bumped on incompatible changes.
pub const PLAN_SCHEMA: u32 = 1;

/// Ports the agent reaches its sidecar's services on, inside the bottle (127.0.0.1).
pub const EGRESS_PORT: u16 = 9099;
pub const GIT_GATE_PORT: u16 = 9420;
pub const SUPERVISE_PORT: u16 = 9100;
/// The sidecar's control API, published to the host's loopback only.
pub const CONTROL_PORT: u16 = 9200;

/// The agent's home inside every bottle.
pub const GUEST_HOME: &str = "/home/node";
/// Where `start --cwd` copies the working directory, and where the agent then starts.
pub const GUEST_WORKSPACE: &str = "/home/node/workspace";
/// Where the bottle CA is installed in the agent.
pub const GUEST_CA_PATH: &str = "/usr/local/share/ca-certificates/bot-bottle-ca.crt";
/// Where the system prompt is written in the agent.
pub const GUEST_PROMPT_PATH: &str = "/home/node/.bot-bottle-prompt.md";

/// Provider templates that ship inside the binary.
pub const BUILTIN_TEMPLATES: [&str; 4] = ["claude", "codex", "pi", "shell"];
/// The template used when no bottle names one.
pub const DEFAULT_TEMPLATE: &str = "claude";

/// What the host looks like, as far as planning needs to know.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// `$BOT_BOTTLE_HOME`.
    pub bot_home: PathBuf,
    /// The invoking user's home, for `~/` in manifest paths.
    pub user_home: PathBuf,
    /// Names (never values) of the host environment variables that are set and non-empty.
    pub env_set: BTreeSet<String>,
    /// Where skills live on the host (`~/.claude/skills`).
    pub skills_dir: PathBuf,
    /// User plugin templates found under `$BOT_BOTTLE_HOME/contrib/`.
    pub plugin_templates: BTreeSet<String>,
}

/// The operator's choices for this launch.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub backend: BackendKind,
    pub label: Option<Label>,
    pub color: Option<Color>,
    /// Seeds the slug suffix; the CLI draws it from the OS, tests fix it.
    pub slug_seed: u64,
    /// `--headless --prompt TEXT`.
    pub headless_prompt: Option<String>,
}

/// The fully resolved launch.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchPlan {
    pub schema: u32,
    pub slug: Slug,
    pub label: Option<Label>,
    pub color: Option<Color>,
    pub backend: BackendKind,
    pub agent: AgentPlan,
    /// Bottles in the order they were folded (parents first, the last one wins).
    pub bottles: Vec<String>,
    pub provider: ProviderPlan,
    pub images: ImagePlan,
    /// The agent's environment: literals as is, secrets as `«NAME»`.
    pub env: Vec<EnvEntry>,
    /// Every secret the launch will need, by name only.
    pub secret_slots: Vec<SecretSlot>,
    pub egress: EgressPlan,
    pub git_gate: GitGatePlan,
    pub state_dir: PathBuf,
    pub resources: ResourcePlan,
    pub ports: PortPlan,
    pub headless: Option<HeadlessPlan>,
    /// Things that will stop a real launch but not a dry run (e.g. an unset token variable).
    pub warnings: Vec<String>,
    /// `start --cwd`: the host directory copied in as the agent's working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspacePlan>,
}

/// A host directory copied (never mounted) into the bottle; measured by the CLI, which alone
/// reads the host's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspacePlan {
    pub source: PathBuf,
    pub dest: String,
    /// Regular files, directories and symbolic links copied.
    pub entries: u64,
    /// The regular files' bytes.
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentPlan {
    pub name: String,
    pub source: AgentSource,
    pub path: PathBuf,
    pub skills: Vec<SkillPlan>,
    pub prompt: PromptPlan,
    pub git_user: GitIdentityPlan,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkillPlan {
    pub name: String,
    pub source: PathBuf,
    pub dest: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptPlan {
    pub bytes: usize,
    pub host_path: PathBuf,
    pub guest_path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GitIdentityPlan {
    pub name: Option<ProvenancedValue>,
    pub email: Option<ProvenancedValue>,
}

/// A value and the manifest that set it, rendered `value (agent|bottle)` by the preflight.
#[derive(Debug, Clone, Serialize)]
pub struct ProvenancedValue {
    pub value: String,
    pub from: Origin,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderPlan {
    pub template: String,
    pub builtin: bool,
    /// `built-in`, or the plugin's `provider.toml`.
    pub source: String,
    pub dockerfile: Option<PathBuf>,
    /// The secret slot holding the provider's credential, if it has one.
    pub auth_token_slot: Option<String>,
    /// The credential as the plan shows it: `«VAR»`.
    pub auth_token: Option<String>,
    pub forward_host_credentials: bool,
    pub settings: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImagePlan {
    pub agent: String,
    pub sidecar: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvEntry {
    pub name: String,
    pub value: String,
    pub secret: bool,
    /// `bot-bottle` for variables the launcher sets, otherwise the manifest's origin.
    pub from: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SecretSource {
    HostEnv {
        var: String,
    },
    Prompt {
        message: Option<String>,
    },
    /// The access token of the host's Codex login (`~/.codex/auth.json`), checked at launch.
    CodexAuth {
        path: PathBuf,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct SecretSlot {
    pub name: String,
    pub source: SecretSource,
    /// What consumes it: `env:NAME`, `egress:HOST`, `provider:TEMPLATE`, `git-gate:REPO`.
    pub used_by: Vec<String>,
    /// Whether the agent can see the value (env secrets) or only the sidecar holds it (credentials).
    pub visible_to_agent: bool,
    /// For host variables: whether it is set now. Prompts are answered at launch.
    pub available: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EgressPlan {
    pub log: u8,
    pub routes: Vec<RoutePlan>,
    pub upstream_ca: Option<PathBuf>,
    pub hosts: BTreeMap<String, IpAddr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoutePlan {
    pub host: String,
    pub port: Option<u16>,
    pub auth: Option<RouteAuthPlan>,
    /// A provider route's placeholder: what the agent holds in `header` instead of the credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<PlaceholderPlan>,
    pub matches: Vec<MatchSpec>,
    pub dlp: DlpPlan,
    pub from: Origin,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteAuthPlan {
    pub header: String,
    pub scheme: Option<String>,
    pub token_slot: String,
    /// The injected value as the plan shows it: `«VAR»`.
    pub token: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlaceholderPlan {
    pub header: String,
    /// Not secret: the stand-in the agent sends.
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DlpPlan {
    pub outbound_detectors: Vec<OutboundDetector>,
    pub inbound_detectors: Vec<InboundDetector>,
    pub outbound_on_match: OnMatch,
}

#[derive(Debug, Clone, Serialize)]
pub struct GitGatePlan {
    pub repos: Vec<GitRepoPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GitRepoPlan {
    pub name: String,
    pub url: String,
    /// What the agent's git config rewrites `url` to.
    pub gate_url: String,
    pub key: RepoKeyPlan,
    pub host_key: String,
    pub push_refs: Vec<String>,
    pub from: Origin,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RepoKeyPlan {
    Identity { path: PathBuf },
    Provisioned { provider: String, token_slot: String },
}

/// Names of everything the backend will create, all prefixed `bot-bottle-` so cleanup finds them.
#[derive(Debug, Clone, Serialize)]
pub struct ResourcePlan {
    pub agent: String,
    pub sidecar: String,
    pub network: String,
    pub socket_volume: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortPlan {
    /// The address the agent reaches its sidecar's services at: `127.0.0.1` where a relay or the
    /// bottle's own loopback carries them (docker, namespaces), the bundle's pinned IP where the
    /// agent is a VM next to it (smolmachines, see [`bundle_address`]).
    pub host: String,
    pub egress: u16,
    pub git_gate: u16,
    pub supervise: u16,
    pub control: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeadlessPlan {
    pub prompt_bytes: usize,
}

/// Infrastructure variables the launcher owns; a manifest may not set them, or it could point the
/// agent's traffic elsewhere or hide the bottle CA.
pub const RESERVED_ENV: [&str; 12] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// The infrastructure environment every bottle gets.
fn infrastructure_env(services: &str) -> Vec<(String, String)> {
    let proxy = format!("http://{services}:{EGRESS_PORT}");
    let no_proxy = "127.0.0.1,localhost,::1".to_owned();
    vec![
        ("HTTP_PROXY".into(), proxy.clone()),
        ("HTTPS_PROXY".into(), proxy.clone()),
        ("NO_PROXY".into(), no_proxy.clone()),
        ("http_proxy".into(), proxy.clone()),
        ("https_proxy".into(), proxy),
        ("no_proxy".into(), no_proxy),
        ("NODE_EXTRA_CA_CERTS".into(), GUEST_CA_PATH.into()),
        ("SSL_CERT_FILE".into(), "/etc/ssl/certs/ca-certificates.crt".into()),
        ("REQUESTS_CA_BUNDLE".into(), "/etc/ssl/certs/ca-certificates.crt".into()),
        ("GIT_SSL_CAINFO".into(), "/etc/ssl/certs/ca-certificates.crt".into()),
    ]
}

/// The pool smolmachines bundles take a /28 from (4096 subnets): a network of its own per bottle,
/// apart from the docker backend's pool so the two never compete for a subnet.
pub const BUNDLE_POOL: (u8, u8) = (10, 210);

/// Where a smolmachines bottle's sidecar bundle lives: a /28 of [`BUNDLE_POOL`] for its Docker
/// bridge, the bridge's gateway (the host) and the sidecar's pinned IP, the one address the VM's
/// allow-list admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BundleAddress {
    pub subnet: String,
    pub gateway: String,
    pub sidecar: String,
}

/// The `attempt`-th candidate [`BundleAddress`] for `slug`: the first is derived from the slug
/// alone (FNV-1a, stable across builds), later ones step through the pool when a subnet is taken.
pub fn bundle_address(slug: &str, attempt: u32) -> BundleAddress {
    let (a, b) = BUNDLE_POOL;
    let hash = slug.bytes().fold(0x811c_9dc5_u32, |h, byte| (h ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    let index = hash.wrapping_add(attempt.wrapping_mul(2_654_435_761)) % 4096;
    let (c, d) = (index / 16, (index % 16) * 16);
    BundleAddress {
        subnet: format!("{a}.{b}.{c}.{d}/28"),
        gateway: format!("{a}.{b}.{c}.{}", d + 1),
        sidecar: format!("{a}.{b}.{c}.{}", d + 2),
    }
}

/// The address the agent reaches the sidecar's services at on `backend` (see [`PortPlan::host`]).
fn services_host(backend: BackendKind, slug: &Slug) -> String {
    match backend {
        BackendKind::Smolmachines => bundle_address(slug.as_str(), 0).sidecar,
        BackendKind::Docker | BackendKind::Namespaces => "127.0.0.1".to_owned(),
    }
}

impl LaunchPlan {
    /// Points every agent-facing service address (proxy variables, git-gate URLs, [`PortPlan::host`])
    /// at `host`, for a launch whose bundle landed on another candidate address than the plan's.
    pub fn rebind_services(&mut self, host: &str) {
        let old = std::mem::replace(&mut self.ports.host, host.to_owned());
        if old == host {
            return;
        }
        let (from, to) = (format!("//{old}:"), format!("//{host}:"));
        for entry in &mut self.env {
            if entry.from == "bot-bottle" {
                entry.value = entry.value.replace(&from, &to);
            }
        }
        for repo in &mut self.git_gate.repos {
            repo.gate_url = repo.gate_url.replace(&from, &to);
        }
    }
}

/// Everything [`resolve`] needs.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub agent: &'a AgentSpec,
    /// The merged bottle chain.
    pub bottle: &'a BottleSpec,
    /// Bottle names in fold order.
    pub chain: &'a [String],
    pub options: &'a PlanOptions,
    pub host: &'a HostFacts,
}

/// Resolves a launch plan. Pure: same input, same plan.
pub fn resolve(input: PlanInput<'_>) -> Result<LaunchPlan, Diagnostic> {
    let PlanInput { agent, bottle, chain, options, host } = input;
    let agent_name = ManifestName::parse(&agent.name).map_err(|e| Diagnostic::new(e.message).hint(e.hint))?;
    let slug = match &options.label {
        Some(label) => Slug::from_label(label),
        None => Slug::generate(&agent_name, options.slug_seed),
    };
    let state_dir = host.bot_home.join("state").join(slug.as_str());
    let mut warnings = Vec::new();
    let mut slots = SlotTable::default();

    // Provider.
    let template = bottle.provider.template.as_ref().map_or(DEFAULT_TEMPLATE, |t| t.value.as_str()).to_owned();
    let builtin = BUILTIN_TEMPLATES.contains(&template.as_str());
    if !builtin && !host.plugin_templates.contains(&template) {
        let mut d = Diagnostic::new(format!("unknown provider template `{template}`")).key("agent_provider.template");
        if let Some(t) = &bottle.provider.template {
            d = d.at(t.origin.location.clone());
        }
        let plugin = host.bot_home.join("contrib").join(&template).join("provider.toml");
        return Err(d.hint(format!(
            "built-in templates are {}; a plugin needs `{}`",
            BUILTIN_TEMPLATES.join(", "),
            plugin.display()
        )));
    }
    let auth_token_slot = bottle.provider.auth_token.as_ref().map(|t| {
        slots.host_credential(&t.value, format!("provider:{template}"), host);
        t.value.clone()
    });

    // Env: manifest entries first, checked against what the launcher owns.
    let mut env = Vec::new();
    for (name, entry) in &bottle.env {
        if RESERVED_ENV.contains(&name.as_str()) {
            return Err(Diagnostic::new(format!("env `{name}` is set by bot-bottle and cannot be overridden"))
                .at(entry.origin.location.clone())
                .key(format!("env.{name}"))
                .hint("the agent's proxy and CA variables point at its sidecar; remove this entry"));
        }
        let value = match &entry.value {
            EnvValue::Literal { value } => value.clone(),
            EnvValue::HostVar { var } => {
                if !host.env_set.contains(var) {
                    return Err(Diagnostic::new(format!("env `{name}` reads host variable `{var}`, which is not set"))
                        .at(entry.origin.location.clone())
                        .key(format!("env.{name}"))
                        .hint(format!("export {var}=… before starting, or change the entry")));
                }
                slots.host_env_for_agent(var, format!("env:{name}"));
                redacted(var)
            }
            EnvValue::Prompt { message } => {
                slots.push(SecretSlot {
                    name: name.clone(),
                    source: SecretSource::Prompt { message: message.clone() },
                    used_by: vec![format!("env:{name}")],
                    visible_to_agent: true,
                    available: false,
                });
                if options.headless_prompt.is_some() {
                    warnings.push(format!("env `{name}` is asked for at launch, which a headless launch cannot do"));
                }
                redacted(name)
            }
        };
        env.push(EnvEntry {
            name: name.clone(),
            value,
            secret: entry.value.is_secret(),
            from: entry.origin.to_string(),
        });
    }
    let services = services_host(options.backend, &slug);
    for (name, value) in infrastructure_env(&services) {
        env.push(EnvEntry { name, value, secret: false, from: "bot-bottle".into() });
    }

    // Egress.
    let routes = bottle
        .egress
        .routes
        .iter()
        .map(|r| {
            let auth = r.auth.as_ref().map(|AuthSpec { header, scheme, token_ref }| {
                slots.host_credential(token_ref, format!("egress:{}", r.host), host);
                RouteAuthPlan {
                    header: header.clone(),
                    scheme: scheme.clone(),
                    token_slot: token_ref.clone(),
                    token: redacted(token_ref),
                }
            });
            RoutePlan {
                host: r.host.clone(),
                port: r.port,
                auth,
                placeholder: None,
                matches: r.matches.clone(),
                dlp: DlpPlan {
                    outbound_detectors: r
                        .dlp
                        .outbound_detectors
                        .clone()
                        .unwrap_or_else(|| vec![OutboundDetector::TokenPatterns, OutboundDetector::KnownSecrets]),
                    inbound_detectors: r
                        .dlp
                        .inbound_detectors
                        .clone()
                        .unwrap_or_else(|| vec![InboundDetector::NaiveInjectionDetection]),
                    outbound_on_match: r.dlp.outbound_on_match.unwrap_or(OnMatch::Supervise),
                },
                from: r.origin.clone(),
            }
        })
        .collect();
    let egress = EgressPlan {
        log: bottle.egress.log.as_ref().map_or(0, |l| l.value),
        routes,
        upstream_ca: bottle.egress.upstream_ca.as_ref().map(|p| expand_path(&p.value, &host.user_home, &p.origin)),
        hosts: bottle.egress.hosts.iter().map(|(h, ip)| (h.clone(), ip.value)).collect(),
    };

    // git-gate: the merged entries must be complete.
    let mut repos = Vec::new();
    for (name, repo) in &bottle.git_repos {
        let Some(declared) = repo.declared_at.clone() else {
            continue;
        };
        let incomplete = |what: &str, hint: &str| {
            Diagnostic::new(format!("git-gate repo `{name}` has no `{what}` after merging its bottle chain"))
                .at(declared.location.clone())
                .key(format!("git-gate.repos.{name}.{what}"))
                .hint(hint.to_owned())
        };
        let url = repo.url.as_ref().ok_or_else(|| {
            incomplete("url", "set `url: ssh://git@host/owner/repo.git` (or `git@host:owner/repo.git`)")
        })?;
        let host_key = repo.host_key.as_ref().ok_or_else(|| {
            incomplete(
                "host_key",
                "pin the upstream's SSH host key (e.g. the `ssh-ed25519 AAAA…` line from `ssh-keyscan`); there is no trust on first use",
            )
        })?;
        let key = match repo.key.as_ref().map(|k| &k.value) {
            Some(RepoKey::Identity { path }) => {
                RepoKeyPlan::Identity { path: expand_path(path, &host.user_home, &declared) }
            }
            Some(RepoKey::Provisioned { provider, token_ref }) => {
                slots.host_credential(token_ref, format!("git-gate:{name}"), host);
                RepoKeyPlan::Provisioned { provider: provider.clone(), token_slot: token_ref.clone() }
            }
            None => {
                return Err(incomplete(
                    "identity",
                    "give the path of the SSH private key for this upstream, or a `provisioned_key`",
                ));
            }
        };
        repos.push(GitRepoPlan {
            name: name.clone(),
            url: url.value.clone(),
            gate_url: format!("http://{services}:{GIT_GATE_PORT}/{name}.git"),
            key,
            host_key: host_key.value.clone(),
            push_refs: repo.push_refs.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
            from: declared,
        });
    }

    // Git identity: the bottle's, overlaid per field by the agent's.
    let mut git_user = bottle.git_user.clone();
    git_user.overlay(&agent.git_user);
    let provenanced = |v: &Option<Sourced<String>>| {
        v.as_ref().map(|s| ProvenancedValue { value: s.value.clone(), from: s.origin.clone() })
    };
    let GitUserSpec { name, email } = &git_user;

    let skills = agent
        .skills
        .iter()
        .map(|s| SkillPlan {
            name: s.value.clone(),
            source: host.skills_dir.join(&s.value),
            dest: format!("{GUEST_HOME}/.claude/skills/{}", s.value),
        })
        .collect();

    for slot in &slots.0 {
        if !slot.available && matches!(slot.source, SecretSource::HostEnv { .. }) {
            warnings.push(format!(
                "host variable `{}` is not set; a launch needs it for {}",
                slot.name,
                slot.used_by.join(", ")
            ));
        }
    }

    let version = env!("CARGO_PKG_VERSION");
    let slug_str = slug.as_str();
    Ok(LaunchPlan {
        schema: PLAN_SCHEMA,
        label: options.label.clone(),
        color: options.color,
        backend: options.backend,
        agent: AgentPlan {
            name: agent.name.clone(),
            source: agent.source,
            path: agent.path.clone(),
            skills,
            prompt: PromptPlan {
                bytes: agent.prompt.len(),
                host_path: state_dir.join("prompt.md"),
                guest_path: GUEST_PROMPT_PATH.into(),
            },
            git_user: GitIdentityPlan { name: provenanced(name), email: provenanced(email) },
        },
        bottles: chain.to_vec(),
        images: ImagePlan {
            agent: format!("bot-bottle-agent-{template}:{version}"),
            sidecar: format!("bot-bottle-sidecar:{version}"),
        },
        provider: ProviderPlan {
            source: if builtin {
                "built-in".to_owned()
            } else {
                host.bot_home.join("contrib").join(&template).join("provider.toml").display().to_string()
            },
            template,
            builtin,
            dockerfile: bottle
                .provider
                .dockerfile
                .as_ref()
                .map(|d| expand_path(&d.value.to_string_lossy(), &host.user_home, &d.origin)),
            auth_token: auth_token_slot.as_deref().map(redacted),
            auth_token_slot,
            forward_host_credentials: bottle.provider.forward_host_credentials.as_ref().is_some_and(|f| f.value),
            settings: bottle.provider.settings.as_ref().map(|s| s.value.clone()),
        },
        env,
        secret_slots: slots.0,
        egress,
        git_gate: GitGatePlan { repos },
        state_dir,
        resources: ResourcePlan {
            agent: format!("bot-bottle-{slug_str}"),
            sidecar: format!("bot-bottle-sidecars-{slug_str}"),
            network: format!("bot-bottle-net-{slug_str}"),
            socket_volume: format!("bot-bottle-sock-{slug_str}"),
        },
        ports: PortPlan {
            host: services,
            egress: EGRESS_PORT,
            git_gate: GIT_GATE_PORT,
            supervise: SUPERVISE_PORT,
            control: CONTROL_PORT,
        },
        headless: options.headless_prompt.as_ref().map(|p| HeadlessPlan { prompt_bytes: p.len() }),
        warnings,
        slug,
        workspace: None,
    })
}

/// Secret slots, one per name, accumulating their consumers.
#[derive(Default)]
struct SlotTable(Vec<SecretSlot>);

impl SlotTable {
    fn push(&mut self, slot: SecretSlot) {
        self.0.push(slot);
    }

    /// A host variable copied into the agent's environment.
    fn host_env_for_agent(&mut self, var: &str, used_by: String) {
        if let Some(existing) = self.0.iter_mut().find(|s| s.visible_to_agent && s.name == var) {
            existing.used_by.push(used_by);
            return;
        }
        self.0.push(SecretSlot {
            name: var.to_owned(),
            source: SecretSource::HostEnv { var: var.to_owned() },
            used_by: vec![used_by],
            visible_to_agent: true,
            available: true,
        });
    }

    /// A credential read from the host and held by the sidecar only.
    fn host_credential(&mut self, var: &str, used_by: String, host: &HostFacts) {
        if let Some(existing) = self.0.iter_mut().find(|s| !s.visible_to_agent && s.name == var) {
            if !existing.used_by.contains(&used_by) {
                existing.used_by.push(used_by);
            }
            return;
        }
        self.0.push(SecretSlot {
            name: var.to_owned(),
            source: SecretSource::HostEnv { var: var.to_owned() },
            used_by: vec![used_by],
            visible_to_agent: false,
            available: host.env_set.contains(var),
        });
    }
}

/// Expands `~/` against the user's home; a relative path is taken relative to the manifest that
/// wrote it, so a bottle can name files beside itself.
fn expand_path(path: &str, user_home: &std::path::Path, origin: &Origin) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        user_home.join(rest)
    } else if path == "~" {
        user_home.to_path_buf()
    } else {
        let p = PathBuf::from(path);
        if p.is_absolute() { p } else { origin.location.path.parent().map_or_else(|| p.clone(), |dir| dir.join(&p)) }
    }
}
