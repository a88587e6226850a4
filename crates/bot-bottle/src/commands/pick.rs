//! What `start` asks on a terminal for whatever the command line left open: the agent, its
//! bottles (in merge order), the backend and the label with its colour. Every manifest is loaded
//! on its own so a broken one is shown with its error instead of breaking the list. Nothing is
//! created here; Esc or Ctrl-C stops the start.

use bottle_core::{BackendKind, Label};
use bottle_manifest::Catalog;

use crate::cli::{BackendArg, StartArgs};
use crate::context::Context;
use crate::picker::{Choice, LabelModal, ListPicker, MultiPicker, draw, tty};

/// `args` with every open choice made on the terminal, or `None` when the user cancelled.
pub fn complete(ctx: &Context, args: &StartArgs) -> anyhow::Result<Option<StartArgs>> {
    let catalog = ctx.catalog()?;
    let mut args = args.clone();
    // Opened on the first question and closed (the terminal restored) when this returns.
    let mut open: Option<tty::Session> = None;

    let agent_name = match &args.agent {
        Some(name) => name.clone(),
        None => {
            let mut picker = ListPicker::new("pick an agent", agent_choices(&catalog), true);
            match session(&mut open)?.run(&mut picker, draw::list, ListPicker::key)? {
                Some(name) => name,
                None => return Ok(None),
            }
        }
    };
    args.agent = Some(agent_name.clone());

    if args.bottles.is_empty() {
        // The agent itself must load for its `bottle:` to be known; its error is the start's.
        let agent = catalog.agent(&agent_name)?;
        let preselected: Vec<String> = agent.bottles.iter().map(|b| b.value.clone()).collect();
        let mut picker = MultiPicker::new(
            format!("bottles for `{agent_name}` (merged in the order picked)"),
            bottle_choices(&catalog),
            &preselected,
        );
        match session(&mut open)?.run(&mut picker, draw::multi, MultiPicker::key)? {
            Some(names) => args.bottles = names,
            None => return Ok(None),
        }
    }

    if args.backend.is_none() {
        let mut picker = ListPicker::new("pick a backend", backend_choices(), false);
        match session(&mut open)?.run(&mut picker, draw::list, ListPicker::key)? {
            Some(name) => {
                args.backend = Some(match name.as_str() {
                    "smolmachines" => BackendArg::Smolmachines,
                    "namespaces" => BackendArg::Namespaces,
                    _ => BackendArg::Docker,
                });
            }
            None => return Ok(None),
        }
    }

    if args.label.is_none() {
        // The suggestion is the slug the plan would generate.
        let suggested = super::start::resolve_plan(ctx, &args).map(|(plan, _, _)| plan.slug.to_string())?;
        let mut modal = LabelModal::new(suggested);
        let check = |label: &str| label_free(ctx, label);
        let picked = session(&mut open)?.run(&mut modal, draw::label, |m, k| m.key(k, check))?;
        match picked {
            Some((label, color)) => {
                args.label = Some(label);
                args.color = color.map(str::to_owned).or(args.color);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(args))
}

fn session(open: &mut Option<tty::Session>) -> anyhow::Result<&mut tty::Session> {
    if open.is_none() {
        *open = Some(tty::Session::open()?);
    }
    open.as_mut().ok_or_else(|| anyhow::anyhow!("no terminal session"))
}

/// Every agent, with the first line of its error when it does not load.
fn agent_choices(catalog: &Catalog) -> Vec<Choice> {
    catalog
        .agents
        .iter()
        .map(|(name, entry)| match catalog.agent(name) {
            Ok(_) => Choice::ok(name, entry.path.display().to_string()),
            Err(e) => Choice::broken(name, first_line(&e)),
        })
        .collect()
}

/// Every bottle, with the first line of its error when it (or its `extends` chain) does not load.
fn bottle_choices(catalog: &Catalog) -> Vec<Choice> {
    catalog
        .bottles
        .iter()
        .map(|(name, path)| match catalog.resolve_bottles(std::slice::from_ref(name)) {
            Ok(_) => Choice::ok(name, path.display().to_string()),
            Err(e) => Choice::broken(name, first_line(&e)),
        })
        .collect()
}

fn first_line(e: &bottle_core::Diagnostic) -> String {
    let at = e.location.as_ref().map(|l| format!(" ({}:{})", l.path.display(), l.line)).unwrap_or_default();
    format!("{}{at}", e.message)
}

/// The backends, each launchable one pickable; the others say why not.
fn backend_choices() -> Vec<Choice> {
    BackendKind::ALL
        .into_iter()
        .map(|kind| match kind {
            BackendKind::Docker => Choice::ok("docker", "containers on the local Docker engine"),
            BackendKind::Smolmachines => match smolvm_usable() {
                Ok(()) => Choice::ok("smolmachines", "smolvm micro-VMs"),
                Err(why) => Choice::broken("smolmachines", why),
            },
            BackendKind::Namespaces => Choice::broken("namespaces", "it cannot launch bottles yet"),
        })
        .collect()
}

fn smolvm_usable() -> Result<(), String> {
    use bottle_backend::smolmachines::{self, runner::TokioRunner};
    let cli = TokioRunner::new().map_err(|e| e.to_string()).and_then(|runner| smolmachines::detect(&runner))?;
    if cli.version.can_launch() {
        Ok(())
    } else {
        Err(format!("smolvm {} is known to be unsafe for bottles (`bot-bottle doctor`)", cli.version))
    }
}

/// Why `label` cannot name a new bottle: the slug rule, or a state directory or engine resources
/// that already carry it.
fn label_free(ctx: &Context, label: &str) -> Result<(), String> {
    let parsed = Label::parse(label).map_err(|e| format!("{}; {}", e.message, e.hint))?;
    if ctx.home.state(parsed.as_str()).dir().exists() {
        return Err(format!("a bottle `{label}` already has a state directory: pick another label"));
    }
    if let Ok(backends) = crate::backends::Backends::connect(&ctx.home)
        && let Ok(bottles) = backends.list()
        && bottles.iter().any(|b| b.slug == label)
    {
        return Err(format!("a bottle `{label}` already exists: pick another label"));
    }
    Ok(())
}
