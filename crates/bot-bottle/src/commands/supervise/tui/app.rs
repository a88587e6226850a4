//! The supervise view's state and what each key does to it: pure, so every key path is tested
//! without a terminal. Decisions leave as [`Action`]s for the event loop to carry out.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::widgets::TableState;

use crate::commands::supervise::{Decision, Pending};

/// How long a message stays in the status line without a key press.
const MESSAGE_FOR: Duration = Duration::from_secs(8);

/// What the poller saw on one round.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// How many running bottles serve a control API.
    pub bottles: usize,
    /// Every pending proposal, oldest first.
    pub pending: Vec<Pending>,
    /// Bottles that did not answer, with why; their rows are dropped.
    pub unreachable: Vec<(String, String)>,
    /// Finding the running bottles failed (the previous list was polled instead).
    pub discovery_error: Option<String>,
}

/// What the keyboard is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Moving through the list.
    List,
    /// The key help over the list.
    Help,
    /// Typing the reason to reject `target`.
    Reject { target: Key, input: String },
    /// Choosing `once` or `session` to approve `target` (a held DLP hit).
    Scope { target: Key },
    /// Typing the reply to a question before approving `target`.
    Reply { target: Key, input: String },
}

/// A proposal's identity across refreshes: the bottle and its id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub slug: String,
    pub id: String,
}

impl Key {
    fn of(p: &Pending) -> Self {
        Self { slug: p.slug.clone(), id: p.id.clone() }
    }

    fn is(&self, p: &Pending) -> bool {
        self.slug == p.slug && self.id == p.id
    }
}

/// A one-line message in the status line until the next key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Info(String),
    Error(String),
}

/// What the event loop should do after a key.
#[derive(Debug, Clone)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave the view.
    Quit,
    /// Send `decision` for `proposal`.
    Decide { proposal: Box<Pending>, decision: Decision },
    /// Edit the requested route of `proposal` in `$EDITOR`, then send it as a modification.
    Modify(Box<Pending>),
}

/// The whole state of the view.
#[derive(Debug)]
pub struct App {
    /// Pending proposals, oldest first.
    pub rows: Vec<Pending>,
    /// The list's selection and scroll offset.
    pub table: TableState,
    pub mode: Mode,
    pub message: Option<Message>,
    /// When `message` was set: it gives way to the poll's status after [`MESSAGE_FOR`].
    message_at: Instant,
    /// Bottles that did not answer on the last poll.
    pub unreachable: Vec<(String, String)>,
    pub discovery_error: Option<String>,
    /// Running bottles with a control API, as of the last poll.
    pub bottles: usize,
    /// Whether a poll has arrived yet.
    pub loaded: bool,
    /// When the rows' `age_secs` were measured.
    pub fetched_at: Instant,
    /// Whether to paint bottle colours and message colours (off with `NO_COLOR`).
    pub color: bool,
    /// Lines the detail pane is scrolled down by; back to the top when the selection changes.
    pub detail_scroll: u16,
}

impl App {
    /// An empty view waiting for its first poll; `color` is off under `NO_COLOR`.
    pub fn new(color: bool) -> Self {
        Self {
            rows: Vec::new(),
            table: TableState::default(),
            mode: Mode::List,
            message: None,
            message_at: Instant::now(),
            unreachable: Vec::new(),
            discovery_error: None,
            bottles: 0,
            loaded: false,
            fetched_at: Instant::now(),
            color,
            detail_scroll: 0,
        }
    }

    /// Shows `message` in the status line.
    pub fn say(&mut self, message: Message) {
        self.message = Some(message);
        self.message_at = Instant::now();
    }

    /// The selected proposal, if any.
    pub fn selected(&self) -> Option<&Pending> {
        self.table.selected().and_then(|i| self.rows.get(i))
    }

    /// Takes a new poll: keeps the same proposal selected when it is still pending, and drops a
    /// prompt whose proposal went away (decided elsewhere, timed out, or its bottle stopped).
    pub fn update(&mut self, snapshot: Snapshot, now: Instant) {
        let keep = self.selected().map(Key::of);
        let old_index = self.table.selected().unwrap_or(0);
        self.rows = snapshot.pending;
        self.unreachable = snapshot.unreachable;
        self.discovery_error = snapshot.discovery_error;
        self.bottles = snapshot.bottles;
        self.loaded = true;
        self.fetched_at = now;
        if now.saturating_duration_since(self.message_at) > MESSAGE_FOR {
            self.message = None;
        }
        let index = keep.and_then(|k| self.rows.iter().position(|p| k.is(p))).unwrap_or(old_index);
        self.select(index);
        if let Some(target) = self.target().cloned()
            && !self.rows.iter().any(|p| target.is(p))
        {
            self.say(Message::Info(format!("proposal {} is no longer pending", target.id)));
            self.mode = Mode::List;
        }
    }

    /// Drops one proposal at once (after a decision), without waiting for the next poll.
    pub fn remove(&mut self, key: &Key) {
        let index = self.table.selected().unwrap_or(0);
        self.rows.retain(|p| !key.is(p));
        self.select(index);
    }

    fn select(&mut self, index: usize) {
        let before = self.selected().map(Key::of);
        self.table.select(if self.rows.is_empty() { None } else { Some(index.min(self.rows.len() - 1)) });
        if self.selected().map(Key::of) != before {
            self.detail_scroll = 0;
        }
    }

    fn target(&self) -> Option<&Key> {
        match &self.mode {
            Mode::Reject { target, .. } | Mode::Scope { target } | Mode::Reply { target, .. } => Some(target),
            Mode::List | Mode::Help => None,
        }
    }

    fn find(&self, key: &Key) -> Option<&Pending> {
        self.rows.iter().find(|p| key.is(p))
    }

    /// Applies one key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return match self.mode {
                Mode::List | Mode::Help => Action::Quit,
                _ => self.cancel("cancelled"),
            };
        }
        self.message = None;
        match self.mode.clone() {
            Mode::List => self.on_list_key(key),
            Mode::Help => {
                self.mode = Mode::List;
                Action::None
            }
            Mode::Scope { target } => match key.code {
                KeyCode::Char(c @ ('o' | 's')) => {
                    let scope = if c == 'o' { "once" } else { "session" };
                    self.mode = Mode::List;
                    self.decide(&target, approve(Some(scope), None))
                }
                KeyCode::Esc | KeyCode::Char('q') => self.cancel("approval cancelled"),
                _ => {
                    self.say(Message::Error("press `o` (this request) or `s` (the session)".into()));
                    Action::None
                }
            },
            Mode::Reject { target, input } => match edit_line(input, key) {
                Line::Editing(input) => {
                    self.mode = Mode::Reject { target, input };
                    Action::None
                }
                Line::Cancelled => self.cancel("reject cancelled"),
                Line::Done(input) if input.trim().is_empty() => {
                    self.say(Message::Error("a reason is required to reject".into()));
                    self.mode = Mode::Reject { target, input };
                    Action::None
                }
                Line::Done(input) => {
                    self.mode = Mode::List;
                    let decision = Decision {
                        action: "reject",
                        scope: None,
                        reason: Some(input.trim().to_owned()),
                        route: None,
                        reply: None,
                    };
                    self.decide(&target, decision)
                }
            },
            Mode::Reply { target, input } => match edit_line(input, key) {
                Line::Editing(input) => {
                    self.mode = Mode::Reply { target, input };
                    Action::None
                }
                Line::Cancelled => self.cancel("reply cancelled"),
                Line::Done(input) => {
                    self.mode = Mode::List;
                    let reply = Some(input.trim().to_owned()).filter(|r| !r.is_empty());
                    self.decide(&target, approve(None, reply))
                }
            },
        }
    }

    fn on_list_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Up | KeyCode::Char('k') => self.select(self.table.selected().unwrap_or(0).saturating_sub(1)),
            KeyCode::Down | KeyCode::Char('j') => self.select(self.table.selected().map_or(0, |i| i + 1)),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(usize::MAX),
            KeyCode::PageDown => self.detail_scroll = self.detail_scroll.saturating_add(5),
            KeyCode::PageUp => self.detail_scroll = self.detail_scroll.saturating_sub(5),
            KeyCode::Char(c @ ('a' | 'm' | 'r')) => match self.selected().cloned() {
                Some(p) => return self.on_decision_key(c, p),
                None => self.say(Message::Info("nothing to decide".into())),
            },
            _ => {}
        }
        Action::None
    }

    /// `a`, `m` or `r` on the selected proposal `p`.
    fn on_decision_key(&mut self, c: char, p: Pending) -> Action {
        let target = Key::of(&p);
        match (c, p.kind.as_str()) {
            ('a', "egress-token-allow") => self.mode = Mode::Scope { target },
            ('a', "question") if expects_reply(&p) => self.mode = Mode::Reply { target, input: String::new() },
            ('a', _) => return Action::Decide { proposal: Box::new(p), decision: approve(None, None) },
            ('m', "egress-route") => return Action::Modify(Box::new(p)),
            ('m', kind) => {
                self.say(Message::Error(format!("only egress-route proposals can be modified, not {kind}")));
            }
            _ => self.mode = Mode::Reject { target, input: String::new() },
        }
        Action::None
    }

    fn decide(&mut self, target: &Key, decision: Decision) -> Action {
        match self.find(target) {
            Some(p) => Action::Decide { proposal: Box::new(p.clone()), decision },
            None => {
                self.say(Message::Info(format!("proposal {} is no longer pending", target.id)));
                Action::None
            }
        }
    }

    fn cancel(&mut self, what: &str) -> Action {
        self.mode = Mode::List;
        self.say(Message::Info(what.to_owned()));
        Action::None
    }
}

fn approve(scope: Option<&str>, reply: Option<String>) -> Decision {
    Decision { action: "approve", scope: scope.map(str::to_owned), reason: None, route: None, reply }
}

/// Whether a `question` proposal waits for a typed reply.
pub fn expects_reply(p: &Pending) -> bool {
    p.detail.get("expects_reply").and_then(serde_json::Value::as_bool).unwrap_or(false)
}

/// Where a one-line input stands after a key.
enum Line {
    Editing(String),
    Done(String),
    Cancelled,
}

/// A minimal line editor: characters append, Backspace deletes one, Ctrl-U clears, Ctrl-W deletes
/// a word, Enter finishes, Esc cancels.
fn edit_line(mut input: String, key: KeyEvent) -> Line {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Enter => return Line::Done(input),
        KeyCode::Esc => return Line::Cancelled,
        KeyCode::Backspace => {
            input.pop();
        }
        KeyCode::Char('u') if ctrl => input.clear(),
        KeyCode::Char('w') if ctrl => {
            let kept = input.trim_end().rfind(' ').map_or(0, |i| i + 1);
            input.truncate(kept);
        }
        KeyCode::Char(c) if !ctrl && !c.is_control() => input.push(c),
        _ => {}
    }
    Line::Editing(input)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    pub fn pending(slug: &str, id: &str, kind: &str, age: u64, summary: &str, detail: serde_json::Value) -> Pending {
        Pending {
            slug: slug.into(),
            label: None,
            color: None,
            id: id.into(),
            kind: kind.into(),
            summary: summary.into(),
            created_at: 1_000 - age,
            age_secs: age,
            detail,
        }
    }

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            assert!(matches!(app.on_key(press(KeyCode::Char(c))), Action::None));
        }
    }

    fn app_with(rows: Vec<Pending>) -> App {
        let mut app = App::new(false);
        app.update(Snapshot { bottles: 1, pending: rows, ..Snapshot::default() }, Instant::now());
        app
    }

    fn decided(action: Action) -> (String, Decision) {
        match action {
            Action::Decide { proposal, decision } => (proposal.id, decision),
            other => panic!("expected a decision, got {other:?}"),
        }
    }

    #[test]
    fn selection_moves_and_survives_a_refresh() {
        let rows = vec![
            pending("a", "1", "egress-route", 9, "one", json!({})),
            pending("a", "2", "question", 5, "two", json!({})),
            pending("b", "3", "git-allow", 1, "three", json!({})),
        ];
        let mut app = app_with(rows.clone());
        assert_eq!(app.selected().map(|p| p.id.as_str()), Some("1"));
        app.on_key(press(KeyCode::Char('j')));
        app.on_key(press(KeyCode::Down));
        app.on_key(press(KeyCode::Down));
        assert_eq!(app.selected().map(|p| p.id.as_str()), Some("3"));
        app.on_key(press(KeyCode::Char('k')));
        assert_eq!(app.selected().map(|p| p.id.as_str()), Some("2"));
        // Proposal 1 is decided elsewhere: 2 stays selected although its index changed.
        app.update(Snapshot { pending: rows[1..].to_vec(), ..Snapshot::default() }, Instant::now());
        assert_eq!(app.selected().map(|p| p.id.as_str()), Some("2"));
        // Everything goes: no selection, and keys that decide say so instead of failing.
        app.update(Snapshot::default(), Instant::now());
        assert_eq!(app.selected().map(|p| p.id.as_str()), None);
        assert!(matches!(app.on_key(press(KeyCode::Char('a'))), Action::None));
        assert_eq!(app.message, Some(Message::Info("nothing to decide".into())));
    }

    #[test]
    fn approve_asks_for_a_scope_only_for_a_held_dlp_hit() {
        let mut app = app_with(vec![
            pending("a", "1", "egress-route", 9, "one", json!({})),
            pending("a", "2", "egress-token-allow", 5, "two", json!({})),
        ]);
        let (id, d) = decided(app.on_key(press(KeyCode::Char('a'))));
        assert_eq!((id.as_str(), d.action, d.scope), ("1", "approve", None));
        app.on_key(press(KeyCode::Down));
        assert!(matches!(app.on_key(press(KeyCode::Char('a'))), Action::None));
        assert!(matches!(app.mode, Mode::Scope { .. }));
        app.on_key(press(KeyCode::Char('x')));
        assert!(matches!(app.message, Some(Message::Error(_))));
        let (id, d) = decided(app.on_key(press(KeyCode::Char('s'))));
        assert_eq!((id.as_str(), d.scope.as_deref()), ("2", Some("session")));
        app.on_key(press(KeyCode::Char('a')));
        let (_, d) = decided(app.on_key(press(KeyCode::Char('o'))));
        assert_eq!(d.scope.as_deref(), Some("once"));
        app.on_key(press(KeyCode::Char('a')));
        assert!(matches!(app.on_key(press(KeyCode::Esc)), Action::None));
        assert_eq!(app.mode, Mode::List);
    }

    #[test]
    fn reject_needs_a_reason_and_esc_cancels() {
        let mut app = app_with(vec![pending("a", "1", "git-allow", 9, "one", json!({}))]);
        app.on_key(press(KeyCode::Char('r')));
        assert!(matches!(app.on_key(press(KeyCode::Enter)), Action::None));
        assert_eq!(app.message, Some(Message::Error("a reason is required to reject".into())));
        typed(&mut app, "not  this one");
        app.on_key(KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL));
        typed(&mut app, "tim");
        app.on_key(press(KeyCode::Backspace));
        typed(&mut app, "me");
        let (id, d) = decided(app.on_key(press(KeyCode::Enter)));
        assert_eq!((id.as_str(), d.action, d.reason.as_deref()), ("1", "reject", Some("not  this time")));
        app.on_key(press(KeyCode::Char('r')));
        typed(&mut app, "x");
        assert!(matches!(app.on_key(press(KeyCode::Esc)), Action::None));
        assert_eq!(
            (app.mode.clone(), app.message.clone()),
            (Mode::List, Some(Message::Info("reject cancelled".into())))
        );
    }

    #[test]
    fn a_prompt_whose_proposal_goes_away_closes() {
        let mut app = app_with(vec![pending("a", "1", "git-allow", 9, "one", json!({}))]);
        app.on_key(press(KeyCode::Char('r')));
        typed(&mut app, "because");
        app.update(Snapshot::default(), Instant::now());
        assert_eq!(app.mode, Mode::List);
        assert_eq!(app.message, Some(Message::Info("proposal 1 is no longer pending".into())));
    }

    #[test]
    fn modify_only_for_routes_questions_take_replies_and_q_quits() {
        let mut app = app_with(vec![
            pending("a", "1", "git-allow", 9, "one", json!({})),
            pending("a", "2", "question", 5, "two", json!({"question": "ok?", "expects_reply": true})),
            pending("a", "3", "egress-route", 1, "three", json!({})),
        ]);
        assert!(matches!(app.on_key(press(KeyCode::Char('m'))), Action::None));
        assert!(matches!(app.message, Some(Message::Error(_))));
        app.on_key(press(KeyCode::Char('j')));
        app.on_key(press(KeyCode::Char('a')));
        typed(&mut app, "yes, go");
        let (id, d) = decided(app.on_key(press(KeyCode::Enter)));
        assert_eq!((id.as_str(), d.reply.as_deref()), ("2", Some("yes, go")));
        app.on_key(press(KeyCode::Char('G')));
        assert!(matches!(app.on_key(press(KeyCode::Char('m'))), Action::Modify(p) if p.id == "3"));
        app.on_key(press(KeyCode::Char('?')));
        assert_eq!(app.mode, Mode::Help);
        assert!(matches!(app.on_key(press(KeyCode::Char('q'))), Action::None), "q closes the help first");
        assert!(matches!(app.on_key(press(KeyCode::Char('q'))), Action::Quit));
        assert!(matches!(app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit));
    }
}
