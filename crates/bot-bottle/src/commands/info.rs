//! `bot-bottle info [<agent>]`: an agent's resolved configuration with the provenance of every value,
//! or, without an agent, every agent and bottle and whether each one loads.

use std::fmt::Write as _;
use std::process::ExitCode;

use bottle_core::spec::{AgentSpec, BottleSpec, EnvValue, Origin, RepoKey, Sourced};
use bottle_manifest::Catalog;
use serde::Serialize;

use crate::cli::{Format, GlobalArgs, InfoArgs};
use crate::commands::{context, resolve_agent};
use crate::printer::Printer;

pub fn run(global: &GlobalArgs, args: &InfoArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ctx = context(global)?;
    let catalog = ctx.catalog()?;
    match &args.agent {
        None => list(&catalog, args.format, printer),
        Some(agent) => show(&catalog, agent, &args.bottles, args.format, printer),
    }
}

#[derive(Serialize)]
struct Listing {
    home: String,
    agents: Vec<ListedAgent>,
    bottles: Vec<ListedBottle>,
    invalid_files: Vec<InvalidFile>,
}

#[derive(Serialize)]
struct ListedAgent {
    name: String,
    source: bottle_core::spec::AgentSource,
    path: String,
    shadows: Option<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct ListedBottle {
    name: String,
    path: String,
    error: Option<String>,
}

#[derive(Serialize)]
struct InvalidFile {
    path: String,
    error: String,
}

/// Each manifest is loaded on its own, so a broken one is reported next to the good ones.
fn list(catalog: &Catalog, format: Format, printer: &Printer) -> anyhow::Result<ExitCode> {
    let first_line = |d: bottle_core::Diagnostic| d.to_string().lines().next().unwrap_or_default().to_owned();
    let listing = Listing {
        home: catalog.layout.home.display().to_string(),
        agents: catalog
            .agents
            .iter()
            .map(|(name, e)| ListedAgent {
                name: name.clone(),
                source: e.source,
                path: e.path.display().to_string(),
                shadows: e.shadows.as_ref().map(|p| p.display().to_string()),
                error: catalog.agent(name).err().map(first_line),
            })
            .collect(),
        bottles: catalog
            .bottles
            .iter()
            .map(|(name, path)| ListedBottle {
                name: name.clone(),
                path: path.display().to_string(),
                error: catalog.resolve_bottles(std::slice::from_ref(name)).err().map(first_line),
            })
            .collect(),
        invalid_files: catalog
            .misnamed
            .iter()
            .map(|m| InvalidFile { path: m.path.display().to_string(), error: m.problem.message.clone() })
            .collect(),
    };
    if format == Format::Json {
        printer.json(&listing)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = String::new();
    let status = |e: &Option<String>| match e {
        None => printer.paint("ok", "32"),
        Some(msg) => format!("{}: {msg}", printer.paint("error", "31")),
    };
    let _ = writeln!(s, "agents ({})", listing.agents.len());
    for a in &listing.agents {
        let _ = writeln!(s, "  {:<20} {:<5} {}", a.name, format!("{:?}", a.source).to_lowercase(), status(&a.error));
        if let Some(p) = &a.shadows {
            let _ = writeln!(s, "  {:<20}       (hides the repository agent {p})", "");
        }
    }
    let _ = writeln!(s, "bottles ({})", listing.bottles.len());
    for b in &listing.bottles {
        let _ = writeln!(s, "  {:<20} {}", b.name, status(&b.error));
    }
    for f in &listing.invalid_files {
        let _ = writeln!(s, "ignored {}: {}", f.path, f.error);
    }
    printer.out(&s)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Shown<'a> {
    agent: &'a AgentSpec,
    bottles: &'a [String],
    resolved: &'a BottleSpec,
}

fn show(
    catalog: &Catalog,
    agent: &str,
    flags: &[String],
    format: Format,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let (spec, bottles) = resolve_agent(catalog, agent, flags)?;
    if format == Format::Json {
        printer.json(&Shown { agent: &spec, bottles: &bottles.chain, resolved: &bottles.spec })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = String::new();
    let from = |o: &Origin| printer.paint(&format!("({o})"), "2");
    let _ = writeln!(s, "agent    {} ({:?}: {})", spec.name, spec.source, spec.path.display());
    let _ = writeln!(s, "prompt   {} bytes", spec.prompt.len());
    let skills: Vec<&str> = spec.skills.iter().map(|k| k.value.as_str()).collect();
    let _ = writeln!(s, "skills   {}", if skills.is_empty() { "none".to_owned() } else { skills.join(", ") });
    let _ = writeln!(s, "bottles  {}", bottles.chain.join(" → "));
    let b = &bottles.spec;
    let _ = writeln!(s, "provider");
    let line = |s: &mut String, key: &str, v: &Option<Sourced<String>>| {
        if let Some(v) = v {
            let _ = writeln!(s, "  {key:<24} {} {}", v.value, from(&v.origin));
        }
    };
    match &b.provider.template {
        Some(t) => line(&mut s, "template", &Some(t.clone())),
        None => {
            let _ = writeln!(s, "  {:<24} {} (default)", "template", bottle_core::plan::DEFAULT_TEMPLATE);
        }
    }
    line(&mut s, "auth_token", &b.provider.auth_token);
    if let Some(d) = &b.provider.dockerfile {
        let _ = writeln!(s, "  {:<24} {} {}", "dockerfile", d.value.display(), from(&d.origin));
    }
    if let Some(f) = &b.provider.forward_host_credentials {
        let _ = writeln!(s, "  {:<24} {} {}", "forward_host_credentials", f.value, from(&f.origin));
    }
    let mut user = b.git_user.clone();
    user.overlay(&spec.git_user);
    let _ = writeln!(s, "git user");
    line(&mut s, "name", &user.name);
    line(&mut s, "email", &user.email);
    if !b.env.is_empty() {
        let _ = writeln!(s, "env");
        for (k, v) in &b.env {
            let shown = match &v.value {
                EnvValue::Literal { value } => value.clone(),
                other => format!("{} (secret)", other.manifest_form()),
            };
            let _ = writeln!(s, "  {k:<24} {shown} {}", from(&v.origin));
        }
    }
    let log = b.egress.log.as_ref().map_or(0, |l| l.value);
    let _ = writeln!(s, "egress (log {log})");
    if b.egress.routes.is_empty() {
        let _ = writeln!(s, "  no routes: every request is denied");
    }
    for r in &b.egress.routes {
        let host = r.port.map_or_else(|| r.host.clone(), |p| format!("{}:{p}", r.host));
        let auth = r
            .auth
            .as_ref()
            .map(|a| format!(" auth {} «{}»", a.scheme.as_deref().unwrap_or(&a.header), a.token_ref))
            .unwrap_or_default();
        let _ = writeln!(s, "  {host}{auth} {}", from(&r.origin));
        for m in &r.matches {
            let paths: Vec<String> =
                m.paths.iter().map(|p| format!("{:?} {}", p.kind, p.value).to_lowercase()).collect();
            let _ = writeln!(s, "    match methods [{}] paths [{}]", m.methods.join(","), paths.join(", "));
        }
    }
    if !b.git_repos.is_empty() {
        let _ = writeln!(s, "git-gate repos");
        for (name, repo) in &b.git_repos {
            let url = repo.url.as_ref().map_or("(no url)", |u| u.value.as_str());
            let key = match repo.key.as_ref().map(|k| &k.value) {
                Some(RepoKey::Identity { path }) => format!("identity {path}"),
                Some(RepoKey::Provisioned { provider, .. }) => format!("provisioned via {provider}"),
                None => "no key".into(),
            };
            let pinned = match &repo.host_key {
                Some(k) if printer.verbose > 0 => format!("host key `{}`", k.value),
                Some(_) => "host key pinned".to_owned(),
                None => "no host key".to_owned(),
            };
            let origin = repo.declared_at.as_ref().map(&from).unwrap_or_default();
            let _ = writeln!(s, "  {name} → {url}; {key}; {pinned} {origin}");
        }
    }
    printer.out(&s)?;
    Ok(ExitCode::SUCCESS)
}
