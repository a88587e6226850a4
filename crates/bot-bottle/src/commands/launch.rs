//! `bot-bottle start <agent>` without `--dry-run`: execute the launch plan (DESIGN.md §3, Launch).
//!
//! Order: every check that needs no side effect (backend, provider, secret values, skills, upstream
//! CA) → preflight y/N → images → state directory and CA → backend launch → provisioning (CA trust,
//! prompt, skills, git identity) → boundary self-test → the agent (interactive, headless, or
//! detached). Any failure, and Ctrl-C at any point before the agent runs, removes everything the
//! launch created — containers, network, volume and state directory — before the error is shown.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::{Context as _, bail};
use bottle_backend::docker::DockerBackend;
use bottle_backend::image::{BuildMode, ImageBuilder, ImageRecipe};
use bottle_backend::{Backend, Bottle, ExecUser, GuestFile, LaunchInputs, Progress};
use bottle_core::plan::{GUEST_CA_PATH, GUEST_HOME, LaunchPlan, RepoKeyPlan, SUPERVISE_PORT, SecretSource};
use bottle_core::spec::AgentSpec;
use bottle_core::{BackendKind, Diagnostic};
use bottle_egress::{AuthConfig, DlpSettings, EgressConfig, MatchConfig, RouteConfig};
use bottle_gitgate::{GitGateConfig, RepoConfig};
use bottle_provider::Provider;
use bottle_provider::codex::HostAuth;
use bottle_sidecar::{Listen, SidecarConfig};
use bottle_state::{BottleState, Metadata};

use crate::cli::StartArgs;
use crate::commands::provider;
use crate::context::Context;
use crate::printer::Printer;

/// Launches `plan` and runs the agent as `args` ask.
pub fn run(
    ctx: &Context,
    args: &StartArgs,
    plan: &LaunchPlan,
    agent: &AgentSpec,
    provider: &Provider,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    // Everything that can be refused without touching anything.
    if plan.backend == BackendKind::Namespaces {
        return Err(Diagnostic::new(format!("the `{}` backend cannot launch bottles yet", plan.backend))
            .hint("use `--backend docker` or `--backend smolmachines`; `--dry-run` shows any backend's plan")
            .into());
    }
    let mut plan = plan.clone();
    let mode = match (&args.prompt, args.detach) {
        (Some(prompt), _) => provider::Mode::Headless(prompt.clone()),
        (None, true) => provider::Mode::Detached,
        (None, false) => provider::Mode::Interactive,
    };
    let values = SecretValues::read(&plan, args.headless)?;
    let commands = Commands::render(provider, &plan, &values, &mode)?;
    let dockerfile = provider::dockerfile(&plan, provider, ctx.home.root())?;
    for skill in &plan.agent.skills {
        if !skill.source.is_dir() {
            return Err(Diagnostic::new(format!(
                "skill `{}` is not a directory: `{}`",
                skill.name,
                skill.source.display()
            ))
            .key("skills")
            .hint("install the skill there, or remove it from the agent's `skills:`")
            .into());
        }
    }
    let key_files = read_git_keys(&plan)?;
    let upstream_ca = plan
        .egress
        .upstream_ca
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|e| {
                Diagnostic::new(format!("cannot read `egress.upstream_ca` `{}`: {e}", path.display()))
                    .key("egress.upstream_ca")
                    .hint("point it at a readable PEM bundle")
            })
        })
        .transpose()?;
    let state = ctx.home.state(plan.slug.as_str());
    if state.dir().exists() {
        return Err(Diagnostic::new(format!("a bottle `{}` already has a state directory", plan.slug))
            .hint(format!(
                "pick another `--label`, or remove the old one with `bot-bottle stop {}` / `bot-bottle cleanup`",
                plan.slug
            ))
            .into());
    }

    if !args.yes && !args.headless {
        printer.out(&super::start::render(&plan, printer, false))?;
        if !confirm("Launch this bottle?")? {
            printer.step("not launched");
            return Ok(ExitCode::from(crate::EXIT_FAILURE));
        }
    }

    let backends = crate::backends::Backends::connect(&ctx.home)?;
    let cancel = Arc::new(AtomicBool::new(false));
    watch_signals(backends.docker.runtime(), cancel.clone())?;
    let started = Instant::now();
    let backend = backends.get(plan.backend).context("no backend for this plan")?;
    if plan.backend == BackendKind::Smolmachines {
        // Refused before anything is built: an unsafe smolvm never gets that far.
        backends.smol.ensure_launchable().map_err(super::backend_error)?;
    }
    let (agent_image, sidecar_image) = ensure_images(&backends.docker, printer, provider, dockerfile.as_deref())?;
    let preflight = backend.prepare(&plan, &agent_image).map_err(super::backend_error)?;
    for w in &preflight.warnings {
        printer.warn(w);
    }
    // A backend that pins the agent's view of its sidecar (smolmachines: the bundle's IP) may land
    // on another address than the plan's first candidate; the plan and everything rendered from it
    // follow.
    let mut commands = commands;
    if let Some(host) = backend.reserve(&plan).map_err(super::backend_error)? {
        plan.rebind_services(&host);
        commands = match Commands::render(provider, &plan, &values, &mode) {
            Ok(c) => c,
            Err(e) => {
                backend.release(plan.slug.as_str());
                return Err(e);
            }
        };
    }
    let Commands { command, interactive_command, resume_command, rendered, vars } = commands;

    if let Err(e) = state.create() {
        backend.release(plan.slug.as_str());
        return Err(anyhow::Error::new(e).context(format!("cannot create the state directory of `{}`", plan.slug)));
    }
    let mut launch = Launch { state, handle: None, printer };
    let plan = &plan;
    let result = launch.bring_up(LaunchParts {
        ctx,
        plan,
        agent,
        backend,
        values,
        upstream_ca,
        key_files,
        agent_image,
        sidecar_image,
        runtime: preflight.runtime.clone(),
        cancel: cancel.clone(),
        detached: matches!(mode, provider::Mode::Detached),
        rendered,
        placeholder: vars.placeholder.clone(),
        commands: (interactive_command, resume_command),
    });
    if let Err(err) = result {
        launch.abandon();
        backend.release(plan.slug.as_str());
        return Err(err);
    }
    printer.step(&format!("bottle `{}` ready in {:.1?}", plan.slug, started.elapsed()));

    let Some(handle) = launch.handle.take() else { bail!("launch produced no bottle") };
    match mode {
        provider::Mode::Detached => {
            launch.set_status("running", None);
            printer.outln(plan.slug.as_str())?;
            printer.step(&format!(
                "detached: `bot-bottle attach {0}` runs the agent, `bot-bottle exec {0} -- CMD` runs a command, \
                 `bot-bottle stop {0}` removes it",
                plan.slug
            ));
            Ok(ExitCode::SUCCESS)
        }
        provider::Mode::Headless(_) => {
            launch.set_status("running", None);
            let code = run_headless(handle.as_ref(), &command);
            launch.finish(handle, code.as_ref().ok().copied());
            exit_with(code?)
        }
        provider::Mode::Interactive => {
            launch.set_status("running", None);
            let tint = crate::terminal::Tint::begin(&vars.label, plan.color);
            let code = handle.attach(&command).map_err(super::backend_error);
            drop(tint);
            launch.finish(handle, code.as_ref().ok().copied());
            exit_with(code?)
        }
    }
}

fn exit_with(code: i32) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The agent's non-interactive run: no terminal, no stdin, its output on ours.
fn run_headless(handle: &dyn Bottle, command: &[String]) -> anyhow::Result<i32> {
    let argv = handle.agent_argv(command, false);
    let (program, rest) = argv.split_first().context("empty agent command")?;
    let status = std::process::Command::new(program)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run `{program}`"))?;
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Sets `cancel` on SIGINT, SIGTERM or SIGHUP. While the agent runs in the foreground the terminal's
/// Ctrl-C belongs to it; this process only has to survive it to tear the bottle down afterwards.
fn watch_signals(rt: &tokio::runtime::Runtime, cancel: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let _guard = rt.enter();
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    rt.spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
                _ = hup.recv() => {},
            }
            cancel.store(true, Ordering::SeqCst);
        }
    });
    Ok(())
}

/// Asks `question` on the terminal; anything but y/yes is no. Without a terminal there is nobody to
/// ask, which is an error rather than a silent yes.
fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Diagnostic::new("no terminal to confirm the launch on")
            .hint("pass `--yes` to launch without asking (or `--headless --prompt TEXT`)")
            .into());
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Agent and sidecar images for this binary, built (offline) only when no image of the same inputs
/// exists in either build mode.
fn ensure_images(
    backend: &DockerBackend,
    printer: &Printer,
    provider: &Provider,
    dockerfile: Option<&std::path::Path>,
) -> anyhow::Result<(String, String)> {
    let exe = std::env::current_exe().context("cannot find this executable for the sidecar image")?;
    let progress = StepProgress { printer };
    let builder = ImageBuilder::new(backend.engine(), &progress).map_err(super::backend_error)?;
    let binary = bytes::Bytes::from(
        std::fs::read(&exe).with_context(|| format!("cannot read `{}` for the sidecar image", exe.display()))?,
    );
    let docker = backend.engine().docker();
    let exists = |tag: &str| backend.runtime().block_on(docker.inspect_image(tag)).is_ok();
    let mut tags = Vec::new();
    for (offline, registry) in [
        (ImageRecipe::agent(BuildMode::Offline), None),
        (ImageRecipe::sidecar(BuildMode::Offline, binary.clone()), Some(binary)),
    ] {
        // The registry-built twin is only worked out (hashing the binary again) when the offline
        // image is missing.
        let registry_tag = || match &registry {
            None => ImageRecipe::agent(BuildMode::Registry).tag,
            Some(b) => ImageRecipe::sidecar(BuildMode::Registry, b.clone()).tag,
        };
        let tag = if exists(&offline.tag) {
            offline.tag.clone()
        } else if let Some(tag) = Some(registry_tag()).filter(|t| exists(t)) {
            tag
        } else {
            printer.step(&format!("building the {} image (first launch with this version)", offline.kind.name()));
            backend.runtime().block_on(builder.build(&offline)).map_err(super::backend_error)?.tag
        };
        tags.push(tag);
    }
    let sidecar = tags.pop().context("no sidecar image")?;
    let base = tags.pop().context("no agent image")?;
    // The provider's CLI on top of the base: a Dockerfile (bottle, manifest, plugin) or the
    // template's npm packages; `shell` and plugins without either run on the base itself.
    let image = &provider.template.image;
    let recipe = match dockerfile {
        Some(path) => Some(ImageRecipe::custom(&provider.name, &base, path).map_err(super::backend_error)?),
        None if image.npm.is_empty() => None,
        None => Some(ImageRecipe::provider(BuildMode::Offline, &provider.name, &base, &image.npm, &image.links)),
    };
    let agent = match recipe {
        None => base,
        Some(recipe) if exists(&recipe.tag) => recipe.tag,
        Some(recipe) => {
            printer.step(&format!("building the `{}` agent image (first launch with this template)", provider.name));
            backend.runtime().block_on(builder.build(&recipe)).map_err(super::backend_error)?.tag
        }
    };
    Ok((agent, sidecar))
}

struct StepProgress<'a> {
    printer: &'a Printer,
}

impl Progress for StepProgress<'_> {
    fn step(&self, image: &str, message: &str) {
        if self.printer.verbose > 0 {
            self.printer.step(&format!("{image}: {message}"));
        }
    }

    fn output(&self, image: &str, line: &str) {
        if self.printer.verbose > 1 {
            self.printer.step(&format!("{image} | {line}"));
        }
    }
}

/// Secret values the launch hands out: credentials for the sidecar, env secrets for the agent.
/// Read once, before anything is created, so a missing one stops the launch cleanly.
struct SecretValues {
    /// Slot → value, for the sidecar only.
    sidecar: Vec<(String, Vec<u8>)>,
    /// Env entry name → value, for the agent's environment.
    agent_env: Vec<(String, String)>,
    /// The host's Codex login, when the bottle forwards it.
    codex: Option<HostAuth>,
}

impl SecretValues {
    fn read(plan: &LaunchPlan, headless: bool) -> anyhow::Result<Self> {
        let mut out = Self { sidecar: Vec::new(), agent_env: Vec::new(), codex: None };
        for slot in &plan.secret_slots {
            let value = match &slot.source {
                SecretSource::HostEnv { var } => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => v,
                    _ => {
                        return Err(Diagnostic::new(format!(
                            "host variable `{var}` is not set; the launch needs it for {}",
                            slot.used_by.join(", ")
                        ))
                        .hint(format!("export {var}=… and start again"))
                        .into());
                    }
                },
                SecretSource::Prompt { message } => {
                    if headless || !std::io::stdin().is_terminal() {
                        return Err(Diagnostic::new(format!(
                            "env `{}` is asked for at launch, and there is no terminal to ask on",
                            slot.name
                        ))
                        .key(format!("env.{}", slot.name))
                        .hint("run `start` on a terminal without --headless, or set the value from a host variable (`$VAR`)")
                        .into());
                    }
                    ask_secret(message.as_deref().unwrap_or(&slot.name))?
                }
                SecretSource::CodexAuth { path } => {
                    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    let auth = bottle_provider::codex::read_host_auth(path, i64::try_from(now).unwrap_or(i64::MAX))?;
                    let value = auth.access_token.expose().to_owned();
                    out.codex = Some(auth);
                    value
                }
            };
            if slot.visible_to_agent {
                for user in &slot.used_by {
                    if let Some(name) = user.strip_prefix("env:") {
                        out.agent_env.push((name.to_owned(), value.clone()));
                    }
                }
            } else {
                out.sidecar.push((slot.name.clone(), value.into_bytes()));
            }
        }
        Ok(out)
    }
}

/// Reads one line from the terminal without echoing it.
fn ask_secret(prompt: &str) -> anyhow::Result<String> {
    let value = rpassword::prompt_password(format!("{prompt}: ")).context("cannot read from the terminal")?;
    if value.is_empty() {
        bail!("no value given for `{prompt}`");
    }
    Ok(value)
}

/// What the provider template renders for this launch: command lines, files and variables.
struct Commands {
    command: Vec<String>,
    interactive_command: Vec<String>,
    resume_command: Vec<String>,
    rendered: bottle_provider::Rendered,
    vars: bottle_provider::Vars,
}

impl Commands {
    fn render(
        provider: &Provider,
        plan: &LaunchPlan,
        values: &SecretValues,
        mode: &provider::Mode,
    ) -> anyhow::Result<Self> {
        // The template's variables; a forwarded Codex login brings its own stand-in token.
        let mut vars = bottle_provider::apply::vars(provider, plan);
        if let Some(codex) = &values.codex {
            vars.placeholder = codex.placeholder();
        }
        let command = provider::command(provider, &vars, mode, false)?;
        let interactive_command = provider::command(provider, &vars, &provider::Mode::Interactive, false)?;
        let resume_command = if provider.template.resume_args.is_empty() {
            Vec::new()
        } else {
            provider::command(provider, &vars, &provider::Mode::Interactive, true)?
        };
        let rendered = bottle_provider::render::render(&provider.template, &provider.name, &provider.path, &vars)?;
        Ok(Self { command, interactive_command, resume_command, rendered, vars })
    }
}

struct LaunchParts<'a> {
    ctx: &'a Context,
    plan: &'a LaunchPlan,
    agent: &'a AgentSpec,
    backend: &'a dyn Backend,
    values: SecretValues,
    upstream_ca: Option<Vec<u8>>,
    key_files: Vec<(String, Vec<u8>)>,
    agent_image: String,
    sidecar_image: String,
    runtime: String,
    cancel: Arc<AtomicBool>,
    detached: bool,
    /// The provider's files, environment and MCP registration for this bottle.
    rendered: bottle_provider::Rendered,
    /// What the agent holds instead of the provider credential.
    placeholder: String,
    /// The interactive and resume command lines, kept in the metadata for `attach`.
    commands: (Vec<String>, Vec<String>),
}

/// A launch in progress: what exists so far, so an error can remove it.
struct Launch<'a> {
    state: BottleState,
    handle: Option<Box<dyn Bottle>>,
    printer: &'a Printer,
}

impl Launch<'_> {
    fn bring_up(&mut self, parts: LaunchParts<'_>) -> anyhow::Result<()> {
        let LaunchParts {
            ctx,
            plan,
            agent,
            backend,
            values,
            upstream_ca,
            key_files,
            agent_image,
            sidecar_image,
            runtime,
            cancel,
            detached,
            rendered,
            placeholder,
            commands,
        } = parts;
        let step = |text: &str| {
            self.printer.step(text);
            self.state.log_bringup(text);
        };
        let check = || -> anyhow::Result<()> {
            if cancel.load(Ordering::SeqCst) {
                bail!("launch interrupted; everything it created was removed");
            }
            Ok(())
        };
        self.state.write_metadata(&Metadata {
            slug: plan.slug.to_string(),
            agent: plan.agent.name.clone(),
            bottles: plan.bottles.clone(),
            backend: plan.backend.to_string(),
            label: plan.label.as_ref().map(ToString::to_string),
            color: plan.color.map(|c| c.to_string()),
            cwd: ctx.cwd.clone(),
            started_at: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            template: plan.provider.template.clone(),
            owner_pid: (!detached).then(std::process::id),
            status: "starting".into(),
            exit_code: None,
            runtime: runtime.clone(),
            command: commands.0,
            resume_command: commands.1,
            workdir: plan.workspace.as_ref().map(|w| w.dest.clone()),
        })?;
        std::fs::write(&plan.agent.prompt.host_path, &agent.prompt)
            .with_context(|| format!("cannot write `{}`", plan.agent.prompt.host_path.display()))?;
        let ca = bottle_ca::Ca::load_or_create(&self.state.ca_dir())
            .with_context(|| format!("cannot create the bottle CA in `{}`", self.state.ca_dir().display()))?;
        step(&format!("bottle CA {}", &ca.fingerprint_sha256()[..16]));

        let layout = backend.sidecar_layout();
        let config = SidecarConfig {
            slug: plan.slug.to_string(),
            state_dir: layout.state_dir.clone(),
            secrets_dir: (!values.sidecar.is_empty()).then(|| layout.secrets_dir.clone()),
            listen: Listen {
                egress: layout.egress_listen.parse().context("the backend's egress address")?,
                socket_group: layout.socket_group,
                git_gate: (!plan.git_gate.repos.is_empty()).then(|| layout.git_gate_listen.parse()).transpose()?,
                supervise: Some(layout.supervise_listen.parse()?),
                control: Some(layout.control_listen.parse()?),
            },
            egress: egress_config(plan, upstream_ca.as_ref().map(|_| layout.upstream_ca.clone()), &placeholder)?,
            git_gate: git_gate_config(plan, &layout),
            supervise: Some(bottle_supervise::SuperviseConfig {
                control_token_file: layout.control_token_file.clone(),
                proposal_timeout_secs: bottle_supervise::DEFAULT_TIMEOUT_SECS,
            }),
        };
        let mut agent_env: Vec<(String, String)> = vec![
            ("HOME".into(), GUEST_HOME.into()),
            ("USER".into(), "node".into()),
            ("BOT_BOTTLE_SLUG".into(), plan.slug.to_string()),
            ("BOT_BOTTLE_LABEL".into(), plan.label.as_ref().map_or_else(|| plan.slug.to_string(), ToString::to_string)),
        ];
        if let Some(c) = plan.color {
            agent_env.push(("BOT_BOTTLE_COLOR".into(), c.to_string()));
            agent_env.push(("BOT_BOTTLE_COLOR_SGR".into(), crate::terminal::sgr(c).to_string()));
        }
        for entry in &plan.env {
            if entry.secret {
                continue;
            }
            agent_env.push((entry.name.clone(), entry.value.clone()));
        }
        agent_env.extend(values.agent_env);
        let values_codex = values.codex;
        // The control API's token: the host keeps it in the state directory (0600) for `supervise`,
        // the sidecar gets a copy; the agent never sees it.
        let control_token = write_control_token(&self.state)?;
        check()?;
        step(&format!("launching on {} (agent runtime {runtime})", plan.backend));
        let handle = backend
            .launch(
                plan,
                LaunchInputs {
                    sidecar_config: serde_json::to_vec_pretty(&config)?,
                    secrets: values.sidecar,
                    upstream_ca,
                    key_files,
                    git_gate: !plan.git_gate.repos.is_empty(),
                    control_token: Some(control_token.into_bytes()),
                    agent_env,
                    agent_image,
                    sidecar_image,
                    runtime: (runtime != "runc").then_some(runtime),
                    relay_binary: std::env::current_exe().context("cannot find this executable for the relay")?,
                    cancel: cancel.clone(),
                    detached,
                },
            )
            .map_err(super::backend_error)?;
        let handle = &**self.handle.insert(handle);

        check()?;
        step(&format!(
            "provisioning: CA trust, prompt, skills, {}git identity, {} configuration",
            if plan.workspace.is_some() { "workspace, " } else { "" },
            plan.provider.template
        ));
        let mut extra = rendered.files;
        if let Some(codex) = &values_codex {
            extra.push(bottle_provider::render::RenderedFile {
                path: format!("{GUEST_HOME}/.codex/auth.json"),
                mode: 0o600,
                contents: codex.agent_auth_json(),
            });
        }
        provision(handle, plan, ca.cert_pem().as_bytes(), &extra, &rendered.mcp_command)?;
        check()?;
        step("boundary self-test");
        let report = bottle_backend::selftest::run_in(handle).map_err(super::backend_error)?;
        self.state.log_bringup(&bottle_backend::selftest::render_table(&report));
        if !report.passed() {
            let escaped: Vec<String> = report.escaped().iter().map(|p| format!("{} ({})", p.name, p.detail)).collect();
            bail!(
                "boundary self-test failed, the bottle was removed: {}\n{}",
                escaped.join("; "),
                bottle_backend::selftest::render_table(&report)
            );
        }
        if self.printer.verbose > 0 {
            self.printer.step(&bottle_backend::selftest::render_table(&report));
        }
        check()?;
        Ok(())
    }

    /// Removes whatever exists after a failed launch: the bottle, then the state directory.
    fn abandon(&mut self) {
        if let Some(handle) = self.handle.take()
            && let Err(e) = handle.close()
        {
            self.printer.warn(&format!("{e}; `bot-bottle cleanup` removes what is left"));
        }
        if !self.state.is_preserved()
            && let Err(e) = std::fs::remove_dir_all(self.state.dir())
        {
            self.printer.warn(&format!("cannot remove `{}`: {e}", self.state.dir().display()));
        }
    }

    /// Tears the bottle down after the agent exited; the state directory stays for `audit verify`
    /// until `cleanup`.
    fn finish(&mut self, handle: Box<dyn Bottle>, code: Option<i32>) {
        let slug = handle.slug().to_string();
        if let Err(e) = handle.close() {
            self.printer.warn(&format!("{e}; `bot-bottle cleanup` removes what is left"));
        }
        self.set_status("exited", code);
        self.printer.step(&format!("bottle `{slug}` removed; its audit log stays in `{}`", self.state.dir().display()));
    }

    fn set_status(&self, status: &str, code: Option<i32>) {
        if let Ok(mut meta) = self.state.read_metadata() {
            status.clone_into(&mut meta.status);
            meta.exit_code = code;
            if let Err(e) = self.state.write_metadata(&meta) {
                self.printer.warn(&format!("cannot update the bottle's metadata: {e}"));
            }
        }
    }
}

/// Provisioning in the order of DESIGN.md §3: CA trust, prompt, skills, git identity. Every file is
/// written with its final owner, so the home needs no `chown` (the agent has no capabilities).
fn provision(
    handle: &dyn Bottle,
    plan: &LaunchPlan,
    ca_pem: &[u8],
    provider_files: &[bottle_provider::render::RenderedFile],
    mcp_command: &[String],
) -> anyhow::Result<()> {
    let prompt = std::fs::read(&plan.agent.prompt.host_path)
        .with_context(|| format!("cannot read `{}`", plan.agent.prompt.host_path.display()))?;
    let gitconfig = gitconfig(plan);
    let (ca_path, prompt_path) = (PathBuf::from(GUEST_CA_PATH), PathBuf::from(&plan.agent.prompt.guest_path));
    let gitconfig_path = PathBuf::from(format!("{GUEST_HOME}/.gitconfig"));
    // The supervise MCP server, for any MCP client that reads a project-style `.mcp.json`
    // (provider templates register it their own way).
    let mcp = serde_json::to_vec_pretty(&serde_json::json!({
        "mcpServers": { "bot-bottle": { "type": "http", "url": format!("http://{}:{SUPERVISE_PORT}/mcp", plan.ports.host) } }
    }))?;
    let mcp_path = PathBuf::from(format!("{GUEST_HOME}/.mcp.json"));
    let file = |dest, contents, owner| GuestFile { dest, contents, mode: 0o644, owner };
    let provider_paths: Vec<PathBuf> = provider_files.iter().map(|f| PathBuf::from(&f.path)).collect();
    let mut files = vec![
        file(&ca_path, ca_pem, ExecUser::Root),
        file(&prompt_path, &prompt, ExecUser::Agent),
        file(&gitconfig_path, gitconfig.as_bytes(), ExecUser::Agent),
        file(&mcp_path, &mcp, ExecUser::Agent),
    ];
    for (f, path) in provider_files.iter().zip(&provider_paths) {
        files.push(GuestFile { dest: path, contents: &f.contents, mode: f.mode, owner: ExecUser::Agent });
    }
    handle.put_files(&files).map_err(super::backend_error)?;
    // Appending to the bundle is what `update-ca-certificates` would do for one certificate, without
    // rehashing the whole store (a second per launch); the file in `/usr/local/share` keeps the CA
    // in the store if the agent ever runs `update-ca-certificates` itself.
    let trust = format!(
        "set -e; bundle=/etc/ssl/certs/ca-certificates.crt; mkdir -p /etc/ssl/certs; \
         cat {GUEST_CA_PATH} >> $bundle; grep -q \"$(sed -n 2p {GUEST_CA_PATH})\" $bundle"
    );
    let result = handle.exec(&trust, ExecUser::Root).map_err(super::backend_error)?;
    if !result.success() {
        bail!(
            "cannot add the bottle CA to the agent's trust store: {}",
            String::from_utf8_lossy(&result.stderr).trim()
        );
    }
    for skill in &plan.agent.skills {
        handle.cp_in(&skill.source, &PathBuf::from(&skill.dest), ExecUser::Agent).map_err(super::backend_error)?;
    }
    // A copy, never a mount: what the agent does to it (hooks included) stays in the bottle.
    if let Some(w) = &plan.workspace {
        handle.cp_in(&w.source, &PathBuf::from(&w.dest), ExecUser::Agent).map_err(super::backend_error)?;
    }
    if !mcp_command.is_empty() {
        let script = mcp_command.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
        let result =
            handle.exec(&format!("cd {GUEST_HOME} && {script}"), ExecUser::Agent).map_err(super::backend_error)?;
        if !result.success() {
            bail!(
                "cannot register the supervise MCP server with `{}`: {}",
                mcp_command.join(" "),
                String::from_utf8_lossy(&result.stderr).trim()
            );
        }
    }
    Ok(())
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The agent's `~/.gitconfig`: identity from the plan.
fn gitconfig(plan: &LaunchPlan) -> String {
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " "));
    let mut s = String::from("[user]\n");
    if let Some(name) = &plan.agent.git_user.name {
        s.push_str(&format!("\tname = {}\n", quote(&name.value)));
    }
    if let Some(email) = &plan.agent.git_user.email {
        s.push_str(&format!("\temail = {}\n", quote(&email.value)));
    }
    s.push_str("[init]\n\tdefaultBranch = main\n");
    // Every declared upstream goes through the git-gate, under the URL the user knows.
    for repo in &plan.git_gate.repos {
        s.push_str(&format!("[url {}]\n\tinsteadOf = {}\n", quote(&repo.gate_url), quote(&repo.url)));
    }
    s
}

/// A fresh control token in `state/<slug>/control-token` (0600).
fn write_control_token(state: &BottleState) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = state.dir().join(crate::control::TOKEN_FILE);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(token.as_bytes())?;
    Ok(token)
}

/// The SSH key of every git-gate repo, read before anything is created. Keys go to the sidecar
/// only, as files named after the repo.
fn read_git_keys(plan: &LaunchPlan) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut keys = Vec::new();
    for repo in &plan.git_gate.repos {
        match &repo.key {
            RepoKeyPlan::Identity { path } => {
                let key = std::fs::read(path).map_err(|e| {
                    Diagnostic::new(format!(
                        "git-gate repo `{}`: cannot read its identity `{}`: {e}",
                        repo.name,
                        path.display()
                    ))
                    .at(repo.from.location.clone())
                    .key(format!("git-gate.repos.{}.identity", repo.name))
                    .hint("point `identity` at the SSH private key for this upstream (readable by you)")
                })?;
                keys.push((repo.name.clone(), key));
            }
            RepoKeyPlan::Provisioned { provider, .. } => {
                return Err(Diagnostic::new(format!(
                    "git-gate repo `{}`: deploy keys provisioned through `{provider}` cannot be launched yet",
                    repo.name
                ))
                .at(repo.from.location.clone())
                .key(format!("git-gate.repos.{}.provisioned_key", repo.name))
                .hint("give the repo an `identity` (the path of an SSH private key) instead")
                .into());
            }
        }
    }
    Ok(keys)
}

/// The git gate's config: one mirror per declared repo, its key where the backend puts it.
fn git_gate_config(plan: &LaunchPlan, layout: &bottle_backend::SidecarLayout) -> Option<GitGateConfig> {
    if plan.git_gate.repos.is_empty() {
        return None;
    }
    Some(GitGateConfig {
        repos: plan
            .git_gate
            .repos
            .iter()
            .map(|r| RepoConfig {
                name: r.name.clone(),
                url: r.url.clone(),
                identity_file: layout.keys_dir.join(&r.name),
                host_key: r.host_key.clone(),
                push_refs: r.push_refs.clone(),
            })
            .collect(),
        mirrors_dir: layout.mirrors_dir.clone(),
        limits: bottle_gitgate::GateLimits::default(),
    })
}

/// The proxy's config from the plan's egress section.
pub fn egress_config(
    plan: &LaunchPlan,
    upstream_ca: Option<PathBuf>,
    placeholder: &str,
) -> anyhow::Result<EgressConfig> {
    let mut routes = Vec::new();
    for r in &plan.egress.routes {
        let matches: Vec<MatchConfig> = serde_json::from_value(serde_json::to_value(&r.matches)?)
            .with_context(|| format!("route `{}`: matches", r.host))?;
        let dlp: DlpSettings = serde_json::from_value(serde_json::to_value(&r.dlp)?)
            .with_context(|| format!("route `{}`: dlp", r.host))?;
        routes.push(RouteConfig {
            host: r.port.map_or_else(|| r.host.clone(), |p| format!("{}:{p}", r.host)),
            auth: r.auth.as_ref().map(|a| AuthConfig {
                scheme: a.scheme.clone(),
                token_slot: a.token_slot.clone(),
                // A placeholder route swaps the placeholder inside its own header instead.
                header: r.placeholder.is_none().then(|| a.header.clone()),
            }),
            matches,
            dlp,
            // The launch's placeholder (a forwarded Codex login's stand-in token is made per launch).
            placeholder: r.placeholder.as_ref().map(|p| bottle_egress::PlaceholderConfig {
                header: p.header.clone(),
                value: if placeholder.is_empty() { p.value.clone() } else { placeholder.to_owned() },
            }),
        });
    }
    let log = plan.egress.log.try_into().map_err(|e: String| anyhow::anyhow!("egress.log: {e}"))?;
    Ok(EgressConfig { log, routes, upstream_ca, hosts: plan.egress.hosts.clone(), ..EgressConfig::default() })
}

/// The agent image a launch of `provider` would use, worked out without the engine: the offline
/// recipe's content-hash tag (a launch prefers an existing image of the same inputs).
fn planned_agent_image(provider: &Provider, dockerfile: Option<&std::path::Path>) -> anyhow::Result<String> {
    let base = ImageRecipe::agent(BuildMode::Offline).tag;
    let image = &provider.template.image;
    Ok(match dockerfile {
        Some(path) => ImageRecipe::custom(&provider.name, &base, path).map_err(super::backend_error)?.tag,
        None if image.npm.is_empty() => base,
        None => ImageRecipe::provider(BuildMode::Offline, &provider.name, &base, &image.npm, &image.links).tag,
    })
}

/// The smolmachines part of `start --dry-run`: the bundle, the pack cache key and every `smolvm`
/// command line the launch would run, for the installed smolvm (or the version it plans for).
pub fn smolmachines_plan(ctx: &Context, plan: &LaunchPlan, provider: &Provider) -> anyhow::Result<serde_json::Value> {
    use bottle_backend::smolmachines::{self, cli::SmolvmCli, runner::TokioRunner, version};
    let runner = TokioRunner::new().map_err(super::backend_error)?;
    let (cli, detected) = match smolmachines::detect(&runner) {
        Ok(cli) => (cli, true),
        Err(_) => (SmolvmCli::new("smolvm", version::PLANNING_DEFAULT), false),
    };
    let dockerfile = provider::dockerfile(plan, provider, ctx.home.root())?;
    let image = planned_agent_image(provider, dockerfile.as_deref())?;
    let cache = smolmachines::bundle::cache_dir().map_err(super::backend_error)?;
    let vars = bottle_provider::apply::vars(provider, plan);
    let mode = if plan.headless.is_some() {
        provider::Mode::Headless("«prompt»".into())
    } else {
        provider::Mode::Interactive
    };
    let command = provider::command(provider, &vars, &mode, false)?;
    Ok(smolmachines::dry_run(plan, &cli, detected, &image, &cache, &command))
}
