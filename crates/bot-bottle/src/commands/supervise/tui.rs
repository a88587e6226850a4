//! The interactive supervise view: every running bottle's pending proposals in one list, decided
//! from the keyboard.
//!
//! A background thread polls the bottles' control APIs every second and hands each snapshot over a
//! channel; the main thread waits for keys with a short timeout, so input, refresh and resize never
//! block one another, and ratatui redraws only the cells that changed (no flicker). A bottle that
//! stops or answers an error loses its rows and shows in the status line; a decision that lost a
//! race (404, 409) is a message. `m` leaves the terminal to `$EDITOR` and takes it back.
//!
//! Submodules: `app` (state and keys, pure), `view` (drawing), `route` (YAML, checks and the
//! editor round trip of a route).

pub(crate) mod app;
mod route;
pub(crate) mod view;

use std::io::{self, IsTerminal as _};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bottle_core::Diagnostic;
use crossterm::event::{self, Event, KeyEventKind};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::DefaultTerminal;

use self::app::{Action, App, Key, Message, Snapshot};
use self::route::Edited;
use crate::commands::supervise::{Decision, Pending, decide, pending};
use crate::control::{self, ApiError, Control};
use crate::printer::Printer;

/// How often the bottles are polled.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long the main thread waits for a key before redrawing (ages tick, snapshots arrive).
const INPUT_WAIT: Duration = Duration::from_millis(200);

/// Runs the view until `q`. Needs a terminal on stdout.
pub fn run(home: &bottle_state::Home, printer: &Printer) -> anyhow::Result<ExitCode> {
    if !io::stdout().is_terminal() {
        return Err(Diagnostic::new("supervise needs a terminal; use --once, approve, reject")
            .hint("`bot-bottle supervise --once --format json` prints the pending proposals for scripts")
            .into());
    }
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let (snapshots_tx, snapshots) = mpsc::channel();
    let (wake, wake_rx) = mpsc::channel();
    let poll_home = home.clone();
    std::thread::Builder::new()
        .name("supervise-poll".into())
        .spawn(move || poll(&poll_home, &wake_rx, &snapshots_tx))
        .context("cannot start the poller")?;
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = event_loop(&mut terminal, home, App::new(color), &snapshots, &wake);
    ratatui::try_restore().context("cannot restore the terminal")?;
    let decided = result?;
    if decided > 0 {
        printer.step(&format!("{decided} decision{} sent", if decided == 1 { "" } else { "s" }));
    }
    Ok(ExitCode::SUCCESS)
}

/// Draws, reads keys and applies snapshots until the operator quits; returns how many decisions
/// were sent.
fn event_loop(
    terminal: &mut DefaultTerminal,
    home: &bottle_state::Home,
    mut app: App,
    snapshots: &Receiver<Polled>,
    wake: &Sender<()>,
) -> anyhow::Result<usize> {
    let mut bottles: Vec<Control> = Vec::new();
    let mut decided = 0;
    loop {
        terminal.draw(|frame| view::draw(frame, &mut app, Instant::now()))?;
        // Resize needs nothing more: the next draw fits the new size.
        if event::poll(INPUT_WAIT)?
            && let Event::Key(key) = event::read()?
            && key.kind != KeyEventKind::Release
        {
            let action = app.on_key(key);
            if matches!(action, Action::Quit) {
                return Ok(decided);
            }
            if carry_out(terminal, home, &bottles, &mut app, action, &mut decided) {
                // Refresh at once: the list shows what the decision changed.
                let _ = wake.send(());
            }
        }
        while let Ok(polled) = snapshots.try_recv() {
            bottles = polled.bottles;
            app.update(polled.view, Instant::now());
        }
    }
}

/// Sends the decision `action` asks for (editing the route first for a modification) and shows
/// the outcome; whether anything was sent or settled. `Quit` is the caller's.
pub(crate) fn carry_out(
    terminal: &mut DefaultTerminal,
    home: &bottle_state::Home,
    bottles: &[Control],
    app: &mut App,
    action: Action,
    decided: &mut usize,
) -> bool {
    let acted = match action {
        Action::None | Action::Quit => return false,
        Action::Decide { proposal, decision } => {
            send(home, bottles, &proposal, &decision).map(|()| (proposal, decision.action))
        }
        Action::Modify(proposal) => match modify(terminal, home, bottles, &proposal) {
            Ok(true) => Ok((proposal, "modify")),
            Ok(false) => Err(Outcome::Info("modify cancelled; nothing was sent".into())),
            Err(outcome) => Err(outcome),
        },
    };
    settle(app, acted, decided);
    true
}

/// Shows what happened to a decision and drops its row when it is settled either way.
fn settle(app: &mut App, acted: Result<(Box<Pending>, &str), Outcome>, decided: &mut usize) {
    match acted {
        Ok((p, action)) => {
            *decided += 1;
            app.remove(&Key { slug: p.slug.clone(), id: p.id.clone() });
            let verb = match action {
                "approve" => "approved",
                "modify" => "approved as modified",
                _ => "rejected",
            };
            app.say(Message::Info(format!("{verb} {} ({}): {}", p.id, p.slug, p.summary)));
        }
        Err(Outcome::Gone(key, why)) => {
            app.remove(&key);
            app.say(Message::Info(why));
        }
        Err(Outcome::Info(m)) => app.say(Message::Info(m)),
        Err(Outcome::Refused(m) | Outcome::Failed(m)) => app.say(Message::Error(m)),
    }
}

/// Why a decision did not go through.
enum Outcome {
    /// The proposal is no longer pending (decided elsewhere, timed out): not an error.
    Gone(Key, String),
    /// Nothing was sent, by choice.
    Info(String),
    /// The bottle answered 400: the decision itself is malformed.
    Refused(String),
    /// The bottle could not be reached, or the history could not be written.
    Failed(String),
}

fn send(home: &bottle_state::Home, bottles: &[Control], p: &Pending, decision: &Decision) -> Result<(), Outcome> {
    let bottle = bottles
        .iter()
        .find(|b| b.slug == p.slug)
        .ok_or_else(|| Outcome::Gone(key(p), format!("bottle `{}` is no longer running", p.slug)))?;
    decide(home, bottle, p, decision).map_err(|e| classify(p, &e))
}

fn key(p: &Pending) -> Key {
    Key { slug: p.slug.clone(), id: p.id.clone() }
}

/// Turns a failed decision into what the operator should read.
fn classify(p: &Pending, e: &anyhow::Error) -> Outcome {
    match e.downcast_ref::<ApiError>() {
        Some(api) if api.status == 404 => {
            Outcome::Gone(key(p), format!("proposal {} is gone: decided elsewhere or timed out", p.id))
        }
        Some(api) if api.status == 409 => Outcome::Gone(key(p), format!("proposal {} was already decided", p.id)),
        Some(api) if api.status == 400 => {
            Outcome::Refused(format!("bottle `{}` refused the decision: {}", p.slug, api.message))
        }
        Some(api) => Outcome::Failed(format!("bottle `{}`: {api}", p.slug)),
        None => Outcome::Failed(format!("{e:#}")),
    }
}

/// `m`: edits the requested route in `$EDITOR` and sends it as a modification; a route the bottle
/// refuses (400) re-opens the editor with its reason. `Ok(false)` when the operator cancelled.
fn modify(
    terminal: &mut DefaultTerminal,
    home: &bottle_state::Home,
    bottles: &[Control],
    p: &Pending,
) -> Result<bool, Outcome> {
    let requested = route::requested(&p.detail);
    let host = requested.get("host").and_then(serde_json::Value::as_str).unwrap_or("?").to_owned();
    let what = format!("route for `{host}` requested by bottle `{}` (proposal {})", p.slug, p.id);
    let mut text = route::to_yaml(&requested);
    let mut refused: Option<String> = None;
    loop {
        let edited =
            with_terminal_released(terminal, || route::edit(&text, &requested, &what, refused.as_deref(), run_editor))
                .and_then(std::convert::identity)
                .map_err(|e| Outcome::Failed(format!("{e:#}")))?;
        let Edited::Route { route, text: saved } = edited else {
            return match refused {
                Some(why) => Err(Outcome::Info(format!("modify cancelled; the edited route was refused: {why}"))),
                None => Ok(false),
            };
        };
        let decision = Decision { action: "modify", scope: None, reason: None, route: Some(route), reply: None };
        match send(home, bottles, p, &decision) {
            Err(Outcome::Refused(why)) => {
                text = saved;
                refused = Some(why);
            }
            other => return other.map(|()| true),
        }
    }
}

/// Hands the terminal to `f` (normal screen, cooked mode), then takes it back and redraws fully.
pub(crate) fn with_terminal_released<T>(terminal: &mut DefaultTerminal, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    terminal.show_cursor()?;
    crossterm::terminal::disable_raw_mode()?;
    crossterm::execute!(io::stdout(), LeaveAlternateScreen)?;
    let out = f();
    crossterm::execute!(io::stdout(), EnterAlternateScreen)?;
    crossterm::terminal::enable_raw_mode()?;
    terminal.clear()?;
    Ok(out)
}

/// Runs `$EDITOR` (else `vi`) on `path` through the shell, as git does, so `EDITOR="code -w"`
/// works.
fn run_editor(path: &Path) -> anyhow::Result<()> {
    let editor = std::env::var("EDITOR").ok().filter(|e| !e.trim().is_empty()).unwrap_or_else(|| "vi".into());
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$@\""))
        .arg(&editor)
        .arg(path)
        .status()
        .with_context(|| format!("cannot run the editor `{editor}`"))?;
    if !status.success() {
        anyhow::bail!("the editor `{editor}` exited with {status}; nothing was sent");
    }
    Ok(())
}

/// One poll's result as the poller sends it: the view's part, and the bottles to send decisions
/// to.
struct Polled {
    view: Snapshot,
    bottles: Vec<Control>,
}

/// The poller: finds the running bottles and reads their proposals every [`POLL_EVERY`], or at
/// once when woken (after a decision). Stops when the view is gone.
fn poll(home: &bottle_state::Home, wake: &Receiver<()>, out: &Sender<Polled>) {
    let mut bottles: Vec<Control> = Vec::new();
    loop {
        // A failed discovery keeps polling the bottles found before (the engine may be busy).
        let discovery_error = match control::running(home) {
            Ok(found) => {
                bottles = found;
                None
            }
            Err(e) => Some(format!("{e:#}")),
        };
        let (pending, unreachable) = pending(&bottles);
        let view = Snapshot { bottles: bottles.len(), pending, unreachable, discovery_error };
        if out.send(Polled { view, bottles: bottles.clone() }).is_err() {
            return;
        }
        match wake.recv_timeout(POLL_EVERY) {
            Ok(()) => while wake.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
