//! `bot-bottle doctor`: checks this machine for what bottles need, each with pass/fail and a hint.
//!
//! Every check probes the real thing (opens the Docker socket and asks the engine, opens `/dev/kvm`,
//! forks into a user namespace, writes into the home) rather than trusting a config file. Failures
//! of things only one backend needs are warnings; the exit code is 1 only when a check that every
//! launch needs fails.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use bottle_state::WritableStatus;
use serde::Serialize;

use crate::cli::{DoctorArgs, Format, GlobalArgs};
use crate::context::Context;
use crate::printer::Printer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    hint: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Pass, detail: detail.into(), hint: None }
    }

    fn not_ok(name: &'static str, status: Status, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { name, status, detail: detail.into(), hint: Some(hint.into()) }
    }
}

#[derive(Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
}

pub fn run(global: &GlobalArgs, args: &DoctorArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let ctx = Context::new(global)?;
    if let Some(slug) = &args.bottle {
        return bottle_selftest(&ctx, slug, args.format, printer);
    }
    let mut checks = Vec::new();
    let engine = docker_engine(&mut checks);
    checks.push(runsc(engine.as_ref()));
    checks.push(smolvm());
    checks.push(kvm());
    checks.push(userns());
    checks.push(mmdebstrap());
    checks.push(home_writable(&ctx));
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    let report = Report { ok, checks };
    match args.format {
        Format::Json => printer.json(&report)?,
        Format::Text => {
            let mut s = String::new();
            for c in &report.checks {
                let mark = match c.status {
                    Status::Pass => printer.paint("pass", "32"),
                    Status::Warn => printer.paint("warn", "33"),
                    Status::Fail => printer.paint("FAIL", "31;1"),
                };
                let _ = writeln!(s, "{mark}  {:<18} {}", c.name, c.detail);
                if let Some(h) = &c.hint {
                    let _ = writeln!(s, "      {:<18} hint: {h}", "");
                }
            }
            printer.out(&s)?;
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_FAILURE) })
}

/// Facts read from the engine.
struct Engine {
    runtimes: Vec<String>,
}

fn docker_socket() -> Result<PathBuf, String> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => match h.strip_prefix("unix://") {
            Some(p) => Ok(PathBuf::from(p)),
            None => Err(format!("DOCKER_HOST is `{h}`; bot-bottle talks to the engine over a unix socket")),
        },
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

fn docker_engine(checks: &mut Vec<Check>) -> Option<Engine> {
    const NAME: &str = "docker engine";
    let hint = "install and start it: `./scripts/setup` (Debian: `apt-get install docker.io` then start `dockerd`)";
    let socket = match docker_socket() {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check::not_ok(NAME, Status::Fail, e, "set DOCKER_HOST=unix:///path/to/docker.sock"));
            return None;
        }
    };
    let version = match docker_get(&socket, "/version") {
        Ok(v) => v,
        Err(e) => {
            checks.push(Check::not_ok(NAME, Status::Fail, format!("{}: {e}", socket.display()), hint));
            return None;
        }
    };
    let field = |k: &str| version.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
    let api = field("ApiVersion");
    let detail = format!("engine {} (API {api}) at {}", field("Version"), socket.display());
    let api_ok = api.split_once('.').and_then(|(maj, min)| Some((maj.parse::<u32>().ok()?, min.parse::<u32>().ok()?)));
    match api_ok {
        Some((1, minor)) if minor >= 41 => checks.push(Check::pass(NAME, detail)),
        _ => checks.push(Check::not_ok(NAME, Status::Fail, detail, "bot-bottle needs Engine API 1.41 or newer")),
    }
    let info = docker_get(&socket, "/info").ok()?;
    let runtimes =
        info.get("Runtimes").and_then(|r| r.as_object()).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    Some(Engine { runtimes })
}

/// A minimal HTTP/1.0 GET over the engine's unix socket; the answer is JSON.
fn docker_get(socket: &Path, path: &str) -> Result<serde_json::Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    let timeout = Some(Duration::from_secs(5));
    stream.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    stream.set_write_timeout(timeout).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.take(4 << 20).read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed answer from the engine")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("engine answered HTTP {status} to {path}"));
    }
    serde_json::from_str(body).map_err(|e| format!("engine answer to {path} is not JSON: {e}"))
}

fn runsc(engine: Option<&Engine>) -> Check {
    const NAME: &str = "gvisor (runsc)";
    match engine {
        None => Check::not_ok(NAME, Status::Warn, "unknown: the engine is unreachable", "fix the engine first"),
        Some(e) if e.runtimes.iter().any(|r| r == "runsc") => match probe_gvisor() {
            Ok(bottle_backend::docker::RuntimeProbe::Works(_)) => {
                Check::pass(NAME, "registered, and a probe container starts under it: agents run with gVisor")
            }
            Ok(bottle_backend::docker::RuntimeProbe::Broken { error, .. }) => Check::not_ok(
                NAME,
                Status::Warn,
                format!("registered, but a probe container fails under it ({error}): agents run under runc"),
                "a broken runtime is skipped with a warning at each launch; fix or unregister `runsc`",
            ),
            Ok(bottle_backend::docker::RuntimeProbe::NotRegistered) => {
                Check::not_ok(NAME, Status::Warn, "not registered: agents run under runc", "optional hardening")
            }
            Err(why) => Check::not_ok(
                NAME,
                Status::Warn,
                format!("registered, not probed: {why}"),
                "build the images (`bot-bottle image build --offline`) and run doctor again",
            ),
        },
        Some(_) => Check::not_ok(
            NAME,
            Status::Warn,
            "not registered: agents run under the default runtime (runc)",
            "optional hardening: install gVisor and register `runsc` in /etc/docker/daemon.json",
        ),
    }
}

/// Starts a throwaway container under `runsc` with the agent image, as every launch does.
fn probe_gvisor() -> Result<bottle_backend::docker::RuntimeProbe, String> {
    use bottle_backend::image::{BuildMode, ImageRecipe};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let backend = bottle_backend::docker::DockerBackend::connect(std::sync::Arc::new(rt)).map_err(|e| e.to_string())?;
    let image = [ImageRecipe::agent(BuildMode::Offline), ImageRecipe::agent(BuildMode::Registry)]
        .into_iter()
        .map(|r| r.tag)
        .find(|tag| backend.runtime().block_on(backend.engine().docker().inspect_image(tag)).is_ok())
        .ok_or_else(|| "no agent image yet".to_owned())?;
    Ok(backend.probe_gvisor(&image))
}

/// `doctor --bottle SLUG`: the boundary self-test again, inside a running bottle.
fn bottle_selftest(ctx: &Context, slug: &str, format: Format, printer: &Printer) -> anyhow::Result<ExitCode> {
    let backends = crate::backends::Backends::connect(&ctx.home)?;
    let bottle = backends.for_slug(&ctx.home, slug)?.open(slug).map_err(super::backend_error)?;
    let report = bottle_backend::selftest::run_in(bottle.as_ref()).map_err(super::backend_error)?;
    match format {
        Format::Json => printer.json(&report)?,
        Format::Text => printer.out(&bottle_backend::selftest::render_table(&report))?,
    }
    if report.passed() {
        printer.step(&format!("{slug}: every probe was blocked"));
        Ok(ExitCode::SUCCESS)
    } else {
        printer.error(&format!("{slug}: the boundary leaks; stop the bottle (`bot-bottle stop {slug}`)"));
        Ok(ExitCode::from(crate::EXIT_FAILURE))
    }
}

fn smolvm() -> Check {
    use bottle_backend::smolmachines::{self, runner::TokioRunner, version};
    const NAME: &str = "smolvm";
    let cli = TokioRunner::new().map_err(|e| e.to_string()).and_then(|runner| smolmachines::detect(&runner));
    match cli {
        Ok(cli) if cli.version.can_launch() => {
            let notes: Vec<&str> = cli.version.problems().iter().map(|p| p.what).collect();
            let detail = if notes.is_empty() {
                format!("{} {} (the smolmachines backend can launch)", cli.program, cli.version)
            } else {
                format!("{} {}; worked around: {}", cli.program, cli.version, notes.join("; "))
            };
            Check::pass(NAME, detail)
        }
        Ok(cli) => {
            let bad: Vec<&str> = cli
                .version
                .problems()
                .iter()
                .filter(|p| p.severity == version::Severity::Refuse)
                .map(|p| p.what)
                .collect();
            Check::not_ok(
                NAME,
                Status::Warn,
                format!("{} {} is known to be unsafe for bottles: {}", cli.program, cli.version, bad.join("; ")),
                format!("install smolvm {} or later; launches on this version are refused", version::MIN_LAUNCH),
            )
        }
        Err(why) => Check::not_ok(
            NAME,
            Status::Warn,
            why,
            format!(
                "only the smolmachines backend needs it: install smolvm {} or later (README), or point `{}` at it",
                version::MIN_LAUNCH,
                smolmachines::SMOLVM_VAR
            ),
        ),
    }
}

fn kvm() -> Check {
    const NAME: &str = "/dev/kvm";
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => Check::pass(NAME, "present and usable"),
        Err(e) => Check::not_ok(
            NAME,
            Status::Warn,
            format!("cannot open: {e}"),
            "micro-VMs need KVM: enable virtualisation, or add your user to the `kvm` group",
        ),
    }
}

fn userns() -> Check {
    const NAME: &str = "user namespaces";
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Check::not_ok(
            NAME,
            Status::Warn,
            "disabled (kernel.unprivileged_userns_clone = 0)",
            "the namespaces backend needs them: `sysctl kernel.unprivileged_userns_clone=1`",
        );
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Check::not_ok(
            NAME,
            Status::Warn,
            "disabled (user.max_user_namespaces = 0)",
            "raise user.max_user_namespaces",
        );
    }
    match Command::new("unshare").args(["--user", "--map-root-user", "true"]).stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Check::pass(NAME, "a process can enter a new user namespace"),
        Ok(out) => Check::not_ok(
            NAME,
            Status::Warn,
            format!("`unshare --user` failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            "the namespaces backend needs unprivileged user namespaces (check AppArmor's userns restriction)",
        ),
        Err(e) => Check::not_ok(NAME, Status::Warn, format!("cannot run `unshare`: {e}"), "install util-linux"),
    }
}

fn mmdebstrap() -> Check {
    const NAME: &str = "mmdebstrap";
    match Command::new("mmdebstrap").arg("--version").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Check::pass(NAME, String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        _ => Check::not_ok(
            NAME,
            Status::Warn,
            "not found",
            "offline image builds need it: `apt-get install mmdebstrap` (or run `./scripts/setup`)",
        ),
    }
}

fn home_writable(ctx: &Context) -> Check {
    const NAME: &str = "home";
    let root = ctx.home.root().display().to_string();
    match ctx.home.check_writable() {
        Ok(WritableStatus::Writable) => Check::pass(NAME, format!("{root} is writable")),
        Ok(WritableStatus::CanCreate(parent)) => Check::pass(
            NAME,
            format!("{root} does not exist yet; {} is writable, so it can be created", parent.display()),
        ),
        Err(e) => Check::not_ok(
            NAME,
            Status::Fail,
            format!("cannot write: {e}"),
            "choose a writable home with `--home DIR` or `BOT_BOTTLE_HOME`",
        ),
    }
}
