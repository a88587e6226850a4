//! The dashboard's state and what each key does to it: pure, so every key path is tested without a
//! terminal. Work that touches the outside (attach, stop, a launch, a decision) leaves as an
//! [`Action`] for the event loop. The proposal queue is the supervise view's own state
//! ([`SuperviseApp`]), so deciding from here takes exactly supervise's key paths.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::widgets::TableState;

use crate::commands::bottles::Row;
use crate::commands::supervise::tui::app::{
    Action as SuperviseAction, App as SuperviseApp, Mode as SuperviseMode, Snapshot as SuperviseSnapshot,
};

/// How long a message stays in the status line without a key press.
const MESSAGE_FOR: Duration = Duration::from_secs(10);

/// Egress decisions of one bottle, summed over its hosts (the control API's `/v1/counters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub allowed: u64,
    pub denied: u64,
    pub dlp_hits: u64,
}

/// One bottle as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct BottleView {
    pub row: Row,
    /// `None` when the control API did not answer (or the bottle has none).
    pub counters: Option<Counters>,
    /// What went wrong reading this bottle, shown on its row.
    pub error: Option<String>,
    /// The newest lines of its audit log, oldest first, already rendered.
    pub audit: Vec<String>,
}

impl BottleView {
    pub fn is_running(&self) -> bool {
        self.row.status == "running"
    }

    /// The label, else the slug.
    pub fn name(&self) -> &str {
        self.row.label.as_deref().filter(|l| !l.is_empty()).unwrap_or(&self.row.slug)
    }
}

/// What the poller saw on one round.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub bottles: Vec<BottleView>,
    /// The proposals of every bottle, in the supervise view's form.
    pub proposals: SuperviseSnapshot,
    /// Listing the bottles failed (the engine is down or busy); the rows are the previous ones.
    pub discovery_error: Option<String>,
}

/// An agent the picker offers; one with an error is shown but cannot be picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentChoice {
    pub name: String,
    pub error: Option<String>,
}

/// Which log the log view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Bringup,
    Audit,
}

impl LogKind {
    pub fn title(self) -> &'static str {
        match self {
            Self::Bringup => "bring-up log",
            Self::Audit => "audit log",
        }
    }
}

/// Which list the arrow keys move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Bottles,
    Proposals,
}

/// What the keyboard is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Help,
    /// `x` asked whether to stop `slug`.
    ConfirmStop {
        slug: String,
    },
    /// `n`: choosing the agent to launch.
    Picker {
        agents: Vec<AgentChoice>,
        selected: usize,
    },
    /// `l`: a log of `slug`, scrolled up by `scroll` lines from its end.
    Logs {
        slug: String,
        kind: LogKind,
        scroll: u16,
    },
}

/// A one-line message in the status line: supervise's own.
pub use crate::commands::supervise::tui::app::Message;

/// What the event loop should do after a key.
#[derive(Debug, Clone)]
pub enum Action {
    None,
    Quit,
    /// Run the agent of `slug` (right pane in tmux, else this terminal).
    Attach(String),
    /// Stop `slug` (confirmed).
    Stop(String),
    /// Load the agents and open the picker.
    OpenPicker,
    /// Launch `agent` and attach to it.
    Launch(String),
    /// Read the log the log view shows.
    LoadLog {
        slug: String,
        kind: LogKind,
    },
    /// A decision key's work, carried out by the supervise code.
    Proposal(SuperviseAction),
}

/// The whole state of the dashboard.
#[derive(Debug)]
pub struct App {
    pub bottles: Vec<BottleView>,
    pub table: TableState,
    pub focus: Focus,
    pub mode: Mode,
    pub message: Option<Message>,
    message_at: Instant,
    /// The proposal queue, its selection and its prompts.
    pub proposals: SuperviseApp,
    pub discovery_error: Option<String>,
    pub loaded: bool,
    /// When the rows' ages were measured.
    pub fetched_at: Instant,
    pub color: bool,
    /// Lines of the log view (tail of the file), oldest first.
    pub log_lines: Vec<String>,
    /// Whether agents go to a tmux pane (shown in the title).
    pub tmux: bool,
}

impl App {
    pub fn new(color: bool, tmux: bool) -> Self {
        Self {
            bottles: Vec::new(),
            table: TableState::default(),
            focus: Focus::Bottles,
            mode: Mode::Normal,
            message: None,
            message_at: Instant::now(),
            proposals: SuperviseApp::new(color),
            discovery_error: None,
            loaded: false,
            fetched_at: Instant::now(),
            color,
            log_lines: Vec::new(),
            tmux,
        }
    }

    pub fn say(&mut self, message: Message) {
        self.message = Some(message);
        self.message_at = Instant::now();
    }

    pub fn selected(&self) -> Option<&BottleView> {
        self.table.selected().and_then(|i| self.bottles.get(i))
    }

    /// Pending proposals of `slug`.
    pub fn pending_of(&self, slug: &str) -> usize {
        self.proposals.rows.iter().filter(|p| p.slug == slug).count()
    }

    /// Takes a new poll, keeping the same bottle selected while it exists.
    pub fn update(&mut self, snapshot: Snapshot, now: Instant) {
        let keep = self.selected().map(|b| b.row.slug.clone());
        let old_index = self.table.selected().unwrap_or(0);
        if snapshot.discovery_error.is_none() {
            self.bottles = snapshot.bottles;
        }
        self.discovery_error = snapshot.discovery_error;
        self.proposals.update(snapshot.proposals, now);
        self.loaded = true;
        self.fetched_at = now;
        if now.saturating_duration_since(self.message_at) > MESSAGE_FOR {
            self.message = None;
        }
        let index = keep.and_then(|k| self.bottles.iter().position(|b| b.row.slug == k)).unwrap_or(old_index);
        self.select(index);
        if let Mode::ConfirmStop { slug } = &self.mode
            && !self.bottles.iter().any(|b| &b.row.slug == slug)
        {
            let text = format!("bottle `{slug}` is gone");
            self.mode = Mode::Normal;
            self.say(Message::Info(text));
        }
    }

    fn select(&mut self, index: usize) {
        self.table.select(if self.bottles.is_empty() { None } else { Some(index.min(self.bottles.len() - 1)) });
    }

    /// Opens the picker on `agents` (the catalog could not be read: the error instead).
    pub fn open_picker(&mut self, agents: Result<Vec<AgentChoice>, String>) {
        match agents {
            Ok(agents) if agents.is_empty() => {
                self.say(Message::Error("no agents: add one under `agents/` in the home".into()));
            }
            Ok(agents) => {
                let selected = agents.iter().position(|a| a.error.is_none()).unwrap_or(0);
                self.mode = Mode::Picker { agents, selected };
            }
            Err(e) => self.say(Message::Error(format!("cannot read the agents: {e}"))),
        }
    }

    /// Applies one key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        // A decision prompt (reason, reply, scope) owns the keyboard until it ends.
        if self.proposals.mode != SuperviseMode::List {
            self.message = None;
            return self.forward(key);
        }
        if ctrl_c {
            return Action::Quit;
        }
        self.message = None;
        match self.mode.clone() {
            Mode::Normal => self.on_normal_key(key),
            Mode::Help => {
                self.mode = Mode::Normal;
                Action::None
            }
            Mode::ConfirmStop { slug } => {
                self.mode = Mode::Normal;
                if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                    self.say(Message::Info(format!("stopping `{slug}`…")));
                    Action::Stop(slug)
                } else {
                    self.say(Message::Info(format!("`{slug}` left running")));
                    Action::None
                }
            }
            Mode::Picker { agents, selected } => self.on_picker_key(key, agents, selected),
            Mode::Logs { slug, kind, scroll } => match key.code {
                KeyCode::Esc | KeyCode::Char('q') => {
                    self.mode = Mode::Normal;
                    Action::None
                }
                KeyCode::Char('l') | KeyCode::Tab => {
                    let kind = if kind == LogKind::Bringup { LogKind::Audit } else { LogKind::Bringup };
                    self.mode = Mode::Logs { slug: slug.clone(), kind, scroll: 0 };
                    Action::LoadLog { slug, kind }
                }
                KeyCode::Up | KeyCode::Char('k') => self.scroll_log(slug, kind, scroll.saturating_add(1)),
                KeyCode::Down | KeyCode::Char('j') => self.scroll_log(slug, kind, scroll.saturating_sub(1)),
                KeyCode::PageUp => self.scroll_log(slug, kind, scroll.saturating_add(10)),
                KeyCode::PageDown => self.scroll_log(slug, kind, scroll.saturating_sub(10)),
                KeyCode::End | KeyCode::Char('G') => self.scroll_log(slug, kind, 0),
                _ => Action::None,
            },
        }
    }

    fn scroll_log(&mut self, slug: String, kind: LogKind, scroll: u16) -> Action {
        let most = u16::try_from(self.log_lines.len()).unwrap_or(u16::MAX);
        self.mode = Mode::Logs { slug, kind, scroll: scroll.min(most) };
        Action::None
    }

    fn on_normal_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Bottles => Focus::Proposals,
                    Focus::Proposals => Focus::Bottles,
                };
            }
            KeyCode::Char('n') => return Action::OpenPicker,
            KeyCode::Char(c @ ('a' | 'm' | 'r')) => {
                if self.proposals.rows.is_empty() {
                    self.say(Message::Info("no pending proposal to decide".into()));
                    return Action::None;
                }
                // The decision is about the highlighted proposal: show it.
                self.focus = Focus::Proposals;
                return self.forward(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
            }
            _ if self.focus == Focus::Proposals => return self.on_proposals_key(key),
            _ => return self.on_bottles_key(key),
        }
        Action::None
    }

    fn on_proposals_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Up
            | KeyCode::Down
            | KeyCode::Char('j' | 'k' | 'g' | 'G')
            | KeyCode::Home
            | KeyCode::End
            | KeyCode::PageUp
            | KeyCode::PageDown => self.forward(key),
            KeyCode::Enter | KeyCode::Char('x' | 'l') => {
                self.say(Message::Info("Tab goes back to the bottles".into()));
                Action::None
            }
            _ => Action::None,
        }
    }

    fn on_bottles_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.select(self.table.selected().unwrap_or(0).saturating_sub(1)),
            KeyCode::Down | KeyCode::Char('j') => self.select(self.table.selected().map_or(0, |i| i + 1)),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(usize::MAX),
            KeyCode::Enter => match self.selected() {
                Some(b) if b.is_running() => return Action::Attach(b.row.slug.clone()),
                Some(b) => {
                    let text = format!("`{}` is {}: nothing to attach to", b.row.slug, b.row.status);
                    self.say(Message::Error(text));
                }
                None => self.say(Message::Info("no bottle selected; `n` launches one".into())),
            },
            KeyCode::Char('x') => match self.selected() {
                Some(b) => self.mode = Mode::ConfirmStop { slug: b.row.slug.clone() },
                None => self.say(Message::Info("no bottle selected".into())),
            },
            KeyCode::Char('l') => match self.selected() {
                Some(b) => {
                    let slug = b.row.slug.clone();
                    self.log_lines.clear();
                    self.mode = Mode::Logs { slug: slug.clone(), kind: LogKind::Bringup, scroll: 0 };
                    return Action::LoadLog { slug, kind: LogKind::Bringup };
                }
                None => self.say(Message::Info("no bottle selected".into())),
            },
            _ => {}
        }
        Action::None
    }

    fn on_picker_key(&mut self, key: KeyEvent, agents: Vec<AgentChoice>, selected: usize) -> Action {
        let last = agents.len().saturating_sub(1);
        let selected = match key.code {
            KeyCode::Esc | KeyCode::Char('q') => {
                self.mode = Mode::Normal;
                self.say(Message::Info("no bottle launched".into()));
                return Action::None;
            }
            KeyCode::Enter => match agents.get(selected) {
                Some(AgentChoice { name, error: None }) => {
                    self.mode = Mode::Normal;
                    self.say(Message::Info(format!("launching `{name}`…")));
                    return Action::Launch(name.clone());
                }
                Some(AgentChoice { name, error: Some(_) }) => {
                    self.say(Message::Error(format!("`{name}` does not load; fix its manifest first")));
                    selected
                }
                None => selected,
            },
            KeyCode::Up | KeyCode::Char('k') => selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => (selected + 1).min(last),
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => last,
            _ => selected,
        };
        self.mode = Mode::Picker { agents, selected };
        Action::None
    }

    /// Hands `key` to the proposal queue.
    fn forward(&mut self, key: KeyEvent) -> Action {
        match self.proposals.on_key(key) {
            // The queue's quit keys close its prompts; the dashboard quits on its own keys only.
            SuperviseAction::Quit | SuperviseAction::None => Action::None,
            other => Action::Proposal(other),
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::commands::bottles::Service;
    use crate::commands::supervise::tui::app::tests::pending;
    use serde_json::json;

    pub fn bottle(slug: &str, label: Option<&str>, color: Option<&str>, status: &str, age: u64) -> BottleView {
        BottleView {
            row: Row {
                backend: "docker".into(),
                slug: slug.into(),
                label: label.map(str::to_owned),
                color: color.map(str::to_owned),
                agent: Some("demo".into()),
                created: 1_000,
                age_secs: age,
                status: status.into(),
                services: vec![Service { name: "egress", address: "127.0.0.1:9099".into() }],
                owner_pid: None,
            },
            counters: (status == "running").then_some(Counters { allowed: 12, denied: 3, dlp_hits: 1 }),
            error: None,
            audit: Vec::new(),
        }
    }

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn loaded(bottles: Vec<BottleView>, proposals: Vec<crate::commands::supervise::Pending>) -> App {
        let mut app = App::new(false, false);
        let proposals =
            SuperviseSnapshot { bottles: bottles.len(), pending: proposals, ..SuperviseSnapshot::default() };
        app.update(Snapshot { bottles, proposals, discovery_error: None }, Instant::now());
        app
    }

    #[test]
    fn enter_attaches_a_running_bottle_only() {
        let mut app = loaded(vec![bottle("a", None, None, "running", 5), bottle("b", None, None, "exited", 9)], vec![]);
        assert!(matches!(app.on_key(press(KeyCode::Enter)), Action::Attach(s) if s == "a"));
        app.on_key(press(KeyCode::Down));
        assert!(matches!(app.on_key(press(KeyCode::Enter)), Action::None));
        assert!(matches!(&app.message, Some(Message::Error(m)) if m.contains("exited")));
    }

    #[test]
    fn stop_asks_first_and_only_y_stops() {
        let mut app = loaded(vec![bottle("a", None, None, "running", 5)], vec![]);
        app.on_key(press(KeyCode::Char('x')));
        assert_eq!(app.mode, Mode::ConfirmStop { slug: "a".into() });
        assert!(matches!(app.on_key(press(KeyCode::Char('n'))), Action::None));
        assert_eq!(app.mode, Mode::Normal);
        app.on_key(press(KeyCode::Char('x')));
        assert!(matches!(app.on_key(press(KeyCode::Char('y'))), Action::Stop(s) if s == "a"));
    }

    #[test]
    fn a_vanished_bottle_closes_its_confirmation_and_moves_the_selection() {
        let mut app =
            loaded(vec![bottle("a", None, None, "running", 5), bottle("b", None, None, "running", 9)], vec![]);
        app.on_key(press(KeyCode::Down));
        app.on_key(press(KeyCode::Char('x')));
        app.update(
            Snapshot { bottles: vec![bottle("a", None, None, "running", 6)], ..Snapshot::default() },
            Instant::now(),
        );
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(app.selected().map(|b| b.row.slug.as_str()), Some("a"));
        assert!(matches!(&app.message, Some(Message::Info(m)) if m.contains("`b` is gone")));
        app.update(Snapshot::default(), Instant::now());
        assert!(app.selected().is_none());
        assert!(matches!(app.on_key(press(KeyCode::Enter)), Action::None));
        assert!(matches!(app.on_key(press(KeyCode::Char('x'))), Action::None));
    }

    #[test]
    fn a_failed_listing_keeps_the_rows() {
        let mut app = loaded(vec![bottle("a", None, None, "running", 5)], vec![]);
        app.update(Snapshot { discovery_error: Some("engine down".into()), ..Snapshot::default() }, Instant::now());
        assert_eq!(app.bottles.len(), 1);
        assert_eq!(app.discovery_error.as_deref(), Some("engine down"));
    }

    #[test]
    fn the_picker_skips_broken_agents_and_launches_a_good_one() {
        let mut app = loaded(vec![], vec![]);
        assert!(matches!(app.on_key(press(KeyCode::Char('n'))), Action::OpenPicker));
        app.open_picker(Ok(vec![
            AgentChoice { name: "broken".into(), error: Some("bad yaml".into()) },
            AgentChoice { name: "demo".into(), error: None },
        ]));
        assert_eq!(app.mode, Mode::Picker { agents: app_agents(&app), selected: 1 });
        app.on_key(press(KeyCode::Up));
        assert!(matches!(app.on_key(press(KeyCode::Enter)), Action::None), "a broken agent is not picked");
        assert!(matches!(&app.message, Some(Message::Error(m)) if m.contains("broken")));
        app.on_key(press(KeyCode::Down));
        app.on_key(press(KeyCode::Down));
        assert!(matches!(app.on_key(press(KeyCode::Enter)), Action::Launch(a) if a == "demo"));
        app.open_picker(Err("home unreadable".into()));
        assert_eq!(app.mode, Mode::Normal);
        app.open_picker(Ok(vec![]));
        assert_eq!(app.mode, Mode::Normal);
    }

    fn app_agents(app: &App) -> Vec<AgentChoice> {
        match &app.mode {
            Mode::Picker { agents, .. } => agents.clone(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn decision_keys_take_the_supervise_paths() {
        let proposals = vec![
            pending("a", "1", "egress-route", 9, "one", json!({})),
            pending("a", "2", "git-allow", 5, "two", json!({})),
        ];
        let mut app = loaded(vec![bottle("a", None, None, "running", 5)], proposals);
        assert_eq!(app.pending_of("a"), 2);
        match app.on_key(press(KeyCode::Char('a'))) {
            Action::Proposal(SuperviseAction::Decide { proposal, decision }) => {
                assert_eq!((proposal.id.as_str(), decision.action), ("1", "approve"));
            }
            other => panic!("expected a decision, got {other:?}"),
        }
        assert_eq!(app.focus, Focus::Proposals);
        app.on_key(press(KeyCode::Down));
        app.on_key(press(KeyCode::Char('r')));
        // The reason prompt owns the keys: `q` and `x` are text, not quit and stop.
        for c in "quix".chars() {
            assert!(matches!(app.on_key(press(KeyCode::Char(c))), Action::None));
        }
        match app.on_key(press(KeyCode::Enter)) {
            Action::Proposal(SuperviseAction::Decide { proposal, decision }) => {
                assert_eq!((proposal.id.as_str(), decision.reason.as_deref()), ("2", Some("quix")));
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        app.on_key(press(KeyCode::Char('m')));
        assert!(app.proposals.message.is_some(), "a git-allow cannot be modified");
        app.on_key(press(KeyCode::Tab));
        assert_eq!(app.focus, Focus::Bottles);
    }

    #[test]
    fn logs_switch_and_scroll_within_bounds() {
        let mut app = loaded(vec![bottle("a", None, None, "running", 5)], vec![]);
        assert!(
            matches!(app.on_key(press(KeyCode::Char('l'))), Action::LoadLog { slug, kind: LogKind::Bringup } if slug == "a")
        );
        app.log_lines = vec!["one".into(), "two".into()];
        for _ in 0..5 {
            app.on_key(press(KeyCode::PageUp));
        }
        assert_eq!(app.mode, Mode::Logs { slug: "a".into(), kind: LogKind::Bringup, scroll: 2 });
        assert!(matches!(app.on_key(press(KeyCode::Tab)), Action::LoadLog { kind: LogKind::Audit, .. }));
        app.on_key(press(KeyCode::Esc));
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn help_and_quit() {
        let mut app = loaded(vec![], vec![]);
        app.on_key(press(KeyCode::Char('?')));
        assert_eq!(app.mode, Mode::Help);
        assert!(matches!(app.on_key(press(KeyCode::Char('q'))), Action::None), "q closes the help first");
        assert!(matches!(app.on_key(press(KeyCode::Char('q'))), Action::Quit));
        assert!(matches!(app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit));
        assert!(matches!(app.on_key(press(KeyCode::Char('a'))), Action::None));
    }
}
