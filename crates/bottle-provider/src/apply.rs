//! Applying a provider template to a launch plan: its routes (with the credential and the
//! placeholder), its environment, its credential's secret slot and its skills directory. Pure, like
//! the plan: the host facts it needs arrive as data and no secret value is ever read here.

use std::collections::BTreeSet;
use std::path::PathBuf;

use bottle_core::Diagnostic;
use bottle_core::plan::{
    DlpPlan, EGRESS_PORT, EnvEntry, GUEST_CA_PATH, GUEST_HOME, LaunchPlan, PlaceholderPlan, RouteAuthPlan, RoutePlan,
    SUPERVISE_PORT, SecretSlot, SecretSource,
};
use bottle_core::secret::redacted;
use bottle_core::spec::{InboundDetector, ManifestKind, OnMatch, Origin, OutboundDetector};

use crate::schema::CredentialSource;
use crate::{Provider, Vars};

/// What applying a template needs to know about the host.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    /// Names of the host variables that are set and non-empty.
    pub env_set: BTreeSet<String>,
    /// The host's `~/.codex/auth.json`.
    pub codex_auth: PathBuf,
    /// Whether that file exists.
    pub codex_auth_exists: bool,
}

/// The secret slot name of the Codex login's access token.
pub const CODEX_SLOT: &str = "CODEX_ACCESS_TOKEN";

/// The variables of `provider`'s template for the bottle `plan` describes.
pub fn vars(provider: &Provider, plan: &LaunchPlan) -> Vars {
    Vars {
        home: GUEST_HOME.to_owned(),
        workdir: plan.workspace.as_ref().map_or_else(|| GUEST_HOME.to_owned(), |w| w.dest.clone()),
        slug: plan.slug.to_string(),
        label: plan.label.as_ref().map_or_else(|| plan.slug.to_string(), ToString::to_string),
        color: plan.color.map(|c| c.to_string()).unwrap_or_default(),
        prompt_file: plan.agent.prompt.guest_path.clone(),
        mcp_url: format!("http://{}:{SUPERVISE_PORT}/mcp", plan.ports.host),
        placeholder: provider.template.credential.as_ref().map(|c| c.placeholder.clone()).unwrap_or_default(),
        proxy_url: format!("http://{}:{EGRESS_PORT}", plan.ports.host),
        ca_file: GUEST_CA_PATH.to_owned(),
        settings: plan.provider.settings.clone(),
    }
}

/// Adds `provider`'s routes, environment, credential slot and skills directory to `plan`.
pub fn apply(provider: &Provider, plan: &mut LaunchPlan, host: &HostView) -> Result<(), Diagnostic> {
    let t = &provider.template;
    let origin = Origin { kind: ManifestKind::Provider, name: provider.name.clone(), location: provider.location() };
    let fail = |message: String, key: &str, hint: &str| {
        Diagnostic::new(message).at(provider.location()).key(key.to_owned()).hint(hint.to_owned())
    };

    // The credential: which secret slot the provider's routes inject.
    let slot = match &t.credential {
        None => None,
        Some(c) => match c.source {
            CredentialSource::AuthToken => {
                let var = plan.provider.auth_token_slot.clone().or_else(|| c.default_env.clone()).ok_or_else(|| {
                    fail(
                        format!("provider `{}` needs a credential, and the bottle names none", provider.name),
                        "agent_provider.auth_token",
                        "set `agent_provider.auth_token: HOST_VAR` in the bottle (the host variable holding the token)",
                    )
                })?;
                add_slot(
                    plan,
                    SecretSource::HostEnv { var: var.clone() },
                    &var,
                    host.env_set.contains(&var),
                    &provider.name,
                );
                Some(var)
            }
            CredentialSource::CodexHostAuth => {
                if plan.provider.forward_host_credentials {
                    let source = SecretSource::CodexAuth { path: host.codex_auth.clone() };
                    add_slot(plan, source, CODEX_SLOT, host.codex_auth_exists, &provider.name);
                    if !host.codex_auth_exists {
                        plan.warnings.push(format!(
                            "`{}` does not exist; run `codex login` on this machine before launching",
                            host.codex_auth.display()
                        ));
                    }
                    Some(CODEX_SLOT.to_owned())
                } else {
                    None
                }
            }
        },
    };
    if plan.provider.auth_token_slot.is_none() {
        plan.provider.auth_token_slot.clone_from(&slot);
        plan.provider.auth_token = slot.as_deref().map(redacted);
    }

    // Routes: the provider's win a host collision (its credential must reach its API).
    for r in &t.routes {
        let auth = match (&r.auth, &slot) {
            (Some(a), Some(slot)) => Some((a, slot)),
            (Some(_), None) => continue,
            (None, _) => None,
        };
        if let Some(i) = plan.egress.routes.iter().position(|m| m.host == r.host && m.port.is_none()) {
            let replaced = plan.egress.routes.remove(i);
            plan.warnings.push(format!(
                "route `{}` from {} is replaced by provider `{}`'s route",
                r.host, replaced.from, provider.name
            ));
        }
        plan.egress.routes.push(RoutePlan {
            host: r.host.clone(),
            port: None,
            auth: auth.map(|(a, slot)| RouteAuthPlan {
                header: a.header.clone(),
                scheme: a.scheme.clone(),
                token_slot: slot.clone(),
                token: redacted(slot),
            }),
            placeholder: match (auth, &t.credential) {
                (Some((a, _)), Some(c)) => {
                    Some(PlaceholderPlan { header: a.header.clone(), value: c.placeholder.clone() })
                }
                _ => None,
            },
            matches: Vec::new(),
            // The provider's API carries whole conversations; a token-looking string the agent read
            // in a file is scrubbed rather than holding every request for a human.
            dlp: DlpPlan {
                outbound_detectors: vec![OutboundDetector::TokenPatterns, OutboundDetector::KnownSecrets],
                inbound_detectors: vec![InboundDetector::NaiveInjectionDetection],
                outbound_on_match: OnMatch::Redact,
            },
            from: origin.clone(),
        });
        if let Some((_, slot)) = auth
            && let Some(s) = plan.secret_slots.iter_mut().find(|s| &s.name == slot && !s.visible_to_agent)
        {
            let user = format!("egress:{}", r.host);
            if !s.used_by.contains(&user) {
                s.used_by.push(user);
            }
        }
    }

    // Environment: the provider's first, the manifest's after it (a manifest may change a
    // provider default), except where the provider puts its placeholder.
    let vars = vars(provider, plan);
    let mut env = Vec::new();
    for (name, value) in crate::render::env(t, &provider.name, &provider.path, &vars)? {
        let carries_placeholder = t.env.get(&name).is_some_and(|v| v.contains("{{placeholder}}"));
        if let Some(m) = plan.env.iter().find(|e| e.name == name && e.from != "bot-bottle") {
            if carries_placeholder {
                return Err(Diagnostic::new(format!(
                    "env `{name}` holds provider `{}`'s placeholder and cannot be set by a bottle",
                    provider.name
                ))
                .key(format!("env.{name}"))
                .note(format!("set by {}", m.from))
                .hint("the real credential goes in `agent_provider.auth_token` (a host variable); egress injects it"));
            }
            continue;
        }
        env.push(EnvEntry { name, value, secret: false, from: format!("provider:{}", provider.name) });
    }
    env.append(&mut plan.env);
    plan.env = env;

    // Skills go where this CLI reads them.
    if !plan.agent.skills.is_empty() {
        let Some(dir) = &t.skills_dir else {
            return Err(Diagnostic::new(format!(
                "agent `{}` lists skills, and provider `{}` has no skills directory",
                plan.agent.name, provider.name
            ))
            .key("skills")
            .hint("remove `skills:` from the agent, or pick a provider with `skills_dir`"));
        };
        for s in &mut plan.agent.skills {
            s.dest = format!("{GUEST_HOME}/{}/{}", dir.trim_end_matches('/'), s.name);
        }
    }
    Ok(())
}

fn add_slot(plan: &mut LaunchPlan, source: SecretSource, name: &str, available: bool, provider: &str) {
    let user = format!("provider:{provider}");
    if let Some(s) = plan.secret_slots.iter_mut().find(|s| s.name == name && !s.visible_to_agent) {
        if !s.used_by.contains(&user) {
            s.used_by.push(user);
        }
        return;
    }
    if !available && matches!(source, SecretSource::HostEnv { .. }) {
        plan.warnings.push(format!("host variable `{name}` is not set; a launch needs it for {user}"));
    }
    plan.secret_slots.push(SecretSlot {
        name: name.to_owned(),
        source,
        used_by: vec![user],
        visible_to_agent: false,
        available,
    });
}
