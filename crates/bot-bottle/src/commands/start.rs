//! `bot-bottle start <agent>`: resolve the launch plan; with `--dry-run` print it and create nothing,
//! otherwise launch it (`launch.rs`).

use std::fmt::Write as _;
use std::process::ExitCode;

use bottle_core::plan::{self, HostFacts, LaunchPlan, PlanInput, PlanOptions, RepoKeyPlan};
use bottle_core::spec::AgentSpec;
use bottle_core::{BackendKind, Color, Diagnostic, Label};

use crate::cli::{Format, GlobalArgs, StartArgs};
use crate::commands::{context, resolve_agent};
use crate::context::Context;
use crate::printer::Printer;

/// Test hook: fixes the slug suffix so plans are reproducible. Not a user setting.
const SEED_VAR: &str = "BOT_BOTTLE_SLUG_SEED";
// The other test hook, `BOT_BOTTLE_CONTROL_OVERRIDE` (`control::OVERRIDE_VAR`): `SLUG=HOST:PORT:TOKEN[,…]`
// names the control APIs the supervise commands talk to instead of asking the engine, so the
// interactive view is tested against a fake API without Docker. Not a user setting either.

pub fn run(global: &GlobalArgs, args: &StartArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ctx = context(global)?;
    // On a terminal, whatever the flags leave open is asked; `--dry-run`, `--yes` and
    // `--headless` never ask.
    let asked;
    let args = if !args.dry_run && !args.yes && !args.headless && crate::picker::tty::available() {
        match super::pick::complete(&ctx, args)? {
            Some(a) => {
                asked = a;
                &asked
            }
            None => {
                printer.step("cancelled: nothing was created");
                return Ok(ExitCode::from(crate::EXIT_FAILURE));
            }
        }
    } else {
        args
    };
    let (plan, agent, provider) = resolve_plan(&ctx, args)?;
    for w in &plan.warnings {
        printer.warn(w);
    }
    if !args.dry_run {
        return super::launch::run(&ctx, args, &plan, &agent, &provider, printer);
    }
    match args.format {
        Format::Json if plan.backend == BackendKind::Smolmachines => {
            let mut value = serde_json::to_value(&plan)?;
            value["smolmachines"] = super::launch::smolmachines_plan(&ctx, &plan, &provider)?;
            printer.json(&value)?;
        }
        Format::Json => printer.json(&plan)?,
        Format::Text => printer.out(&render(&plan, printer, true))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The launch plan with its provider template applied (routes, environment, credential, skills).
pub fn resolve_plan(
    ctx: &Context,
    args: &StartArgs,
) -> anyhow::Result<(LaunchPlan, AgentSpec, bottle_provider::Provider)> {
    let label = args
        .label
        .as_deref()
        .map(Label::parse)
        .transpose()
        .map_err(|e| Diagnostic::new(format!("--label: {}", e.message)).hint(e.hint))?;
    let color = args
        .color
        .as_deref()
        .map(Color::parse)
        .transpose()
        .map_err(|e| Diagnostic::new(format!("--color: {}", e.message)).hint(e.hint))?;
    let catalog = ctx.catalog()?;
    let agent_name = args.agent.as_deref().ok_or_else(|| {
        Diagnostic::new("no agent to start").hint(
            "name it: `bot-bottle start <AGENT>` (`bot-bottle info` lists the agents); on a terminal, \
             `start` without --dry-run, --yes or --headless lets you pick one",
        )
    })?;
    let (agent, bottles) = resolve_agent(&catalog, agent_name, &args.bottles)?;
    let seed = match std::env::var(SEED_VAR) {
        Ok(s) => s.parse().map_err(|_| Diagnostic::new(format!("`{SEED_VAR}` must be a whole number")))?,
        Err(_) => rand::random(),
    };
    let options = PlanOptions {
        backend: args.backend.map_or(BackendKind::Docker, Into::into),
        label,
        color,
        slug_seed: seed,
        headless_prompt: args.prompt.clone(),
    };
    let host = HostFacts {
        bot_home: ctx.home.root().to_path_buf(),
        user_home: ctx.user_home.clone(),
        env_set: Context::env_set(),
        skills_dir: ctx.skills_dir(),
        plugin_templates: ctx.home.plugin_templates().into_iter().collect(),
    };
    let mut plan = plan::resolve(PlanInput {
        agent: &agent,
        bottle: &bottles.spec,
        chain: &bottles.chain,
        options: &options,
        host: &host,
    })?;
    if args.cwd {
        let (workspace, warnings) = super::workspace::plan(&ctx.cwd, ctx.home.root())?;
        plan.workspace = Some(workspace);
        plan.warnings.extend(warnings);
    }
    let provider = super::provider::load_and_apply(&mut plan, &host.bot_home, &host.user_home, host.env_set)?;
    Ok((plan, agent, provider))
}

/// The preflight summary: what will be created and what the agent will be able to reach.
pub fn render(plan: &LaunchPlan, printer: &Printer, dry_run: bool) -> String {
    let mut s = String::new();
    let bold = |t: &str| printer.paint(t, "1");
    let _ = writeln!(s, "{} {}", bold("bottle"), plan.slug);
    let _ = writeln!(s, "  agent      {} ({})", plan.agent.name, plan.agent.path.display());
    let _ = writeln!(s, "  bottles    {}", plan.bottles.join(" → "));
    let _ = writeln!(s, "  backend    {}", plan.backend);
    let runtime = match plan.backend {
        BackendKind::Docker => "gVisor (`runsc`) when a probe shows it works here, else runc",
        BackendKind::Smolmachines => "a smolvm micro-VM",
        BackendKind::Namespaces => "Linux namespaces",
    };
    let _ = writeln!(s, "  runtime    {runtime}");
    let _ =
        writeln!(s, "  provider   {}{}", plan.provider.template, if plan.provider.builtin { "" } else { " (plugin)" });
    if let Some(label) = &plan.label {
        let colour = plan.color.map(|c| format!(" [{c}]")).unwrap_or_default();
        let _ = writeln!(s, "  label      {label}{colour}");
    }
    let skills: Vec<&str> = plan.agent.skills.iter().map(|k| k.name.as_str()).collect();
    let _ = writeln!(s, "  skills     {}", if skills.is_empty() { "none".into() } else { skills.join(", ") });
    let _ = writeln!(s, "  prompt     {} bytes → {}", plan.agent.prompt.bytes, plan.agent.prompt.guest_path);
    if let Some(w) = &plan.workspace {
        let size = if w.bytes >= 1 << 20 {
            format!("{} MiB", w.bytes >> 20)
        } else {
            format!("{} KiB", w.bytes.div_ceil(1024))
        };
        let _ = writeln!(s, "  workspace  {} → {} (copied: {} entries, {size})", w.source.display(), w.dest, w.entries);
    }
    let who = |v: &Option<plan::ProvenancedValue>| {
        v.as_ref().map_or_else(|| "unset".to_owned(), |p| format!("{} ({})", p.value, p.from.kind))
    };
    let _ = writeln!(s, "  git user   {} <{}>", who(&plan.agent.git_user.name), who(&plan.agent.git_user.email));
    let _ = writeln!(s, "{}", bold("egress"));
    if plan.egress.routes.is_empty() {
        let _ = writeln!(s, "  no routes: every request is denied");
    }
    for r in &plan.egress.routes {
        let host = r.port.map_or_else(|| r.host.clone(), |p| format!("{}:{p}", r.host));
        let auth = r
            .auth
            .as_ref()
            .map(|a| format!(" [auth:{}]", a.scheme.as_deref().unwrap_or(&a.header)))
            .unwrap_or_default();
        let matches = match r.matches.len() {
            0 => String::new(),
            1 => " (1 match rule)".to_owned(),
            n => format!(" ({n} match rules)"),
        };
        let on_match = serde_json::to_value(r.dlp.outbound_on_match).ok();
        let on_match = on_match.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
        let _ = writeln!(s, "  {host}{auth}{matches} on DLP match: {on_match}");
    }
    if !plan.git_gate.repos.is_empty() {
        let _ = writeln!(s, "{}", bold("git-gate"));
        for repo in &plan.git_gate.repos {
            let key = match &repo.key {
                RepoKeyPlan::Identity { path } => format!("key {}", path.display()),
                RepoKeyPlan::Provisioned { provider, .. } => format!("deploy key via {provider}"),
            };
            let _ = writeln!(s, "  {} → {} ({}, {key})", repo.name, host_port(&repo.url), repo.url);
        }
    }
    let secrets: Vec<String> = plan.secret_slots.iter().map(|slot| format!("«{}»", slot.name)).collect();
    if !secrets.is_empty() {
        let _ = writeln!(s, "{}", bold("secrets"));
        let _ = writeln!(s, "  {}", secrets.join(", "));
    }
    let _ = writeln!(s, "{}", bold("creates"));
    let _ = writeln!(s, "  state      {}", plan.state_dir.display());
    if plan.backend == BackendKind::Smolmachines {
        let _ = writeln!(s, "  machine    {} (smolvm, may reach {} only)", plan.resources.agent, plan.ports.host);
        let _ = writeln!(s, "  container  {} at {}", plan.resources.sidecar, plan.ports.host);
        let _ = writeln!(s, "  network    {}", plan.resources.network);
    } else {
        let _ = writeln!(s, "  containers {}, {}", plan.resources.agent, plan.resources.sidecar);
        let _ = writeln!(s, "  network    {}", plan.resources.network);
        let _ = writeln!(s, "  volume     {}", plan.resources.socket_volume);
    }
    if dry_run {
        let _ = writeln!(s, "(dry run: nothing was created)");
    }
    s
}

/// `host:port` of a git remote (`ssh://[user@]host[:port]/path` or `[user@]host:path`, port 22 by
/// default), for the preflight; the URL itself is shown beside it.
fn host_port(url: &str) -> String {
    if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let default = if url.starts_with("https://") {
            443
        } else if url.starts_with("http://") {
            80
        } else {
            22
        };
        return if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host.to_owned()
        } else {
            format!("{host}:{default}")
        };
    }
    let before_path = url.split_once(':').map_or(url, |(h, _)| h);
    let host = before_path.rsplit_once('@').map_or(before_path, |(_, h)| h);
    format!("{host}:22")
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn remotes_show_host_and_port() {
        assert_eq!(host_port("ssh://git@gitea.example.com:2222/org/repo.git"), "gitea.example.com:2222");
        assert_eq!(host_port("ssh://git@github.com/org/repo.git"), "github.com:22");
        assert_eq!(host_port("git@github.com:org/repo.git"), "github.com:22");
        assert_eq!(host_port("https://forge.example/x.git"), "forge.example:443");
    }
}
