//! Drawing the dashboard: the bottles, the proposal queue (the supervise view's list and detail),
//! the detail of the selected bottle with its recent audit lines, the status and key lines, and
//! the overlays (help, stop confirmation, agent picker, logs). Pure rendering from [`App`];
//! snapshot-tested on ratatui's `TestBackend`. Every size works, down to nothing at all.

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, HighlightSpacing, Paragraph, Row, Table, Wrap};
use serde_json::Value;

use super::app::{App, BottleView, Focus, Message, Mode};
use crate::commands::supervise::tui::app::Mode as SuperviseMode;
use crate::commands::supervise::tui::view::{self as supervise_view, age, bold, dim, named_color};

pub fn draw(frame: &mut Frame, app: &mut App, now: Instant) {
    let area = frame.area();
    let bottles_wanted = u16::try_from(app.bottles.len().max(1) + 3).unwrap_or(u16::MAX);
    let proposals_wanted = u16::try_from(app.proposals.rows.len().max(2) + 3).unwrap_or(u16::MAX);
    let [bottles_area, proposals_area, detail_area, status_area, keys_area] = Layout::vertical([
        Constraint::Length(bottles_wanted.min(area.height.saturating_mul(2) / 5).max(4)),
        Constraint::Length(proposals_wanted.min(area.height / 4).max(4)),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let elapsed = now.saturating_duration_since(app.fetched_at).as_secs();
    draw_bottles(frame, app, bottles_area, elapsed);
    let title = format!("{}proposals", focus_mark(app.focus == Focus::Proposals));
    supervise_view::draw_list(frame, &mut app.proposals, proposals_area, elapsed, &title);
    if app.focus == Focus::Proposals && app.proposals.selected().is_some() {
        supervise_view::draw_detail(frame, &mut app.proposals, detail_area, elapsed);
    } else {
        draw_bottle_detail(frame, app, detail_area, elapsed);
    }
    frame.render_widget(Paragraph::new(status_line(app)), status_area);
    if app.proposals.mode == SuperviseMode::List {
        frame.render_widget(Paragraph::new(keys_line(app)), keys_area);
    } else {
        supervise_view::draw_keys(frame, &app.proposals, keys_area);
    }
    let body = bottles_area.union(detail_area);
    match app.mode.clone() {
        Mode::Normal => {}
        Mode::Help => draw_help(frame, body),
        Mode::ConfirmStop { slug } => draw_confirm(frame, app, body, &slug),
        Mode::Picker { agents, selected } => draw_picker(frame, body, &agents, selected),
        Mode::Logs { slug, kind, scroll } => draw_logs(frame, app, body, &slug, kind.title(), scroll),
    }
}

/// A pane's block; the focused pane's title is marked, so the arrow keys' target is plain to see.
fn focused_block(title: &str, focused: bool) -> Block<'static> {
    Block::bordered().title(Line::from(format!(" {}{title} ", focus_mark(focused))).style(bold()))
}

fn focus_mark(focused: bool) -> &'static str {
    if focused { "▸ " } else { "" }
}

fn draw_bottles(frame: &mut Frame, app: &mut App, area: Rect, elapsed: u64) {
    let running = app.bottles.iter().filter(|b| b.is_running()).count();
    let mode = if app.tmux { " · tmux" } else { "" };
    let title = format!("bottles · {running} running · {} in all{mode}", app.bottles.len());
    let block = focused_block(&title, app.focus == Focus::Bottles);
    if app.bottles.is_empty() {
        let text = if app.loaded {
            vec![Line::from("no bottles"), Line::from("`n` launches an agent in a new bottle").style(dim())]
        } else {
            vec![Line::from("looking for bottles…")]
        };
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(block), area);
        return;
    }
    let name_width = app.bottles.iter().map(|b| Span::raw(b.name()).width()).max().unwrap_or(0).clamp(6, 24);
    // Below this width the full table would cut every column; the key ones stay whole instead.
    let compact = area.width < 90;
    let rows: Vec<Row> = app
        .bottles
        .iter()
        .map(|b| {
            let live = b.is_running() && elapsed > 0;
            let egress =
                b.counters.map_or_else(|| "-".to_owned(), |c| format!("{}/{}/{}", c.allowed, c.denied, c.dlp_hits));
            let asks = app.pending_of(&b.row.slug);
            let status_style = match b.row.status.as_str() {
                "running" => paint(app, Color::Green),
                "degraded" => paint(app, Color::Yellow),
                _ => dim(),
            };
            let name = Cell::from(Span::styled(b.name().to_owned(), bottle_style(app, b)));
            let asks =
                Cell::from(Line::from(if asks == 0 { "-".to_owned() } else { asks.to_string() }).right_aligned());
            if compact {
                // No room for a note column: an error replaces the status.
                let status = match &b.error {
                    Some(_) => Span::styled("error", paint(app, Color::Red)),
                    None => Span::styled(b.row.status.clone(), status_style),
                };
                return Row::new([name, Cell::from(status), asks]);
            }
            Row::new([
                name,
                Cell::from(b.row.backend.clone()),
                Cell::from(b.row.agent.clone().unwrap_or_else(|| "?".into())),
                Cell::from(Line::from(age(b.row.age_secs + if live { elapsed } else { 0 })).right_aligned()),
                Cell::from(Span::styled(b.row.status.clone(), status_style)),
                Cell::from(Line::from(egress).right_aligned()),
                asks,
                Cell::from(Span::styled(b.error.clone().unwrap_or_default(), paint(app, Color::Red))),
            ])
        })
        .collect();
    let name_width = Constraint::Length(u16::try_from(name_width).unwrap_or(24));
    let (header, widths) = if compact {
        (Row::new(["BOTTLE", "STATUS", "ASKS"]), vec![name_width, Constraint::Length(8), Constraint::Length(4)])
    } else {
        (
            Row::new(["BOTTLE", "BACKEND", "AGENT", "AGE", "STATUS", "EGRESS a/d/dlp", "ASKS", "NOTE"]),
            wide_widths(name_width),
        )
    };
    let header = header.style(Style::new().add_modifier(Modifier::BOLD));
    let highlight =
        if app.focus == Focus::Bottles { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(highlight)
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always);
    frame.render_stateful_widget(table, area, &mut app.table);
}

/// The columns of the full bottle table.
fn wide_widths(name: Constraint) -> Vec<Constraint> {
    vec![
        name,
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(14),
        Constraint::Length(4),
        Constraint::Fill(1),
    ]
}

fn draw_bottle_detail(frame: &mut Frame, app: &App, area: Rect, elapsed: u64) {
    let Some(b) = app.selected() else {
        let text = Line::from("a bottle's detail and recent audit lines show here; `?` lists the keys").style(dim());
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }).block(Block::bordered().title(" detail ")),
            area,
        );
        return;
    };
    let title =
        Line::from(vec![Span::raw(" "), Span::styled(b.name().to_owned(), bottle_style(app, b)), Span::raw(" ")]);
    let live = if b.is_running() { elapsed } else { 0 };
    let mut lines = vec![
        Line::from(vec![
            Span::styled("slug      ", dim()),
            Span::raw(format!("{} · {} · agent {}", b.row.slug, b.row.backend, b.row.agent.as_deref().unwrap_or("?"))),
        ]),
        Line::from(vec![
            Span::styled("status    ", dim()),
            Span::raw(format!("{} for {}", b.row.status, age(b.row.age_secs + live))),
            Span::raw(match b.row.owner_pid {
                Some(pid) => format!(" · in the foreground of pid {pid}"),
                None => " · detached".to_owned(),
            }),
        ]),
        Line::from(vec![
            Span::styled("egress    ", dim()),
            Span::raw(b.counters.map_or_else(
                || "no counters".to_owned(),
                |c| {
                    format!(
                        "{} allowed · {} denied · {} DLP hit{}",
                        c.allowed,
                        c.denied,
                        c.dlp_hits,
                        plural(c.dlp_hits)
                    )
                },
            )),
        ]),
        Line::from(vec![
            Span::styled("proposals ", dim()),
            Span::raw(format!("{} pending", app.pending_of(&b.row.slug))),
        ]),
    ];
    if let Some(e) = &b.error {
        lines.push(Line::from(format!("error     {e}")).style(paint(app, Color::Red)));
    }
    lines.push(Line::default());
    lines.push(Line::from("recent audit").style(bold()));
    if b.audit.is_empty() {
        lines.push(Line::from("  nothing logged yet").style(dim()));
    }
    // The newest lines that fit.
    let room = usize::from(area.height.saturating_sub(2)).saturating_sub(lines.len());
    let skip = b.audit.len().saturating_sub(room);
    lines.extend(b.audit.iter().skip(skip).map(|l| Line::from(format!("  {l}"))));
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), area);
}

/// The status line: this view's message, else the queue's, else what is broken, else a summary.
fn status_line(app: &App) -> Line<'static> {
    let error = |text: String| Line::from(text).style(paint(app, Color::Red).add_modifier(Modifier::BOLD));
    let info = |text: String| Line::from(text).style(paint(app, Color::Green));
    match app.message.clone().or_else(|| app.proposals.message.clone()) {
        Some(Message::Error(m)) => return error(format!("error: {m}")),
        Some(Message::Info(m)) => return info(m),
        None => {}
    }
    if let Some(e) = &app.discovery_error {
        return error(format!("cannot list the bottles: {e}"));
    }
    if let Some(e) = &app.proposals.discovery_error {
        return error(format!("cannot find the control APIs: {e}"));
    }
    let broken = app.bottles.iter().filter(|b| b.error.is_some()).count();
    if broken > 0 {
        return error(format!("{broken} bottle{} did not answer; see its row", if broken == 1 { "" } else { "s" }));
    }
    let where_ = if app.tmux { "agents open in the pane to the right" } else { "agents open on this terminal" };
    Line::from(if app.loaded { format!("refreshes every second · {where_}") } else { String::new() }).style(dim())
}

fn keys_line(app: &App) -> Line<'static> {
    let key = |k: &'static str| Span::styled(k, bold());
    let text = |t: &'static str| Span::raw(t);
    match &app.mode {
        Mode::Normal => Line::from(vec![
            key("↑↓"),
            text(" select "),
            key("Tab"),
            text(" pane "),
            key("Enter"),
            text(" attach "),
            key("n"),
            text(" new "),
            key("x"),
            text(" stop "),
            key("a/m/r"),
            text(" decide "),
            key("l"),
            text(" logs "),
            key("?"),
            text(" help "),
            key("q"),
            text(" quit"),
        ]),
        Mode::Help => Line::from("any key closes the help"),
        Mode::ConfirmStop { .. } => {
            Line::from(vec![key("y"), text(" stop it  "), key("any other key"), text(" keep it")])
        }
        Mode::Picker { .. } => {
            Line::from(vec![key("↑↓"), text(" choose  "), key("Enter"), text(" launch  "), key("Esc"), text(" cancel")])
        }
        Mode::Logs { .. } => Line::from(vec![
            key("↑↓ PgUp PgDn"),
            text(" scroll  "),
            key("l/Tab"),
            text(" other log  "),
            key("Esc"),
            text(" close"),
        ]),
    }
}

/// A `width`×`height` rectangle centred in `area`, never larger than it.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let rows: [(&str, &str); 14] = [
        ("↑ ↓  j k", "select (g G: first, last) in the focused list"),
        ("Tab", "move between the bottles and the proposals"),
        ("Enter", "attach: the agent in the right tmux pane, or on this terminal"),
        ("n", "new bottle: pick an agent, launch it, attach"),
        ("x", "stop the selected bottle (asks first)"),
        ("a", "approve the selected proposal (a held secret asks o or s)"),
        ("m", "modify an egress-route proposal in $EDITOR, then approve it"),
        ("r", "reject the selected proposal, with a reason"),
        ("l", "the selected bottle's bring-up log; l again: its audit log"),
        ("?", "this help"),
        ("q  Esc", "quit (running bottles keep running)"),
        ("", ""),
        ("", "inside tmux agents open in one pane to the right, re-used on"),
        ("", "every attach; elsewhere they take this terminal until they exit"),
    ];
    let lines: Vec<Line> = rows
        .iter()
        .map(|(k, what)| Line::from(vec![Span::styled(format!(" {k:<10}"), bold()), Span::raw(*what)]))
        .collect();
    let popup = centered(area, 78, u16::try_from(lines.len()).unwrap_or(0) + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" keys ")), popup);
}

fn draw_confirm(frame: &mut Frame, app: &App, area: Rect, slug: &str) {
    let agent_note = match app.bottles.iter().find(|b| b.row.slug == slug) {
        Some(b) if app.pending_of(&b.row.slug) > 0 => {
            let n = app.pending_of(&b.row.slug);
            format!("its {n} pending proposal{} will be refused", plural(u64::try_from(n).unwrap_or(u64::MAX)))
        }
        _ => "its containers, network and volume are removed".to_owned(),
    };
    let lines = vec![
        Line::from(vec![Span::raw("stop "), Span::styled(slug.to_owned(), bold()), Span::raw("?")]),
        Line::from(agent_note).style(dim()),
        Line::from("its state and audit log stay until `cleanup`").style(dim()),
        Line::default(),
        Line::from(vec![Span::styled("y", bold()), Span::raw(" stop · any other key keeps it  [y/N]")]),
    ];
    let popup = centered(area, 56, 7);
    frame.render_widget(Clear, popup);
    frame
        .render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }).block(Block::bordered().title(" stop ")), popup);
}

fn draw_picker(frame: &mut Frame, area: Rect, agents: &[super::app::AgentChoice], selected: usize) {
    let rows = agents.iter().map(|a| match &a.error {
        None => Row::new([Cell::from(a.name.clone()), Cell::from("")]),
        Some(e) => Row::new([Cell::from(a.name.clone()).style(dim()), Cell::from(format!("error: {e}")).style(dim())]),
    });
    let name_width = agents.iter().map(|a| Span::raw(a.name.as_str()).width()).max().unwrap_or(0).clamp(8, 24);
    let height = u16::try_from(agents.len()).unwrap_or(u16::MAX).saturating_add(2);
    let popup = centered(area, 70, height);
    let mut state = ratatui::widgets::TableState::default().with_selected(Some(selected));
    let table = Table::new(rows, [Constraint::Length(u16::try_from(name_width).unwrap_or(24)), Constraint::Fill(1)])
        .block(Block::bordered().title(" launch an agent "))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always);
    frame.render_widget(Clear, popup);
    frame.render_stateful_widget(table, popup, &mut state);
}

fn draw_logs(frame: &mut Frame, app: &App, area: Rect, slug: &str, title: &str, scroll: u16) {
    let popup = Rect { x: area.x, y: area.y, width: area.width, height: area.height };
    let room = usize::from(popup.height.saturating_sub(2));
    let end = app.log_lines.len().saturating_sub(usize::from(scroll));
    let start = end.saturating_sub(room);
    let lines: Vec<Line> = if app.log_lines.is_empty() {
        vec![Line::from("empty: nothing logged yet").style(dim())]
    } else {
        app.log_lines[start..end].iter().map(|l| Line::from(l.clone())).collect()
    };
    let title = format!(" {title} · {slug} · lines {}–{end} of {} ", start + 1, app.log_lines.len());
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), popup);
}

fn bottle_style(app: &App, b: &BottleView) -> Style {
    match b.row.color.as_deref().and_then(named_color) {
        Some(color) if app.color => Style::new().fg(color),
        _ => Style::new(),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn paint(app: &App, color: Color) -> Style {
    if app.color { Style::new().fg(color) } else { Style::new() }
}

/// One audit line as the detail pane shows it: time, decision, event, where, what came back.
pub fn audit_summary(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return "(unreadable line)".to_owned();
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    let time = v.get("ts_ms").and_then(Value::as_u64).map_or_else(String::new, |ms| {
        let s = ms / 1000 % 86_400;
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    });
    let mut out = format!("{time} {:<6} {:<9}", text("decision"), text("event"));
    if !text("host").is_empty() {
        out.push_str(&format!(" {}", text("host")));
        if let Some(port) = v.get("port").and_then(Value::as_u64).filter(|p| *p != 443) {
            out.push_str(&format!(":{port}"));
        }
    }
    for key in ["repo", "method", "path"] {
        if !text(key).is_empty() {
            out.push_str(&format!(" {}", text(key)));
        }
    }
    if let Some(status) = v.get("status").and_then(Value::as_u64) {
        out.push_str(&format!(" → {status}"));
    }
    if !text("rule").is_empty() {
        out.push_str(&format!(" [{}]", text("rule")));
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::dashboard::app::tests::bottle;
    use crate::commands::dashboard::app::{AgentChoice, LogKind, Snapshot};
    use crate::commands::supervise::tui::app::Snapshot as SuperviseSnapshot;
    use crate::commands::supervise::tui::app::tests::pending;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use serde_json::json;

    fn render_at(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let now = app.fetched_at;
        terminal.draw(|f| draw(f, app, now)).unwrap();
        terminal
    }

    fn render(app: &mut App) -> String {
        render_at(app, 110, 34).backend().to_string()
    }

    fn fleet() -> Vec<BottleView> {
        let mut docs = bottle("docs-bot", Some("docs-bot"), Some("cyan"), "running", 303);
        docs.audit = [
            r#"{"ts_ms":1700000000000,"event":"request","decision":"allow","host":"api.example.com","port":443,"method":"GET","path":"/v1/schema","status":200}"#,
            r#"{"ts_ms":1700000005000,"event":"connect","decision":"deny","host":"evil.example","port":443,"rule":"egress.no-route","status":403}"#,
            r#"{"ts_ms":1700000009000,"event":"push","decision":"allow","repo":"origin","status":200}"#,
        ]
        .iter()
        .map(|l| audit_summary(l))
        .collect();
        let mut tests = bottle("tests-91c2", Some("tests"), Some("bright-magenta"), "running", 4_000);
        tests.row.backend = "smolmachines".into();
        tests.counters = Some(super::super::app::Counters { allowed: 0, denied: 0, dlp_hits: 0 });
        let review = bottle("review-1", None, Some("yellow"), "degraded", 90);
        let mut old = bottle("demo-3kq1", None, None, "exited", 200_000);
        old.row.agent = None;
        vec![docs, tests, review, old]
    }

    fn proposals() -> Vec<crate::commands::supervise::Pending> {
        let mut route = pending(
            "docs-bot",
            "p-1",
            "egress-route",
            31,
            "add a route to pypi.org",
            json!({"host": "pypi.org", "justification": "pip install", "current": null,
                   "proposed": {"host": "pypi.org"}}),
        );
        route.label = Some("docs-bot".into());
        route.color = Some("cyan".into());
        let question =
            pending("tests-91c2", "p-2", "question", 4, "may I delete the snapshots?", json!({"question": "may I?"}));
        vec![route, question]
    }

    fn loaded(bottles: Vec<BottleView>, pending: Vec<crate::commands::supervise::Pending>) -> App {
        let mut app = App::new(true, true);
        let proposals = SuperviseSnapshot { bottles: bottles.len(), pending, ..SuperviseSnapshot::default() };
        app.update(Snapshot { bottles, proposals, discovery_error: None }, Instant::now());
        app
    }

    #[test]
    fn empty() {
        let mut app = App::new(true, false);
        app.update(Snapshot::default(), Instant::now());
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn before_the_first_poll() {
        assert!(render(&mut App::new(true, false)).contains("looking for bottles…"));
    }

    #[test]
    fn many_bottles_with_labels_in_their_colours() {
        let mut app = loaded(fleet(), proposals());
        let terminal = render_at(&mut app, 110, 34);
        let buffer = terminal.backend().buffer();
        // Where each label is drawn, its cell carries the bottle's colour.
        let colour_at = |text: &str| {
            let width = buffer.area.width;
            (0..buffer.area.height).find_map(|y| {
                let line: String = (0..width).map(|x| buffer[(x, y)].symbol().to_owned()).collect();
                line.find(text).map(|byte| {
                    let x = u16::try_from(line[..byte].chars().count()).unwrap();
                    buffer[(x, y)].fg
                })
            })
        };
        assert_eq!(colour_at("docs-bot   "), Some(Color::Cyan));
        assert_eq!(colour_at("tests "), Some(Color::LightMagenta));
        assert_eq!(colour_at("review-1"), Some(Color::Yellow));
        insta::assert_snapshot!(terminal.backend().to_string());
    }

    #[test]
    fn no_colour_paints_nothing() {
        let mut app = loaded(fleet(), proposals());
        app.color = false;
        app.proposals.color = false;
        let terminal = render_at(&mut app, 110, 34);
        assert!(terminal.backend().buffer().content.iter().all(|c| c.fg == Color::Reset), "NO_COLOR paints no cell");
    }

    #[test]
    fn proposals_focused_show_the_proposal_detail() {
        let mut app = loaded(fleet(), proposals());
        app.focus = Focus::Proposals;
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn errors_on_rows_and_in_the_status_line() {
        let mut bottles = fleet();
        bottles[0].error = Some("cannot reach its control API at 127.0.0.1:41234".into());
        bottles[0].counters = None;
        bottles.truncate(2);
        let mut app = App::new(true, true);
        let proposals = SuperviseSnapshot {
            bottles: 2,
            pending: Vec::new(),
            unreachable: vec![("docs-bot".into(), "cannot reach".into())],
            discovery_error: None,
        };
        app.update(Snapshot { bottles, proposals, discovery_error: None }, Instant::now());
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn a_vanished_bottle_and_a_dead_engine() {
        let mut app = loaded(fleet(), proposals());
        app.table.select(Some(3));
        // The selected bottle is gone, and then the engine stops answering.
        app.update(Snapshot { bottles: fleet()[..2].to_vec(), ..Snapshot::default() }, Instant::now());
        app.update(
            Snapshot { discovery_error: Some("cannot connect to the Docker engine".into()), ..Snapshot::default() },
            Instant::now(),
        );
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn help_overlay() {
        let mut app = loaded(fleet(), proposals());
        app.mode = Mode::Help;
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn confirm_dialog() {
        let mut app = loaded(fleet(), proposals());
        app.mode = Mode::ConfirmStop { slug: "docs-bot".into() };
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn agent_picker_with_a_broken_manifest() {
        let mut app = loaded(fleet(), Vec::new());
        app.open_picker(Ok(vec![
            AgentChoice { name: "broken".into(), error: Some("agents/broken.md:3:1: unknown key `botle`".into()) },
            AgentChoice { name: "demo".into(), error: None },
            AgentChoice { name: "implementer".into(), error: None },
        ]));
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn log_view() {
        let mut app = loaded(fleet(), Vec::new());
        app.mode = Mode::Logs { slug: "docs-bot".into(), kind: LogKind::Bringup, scroll: 0 };
        app.log_lines = (1..=60).map(|i| format!("step {i}")).collect();
        insta::assert_snapshot!(render(&mut app));
    }

    #[test]
    fn reject_prompt_in_the_key_line() {
        let mut app = loaded(fleet(), proposals());
        app.on_key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char('r')));
        for c in "not now".chars() {
            app.on_key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char(c)));
        }
        let out = render(&mut app);
        assert!(out.contains("reason to reject p-1: not now"), "{out}");
    }

    #[test]
    fn narrow_terminal() {
        let mut app = loaded(fleet(), proposals());
        insta::assert_snapshot!(render_at(&mut app, 40, 10).backend().to_string());
    }

    #[test]
    fn tiny_terminals_never_panic() {
        for (w, h) in [(0, 0), (1, 1), (10, 4), (20, 3), (200, 2), (3, 60)] {
            for mode in [
                Mode::Normal,
                Mode::Help,
                Mode::ConfirmStop { slug: "docs-bot".into() },
                Mode::Picker { agents: vec![AgentChoice { name: "a".into(), error: None }], selected: 0 },
                Mode::Logs { slug: "docs-bot".into(), kind: LogKind::Audit, scroll: 9 },
            ] {
                let mut app = loaded(fleet(), proposals());
                app.log_lines = vec!["x".repeat(500)];
                app.mode = mode;
                render_at(&mut app, w, h);
                app.focus = Focus::Proposals;
                render_at(&mut app, w, h);
            }
        }
    }

    #[test]
    fn audit_lines_are_summarised() {
        assert_eq!(
            audit_summary(
                r#"{"ts_ms":3723000,"event":"request","decision":"deny","host":"a.example","port":8443,"method":"POST","path":"/x","status":403,"rule":"dlp.aws"}"#
            ),
            "01:02:03 deny   request   a.example:8443 POST /x → 403 [dlp.aws]"
        );
        assert_eq!(audit_summary("not json"), "(unreadable line)");
        assert_eq!(audit_summary("{}"), "");
    }
}
