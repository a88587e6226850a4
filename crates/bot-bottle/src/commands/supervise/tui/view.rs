//! Drawing the supervise view: the proposal list, the detail pane of the selected proposal, the
//! status line and the key line (or the prompt that replaces it), and the help over everything.
//! Pure rendering from [`App`]; snapshot-tested on ratatui's `TestBackend`.

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, HighlightSpacing, Paragraph, Row, Table, Wrap};
use serde_json::Value;

use super::app::{App, Message, Mode, expects_reply};
use super::route::{self, DiffLine};
use crate::commands::supervise::Pending;

/// Draws the whole view into `frame`; `now` gives the ages (a row's age keeps counting between
/// polls).
pub fn draw(frame: &mut Frame, app: &mut App, now: Instant) {
    // The list takes what its rows need, up to 40% of the screen; the detail pane gets the rest.
    let wanted = u16::try_from(app.rows.len().max(2) + 3).unwrap_or(u16::MAX);
    let list_height = wanted.min(frame.area().height.saturating_mul(2) / 5).max(4);
    let [list_area, detail_area, status_area, keys_area] = Layout::vertical([
        Constraint::Length(list_height),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let elapsed = now.saturating_duration_since(app.fetched_at).as_secs();
    draw_list(frame, app, list_area, elapsed, "supervise");
    draw_detail(frame, app, detail_area, elapsed);
    frame.render_widget(Paragraph::new(status_line(app)), status_area);
    draw_keys(frame, app, keys_area);
    if app.mode == Mode::Help {
        draw_help(frame, list_area.union(detail_area));
    }
}

/// The proposal list; `title` names the view it is part of.
pub(crate) fn draw_list(frame: &mut Frame, app: &mut App, area: Rect, elapsed: u64, title: &str) {
    let title = format!(
        " {title} · {} pending · {} bottle{} ",
        app.rows.len(),
        app.bottles,
        if app.bottles == 1 { "" } else { "s" }
    );
    let block = Block::bordered().title(Line::from(title).style(Style::new().add_modifier(Modifier::BOLD)));
    if app.rows.is_empty() {
        let text = if app.loaded {
            vec![
                Line::from("no pending proposals"),
                Line::from("requests from the running bottles appear here as they arrive").style(dim()),
            ]
        } else {
            vec![Line::from("looking for running bottles…")]
        };
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(block), area);
        return;
    }
    let names: Vec<&str> = app.rows.iter().map(bottle_name).collect();
    let name_width = names.iter().map(|n| Span::raw(*n).width()).max().unwrap_or(0).clamp(6, 24);
    let rows = app.rows.iter().zip(&names).map(|(p, name)| {
        Row::new([
            Cell::from(Span::styled(*name, bottle_style(app, p))),
            Cell::from(p.kind.as_str()),
            Cell::from(Line::from(age(p.age_secs + elapsed)).right_aligned()),
            Cell::from(p.summary.as_str()),
        ])
    });
    let header = Row::new(["BOTTLE", "KIND", "AGE", "SUMMARY"]).style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(u16::try_from(name_width).unwrap_or(24)),
        Constraint::Length(18),
        Constraint::Length(6),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always);
    frame.render_stateful_widget(table, area, &mut app.table);
}

/// The selected proposal's detail.
pub(crate) fn draw_detail(frame: &mut Frame, app: &mut App, area: Rect, elapsed: u64) {
    let Some(p) = app.selected().cloned() else {
        let text = Line::from("a proposal's detail shows here; `?` lists the keys").style(dim());
        frame.render_widget(Paragraph::new(text).block(Block::bordered().title(" detail ")), area);
        return;
    };
    let title = Line::from(vec![
        Span::raw(format!(" {} {} · ", p.kind, p.id)),
        Span::styled(bottle_name(&p).to_owned(), bottle_style(app, &p)),
        Span::raw(" "),
    ]);
    let mut lines = vec![
        Line::from(vec![Span::styled("summary  ", dim()), Span::raw(p.summary.clone())]),
        Line::from(vec![
            Span::styled("bottle   ", dim()),
            Span::styled(bottle_name(&p).to_owned(), bottle_style(app, &p)),
            Span::raw(match &p.label {
                Some(label) if *label != p.slug => format!(" ({})", p.slug),
                _ => String::new(),
            }),
            Span::styled("   age ", dim()),
            Span::raw(age(p.age_secs + elapsed)),
        ]),
        Line::default(),
    ];
    lines.extend(detail_lines(app, &p));
    let overflow = lines.len().saturating_sub(usize::from(area.height.saturating_sub(2)));
    let scroll = app.detail_scroll.min(u16::try_from(overflow).unwrap_or(u16::MAX));
    // Remember the clamp, so PgUp answers at once after PgDn went past the end.
    app.detail_scroll = scroll;
    let mut block = Block::bordered().title(title);
    if overflow > 0 {
        block = block.title_bottom(Line::from(" PgUp/PgDn scroll ").right_aligned());
    }
    let text = Text::from(lines);
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).scroll((scroll, 0)).block(block), area);
}

/// The kind-specific part of the detail pane.
fn detail_lines<'a>(app: &App, p: &'a Pending) -> Vec<Line<'a>> {
    let d = &p.detail;
    let mut lines = Vec::new();
    match p.kind.as_str() {
        "egress-route" => {
            if let Some(why) = text(d, "justification") {
                lines.push(Line::from(vec![Span::styled("why      ", dim()), Span::raw(why)]));
                lines.push(Line::default());
            }
            // `proposed` is the whole route after the change (current settings kept); a detail
            // without it shows the request itself.
            let requested = route::requested(d);
            let proposed = d.get("proposed").filter(|v| v.is_object()).unwrap_or(&requested);
            let current = d.get("current").unwrap_or(&Value::Null);
            let host = requested.get("host").and_then(Value::as_str).unwrap_or("?");
            lines.push(if current.is_null() {
                Line::from(format!("new route: no route for `{host}` yet")).style(bold())
            } else {
                Line::from(format!("changes the route for `{host}` (- current, + proposed)")).style(bold())
            });
            for line in route::diff(&route::to_yaml(current), &route::to_yaml(proposed)) {
                lines.push(match line {
                    DiffLine::Same(l) => Line::from(format!("  {l}")),
                    DiffLine::Removed(l) => Line::from(format!("- {l}")).style(paint(app, Color::Red)),
                    DiffLine::Added(l) => Line::from(format!("+ {l}")).style(paint(app, Color::Green)),
                });
            }
            lines.push(Line::default());
            lines.push(Line::from("a approves, m edits the route first, r rejects").style(dim()));
        }
        "egress-token-allow" => {
            lines.push(Line::from("a request was held: a value in it matched a secret rule").style(bold()));
            let host = match (text(d, "host"), d.get("port").and_then(Value::as_u64)) {
                (Some(host), Some(port)) => Some(format!("{host}:{port}")),
                (host, _) => host.map(str::to_owned),
            };
            lines.extend(host.map(|h| field("host", h)));
            lines.extend(fields(d, &[("method", "method"), ("path", "path"), ("rule", "rule")]));
            for finding in d.get("findings").and_then(Value::as_array).into_iter().flatten() {
                let rule = finding.get("rule").and_then(scalar).unwrap_or_default();
                let at = finding.get("location").and_then(scalar).map(|l| format!(" in {l}")).unwrap_or_default();
                lines.push(field("finding", format!("{rule}{at}")));
            }
            lines.push(Line::default());
            lines.push(
                Line::from("approve: o lets this request through; s also lets the same value reach this host")
                    .style(dim()),
            );
        }
        "git-allow" => {
            lines.push(Line::from("a push carries a finding marked as allowed inline").style(bold()));
            let at = match (text(d, "file"), d.get("line").and_then(Value::as_u64)) {
                (Some(file), Some(line)) => Some(format!("{file}:{line}")),
                (file, _) => file.map(str::to_owned),
            };
            let commit = text(d, "commit").map(|c| c.chars().take(12).collect::<String>());
            let mut rows = fields(d, &[("repo", "repo"), ("ref", "ref")]);
            rows.extend(commit.map(|c| field("commit", c)));
            rows.extend(at.map(|a| field("file", a)));
            rows.extend(fields(d, &[("rule", "rule")]));
            lines.extend(rows);
            lines.push(Line::default());
            lines.push(Line::from("approve lets this push through; r rejects it with a reason").style(dim()));
        }
        "question" => {
            lines.push(Line::from("the agent asks:").style(bold()));
            for l in text(d, "question").unwrap_or_default().lines() {
                lines.push(Line::from(format!("  {l}")));
            }
            lines.push(Line::default());
            lines.push(
                Line::from(if expects_reply(p) {
                    "it waits for a reply: a asks for it"
                } else {
                    "a notice: a acknowledges it"
                })
                .style(dim()),
            );
        }
        _ => {
            for l in route::to_yaml(d).lines() {
                lines.push(Line::from(l.to_owned()));
            }
        }
    }
    lines
}

fn fields<'a>(d: &'a Value, keys: &[(&str, &str)]) -> Vec<Line<'a>> {
    keys.iter().filter_map(|(label, key)| scalar(d.get(*key)?).map(|v| field(label, v))).collect()
}

fn field<'a>(label: &str, value: String) -> Line<'a> {
    Line::from(vec![Span::styled(format!("  {label:<8} "), dim()), Span::raw(value)])
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text<'a>(d: &'a Value, key: &str) -> Option<&'a str> {
    d.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The status line: a message from the last key, else why a bottle is missing, else a summary.
fn status_line(app: &App) -> Line<'static> {
    let error = |text: String| Line::from(text).style(paint(app, Color::Red).add_modifier(Modifier::BOLD));
    if let Some(message) = &app.message {
        return match message {
            Message::Error(m) => error(format!("error: {m}")),
            Message::Info(m) => Line::from(m.clone()).style(paint(app, Color::Green)),
        };
    }
    if let Some(e) = &app.discovery_error {
        return error(format!("cannot list the running bottles: {e}"));
    }
    if let Some((slug, why)) = app.unreachable.first() {
        let why = why.strip_prefix(&format!("bottle `{slug}`: ")).unwrap_or(why);
        let more = match app.unreachable.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return error(format!("bottle `{slug}` did not answer: {why}{more}"));
    }
    Line::from(if app.loaded { "refreshes every second" } else { "" }).style(dim())
}

/// The key line, or the prompt of a decision in progress.
pub(crate) fn draw_keys(frame: &mut Frame, app: &App, area: Rect) {
    let key = |k: &'static str| Span::styled(k, bold());
    let line = match &app.mode {
        Mode::List => Line::from(vec![
            key("↑↓/jk"),
            Span::raw(" select  "),
            key("a"),
            Span::raw(" approve  "),
            key("m"),
            Span::raw(" modify  "),
            key("r"),
            Span::raw(" reject  "),
            key("?"),
            Span::raw(" help  "),
            key("q"),
            Span::raw(" quit"),
        ]),
        Mode::Help => Line::from("any key closes the help"),
        Mode::Scope { target } => Line::from(vec![
            Span::raw(format!("approve {}: ", target.id)),
            key("o"),
            Span::raw(" this request only  "),
            key("s"),
            Span::raw(" this value to this host for the session  "),
            key("Esc"),
            Span::raw(" cancel"),
        ]),
        Mode::Reject { target, input } => {
            return draw_prompt(frame, area, &format!("reason to reject {}: ", target.id), input);
        }
        Mode::Reply { target, input } => {
            return draw_prompt(frame, area, &format!("reply to {}: ", target.id), input);
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// A one-line input: the prompt, the text typed so far (its tail when long), the cursor after it
/// and the keys at the right.
fn draw_prompt(frame: &mut Frame, area: Rect, prompt: &str, input: &str) {
    const HINT: &str = "  Enter sends · Esc cancels";
    let prompt_width = Span::raw(prompt).width();
    let room = usize::from(area.width).saturating_sub(prompt_width + HINT.len() + 1).max(1);
    let mut shown: Vec<char> = input.chars().collect();
    while Span::raw(shown.iter().collect::<String>()).width() > room && !shown.is_empty() {
        shown.remove(0);
    }
    let shown: String = shown.into_iter().collect();
    let cursor = prompt_width + Span::raw(shown.as_str()).width();
    let line = Line::from(vec![Span::styled(prompt.to_owned(), bold()), Span::raw(shown)]);
    let [input_area, hint_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(u16::try_from(HINT.len()).unwrap_or(0))])
            .areas(area);
    frame.render_widget(Paragraph::new(line), input_area);
    frame.render_widget(Paragraph::new(Line::from(HINT).style(dim())), hint_area);
    let x = area.x.saturating_add(u16::try_from(cursor).unwrap_or(u16::MAX)).min(input_area.right().saturating_sub(1));
    frame.set_cursor_position(Position::new(x, area.y));
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let rows: [(&str, &str); 11] = [
        ("↑ ↓  j k", "select a proposal (g G: first, last)"),
        ("PgUp PgDn", "scroll the detail"),
        ("a", "approve; a held secret asks o (this request) or s (session),"),
        ("", "a question that waits for a reply asks for the reply"),
        ("m", "modify an egress-route: edit it as YAML in $EDITOR, save to"),
        ("", "approve it as edited, empty or unchanged to cancel"),
        ("r", "reject, with a reason the agent sees"),
        ("?", "this help"),
        ("q  Esc", "quit"),
        ("", ""),
        ("", "the list refreshes every second; proposals never hold secrets"),
    ];
    let lines: Vec<Line> = rows
        .iter()
        .map(|(k, what)| Line::from(vec![Span::styled(format!(" {k:<11}"), bold()), Span::raw(*what)]))
        .collect();
    let width = area.width.min(76);
    let height = area.height.min(u16::try_from(lines.len()).unwrap_or(0) + 2);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" keys ")), popup);
}

/// The bottle's label, else its slug.
pub(crate) fn bottle_name(p: &Pending) -> &str {
    p.label.as_deref().filter(|l| !l.is_empty()).unwrap_or(&p.slug)
}

fn bottle_style(app: &App, p: &Pending) -> Style {
    match p.color.as_deref().and_then(named_color) {
        Some(color) if app.color => Style::new().fg(color),
        _ => Style::new(),
    }
}

/// A bottle colour name from its metadata (`red`, `bright-red`, …) as a terminal colour.
pub fn named_color(name: &str) -> Option<Color> {
    const PALETTE: [Color; 16] = [
        Color::Black,
        Color::Red,
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
        Color::Cyan,
        Color::Gray,
        Color::DarkGray,
        Color::LightRed,
        Color::LightGreen,
        Color::LightYellow,
        Color::LightBlue,
        Color::LightMagenta,
        Color::LightCyan,
        Color::White,
    ];
    let index = bottle_core::Color::parse(name).ok()?.ansi_index();
    PALETTE.get(usize::from(index)).copied()
}

fn paint(app: &App, color: Color) -> Style {
    if app.color { Style::new().fg(color) } else { Style::new() }
}

pub(crate) fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}

pub(crate) fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// `42s`, `3m05s`, `2h07m`, `3d04h`.
pub fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::supervise::tui::app::tests::pending;
    use crate::commands::supervise::tui::app::{Key, Snapshot};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use serde_json::json;

    fn all_kinds() -> Vec<Pending> {
        let mut route = pending(
            "agent-7f3a",
            "p-1",
            "egress-route",
            312,
            "add a route to api.example.com",
            json!({
                "host": "api.example.com",
                "matches": [{"paths": [{"type": "prefix", "value": "/v1/"}, {"type": "prefix", "value": "/v2/"}], "methods": ["GET"]}],
                "justification": "the build downloads its schema from the v2 API",
                "change": "replace",
                "current": {"host": "api.example.com", "matches": [
                    {"paths": [{"type": "prefix", "value": "/v1/"}], "methods": ["GET"]}
                ], "auth": {"header": "authorization", "scheme": "Bearer"}},
                "proposed": {"host": "api.example.com", "matches": [
                    {"paths": [{"type": "prefix", "value": "/v1/"}, {"type": "prefix", "value": "/v2/"}], "methods": ["GET"]}
                ], "auth": {"header": "authorization", "scheme": "Bearer"}}
            }),
        );
        route.label = Some("docs-bot".into());
        route.color = Some("cyan".into());
        let mut token = pending(
            "agent-7f3a",
            "p-2",
            "egress-token-allow",
            75,
            "github-pat in a POST to api.github.com",
            json!({"host": "api.github.com", "port": 443, "method": "POST", "path": "/repos/o/r/issues",
                   "findings": [{"rule": "github-pat", "location": "body"}, {"rule": "github-pat", "location": "header `x-token`"}]}),
        );
        token.label = Some("docs-bot".into());
        token.color = Some("cyan".into());
        let git = pending(
            "tests-91c2",
            "p-3",
            "git-allow",
            40,
            "aws-access-key allowed inline in tests/fixtures/creds.txt",
            json!({"repo": "origin", "ref": "refs/heads/main", "commit": "0123456789abcdef0123456789abcdef01234567",
                   "file": "tests/fixtures/creds.txt", "line": 3, "rule": "aws-access-key"}),
        );
        let question = pending(
            "tests-91c2",
            "p-4",
            "question",
            2,
            "may I delete the generated snapshots?",
            json!({"question": "may I delete the generated snapshots?\nthey are 40 MB and rebuilt by CI", "expects_reply": true}),
        );
        vec![route, token, git, question]
    }

    fn render(app: &mut App) -> String {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        let now = app.fetched_at;
        terminal.draw(|f| draw(f, app, now)).unwrap();
        terminal.backend().to_string()
    }

    fn loaded(rows: Vec<Pending>) -> App {
        let mut app = App::new(true);
        app.update(Snapshot { bottles: 2, pending: rows, ..Snapshot::default() }, Instant::now());
        app
    }

    fn select(app: &mut App, id: &str) {
        let index = app.rows.iter().position(|p| p.id == id).unwrap();
        app.table.select(Some(index));
    }

    #[test]
    fn empty_list() {
        insta::assert_snapshot!(render(&mut loaded(Vec::new())));
    }

    #[test]
    fn before_the_first_poll() {
        let mut app = App::new(true);
        let out = render(&mut app);
        assert!(out.contains("looking for running bottles…"), "{out}");
    }

    #[test]
    fn list_of_all_kinds_with_a_route_diff() {
        insta::assert_snapshot!(render(&mut loaded(all_kinds())));
    }

    #[test]
    fn detail_of_a_held_secret() {
        let mut app = loaded(all_kinds());
        select(&mut app, "p-2");
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn detail_of_a_git_allow() {
        let mut app = loaded(all_kinds());
        select(&mut app, "p-3");
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn detail_of_a_question() {
        let mut app = loaded(all_kinds());
        select(&mut app, "p-4");
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn detail_of_a_new_route() {
        let mut rows = all_kinds();
        rows[0].detail = json!({"host": "pypi.org", "justification": "pip install", "change": "add", "current": null,
                                "proposed": {"host": "pypi.org", "dlp": {"outbound_on_match": "block"}}});
        insta::assert_snapshot!(render(&mut loaded(rows)));
    }

    #[test]
    fn reject_prompt() {
        let mut app = loaded(all_kinds());
        select(&mut app, "p-3");
        app.mode =
            Mode::Reject { target: Key { slug: "tests-91c2".into(), id: "p-3".into() }, input: "rotate it".into() };
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn scope_prompt() {
        let mut app = loaded(all_kinds());
        select(&mut app, "p-2");
        app.mode = Mode::Scope { target: Key { slug: "agent-7f3a".into(), id: "p-2".into() } };
        let out = render(&mut app);
        assert!(out.contains("approve p-2: o this request only  s this value to this host"), "{out}");
    }

    #[test]
    fn help() {
        let mut app = loaded(all_kinds());
        app.mode = Mode::Help;
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn error_status_line() {
        let mut app = App::new(true);
        let snapshot = Snapshot {
            bottles: 2,
            pending: all_kinds().into_iter().filter(|p| p.slug == "tests-91c2").collect(),
            unreachable: vec![
                ("agent-7f3a".into(), "bottle `agent-7f3a`: cannot reach its control API at 127.0.0.1:41234".into()),
                ("other".into(), "gone".into()),
            ],
            discovery_error: None,
        };
        app.update(snapshot, Instant::now());
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn a_long_detail_scrolls() {
        let mut rows = all_kinds();
        let paths: Vec<_> = (0..40).map(|i| json!({"type": "exact", "value": format!("/p{i}")})).collect();
        rows[0].detail = json!({"host": "a.example", "matches": [{"paths": paths}]});
        let mut app = loaded(rows);
        let top = render(&mut app);
        assert!(top.contains("PgUp/PgDn scroll") && top.contains("value: /p0 ") && !top.contains("/p39"), "{top}");
        for _ in 0..100 {
            app.on_key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::PageDown));
        }
        let bottom = render(&mut app);
        assert!(bottom.contains("/p39") && !bottom.contains("value: /p0 "), "{bottom}");
        app.on_key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::PageUp));
        assert!(!render(&mut app).contains("/p39"), "PgUp moves at once after scrolling past the end");
    }

    #[test]
    fn a_small_terminal_does_not_panic() {
        for (w, h) in [(1, 1), (10, 4), (20, 3), (0, 0), (200, 2)] {
            let mut app = loaded(all_kinds());
            app.mode = Mode::Help;
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            let now = app.fetched_at;
            terminal.draw(|f| draw(f, &mut app, now)).unwrap();
            app.mode = Mode::Reject { target: Key { slug: "a".into(), id: "p-1".into() }, input: "x".repeat(300) };
            terminal.draw(|f| draw(f, &mut app, now)).unwrap();
        }
    }

    #[test]
    fn ages_and_colours() {
        assert_eq!(
            [age(0), age(59), age(60), age(3599), age(3600), age(90_000)],
            ["0s", "59s", "1m00s", "59m59s", "1h00m", "1d01h"]
        );
        assert_eq!(bottle_core::ids::COLOR_NAMES.map(named_color).iter().flatten().count(), 16);
        assert_eq!(
            (named_color("bright-white"), named_color("white"), named_color("pink")),
            (Some(Color::White), Some(Color::Gray), None)
        );
    }
}
