//! How each picker looks: one frame per state, drawn with ratatui. Broken rows are grey with their
//! reason; picked bottles carry their place in the merge order.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color as TuiColor, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::{Choice, LabelModal, ListPicker, MultiPicker};

const GREY: Style = Style::new().fg(TuiColor::DarkGray);

fn frame_parts(area: Rect) -> [Rect; 3] {
    Layout::vertical([Constraint::Length(2), Constraint::Min(1), Constraint::Length(2)]).areas(area)
}

fn row<'a>(c: &'a Choice, marker: &str, here: bool) -> Line<'a> {
    let pointer = if here { "> " } else { "  " };
    match &c.error {
        Some(e) => Line::from(vec![
            Span::styled(format!("{pointer}{marker}{:<20} ", c.name), GREY),
            Span::styled(format!("unavailable: {e}"), GREY),
        ]),
        None => {
            let style = if here { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
            Line::from(vec![
                Span::styled(format!("{pointer}{marker}{:<20}", c.name), style),
                Span::raw(" "),
                Span::styled(c.detail.clone(), GREY),
            ])
        }
    }
}

/// Rows `from..` so that `cursor` stays on screen.
fn window(len: usize, cursor: usize, height: usize) -> std::ops::Range<usize> {
    let height = height.max(1);
    let start = cursor.saturating_sub(height - 1).min(len.saturating_sub(height));
    start..len.min(start + height)
}

pub fn list(f: &mut Frame<'_>, p: &ListPicker) {
    let [head, body, foot] = frame_parts(f.area());
    let mut title = vec![Span::styled(p.title.clone(), Style::new().add_modifier(Modifier::BOLD))];
    if p.filterable {
        title.push(Span::raw(format!("  filter: {}_", p.filter)));
    }
    f.render_widget(Paragraph::new(Line::from(title)), head);
    let visible = p.visible();
    let lines: Vec<Line<'_>> = if visible.is_empty() {
        vec![Line::styled("  nothing matches", GREY)]
    } else {
        window(visible.len(), p.cursor, body.height.into())
            .map(|c| row(&p.items[visible[c]], "", c == p.cursor))
            .collect()
    };
    f.render_widget(Paragraph::new(lines), body);
    let help = if p.filterable {
        "type to filter · ↑↓ move · Enter pick · Esc cancel"
    } else {
        "↑↓ move · Enter pick · Esc cancel"
    };
    f.render_widget(Paragraph::new(Line::styled(help, GREY)), foot);
}

pub fn multi(f: &mut Frame<'_>, p: &MultiPicker) {
    let [head, body, foot] = frame_parts(f.area());
    f.render_widget(Paragraph::new(Line::styled(p.title.clone(), Style::new().add_modifier(Modifier::BOLD))), head);
    let lines: Vec<Line<'_>> = window(p.items.len(), p.cursor, body.height.into())
        .map(|i| {
            let marker = match p.rank(i) {
                Some(n) => format!("[{n}] "),
                None => "[ ] ".to_owned(),
            };
            row(&p.items[i], &marker, i == p.cursor)
        })
        .collect();
    f.render_widget(Paragraph::new(lines), body);
    let mut foot_lines = vec![Line::styled(
        "Space pick/unpick (numbers are the merge order, last wins) · Enter confirm · Esc cancel",
        GREY,
    )];
    if let Some(m) = &p.message {
        foot_lines.insert(0, Line::styled(m.clone(), Style::new().fg(TuiColor::Yellow)));
    }
    f.render_widget(Paragraph::new(foot_lines).wrap(Wrap { trim: true }), foot);
}

pub fn label(f: &mut Frame<'_>, m: &LabelModal) {
    let area = f.area();
    let block = Block::default().borders(Borders::ALL).title(" label and colour ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let preview = match m.color {
        Some(i) => Style::new().fg(TuiColor::Indexed(u8::try_from(i).unwrap_or(7))).add_modifier(Modifier::BOLD),
        None => Style::new().add_modifier(Modifier::BOLD),
    };
    let label_style = if m.pristine { GREY } else { Style::new() };
    let mut lines = vec![
        Line::from(vec![Span::raw("label:  "), Span::styled(format!("{}_", m.label), label_style)]),
        Line::from(vec![Span::raw("colour: "), Span::raw(m.color_name().unwrap_or("none"))]),
        Line::from(vec![Span::raw("preview "), Span::styled(format!("[bottle {}]", m.label), preview)]),
        Line::raw(""),
    ];
    if let Some(e) = &m.error {
        lines.push(Line::styled(e.clone(), Style::new().fg(TuiColor::Red)));
    }
    lines.push(Line::styled(
        "type the label (the first key replaces the suggestion) · ←→ colour · Enter accept · Esc cancel",
        GREY,
    ));
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_the_cursor_visible() {
        assert_eq!(window(3, 0, 10), 0..3);
        assert_eq!(window(30, 0, 10), 0..10);
        assert_eq!(window(30, 15, 10), 6..16);
        assert_eq!(window(30, 29, 10), 20..30);
    }

    #[test]
    fn broken_rows_show_their_reason() {
        let backend = ratatui::backend::TestBackend::new(70, 8);
        let mut t = ratatui::Terminal::new(backend).expect("terminal");
        let p =
            ListPicker::new("agent", vec![Choice::ok("alpha", "home"), Choice::broken("bad", "line 2: oops")], true);
        t.draw(|f| list(f, &p)).expect("draw");
        let text: String = t.backend().buffer().content().iter().map(ratatui::buffer::Cell::symbol).collect();
        assert!(text.contains("> alpha"), "{text}");
        assert!(text.contains("unavailable: line 2: oops"), "{text}");
    }
}
