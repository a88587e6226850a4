//! `bot-bottle dashboard`: every bottle of this home, what each has asked for, and its agent one key
//! away.
//!
//! A background thread polls the engine (the rows `list` prints) and every running bottle's control
//! API (egress counters, pending proposals) every second, and reads the newest audit lines; the main
//! thread waits for keys with a short timeout and redraws when something changed or a second passed,
//! and ratatui writes only the cells that changed. Nothing a bottle does — vanishing mid-poll, a
//! control API that does not answer, a broken manifest — ends the view: it shows on the bottle's
//! row or in the status line.
//!
//! Agents run through `bot-bottle attach` (the command line the launch kept for the bottle): inside
//! tmux in one pane to the right of the dashboard (`tmux.rs`), elsewhere — and whenever tmux fails —
//! on this terminal, the dashboard taking it back when the agent exits. Decisions on proposals take
//! the supervise view's code paths.
//!
//! Submodules: `app` (state and keys, pure), `view` (drawing), `tmux` (the right pane).

mod app;
mod tmux;
mod view;

use std::io::{self, IsTerminal as _, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bottle_core::Diagnostic;
use crossterm::event::{self, Event, KeyEventKind};
use ratatui::DefaultTerminal;

use self::app::{Action, AgentChoice, App, BottleView, Counters, LogKind, Message, Snapshot};
use self::tmux::{PaneSetup, RightPane, Shown, SystemTmux};
use crate::backends::Backends;
use crate::cli::GlobalArgs;
use crate::commands::supervise::tui::app::Snapshot as SuperviseSnapshot;
use crate::commands::supervise::tui::{carry_out, with_terminal_released};
use crate::commands::{bottles, context, resolve_agent};
use crate::context::Context;
use crate::control::{self, Control};
use crate::printer::Printer;

/// How often the bottles are polled.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long the main thread waits for a key.
const INPUT_WAIT: Duration = Duration::from_millis(200);
/// Redraw at least this often (ages count up).
const TICK: Duration = Duration::from_secs(1);
/// Audit lines kept per bottle for the detail pane.
const AUDIT_LINES: usize = 40;
/// Lines of a log the log view keeps.
const LOG_LINES: usize = 2000;
/// How much of the end of a log file is read.
const TAIL_BYTES: u64 = 256 << 10;

pub fn run(global: &GlobalArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        return Err(Diagnostic::new("the dashboard needs a terminal")
            .hint("`bot-bottle list` and `bot-bottle supervise --once` print the same for scripts")
            .into());
    }
    let ctx = context(global)?;
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let exe = std::env::current_exe().context("cannot find this executable")?;
    // Ctrl-C in a foreground child (a launch, an attach) must not end the dashboard too: the
    // dashboard's own Ctrl-C arrives as a key in raw mode.
    let signals =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start a runtime")?;
    let _sigint = signals.block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) });

    let (snapshots_tx, snapshots) = mpsc::channel();
    let (wake, wake_rx) = mpsc::channel();
    let poll_ctx = Context { home: ctx.home.clone(), user_home: ctx.user_home.clone(), cwd: ctx.cwd.clone() };
    let poller = std::thread::Builder::new()
        .name("dashboard-poll".into())
        .spawn(move || poll(&poll_ctx, &wake_rx, &snapshots_tx))
        .context("cannot start the poller")?;
    let (done_tx, done) = mpsc::channel();
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let mut dashboard = Dashboard {
        ctx,
        exe,
        app: App::new(color, tmux::inside()),
        controls: Vec::new(),
        pane: RightPane::default(),
        wake,
        done: done_tx,
        decided: 0,
    };
    let result = dashboard.event_loop(&mut terminal, &snapshots, &done);
    ratatui::try_restore().context("cannot restore the terminal")?;
    // Let the poller finish its round and drop its engine connection before the process exits,
    // rather than tearing its runtime down mid-call; one that hangs (a control API timing out)
    // is not waited for long.
    let decided = dashboard.decided;
    drop(dashboard);
    drop(snapshots);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !poller.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    result?;
    if decided > 0 {
        let n = decided;
        printer.step(&format!("{n} decision{} sent", if n == 1 { "" } else { "s" }));
    }
    Ok(ExitCode::SUCCESS)
}

/// One poll's result: what the view shows, and the control APIs decisions go to.
struct Polled {
    view: Snapshot,
    controls: Vec<Control>,
}

/// The event loop's world.
struct Dashboard {
    ctx: Context,
    exe: PathBuf,
    app: App,
    controls: Vec<Control>,
    pane: RightPane,
    wake: Sender<()>,
    /// Background work (a stop) reports here.
    done: Sender<Message>,
    decided: usize,
}

impl Dashboard {
    fn event_loop(
        &mut self,
        terminal: &mut DefaultTerminal,
        snapshots: &Receiver<Polled>,
        done: &Receiver<Message>,
    ) -> anyhow::Result<()> {
        let mut dirty = true;
        let mut drawn_at = Instant::now();
        loop {
            if dirty || drawn_at.elapsed() >= TICK {
                terminal.draw(|frame| view::draw(frame, &mut self.app, Instant::now()))?;
                drawn_at = Instant::now();
                dirty = false;
            }
            if event::poll(INPUT_WAIT)? {
                match event::read()? {
                    Event::Key(key) if key.kind != KeyEventKind::Release => {
                        let action = self.app.on_key(key);
                        if matches!(action, Action::Quit) {
                            return Ok(());
                        }
                        self.act(terminal, action);
                        dirty = true;
                    }
                    // The next draw fits the new size.
                    Event::Resize(..) => dirty = true,
                    _ => {}
                }
            }
            // Only the newest poll matters (several queue up while an agent had the terminal).
            if let Some(polled) = snapshots.try_iter().last() {
                self.controls = polled.controls;
                self.app.update(polled.view, Instant::now());
                if let app::Mode::Logs { slug, kind, .. } = &self.app.mode {
                    self.app.log_lines = read_log(&self.ctx, slug, *kind);
                }
                dirty = true;
            }
            for message in done.try_iter() {
                self.app.say(message);
                let _ = self.wake.send(());
                dirty = true;
            }
        }
    }

    fn act(&mut self, terminal: &mut DefaultTerminal, action: Action) {
        match action {
            Action::None | Action::Quit => {}
            Action::Proposal(action) => {
                if carry_out(
                    terminal,
                    &self.ctx.home,
                    &self.controls,
                    &mut self.app.proposals,
                    action,
                    &mut self.decided,
                ) {
                    let _ = self.wake.send(());
                }
            }
            Action::OpenPicker => {
                let agents = agents(&self.ctx);
                self.app.open_picker(agents);
            }
            Action::LoadLog { slug, kind } => self.app.log_lines = read_log(&self.ctx, &slug, kind),
            Action::Stop(slug) => self.stop(slug),
            Action::Attach(slug) => {
                let resume = self.ctx.home.state(&slug).read_metadata().is_ok_and(|m| !m.resume_command.is_empty());
                let command = tmux::attach_command(&self.exe, self.ctx.home.root(), &slug, resume);
                self.run_agent(terminal, &command, &format!("`{slug}`"), &Foreground::Attach { slug, resume });
            }
            Action::Launch(agent) => {
                let command = tmux::launch_command(&self.exe, self.ctx.home.root(), &agent);
                self.run_agent(terminal, &command, &format!("a new `{agent}` bottle"), &Foreground::Launch(agent));
            }
        }
    }

    /// Runs a pane command in the right tmux pane, else (outside tmux, or tmux failed) on this
    /// terminal.
    fn run_agent(&mut self, terminal: &mut DefaultTerminal, command: &str, what: &str, fallback: &Foreground) {
        let mut note = None;
        if self.app.tmux {
            let env = pane_env();
            let own_pane = std::env::var("TMUX_PANE").ok();
            let setup = PaneSetup { own_pane: own_pane.as_deref(), cwd: &self.ctx.cwd, env: &env };
            match self.pane.show(&SystemTmux, &setup, command) {
                Ok(shown) => {
                    let how = if shown == Shown::Split { "in a new pane" } else { "in the right pane" };
                    self.app.say(Message::Info(format!("{what} runs {how}")));
                    let _ = self.wake.send(());
                    return;
                }
                Err(e) => note = Some(format!("tmux failed ({e:#}); ran on this terminal instead")),
            }
        }
        let outcome = with_terminal_released(terminal, || self.foreground(fallback));
        let message = match (outcome, note) {
            (Ok(Ok(text)), Some(note)) => Message::Error(format!("{note}; {text}")),
            (Ok(Ok(text)), None) => Message::Info(text),
            (Ok(Err(e)) | Err(e), _) => Message::Error(format!("{e:#}")),
        };
        self.app.say(message);
        let _ = self.wake.send(());
    }

    /// The foreground handoff: the agent (or a launch, then its agent) on this terminal.
    fn foreground(&self, what: &Foreground) -> anyhow::Result<String> {
        let base = || {
            let mut cmd = Command::new(&self.exe);
            cmd.arg("--home").arg(self.ctx.home.root());
            cmd
        };
        let attach = |slug: &str, resume: bool| -> anyhow::Result<String> {
            if resume {
                let status = base().args(["attach", "--resume", slug]).status().context("cannot run `attach`")?;
                if status.success() {
                    return Ok(format!("back from `{slug}`"));
                }
            }
            let status = base().args(["attach", slug]).status().context("cannot run `attach`")?;
            Ok(format!("back from `{slug}` ({status})"))
        };
        match what {
            Foreground::Attach { slug, resume } => attach(slug, *resume),
            Foreground::Launch(agent) => {
                let out = base()
                    .args(["start", agent, "--detach", "--yes"])
                    .stdin(Stdio::inherit())
                    .stderr(Stdio::inherit())
                    .output()
                    .context("cannot run `start`")?;
                let slug = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if !out.status.success() || slug.is_empty() {
                    let _ = writeln!(
                        io::stderr(),
                        "\nthe launch failed ({}); press Enter to go back to the dashboard",
                        out.status
                    );
                    let _ = io::stdin().read(&mut [0u8; 1]);
                    anyhow::bail!("launching `{agent}` failed ({})", out.status);
                }
                attach(&slug, false)
            }
        }
    }

    /// Stops `slug` in the background (it takes seconds); the outcome arrives as a message.
    fn stop(&self, slug: String) {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--home").arg(self.ctx.home.root()).args(["stop", &slug]).stdin(Stdio::null());
        let done = self.done.clone();
        let spawned = std::thread::Builder::new().name("dashboard-stop".into()).spawn(move || {
            let message = match cmd.output() {
                Ok(out) if out.status.success() => Message::Info(format!("stopped `{slug}`")),
                Ok(out) => {
                    let why = String::from_utf8_lossy(&out.stderr);
                    let why = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no detail");
                    Message::Error(format!("stopping `{slug}` failed: {why}"))
                }
                Err(e) => Message::Error(format!("cannot run `stop`: {e}")),
            };
            let _ = done.send(message);
        });
        if let Err(e) = spawned {
            let _ = self.done.send(Message::Error(format!("cannot stop: {e}")));
        }
    }
}

/// What runs on this terminal when tmux is not there.
enum Foreground {
    Attach { slug: String, resume: bool },
    Launch(String),
}

/// Variables a pane's `bot-bottle` needs that a tmux server started elsewhere may lack.
fn pane_env() -> Vec<(String, String)> {
    ["DOCKER_HOST", "BOT_BOTTLE_BACKEND", "BOT_BOTTLE_SMOLVM", "NO_COLOR", "XDG_CACHE_HOME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect()
}

/// The agents the picker offers: each loaded with its bottles, so a broken manifest shows its
/// first error line and cannot be picked.
fn agents(ctx: &Context) -> Result<Vec<AgentChoice>, String> {
    let catalog = ctx.catalog().map_err(|e| first_line(&format!("{e:#}")))?;
    Ok(catalog
        .agents
        .keys()
        .map(|name| AgentChoice {
            name: name.clone(),
            error: resolve_agent(&catalog, name, &[]).err().map(|e| first_line(&format!("{e:#}"))),
        })
        .collect())
}

fn first_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_owned()
}

/// The newest lines of a bottle's log, for the log view.
fn read_log(ctx: &Context, slug: &str, kind: LogKind) -> Vec<String> {
    let state = ctx.home.state(slug);
    let (path, audit) = match kind {
        LogKind::Bringup => (state.bringup_log(), false),
        LogKind::Audit => (state.audit_log(), true),
    };
    match tail(&path, LOG_LINES) {
        Ok(lines) if audit => lines.iter().map(|l| view::audit_summary(l)).collect(),
        Ok(lines) => lines,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => vec![format!("cannot read `{}`: {e}", path.display())],
    }
}

/// The last `n` lines of `path`, reading at most [`TAIL_BYTES`] from its end.
fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line was cut by the seek.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..].iter().map(|l| (*l).to_owned()).collect())
}

/// The poller: lists the bottles, asks each running one's control API for its counters and
/// proposals, reads its newest audit lines, every [`POLL_EVERY`] or at once when woken. Stops when
/// the view is gone.
fn poll(ctx: &Context, wake: &Receiver<()>, out: &Sender<Polled>) {
    let mut backends: Option<Backends> = None;
    let mut controls: Vec<Control> = Vec::new();
    loop {
        let polled = poll_once(ctx, &mut backends, &mut controls);
        if out.send(polled).is_err() {
            return;
        }
        match wake.recv_timeout(POLL_EVERY) {
            Ok(()) => while wake.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn poll_once(ctx: &Context, backends: &mut Option<Backends>, controls: &mut Vec<Control>) -> Polled {
    let listed = match backends {
        Some(b) => Ok(b),
        None => Backends::connect(&ctx.home).map(|b| backends.insert(b)),
    }
    .and_then(|b| Ok((bottles::rows(ctx, b)?, control::running_on(&ctx.home, b)?)));
    let (rows, discovery_error) = match listed {
        Ok((rows, found)) => {
            *controls = found;
            (rows, None)
        }
        Err(e) => {
            // Connect again next time: the engine may have restarted.
            *backends = None;
            (Vec::new(), Some(first_line(&format!("{e:#}"))))
        }
    };
    let (pending, unreachable) = crate::commands::supervise::pending(controls);
    let bottles = rows
        .into_iter()
        .map(|row| {
            let control = controls.iter().find(|c| c.slug == row.slug);
            let (counters, error) = match (row.status.as_str(), control) {
                ("running", Some(c)) => match c.get("/v1/counters") {
                    Ok(v) => (Some(sum_counters(&v)), None),
                    Err(e) => (None, Some(short_error(&row.slug, &format!("{e:#}")))),
                },
                ("running", None) => (None, Some("no control API found".to_owned())),
                _ => (None, None),
            };
            let audit = tail(&ctx.home.state(&row.slug).audit_log(), AUDIT_LINES)
                .map(|lines| lines.iter().map(|l| view::audit_summary(l)).collect())
                .unwrap_or_default();
            BottleView { row, counters, error, audit }
        })
        .collect();
    let proposals = SuperviseSnapshot { bottles: controls.len(), pending, unreachable, discovery_error: None };
    Polled { view: Snapshot { bottles, proposals, discovery_error }, controls: controls.clone() }
}

/// An error without the `bottle \`slug\`: ` its row already says.
fn short_error(slug: &str, e: &str) -> String {
    let e = first_line(e);
    e.strip_prefix(&format!("bottle `{slug}`: ")).map_or_else(|| e.clone(), str::to_owned)
}

/// `{"hosts": {host: {allowed, denied, dlp_hits}}}` summed over the hosts.
fn sum_counters(v: &serde_json::Value) -> Counters {
    let mut c = Counters::default();
    for host in v.get("hosts").and_then(serde_json::Value::as_object).into_iter().flat_map(|m| m.values()) {
        let n = |k: &str| host.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        c.allowed += n("allowed");
        c.denied += n("denied");
        c.dlp_hits += n("dlp_hits");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_sum_over_hosts_and_tolerate_junk() {
        let v = json!({"hosts": {"a": {"allowed": 3, "denied": 1, "dlp_hits": 0}, "b": {"allowed": 2, "dlp_hits": 4}, "c": "x"}});
        assert_eq!(sum_counters(&v), Counters { allowed: 5, denied: 1, dlp_hits: 4 });
        assert_eq!(sum_counters(&json!(null)), Counters::default());
    }

    #[test]
    fn tail_reads_the_last_lines_of_a_large_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let last = tail(&path, 3).unwrap();
        assert_eq!(last, ["line 99997", "line 99998", "line 99999"]);
        let all = tail(&path, usize::MAX).unwrap();
        assert!(all.first().is_some_and(|l| l.starts_with("line ")), "no cut line first: {:?}", all.first());
        assert!(tail(&dir.path().join("missing"), 3).is_err());
    }

    #[test]
    fn errors_lose_the_slug_prefix() {
        assert_eq!(short_error("a", "bottle `a`: cannot reach it\ncaused by"), "cannot reach it");
        assert_eq!(short_error("a", "other"), "other");
    }
}
