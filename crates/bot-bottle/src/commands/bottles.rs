//! The commands that work on launched bottles: `list`, `exec`, `attach`, `stop`, `cleanup`.
//!
//! The engine is the source of truth for what runs; the state directories add what only the
//! launcher knew (label, colour, the owning process) and outlive the containers until `cleanup`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bottle_backend::image::{BuildMode, ImageRecipe};
use bottle_backend::{BottleStatus, CleanupOptions};
use bottle_core::Diagnostic;
use bottle_core::plan::EGRESS_PORT;
use bottle_state::Metadata;
use serde::Serialize;

use crate::backends::Backends;
use crate::cli::{AttachArgs, CleanupArgs, ExecArgs, Format, GlobalArgs, ListArgs, StopArgs};
use crate::commands::{backend_error, context};
use crate::context::Context;
use crate::printer::Printer;

/// One row of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub backend: String,
    pub slug: String,
    pub label: Option<String>,
    pub color: Option<String>,
    pub agent: Option<String>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub age_secs: u64,
    /// `running`, `degraded` (some pieces down), `stopped` (resources left, nothing runs) or
    /// `exited` (only the state directory is left).
    pub status: String,
    /// The sidecar services the agent reaches, as the agent addresses them.
    pub services: Vec<Service>,
    /// The process owning a foreground bottle; absent for a detached one.
    pub owner_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: &'static str,
    pub address: String,
}

pub(crate) fn rows(ctx: &Context, backends: &Backends) -> anyhow::Result<Vec<Row>> {
    let now = SystemTime::now();
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut meta: BTreeMap<String, Metadata> =
        ctx.home.states().into_iter().filter_map(|(slug, s)| s.read_metadata().ok().map(|m| (slug, m))).collect();
    let mut rows = Vec::new();
    for b in backends.list()? {
        let m = meta.remove(&b.slug);
        let created = m.as_ref().map_or_else(|| secs(b.created), |m| m.started_at);
        let status = match b.status {
            BottleStatus::Running => "running",
            BottleStatus::Degraded => "degraded",
            BottleStatus::Stopped => "stopped",
        };
        rows.push(Row {
            backend: b.backend.to_string(),
            label: m.as_ref().and_then(|m| m.label.clone()),
            color: m.as_ref().and_then(|m| m.color.clone()),
            agent: b.agent.or_else(|| m.as_ref().map(|m| m.agent.clone())),
            created,
            age_secs: secs(now).saturating_sub(created),
            status: status.into(),
            services: if b.status == BottleStatus::Running {
                let host = bottle_backend::smolmachines::services_host(ctx.home.state(&b.slug).dir())
                    .unwrap_or_else(|| "127.0.0.1".into());
                vec![Service { name: "egress", address: format!("{host}:{EGRESS_PORT}") }]
            } else {
                Vec::new()
            },
            owner_pid: m.as_ref().and_then(|m| m.owner_pid),
            slug: b.slug,
        });
    }
    for (slug, m) in meta {
        rows.push(Row {
            backend: m.backend.clone(),
            label: m.label.clone(),
            color: m.color.clone(),
            agent: Some(m.agent.clone()),
            created: m.started_at,
            age_secs: secs(now).saturating_sub(m.started_at),
            status: "exited".into(),
            services: Vec::new(),
            owner_pid: m.owner_pid,
            slug,
        });
    }
    rows.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.slug.cmp(&b.slug)));
    Ok(rows)
}

pub fn list(global: &GlobalArgs, args: &ListArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ctx = context(global)?;
    let backends = Backends::connect(&ctx.home)?;
    let rows = rows(&ctx, &backends)?;
    match args.format {
        Format::Json => printer.json(&rows)?,
        Format::Text => {
            if rows.is_empty() {
                printer.step("no bottles");
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = format!(
                "{:<28} {:<9} {:<16} {:<12} {:>6}  {:<9} {}\n",
                "SLUG", "BACKEND", "AGENT", "LABEL", "AGE", "STATUS", "SERVICES"
            );
            for r in &rows {
                let services: Vec<String> = r.services.iter().map(|s| format!("{} {}", s.name, s.address)).collect();
                let label = r.label.as_deref().unwrap_or("-");
                let label = match &r.color {
                    Some(c) => printer.paint(&format!("{label:<12}"), color_sgr(c)),
                    None => format!("{label:<12}"),
                };
                out.push_str(&format!(
                    "{:<28} {:<9} {:<16} {} {:>6}  {:<9} {}\n",
                    r.slug,
                    r.backend,
                    r.agent.as_deref().unwrap_or("?"),
                    label,
                    age(Duration::from_secs(r.age_secs)),
                    r.status,
                    if services.is_empty() { "-".to_owned() } else { services.join(", ") }
                ));
            }
            printer.out(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn color_sgr(name: &str) -> &'static str {
    match name {
        "black" => "30",
        "red" => "31",
        "green" => "32",
        "yellow" => "33",
        "blue" => "34",
        "magenta" => "35",
        "cyan" => "36",
        "white" => "37",
        "bright-black" => "90",
        "bright-red" => "91",
        "bright-green" => "92",
        "bright-yellow" => "93",
        "bright-blue" => "94",
        "bright-magenta" => "95",
        "bright-cyan" => "96",
        _ => "97",
    }
}

fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn exec(global: &GlobalArgs, args: &ExecArgs, _printer: &Printer) -> anyhow::Result<ExitCode> {
    let ctx = context(global)?;
    let backends = Backends::connect(&ctx.home)?;
    let bottle = backends.for_slug(&ctx.home, &args.slug)?.open(&args.slug).map_err(backend_error)?;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let argv = bottle.agent_argv(&args.command, tty);
    let (program, rest) = argv.split_first().context("empty command")?;
    let status =
        std::process::Command::new(program).args(rest).status().with_context(|| format!("cannot run `{program}`"))?;
    use std::os::unix::process::ExitStatusExt as _;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub fn attach(global: &GlobalArgs, args: &AttachArgs, _printer: &Printer) -> anyhow::Result<ExitCode> {
    let ctx = context(global)?;
    let backends = Backends::connect(&ctx.home)?;
    let bottle = backends.for_slug(&ctx.home, &args.slug)?.open(&args.slug).map_err(backend_error)?;
    let meta = ctx.home.state(&args.slug).read_metadata().ok();
    // The command line the launch rendered from the provider template (its resume form with
    // `--resume`).
    let command = if args.resume {
        meta.as_ref().map(|m| m.resume_command.clone()).filter(|c| !c.is_empty()).ok_or_else(|| {
            Diagnostic::new(format!("bottle `{}` has no resume form of its agent", args.slug))
                .hint(format!("its provider has no `resume_args`; `bot-bottle attach {}` starts the agent", args.slug))
        })?
    } else {
        meta.as_ref().map(|m| m.command.clone()).filter(|c| !c.is_empty()).ok_or_else(|| {
            Diagnostic::new(format!("bottle `{}` has no agent command in its metadata", args.slug))
                .hint(format!("`bot-bottle exec {} -- CMD` runs a command in it", args.slug))
        })?
    };
    let label = meta.as_ref().and_then(|m| m.label.clone()).unwrap_or_else(|| args.slug.clone());
    let color = meta.as_ref().and_then(|m| m.color.as_deref()).and_then(|c| bottle_core::Color::parse(c).ok());
    let tint = crate::terminal::Tint::begin(&label, color);
    let code = bottle.attach(&command).map_err(backend_error);
    drop(tint);
    let code = code?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub fn stop(global: &GlobalArgs, args: &StopArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ctx = context(global)?;
    let backends = Backends::connect(&ctx.home)?;
    let mut failed = false;
    for slug in &args.slugs {
        let state = ctx.home.state(slug);
        match backends.for_slug(&ctx.home, slug)?.stop(slug) {
            Ok(report) => {
                for (what, why) in &report.failed {
                    printer.error(&format!("{slug}: cannot remove {what}: {why}"));
                    failed = true;
                }
                printer.step(&format!("{slug}: removed {}", report.removed.join(", ")));
            }
            Err(bottle_backend::Error::NoSuchBottle { .. }) if state.dir().exists() => {
                printer.step(&format!("{slug}: nothing runs; its state stays until `bot-bottle cleanup`"));
            }
            Err(e) => {
                printer.error(&format!("{:#}", backend_error(e)));
                failed = true;
                continue;
            }
        }
        if let Ok(mut meta) = state.read_metadata() {
            "stopped".clone_into(&mut meta.status);
            let _ = state.write_metadata(&meta);
        }
    }
    Ok(if failed { ExitCode::from(crate::EXIT_FAILURE) } else { ExitCode::SUCCESS })
}

pub fn cleanup(global: &GlobalArgs, args: &CleanupArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ctx = context(global)?;
    let backends = Backends::connect(&ctx.home)?;
    let states = ctx.home.states();
    let dead_owners: BTreeSet<String> = states
        .iter()
        .filter_map(|(slug, s)| s.read_metadata().ok().map(|m| (slug, m)))
        .filter(|(_, m)| m.owner_pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()))
        .map(|(slug, _)| slug.clone())
        .collect();

    // This build's sidecar image stays; those of other builds go once nothing uses them.
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let binary = bytes::Bytes::from(std::fs::read(&exe).with_context(|| format!("cannot read `{}`", exe.display()))?);
    let keep_images = vec![
        ImageRecipe::sidecar(BuildMode::Offline, binary.clone()).tag,
        ImageRecipe::sidecar(BuildMode::Registry, binary).tag,
    ];
    // What would go, first, so the question shows it.
    let options = CleanupOptions { dry_run: true, dead_owners: dead_owners.clone(), keep_images: keep_images.clone() };
    let mut plan = bottle_backend::CleanupReport::default();
    for backend in backends.all() {
        plan.absorb(backend.cleanup(&options).map_err(backend_error)?);
    }
    // A bottle stays when it runs, or when cleanup leaves its resources alone (a launch still in
    // progress, a machine nobody here can see): its state directory goes with it, never before.
    let listed = backends.list()?;
    let going = |slug: &str| {
        let names =
            [format!("bot-bottle-{slug}"), format!("bot-bottle-sidecars-{slug}"), format!("bot-bottle-net-{slug}")];
        plan.removed.iter().any(|r| names.iter().any(|n| r.split_whitespace().last() == Some(n.as_str())))
    };
    let live: BTreeSet<String> = listed
        .into_iter()
        .filter(|b| (b.status == BottleStatus::Running && !dead_owners.contains(&b.slug)) || !going(&b.slug))
        .map(|b| b.slug)
        .collect();
    let orphan_dirs: Vec<_> =
        states.into_iter().filter(|(slug, s)| !live.contains(slug) && !s.is_preserved()).map(|(_, s)| s).collect();
    if plan.removed.is_empty() && orphan_dirs.is_empty() {
        printer.step("nothing to clean up");
        return Ok(ExitCode::SUCCESS);
    }
    let mut listing = String::new();
    for r in &plan.removed {
        listing.push_str(&format!("  {r}\n"));
    }
    for d in &orphan_dirs {
        listing.push_str(&format!("  state {}\n", d.dir().display()));
    }
    if args.dry_run {
        printer.out(&format!("would remove:\n{listing}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Diagnostic::new("no terminal to confirm the cleanup on")
                .hint("pass `--yes` to remove without asking, or `-n` to see what would go")
                .into());
        }
        printer.out(&format!("will remove:\n{listing}"))?;
        let mut err = std::io::stderr().lock();
        write!(err, "Remove these? [y/N] ")?;
        err.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            printer.step("nothing removed");
            return Ok(ExitCode::from(crate::EXIT_FAILURE));
        }
    }
    let mut report = bottle_backend::CleanupReport::default();
    let options = CleanupOptions { dry_run: false, dead_owners, keep_images };
    for backend in backends.all() {
        report.absorb(backend.cleanup(&options).map_err(backend_error)?);
    }
    let mut failures = report.failed.clone();
    let mut removed_dirs = 0;
    // What still has resources after the cleanup keeps its state.
    let remaining: BTreeSet<String> = backends.list()?.into_iter().map(|b| b.slug).collect();
    for d in orphan_dirs.iter().filter(|d| !remaining.iter().any(|slug| d.dir().ends_with(slug))) {
        match std::fs::remove_dir_all(d.dir()) {
            Ok(()) => removed_dirs += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failures.push((format!("state {}", d.dir().display()), e.to_string())),
        }
    }
    for (what, why) in &failures {
        printer.error(&format!("cannot remove {what}: {why}"));
    }
    printer.step(&format!(
        "removed {} engine resources and {removed_dirs} state directories; {} failures",
        report.removed.len(),
        failures.len()
    ));
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_FAILURE) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(age(Duration::from_secs(5)), "5s");
        assert_eq!(age(Duration::from_secs(125)), "2m");
        assert_eq!(age(Duration::from_secs(7200)), "2h");
        assert_eq!(age(Duration::from_secs(200_000)), "2d");
    }
}
